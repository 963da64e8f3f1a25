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

import collections
import dataclasses
import math
import time

import keras
import numpy as np
import tensorflow as tf

from rnnbook import clipping, data, models, recurrence, runtime, synthetic
from rnnbook.choices import (CELLS, ENCODER_INITS, FEATURE_NORMS, LSTM_BIAS_INITS, OPTIMIZERS,
                              RECURRENT_INITIALIZERS, check_choice)


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

            criterion.check(self)

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



#: The fields of a criterion run (:mod:`rnnbook.criterion`), unused when ``max_updates`` is None.
CRITERION_FIELDS = ("max_updates", "check_every", "target_acc", "stream", "loss_blowup")

LAYER_GROUPS = ("encoder", "rnn", "head")


class Stepper:
    """Compiled training and evaluation steps for one model.

    ``indexed=True`` takes batches of indices into an image bank (the CNN runs once per
    distinct image); otherwise batches of dense frames (the general path). ``bank`` is the
    bank of :meth:`step` and :meth:`loss_and_grads`; :meth:`accuracy` reads each split's
    own bank, so one evaluation stepper serves validation and test. The bank is an
    argument of the traced steps, and each step is traced once per frame layout (T) with
    any batch size, so nothing retraces within a run or across runs of the same shapes.
    ``fast=True`` runs the recurrent head through :mod:`rnnbook.recurrence`; False uses
    the Keras layer as is.
    """

    #: Evaluate forward only, from the last state (False: the training forward pass without its
    #: gradient, the reference the tests compare the checks' decisions with).
    forward_only = True

    def __init__(self, model, optimizer, indexed: bool, bank: np.ndarray | None = None, fast: bool = True,
                 regression: bool = False):
        """``optimizer=None`` gives an evaluation-only stepper. ``regression=True``: one output, MSE
        loss, and a sequence counts as correct when its squared error is at most
        :data:`rnnbook.synthetic.ADDING_WRONG_SQUARED_ERROR` (Pascanu et al.'s rule)."""
        self.model, self.optimizer, self.indexed, self.fast = model, optimizer, indexed, fast
        self.regression = regression
        self._bank_tensors: dict[int, tuple] = {}
        self.bank = bank if indexed else None
        self.variables = model.trainable_variables
        self.groups = [[v for v in getattr(model, g).trainable_variables] for g in LAYER_GROUPS]
        self.loss_fn = (_mse if regression else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        self._target_dtype = tf.float32 if regression else tf.int64
        if optimizer is not None:
            optimizer.build(self.variables)
        self._traced: dict[tuple, tf.types.experimental.GenericFunction] = {}
        self._apply = tf.function(self._apply_impl, autograph=False)  # (no Python control flow on tensors)

    def _bank_tensor(self, bank):
        """``bank`` as a tensor, converted once per array."""
        if bank is None:
            return None
        held = self._bank_tensors.get(id(bank))
        if held is None or held[0] is not bank:
            if len(self._bank_tensors) > 8:
                self._bank_tensors.clear()
            held = self._bank_tensors[id(bank)] = (bank, tf.constant(bank, tf.float32))
        return held[1]

    def _inputs(self, x):
        return tf.convert_to_tensor(np.asarray(x, np.int32 if self.indexed else np.float32))

    def _function(self, kind: str, x):
        """The traced ``grads`` or ``logits`` step for inputs shaped like ``x`` (any batch size)."""
        key = (kind, tuple(x.shape[1:]))
        fn = self._traced.get(key)
        if fn is None:
            specs = [tf.TensorSpec((None, *x.shape[1:]), x.dtype)]
            if kind == "grads":
                specs.append(tf.TensorSpec((None,), self._target_dtype))
            if self.indexed:
                specs.append(tf.TensorSpec((None, *self.model.frame_shape), tf.float32))
            impl = self._grads_impl if kind == "grads" else self._logits_impl
            fn = self._traced[key] = tf.function(impl if self.indexed else (lambda *a: impl(*a, None)),
                                                 input_signature=specs, autograph=False)
        return fn

    def tracing_count(self) -> int:
        """How many times this stepper's steps were traced (each should be once per T)."""
        fns = list(self._traced.values()) + [self._apply]
        return sum(f.experimental_get_tracing_count() for f in fns)

    def forward(self, x, training, bank=None):
        """``(logits, states)`` of a batch of indices (indexed) or dense frames."""
        if self.indexed:
            bank = self._bank_tensor(self.bank) if bank is None else bank
            return self.model.forward_indexed(x, bank, training=training, fast=self.fast)
        return self.model.forward(self.model.features(x, training=training), training=training, fast=self.fast)

    def loss_and_grads(self, x, y, bank=None):
        """Loss, gradients and hidden states of one batch (no update)."""
        with tf.GradientTape() as tape:
            logits, states = self.forward(x, True, bank)
            loss = self.loss_fn(y, logits)
        return loss, tape.gradient(loss, self.variables), logits, states

    def _grads_impl(self, x, y, bank):
        loss, grads, logits, states = self.loss_and_grads(x, y, bank)
        ids = {id(v): g for v, g in zip(self.variables, grads)}
        layer_norms = tf.stack([tf.linalg.global_norm([ids[id(v)] for v in group]) for group in self.groups])
        if self.regression:
            ok = tf.square(logits[:, 0] - y) <= synthetic.ADDING_WRONG_SQUARED_ERROR
        else:
            ok = tf.equal(tf.argmax(logits, -1), tf.cast(y, tf.int64))
        correct = tf.reduce_sum(tf.cast(ok, tf.int32))
        stats = {"loss": loss, "grad_norm": tf.linalg.global_norm(grads), "layer_norms": layer_norms,
                 "max_abs_state": tf.reduce_max(tf.abs(states)), "correct": correct}
        return grads, stats

    def _apply_impl(self, grads):
        self.optimizer.apply_gradients(zip(grads, self.variables))

    def _logits_impl(self, x, bank):
        """Inference logits. With the fast recurrence, forward only and from the last state: the
        CNN and input projections once per distinct image of the whole batch (indexed), then
        :func:`rnnbook.recurrence.final_state`, which keeps no per-step state."""
        model, rnn = self.model, self.model.rnn
        if not (self.fast and self.forward_only and recurrence.is_fast(rnn)):
            return self.forward(x, False, bank)[0]
        if self.indexed:
            distinct, position = tf.unique(tf.reshape(tf.transpose(x), [-1]))  # time-major order
            projected = recurrence.input_projection(rnn.cell, model.encoder(tf.gather(bank, distinct), training=False))
            last = recurrence.final_state(rnn.cell, projected, tf.reshape(position, [x.shape[1], -1]))
        else:
            features = tf.transpose(model.features(x, training=False), [1, 0, 2])
            last = recurrence.final_state(rnn.cell, recurrence.input_projection(rnn.cell, features))
        return model.head(last, training=False)

    def _call(self, kind, x, *rest, bank=None):
        x = self._inputs(x)
        args = [x, *rest] + ([self._bank_tensor(bank)] if self.indexed else [])
        return self._function(kind, x)(*args)

    def step(self, x, y) -> dict:
        """One update on ``self.bank``; returns the step's statistics as Python numbers.
        A non-finite loss or gradient norm leaves the weights unchanged."""
        y = tf.convert_to_tensor(np.asarray(y, self._target_dtype.as_numpy_dtype))
        grads, stats = self._call("grads", x, y, bank=self.bank)
        stats = {k: v.numpy() for k, v in stats.items()}
        if np.isfinite(stats["loss"]) and np.isfinite(stats["grad_norm"]):
            self._apply(grads)
        return stats

    def logits(self, x, bank=None) -> np.ndarray:
        """Inference logits of a batch (indices into ``bank``, default ``self.bank``, or frames)."""
        return self._call("logits", x, bank=self.bank if bank is None else bank).numpy()

    def accuracy(self, split: data.SequenceSet, batch_size: int = 4096) -> float:
        """Share of sequences of ``split`` classified correctly (NaN logits count as wrong)."""
        source = split.index if self.indexed else split.frames()
        correct = 0
        for start in range(0, len(split), batch_size):
            logits = self.logits(source[start:start + batch_size], split.bank)
            ok = np.isfinite(logits).all(axis=1) & (logits.argmax(1) == split.labels[start:start + batch_size])
            correct += int(ok.sum())
        return correct / len(split)

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 4096) -> dict:
        """``{"accuracy", "loss"}`` on dense arrays ``x``, ``y`` (a synthetic task's held-out set):
        accuracy as in the training step (NaN outputs count as wrong), loss the mean MSE or
        cross-entropy."""
        out = np.concatenate([self.logits(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
        if self.regression:
            err = (out[:, 0].astype(np.float64) - y) ** 2
            return {"accuracy": float(np.mean(err <= synthetic.ADDING_WRONG_SQUARED_ERROR)),
                    "loss": float(np.mean(err))}
        ok = np.isfinite(out).all(axis=1) & (out.argmax(1) == y)
        z = out.astype(np.float64) - out.max(axis=1, keepdims=True)
        loss = np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]
        return {"accuracy": float(np.mean(ok)), "loss": float(np.mean(loss))}


def _mse(y, outputs):
    """Mean squared error of a one-output regression (targets ``(B,)``, outputs ``(B, 1)``)."""
    return tf.reduce_mean(tf.square(outputs[:, 0] - y))


def steppers_for(model, optimizer, task: data.TaskData, fast: bool = True) -> dict:
    """The train, validation and test steppers of one run (indexed when the data allow it);
    validation and test share one evaluation stepper (one traced step)."""
    if isinstance(task, synthetic.SyntheticTask):
        evaluator = Stepper(model, None, False, fast=fast, regression=task.is_regression)
        return {"train": Stepper(model, optimizer, False, fast=fast, regression=task.is_regression),
                "val": evaluator, "test": evaluator}
    indexed = fast and task.train.indexed
    evaluator = Stepper(model, None, indexed, task.val.bank if indexed else None, fast=fast)
    return {"train": Stepper(model, optimizer, indexed, task.train.bank if indexed else None, fast=fast),
            "val": evaluator, "test": evaluator}


#: Fields that change only a run's initial weights, learning rate, data or schedule, never its model's
#: shapes or traced steps: runs that differ only in these reuse one model, optimizer and steppers.
RUN_FIELDS = ("seed", "recurrent_initializer", "recurrent_gain", "learning_rate", "task", "seq_len", "lag",
              "n_train", "n_val", "n_test", "target_digit", "max_count", "epochs", "batch_size", *CRITERION_FIELDS)
#: How many model layouts stay ready for reuse (least recently used dropped first).
READY_LAYOUTS = 6
_ready: collections.OrderedDict = collections.OrderedDict()


@dataclasses.dataclass
class RunParts:
    """The model, optimizer and steppers of a run, and the optimizer's initial state."""

    model: models.SequenceClassifier
    optimizer: keras.optimizers.Optimizer
    steppers: dict
    optimizer_state: list


def prepare_run(config: TrainConfig, task: data.TaskData, fast: bool = True) -> RunParts:
    """The model (initialised for ``config``'s seed, initializer and gain, exactly as a fresh
    :meth:`TrainConfig.model`), a fresh optimizer state and the steppers of one run.

    A run whose configuration differs from an earlier one only in :data:`RUN_FIELDS` reuses
    its model, optimizer and traced steps: the weights are re-initialised and the optimizer
    state reset instead of rebuilding and retracing.
    """
    indexed = fast and not isinstance(task, synthetic.SyntheticTask) and task.train.indexed
    layout = {k: v for k, v in config.to_dict().items() if k not in RUN_FIELDS}
    key = (repr(sorted(layout.items())), task.num_classes, indexed, fast, getattr(task, "n_features", None))
    parts = _ready.pop(key, None)
    if parts is None:
        model = config.model(task.num_classes)
        optimizer = clipping.make_optimizer(config.optimizer, config.learning_rate, config.clip_mode,
                                            config.clip_threshold, config.momentum)
        steppers = steppers_for(model, optimizer, task, fast)
        parts = RunParts(model, optimizer, steppers, [v.numpy() for v in optimizer.variables])
    else:
        models.reinitialize(parts.model, config.seed, config.recurrent_initializer, config.recurrent_gain,
                            chrono_tmax=config.chrono_horizon)
        for variable, value in zip(parts.optimizer.variables, parts.optimizer_state):
            variable.assign(value)
        parts.optimizer.learning_rate = config.learning_rate
        parts.steppers["train"].bank = task.train.bank if indexed else None
    _ready[key] = parts
    while len(_ready) > READY_LAYOUTS:
        _ready.popitem(last=False)
    return parts


def new_step_log() -> dict[str, list]:
    """Empty per-update statistics: loss, gradient norms (global and per layer group), largest state."""
    return {k: [] for k in ("loss", "grad_norm", "max_abs_state", *[f"{g}_grad_norm" for g in LAYER_GROUPS])}


def log_step(steps: dict[str, list], stats: dict) -> None:
    """Append one update's statistics (from :meth:`Stepper.step`) to ``steps``."""
    steps["loss"].append(float(stats["loss"]))
    steps["grad_norm"].append(float(stats["grad_norm"]))
    steps["max_abs_state"].append(float(stats["max_abs_state"]))
    for g, n in zip(LAYER_GROUPS, stats["layer_norms"]):
        steps[f"{g}_grad_norm"].append(float(n))


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
