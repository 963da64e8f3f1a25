"""The clipping chapter's pilots (:mod:`rnnbook.experiments.clipping`): where the setting
explodes, and how long a step each Keras clipping option really takes.

* :func:`explosion_search` raises the unclipped learning rate over a stated grid until at least
  half the pilot seeds **explode** (:func:`rnnbook.verdicts.exploded`: a gradient-norm spike of
  at least 10 times the median before it, or divergence). If no rate of the grid does, the
  clipping claims' premise is not met.
* the measured step of each option comes from :mod:`rnnbook.steps` (:func:`measure_steps`,
  re-exported here); :func:`step_row` summarises it per arm (medians over updates and seeds).

Example:
    >>> [round(float(x), 3) for x in clipped_gradient([np.array([3.0, 4.0])], "global_clipnorm", 1.0)[0]]
    [0.6, 0.8]
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rnnbook import verdicts
from rnnbook.steps import (clip_share, clipped_gradient, measure_steps, median_step,  # noqa: F401 (the chapter's API)
                           step_stats, steps_of)
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
