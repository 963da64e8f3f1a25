"""``rnnbook build``: execute the chapters with parameters, cache them, build the HTML.

1. Read ``_toc.yml``; every MyST Markdown notebook (or ``.ipynb``) in it is a
   chapter, every other file a static page.
2. Resolve and validate parameters (preset < ``-f`` files < ``-p``) before
   anything runs.
3. For each chapter compute its cache key (:mod:`rnnbook.book.chapter_cache`); run it
   with papermill only when the key is new (or ``--force``).
4. Assemble ``_build/src``: the book's files with each chapter replaced by its
   executed notebook and ``execute_notebooks: 'off'``; rewrite only files whose
   bytes changed so that Sphinx rebuilds only what changed.
5. ``jupyter-book build _build/src --path-output . -W -n --keep-going``.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from rnnbook.book import chapter_cache, cross_checks, parameters_cell, params, pdf, values
from rnnbook.book.params import ParamError
from rnnbook.book.provenance import OVERRIDES_ENV, PRESET_ENV
from rnnbook.book.scope import (  # noqa: F401 - part of the build's interface
    ChapterPlan, KERNEL, PLAN_MODULE, _environ, _executor, _not_selected, _strip_ext, dry_run, placeholder_notebook,
    planned_runs, print_plan, select_chapters)

#: Directories of the repository that never go into the assembled book source.
NOT_BOOK = {"_build", "src", "tests", "data", "presets", "build", "dist", "node_modules", "__pycache__"}


from rnnbook.book.errors import BuildError, ChapterFailed  # noqa: E402,F401 - part of the build's interface


# --------------------------------------------------------------------------
# The table of contents
# --------------------------------------------------------------------------
def toc_docnames(root: Path) -> list[str]:
    """Every docname in ``_toc.yml``, in reading order (root first)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text()) or {}
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "file" in node:
                out.append(str(node["file"]))
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []) or []:
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    if "root" not in toc:
        raise BuildError(f"{root / '_toc.yml'} has no 'root' entry")
    out.append(str(toc["root"]))
    walk({k: v for k, v in toc.items() if k in ("parts", "chapters", "sections")})
    return [_strip_ext(d) for d in out]


def source_of(root: Path, docname: str) -> Path:
    for ext in (".md", ".ipynb", ".rst"):
        p = root / (docname + ext)
        if p.exists():
            return p
    raise BuildError(f"_toc.yml lists {docname!r} but no {docname}.md/.ipynb/.rst exists")


def is_notebook(path: Path) -> bool:
    """A .ipynb, or a MyST Markdown file whose front matter names a kernel (jupytext)."""
    if path.suffix == ".ipynb":
        return True
    if path.suffix != ".md":
        return False
    text = path.read_text()
    if not text.startswith("---"):
        return False
    end = text.find("\n---", 3)
    if end < 0:
        return False
    try:
        front = yaml.safe_load(text[3:end]) or {}
    except yaml.YAMLError:
        return False
    return isinstance(front, dict) and ("kernelspec" in front or "jupytext" in front)


@dataclass
class Chapter:
    docname: str
    path: Path
    defaults: dict[str, Any]  # declared parameters -> default
    descriptions: dict[str, str] = field(default_factory=dict)  # declared parameters -> meaning (their comments)

    @property
    def title(self) -> str:
        return self.docname.rsplit("/", 1)[-1]


def find_chapters(root: Path) -> list[Chapter]:
    """The notebook chapters of the book with their declared parameters.

    Raises ParamError when a chapter does not have exactly one parameters cell
    or declares a parameter that is not in :data:`rnnbook.book.params.REGISTRY`.
    """
    chapters = []
    for docname in toc_docnames(root):
        path = source_of(root, docname)
        if not is_notebook(path):
            continue
        nb = parameters_cell.read_notebook(path)
        defaults = parameters_cell.declared_parameters(path, nb)
        unregistered = [n for n in defaults if n not in params.REGISTRY]
        if unregistered:
            n = unregistered[0]
            raise ParamError(
                f"{path.relative_to(root)} declares parameter {n!r} that is not registered in "
                f"src/rnnbook/book/params.py{params.suggest(n, params.REGISTRY)}"
            )
        chapters.append(Chapter(docname, path, defaults, parameters_cell.declared_descriptions(path, nb)))
    return chapters


def descriptions(chapters: list[Chapter]) -> dict[str, str]:
    """Each parameter's description as the first chapter declaring it writes it (for messages)."""
    out: dict[str, str] = {}
    for c in chapters:
        for name, text in c.descriptions.items():
            out.setdefault(name, text)
    return out


# --------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------
@dataclass
class Resolved:
    values: dict[str, Any]          # merged, validated
    preset: str
    overridden: set[str] = field(default_factory=set)  # names given by -f / -p


def resolve_parameters(
    root: Path,
    chapters: list[Chapter],
    preset: str = "default",
    files: Iterable[str | Path] = (),
    overrides: Iterable[str] = (),
) -> Resolved:
    """Load preset, ``-f`` files and ``-p NAME=VALUE`` texts; validate everything."""
    declared = {c.docname: list(c.defaults) for c in chapters}
    declared_names = {n for names in declared.values() for n in names}
    meaning = descriptions(chapters)

    preset_values = params.load_preset(root, preset)
    for name in preset_values:
        if name not in params.REGISTRY:
            raise ParamError(
                f"unknown parameter {name!r} (from presets/{preset}.yaml)"
                f"{params.suggest(name, params.REGISTRY)}"
            )
    # A preset may hold values for registered chapters that are not in the
    # table of contents (yet); those are ignored.
    preset_values = {k: v for k, v in preset_values.items() if k in declared_names}
    values = params.validate(preset_values, declared, source=f"presets/{preset}.yaml", descriptions=meaning)

    overridden: set[str] = set()
    for f in files:
        loaded = params.validate(params.load_yaml_file(f), declared, source=str(f), descriptions=meaning)
        values.update(loaded)
        overridden |= set(loaded)
    pairs = dict(params.parse_assignment(text) for text in overrides)
    loaded = params.validate(pairs, declared, source="-p", descriptions=meaning)
    values.update(loaded)
    overridden |= set(loaded)
    for c in chapters:
        cross_checks.check_chapter({**c.defaults, **params.for_chapter(values, c.defaults)}, c.docname)
    return Resolved(values, preset, overridden)


def _per_chapter(chapters: list[Chapter], text_of) -> str:
    """``text_of(chapter)`` when the chapters agree, else each text with the chapters that have it
    (``"relu, clipping: 64; why_tanh: 32"``)."""
    groups: dict[str, list[str]] = {}
    for c in chapters:
        groups.setdefault(text_of(c), []).append(c.title)
    if len(groups) == 1:
        return next(iter(groups))
    return "; ".join(f"{', '.join(titles)}: {text}" for text, titles in groups.items())


def list_params(root: Path) -> str:
    """A table of every parameter: chapters, type, default, description (the comment ending its
    line in the chapters' parameters cells)."""
    chapters = find_chapters(root)
    rows = [("parameter", "chapter(s)", "type", "default", "description")]
    seen: dict[str, list[Chapter]] = {}
    for c in chapters:
        for name in c.defaults:
            seen.setdefault(name, []).append(c)
    for name in sorted(seen):
        rows.append((name, ", ".join(c.title for c in seen[name]), params.REGISTRY[name].type_name,
                     _per_chapter(seen[name], lambda c: repr(c.defaults[name])),
                     _per_chapter(seen[name], lambda c: c.descriptions.get(name, ""))))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(r[j].ljust(widths[j]) for j in range(4)) + "  " + r[4])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 11)
    presets = ", ".join(params.available_presets(root)) or "none"
    lines.append("")
    lines.append(f"presets ({root / 'presets'}): {presets}")
    unused = sorted(set(params.REGISTRY) - set(seen))
    if unused:
        lines.append(f"registered but used by no chapter in _toc.yml: {', '.join(unused)}")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------
@dataclass
class Job:
    chapter: Chapter
    parameters: dict[str, Any]
    env: dict[str, str]
    key: str


def plan(root: Path, chapters: list[Chapter], resolved: Resolved) -> list[Job]:
    src = chapter_cache.src_digest()
    versions = chapter_cache.installed_versions(chapter_cache.runtime_packages())
    jobs = []
    for c in chapters:
        p = params.for_chapter(resolved.values, c.defaults)
        env = {
            PRESET_ENV: resolved.preset,
            OVERRIDES_ENV: ", ".join(sorted(resolved.overridden & set(c.defaults))),
            **chapter_cache.data_key(),  # RNNBOOK_DATA, when it moves the data
            **chapter_cache.reference_key(),  # the shipped reference records the chapter may read
            **chapter_cache.presets_key(root),  # the presets, which a chapter may read (pages.preset)
        }
        key = chapter_cache.cache_key(c.path.read_bytes(), p, src, versions, env)
        jobs.append(Job(c, p, env, key))
    return jobs


def _first_lines(source: str, n: int = 3) -> str:
    lines = [ln for ln in source.splitlines() if ln.strip()]
    text = "\n".join("    " + ln for ln in lines[:n])
    return text + ("\n    ..." if len(lines) > n else "")


@contextlib.contextmanager
def _stderr_to(log_path: Path):
    """Send file descriptor 2 (inherited by the kernel: TensorFlow's C++ logs,
    kernel warnings) to ``log_path`` for the duration."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(log_path, "wb") as log:
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _progress_env(term) -> dict[str, str]:
    """Where the chapter's sweeps show their progress bars: the build's terminal when ``term`` is
    one (:data:`rnnbook.sweeps.PROGRESS_ENV`), else nothing (they go to the chapter's log)."""
    from rnnbook import sweeps

    try:
        return {sweeps.PROGRESS_ENV: os.ttyname(term.fileno())} if term is not None and term.isatty() else {}
    except OSError:
        return {}


def _log_path(build_dir: Path, docname: str) -> Path:
    """The log of a chapter's kernel (its stderr: TensorFlow's logs, the sweeps' progress without a terminal)."""
    return build_dir / "logs" / f"{chapter_cache.ChapterCache._slug(docname)}.log"


def execute(root: Path, job: Job, build_dir: Path, progress: bool = True, term=None) -> Path:
    """Run one chapter with papermill; return the executed notebook path.

    On an exception in the chapter raise ChapterFailed naming the chapter, the
    cell and the exception; the executed notebook is kept under
    ``<build_dir>/failed/``.
    """
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    slug = chapter_cache.ChapterCache._slug(job.chapter.docname)
    # every execution has its own folder: simultaneous builds of one checkout never write the same
    # notebook (the folder goes once the notebook is cached)
    (build_dir / "executing").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{slug}-", dir=build_dir / "executing"))
    nb = parameters_cell.read_notebook(job.chapter.path)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    nb.metadata.pop("jupytext", None)
    src_nb = work / f"{slug}.source.ipynb"
    out_nb = work / f"{slug}.ipynb"
    nbformat.write(nb, src_nb)
    log = _log_path(build_dir, job.chapter.docname)
    try:
        with _environ({**job.env, **_progress_env(term)}), _stderr_to(log):
            papermill.execute_notebook(
                str(src_nb), str(out_nb), parameters=job.parameters, kernel_name=KERNEL,
                language="python", cwd=str(root), log_output=False,
                progress_bar={"position": 1, "leave": False, "desc": "  cells", "file": term}
                if progress and term is not None else False,
            )
    except PapermillExecutionError as exc:
        failed = build_dir / "failed" / f"{slug}.ipynb"
        failed.parent.mkdir(parents=True, exist_ok=True)
        if out_nb.exists():
            shutil.move(str(out_nb), failed)
        raise ChapterFailed(
            f"chapter {job.chapter.docname} ({job.chapter.path.relative_to(root)}) failed in cell "
            f"{exc.cell_index} (In [{exc.exec_count}]):\n{_first_lines(exc.source)}\n"
            f"{exc.ename}: {exc.evalue}\n"
            f"The executed notebook with the traceback is kept at {failed}\n"
            f"(kernel log: {log})"
        ) from None
    finally:
        src_nb.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            work.rmdir()  # after a failure (the notebook went to failed/)
    return out_nb


# --------------------------------------------------------------------------
# The assembled book source
# --------------------------------------------------------------------------
def _book_files(root: Path, skip: set[Path]) -> dict[str, Path]:
    """Relative path -> file, for every file of the book proper."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        rel = d.relative_to(root)
        dirnames[:] = sorted(
            n for n in dirnames
            if not n.startswith(".") and n not in NOT_BOOK and not n.endswith(".egg-info")
        )
        for n in sorted(filenames):
            p = d / n
            if n.startswith(".") or p in skip or n.endswith((".pyc", ".tmp")):
                continue
            out[(rel / n).as_posix()] = p
    return out


def book_config(root: Path) -> bytes:
    """``_config.yml`` with notebook execution switched off."""
    config = yaml.safe_load((root / "_config.yml").read_text()) or {}
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    return yaml.safe_dump(config, sort_keys=False).encode()


def assemble(root: Path, tree: Path, executed: Mapping[str, Path], chapters: list[Chapter],
             extra: Mapping[str, bytes] | None = None) -> list[str]:
    """Write the book source into ``tree`` (plus ``extra`` files, which win); return the relative
    paths rewritten."""
    wanted: dict[str, bytes | Path] = dict(_book_files(root, {c.path for c in chapters}))
    wanted["_config.yml"] = book_config(root)
    for c in chapters:
        wanted[f"{c.docname}.ipynb"] = executed[c.docname]
    wanted.update(extra or {})
    changed = []
    tree.mkdir(parents=True, exist_ok=True)
    for rel, src in wanted.items():
        data = src if isinstance(src, bytes) else src.read_bytes()
        dest = tree / rel
        if dest.exists() and dest.read_bytes() == data:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        changed.append(rel)
    for p in sorted(tree.rglob("*"), reverse=True):
        rel = p.relative_to(tree).as_posix()
        if p.is_file() and rel not in wanted:
            p.unlink()
        elif p.is_dir() and not any(p.iterdir()):
            p.rmdir()
    return changed


def run_jupyter_book(tree: Path, build_dir: Path, strict: bool = True, verbose: bool = False) -> int:
    cmd = [
        sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
        "build", str(tree), "--path-output", str(build_dir.parent), "--builder", "html",
    ]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    if not verbose:
        cmd += ["--quiet"]  # Sphinx warnings and errors are still shown
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return subprocess.run(cmd, env=env).returncode


# --------------------------------------------------------------------------
# The whole build
# --------------------------------------------------------------------------
@dataclass
class Options:
    root: Path
    preset: str = "default"
    files: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    force: bool = False
    build_dir: Path | None = None
    progress: bool = True
    html: bool = True
    strict: bool = True
    verbose: bool = False
    only: list[str] = field(default_factory=list)   # docnames or file stems; empty: every chapter
    dry_run: bool = False
    executor: str = "local"
    ray_address: str | None = None
    ray_cpus_per_run: float = 1.0
    pdf: bool = False   # also print the book to _build/pdf/rnnbook-<version>.pdf (rnnbook.book.pdf)


def _fmt_seconds(s: float) -> str:
    return f"{s:6.1f} s" if s < 600 else f"{s / 60:6.1f} min"


def build(opts: Options, out=None) -> int:
    """Run the whole build and return 0, or 1 if Jupyter Book failed.

    Raises :class:`ParamError` (bad parameters, before anything runs) and
    :class:`ChapterFailed` (a chapter raised; finished chapters stay cached).
    """
    out = out or sys.stdout
    root = opts.root.resolve()
    build_dir = (opts.build_dir or root / "_build").resolve()
    if build_dir.name != "_build":
        raise BuildError(f"--build-dir must be a directory named _build, got {build_dir}")
    t0 = time.time()
    if opts.pdf and not opts.html:
        raise ParamError("--pdf prints the HTML book: it cannot go with --no-html")

    # 1-2: everything is validated before anything executes
    chapters = find_chapters(root)
    resolved = resolve_parameters(root, chapters, opts.preset, opts.files, opts.overrides)
    selected = select_chapters(chapters, opts.only)
    jobs = plan(root, chapters, resolved)
    cache = chapter_cache.ChapterCache(build_dir / "executed")
    from rnnbook import sweeps  # light: TensorFlow is imported by the chapters, not here

    try:
        kernel_env = sweeps.executor_env(opts.executor, opts.ray_address, opts.ray_cpus_per_run)
    except sweeps.SweepError as exc:
        raise ParamError(str(exc)) from None
    if opts.dry_run:
        print_plan(dry_run(jobs, selected, cache, opts.force), out)
        return 0

    # 3: execute what is not cached (only the selected chapters)
    executed: dict[str, Path] = {}
    report: list[tuple[str, str, float]] = []
    # the terminal, kept while the kernel's stderr (fd 2) goes to a log file
    sys.stderr.flush()
    term = os.fdopen(os.dup(2), "w", buffering=1)
    try:
        with _executor(kernel_env, out), _environ(kernel_env):
            _execute_all(root, [j for j in jobs if j.chapter.docname in selected], cache, build_dir, opts,
                         executed, report, term)
    except ChapterFailed:
        _print_table(report, out)
        raise
    finally:
        term.close()
    for job in jobs:
        if job.chapter.docname not in selected:
            executed[job.chapter.docname], status = _not_selected(job, cache, build_dir)
            report.append((job.chapter.docname, status, 0.0))

    # values.json (every build), the page "Compared with the default book" (other parameters)
    extra = values.before_html(root, build_dir, chapters, jobs, executed, report, resolved,
                               resolve_parameters(root, chapters).values)
    if opts.pdf:
        extra["_config.yml"] = pdf.config_with_pdf(book_config(root))

    # 4-5: the HTML
    code = 0
    html_seconds = 0.0
    if opts.html:
        tree = build_dir / "src"
        changed = assemble(root, tree, executed, chapters, extra)
        print(f"building the HTML with Jupyter Book from {tree} ({len(changed)} file(s) changed) ...",
              file=out, flush=True)
        start = time.time()
        code = run_jupyter_book(tree, build_dir, strict=opts.strict, verbose=opts.verbose)
        html_seconds = time.time() - start
        report.append(("HTML (jupyter-book)", "built" if code == 0 else "FAILED", html_seconds))
        if code == 0:
            values.publish(build_dir)
            if opts.pdf:
                pdf.after_html(root, build_dir, resolved, report, verbose=opts.verbose)
    _print_table(report, out)
    print(f"total {time.time() - t0:.1f} s; preset {resolved.preset!r}", file=out)
    if code != 0:
        print(f"rnnbook: error: jupyter-book build failed (exit {code}): see the warnings above "
              "(the build is strict: every Sphinx warning fails it)", file=sys.stderr)
        return 1
    if opts.html:
        print(f"open {build_dir / 'html' / 'index.html'}", file=out)
    if opts.pdf:
        print(f"PDF: {build_dir / 'pdf' / pdf.pdf_name()}", file=out)
    return 0


def _execute_all(root, jobs, cache, build_dir, opts, executed, report, term) -> None:
    """Execute (or take from the cache) every chapter, with a progress bar over chapters."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), unit="chapter", desc="chapters", disable=not opts.progress,
               position=0, file=term, dynamic_ncols=True)
    try:
        for job in jobs:
            name = job.chapter.docname
            bar.set_description(f"chapter {name}")
            hit = None if opts.force else cache.get(name, job.key)
            if hit is not None:
                executed[name] = hit
                info = cache.info(name, job.key)
                report.append((name, f"cached (ran {info.get('seconds', 0):.1f} s on "
                                     f"{info.get('executed_at', '?')})", 0.0))
                bar.write(f"  {name}: cached", file=term)
                bar.update()
                continue
            start = time.time()
            if not _progress_env(term):
                bar.write(f"  {name}: executing; its sweeps' progress and time left: {_log_path(build_dir, name)}",
                          file=term)
            try:
                nb_path = execute(root, job, build_dir, progress=opts.progress, term=term)
            except ChapterFailed:
                report.append((name, "FAILED", time.time() - start))
                raise
            seconds = time.time() - start
            executed[name] = cache.put(name, job.key, nb_path, {
                "chapter": name, "parameters": job.parameters, "env": job.env, "seconds": round(seconds, 2),
                "executed_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            })
            nb_path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                nb_path.parent.rmdir()  # this execution's folder
            report.append((name, "executed", seconds))
            bar.write(f"  {name}: executed in {seconds:.1f} s", file=term)
            bar.update()
    finally:
        bar.close()


def _print_table(rows: list[tuple[str, str, float]], out) -> None:
    w = max([len(r[0]) for r in rows] + [7])
    print(f"\n{'chapter'.ljust(w)}  {'time':>8}  status", file=out)
    print(f"{'-' * w}  {'-' * 8}  {'-' * 6}", file=out)
    for name, status, seconds in rows:
        t = _fmt_seconds(seconds) if not status.startswith(("cached", "not selected")) else "       -"
        print(f"{name.ljust(w)}  {t:>8}  {status}", file=out)
    out.flush()


def cached_info(build_dir: Path) -> list[dict[str, Any]]:
    """Info of every cached chapter (for debugging / tests)."""
    return [json.loads(p.read_text()) for p in sorted((build_dir / "executed").glob("*.json"))]
