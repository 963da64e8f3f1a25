"""The clipping chapter's pilots (:mod:`rnnbook.experiments.clipping`): where the setting
explodes, and how long a step each Keras clipping option really takes.

* :func:`explosion_search` raises the unclipped learning rate over a stated grid until at least
  half the pilot seeds **explode** (:func:`rnnbook.verdicts.exploded`: a gradient-norm spike of
  at least 10 times the median before it, or divergence). If no rate of the grid does, the
  clipping claims' premise is not met.
* :func:`measure_steps` replays the first updates of a run exactly (same seed, same fresh
  batches, same traced steps as :func:`rnnbook.criterion.train_to_criterion`) and records, per
  update, the global gradient norm before clipping, the norm of the gradient after Keras's
  clipping, its cosine with the raw gradient, the share of what was clipped (elements for
  ``clipvalue``, variables for ``clipnorm``, the whole gradient for ``global_clipnorm``) and the
  norm of the actual parameter update ``||theta_after - theta_before||`` (momentum included).
  :func:`step_table` summarises them per arm (medians over updates and seeds).

Example:
    >>> [round(float(x), 3) for x in clipped_gradient([np.array([3.0, 4.0])], "global_clipnorm", 1.0)[0]]
    [0.6, 0.8]
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from rnnbook import sweeps, verdicts
from rnnbook.training import TrainConfig

#: Share of the pilot seeds that must explode at a learning rate for it to be the exploding setting.
EXPLODE_SHARE = 0.5


# ----------------------------------------------------------------------------- the explosion pilot


def explosion_row(rate: float, runs: pd.DataFrame) -> dict:
    """One learning rate of the explosion search: runs, exploded runs, diverged runs and the
    peak spike ratios (:func:`rnnbook.verdicts.spike_ratio`) of its runs."""
    ratios = [verdicts.spike_ratio((r.get("steps") or {}).get("grad_norm") or []) for r in runs["record"]]
    exploded = [verdicts.exploded(r) for r in runs["record"]]
    finite = [x for x in ratios if math.isfinite(x)]
    return {"learning rate": float(rate), "runs": len(runs), "exploded": int(sum(exploded)),
            "diverged": int(sum(verdicts.failure_reason(r) == "diverged" for r in runs["record"])),
            "largest spike ratio": max(ratios) if ratios else math.nan,
            "median spike ratio": float(np.median(finite)) if finite else math.nan,
            "explodes": sum(exploded) >= EXPLODE_SHARE * len(runs) if len(runs) else False}


def explosion_search(rates, run_rate) -> tuple[pd.DataFrame, float, bool, pd.DataFrame]:
    """Try ``rates`` in increasing order; ``run_rate(rate) -> runs`` (one row per pilot seed, column
    ``record``) trains the unclipped setting at one rate. Stops at the first rate where at least
    :data:`EXPLODE_SHARE` of the runs explode.

    Returns ``(table, rate, met, runs)``: one :func:`explosion_row` per rate tried, the exploding
    rate (the largest rate tried when none explodes), whether one exploded (the premise), and the
    pilot's runs (column ``learning_rate``)."""
    rows, frames = [], []
    for rate in sorted({float(x) for x in rates}):
        runs = run_rate(rate)
        frames.append(runs.assign(learning_rate=rate))
        rows.append(explosion_row(rate, runs))
        if rows[-1]["explodes"]:
            break
    table = pd.DataFrame(rows)
    met = bool(table["explodes"].any())
    return table, float(table["learning rate"].iloc[-1]), met, pd.concat(frames, ignore_index=True)


def ratio_text(x: float) -> str:
    """A spike ratio for the page: ``"12.3"``, ``"infinite (a non-finite norm)"`` or, for runs with
    too few updates to have a median before them, ``"not measured (too few updates)"``."""
    x = float(x)
    if math.isnan(x):
        return "not measured (too few updates)"
    return "infinite (a non-finite norm)" if math.isinf(x) else f"{x:.3g}"


def premise_why(table: pd.DataFrame, n_seeds: int) -> str:
    """Markdown: why the premise was not met, with the measured ratios per rate."""
    parts = "; ".join(f"{r['learning rate']:g}: {r['exploded']} of {r['runs']} exploded, largest peak/median "
                      f"ratio {ratio_text(r['largest spike ratio'])}" for _, r in table.iterrows())
    return (f"No learning rate of the grid made at least {100 * EXPLODE_SHARE:.0f} % of the {n_seeds} pilot seeds "
            f"explode (a gradient-norm spike of at least {verdicts.SPIKE_FACTOR:g} times the median norm before it, or "
            f"divergence): {parts}. Clipping had no explosion to rescue.")


# ----------------------------------------------------------------------------- the measured step


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


def step_row(arm: str, config: TrainConfig, measured: list[dict], reference: float = math.nan) -> dict:
    """One row of the step-size table: the arm, its option, threshold and learning rate, and the
    medians over updates and seeds of the measured numbers."""
    update = median_step(measured)
    return {"arm": arm, "mode": config.clip_mode,
            "threshold": float(config.clip_threshold) if config.clip_mode != "none" else math.nan,
            "learning rate": float(config.learning_rate), "median update norm": update,
            "update / global_clipnorm's": update / reference if reference > 0 else math.nan,
            "median gradient norm": median_step(measured, "grad_norm"),
            "median clipped norm": median_step(measured, "clipped_norm"),
            "share clipped": median_step(measured, "clip_share", np.mean),
            "cosine with raw gradient": median_step(measured, "cosine"),
            "updates measured": int(sum(len(m.get("update_norm", [])) for m in measured))}
