"""Cache of executed chapters, keyed by everything that can change their output.

The key of one chapter hashes:

* the chapter's source file (bytes),
* the parameters it receives (only the ones it declares) and the preset label
  and environment the build passes to its kernel,
* the source of every ``rnnbook`` module a chapter can import: the science, the chapter
  modules (``experiments/``), ``book/pages.py`` and ``book/provenance.py``; not the build
  command, its cache or its parameter parsing (:data:`BUILD_ONLY`), which cannot change a
  number on a page,
* the Python version and the installed versions of the packages a chapter runs
  (:func:`runtime_packages`: the runtime dependencies of the installed ``rnnbook`` and theirs,
  not the ``[test]`` tools nor the ``[ray]`` extra),
* the data directory when ``RNNBOOK_DATA`` moves it (:func:`data_key`): a chapter writes its
  runs and data sets there, so a cached chapter would never fill a new one,
* the shipped reference records (:func:`reference_key`): their part files' names and sizes, and
  the store's mode and place when ``--recompute`` or ``RNNBOOK_REFERENCE`` change them,
* the presets (:func:`presets_key`): a chapter reads the reference preset to find the shipped
  records of the long-budget answer (:func:`rnnbook.book.pages.preset`).

Nothing else: not the git commit, not other chapters, not files outside
``src/rnnbook``, not :data:`BUILD_ONLY`, not the test tools (upgrading pytest or Playwright
re-executes nothing).  An executed notebook is stored as
``<cache>/<chapter>-<key>.ipynb`` next to a ``.json`` with its run time;
entries are never deleted by a build, so switching presets back and forth
re-executes nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

#: The distribution whose runtime dependencies a chapter runs with.
DISTRIBUTION = "rnnbook"
#: Used when ``rnnbook`` is not installed (no metadata to read its dependencies from).
DEFAULT_PACKAGES = (
    "tensorflow-cpu", "tensorflow", "keras", "numpy", "scipy", "scikit-learn", "seaborn", "matplotlib",
    "pandas", "lifelines", "papermill", "jupytext", "myst-nb", "ipykernel",
)

KEY_VERSION = 1  # bump to invalidate every cached chapter


#: Files of the package (relative to it) that only the build command runs: no chapter imports
#: them, so editing them re-executes no chapter.
BUILD_ONLY = frozenset({
    "__main__.py", "bench.py",
    "book/__init__.py", "book/build.py", "book/cli.py", "book/chapter_cache.py", "book/params.py",
    "book/parameters_cell.py",
    "book/site.py", "book/scope.py", "book/cross_checks.py", "book/pdf.py", "book/values.py",
})


def package_dir() -> Path:
    """The directory of the imported ``rnnbook`` package (``src/rnnbook``)."""
    return Path(__file__).resolve().parents[1]


def src_digest(directory: str | Path | None = None) -> str:
    """Hash of every source file under ``directory`` (default: the rnnbook package) that a
    chapter can import, i.e. all but :data:`BUILD_ONLY`.

    Byte-compiled files and caches are ignored; file names are part of the hash.
    """
    directory = Path(directory) if directory is not None else package_dir()
    h = hashlib.sha256()
    files = sorted(
        p for p in directory.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"}
        and p.relative_to(directory).as_posix() not in BUILD_ONLY
    )
    for p in files:
        h.update(p.relative_to(directory).as_posix().encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()


def runtime_packages(distribution: str = DISTRIBUTION) -> list[str]:
    """The installed distributions a chapter runs with, sorted: the runtime requirements of
    ``distribution`` (its ``[project] dependencies`` whose markers hold here; no extra such as
    ``[test]`` or ``[ray]``) and, recursively, theirs (with the extras they ask for).
    :data:`DEFAULT_PACKAGES` if ``distribution`` is not installed."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return sorted(_norm(n) for n in DEFAULT_PACKAGES)
    seen: dict[str, set[str]] = {}  # distribution -> extras followed
    todo = [(_norm(distribution), frozenset())]
    while todo:
        name, extras = todo.pop()
        if name in seen and extras <= seen[name]:
            continue
        seen.setdefault(name, set()).update(extras)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # listed, with version "absent"
        for text in requires:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
                todo.append((_norm(req.name), frozenset(req.extras)))
    return sorted(set(seen) - {_norm(distribution)})


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def data_key(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{"RNNBOOK_DATA": <the data directory, absolute>}`` when ``RNNBOOK_DATA`` is set, else
    ``{}`` (the checkout's ``data/``): the part of a chapter's key that says where it writes."""
    environ = os.environ if environ is None else environ
    if not environ.get("RNNBOOK_DATA"):
        return {}
    return {"RNNBOOK_DATA": str(Path(environ["RNNBOOK_DATA"]).expanduser().resolve())}


def reference_key(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The shipped reference records a chapter may read (:mod:`rnnbook.reference`): their mode and
    a digest of the store's part files (names and sizes), so new records re-execute the chapters."""
    from rnnbook import reference

    environ = os.environ if environ is None else environ
    directory = Path(environ.get(reference.STORE_ENV) or reference.store_dir())
    parts = sorted((p.name, p.stat().st_size) for p in directory.glob("*.jsonl.gz")) if directory.is_dir() else []
    out = {"RNNBOOK_REFERENCE_STAMP": hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]}
    if environ.get(reference.MODE_ENV, "read") != "read":
        out[reference.MODE_ENV] = environ[reference.MODE_ENV]
    if environ.get(reference.STORE_ENV):
        out[reference.STORE_ENV] = str(directory.resolve())
    return out


def presets_key(root: str | Path) -> dict[str, str]:
    """A digest of the book's presets (``presets/*.yaml``, names and bytes): a chapter that reads
    a preset (the relu chapter reads ``reference``) re-executes when one changes."""
    h = hashlib.sha256()
    for p in sorted((Path(root) / "presets").glob("*.yaml")):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return {"RNNBOOK_PRESETS_STAMP": h.hexdigest()[:16]}


def installed_versions(names: Iterable[str]) -> dict[str, str]:
    """``{name: installed version or "absent"}`` plus the Python version."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[_norm(name)] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[_norm(name)] = "absent"
    return out


def _canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float):
        return repr(value)  # 1e-3 and 0.001 are the same float, so the same text
    return value


def cache_key(
    chapter_source: bytes | str,
    params: Mapping[str, Any],
    src: str,
    versions: Mapping[str, str],
    env: Mapping[str, str] | None = None,
) -> str:
    """The hex key of one chapter execution (see the module docstring)."""
    if isinstance(chapter_source, str):
        chapter_source = chapter_source.encode()
    payload = {
        "key_version": KEY_VERSION,
        "chapter": hashlib.sha256(chapter_source).hexdigest(),
        "params": _canonical(dict(params)),
        "src": src,
        "versions": _canonical(dict(versions)),
        "env": _canonical(dict(env or {})),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class ChapterCache:
    """Executed notebooks on disk, one file per (chapter, key)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    @staticmethod
    def _slug(docname: str) -> str:
        return docname.replace("/", "__").replace("\\", "__")

    def path(self, docname: str, key: str) -> Path:
        return self.directory / f"{self._slug(docname)}-{key[:20]}.ipynb"

    def get(self, docname: str, key: str) -> Path | None:
        p = self.path(docname, key)
        return p if p.exists() else None

    def info(self, docname: str, key: str) -> dict[str, Any]:
        p = self.path(docname, key).with_suffix(".json")
        try:
            return json.loads(p.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def put(self, docname: str, key: str, notebook: str | Path, info: Mapping[str, Any]) -> Path:
        """Store an executed notebook atomically (rename) with its info."""
        self.directory.mkdir(parents=True, exist_ok=True)
        dest = self.path(docname, key)
        tmp = dest.with_name(dest.name + f".{os.getpid()}.tmp")
        shutil.copyfile(notebook, tmp)
        dest.with_suffix(".json").write_text(json.dumps(dict(info), indent=1, sort_keys=True, default=str))
        os.replace(tmp, dest)
        return dest
