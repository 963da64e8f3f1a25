"""Helpers every chapter's set-up cell uses: where to run, the style, glued words.

Example (a chapter's first hidden cell)::

    from rnnbook.book.pages import glue_md, glue_values, setup
    setup()
    glue_values({"n_runs": 12, "verdict": "**holds**"})   # a number, a Markdown phrase
"""
from __future__ import annotations


def setup():
    """Run from the book's root (so ``data/`` means the same under ``rnnbook build`` and
    plain ``jupyter-book build .``), make TensorFlow deterministic and quiet, and apply
    the book's plot style. Returns the root."""
    import rnnbook
    from rnnbook import plots, runtime

    import pandas as pd

    root = rnnbook.use_repo_root()
    runtime.configure()
    plots.set_style()
    pd.set_option("display.max_colwidth", None)  # glued tables show whole cells
    return root


def chapter_params(namespace: dict, names) -> dict:
    """The chapter's parameters ``names`` taken from its ``namespace`` (``globals()``), e.g.
    ``why_tanh.results(**chapter_params(globals(), why_tanh.PARAMS))``."""
    missing = [n for n in names if n not in namespace]
    if missing:
        raise NameError(f"the chapter does not define the parameter(s) {', '.join(missing)}; "
                        f"expected: {', '.join(names)}")
    return {name: namespace[name] for name in names}


def preset(name: str) -> dict:
    """The values of ``presets/<name>.yaml`` (run from the book's root, as :func:`setup` does),
    e.g. the reference protocol the relu chapter reads its long-budget records under. The build's
    chapter cache hashes the presets, so an edited preset re-executes the chapters."""
    from pathlib import Path

    import yaml

    path = Path("presets") / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no preset {name!r} ({path.resolve()}): run from the book's root")
    return yaml.safe_load(path.read_text()) or {}


def glue_md(key: str, text: str) -> None:
    """Glue a word, phrase or code span for ``{glue:md}`` (or ``{glue:text}``) in the prose."""
    from IPython.display import Markdown
    from myst_nb import glue

    glue(key, Markdown(text), display=False)


def glue_num(key: str, value) -> None:
    """Glue a number as a float (NaN when it is missing) for ``{glue:text}`` in the prose."""
    from myst_nb import glue

    glue(key, float(value), display=False)


def pct(key: str, fraction) -> None:
    """Glue a share as a percentage (format it with ``:.0f`` or ``:.1f`` in the prose)."""
    glue_num(key, 100 * float(fraction))


def glue_values(values: dict) -> None:
    """Glue every ``key: value``: a string as Markdown (:func:`glue_md`), anything else (a
    number, a figure, a table) as it is."""
    import numpy as np
    from myst_nb import glue

    for key, value in values.items():
        if isinstance(value, str):
            glue_md(key, value)
        elif isinstance(value, np.generic):  # np.float64(0.5) would paste as its repr
            glue(key, value.item(), display=False)
        else:
            glue(key, value, display=False)


def glue_plain(values: dict) -> None:
    """Glue every ``key: text`` as plain text, for ``{glue:text}`key:s``` in pages that are not
    notebooks (the front page pastes ``{glue:text}`chapters/x.md::key:s```); Markdown emphasis
    is dropped."""
    from myst_nb import glue

    for key, value in values.items():
        glue(key, str(value).replace("**", "").replace("`", ""), display=False)
