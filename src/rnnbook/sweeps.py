"""Grids of training runs with an on-disk cache: resumable, atomic, seaborn-ready.

Every finished run is stored as one JSON file under ``cache_dir``, named by :func:`run_key`:
a hash of its configuration, of the source of every ``rnnbook`` module a run's numbers depend
on (found by following the imports of :mod:`rnnbook.training`) and of the installed versions
of the packages those modules import. An interrupted sweep resumes without redoing finished
runs; a killed process leaves no half-written file.

The runs a sweep still needs go to an *executor*: ``local`` (the default: worker processes on
this machine, :mod:`rnnbook.executors`, or with one worker one run after the other in this
process) or ``ray`` (one Ray task per run, on a local Ray or a cluster). Every run uses the
protocol's fixed thread count (:data:`rnnbook.runtime.RUN_THREADS`), the driver writes the
cache and the frame lists the runs in the order of the grid, so the numbers do not depend on
the executor. A run that raises (after Ray's retries) is a row with ``failed=True`` and its
``error``, never a cache entry. The build passes the executor to the chapters' kernels through
:data:`EXECUTOR_ENV`, :data:`WORKERS_ENV`, :data:`RAY_ADDRESS_ENV` and :data:`RAY_CPUS_ENV`.

Example:
    >>> from rnnbook.training import TrainConfig
    >>> base = TrainConfig(seq_len=10, n_train=128, n_val=32, n_test=32, epochs=1, units=16)
    >>> grid = [dataclasses.replace(base, activation=a) for a in ("tanh", "relu")]
    >>> runs = run_sweep(grid, seeds=[0, 1], cache_dir="data/runs")   # doctest: +SKIP
    >>> runs.groupby("activation").test_acc.mean()                     # doctest: +SKIP
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import json
import math
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from rnnbook import executors, synthetic
from rnnbook.data import atomic_write
# the executors, their default trainer and the record of a failed run: used here, and by the build and
# the chapters through this module
from rnnbook.executors import (  # noqa: F401
    EXECUTOR_ENV, EXECUTORS, RAY_ADDRESS_ENV, RAY_CPUS_ENV, RAY_MAX_RETRIES, RESOURCE_ERRORS, WORKERS_ENV,
    LocalExecutor, PoolExecutor, RayExecutor, SweepError, executor_env, executor_from_env, failed_record, train)
from rnnbook.paths import data_root

if TYPE_CHECKING:  # the build imports this module without TensorFlow
    from rnnbook.training import TrainConfig

RUNS_DIR = data_root() / "runs"
#: The module whose imports (followed transitively) decide a run's numbers.
RUN_ROOT = "rnnbook.training"


# ----------------------------------------------------------------------------- the run cache key
PACKAGE_DIR = Path(__file__).resolve().parent


def _module_file(module: str) -> Path | None:
    """The source file of ``rnnbook.<...>`` (a module or a package's ``__init__``), if any."""
    parts = module.split(".")[1:]
    base = PACKAGE_DIR.joinpath(*parts) if parts else PACKAGE_DIR
    for path in (base.with_suffix(".py") if parts else None, base / "__init__.py"):
        if path is not None and path.is_file():
            return path
    return None


def _imports(module: str, path: Path) -> tuple[set[str], set[str]]:
    """``(rnnbook modules, top-level third-party packages)`` imported anywhere in ``path``."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    ours, theirs = set(), set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from rnnbook import data`` imports the module rnnbook.data
            names = [target] + [f"{target}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name == "rnnbook" or name.startswith("rnnbook."):
                if _module_file(name) is not None:
                    ours.add(name)
            elif name and name.split(".")[0] not in sys.stdlib_module_names:
                theirs.add(name.split(".")[0])
    return ours, theirs


@functools.lru_cache(maxsize=None)
def dependencies(root: str = RUN_ROOT) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(modules, distributions)`` that ``root`` depends on: every ``rnnbook`` module it
    imports, transitively (with the packages' ``__init__``), read from the source by AST,
    and the installed distributions of the third-party packages those modules import."""
    seen, packages, todo = set(), set(), [root]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        path = _module_file(module)
        if path is None:
            raise ValueError(f"{module!r} is not a module of the rnnbook package ({PACKAGE_DIR})")
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run first
        ours, theirs = _imports(module, path)
        todo += sorted(ours)
        packages |= theirs
    dists = metadata.packages_distributions()
    distributions = sorted({d for p in packages for d in dists.get(p, [])})
    return tuple(sorted(seen)), tuple(distributions)


@functools.lru_cache(maxsize=None)
def _source(module: str) -> bytes:
    """The source of ``module`` as first read by this process (close to what it imported)."""
    return _module_file(module).read_bytes()


@functools.lru_cache(maxsize=None)
def installed_version(distribution: str) -> str:
    """The installed version of ``distribution`` ("absent" if it is not installed)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "absent"


def code_version(roots=(RUN_ROOT,)) -> str:
    """Hash of what decides the numbers of code rooted at the modules ``roots``: the source of
    every ``rnnbook`` module they import (transitively), the installed versions of the
    packages those modules import, and the Python version."""
    if isinstance(roots, str):
        roots = (roots,)
    modules, distributions = set(), set()
    for root in roots:
        m, d = dependencies(root)
        modules |= set(m)
        distributions |= set(d)
    h = hashlib.sha256()
    for module in sorted(modules):
        h.update(module.encode() + b"\0" + _source(module) + b"\0")
    versions = {d: installed_version(d) for d in sorted(distributions)}
    versions["python"] = ".".join(map(str, sys.version_info[:3]))
    h.update(json.dumps(versions, sort_keys=True).encode())
    return h.hexdigest()[:16]


def run_key(config: TrainConfig) -> str:
    """Cache key of one run: its configuration (seed included) and :func:`code_version`."""
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


def _dumps(value) -> str:
    return json.dumps(value, default=_json_default, allow_nan=True)


def _load(path: Path):
    """The JSON in ``path``, or None when it is absent or unreadable (then it is recomputed)."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None  # unreadable (should not happen with atomic writes)


def _store(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(text.encode()))


def cached_call(name: str, fn: Callable[[Any], Any], config: TrainConfig,
                cache_dir: str | Path | None = RUNS_DIR, compute: bool = True):
    """``fn(config)`` (a JSON-serialisable value), cached as ``<cache_dir>/<name>-<key>.json``.

    The key covers ``name``, the configuration, and :func:`code_version` of the module
    defining ``fn`` and of :mod:`rnnbook.training` (their source, imports and package
    versions): editing the measurement re-computes it. Returns the value as read back from
    JSON (lists, not arrays), the same on the first call and from the cache.
    ``compute=False`` only looks: the cached value, or None when there is none.
    """
    if not name or any(c in name for c in "/\\"):
        raise ValueError(f"name={name!r} must be a non-empty file-name prefix without slashes")
    roots = tuple(dict.fromkeys([fn.__module__, RUN_ROOT]))
    text = json.dumps({"name": name, "config": config.to_dict(), "code": code_version(roots)}, sort_keys=True)
    path = None if cache_dir is None else Path(cache_dir) / f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:24]}.json"
    cached = _load(path) if path is not None else None
    if isinstance(cached, dict) and "value" in cached:
        return cached["value"]
    if not compute:
        return None
    text = _dumps({"config": config.to_dict(), "value": fn(config)})
    if path is not None:
        _store(path, text)
    return json.loads(text)["value"]


def run_path(config: TrainConfig, cache_dir: str | Path) -> Path:
    """Where the run of ``config`` is cached."""
    return Path(cache_dir) / f"{run_key(config)}.json"


def is_cached(config: TrainConfig, cache_dir: str | Path = RUNS_DIR) -> bool:
    """Whether a readable record of ``config`` is in the cache."""
    return _load(run_path(config, cache_dir)) is not None


def cached_train(config: TrainConfig, cache_dir: str | Path | None = RUNS_DIR) -> dict:
    """Train ``config`` (:func:`rnnbook.executors.train`) or return its cached record."""
    if cache_dir is None:
        return executors.train(config)
    record = _load(run_path(config, cache_dir))
    if record is None:
        record = executors.train(config)
        _store(run_path(config, cache_dir), _dumps(record))
    return record


# ----------------------------------------------------------------------------- cost
#: Seconds per work frame (see :func:`work_frames`) when no cached run calibrates it: the median
#: of the default build's lag-40 runs (T = 41, 64 units, batch 128) on the quiet two-core build
#: machine, rounded up (3.7e-6 measured).
SECONDS_PER_FRAME = 4e-6
#: Runs with less work than this (in work frames) do not calibrate the cost: their wall time is
#: mostly fixed costs (tracing a new model, checks), as in a quick build, whose runs measured
#: 30-50 times the cost per frame of the default build's at the same T.
MIN_CALIBRATION_WORK = 1e5
#: What a frame of a validation or test check (forward pass only) costs, as a share of a trained
#: frame (forward and backward): the encoder's forward pass measured about a third of its update.
EVAL_SHARE = 1 / 3


def planned_updates(config: TrainConfig) -> int:
    """Updates of one run: its epochs of batches, or for a run to a criterion its cap
    ``max_updates`` (an upper bound: it stops at its target accuracy)."""
    if getattr(config, "max_updates", None):
        return int(config.max_updates)
    return config.epochs * math.ceil(config.n_train / config.batch_size)


def work_frames(config: dict, updates: int) -> float:
    """The work of a run of ``config`` (a :class:`TrainConfig` as a dict) that made ``updates``
    updates, in trained frames: ``updates x batch x T``, plus the frames of its validation checks
    (one per ``check_every`` updates, or per epoch) and of its test, weighted by :data:`EVAL_SHARE`."""
    checks = math.ceil(updates / config["check_every"]) if config.get("max_updates") else config["epochs"]
    evaluated = (checks * config["n_val"] + config["n_test"]) * config["seq_len"]
    return updates * config["batch_size"] * config["seq_len"] + EVAL_SHARE * evaluated


def _kind(config: dict) -> str:
    """``synthetic`` for the tasks without a CNN (their frames cost far less), else ``images``."""
    return "synthetic" if config.get("task") in synthetic.TASKS else "images"


def frame_costs(cache_dir: str | Path | None = RUNS_DIR, sample: int = 400) -> list[tuple[str, int, float]]:
    """``(kind, T, seconds per work frame)`` of up to ``sample`` cached runs that did not
    diverge and did at least :data:`MIN_CALIBRATION_WORK` (kind: ``images`` or ``synthetic``)."""
    costs = []
    for path in sorted(Path(cache_dir).glob("*.json"))[:sample] if cache_dir is not None else []:
        record = _load(path)
        try:
            c = record["config"]
            work = work_frames(c, len(record["steps"]["loss"]))
            if work >= MIN_CALIBRATION_WORK and math.isfinite(record["wall_time"]) and not record["diverged"]:
                costs.append((_kind(c), int(c["seq_len"]), record["wall_time"] / work))
        except (TypeError, KeyError):
            continue  # not a run record (a cached_call value)
    return costs


def seconds_per_frame(config: TrainConfig, costs: list[tuple[str, int, float]]) -> float:
    """Seconds per work frame for ``config``: the median over the cached runs of its kind whose
    sequence length is nearest its own (on a log scale; the cost per frame falls as T grows,
    since a longer sequence repeats more images, so calibrating on shorter runs overstates);
    any kind when none of its own is cached; :data:`SECONDS_PER_FRAME` when none at all."""
    mine = [c for c in costs if c[0] == _kind(config.to_dict())] or costs
    if not mine:
        return SECONDS_PER_FRAME
    distance = [abs(math.log(t / config.seq_len)) for _, t, _ in mine]
    nearest = min(distance)
    return float(np.median([rate for (_, _, rate), d in zip(mine, distance) if d <= nearest + 1e-9]))


def estimate_seconds(configs, cache_dir: str | Path | None = RUNS_DIR, costs=None) -> float:
    """Estimated CPU seconds to train ``configs`` one after the other (runs to a criterion at
    their cap: an upper bound). ``costs``: :func:`frame_costs` already read (default: read
    them from ``cache_dir``)."""
    if costs is None:
        costs = frame_costs(cache_dir) if configs else []
    return float(sum(seconds_per_frame(c, costs) * work_frames(c.to_dict(), planned_updates(c)) for c in configs))


# ----------------------------------------------------------------------------- sweeps
def with_seeds(configs, seeds) -> list[TrainConfig]:
    """Every configuration once per seed."""
    return [dataclasses.replace(c, seed=int(s)) for c in configs for s in seeds]


def recorded(config: TrainConfig, store: str | None = None, cache_dir: str | Path | None = RUNS_DIR,
             shipped: dict | None = None) -> dict | None:
    """The record a sweep reads for ``config`` instead of training it: the shipped reference
    record when ``store`` names the run's store and the store is read (``shipped``: the loaded
    store, default :func:`rnnbook.reference.cached_load`), else the run cache's; None when
    neither has it (the run would train)."""
    from rnnbook import reference

    if store and reference.mode() != "off":
        record = (reference.cached_load() if shipped is None else shipped).get(reference.protocol_key(config))
        if record is not None:
            return record
    return _load(run_path(config, cache_dir)) if cache_dir is not None else None


def run_sweep(configs, seeds=(0,), cache_dir: str | Path | None = RUNS_DIR, desc: str = "sweep",
              labels=None, executor=None, store: str | None = None) -> pd.DataFrame:
    """Run (or load) every configuration x seed; one row per run, in the order of the grid.

    Args:
        configs: :class:`TrainConfig` s (their own ``seed`` is replaced by each of ``seeds``).
        seeds: the seeds.
        cache_dir: where finished runs are stored; None disables the cache.
        desc: the progress bar's label.
        labels: optional display label per configuration (same length as ``configs``),
            stored in the ``label`` column.
        executor: a :class:`LocalExecutor` or :class:`RayExecutor` for the runs not cached
            (default: :func:`executor_from_env`).
        store: the name of the shipped reference records these runs belong to
            (:mod:`rnnbook.reference`): in its ``read`` mode a shipped record stands in for its
            run; in ``write`` mode (``rnnbook build --recompute``) computed runs are appended to
            the store as well; None or mode ``off``: the store is not used.

    Finished runs are written to the cache as they arrive (a failed run never is), so an
    interrupted sweep resumes. The progress bar (runs finished / total, time left) goes to
    :func:`progress_file`, never into the book.
    """
    from tqdm.auto import tqdm

    configs = list(configs)
    labels = list(labels) if labels is not None else [None] * len(configs)
    if len(labels) != len(configs):
        raise ValueError(f"labels has {len(labels)} entries for {len(configs)} configurations")
    jobs = [(label, run) for config, label in zip(configs, labels) for run in with_seeds([config], seeds)]
    keys = [run_key(cfg) if cache_dir is not None else str(i) for i, (_, cfg) in enumerate(jobs)]
    first = {}  # key -> first job with it (a grid may list a run twice; it runs once)
    for (_, cfg), key in zip(jobs, keys):
        first.setdefault(key, cfg)
    out, position = progress_file()
    bar = tqdm(total=len(jobs), desc=desc, unit="run", file=out, position=position, leave=False, dynamic_ncols=True)
    records: dict[str, dict] = {}
    from rnnbook import reference

    mode = reference.mode() if store else "off"
    shipped = reference.cached_load() if mode != "off" else {}
    for key, cfg in first.items():
        record = recorded(cfg, store if mode != "off" else None, cache_dir, shipped)
        if record is not None and mode == "write" and reference.protocol_key(cfg) not in shipped:
            reference.append(cfg, record, reference.part_name(store))  # computed earlier, not yet in the store
        if record is not None:
            records[key] = record
            bar.update(keys.count(key))
    missing = [key for key in first if key not in records]

    def done(i: int, record: dict) -> None:
        key = missing[i]
        if cache_dir is not None and not record.get("failed"):
            _store(run_path(first[key], cache_dir), _dumps(record))
        if mode == "write" and not record.get("failed"):
            reference.append(first[key], record, reference.part_name(store))
        if record.get("failed"):
            print(f"{desc}: run {first[key]} failed: {record['error']}", file=sys.__stderr__, flush=True)
        records[key] = record
        bar.update(keys.count(key))

    try:
        (executor or executor_from_env()).run([first[k] for k in missing], done)
    finally:
        bar.close()
    return summary_frame([dict(records[key], label=label) for (label, _), key in zip(jobs, keys)])


#: The terminal ``rnnbook build`` runs in, for the sweeps' progress bars in its chapters' kernels
#: (whose stderr goes to the chapter's log).
PROGRESS_ENV = "RNNBOOK_PROGRESS"
_progress: dict[str, Any] = {}


def progress_file() -> tuple[Any, int | None]:
    """``(file, tqdm position)`` of the sweeps' progress bars: the terminal named by
    :data:`PROGRESS_ENV` (below the build's chapter and cell bars), else this process's stderr
    (in a chapter built without a terminal: the chapter's log, ``_build/logs/``)."""
    path = os.environ.get(PROGRESS_ENV)
    if path:
        if path not in _progress:
            try:
                _progress[path] = open(path, "w", buffering=1)
            except OSError:
                _progress[path] = None
        if _progress[path] is not None:
            return _progress[path], 2
    return sys.__stderr__, None


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
        row["failed"] = bool(r.get("failed", False))
        row["error"] = r.get("error")
        row["final_val_acc"] = r["epoch_val_acc"][-1] if r["epoch_val_acc"] else np.nan
        steps = r.get("steps") or {}
        if not steps and "check_grad_norm_max" in r:  # a compact record (rnnbook.reference): per-check statistics
            steps = {"grad_norm": r["check_grad_norm_median"], "max_abs_state": r["check_max_abs_state_max"]}
            grad_max = np.asarray(r["check_grad_norm_max"], dtype=float)
        else:
            grad_max = np.asarray(steps.get("grad_norm", []), dtype=float)
        grad = np.asarray(steps.get("grad_norm", []), dtype=float)
        finite, finite_max = grad[np.isfinite(grad)], grad_max[np.isfinite(grad_max)]
        row["median_grad_norm"] = float(np.median(finite)) if finite.size else np.nan
        row["max_grad_norm"] = float(np.max(finite_max)) if finite_max.size else np.nan
        state = np.asarray(steps.get("max_abs_state", []), dtype=float)
        row["max_abs_state"] = (np.nan if row["failed"] else float(np.nanmax(state))
                                if state.size and np.isfinite(state).any() else np.inf)
        row["steps_run"] = int(r.get("updates") or len(steps.get("loss", [])))
        row["record"] = r
        rows.append(row)
    return pd.DataFrame(rows)


def steps_frame(runs: pd.DataFrame, fields=("loss", "grad_norm", "max_abs_state")) -> pd.DataFrame:
    """Long frame of per-step statistics: one row per run x step, with the run's configuration."""
    keep = [c for c in runs.columns if c != "record"]
    parts = []
    for _, row in runs.iterrows():
        steps = row["record"]["steps"]
        part = pd.DataFrame({f: steps.get(f, []) for f in fields})
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
