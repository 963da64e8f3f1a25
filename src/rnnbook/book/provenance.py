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

import datetime as _dt
import os
import subprocess
import sys
import time
from importlib import metadata
from typing import Any, Mapping

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


def _fmt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parameters(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Every registered book parameter that is defined in ``namespace``."""
    from rnnbook.book.params import REGISTRY

    return {name: namespace[name] for name in REGISTRY if name in namespace}


def markdown(namespace: Mapping[str, Any] | None = None, *, now: float | None = None) -> str:
    """The provenance block as MyST Markdown."""
    namespace = namespace or {}
    now = time.time() if now is None else now
    params = parameters(namespace)
    plist = ", ".join(f"`{k} = {_fmt(v)}`" for k, v in params.items()) or "none"
    v = versions()
    date = _dt.datetime.fromtimestamp(now, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    wall = now - rnnbook.IMPORTED_AT
    lines = [
        "```{admonition} Provenance",
        ":class: provenance",
        "",
        f"- **Preset:** {preset_label()}",
        f"- **Parameters:** {plist}",
        f"- **Git commit:** `{git_state()}`",
        f"- **TensorFlow / Keras / NumPy:** {v['TensorFlow']} / {v['Keras']} / {v['NumPy']}",
        f"- **CPUs:** {os.cpu_count()}",
        f"- **Executed:** {date}",
        f"- **Wall time:** {wall:.1f} s",
        "```",
    ]
    return "\n".join(lines)


def block(namespace: Mapping[str, Any] | None = None) -> None:
    """Display the provenance block (call it in a chapter's last cell)."""
    from IPython.display import Markdown, display

    display(Markdown(markdown(namespace)))
