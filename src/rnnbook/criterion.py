"""Train to a criterion with a cap: the protocol of the book's trained comparisons.

A run of a :class:`rnnbook.training.TrainConfig` with ``max_updates`` set:

* draws **fresh sequences for every batch** from the training image bank
  (``stream="fresh"``, :class:`rnnbook.data.SequenceStream`), or cycles through the fixed
  training set (``stream="fixed"``, to show memorisation);
* checks the validation accuracy every ``check_every`` updates and stops at the first check
  at or above ``target_acc``: a **success**, with its number of updates;
* stops at ``max_updates`` without success: **censored** (the budget ran out; that is not
  "at chance", and the record keeps every check so a reader can see where it was);
* stops as **diverged** when the loss or gradient turns NaN/Inf, the weights turn non-finite,
  or the mean loss over the last ``check_every`` updates exceeds ``loss_blowup`` times the
  first update's loss. The rule is the same for every activation: a bounded tanh state cannot
  overflow, but its loss can still blow up.

The synthetic vector tasks (``task="adding"`` or ``"temporal_order"``, :mod:`rnnbook.synthetic`)
run through the same loop: a fresh seeded batch per update, held-out sets of ``n_val`` and
``n_test`` generated sequences, and for the adding problem "accuracy" is the share of sequences
with squared error at most 0.04 (Pascanu et al.'s rule), so ``target_acc=0.99`` is their criterion.

The record has the fields of :func:`rnnbook.training.train` (so sweeps and caches treat both
alike) plus ``outcome``, ``updates``, ``updates_to_success``, ``sequences_seen``,
``failure_reason``, ``initial_loss``, ``test_loss`` (NaN for the image tasks) and the checks
(``check_updates``, ``check_val_acc``, ``check_train_acc``, ``check_val_loss``). After a
divergence the weights of the last good check are restored and give ``test_acc_last_good``.

Example:
    >>> from rnnbook.training import TrainConfig, train
    >>> cfg = TrainConfig(seq_len=4, lag=3, n_train=64, n_val=32, n_test=32, units=8,
    ...                   max_updates=4, check_every=2, target_acc=1.0, batch_size=16)
    >>> record = train(cfg)                                       # doctest: +SKIP
    >>> record["outcome"], record["updates"]                      # doctest: +SKIP
    ('censored', 4)
"""
from __future__ import annotations

import math
import time

import numpy as np

from rnnbook import data, runtime, synthetic

#: How a criterion run ends.
OUTCOMES = ("success", "censored", "diverged")
#: Where the training batches come from.
STREAMS = ("fresh", "fixed")


def check(config, error: type[Exception] = ValueError) -> None:
    """Raise ``error`` (:meth:`rnnbook.training.TrainConfig.validate` passes its ``ConfigError``)
    for criterion fields that cannot run."""
    from rnnbook.choices import check_choice

    for name in ("max_updates", "check_every"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise error(f"{name}={value!r} must be a positive integer")
    if not (isinstance(config.target_acc, (int, float)) and 0 < config.target_acc <= 1):
        raise error(f"target_acc={config.target_acc!r} must be a validation accuracy in (0, 1]")
    if not (isinstance(config.loss_blowup, (int, float)) and math.isfinite(config.loss_blowup)
            and config.loss_blowup > 1):
        raise error(f"loss_blowup={config.loss_blowup!r} must be a finite number above 1")
    check_choice("stream", config.stream, STREAMS, error)


class _FixedBatches:
    """Batches that cycle through a fixed training set, reshuffled every pass."""

    def __init__(self, split: data.SequenceSet, seed: int):
        self.split, self.rng, self.order = split, np.random.default_rng([int(seed), 7]), np.empty(0, int)

    def next(self, batch_size: int):
        if self.order.size < batch_size:
            self.order = np.concatenate([self.order, self.rng.permutation(len(self.split))])
        rows, self.order = np.sort(self.order[:batch_size]), self.order[batch_size:]
        return self.split.index[rows], self.split.labels[rows]


def train_to_criterion(config, task: data.TaskData | None = None, fast: bool = True,
                       data_dir=data.DATA_DIR) -> dict:
    """Train ``config`` (``max_updates`` set) to its criterion; return the record (module docstring)."""
    from rnnbook import engine, models

    runtime.seed_everything(config.seed)
    task = config.task_data(data_dir) if task is None else task
    model, steppers, batches, feed, evaluate = (_synthetic_run if isinstance(task, synthetic.SyntheticTask)
                                                else _image_run)(config, task, fast)
    trainer = steppers["train"]

    steps = engine.new_step_log()
    checks = {"check_updates": [], "check_val_acc": [], "check_train_acc": [], "check_val_loss": [],
              "check_feature_rms": []}
    probe = getattr(getattr(task, "val", None), "bank", None)  # images of a fixed validation batch
    initial_feature_rms = models.feature_rms(model, probe)
    outcome, reason, initial_loss = "censored", None, math.nan
    last_good, correct, seen = model.get_weights(), 0, 0
    start = time.perf_counter()
    for update in range(1, config.max_updates + 1):
        index, labels = batches.next(config.batch_size)
        stats = trainer.step(feed(index), labels)
        engine.log_step(steps, stats)
        loss = float(stats["loss"])
        if not (np.isfinite(loss) and np.isfinite(stats["grad_norm"])):
            outcome, reason = "diverged", "non-finite loss or gradient"
            break
        if update == 1:
            initial_loss = loss
        correct, seen = correct + int(stats["correct"]), seen + len(labels)
        recent = float(np.mean(steps["loss"][-config.check_every:]))
        if recent > config.loss_blowup * initial_loss:
            outcome, reason = "diverged", f"loss above {config.loss_blowup:g} x its initial value"
            break
        if update % config.check_every and update != config.max_updates:
            continue
        if not all(np.isfinite(w).all() for w in model.get_weights()):
            outcome, reason = "diverged", "non-finite weights"
            break
        last_good = model.get_weights()
        val, val_loss = evaluate("val")
        checks["check_val_loss"].append(val_loss)
        checks["check_updates"].append(update)
        checks["check_val_acc"].append(val)
        checks["check_train_acc"].append(correct / max(seen, 1))
        checks["check_feature_rms"].append(models.feature_rms(model, probe))
        correct = seen = 0
        if val >= config.target_acc:
            outcome = "success"
            break
    wall = time.perf_counter() - start
    updates = len(steps["loss"])
    diverged = outcome == "diverged"
    if diverged:
        model.set_weights(last_good)
    test, test_loss = evaluate("test")
    return {
        "config": config.to_dict(),
        "outcome": outcome,
        "diverged": diverged,
        "diverged_step": updates - 1 if diverged else None,
        "failure_reason": reason,
        "updates": updates,
        "updates_to_success": updates if outcome == "success" else None,
        "sequences_seen": updates * config.batch_size,
        "initial_loss": initial_loss,
        "initial_feature_rms": initial_feature_rms,
        "test_acc": float("nan") if diverged else test,
        "test_acc_last_good": test,
        "test_loss": float("nan") if diverged else test_loss,
        "epoch_train_acc": checks["check_train_acc"],
        "epoch_val_acc": checks["check_val_acc"],
        **checks,
        "steps": steps,
        "learning_rate": config.learning_rate,
        "chance": task.chance,
        "indexed": bool(trainer.indexed),
        "wall_time": wall,
        "seconds_per_epoch": wall / max(len(checks["check_updates"]), 1),
    }


def _image_run(config, task: data.TaskData, fast: bool):
    """``(model, steppers, batches, feed, evaluate)`` of a digit-sequence task: batches of bank
    indices (fresh or fixed), fed as indices or frames; ``evaluate(split) -> (accuracy, NaN)``."""
    from rnnbook import engine

    if not task.train.indexed:
        raise data.DataError("training to a criterion needs a generated digit task (bank indices)")
    parts = engine.prepare_run(config, task, fast)  # reuses the model and traced steps of a like run
    model, steppers = parts.model, parts.steppers
    batches = (data.SequenceStream(task, config.seed) if config.stream == "fresh"
               else _FixedBatches(task.train, config.seed))
    bank = task.train.bank
    feed = (lambda index: index) if steppers["train"].indexed else (lambda index: bank[index])
    splits = {"val": task.val, "test": task.test}
    return model, steppers, batches, feed, lambda split: (steppers[split].accuracy(splits[split]), math.nan)


def _synthetic_run(config, task: synthetic.SyntheticTask, fast: bool):
    """``(model, steppers, batches, feed, evaluate)`` of a synthetic vector task: a fresh seeded batch
    per update (:meth:`rnnbook.synthetic.SyntheticTask.stream`), held-out sets of ``n_val`` and
    ``n_test`` sequences; ``evaluate(split) -> (accuracy, loss)``. The model, optimizer and traced
    steps are reused across runs of the same layout (:func:`rnnbook.engine.prepare_run`)."""
    from rnnbook import engine

    if config.stream != "fresh":
        raise data.DataError(f"task={config.task!r} has no fixed training set; use stream='fresh'")
    parts = engine.prepare_run(config, task, fast)
    held = {"val": task.held_out(config.seed, config.n_val, "val"),
            "test": task.held_out(config.seed, config.n_test, "test")}

    def evaluate(split):
        out = parts.steppers[split].evaluate(*held[split])
        return out["accuracy"], out["loss"]

    return parts.model, parts.steppers, task.stream(config.seed), (lambda x: x), evaluate


def encoder_ceiling(conv_filters=(16, 32), seed: int = 0, epochs: int = 30, batch_size: int = 64,
                    feature_scale: float = 1.0) -> dict:
    """The book's CNN alone, trained to classify single digit images (Adam, the training split's
    images) and tested on the test split's images: the accuracy a recall model can at best reach,
    since it must read the remembered frame with the same kind of CNN.

    Returns ``{"test_acc", "train_acc", "epochs", "n_train_images", "n_test_images"}``.
    """
    import keras

    from rnnbook import models

    runtime.seed_everything(seed)
    images, digits = data.digit_bank()
    split = data.bank_split()
    encoder = models.build_encoder(conv_filters, seed=seed, feature_scale=feature_scale)
    model = keras.Sequential([encoder, keras.layers.Dense(10, kernel_initializer=keras.initializers.GlorotUniform(
        seed=seed + 3))])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    tr, te = split["train"], split["test"]
    history = model.fit(images[tr], digits[tr], epochs=int(epochs), batch_size=int(batch_size), verbose=0,
                        shuffle=True)
    _, test_acc = model.evaluate(images[te], digits[te], verbose=0)
    return {"test_acc": float(test_acc), "train_acc": float(history.history["accuracy"][-1]),
            "epochs": int(epochs), "n_train_images": int(tr.size), "n_test_images": int(te.size)}


def ceiling_of(config) -> dict:
    """:func:`encoder_ceiling` for a :class:`rnnbook.training.TrainConfig`'s CNN (``conv_filters``),
    ``seed`` and ``epochs``: the form :func:`rnnbook.sweeps.cached_call` caches."""
    return encoder_ceiling(config.conv_filters, seed=config.seed, epochs=config.epochs)
