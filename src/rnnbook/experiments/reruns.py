"""What every chapter that reads shipped reference records shows: the "re-run at build time"
table. A seeded sample of the shipped runs the chapter read is trained again for its first
updates and compared with the records (:func:`rnnbook.reference.rerun_sample`); a sample that does
not reproduce stops the build with a message that names the runs and how to recompute them.

Example:
    >>> split(4, [["a"], ["b"]])
    [2, 2]
    >>> split(4, [[], ["b"]])
    [0, 4]
    >>> styled(pd.DataFrame({"largest difference": [0.0], "seconds": [7.1]})).to_html().count("7.1000")
    0
"""
from __future__ import annotations

import pandas as pd

from rnnbook import reference, sweeps
from rnnbook.training import TrainConfig

#: The column that says which body of evidence a re-run belongs to.
EVIDENCE = "evidence"


def shipped_rows(frames) -> list[tuple[TrainConfig, dict, str]]:
    """``(config, record, label)`` of every run of the run ``frames`` (one row per run, with
    ``record`` and ``label``) whose record is a shipped reference record, once per protocol key."""
    rows, seen = [], set()
    for runs in frames:
        for rec, label in zip(runs["record"] if len(runs) else [], runs["label"] if len(runs) else []):
            if not rec.get("provenance"):
                continue
            config = TrainConfig(**rec["config"])
            key = reference.protocol_key(config)
            if key not in seen:  # the same run may serve two sweeps (the long lags' unclipped arm)
                seen.add(key)
                rows.append((config, rec, label))
    return rows


def split(k: int, pools) -> list[int]:
    """How many of ``k`` re-runs each pool gives: evenly over the non-empty pools, the first ones
    taking the remainder."""
    full = [i for i, rows in enumerate(pools) if rows]
    counts = [0] * len(pools)
    for j, i in enumerate(full):
        counts[i] = k // len(full) + (1 if j < k % len(full) else 0)
    return counts


def table(pools: list[tuple[str, list]], k: int, updates: int, seed: int, store: str) -> pd.DataFrame:
    """The page's re-run table: ``k`` shipped runs re-run for ``updates`` updates, spread over the
    named ``pools`` of ``(config, record, label)`` rows (:func:`split`), column :data:`EVIDENCE`
    naming the pool; one row saying so when the build read no shipped run."""
    counts = split(k, [rows for _, rows in pools])
    parts = [reference.rerun_sample(rows, n, updates, seed, sweeps.train, store=store).assign(**{EVIDENCE: name})
             for (name, rows), n in zip(pools, counts) if n]
    out = pd.concat(parts, ignore_index=True) if parts else \
        reference.rerun_sample([], 0, updates, seed, sweeps.train, store=store).assign(**{EVIDENCE: []})
    if len(out):  # a task without a time lag (the adding problem) has no lag column
        out = out.drop(columns=[c for c in ("lag",) if c in out and out[c].isna().all()])
    if out.empty:  # the page says so in the table itself
        out = pd.DataFrame([{c: "n/a" for c in out.columns}])
        out["configuration"] = "none: this build read no shipped reference run"
    return out


def styled(frame: pd.DataFrame):
    """The re-run table as the page shows it: no index, accuracies to four decimals, seconds to
    one (text cells, as in the "no shipped run" row, unchanged)."""
    def one_decimal(x):
        return f"{x:.1f}" if isinstance(x, (int, float)) else x
    seconds = [c for c in ("seconds",) if c in frame.columns]
    return frame.style.hide(axis="index").format(precision=4).format(one_decimal, subset=seconds)
