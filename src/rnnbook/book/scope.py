"""What a build covers: ``--only`` (which chapters execute, and the page of one that does not),
the executor of the chapters' sweeps (``--executor``), and ``--dry-run`` (the runs per chapter,
those already cached, and the estimated run-hours), for :mod:`rnnbook.book.build`."""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from rnnbook.book import chapter_cache, params
from rnnbook.book.params import ParamError

KERNEL = "python3"


def _strip_ext(docname: str) -> str:
    """``chapters/relu.md`` -> ``chapters/relu``."""
    for ext in (".md", ".ipynb", ".rst"):
        if docname.endswith(ext):
            return docname[: -len(ext)]
    return docname


def select_chapters(chapters: list["Chapter"], only: Iterable[str]) -> set[str]:
    """The docnames ``--only`` names (a docname such as ``chapters/relu`` or its stem ``relu``);
    every chapter when ``only`` is empty. An unknown name is a ParamError listing the chapters."""
    names = [n.strip() for item in only for n in str(item).split(",") if n.strip()]
    if not names:
        return {c.docname for c in chapters}
    by_name = {**{c.title: c.docname for c in chapters}, **{c.docname: c.docname for c in chapters}}
    unknown = [n for n in names if _strip_ext(n) not in by_name]
    if unknown:
        raise ParamError(f"--only: no chapter {unknown[0]!r}{params.suggest(unknown[0], by_name)}; "
                         f"the chapters are {', '.join(c.title for c in chapters)}")
    return {by_name[_strip_ext(n)] for n in names}


def placeholder_notebook(chapter: Chapter):
    """A notebook standing in for a chapter left out by ``--only`` that has no executed notebook
    for the current parameters: its title and a note saying how to build it."""
    import nbformat

    text = chapter.path.read_text()
    title = next((ln[2:].strip() for ln in text.splitlines() if ln.startswith("# ")), chapter.title)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(
        f"# {title}\n\n```{{note}}\nThis chapter was not executed in this build (`rnnbook build --only` "
        f"left it out and no executed notebook exists for the current parameters). Build it with "
        f"`rnnbook build --only {chapter.title}` or build the whole book.\n```\n")]
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    return nb


def _not_selected(job: Job, cache, build_dir: Path) -> tuple[Path, str]:
    """A chapter ``--only`` left out: its cached notebook for the current parameters, else a placeholder."""
    import nbformat

    hit = cache.get(job.chapter.docname, job.key)
    if hit is not None:
        return hit, "not selected: cached notebook"
    path = build_dir / "placeholders" / f"{chapter_cache.ChapterCache._slug(job.chapter.docname)}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(placeholder_notebook(job.chapter), path)
    return path, "not selected: placeholder (never executed with these parameters)"


@contextlib.contextmanager
def _environ(values: Mapping[str, str]):
    """``os.environ`` updated with ``values`` for the duration (the kernels inherit it)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _executor(kernel_env: dict[str, str], out):
    """For ``--executor ray`` without an address: start one Ray on this machine for the whole
    build (the kernels join it; it stops with the build). Says where the runs go."""
    from rnnbook import runtime, sweeps

    if kernel_env[sweeps.EXECUTOR_ENV] != "ray":
        workers = int(kernel_env[sweeps.WORKERS_ENV])
        print(f"executor: local, {'one run at a time in the kernel' if workers == 1 else f'{workers} worker processes'}"
              f" ({runtime.RUN_THREADS} thread(s) per run)", file=out, flush=True)
        yield
        return
    if kernel_env[sweeps.RAY_ADDRESS_ENV]:
        print(f"executor: ray, joining the cluster at {kernel_env[sweeps.RAY_ADDRESS_ENV]} "
              f"({kernel_env[sweeps.RAY_CPUS_ENV]} CPU(s) per run)", file=out, flush=True)
        yield
        return
    ray = sweeps.RayExecutor().connect()
    try:
        address = ray.get_runtime_context().gcs_address
        kernel_env[sweeps.RAY_ADDRESS_ENV] = address
        print(f"executor: ray, a local Ray at {address} with {ray.cluster_resources().get('CPU', 0):g} CPU(s) "
              f"({kernel_env[sweeps.RAY_CPUS_ENV]} per run)", file=out, flush=True)
        yield
    finally:
        ray.shutdown()


#: What ``plan`` the chapter module of a chapter is: ``rnnbook.experiments.<chapter file stem>``.
PLAN_MODULE = "rnnbook.experiments.{stem}"


@dataclass
class ChapterPlan:
    docname: str
    runs: int | None        # None: the chapter module has no ``plan`` (grid unknown)
    cached: int = 0         # runs in the run cache (not shipped)
    shipped: int = 0        # runs read from the shipped reference records (not trained)
    seconds: float = 0.0    # estimated, runs not cached
    notebook_cached: bool = False
    selected: bool = True


def shipped_keys(job: Job) -> set[str]:
    """Protocol keys of the shipped reference records the chapter's sweeps read: every key of
    the store when the chapter module names one (``STORE``) and the store is read, else none."""
    import importlib

    from rnnbook import reference

    try:
        module = importlib.import_module(PLAN_MODULE.format(stem=job.chapter.title))
    except ModuleNotFoundError:
        return set()
    if not getattr(module, "STORE", None) or reference.mode() == "off" or not reference.store_dir().is_dir():
        return set()
    return set(reference.cached_load())


def planned_runs(job: Job) -> list | None:
    """The training runs of one chapter, from ``plan(parameters) -> list[TrainConfig]`` of its
    module (:data:`PLAN_MODULE`), given every parameter the chapter declares (its defaults
    updated with the build's values); None when the module or its ``plan`` does not exist."""
    import importlib

    name = PLAN_MODULE.format(stem=job.chapter.title)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            return None
        raise
    plan_fn = getattr(module, "plan", None)
    return None if plan_fn is None else list(plan_fn({**job.chapter.defaults, **job.parameters}))


def _quietly(fn, *args):
    """``fn(*args)`` without progress bars: a planner that loads recorded grids through the sweeps
    would flash their bars over the dry run's table (``TQDM_DISABLE``, restored after)."""
    import os

    before = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        return fn(*args)
    finally:
        if before is None:
            del os.environ["TQDM_DISABLE"]
        else:
            os.environ["TQDM_DISABLE"] = before


def dry_run(jobs: list[Job], selected: set[str], cache, force: bool = False) -> list[ChapterPlan]:
    """What a build would run: per chapter the runs, those in the run cache, the estimated time."""
    from rnnbook import sweeps

    plans, seen = [], set()  # a run two chapters share is trained (and counted) once
    costs = sweeps.frame_costs(sweeps.RUNS_DIR)  # read once, not per chapter
    for job in jobs:
        name = job.chapter.docname
        cp = ChapterPlan(name, None, selected=name in selected,
                         notebook_cached=not force and cache.get(name, job.key) is not None)
        runs = _quietly(planned_runs, job) if cp.selected else []
        if runs is not None:
            from rnnbook import reference

            unique = {sweeps.run_key(c): c for c in runs}
            store = shipped_keys(job) if runs else set()
            shipped = {k for k, c in unique.items() if reference.protocol_key(c) in store}
            cached = {k for k, c in unique.items() if k not in shipped and sweeps.is_cached(c, sweeps.RUNS_DIR)}
            cp.runs, cp.cached, cp.shipped = len(unique), len(cached), len(shipped)
            if not cp.notebook_cached:
                todo = [c for k, c in unique.items() if k not in shipped | cached | seen]
                cp.seconds = sweeps.estimate_seconds(todo, costs=costs)
                seen |= set(unique)
        plans.append(cp)
    return plans


def print_plan(plans: list[ChapterPlan], out) -> None:
    w = max([len(p.docname) for p in plans] + [7])
    print(f"{'chapter'.ljust(w)}  {'runs':>6}  {'shipped':>7}  {'cached':>6}  {'run-hours':>9}  notebook", file=out)
    print(f"{'-' * w}  {'-' * 6}  {'-' * 7}  {'-' * 6}  {'-' * 9}  {'-' * 8}", file=out)
    for p in plans:
        if not p.selected:
            print(f"{p.docname.ljust(w)}  {'-':>6}  {'-':>7}  {'-':>6}  {'-':>9}  not selected (--only)", file=out)
            continue
        nb = "cached: not executed" if p.notebook_cached else "executed"
        if p.runs is None:
            print(f"{p.docname.ljust(w)}  {'?':>6}  {'?':>7}  {'?':>6}  {'?':>9}  {nb} (grid unknown: no plan())",
                  file=out)
        else:
            print(f"{p.docname.ljust(w)}  {p.runs:>6}  {p.shipped:>7}  {p.cached:>6}  "
                  f"{p.seconds / 3600:>9.2f}  {nb}", file=out)
    known = [p for p in plans if p.selected and p.runs is not None and not p.notebook_cached]
    hours = sum(p.seconds for p in known) / 3600
    unknown = [p.docname for p in plans if p.selected and p.runs is None]
    print(f"\nestimated {hours:.2f} run-hours for the runs neither shipped nor cached of the chapters that execute"
          f" (one run at a time; a run to a criterion counted at its cap of updates; divide by the"
          f" runs in parallel)"
          + (f"; grid unknown for {', '.join(unknown)}" if unknown else ""), file=out)
    out.flush()
