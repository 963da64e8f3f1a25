"""Where the book keeps its data: ``data/`` at the repository root.

Chapters run with different working directories (``rnnbook build`` runs them from
the repository root, plain ``jupyter-book build .`` from ``chapters/``), so paths
are anchored to the checkout this package was installed from. ``RNNBOOK_DATA``
overrides the location.
"""
from __future__ import annotations

import os
from pathlib import Path

#: The checkout's root when the package is installed editable from ``src/``.
REPO_ROOT = Path(__file__).resolve().parents[2]


def data_root() -> Path:
    """``$RNNBOOK_DATA`` if set, else ``<repo>/data`` (or ``./data`` outside a checkout)."""
    if os.environ.get("RNNBOOK_DATA"):
        return Path(os.environ["RNNBOOK_DATA"])
    if (REPO_ROOT / "_toc.yml").exists():
        return REPO_ROOT / "data"
    return Path.cwd() / "data"
