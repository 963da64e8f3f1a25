"""Train one configuration and return a tidy record of everything the chapters plot.

The record holds the per-step loss, the global gradient norm *before* clipping,
the gradient norm of each layer (encoder, recurrent, head), the largest absolute
hidden state, the per-epoch training and validation accuracy, the test accuracy,
the learning rate and the wall time. A run whose loss or gradient norm turns NaN
or Inf stops there and is recorded as diverged at that step; it never raises.

Example:
    >>> cfg = TrainConfig(seq_len=10, n_train=128, n_val=32, n_test=32, epochs=1, units=16)
    >>> record = train(cfg)
    >>> sorted(record)[:3]
    ['config', 'diverged', 'diverged_step']
"""
from __future__ import annotations

import dataclasses
import math
import time

import keras
import numpy as np
import tensorflow as tf

from rnnbook import clipping, data, models, runtime
from rnnbook.choices import CELLS, OPTIMIZERS, RECURRENT_INITIALIZERS, check_choice


class ConfigError(ValueError):
    """A training configuration that cannot run; the message names the field and the choices."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run (the seed included)."""

    # task
    task: str = "recall"
    seq_len: int = 20
    lag: int | None = None
    n_train: int = 2000
    n_val: int = 500
    n_test: int = 500
    target_digit: int = 0
    max_count: int | None = None
    # model
    cell: str = "simple_rnn"
    units: int = 64
    activation: str = "tanh"
    recurrent_initializer: str = "orthogonal"
    recurrent_gain: float = 1.0
    conv_filters: tuple = (16, 32)
    # optimisation
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    clip_mode: str = "none"
    clip_threshold: float = 1.0
    epochs: int = 5
    batch_size: int = 128
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "conv_filters", tuple(int(f) for f in self.conv_filters))
        try:
            self.validate()
        except (data.DataError, models.ModelError, clipping.ClipError) as exc:
            raise ConfigError(str(exc)) from None

    def validate(self) -> None:
        """Check every field before any training starts."""
        data.check_task_args(self.task, self.seq_len, self.lag, self.n_train, self.n_val,
                             self.n_test, self.target_digit, self.max_count)
        check_choice("cell", self.cell, CELLS, ConfigError)
        check_choice("recurrent_initializer", self.recurrent_initializer, RECURRENT_INITIALIZERS, ConfigError)
        models.check_activation(self.activation)
        for name in ("units", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"{name}={value!r} must be a positive integer")
        if not (math.isfinite(self.recurrent_gain) and self.recurrent_gain > 0):
            raise ConfigError(f"recurrent_gain={self.recurrent_gain!r} must be a positive number")
        check_choice("optimizer", self.optimizer, OPTIMIZERS, ConfigError)
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
                and self.learning_rate > 0):
            raise ConfigError(f"learning_rate={self.learning_rate!r} must be a positive finite number")
        clipping.check_clip(self.clip_mode, self.clip_threshold)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["conv_filters"] = list(self.conv_filters)
        return d

    def task_data(self, data_dir=data.DATA_DIR) -> data.TaskData:
        """The task's sequences (generated once, then reused from ``data_dir``)."""
        return data.make_task(self.task, self.seq_len, self.lag, self.n_train, self.n_val, self.n_test,
                              self.seed, self.target_digit, self.max_count, data_dir=data_dir)

    def model(self, num_classes: int) -> models.SequenceClassifier:
        return models.build_model(self.cell, self.units, self.activation, self.recurrent_initializer,
                                  self.recurrent_gain, self.conv_filters, num_classes, self.seed)


LAYER_GROUPS = ("encoder", "rnn", "head")


class Stepper:
    """Compiled training and evaluation steps for one model on one split layout.

    ``indexed=True`` takes batches of indices into ``bank`` (the CNN runs once per
    distinct image); otherwise batches of dense frames (the general path).
    ``fast=True`` runs a SimpleRNN head through the fast recurrence
    (:mod:`rnnbook.recurrence`); False uses the Keras layer as is.
    """

    def __init__(self, model, optimizer, indexed: bool, bank: np.ndarray | None = None, fast: bool = True):
        """``optimizer=None`` gives an evaluation-only stepper."""
        self.model, self.optimizer, self.indexed, self.fast = model, optimizer, indexed, fast
        self.bank = tf.constant(bank) if indexed else None
        self.variables = model.trainable_variables
        self.groups = [[v for v in getattr(model, g).trainable_variables] for g in LAYER_GROUPS]
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if optimizer is not None:
            optimizer.build(self.variables)
        self._grads = tf.function(self._grads_impl, reduce_retracing=True)
        self._apply = tf.function(self._apply_impl, reduce_retracing=True)
        self._logits = tf.function(self._logits_impl, reduce_retracing=True)

    def forward(self, x, training):
        """``(logits, states)`` of a batch of indices (indexed) or dense frames."""
        if self.indexed:
            return self.model.forward_indexed(x, self.bank, training=training, fast=self.fast)
        return self.model.forward(self.model.features(x, training=training), training=training, fast=self.fast)

    def loss_and_grads(self, x, y):
        """Loss, gradients and hidden states of one batch (no update)."""
        with tf.GradientTape() as tape:
            logits, states = self.forward(x, True)
            loss = self.loss_fn(y, logits)
        return loss, tape.gradient(loss, self.variables), logits, states

    def _grads_impl(self, x, y):
        loss, grads, logits, states = self.loss_and_grads(x, y)
        ids = {id(v): g for v, g in zip(self.variables, grads)}
        layer_norms = tf.stack([tf.linalg.global_norm([ids[id(v)] for v in group]) for group in self.groups])
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1), tf.cast(y, tf.int64)), tf.int32))
        stats = {"loss": loss, "grad_norm": tf.linalg.global_norm(grads), "layer_norms": layer_norms,
                 "max_abs_state": tf.reduce_max(tf.abs(states)), "correct": correct}
        return grads, stats

    def _apply_impl(self, grads):
        self.optimizer.apply_gradients(zip(grads, self.variables))

    def _logits_impl(self, x):
        return self.forward(x, False)[0]

    def step(self, x, y) -> dict:
        """One update; returns the step's statistics as Python numbers."""
        grads, stats = self._grads(x, y)
        stats = {k: v.numpy() for k, v in stats.items()}
        if np.isfinite(stats["loss"]) and np.isfinite(stats["grad_norm"]):
            self._apply(grads)
        return stats

    def accuracy(self, split: data.SequenceSet, batch_size: int = 256) -> float:
        """Share of sequences of ``split`` classified correctly (NaN logits count as wrong)."""
        source = split.index if self.indexed else split.frames()
        correct = 0
        for start in range(0, len(split), batch_size):
            logits = self._logits(source[start:start + batch_size]).numpy()
            ok = np.isfinite(logits).all(axis=1) & (logits.argmax(1) == split.labels[start:start + batch_size])
            correct += int(ok.sum())
        return correct / len(split)


def train(config: TrainConfig, task: data.TaskData | None = None, fast: bool = True,
          data_dir=data.DATA_DIR) -> dict:
    """Train one configuration; return its record (see the module docstring).

    Args:
        config: the run's configuration.
        task: the data (default: ``config.task_data(data_dir)``).
        fast: the book's fast path: the CNN once per distinct image (when the data are
            bank indices) and the fast SimpleRNN recurrence; False runs the general
            path, plain Keras layers on dense frames (same math, slower).
    """
    runtime.seed_everything(config.seed)
    task = config.task_data(data_dir) if task is None else task
    indexed = fast and task.train.indexed
    model = config.model(task.num_classes)
    optimizer = clipping.make_optimizer(config.optimizer, config.learning_rate, config.clip_mode,
                                        config.clip_threshold, config.momentum)
    steppers = {name: Stepper(model, optimizer if name == "train" else None, indexed,
                              getattr(task, name).bank if indexed else None, fast=fast)
                for name in data.SPLITS}
    trainer = steppers["train"]
    rng = np.random.default_rng([config.seed, 7])
    train_x = task.train.index if indexed else task.train.frames()
    labels = task.train.labels

    steps: dict[str, list] = {k: [] for k in ("loss", "grad_norm", "max_abs_state", *[f"{g}_grad_norm" for g in LAYER_GROUPS])}
    epoch_train_acc, epoch_val_acc, epoch_seconds = [], [], []
    diverged_step = None
    last_good = model.get_weights()
    start = time.perf_counter()
    for _epoch in range(config.epochs):
        t0 = time.perf_counter()
        order = rng.permutation(len(labels))
        correct = seen = 0
        for b in range(0, len(order), config.batch_size):
            rows = np.sort(order[b:b + config.batch_size])
            stats = trainer.step(train_x[rows], labels[rows])
            steps["loss"].append(float(stats["loss"]))
            steps["grad_norm"].append(float(stats["grad_norm"]))
            steps["max_abs_state"].append(float(stats["max_abs_state"]))
            for g, n in zip(LAYER_GROUPS, stats["layer_norms"]):
                steps[f"{g}_grad_norm"].append(float(n))
            if not (np.isfinite(stats["loss"]) and np.isfinite(stats["grad_norm"])):
                diverged_step = len(steps["loss"]) - 1
                break
            correct += int(stats["correct"])
            seen += len(rows)
        epoch_seconds.append(time.perf_counter() - t0)
        if diverged_step is not None:
            break
        weights_finite = all(np.isfinite(w).all() for w in model.get_weights())
        if not weights_finite:
            diverged_step = len(steps["loss"])
            break
        last_good = model.get_weights()
        epoch_train_acc.append(correct / max(seen, 1))
        epoch_val_acc.append(steppers["val"].accuracy(task.val))
    wall = time.perf_counter() - start

    diverged = diverged_step is not None
    if diverged:
        model.set_weights(last_good)
    acc_last_good = steppers["test"].accuracy(task.test)
    return {
        "config": config.to_dict(),
        "diverged": diverged,
        "diverged_step": diverged_step,
        "test_acc": float("nan") if diverged else acc_last_good,
        "test_acc_last_good": acc_last_good,
        "epoch_train_acc": epoch_train_acc,
        "epoch_val_acc": epoch_val_acc,
        "steps": steps,
        "learning_rate": config.learning_rate,
        "chance": task.chance,
        "indexed": bool(indexed),
        "wall_time": wall,
        "seconds_per_epoch": float(np.mean(epoch_seconds)) if epoch_seconds else float("nan"),
    }
