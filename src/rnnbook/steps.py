"""The measured step: how long an update really is, per Keras clipping option.

:func:`measure_steps` replays the first updates of a run exactly (same seed, same fresh batches,
same traced steps as :func:`rnnbook.criterion.train_to_criterion`) and records, per update, the
global gradient norm before clipping, the norm of the gradient after Keras's clipping, its cosine
with the raw gradient, the share of what was clipped (elements for ``clipvalue``, variables for
``clipnorm``, the whole gradient for ``global_clipnorm``) and the norm of the actual parameter
update ``||theta_after - theta_before||`` (the optimiser's state included). Two runs whose median
updates lie within :data:`MATCH_TOLERANCE` of each other take the same measured step.

Example:
    >>> [round(float(x), 3) for x in clipped_gradient([np.array([3.0, 4.0])], "global_clipnorm", 1.0)[0]]
    [0.6, 0.8]
    >>> median_step([{"update_norm": [1.0, 3.0]}, {"update_norm": [2.0]}])
    2.0
    >>> step_matched(0.1, reference=2.0, own=1.0)
    0.2
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from rnnbook import reference, sweeps
from rnnbook.training import TrainConfig

#: Two median steps are the same measured step when they differ by at most this share.
MATCH_TOLERANCE = 0.1
#: A step-matched arm's measured median step is within :data:`MATCH_TOLERANCE` of the reference
#: step, or :data:`MATCH_ROUNDS` rescalings were spent (:func:`match_step`).
MATCH_ROUNDS = 3
#: The folder of the reference store (:func:`rnnbook.reference.store_dir`) with shipped steps.
STORE_FOLDER = "steps"


def clipped_gradient(grads, mode: str, threshold: float) -> list[np.ndarray]:
    """The gradients as Keras's clipping option ``mode`` leaves them (``clip_by_norm`` per variable,
    ``clip_by_global_norm``, element-wise ``clip``; ``tests/test_clipping_chapter.py`` checks it
    against :func:`rnnbook.clipping.keras_clipped`), in float64."""
    g = [np.asarray(x, np.float64) for x in grads]
    if mode == "clipnorm":
        return [x * (threshold / max(float(np.linalg.norm(x)), threshold)) for x in g]
    if mode == "global_clipnorm":
        norm = math.sqrt(sum(float(np.sum(x * x)) for x in g))
        return [x * (threshold / max(norm, threshold)) for x in g]
    if mode == "clipvalue":
        return [np.clip(x, -threshold, threshold) for x in g]
    return g


def clip_share(grads, mode: str, threshold: float) -> float:
    """What share the option clipped: elements above the threshold (``clipvalue``), variables whose
    norm is above it (``clipnorm``), 1 or 0 for the whole gradient (``global_clipnorm``), 0 without
    clipping."""
    g = [np.asarray(x, np.float64) for x in grads]
    if mode == "clipvalue":
        return float(np.mean(np.abs(np.concatenate([x.ravel() for x in g])) > threshold))
    if mode == "clipnorm":
        return float(np.mean([float(np.linalg.norm(x)) > threshold for x in g]))
    if mode == "global_clipnorm":
        return float(math.sqrt(sum(float(np.sum(x * x)) for x in g)) > threshold)
    return 0.0


def step_stats(grads, mode: str, threshold: float) -> dict:
    """Per-update numbers of :func:`measure_steps` that depend only on the raw gradient."""
    flat = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in grads])
    clipped = np.concatenate([x.ravel() for x in clipped_gradient(grads, mode, threshold)])
    norm, cnorm = float(np.linalg.norm(flat)), float(np.linalg.norm(clipped))
    return {"grad_norm": norm, "clipped_norm": cnorm, "cosine": float(flat @ clipped / (norm * cnorm))
            if norm > 0 and cnorm > 0 else math.nan, "clip_share": clip_share(grads, mode, threshold)}


def measure_steps(config: TrainConfig) -> dict:
    """The first ``config.max_updates`` updates of ``config``'s run, replayed exactly as
    :func:`rnnbook.criterion.train_to_criterion` trains them (same seed, fresh batches and traced
    steps), without checks. Per update: :func:`step_stats` and ``update_norm``, the norm of the
    change of every trainable variable. Stops at a non-finite gradient (the run's divergence)."""
    import tensorflow as tf

    from rnnbook import data, engine, runtime

    runtime.seed_everything(config.seed)
    task = config.task_data()
    parts = engine.prepare_run(config, task)
    trainer = parts.steppers["train"]
    batches = data.SequenceStream(task, config.seed)
    bank = task.train.bank
    out = {k: [] for k in ("grad_norm", "clipped_norm", "cosine", "clip_share", "update_norm")}
    for _ in range(int(config.max_updates)):
        index, labels = batches.next(config.batch_size)
        x = index if trainer.indexed else bank[index]
        y = tf.convert_to_tensor(np.asarray(labels, np.int64))
        grads, stats = trainer._call("grads", x, y, bank=trainer.bank)  # the traced step of Stepper.step
        if not (np.isfinite(float(stats["loss"])) and np.isfinite(float(stats["grad_norm"]))):
            break
        before = [v.numpy() for v in trainer.variables]
        trainer._apply(grads)
        change = math.sqrt(sum(float(np.sum((v.numpy().astype(np.float64) - b) ** 2))
                               for v, b in zip(trainer.variables, before)))
        for k, v in step_stats([g.numpy() for g in grads], config.clip_mode, config.clip_threshold).items():
            out[k].append(v)
        out["update_norm"].append(change)
    return out


def steps_of(config: TrainConfig, seeds, cache_dir=sweeps.RUNS_DIR) -> list[dict]:
    """:func:`measure_steps` of ``config`` at each seed, cached in the run cache."""
    return [sweeps.cached_call("clip-steps", measure_steps, dataclasses.replace(config, seed=int(s)),
                               cache_dir=cache_dir) for s in seeds]


def median_step(measured: list[dict], key: str = "update_norm", stat=np.median) -> float:
    """Median (or ``stat``) of ``key`` over every update of every measured run (NaN without one)."""
    values = np.asarray([v for m in measured for v in m.get(key, [])], float)
    values = values[np.isfinite(values)]
    return float(stat(values)) if values.size else math.nan


def stored_steps(config: TrainConfig, seeds) -> list[dict]:
    """:func:`measure_steps` of ``config`` at each seed, as the reference protocol keeps them:
    read from the store when shipped there (:func:`rnnbook.reference.stored_call`, folder
    :data:`STORE_FOLDER`); measured into it while the reference is computed (``rnnbook build
    --recompute``); otherwise measured into the run cache (:func:`steps_of`), so that a build
    never adds files to the shipped store."""
    writing = reference.mode() == "write"
    out = []
    for s in seeds:
        config_s = dataclasses.replace(config, seed=int(s))
        value = reference.stored_call(STORE_FOLDER, measure_steps, config_s, compute=writing)
        out.append(value if value is not None else steps_of(config_s, [s])[0])
    return out


def step_matched(value: float, reference: float, own: float) -> float:
    """``value`` (a threshold or a learning rate) rescaled so that a measured median update of
    ``own`` becomes ``reference``: the update of SGD (and, roughly, of Adam) is proportional to its
    learning rate, and to the threshold while the option clips. ``value`` unchanged when either
    step is not positive."""
    if not (reference > 0 and own > 0 and math.isfinite(reference) and math.isfinite(own)):
        return float(value)
    return float(value * reference / own)


def match_step(make, value: float, measured: list[dict], reference: float, measure, rounds: int = MATCH_ROUNDS,
               tolerance: float = MATCH_TOLERANCE) -> tuple[TrainConfig, list[dict]]:
    """The configuration ``make(x)`` whose measured median step is within ``tolerance`` (relative)
    of ``reference``: ``x`` starts at ``value`` (measured as ``measured``) and is rescaled by
    :func:`step_matched` up to ``rounds`` times (an option that clips only some updates or
    elements does not step in proportion to its threshold). Returns the configuration and its
    measurements (rounded to three significant digits, as the page shows it)."""
    config = make(value)
    for _ in range(rounds):
        own = median_step(measured)
        if not (own > 0 and reference > 0) or abs(own / reference - 1.0) <= tolerance:
            break
        value = float(f"{step_matched(value, reference, own):.3g}")
        config = make(value)
        measured = measure(config)
    return config, measured
