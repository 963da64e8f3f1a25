"""One seaborn style and fixed colours for every chapter.

Each configuration the book compares has one colour (colour-blind safe, Okabe & Ito), one
marker and one line style in every chapter (:data:`CONFIG_STYLES`, :func:`config_style`;
:func:`line_with_band` applies them). Long category tick labels: :func:`fit_tick_labels`;
:func:`tick_label_overlaps` checks a figure.

Every helper labels its axes, returns the :class:`matplotlib.figure.Figure` and never
calls ``plt.show()``. Figures the helpers create are closed in pyplot before they are
returned, so a notebook shows them only where the chapter displays or glues them::

    fig = line_with_band(history, x="epoch", y="val_accuracy", hue="config", chance=0.1)
    glue("fig-accuracy", fig, display=False)

Pass ``ax=`` to draw into a figure of your own; that figure is then left open.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import patheffects
from matplotlib.colors import LogNorm

_BASE = sns.color_palette("colorblind", 10).as_hex()
_EXTRA = sns.color_palette("dark", 10).as_hex()

#: The Okabe & Ito (2008) colour-blind safe palette (its yellow left out: too pale on white).
OKABE_ITO = {
    "blue": "#0072B2", "vermillion": "#D55E00", "bluish green": "#009E73", "reddish purple": "#CC79A7",
    "orange": "#E69F00", "sky blue": "#56B4E9", "black": "#000000",
}

#: One style per configuration the book compares, the same in every chapter: a colour-blind
#: safe colour, plus a marker and a line style so lines stay apart where they cross and in grey.
CONFIG_STYLES = {
    "tanh + orthogonal": {"color": OKABE_ITO["blue"], "marker": "o", "linestyle": "-"},
    "ReLU + orthogonal": {"color": OKABE_ITO["vermillion"], "marker": "s", "linestyle": "--"},
    "ReLU + identity (IRNN)": {"color": OKABE_ITO["bluish green"], "marker": "^", "linestyle": "-."},
    "ReLU + glorot_uniform": {"color": OKABE_ITO["reddish purple"], "marker": "D", "linestyle": ":"},
    "tanh + glorot_uniform": {"color": OKABE_ITO["sky blue"], "marker": "v", "linestyle": (0, (5, 1))},
    "GRU": {"color": OKABE_ITO["orange"], "marker": "P", "linestyle": (0, (3, 1, 1, 1, 1, 1))},
    "LSTM": {"color": OKABE_ITO["black"], "marker": "X", "linestyle": (0, (1, 1))},
}

#: The configurations' colours (``CONFIG_STYLES`` without markers and line styles).
CONFIG_COLORS = {label: style["color"] for label, style in CONFIG_STYLES.items()}

#: Markers and line styles (as seaborn dash tuples) for labels that are not configurations.
_SPARE_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<")
_SPARE_DASHES = ("", (4, 1.5), (1, 1), (3, 1, 1, 1), (5, 1, 1, 1, 1, 1), (2, 2), (6, 2), (1, 2))
_SPARE = [c for c in [_EXTRA[i] for i in (7, 5, 8, 4, 9, 6, 1, 3, 0, 2)] + _BASE
          if c not in CONFIG_COLORS.values()]

#: Activations, coloured like the configurations that use them.
ACTIVATION_COLORS = {
    "tanh": CONFIG_COLORS["tanh + orthogonal"],
    "relu": CONFIG_COLORS["ReLU + orthogonal"],
    "sigmoid": _BASE[7],
    "linear": _BASE[8],
    "elu": _BASE[9],
}

#: Gradient clipping modes (Keras optimizer arguments) and Pascanu's plain / clipped SGD.
CLIP_COLORS = {
    "none": _EXTRA[7],
    "clipnorm": _EXTRA[0],
    "global_clipnorm": _EXTRA[2],
    "clipvalue": _EXTRA[3],
    "plain": _EXTRA[3],
    "clipped": _EXTRA[0],
}

_COLORS = {k.lower(): v for table in (CLIP_COLORS, ACTIVATION_COLORS, CONFIG_COLORS) for k, v in table.items()}

#: Readable axis labels for the column names the book uses; unknown columns keep their name.
AXIS_LABELS = {
    "lag": "time lag k = T-1-t (steps before the last frame)",
    "t": "time step t",
    "grad_norm": "gradient norm ‖∂L/∂h_t‖ (mean over examples)",
    "batch_grad_norm": "gradient norm of the batch loss w.r.t. h_t",
    "state_norm": "hidden-state norm ‖h_t‖ (mean over examples)",
    "epoch": "epoch",
    "step": "update step",
    "seq_len": "sequence length T (frames)",
    "accuracy": "training accuracy",
    "val_accuracy": "validation accuracy",
    "loss": "training loss (cross-entropy, nats)",
    "val_loss": "validation loss (cross-entropy, nats)",
    "clip_norm": "clipping threshold (gradient norm)",
    "lr": "learning rate",
    "learning_rate": "learning rate",
    "w": "recurrent weight w",
    "b": "bias b",
}

#: Short forms for colour bars.
_SHORT_LABELS = {"grad_norm": "‖∂L/∂h_t‖", "batch_grad_norm": "‖∂L/∂h_t‖ (batch)",
                 "state_norm": "‖h_t‖"}

_STYLED = False


def set_style(context: str = "notebook") -> None:
    """Apply the book's seaborn theme: white grid, colorblind palette, 6.4x4 in at 110 dpi.

    Idempotent: calling it again re-applies the same settings.
    """
    global _STYLED
    sns.set_theme(
        context=context, style="whitegrid", palette="colorblind",
        rc={
            "figure.figsize": (6.4, 4.0), "figure.dpi": 110, "savefig.dpi": 110,
            "savefig.bbox": "tight", "axes.titleweight": "bold", "legend.frameon": False,
            "axes.spines.top": False, "axes.spines.right": False,
        },
    )
    _STYLED = True


def _ensure_style():
    if not _STYLED:
        set_style()


def color_for(label) -> str | None:
    """The fixed colour of a configuration, activation or clipping mode (case-insensitive)."""
    return _COLORS.get(str(label).lower())


def palette(labels) -> dict:
    """A ``{label: colour}`` mapping for seaborn's ``palette=``: fixed colours for known
    labels, the remaining labels get the unused colours in order of appearance."""
    labels = list(dict.fromkeys(labels))
    known = {label: color_for(label) for label in labels if color_for(label)}
    spare = iter(c for c in _SPARE if c not in known.values())
    return {label: known.get(label) or next(spare) for label in labels}


def config_style(label) -> dict:
    """``{"color", "marker", "linestyle"}`` of a configuration label such as "tanh + orthogonal",
    "ReLU + identity (IRNN)", "GRU" or "LSTM" (see :data:`CONFIG_STYLES`)::

        ax.plot(x, y, label=label, **plots.config_style(label))
    """
    style = CONFIG_STYLES.get(str(label))
    if style is None:
        raise ValueError(f"no style for configuration {label!r}; configurations: "
                         f"{', '.join(repr(k) for k in CONFIG_STYLES)}")
    return dict(style)


def _dash(linestyle) -> tuple | str:
    """A matplotlib line style as a seaborn dash spec ("" for solid)."""
    named = {"-": "", "--": (4, 1.5), "-.": (4, 1.5, 1, 1.5), ":": (1, 1.5)}
    return named[linestyle] if isinstance(linestyle, str) else tuple(linestyle[1])


def markers(labels) -> dict:
    """``{label: marker}`` for seaborn's ``markers=``: each configuration's own marker, the
    other labels the unused markers in order."""
    labels = list(dict.fromkeys(labels))
    known = {lab: CONFIG_STYLES[lab]["marker"] for lab in labels if lab in CONFIG_STYLES}
    spare = iter(m for m in _SPARE_MARKERS * 3 if m not in known.values())
    return {lab: known.get(lab) or next(spare) for lab in labels}


def dashes(labels) -> dict:
    """``{label: dash spec}`` for seaborn's ``dashes=``, like :func:`markers`."""
    labels = list(dict.fromkeys(labels))
    known = {lab: _dash(CONFIG_STYLES[lab]["linestyle"]) for lab in labels if lab in CONFIG_STYLES}
    spare = iter(d for d in _SPARE_DASHES * 3 if d not in known.values())
    return {lab: known[lab] if lab in known else next(spare) for lab in labels}


def fit_tick_labels(ax, axis: str = "x", min_fontsize: float = 7.0) -> None:
    """Make the tick labels of ``axis`` legible: wrap them at spaces (one short line per word
    group, never mid-word), then shrink the font down to ``min_fontsize``, then turn them
    vertical, until no two labels overlap (:func:`tick_label_overlaps`). Put counts such as
    "0/3 diverged" on a second line of the label or in the plot, not run on after it."""
    import textwrap

    ticks = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    texts = [t.get_text() for t in ticks]
    width = max([len(w) for t in texts for w in t.split()] + [8])
    wrapped = ["\n".join(line for part in t.split("\n")
                         for line in textwrap.wrap(part, width, break_long_words=False) or [""])
               for t in texts]
    setter, tick_setter = (ax.set_xticklabels, ax.set_xticks) if axis == "x" else (ax.set_yticklabels, ax.set_yticks)
    tick_setter((ax.get_xticks() if axis == "x" else ax.get_yticks())[:len(texts)])
    size = float(ticks[0].get_fontsize()) if ticks else 10.0
    labels = setter(wrapped, rotation=0, ha="center" if axis == "x" else "right")

    def clash():
        return any(a in wrapped and b in wrapped for a, b in _overlaps(ax))

    while clash() and size > min_fontsize:
        size = max(min_fontsize, size - 0.5)
        for t in labels:
            t.set_fontsize(size)
    if clash() and axis == "x":  # vertical, unwrapped: one or two thin columns per label
        wrapped = texts
        labels = setter(texts, rotation=90, ha="center", fontsize=size)


def _overlaps(ax) -> list[tuple[str, str]]:
    renderer = ax.figure.canvas.get_renderer()
    out = []
    for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
        shown = [t for t in labels if t.get_visible() and t.get_text().strip()]
        boxes = [t.get_window_extent(renderer) for t in shown]
        out += [(shown[i].get_text(), shown[j].get_text())
                for i in range(len(shown)) for j in range(i + 1, len(shown)) if boxes[i].overlaps(boxes[j])]
    return out


def tick_label_overlaps(fig) -> list[tuple[str, str]]:
    """Pairs of tick labels (same axes) whose drawn boxes overlap: empty when every label is
    legible at the figure's size."""
    fig.canvas.draw()
    return [pair for ax in fig.get_axes() for pair in _overlaps(ax)]


def axis_label(column) -> str:
    """A readable label for a column name (see :data:`AXIS_LABELS`)."""
    return AXIS_LABELS.get(column, str(column).replace("_", " "))


def _figure(ax, **subplots):
    """``(fig, ax, created)``: a new figure unless an axes was given."""
    _ensure_style()
    if ax is not None:
        return ax.figure, ax, False
    fig, ax = plt.subplots(**subplots)
    return fig, ax, True


def _finish(fig, created):
    fig.tight_layout()
    if created:
        plt.close(fig)  # keep it out of pyplot so notebooks don't show it twice
    return fig


def grid_figure(nrows, ncols, width, height, **subplots):
    """``(fig, axes)``: a new ``width`` x ``height`` inch figure in the book's style, ``axes``
    always a 2-D array (``nrows`` x ``ncols``)."""
    _ensure_style()
    return plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, **subplots)


def finish(fig):
    """``fig`` laid out and closed in pyplot, ready to glue."""
    return _finish(fig, True)


def plain_log_ticks(ax, axis="y", subs=None):
    """Tick labels like 0.6 and 10 rather than 6x10^-1 on a log axis; ``subs`` (e.g.
    ``(1, 2, 5)``) puts major ticks at those multiples of each power of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    target = ax.yaxis if axis == "y" else ax.xaxis
    if subs is not None:
        target.set_major_locator(LogLocator(base=10, subs=subs, numticks=30))
        target.set_minor_locator(NullLocator())
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _hue_palette(df, hue):
    return None if hue is None else palette(df[hue].dropna().unique())


def line_with_band(df, x, y, hue=None, ax=None, logx=False, logy=False, chance=None,
                   xlabel=None, ylabel=None, title=None, chance_label="chance"):
    """Mean of ``y`` against ``x`` with a 95 % bootstrap band over the rows (seeds).

    ``chance`` draws a dashed horizontal line labelled with its value. Example::

        fig = line_with_band(runs, x="epoch", y="val_accuracy", hue="config", chance=0.1)
    """
    fig, ax, created = _figure(ax)
    if hue is None:
        style_kw = {"marker": "o"}
    else:
        levels = list(df[hue].dropna().unique())
        style_kw = {"style": hue, "style_order": levels, "markers": markers(levels), "dashes": dashes(levels)}
    sns.lineplot(data=df, x=x, y=y, hue=hue, palette=_hue_palette(df, hue), errorbar=("ci", 95),
                 n_boot=500, seed=0, markersize=5, ax=ax, **style_kw)
    if chance is not None:
        ax.axhline(chance, ls="--", lw=1, color="0.35", label=f"{chance_label} ({chance:g})")
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel or axis_label(x))
    ax.set_ylabel(ylabel or axis_label(y))
    if title:
        ax.set_title(title)
    if hue is not None or chance is not None:
        ax.legend(title=None if hue is None else axis_label(hue))
    return _finish(fig, created)


def lag_heatmap(df, lag="lag", row="config", value="grad_norm", log=True, ax=None,
                row_order=None, title=None, cbar_label=None, max_ticks=12):
    """Heatmap of ``value`` (mean over seeds) by time lag (columns) and ``row`` (rows).

    ``log=True`` uses a logarithmic colour scale; zeros and non-finite means (underflow,
    overflow) are drawn in light grey.
    """
    table = df.pivot_table(index=row, columns=lag, values=value, aggfunc="mean").sort_index(axis=1)
    if row_order is not None:
        table = table.reindex(row_order)
    data = table.to_numpy(dtype=float)
    mask = ~np.isfinite(data) | ((data <= 0) if log else False)
    norm = None
    if log and (~mask).any():
        norm = LogNorm(vmin=data[~mask].min(), vmax=data[~mask].max())
    fig, ax, created = _figure(ax, figsize=(7.5, 0.55 * len(table) + 1.8))
    step = max(1, int(np.ceil(table.shape[1] / max_ticks)))
    default_label = _SHORT_LABELS.get(value, axis_label(value)) + (" (log scale)" if log else "")
    sns.heatmap(table, mask=mask, norm=norm, cmap="mako", ax=ax, xticklabels=step,
                cbar_kws={"label": cbar_label or default_label})
    ax.set_facecolor("0.88")
    ax.grid(False)
    ax.set_xlabel(axis_label(lag))
    ax.set_ylabel(axis_label(row))
    if title:
        ax.set_title(title)
    return _finish(fig, created)


def divergence_chart(df, x, hue=None, diverged="diverged", ax=None, title=None, xlabel=None,
                     hue_order=None):
    """Share of runs that diverged (NaN/inf loss) per ``x`` and ``hue``, bars annotated
    with ``diverged/total`` counts. Hue levels keep their order of appearance in ``df``.
    Example: ``divergence_chart(runs, x="seq_len", hue="config")``.
    """
    keys = [x] if hue is None else [x, hue]
    counts = (df.assign(_div=df[diverged].astype(bool))
                .groupby(keys, sort=True)["_div"].agg(["sum", "count"]).reset_index())
    counts["share"] = counts["sum"] / counts["count"]
    fig, ax, created = _figure(ax)
    order = list(counts[x].unique())
    if hue is not None and hue_order is None:
        hue_order = list(df[hue].unique())
    sns.barplot(data=counts, x=x, y="share", hue=hue, order=order, hue_order=hue_order, errorbar=None,
                palette=_hue_palette(counts, hue), color=None if hue else _BASE[3], ax=ax)
    for i, container in enumerate(ax.containers):
        part = counts if hue is None else counts[counts[hue] == hue_order[i]]
        part = part.set_index(x).reindex(order)
        labels = [f"{int(k)}/{int(n)}" if pd.notna(n) else "" for k, n in zip(part["sum"], part["count"])]
        ax.bar_label(container, labels=labels, fontsize=8, padding=2)
    ax.set_ylim(0, 1.12)
    ax.set_xlabel(xlabel or axis_label(x))
    ax.set_ylabel("share of runs diverged (NaN/inf loss)")
    if hue is not None:
        ax.legend(title=axis_label(hue))
    if title:
        ax.set_title(title)
    return _finish(fig, created)


def loss_surface(w_grid, b_grid, loss, paths=None, ax=None, levels=21, decades=5, title=None,
                 xlabel=None, ylabel=None):
    """Filled contour of ``loss`` (shape ``(len(b_grid), len(w_grid))``) on log-spaced
    levels spanning ``decades`` below the maximum, with optional trajectories
    ``{label: DataFrame with columns w, b}`` on top (a square marks each start).

    The view stays on the grid, so a path that jumps off it visibly leaves the plot::

        surf = pascanu.loss_surface(np.linspace(2, 8, 241), np.linspace(-5, 1, 241))
        fig = loss_surface(surf.w, surf.b, surf.loss, {"plain": plain, "clipped": clipped})
    """
    loss = np.asarray(loss, float)
    finite = loss[np.isfinite(loss) & (loss > 0)]
    lo, hi = max(finite.min(), finite.max() * 10.0**-decades), finite.max()
    fig, ax, created = _figure(ax, figsize=(6.4, 4.8))
    shown = np.clip(np.where(np.isfinite(loss), loss, hi), lo, hi)
    filled = ax.contourf(w_grid, b_grid, shown, levels=np.geomspace(lo, hi, levels),
                         norm=LogNorm(lo, hi), cmap="crest_r")
    fig.colorbar(filled, ax=ax, label="loss (log scale)", format="%.0e")
    colors = palette(paths or {})
    halo = [patheffects.withStroke(linewidth=3, foreground="white")]
    for label, path in (paths or {}).items():
        ax.plot(path["w"], path["b"], "-", lw=1.4, color=colors[label], path_effects=halo)
        ax.plot(path["w"], path["b"], "-o", ms=2.5, lw=1.4, color=colors[label], label=label)
        ax.plot(path["w"].iloc[0], path["b"].iloc[0], "s", ms=8, color=colors[label], mec="white")
    ax.set_xlim(np.min(w_grid), np.max(w_grid))
    ax.set_ylim(np.min(b_grid), np.max(b_grid))
    ax.set_xlabel(xlabel or axis_label("w"))
    ax.set_ylabel(ylabel or axis_label("b"))
    if paths:
        ax.legend(loc="best", frameon=True)
    if title:
        ax.set_title(title)
    return _finish(fig, created)
