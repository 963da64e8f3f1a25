"""The data behind every figure and table, published beside the page, and how to cite a figure.

A chapter glues a figure with its tidy data (one row per plotted point or per run) instead of
``glue(key, fig)``::

    from rnnbook.book import figures

    fig = ex.fig_accuracy_vs_lag(recall)
    figures.glue_figure("fig-accuracy-vs-lag", fig, recall[["label", "lag", "seed", "accuracy"]])

and ends the figure's caption with the glued link line::

    ```{glue:figure} fig-accuracy-vs-lag
    :name: fig-accuracy-vs-lag

    Recall task: test accuracy against the time lag ... {glue:md}`fig-accuracy-vs-lag-data`
    ```

The ``-data`` value is "Data (CSV) · Cite this figure: <one line>". The CSV is written into the
built site beside the page (``_build/html/chapters/fig-accuracy-vs-lag.csv``) by the Sphinx
extension :mod:`rnnbook.book.site`, which also gives the image an alt text (``alt=``, default:
what :func:`alt_text` reads off the axes). Tables: ``figures.glue_table("tbl-x", table, data)``.
All runs of a chapter, one row per run with every scalar field::

    figures.write_runs_csv("relu", pd.concat(all_runs))   # glues "relu-runs": a Markdown link

The files travel inside the executed notebook (glued, not displayed), so a chapter taken from
the build cache publishes them too.
"""
from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
import pandas as pd

from rnnbook.book.files import (  # noqa: F401 - the files' names and helpers, re-exported
    ALT_MIME, ALT_PREFIX, DOC_TOKEN, FILE_MIME, FILE_PREFIX, HEADLINE_IMAGE, PAGE_TOKEN, _Glued, data_link, publish)

_KEY = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class FigureDataError(ValueError):
    """A figure key or its data cannot be published."""


def check_key(key: str) -> str:
    """``key`` if it is a valid anchor (lowercase letters, digits, hyphens), else FigureDataError."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise FigureDataError(f"figure key {key!r} must be lowercase letters, digits and hyphens, "
                              "like the figure's :name:, e.g. 'fig-accuracy-vs-lag'")
    return key


def tidy(data: Any) -> pd.DataFrame:
    """``data`` (DataFrame, dict of columns or list of records) as a non-empty DataFrame with a
    plain index, ready for CSV."""
    if isinstance(data, pd.Series):
        data = data.reset_index()
    frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
    if frame.empty or not len(frame.columns):
        raise FigureDataError("a figure's data must have at least one row and one column "
                              "(one row per plotted point or per run)")
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index(drop=all(n is None for n in frame.index.names))
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    return frame


def csv_text(data: Any) -> str:
    """The CSV text of :func:`tidy` ``(data)``: header row, no index, 6 significant digits."""
    buf = io.StringIO()
    tidy(data).to_csv(buf, index=False, float_format="%.6g", lineterminator="\n")
    return buf.getvalue()


def alt_text(fig) -> str:
    """What a matplotlib figure shows, read off its axes: per panel the title, y against x and
    the legend entries; e.g. "test accuracy against time lag; lines: tanh + orthogonal, GRU"."""
    parts = []
    for ax in fig.get_axes():
        if not ax.get_visible() or getattr(ax, "_colorbar", None) is not None or ax.get_label() == "<colorbar>":
            continue
        x, y = ax.get_xlabel().strip(), ax.get_ylabel().strip()
        if not (x or y):
            continue
        text = (f"{ax.get_title().strip()}: " if ax.get_title().strip() else "") + \
            (f"{y} against {x}" if x and y else y or x)
        legend = ax.get_legend()
        if legend is not None:
            entries = [t.get_text() for t in legend.get_texts() if t.get_text()]
            if entries:
                text += "; " + ", ".join(entries)
        parts.append(text)
    return ("Figure: " + ". ".join(parts) + ".") if parts else "Figure (no labelled axes)."


def cite_line(key: str) -> str:
    """The one-line citation of figure ``key`` (the page is filled in at build time)."""
    from rnnbook import repo_root
    from rnnbook.book import citation, provenance

    cff = citation.load_cff(repo_root() / "CITATION.cff")
    return citation.figure_reference(check_key(key), DOC_TOKEN, commit=provenance.git_state(), cff=cff)


def _glue_md(key: str, text: str) -> None:
    from IPython.display import Markdown
    from myst_nb import glue

    glue(key, Markdown(text), display=False)


def _publish_data(key: str, data: Any, caption_data_link: bool, cite: bool) -> None:
    publish(f"{key}.csv", csv_text(data))
    if caption_data_link:
        line = data_link(f"{key}.csv")
        if cite:
            line += f' · Cite this figure: <code class="rnnbook-cite">{cite_line(key)}</code>'
        _glue_md(f"{key}-data", line)


def glue_data(key: str, data: Any) -> None:
    """Publish ``data`` as ``<key>.csv`` beside the page and glue its link as ``<key>-data`` (for a
    table written in Markdown, e.g. a ``list-table``, whose values are glued one by one). Returns
    nothing (see :func:`glue_figure`)."""
    check_key(key)
    _publish_data(key, data, True, cite=False)


def glue_figure(key: str, fig, data: Any, *, alt: str | None = None, caption_data_link: bool = True,
                headline: bool = False) -> None:
    """Glue ``fig`` as ``key``, publish ``data`` as ``<key>.csv`` beside the page, give the image
    alt text, and glue ``<key>-data`` (the caption's "Data (CSV) · Cite this figure" line).
    ``alt`` defaults to :func:`alt_text` ``(fig)``. ``headline=True`` also publishes the figure
    as the link-preview image of pages without a figure of their own. Returns nothing, so that a
    cell ending with it prints nothing on the page."""
    from myst_nb import glue

    check_key(key)
    if headline:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        publish(HEADLINE_IMAGE, buf.getvalue())
    _publish_data(key, data, caption_data_link, cite=True)
    glue(ALT_PREFIX + key, _Glued(ALT_MIME, {"alt": alt or alt_text(fig)}), display=False)
    glue(key, fig, display=False)


def glue_table(key: str, table, data: Any = None, *, caption_data_link: bool = True) -> None:
    """Glue ``table`` (what the page shows) as ``key`` and publish ``data`` (default: ``table``)
    as ``<key>.csv``; glue the ``<key>-data`` link line. Returns nothing (see :func:`glue_figure`)."""
    from myst_nb import glue

    check_key(key)
    _publish_data(key, table if data is None else data, caption_data_link, cite=False)
    if hasattr(table, "set_uuid"):  # a pandas Styler: a fixed id instead of a random one, so rebuilds match
        table = table.set_uuid(key.replace("-", "_"))
    glue(key, table, display=False)


def scalar_columns(runs: pd.DataFrame) -> pd.DataFrame:
    """The columns of ``runs`` whose every value is a scalar (number, string, bool or missing)."""
    def scalar(v) -> bool:
        return v is None or isinstance(v, (str, bool, int, float, np.generic))

    keep = [c for c in runs.columns if runs[c].map(scalar).all()]
    return runs[keep]


def write_runs_csv(name: str, runs: pd.DataFrame, label: str = "All runs of this chapter (CSV)") -> str:
    """Publish every run (one row each, every scalar field) as ``<name>.runs.csv`` and glue
    ``<name>-runs``: a Markdown paragraph linking to it (returned too)."""
    from rnnbook.book.pages import glue_md

    check_key(name)
    runs = tidy(runs).reset_index(drop=True)
    filename = f"{name}.runs.csv"
    publish(filename, csv_text(scalar_columns(runs)))
    text = f"{data_link(filename, label)}: {len(runs)} runs, one row per run."
    glue_md(f"{name}-runs", text)
    return text
