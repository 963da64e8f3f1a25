"""Collapses: a run that learned and then lost what it learned, one rule for every run.

Pascanu et al. (2013) describe what an exploding gradient does to training: a trajectory that
meets one of the error surface's high-curvature "walls" takes a huge step and is thrown back,
and what it had learned is lost. On the book's recall task that shows as a run whose validation
accuracy climbs well above chance and then falls back. This module says, from a run's record
(:func:`rnnbook.criterion.train_to_criterion`, full or compact: :func:`rnnbook.reference.compact`),
whether and where that happened:

* A run **collapses** at the first validation check whose accuracy lies more than :data:`DROP`
  (absolute) below the best accuracy of the checks before it, provided that best beat chance by
  three binomial standard errors on the validation set (:func:`rnnbook.verdicts.above_chance`):
  a run wandering at chance cannot lose what it never learned.
* A run that **diverged** (NaN or Inf, non-finite weights, loss blow-up) after some check beat
  chance that way collapsed too, at the update where it diverged.
* The **gradient norm at the collapse** is the largest global gradient norm of the updates since
  the previous check (``check_grad_norm_max``), the interval in which the accuracy was lost.

:func:`pilot_norm` gives Pascanu et al.'s "average norm" (§3.2) from a set of runs' first updates,
the quantity a clipping threshold is a multiple of.

Example:
    >>> rec = {"check_updates": [25, 50, 75, 100], "check_val_acc": [0.3, 0.78, 0.7, 0.3],
    ...        "check_grad_norm_max": [1.0, 2.0, 3.0, 40.0], "chance": 0.1, "config": {"n_val": 2000}}
    >>> c = collapse(rec)
    >>> c.collapsed, c.update, c.grad_norm, round(c.drop, 2)
    (True, 100, 40.0, 0.48)
    >>> collapse(dict(rec, check_val_acc=[0.3, 0.78, 0.7, 0.65])).collapsed
    False
"""
from __future__ import annotations

import math
from typing import Iterable, NamedTuple

import numpy as np

from rnnbook import verdicts

#: A collapse: the validation accuracy falls more than this (absolute) below the run's best so far.
DROP = 0.2
#: The ways a run collapses (:attr:`Collapse.how`).
HOW = ("accuracy fell", "diverged")


class Collapse(NamedTuple):
    """Whether a run collapsed (:func:`collapse`): at which update, the largest gradient norm of the
    interval before it, the best validation accuracy before it and the accuracy at it, and how
    (:data:`HOW`, empty without a collapse). ``drop`` is the largest fall below the best so far
    over the whole run (0 for a run that never fell), collapsed or not."""

    collapsed: bool
    update: int | None = None
    grad_norm: float = math.nan
    best: float = math.nan
    accuracy: float = math.nan
    drop: float = 0.0
    how: str = ""


def interval_stats(record: dict) -> dict:
    """``check_updates``, ``check_val_acc``, ``check_grad_norm_max``, ``check_grad_norm_median`` and
    ``check_interval_end`` of ``record``: as stored in a compact record, or computed from a full
    record's per-update logs (:func:`rnnbook.reference.compact`). The gradient lists (and the
    intervals' ends) may hold one entry more than the checks: the updates after the last check, up
    to a divergence."""
    if "check_grad_norm_max" not in record and record.get("steps"):
        from rnnbook import reference

        record = reference.compact(record)
    out = {key: [float(x) for x in record.get(key) or []]
           for key in ("check_updates", "check_val_acc", "check_grad_norm_max", "check_grad_norm_median")}
    out["check_interval_end"] = [float(x) for x in record.get("check_interval_end") or out["check_updates"]]
    return out


def _at(values: list, i: int) -> float:
    return float(values[i]) if 0 <= i < len(values) else math.nan


def _learned(record: dict, best: float) -> bool:
    """True when ``best`` beat chance by three standard errors (or the record does not say what
    chance is)."""
    return "chance" not in record or verdicts.above_chance(dict(record, check_val_acc=[best]))


def collapse(record: dict, drop: float = DROP) -> Collapse:
    """The run's :class:`Collapse` by the rule of the module docstring."""
    s = interval_stats(record)
    acc, updates, norms = s["check_val_acc"], s["check_updates"], s["check_grad_norm_max"]
    best, best_i, largest, found = -math.inf, -1, 0.0, None
    for i, a in enumerate(acc):
        if not math.isfinite(a):
            continue
        if best_i >= 0:
            fall = round(best - a, 9)  # accuracies are shares of the validation set: 0.8 - 0.6 is 0.2
            largest = max(largest, fall)
            if found is None and fall > drop and _learned(record, best):
                found = Collapse(True, int(updates[i]), _at(norms, i), best, a, 0.0, HOW[0])
        if a > best:
            best, best_i = a, i
    if found is not None:
        return found._replace(drop=largest)
    diverged = record.get("outcome") == "diverged" or bool(record.get("diverged"))
    if diverged and best_i >= 0 and _learned(record, best):
        update = record.get("diverged_step") if record.get("diverged_step") is not None else record.get("updates")
        return Collapse(True, int(update) if update is not None else None, _at(norms, len(norms) - 1), best,
                        math.nan, largest, HOW[1])
    return Collapse(False, best=best if best_i >= 0 else math.nan, drop=largest)


def pilot_norm(records: Iterable[dict], updates: int) -> float:
    """Pascanu et al.'s average gradient norm, from the runs' first ``updates`` updates: the mean,
    over every check interval ending at or before update ``updates`` of every run (at least each
    run's first interval), of the interval's median global gradient norm. The median of an
    interval rather than its mean, so that one spike does not set the threshold that is meant to
    cut spikes. NaN without a finite value.

    Example:
        >>> runs = [{"check_updates": [25, 50, 75], "check_grad_norm_median": [1.0, 2.0, 90.0]},
        ...         {"check_updates": [25], "check_grad_norm_median": [3.0]}]
        >>> pilot_norm(runs, 50)
        2.0
    """
    values = []
    for record in records:
        s = interval_stats(record)
        ends, medians = s["check_updates"], s["check_grad_norm_median"]
        k = max(1, sum(1 for u in ends if u <= updates))
        values += [m for m in medians[:k] if math.isfinite(m)]
    return float(np.mean(values)) if values else math.nan
