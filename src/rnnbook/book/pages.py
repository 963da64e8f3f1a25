"""Helpers every chapter's set-up cell uses: where to run, the style, glued words.

Example (a chapter's first hidden cell)::

    from rnnbook.book.pages import glue_md, setup
    setup()
"""
from __future__ import annotations


def setup():
    """Run from the book's root (so ``data/`` means the same under ``rnnbook build`` and
    plain ``jupyter-book build .``), make TensorFlow deterministic and quiet, and apply
    the book's plot style. Returns the root."""
    import rnnbook
    from rnnbook import plots, runtime

    root = rnnbook.use_repo_root()
    runtime.configure()
    plots.set_style()
    return root


def glue_md(key: str, text: str) -> None:
    """Glue a word, phrase or code span for ``{glue:md}`` (or ``{glue:text}``) in the prose."""
    from IPython.display import Markdown
    from myst_nb import glue

    glue(key, Markdown(text), display=False)
