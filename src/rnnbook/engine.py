"""The training engine: the compiled steps of one model, and the reuse of models across runs.

:class:`Stepper` holds a model's traced training and evaluation steps (the CNN once per distinct
image of a batch, the recurrence of :mod:`rnnbook.recurrence`); :func:`prepare_run` gives a run
its model, optimizer and steppers, reusing those of an earlier run of the same layout
(:data:`RUN_FIELDS`); :func:`new_step_log` and :func:`log_step` keep the per-update statistics.
Both kinds of run drive it: :func:`rnnbook.training.train` (epochs) and
:func:`rnnbook.criterion.train_to_criterion` (to a criterion).
"""
from __future__ import annotations

import collections
import dataclasses

import keras
import numpy as np
import tensorflow as tf

from rnnbook import clipping, data, models, recurrence, synthetic

#: The layer groups whose gradient norms every step reports.
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
              "n_train", "n_val", "n_test", "target_digit", "max_count", "epochs", "batch_size",
              # the fields of a run to a criterion (rnnbook.criterion)
              "max_updates", "check_every", "target_acc", "stream", "loss_blowup")
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


def prepare_run(config, task: data.TaskData, fast: bool = True) -> RunParts:
    """The model (initialised for ``config``'s seed, initializer and gain, exactly as a fresh
    :meth:`rnnbook.training.TrainConfig.model`), a fresh optimizer state and the steppers of one
    run of ``config`` (a :class:`rnnbook.training.TrainConfig`).

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
