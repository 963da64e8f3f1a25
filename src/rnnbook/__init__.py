"""rnnbook: the library behind the book *tanh, ReLU and gradient clipping in a CNN+RNN*.

Importing the package quiets TensorFlow's C++ logging so that it stays out of the
book; the heavy modules (data, models, training, ...) are imported on demand.
"""
import os as _os
import time as _time

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

#: When the package was first imported: the start of a chapter's execution.
IMPORTED_AT = _time.time()

#: The version of the book and the package, written here only: pyproject.toml reads it
#: (``[tool.setuptools.dynamic]``), ``rnnbook --version`` prints it, and a test checks that
#: ``CITATION.cff`` states the same.
__version__ = "0.1.0"


def repo_root(start=None):
    """The book's root: the nearest directory at or above ``start`` (default: the
    working directory) holding both ``_config.yml`` and ``_toc.yml``; else ``start``."""
    from pathlib import Path

    here = Path(start or _os.getcwd()).resolve()
    for d in (here, *here.parents):
        if (d / "_config.yml").is_file() and (d / "_toc.yml").is_file():
            return d
    return here


def use_repo_root():
    """Change the working directory to :func:`repo_root` and return it.

    Chapters call this first so that relative paths such as ``data/`` mean the
    same under ``rnnbook build`` (run from the root) and plain
    ``jupyter-book build .`` (which runs each notebook in its own folder)."""
    root = repo_root()
    _os.chdir(root)
    return root
