"""The figures of the chapter "When ReLU helps" (:mod:`.relu`): success against lag per
interface level, updates to the criterion, memorisation, and stability."""
from __future__ import annotations

import numpy as np
import pandas as pd

from rnnbook.experiments.common import failed
from rnnbook.experiments.relu.interface import BASELINE

def _level_label(key: str) -> str:
    from rnnbook.experiments.relu.interface import parse_interface

    return parse_interface(key).label


def _close(fig):
    import matplotlib.pyplot as plt

    fig.tight_layout()
    plt.close(fig)
    return fig


def fig_interface_scale(table: pd.DataFrame, target_acc: float):
    """Success rate (Wilson 95 % interval) against the lag, one panel per interface level, one
    line per configuration."""
    import matplotlib.pyplot as plt

    from rnnbook import plots

    plots.set_style()
    levels = list(dict.fromkeys(table["interface"]))
    labels = list(dict.fromkeys(table["label"]))
    fig, axes = plt.subplots(1, len(levels), figsize=(3.3 * len(levels) + 1.8, 3.8), sharey=True, squeeze=False)
    for ax, s in zip(axes[0], levels):
        part = table[table["interface"] == s]
        for i, lab in enumerate(labels):
            d = part[part["label"] == lab].sort_values("lag")
            style = plots.config_style(lab) if hasattr(plots, "config_style") else {}
            jitter = 1 + 0.03 * (i - (len(labels) - 1) / 2)
            ax.errorbar(d["lag"] * jitter, d["rate"], yerr=[d["rate"] - d["lo"], d["hi"] - d["rate"]],
                        label=lab, capsize=2, lw=1.4, ms=5, **{k: v for k, v in style.items()
                                                                 if k in ("color", "marker", "linestyle")})
        ax.set_xscale("log")
        lags = sorted(part["lag"].unique())
        ax.set_xticks(lags)
        ax.set_xticklabels([str(int(v)) for v in lags])
        ax.minorticks_off()
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(_level_label(s) + (" (Keras default)" if s == BASELINE else ""), fontsize=9)
        ax.set_xlabel("time lag (frames; T = lag + 1)")
    axes[0][0].set_ylabel(f"share of seeds reaching val. acc. {target_acc:.2f}")
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    return _close(fig)


def fig_updates_to_success(runs: pd.DataFrame, cap: int):
    """Updates to the criterion per configuration and interface level; censored runs drawn at the
    cap as open markers."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from rnnbook import plots

    plots.set_style()
    d = runs.assign(status=np.where(runs["success"], "reached the criterion",
                                    np.where(runs["diverged"], "diverged", "censored at the cap")))
    fig, ax = plt.subplots(figsize=(9.0, 4.0))
    sns.stripplot(data=d, x="label", y="updates", hue="status", dodge=True, jitter=0.25, size=4, ax=ax,
                  hue_order=["reached the criterion", "censored at the cap", "diverged"],
                  palette={"reached the criterion": "#0173b2", "censored at the cap": "#949494",
                           "diverged": "#d55e00"})
    ax.axhline(cap, ls="--", lw=1, color="0.4")
    ax.annotate(f"cap ({cap} updates)", xy=(0, cap), xycoords=("axes fraction", "data"), xytext=(3, -3),
                textcoords="offset points", va="top", fontsize=8, color="0.3")
    ax.set_xlabel("")
    ax.set_ylabel("updates")
    ax.tick_params(axis="x", labelsize=8)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    return _close(fig)


def memo_curves(memo: pd.DataFrame) -> pd.DataFrame:
    """Long frame of the memorisation runs: updates, split (train/validation), accuracy."""
    rows = []
    for _, r in memo.iterrows():
        rec = r["record"]
        for u, tr, va in zip(rec["check_updates"], rec["check_train_acc"], rec["check_val_acc"]):
            rows.append({"label": r["label"], "seed": r["seed"], "updates": u, "split": "training batches",
                         "accuracy": tr})
            rows.append({"label": r["label"], "seed": r["seed"], "updates": u, "split": "validation",
                         "accuracy": va})
    return pd.DataFrame(rows)


def fig_memorisation(curves: pd.DataFrame, chance: float):
    """Training-batch and validation accuracy against updates, on a fixed set and on fresh sequences."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from rnnbook import plots

    plots.set_style()
    labels = list(dict.fromkeys(curves["label"]))
    fig, axes = plt.subplots(1, len(labels), figsize=(4.2 * len(labels) + 1.5, 3.6), sharey=True, squeeze=False)
    for ax, lab in zip(axes[0], labels):
        sns.lineplot(data=curves[curves["label"] == lab], x="updates", y="accuracy", hue="split", style="split",
                     markers=True, errorbar=("ci", 95), n_boot=200, seed=0, ax=ax,
                     palette={"training batches": "#de8f05", "validation": "#0173b2"})
        ax.axhline(chance, ls=":", lw=1, color="0.4")
        ax.set_title(lab)
        ax.set_ylim(0, 1.02)
        if ax is not axes[0][-1]:
            ax.get_legend().remove()
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    return _close(fig)


def _failure_lines(ax, runs: pd.DataFrame, x: str, groups, jitter: float = 0.04) -> None:
    """One line per group: the share of failed runs (Wilson 95 % interval) against ``x`` (log
    scale), coloured by configuration; ``groups`` maps a group to ``(label, linestyle, name)``."""
    from rnnbook import plots
    from rnnbook.experiments.common import wilson_interval

    for i, (key, (label, linestyle, name)) in enumerate(groups.items()):
        part = runs[runs["group"] == key]
        xs, rates, lo, hi = [], [], [], []
        for value, g in part.groupby(x, sort=True):
            k, n = int(failed(g).sum()), len(g)
            rate, low, high = wilson_interval(k, n)
            xs.append(float(value) * (1 + jitter * (i - (len(groups) - 1) / 2)))
            rates.append(rate), lo.append(rate - low), hi.append(high - rate)
        style = plots.config_style(label)
        ax.errorbar(xs, rates, yerr=[lo, hi], color=style["color"], marker=style["marker"], linestyle=linestyle,
                    capsize=2, lw=1.4, ms=5, label=name)
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel("share of runs failed")
    ax.legend(fontsize=7, loc="upper left")


def fig_stability(lr: pd.DataFrame, width: pd.DataFrame):
    """Left: share of failed runs (symmetric rule, Wilson 95 % intervals) against the SGD learning
    rate, without (solid) and with (dashed) clipping; right: the same against the width (Adam).
    Colours and markers are the configurations' own."""
    import matplotlib.pyplot as plt

    from rnnbook import plots

    plots.set_style()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.0, 3.8))
    d = lr.assign(group=list(zip(lr["label"], lr["clip_mode"])))
    groups = {(lab, mode): (lab, "-" if mode == "none" else "--",
                            f"{lab}, {'no clipping' if mode == 'none' else 'clipped'}")
              for lab, mode in dict.fromkeys(d["group"])}
    _failure_lines(ax1, d, "learning_rate", groups)
    ax1.set_xlabel("SGD learning rate (momentum 0.9)")
    w = width.assign(group=width["label"])
    _failure_lines(ax2, w, "units", {lab: (lab, "-", lab) for lab in dict.fromkeys(w["label"])})
    ax2.set_xlabel("hidden units (Adam)")
    units = sorted(w["units"].unique())
    ax2.set_xticks(units)
    ax2.set_xticklabels([str(int(u)) for u in units])
    ax2.minorticks_off()
    return _close(fig)


def km_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Kaplan-Meier estimates (lifelines) of the share of runs that reached the criterion by each
    update, per configuration, interface level and lag, with 95 % bands: a run that did not succeed
    is censored at its last update (failed runs too: they stopped, they did not succeed)."""
    import warnings

    from lifelines import KaplanMeierFitter

    warnings.filterwarnings("ignore", module="lifelines")  # its own pandas deprecation notices
    rows = []
    for (label, level, lag), part in runs.groupby(["label", "interface", "lag"], sort=False):
        km = KaplanMeierFitter(alpha=0.05).fit(part["updates"].astype(float), part["success"].astype(bool))
        surv, ci = km.survival_function_.iloc[:, 0], km.confidence_interval_
        for t, s_, lo, hi in zip(surv.index, surv.values, ci.iloc[:, 0].values, ci.iloc[:, 1].values):
            rows.append({"label": label, "interface": level, "lag": int(lag), "updates": float(t),
                         "reached": 1.0 - float(s_), "lo": 1.0 - float(hi), "hi": 1.0 - float(lo),
                         "runs": len(part)})
    return pd.DataFrame(rows)


def fig_time_to_success(curves: pd.DataFrame, cap: int):
    """Kaplan-Meier curves: share of runs that reached the criterion against updates (steps, 95 %
    bands), one panel per lag (rows) and interface level (columns), one line per configuration."""
    import matplotlib.pyplot as plt

    from rnnbook import plots

    plots.set_style()
    lags, levels = sorted(curves["lag"].unique()), list(dict.fromkeys(curves["interface"]))
    fig, axes = plt.subplots(len(lags), len(levels), figsize=(3.2 * len(levels) + 2.2, 2.4 * len(lags) + 0.6),
                             sharex=True, sharey=True, squeeze=False)
    for i, lag in enumerate(lags):
        for j, level in enumerate(levels):
            ax = axes[i][j]
            for label, d in curves[(curves["lag"] == lag) & (curves["interface"] == level)].groupby("label", sort=False):
                color = plots.config_style(label)["color"]
                ax.step(d["updates"], d["reached"], where="post", color=color, lw=1.5, label=label)
                ax.fill_between(d["updates"], d["lo"], d["hi"], step="post", color=color, alpha=0.15, lw=0)
            ax.axvline(cap, ls="--", lw=0.8, color="0.5")
            ax.set_ylim(-0.03, 1.03)
            if i == 0:
                ax.set_title(_level_label(level) + (" (Keras default)" if level == BASELINE else ""), fontsize=9)
            if j == 0:
                ax.set_ylabel(f"lag {int(lag)}: share reached")
            if i == len(lags) - 1:
                ax.set_xlabel("updates")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(0.99, 0.95), fontsize=8)
    return _close(fig)
