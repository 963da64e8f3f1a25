"""The figures of the chapter "Gradient clipping" (:mod:`rnnbook.experiments.clipping`): each
draws what it is given (tables from :func:`rnnbook.experiments.clipping.counts`, run frames from
:func:`rnnbook.sweeps.run_sweep`).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rnnbook import sweeps
from rnnbook.experiments.common import PASCANU_BAND


def k_of_n(k: int, n: int) -> str:
    """``"3 of 4"``."""
    return f"{int(k)} of {int(n)}"


def _errorbars(ax, x, table, color, marker, label):
    share = table["success_rate"].to_numpy(float)
    err = np.vstack([share - table["ci_lo"].to_numpy(float), table["ci_hi"].to_numpy(float) - share])
    return ax.errorbar(x, share, yerr=err, fmt=marker, color=color, ms=8, capsize=4, lw=1.4, label=label)


def _share_figure_done(fig, ax, xlabel: str):
    """Finish a figure of the share of runs reaching the criterion against ``xlabel``: the y axis
    from 0 to 1, the axis labels, the legend beside the axes; returns the figure, closed."""
    import matplotlib.pyplot as plt

    ax.set_ylim(-0.04, 1.04)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of runs reaching the criterion")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    plt.close(fig)
    return fig


def fig_clip_band(band: pd.DataFrame, same_lr: tuple[int, int], band_range=PASCANU_BAND):
    """Success rate (Wilson 95 % interval) against the threshold as a multiple of the pilot's average
    norm, one point per multiple; Pascanu et al.'s band shaded; the unclipped runs at the same
    learning rate as a dashed line."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from rnnbook import plots

    plots.set_style()
    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    color = plots.color_for("global_clipnorm")
    sns.lineplot(data=band, x="multiple", y="success_rate", color=color, lw=1.0, ax=ax, legend=False)
    _errorbars(ax, band["multiple"].to_numpy(float), band, color, "o", "global_clipnorm")
    k, n = same_lr
    ax.axhline(k / n if n else math.nan, ls="--", color=plots.color_for("none"), label=f"no clipping ({k_of_n(k, n)})")
    ax.axvspan(*band_range, color="0.85", alpha=0.6, zorder=0, label="Pascanu et al.: 0.5x to 10x")
    ax.set_xscale("log")
    return _share_figure_done(fig, ax, "clipping threshold / average gradient norm of the pilot")


#: Marker, colour key and legend of each arm of :func:`fig_clip_vs_lr` (column ``arm``).
ARMS = {"pilot, unclipped": ("o", "none", "no clipping, pilot seeds"),
        "no clipping": ("o", "none", "no clipping"),
        "no clipping, matched step": ("s", "clipnorm", "no clipping, matched step"),
        "global_clipnorm": ("D", "global_clipnorm", "global_clipnorm")}


def fig_clip_vs_lr(lr_table: pd.DataFrame):
    """Success rate (Wilson 95 % interval) against the learning rate: the explosion search's
    unclipped runs on the pilot seeds (hollow circles and a line), and the comparison's unclipped
    runs at the exploding rate, its unclipped runs at the matched step and its clipped runs (one
    point each)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from rnnbook import plots

    plots.set_style()
    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    plain = lr_table[lr_table["arm"] == "pilot, unclipped"].sort_values("learning_rate")
    if len(plain) > 1:
        sns.lineplot(data=plain, x="learning_rate", y="success_rate", color=plots.color_for("none"), lw=1.0,
                     ls=":", ax=ax, legend=False)
    for arm, (marker, key, label) in ARMS.items():
        part = lr_table[lr_table["arm"] == arm]
        if len(part):
            bars = _errorbars(ax, part["learning_rate"].to_numpy(float), part, plots.color_for(key), marker, label)
            if arm == "pilot, unclipped":
                bars.lines[0].set_markerfacecolor("white")
    ax.set_xscale("log")
    rates = sorted(lr_table["learning_rate"].astype(float).unique())
    ax.set_xticks(rates, [f"{r:.2g}" for r in rates], minor=False)
    ax.minorticks_off(), plots.fit_tick_labels(ax)
    return _share_figure_done(fig, ax, "SGD learning rate (momentum 0.9)")


def fig_clip_traces(runs: pd.DataFrame):
    """Global gradient norm before clipping (top) and training loss (bottom) over the updates, per
    Keras option (column ``label``; mean and 95 % band over seeds); a cross marks where a run
    diverged."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from rnnbook import plots

    plots.set_style()
    steps = sweeps.steps_frame(runs, fields=("loss", "grad_norm")).replace([np.inf, -np.inf], np.nan)
    order = list(dict.fromkeys(runs["label"]))
    pal = {m: plots.color_for(m) or plots.palette([m])[m] for m in order}
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9.0, 6.8), sharex=True)
    for ax, col, label in ((ax1, "grad_norm", "global gradient norm before clipping (log)"),
                           (ax2, "loss", "training loss (log)")):
        sns.lineplot(data=steps, x="step", y=col, hue="label", hue_order=order, palette=pal, errorbar=("ci", 95),
                     n_boot=200, seed=0, lw=1.2, ax=ax)
        ax.set_yscale("log")
        ax.set_ylabel(label)
        for _, run in runs[runs["diverged"]].iterrows():
            part = steps[(steps["label"] == run["label"]) & (steps["seed"] == run["seed"])].dropna(subset=[col])
            if len(part):
                ax.plot(part["step"].iloc[-1], part[col].iloc[-1], "X", ms=9, color=pal[run["label"]],
                        mec="black", mew=0.6)
    ax1.plot([], [], "X", color="0.5", mec="black", label="run diverged here")
    ax1.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax2.get_legend().remove()
    ax2.set_xlabel("update")
    fig.tight_layout()
    plt.close(fig)
    return fig


def fig_wall(surface, paths: dict):
    """Pascanu's single-unit loss surface with gradient-descent paths."""
    from rnnbook import plots

    return plots.loss_surface(surface.w, surface.b, surface.loss, paths)


def modes_display(modes: pd.DataFrame) -> pd.DataFrame:
    """The trained clip-mode table as the page shows it."""
    t = modes.copy()
    t["success rate [95 % CI]"] = [f"{s:.2f} [{lo:.2f}, {hi:.2f}]" for s, lo, hi in
                                   zip(t["success_rate"], t["ci_lo"], t["ci_hi"])]
    t["threshold"] = [("none" if m == "none" else f"{x:.3g}") for m, x in zip(t["mode"], t["threshold"])]
    t["bound on the global norm"] = [("none" if not math.isfinite(b) else f"{b:.3g}")
                                     for b in t["bound on the global norm"]]
    t["median updates to success"] = [("none succeeded" if not math.isfinite(u) else f"{u:.0f}")
                                      for u in t["median_updates_to_success"]]
    return display_table(t[["mode", "threshold", "bound on the global norm", "runs", "successes",
                            "success rate [95 % CI]", "diverged", "censored", "median updates to success"]])


# ----------------------------------------------------------------------------- what the prose pastes
