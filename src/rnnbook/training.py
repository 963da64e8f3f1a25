"""Train one configuration and return a tidy record of everything the chapters plot.

The record holds the per-step loss, the global gradient norm *before* clipping,
the gradient norm of each layer (encoder, recurrent, head), the largest absolute
hidden state, the per-epoch training and validation accuracy, the test accuracy,
the learning rate and the wall time. A run whose loss or gradient norm turns NaN
or Inf stops there and is recorded as diverged at that step; it never raises.

Example:
    >>> cfg = TrainConfig(seq_len=10, n_train=128, n_val=32, n_test=32, epochs=1, units=16)
    >>> record = train(cfg)  # doctest: +SKIP
    >>> sorted(record)[:3]  # doctest: +SKIP
    ['chance', 'config', 'diverged']
"""
from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from rnnbook import clipping, data, models, runtime, synthetic
from rnnbook.choices import (CELLS, ENCODER_INITS, FEATURE_NORMS, LSTM_BIAS_INITS, OPTIMIZERS,
                              RECURRENT_INITIALIZERS, check_choice)
from rnnbook.engine import log_step, new_step_log, prepare_run


class ConfigError(ValueError):
    """A training configuration that cannot run; the message names the field and the choices."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run (the seed included).

    ``batch_size`` defaults to 128 for the engine, the benchmark and the chapters alike: a
    batch draws its frames from about 1,080 training images, so the CNN-once-per-distinct-image
    saving grows with the batch (at T = 100 a batch of 128 holds 12,800 frames, about 12 per
    distinct image; a batch of 64 about 6), so a step costs little more than at 64 while an
    epoch of 1,000 to 2,000 sequences still takes 8 to 16 updates.
    """

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
    # the LSTM's initial biases: "keras" (unit_forget_bias=True) or "chrono" (Tallec & Ollivier 2018),
    # whose horizon chrono_tmax defaults to seq_len (see chrono_horizon)
    lstm_bias_init: str = "keras"
    chrono_tmax: int | None = None
    # optimisation
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    clip_mode: str = "none"
    clip_threshold: float = 1.0
    epochs: int = 5
    batch_size: int = 128
    seed: int = 0
    # the CNN-to-RNN interface (rnnbook.experiments.relu.interface names its levels): the convolution kernels'
    # initializer (Keras's default glorot_uniform, or he_uniform), a LayerNorm on the features ("none" or
    # "layer_norm"), a fixed factor on the features entering the recurrent layer, and the gain of its
    # Glorot-uniform input kernel
    encoder_init: str = "glorot_uniform"
    feature_norm: str = "none"
    feature_scale: float = 1.0
    input_gain: float = 1.0
    # train to a criterion (see rnnbook.criterion): set max_updates to use it instead of epochs
    max_updates: int | None = None
    check_every: int = 25
    target_acc: float = 0.9
    stream: str = "fresh"
    loss_blowup: float = 10.0
    # synthetic tasks ("adding", "temporal_order"; rnnbook.synthetic): input kernel N(0, input_std), None: Glorot
    input_std: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "conv_filters", tuple(int(f) for f in self.conv_filters))
        try:
            self.validate()
        except (data.DataError, models.ModelError, clipping.ClipError, synthetic.SyntheticError) as exc:
            raise ConfigError(str(exc)) from None

    def validate(self) -> None:
        """Check every field before any training starts."""
        if self.is_synthetic:
            self.task_data()  # checks seq_len for the task
            if self.max_updates is None:
                raise ConfigError(f"task={self.task!r} trains on fresh batches to a criterion: set max_updates")
            if self.input_std is not None and not (math.isfinite(self.input_std) and self.input_std > 0):
                raise ConfigError(f"input_std={self.input_std!r} must be a positive number (None: Glorot-uniform)")
        else:
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
        for name in ("feature_scale", "input_gain"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name}={value!r} must be a positive number")
        check_choice("encoder_init", self.encoder_init, ENCODER_INITS, ConfigError)
        check_choice("feature_norm", self.feature_norm, FEATURE_NORMS, ConfigError)
        check_choice("lstm_bias_init", self.lstm_bias_init, LSTM_BIAS_INITS, ConfigError)
        if self.lstm_bias_init != "keras" and self.cell != "lstm":
            raise ConfigError(f"lstm_bias_init={self.lstm_bias_init!r} applies to cell='lstm' only, not {self.cell!r}")
        if self.chrono_tmax is not None and (isinstance(self.chrono_tmax, bool) or not isinstance(
                self.chrono_tmax, (int, np.integer)) or self.chrono_tmax < 2):
            raise ConfigError(f"chrono_tmax={self.chrono_tmax!r} must be an integer >= 2 (None: seq_len)")
        if self.max_updates is not None:
            from rnnbook import criterion

            criterion.check(self, ConfigError)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["conv_filters"] = list(self.conv_filters)
        return d

    @property
    def is_synthetic(self) -> bool:
        """True for the vector tasks of :mod:`rnnbook.synthetic` (no CNN, fresh generated batches)."""
        return self.task in synthetic.TASKS

    def task_data(self, data_dir=data.DATA_DIR) -> data.TaskData | synthetic.SyntheticTask:
        """The task's sequences (generated once, then reused from ``data_dir``), or the
        :class:`rnnbook.synthetic.SyntheticTask` of a synthetic task."""
        if self.is_synthetic:
            return synthetic.SyntheticTask(self.task, self.seq_len)
        return data.make_task(self.task, self.seq_len, self.lag, self.n_train, self.n_val, self.n_test,
                              self.seed, self.target_digit, self.max_count, data_dir=data_dir)

    @property
    def chrono_horizon(self) -> int | None:
        """The chrono LSTM's horizon T_max (``chrono_tmax``, else ``seq_len``); None for other biases."""
        if self.lstm_bias_init != "chrono":
            return None
        return int(self.chrono_tmax) if self.chrono_tmax is not None else max(int(self.seq_len), 2)

    def model(self, num_classes: int) -> models.SequenceClassifier:
        lstm = {"lstm_bias_init": self.lstm_bias_init, "chrono_tmax": self.chrono_horizon}
        if self.is_synthetic:
            return models.build_vector_model(self.cell, self.units, self.activation, self.recurrent_initializer,
                                             self.recurrent_gain, self.task_data().n_features, num_classes,
                                             self.seed, self.input_std, **lstm)
        return models.build_model(self.cell, self.units, self.activation, self.recurrent_initializer,
                                  self.recurrent_gain, self.conv_filters, num_classes, self.seed,
                                  feature_scale=self.feature_scale, encoder_init=self.encoder_init,
                                  feature_norm=self.feature_norm, input_gain=self.input_gain, **lstm)


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
    if config.max_updates is not None:
        from rnnbook import criterion

        return criterion.train_to_criterion(config, task=task, fast=fast, data_dir=data_dir)
    runtime.seed_everything(config.seed)
    task = config.task_data(data_dir) if task is None else task
    indexed = fast and task.train.indexed
    parts = prepare_run(config, task, fast)
    model, steppers = parts.model, parts.steppers
    trainer = steppers["train"]
    rng = np.random.default_rng([config.seed, 7])
    train_x = task.train.index if indexed else task.train.frames()
    labels = task.train.labels

    steps = new_step_log()
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
            log_step(steps, stats)
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
