"""The reference evidence: long runs computed once, shipped with the book as compact records, read
by the chapters instead of training, and re-run by samples at every build.

**Records.** A reference record is a run record (:func:`rnnbook.criterion.train_to_criterion`)
made compact (:func:`compact`): every scalar field and every per-check list, and per check the
interval statistics of the updates since the previous check (largest and median global gradient
norm, largest absolute hidden state, largest recurrent-layer gradient norm) instead of the
per-update logs. A gradient-norm trace at check resolution is what the collapse analysis needs;
the failure rule (:func:`rnnbook.verdicts.failure_reason`) reads the last interval's maxima.

**Keys: the protocol, not the code.** A record is stored under :func:`protocol_key`: a hash of
:data:`PROTOCOL` and of the run's configuration fields that differ from their defaults. So a
docstring, a refactor or a new configuration field with a default keeps every shipped record,
while a change of a default or of a run's settings does not find the old record. A change that
alters a run's *numbers* is caught by re-running: the test suite re-runs two short shipped runs
and compares them exactly (``tests/test_reference.py``), and every build re-runs a seeded sample
(:func:`sample`, :func:`rerun`, :func:`compare`). When numbers change on purpose, bump
:data:`PROTOCOL` and recompute (README, "The reference evidence").

**Store.** ``data/reference/<name>-<part>.jsonl.gz``: gzip members appended one run at a time
(a kill loses at most the run being written), read back as one mapping key -> record, the last
line of a key winning. Each line carries its provenance (commit, package versions, CPU, wall
time).

**Budget ladder.** One run at the top cap gives its outcome at every lower cap
(:func:`outcome_at`): success by cap ``c`` if some check at or before ``c`` met the target;
otherwise censored at ``c`` if the run was still going at ``c``; a run that diverged before
``c`` is diverged there.

Example:
    >>> rec = {"outcome": "success", "updates": 900, "check_updates": [300, 600, 900],
    ...        "check_val_acc": [0.2, 0.5, 0.9], "config": {"target_acc": 0.85}}
    >>> outcome_at(rec, 600)["outcome"], outcome_at(rec, 1000)["outcome"]
    ('censored', 'success')
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from rnnbook.data import atomic_write
from rnnbook.paths import data_root

#: The version of the reference protocol: bump it when a deliberate change alters runs' numbers.
PROTOCOL = 1
#: Environment variables through which ``rnnbook build`` points the chapters at the store.
STORE_ENV = "RNNBOOK_REFERENCE"
MODE_ENV = "RNNBOOK_REFERENCE_MODE"
#: ``read``: shipped records stand in for runs; ``write``: computed runs are appended to the
#: store too (``rnnbook build --recompute``); ``off``: the store is ignored.
MODES = ("read", "write", "off")
#: Tolerance of a re-run on another platform (absolute, on validation accuracies).
TOLERANCE = 0.02
#: Per-update fields of a record's ``steps`` that :func:`compact` summarises per check.
_INTERVAL = {"grad_norm": ("max", "median"), "max_abs_state": ("max",), "rnn_grad_norm": ("max",)}


def store_dir() -> Path:
    """Where the shipped records live: ``$RNNBOOK_REFERENCE`` or ``data/reference``."""
    return Path(os.environ.get(STORE_ENV) or data_root() / "reference")


def mode() -> str:
    """The store's mode for this process (:data:`MODES`; default ``read``)."""
    m = os.environ.get(MODE_ENV, "read")
    if m not in MODES:
        raise ValueError(f"{MODE_ENV}={m!r}: choose one of {', '.join(MODES)}")
    return m


# ----------------------------------------------------------------------------- keys


def protocol_key(config) -> str:
    """The store key of a run: :data:`PROTOCOL` and the configuration's non-default fields.

    Example:
        >>> from rnnbook.training import TrainConfig
        >>> protocol_key(TrainConfig(seed=1)) == protocol_key(TrainConfig(seed=1))
        True
        >>> protocol_key(TrainConfig(seed=1)) == protocol_key(TrainConfig(seed=2))
        False
    """
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    fields = {k: v for k, v in config.to_dict().items()
              if not (k in defaults and _same(v, defaults[k]))}
    text = json.dumps({"protocol": PROTOCOL, "config": fields}, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


# ----------------------------------------------------------------------------- records


def compact(record: dict) -> dict:
    """The record without its per-update logs: every other field, plus per check the statistics
    of the updates since the previous check (``check_grad_norm_max``, ``check_grad_norm_median``,
    ``check_max_abs_state_max``, ``check_rnn_grad_norm_max``)."""
    out = {k: v for k, v in record.items() if k != "steps"}
    steps = record.get("steps") or {}
    ends = list(record.get("check_updates") or [])
    n = len(steps.get("grad_norm") or [])
    bounds = list(zip([0] + ends[:-1], ends))
    if n > (ends[-1] if ends else 0):  # the updates after the last check (a divergence)
        bounds.append((ends[-1] if ends else 0, n))
    out["check_interval_end"] = [b for _, b in bounds]
    for field, stats in _INTERVAL.items():
        values = np.asarray(steps.get(field) or [], float)
        for stat in stats:
            col = []
            for a, b in bounds:
                part = values[a:b]
                col.append(float(getattr(np, stat)(part)) if part.size else math.nan)
            out[f"check_{field}_{stat}"] = col
    return out


def provenance(wall_time: float | None = None) -> dict:
    """Where and with what a record was computed: commit, package versions, CPU, date."""
    try:
        import subprocess

        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                                cwd=Path(__file__).resolve().parent).stdout.strip() or "unknown"
    except Exception:  # noqa: BLE001 - not a checkout
        commit = "unknown"
    return {"protocol": PROTOCOL, "commit": commit, "python": platform.python_version(),
            "tensorflow": installed_version("tensorflow-cpu") or installed_version("tensorflow"),
            "keras": installed_version("keras"), "numpy": installed_version("numpy"),
            "cpu": cpu_name(), "machine": platform.machine(), "date": time.strftime("%Y-%m-%d"),
            "wall_time": wall_time}


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ----------------------------------------------------------------------------- the store


def load(directory: str | Path | None = None) -> dict[str, dict]:
    """Every record of the store: key -> record (the last line of a key wins)."""
    directory = Path(directory) if directory is not None else store_dir()
    records: dict[str, dict] = {}
    for path in sorted(directory.glob("*.jsonl.gz")):
        try:
            with gzip.open(path, "rt") as f:
                for line in f:
                    if line.strip():
                        entry = json.loads(line)
                        records[entry["key"]] = entry["record"]
        except (EOFError, OSError, ValueError):  # a member cut by a kill: the lines before it count
            continue
    return records


_LOADED: dict[tuple, dict] = {}


def cached_load(directory: str | Path | None = None) -> dict[str, dict]:
    """:func:`load`, read again only when a part file of the store changed (size or time)."""
    directory = Path(directory) if directory is not None else store_dir()
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(directory.glob("*.jsonl.gz")))
    if (str(directory), stamp) not in _LOADED:
        _LOADED.clear()
        _LOADED[(str(directory), stamp)] = load(directory)
    return _LOADED[(str(directory), stamp)]


def part_name(name: str) -> str:
    """The part file this process appends to: ``<name>-<date>-<pid>`` (one per computing process,
    so parts can be committed as they grow and two processes never write one file)."""
    global _PART_STAMP
    if _PART_STAMP is None:
        _PART_STAMP = time.strftime("%Y%m%d-%H%M%S")
    return f"{name}-{_PART_STAMP}-{os.getpid()}"


_PART_STAMP: str | None = None


def append(config, record: dict, name: str, directory: str | Path | None = None) -> None:
    """Append ``record`` of ``config`` (compacted, with provenance) to ``<name>.jsonl.gz``."""
    directory = Path(directory) if directory is not None else store_dir()
    directory.mkdir(parents=True, exist_ok=True)
    entry = {"key": protocol_key(config),
             "record": {**compact(record), "provenance": provenance(record.get("wall_time"))}}
    text = json.dumps(entry, sort_keys=True, default=_json_default, allow_nan=True) + "\n"
    with gzip.open(directory / f"{name}.jsonl.gz", "at") as f:  # one gzip member per run
        f.write(text)


def stored_call(name: str, fn, config, directory: str | Path | None = None, compute: bool = True):
    """``fn(config)`` (a JSON-serialisable measurement), kept in the store as
    ``<name>/<protocol key>.json`` and keyed like the records (:func:`protocol_key`), so it is
    measured once (by the reference computation) and shipped; measured here only when missing.
    Returns the value as read back from JSON, the same on the first call and after;
    ``compute=False`` only looks (None when it is not stored)."""
    folder = (Path(directory) if directory is not None else store_dir()) / name
    path = folder / f"{protocol_key(config)}.json"
    if path.exists():
        return json.loads(path.read_text())["value"]
    if not compute:
        return None
    text = json.dumps({"config": config.to_dict(), "value": fn(config), "provenance": provenance()},
                      sort_keys=True, default=_json_default, allow_nan=True)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(text.encode()))  # a reader never sees half a file
    return json.loads(text)["value"]


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# ----------------------------------------------------------------------------- the budget ladder


def outcome_at(record: dict, cap: int) -> dict:
    """The run's outcome had its cap been ``cap`` updates: ``outcome`` (success, censored,
    diverged), ``updates`` and the checks up to ``cap``."""
    checks = [u for u in record.get("check_updates") or [] if u <= cap]
    k = len(checks)
    val = list(record.get("check_val_acc") or [])[:k]
    target = float((record.get("config") or {}).get("target_acc", math.inf))
    hit = next((i for i, v in enumerate(val) if v >= target), None)
    if hit is not None:
        return {"outcome": "success", "updates": int(checks[hit]), "check_val_acc": val[:hit + 1]}
    updates = int(record.get("updates") or 0)
    if record.get("outcome") == "diverged" and updates <= cap:
        return {"outcome": "diverged", "updates": updates, "check_val_acc": val}
    if record.get("outcome") == "success" and updates <= cap:  # succeeded between checks (never)
        return {"outcome": "success", "updates": updates, "check_val_acc": val}
    return {"outcome": "censored", "updates": min(cap, updates), "check_val_acc": val}


def at_cap(record: dict, cap: int) -> dict:
    """``record`` read at ``cap``: its outcome fields and checks cut at ``cap`` (see :func:`outcome_at`)."""
    o = outcome_at(record, cap)
    k = len(o["check_val_acc"])
    out = {key: (value[:k] if key.startswith("check_") and isinstance(value, list) else value)
           for key, value in record.items()}
    if isinstance(record.get("steps"), dict):  # a full record: its per-update logs up to the cap
        out["steps"] = {key: list(v)[:o["updates"]] for key, v in record["steps"].items()}
    out.update(outcome=o["outcome"], updates=o["updates"],
               updates_to_success=o["updates"] if o["outcome"] == "success" else None,
               diverged=o["outcome"] == "diverged")
    out["config"] = {**(record.get("config") or {}), "max_updates": int(cap)}
    return out


def ladder_stops(successes_by_lag: dict[int, int]) -> int | None:
    """The lag ladder rule: a configuration's ladder stops after the first lag (in increasing
    order) at which no seed met the criterion; that lag, or None when every lag had a success.

    Example:
        >>> ladder_stops({5: 6, 10: 3, 20: 0, 40: 0})
        20
        >>> ladder_stops({5: 6, 10: 1}) is None
        True
    """
    for lag in sorted(successes_by_lag):
        if successes_by_lag[lag] == 0:
            return lag
    return None


# ----------------------------------------------------------------------------- re-run samples


def sample(keys_and_records: Iterable[tuple[str, dict]], k: int, seed: int = 0) -> list[str]:
    """A seeded random sample of ``k`` keys mixing outcomes: as many successes as censored runs
    where both exist (the rest from whatever there is), in a stable order."""
    items = sorted(keys_and_records, key=lambda kr: kr[0])
    rng = np.random.default_rng(seed)
    groups: dict[str, list[str]] = {}
    for key, rec in items:
        groups.setdefault(rec.get("outcome", "?"), []).append(key)
    for g in groups.values():
        rng.shuffle(g)
    chosen, order = [], sorted(groups, key=lambda o: (o not in ("success", "censored"), o))
    while len(chosen) < k and any(groups.values()):
        for o in order:
            if groups[o] and len(chosen) < k:
                chosen.append(groups[o].pop())
    return chosen


def compare(shipped: dict, rerun: dict, cap: int, tolerance: float = 0.0) -> dict:
    """Compare a re-run (to ``cap`` updates) with the shipped record read at ``cap``: the
    validation accuracies at every check up to ``cap`` and the outcome. ``tolerance`` 0 asks for
    identical numbers (the same platform)."""
    a, b = at_cap(shipped, cap), at_cap(rerun, cap)
    va, vb = np.asarray(a.get("check_val_acc") or [], float), np.asarray(b.get("check_val_acc") or [], float)
    same_len = va.shape == vb.shape
    diff = float(np.max(np.abs(va - vb))) if same_len and va.size else (0.0 if same_len else math.inf)
    # a run that diverged before its first check has no check to compare: its step must match
    same_end = a["outcome"] != "diverged" or a.get("updates") == b.get("updates")
    ok = same_len and diff <= tolerance and a["outcome"] == b["outcome"] and same_end
    return {"checks": int(va.size), "max_abs_diff": diff, "shipped_outcome": a["outcome"],
            "rerun_outcome": b["outcome"], "reproduced": bool(ok)}


def same_platform(record: dict) -> bool:
    """True when ``record`` was computed on this CPU model with these TensorFlow and Keras versions."""
    p, here = record.get("provenance") or {}, provenance()
    return all(p.get(k) == here.get(k) for k in ("cpu", "tensorflow", "keras", "numpy", "python"))


class ReferenceMismatch(RuntimeError):
    """A shipped record that a re-run did not reproduce: the message names the runs and how to
    recompute them."""


def rerun_sample(rows, k: int, updates: int, seed: int, trainer, store: str = "") -> "pd.DataFrame":
    """Re-run a seeded sample of ``k`` shipped runs (``rows``: ``(config, record, label)`` of runs
    whose record came from the store) for their first ``updates`` updates (rounded down to a
    whole number of checks) and compare with the shipped checks (:func:`compare`): identical on
    the platform that computed them, within :data:`TOLERANCE` elsewhere. Returns one row per
    re-run; raises :class:`ReferenceMismatch` when one does not reproduce."""
    import dataclasses as dc

    import pandas as pd

    rows = [(c, r, lab) for c, r, lab in rows if r.get("provenance")]
    by_key = {protocol_key(c): (c, r, lab) for c, r, lab in rows}
    out, bad = [], []
    for key in sample(((k_, r) for k_, (_, r, _) in by_key.items()), k, seed):
        config, record, label = by_key[key]
        cap = max(config.check_every, updates // config.check_every * config.check_every)
        start = time.perf_counter()
        again = trainer(dc.replace(config, max_updates=min(cap, int(config.max_updates or cap))))
        exact = same_platform(record)
        result = compare(record, again, cap, 0.0 if exact else TOLERANCE)
        out.append({"configuration": label, "T": config.seq_len, "lag": config.lag, "seed": config.seed,
                    "shipped outcome (full cap)": record.get("outcome"), "updates re-run": cap,
                    "checks compared": result["checks"], "largest difference": result["max_abs_diff"],
                    "comparison": "identical" if exact else f"within {TOLERANCE:g}",
                    "reproduced": "yes" if result["reproduced"] else "NO",
                    "seconds": round(time.perf_counter() - start, 1)})
        if not result["reproduced"]:
            bad.append(f"{label}, lag {config.lag}, seed {config.seed} (key {key}): largest difference "
                       f"{result['max_abs_diff']:.3g}, outcome {result['shipped_outcome']} shipped vs "
                       f"{result['rerun_outcome']} re-run")
    if bad:
        raise ReferenceMismatch(
            f"{len(bad)} shipped reference run(s) of '{store}' did not reproduce: " + "; ".join(bad) +
            ". The code now computes other numbers than the records: if that is intended, bump "
            "rnnbook.reference.PROTOCOL and recompute with `rnnbook build --preset reference --recompute"
            f" --only {store}`; otherwise find the change that moved them.")
    return pd.DataFrame(out, columns=["configuration", "T", "lag", "seed", "shipped outcome (full cap)", "updates re-run",
                                      "checks compared", "largest difference", "comparison", "reproduced",
                                      "seconds"])
