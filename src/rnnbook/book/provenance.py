"""The provenance block that ends every chapter page.

A chapter's last cell (tagged ``remove-input``) calls::

    from rnnbook.book import provenance
    provenance.block(globals())

which displays a Markdown admonition titled "Provenance" (class
``provenance``) with the preset and parameters the chapter ran with, the git
commit (and whether the work tree was dirty), the TensorFlow / Keras / NumPy
versions, the CPU count, the execution date and the wall time since the
chapter's kernel imported :mod:`rnnbook`.

``rnnbook build`` tells the kernel its preset through the environment
variables ``RNNBOOK_PRESET`` and ``RNNBOOK_OVERRIDES``; when they are absent
(plain ``jupyter-book build .``) the chapter ran with its own defaults.
"""
from __future__ import annotations

import ast
import datetime as _dt
import os
import subprocess
import sys
import time
from importlib import metadata
from typing import Any, Mapping, Sequence

import rnnbook

PRESET_ENV = "RNNBOOK_PRESET"
OVERRIDES_ENV = "RNNBOOK_OVERRIDES"
PLAIN = "chapter defaults (plain jupyter-book build)"


def preset_label(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    preset = environ.get(PRESET_ENV)
    if not preset:
        return PLAIN
    overrides = environ.get(OVERRIDES_ENV, "").strip()
    return f"{preset}, with overrides: {overrides}" if overrides else preset


def git_state(cwd: str | None = None) -> str:
    """``"abc1234"``, ``"abc1234 (dirty)"``, ``"no commit yet"`` or ``"unknown"``."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20)

    try:
        if git("rev-parse", "--is-inside-work-tree").returncode != 0:
            return "unknown (not a git work tree)"
        head = git("rev-parse", "--short", "HEAD")
        commit = head.stdout.strip() if head.returncode == 0 else "no commit yet"
        status = git("status", "--porcelain")
        if status.returncode != 0:
            return f"{commit} (dirty state unknown)"
        return f"{commit} (dirty)" if status.stdout.strip() else commit
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"


def _version(module: str, *dists: str) -> str:
    mod = sys.modules.get(module)
    if mod is not None and getattr(mod, "__version__", None):
        return str(mod.__version__)
    for dist in dists or (module,):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def versions() -> dict[str, str]:
    return {
        "TensorFlow": _version("tensorflow", "tensorflow-cpu", "tensorflow"),
        "Keras": _version("keras"),
        "NumPy": _version("numpy"),
    }


class ProvenanceError(ValueError):
    """The chapter's parameters cannot be found or written as YAML."""


def _literal_assignments(source: str) -> list[str] | None:
    """The names a cell assigns if it holds nothing but ``name = <literal>`` lines, else None."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    names = []
    for stmt in tree.body:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)):
            return None
        try:
            ast.literal_eval(stmt.value)
        except ValueError:
            return None
        names.append(stmt.targets[0].id)
    return names or None


def parameter_names(history: Sequence[str]) -> list[str]:
    """The chapter's parameters, from the kernel's input history (IPython's ``In``): the names of
    the first cell made only of ``name = <literal>`` lines (the ``parameters`` cell) and of the
    cell papermill injects after it (``# Parameters``)."""
    sources = [s or "" for s in history]
    for i, source in enumerate(sources):
        names = _literal_assignments(source)
        if names is None:
            continue
        injected = _literal_assignments(sources[i + 1]) if i + 1 < len(sources) else None
        if injected and sources[i + 1].lstrip().startswith("# Parameters"):
            names += [n for n in injected if n not in names]
        return names
    return []


def parameters(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters the chapter ran with.

    ``namespace`` is either the chapter's ``globals()`` (an IPython namespace with ``In``: the
    names come from the parameters cell, see :func:`parameter_names`, the values from the
    namespace) or the parameters themselves, e.g. ``{"seed": 0, "seq_len": 20}``.
    """
    if "In" in namespace and "__name__" in namespace:
        names = parameter_names(list(namespace["In"]))
        if not names:
            raise ProvenanceError(
                "no parameters cell in the kernel's history (a first cell of `name = <literal>` "
                "lines); pass the parameters explicitly: provenance.block({'seed': seed, ...})")
        return {n: namespace[n] for n in names if n in namespace}
    return {k: v for k, v in namespace.items() if not str(k).startswith("_")}


def params_yaml(params: Mapping[str, Any]) -> str:
    """The parameters as YAML that ``rnnbook build -f`` reads back to the same values."""
    import yaml

    plain = {}
    for name, value in params.items():
        value = value.tolist() if hasattr(value, "tolist") else value
        try:
            yaml.safe_dump(value)
        except yaml.representer.RepresenterError:
            raise ProvenanceError(f"parameter {name!r} = {value!r} is not plain data "
                                  "(numbers, strings, booleans, None and lists of them)") from None
        plain[name] = value
    return yaml.safe_dump(plain, sort_keys=False, default_flow_style=None, width=float("inf"))


def rebuild_command(filename: str) -> str:
    return f"rnnbook build -f {filename}"


def markdown(namespace: Mapping[str, Any] | None = None, *, now: float | None = None) -> str:
    """The provenance block as MyST Markdown: every parameter in full, the link to
    ``<page>.params.yaml`` and the command that rebuilds the page from it."""
    from rnnbook.book.files import PAGE_TOKEN, data_link

    namespace = namespace or {}
    now = time.time() if now is None else now
    params = parameters(namespace)
    v = versions()
    date = _dt.datetime.fromtimestamp(now, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    wall = now - rnnbook.IMPORTED_AT
    commit = git_state()
    yaml_name = f"{PAGE_TOKEN}.params.yaml"
    exact = "" if "dirty" not in commit else " (the work tree had uncommitted changes)"
    plist = "".join(f"\n  - `{k} = {v!r}`" for k, v in params.items()) or " none"
    lines = [
        "```{admonition} Provenance",
        ":class: provenance",
        "",
        f"- **Rebuild this page:** download {data_link(yaml_name, yaml_name, 'rnnbook-params')} (exactly the "
        f"parameters below) and run `{rebuild_command(yaml_name)}` at commit "
        f"`{commit.split()[0]}`{exact}.",
        f"- **Preset:** {preset_label()}",
        f"- **Parameters:**{plist}",
        f"- **Git commit:** `{commit}`",
        f"- **TensorFlow / Keras / NumPy:** {v['TensorFlow']} / {v['Keras']} / {v['NumPy']}",
        f"- **CPUs:** {os.cpu_count()}",
        f"- **Executed:** {date}",
        f"- **Wall time:** {wall:.1f} s",
        "```",
    ]
    return "\n".join(lines)


def block(namespace: Mapping[str, Any] | None = None) -> None:
    """Display the provenance block and publish ``<page>.params.yaml`` beside the page (call it
    in a chapter's last cell: ``block(globals())`` or ``block({"seed": seed, ...})``)."""
    from IPython.display import Markdown, display

    from rnnbook.book.files import PAGE_TOKEN, publish

    namespace = namespace or {}
    publish(f"{PAGE_TOKEN}.params.yaml", params_yaml(parameters(namespace)))
    display(Markdown(markdown(namespace)))
