"""Grids of training runs with an on-disk cache: resumable, atomic, seaborn-ready.

Every finished run is stored as one JSON file under ``cache_dir``, named by a hash of
its configuration and of the source of the modules that produce it (data, models,
clipping, training). An interrupted sweep resumes without redoing finished runs; a
killed process leaves no half-written file.

Example:
    >>> base = TrainConfig(seq_len=10, n_train=128, n_val=32, n_test=32, epochs=1, units=16)
    >>> grid = [dataclasses.replace(base, activation=a) for a in ("tanh", "relu")]
    >>> runs = run_sweep(grid, seeds=[0, 1], cache_dir="data/runs")   # doctest: +SKIP
    >>> runs.groupby("activation").test_acc.mean()                     # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from rnnbook.data import atomic_write
from rnnbook.paths import data_root
from rnnbook.training import TrainConfig, train

RUNS_DIR = data_root() / "runs"
#: Modules whose source decides a run's numbers: editing one invalidates cached runs.
CODE_MODULES = ("data", "models", "clipping", "training", "recurrence", "runtime")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Hash of the source of the modules that produce a run."""
    h = hashlib.sha256()
    pkg = Path(__file__).parent
    for name in CODE_MODULES:
        path = pkg / f"{name}.py"
        if path.exists():
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def run_key(config: TrainConfig) -> str:
    """Cache key of one run: its configuration (seed included) and the code version."""
    text = json.dumps({"config": config.to_dict(), "code": code_version()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def cached_train(config: TrainConfig, cache_dir: str | Path | None = RUNS_DIR) -> dict:
    """Train ``config`` or return its cached record."""
    if cache_dir is None:
        return train(config)
    path = Path(cache_dir) / f"{run_key(config)}.json"
    if path.exists():
        try:
            return json.loads(path.read_text())
        except ValueError:
            pass  # unreadable (should not happen with atomic writes): retrain
    record = train(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, default=_json_default, allow_nan=True)
    atomic_write(path, lambda f: f.write(text.encode()))
    return record


def with_seeds(configs, seeds) -> list[TrainConfig]:
    """Every configuration once per seed."""
    return [dataclasses.replace(c, seed=int(s)) for c in configs for s in seeds]


def run_sweep(configs, seeds=(0,), cache_dir: str | Path | None = RUNS_DIR, desc: str = "sweep",
              labels=None) -> pd.DataFrame:
    """Run (or load) every configuration x seed; one row per run.

    Args:
        configs: :class:`TrainConfig` s (their own ``seed`` is replaced by each of ``seeds``).
        seeds: the seeds.
        cache_dir: where finished runs are stored; None disables the cache.
        desc: the progress bar's label.
        labels: optional display label per configuration (same length as ``configs``),
            stored in the ``label`` column.

    The progress bar goes to the terminal running the build (the kernel's own stderr),
    not into the book.
    """
    from tqdm.auto import tqdm

    configs = list(configs)
    labels = list(labels) if labels is not None else [None] * len(configs)
    if len(labels) != len(configs):
        raise ValueError(f"labels has {len(labels)} entries for {len(configs)} configurations")
    jobs = [(label, run) for config, label in zip(configs, labels) for run in with_seeds([config], seeds)]
    records = []
    bar = tqdm(jobs, desc=desc, unit="run", file=sys.__stderr__, leave=False, dynamic_ncols=True)
    for label, cfg in bar:
        record = cached_train(cfg, cache_dir)
        record["label"] = label
        records.append(record)
    bar.close()
    return summary_frame(records)


SUMMARY_FIELDS = ("diverged", "diverged_step", "test_acc", "test_acc_last_good", "chance", "wall_time",
                  "seconds_per_epoch")


def summary_frame(records) -> pd.DataFrame:
    """One row per run: configuration fields, label, outcome, final accuracies and step statistics."""
    rows = []
    for r in records:
        row = dict(r["config"])
        row["conv_filters"] = "x".join(str(f) for f in row["conv_filters"])
        row["label"] = r.get("label")
        row.update({k: r[k] for k in SUMMARY_FIELDS})
        row["final_val_acc"] = r["epoch_val_acc"][-1] if r["epoch_val_acc"] else np.nan
        steps = r["steps"]
        grad = np.asarray(steps["grad_norm"], dtype=float)
        finite = grad[np.isfinite(grad)]
        row["median_grad_norm"] = float(np.median(finite)) if finite.size else np.nan
        row["max_grad_norm"] = float(np.max(finite)) if finite.size else np.nan
        state = np.asarray(steps["max_abs_state"], dtype=float)
        row["max_abs_state"] = float(np.nanmax(state)) if state.size and np.isfinite(state).any() else np.inf
        row["steps_run"] = len(steps["loss"])
        row["record"] = r
        rows.append(row)
    return pd.DataFrame(rows)


def steps_frame(runs: pd.DataFrame, fields=("loss", "grad_norm", "max_abs_state")) -> pd.DataFrame:
    """Long frame of per-step statistics: one row per run x step, with the run's configuration."""
    keep = [c for c in runs.columns if c != "record"]
    parts = []
    for _, row in runs.iterrows():
        steps = row["record"]["steps"]
        part = pd.DataFrame({f: steps[f] for f in fields})
        part.insert(0, "step", np.arange(len(part)))
        for c in keep:
            part[c] = row[c]
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def accuracy_with_divergence(runs: pd.DataFrame, diverged_as: str = "chance") -> pd.Series:
    """Final test accuracy where a diverged run counts as ``chance`` (what a NaN model is worth)
    or as ``last_good`` (the accuracy before it diverged); never silently dropped."""
    if diverged_as == "chance":
        return runs["test_acc"].where(~runs["diverged"], runs["chance"])
    if diverged_as == "last_good":
        return runs["test_acc_last_good"]
    raise ValueError(f"diverged_as={diverged_as!r}; choose 'chance' or 'last_good'")
