"""The chapter "Vanishing and exploding gradients": ``||dL/dh_{T-k}||`` against the lag k on
the book's model at initialisation, Pascanu et al.'s condition tested, what a short training
run does to the picture, and how the scale of the CNN features matters.

:func:`results` computes every number of the chapter and the frames its figures draw;
:func:`verdicts` words the claims from those numbers; the ``fig_*`` functions draw::

    res = results(**{name: ... for name in PARAMS})
    res.numbers["n_exploding"], verdicts(res.numbers)["verdict_tanh_short"]
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import seaborn as sns

from rnnbook import plots
from rnnbook.experiments import probes as pr
from rnnbook.experiments.common import EDGE_BAND, config_label
from rnnbook.experiments.gradients.short_training import STAGES, rate_change, training_grid
from rnnbook.experiments.why_tanh import DISCUSSED, compared

#: The chapter's parameters, as its ``parameters`` cell names them.
PARAMS = ("seq_len", "units", "activations", "recurrent_initializers", "recurrent_gains", "n_probe", "seeds",
          "train_gains", "n_train", "epochs", "batch_size", "learning_rate", "input_scales")
#: The recurrent initializers the prose names one by one (the Keras default, the IRNN's, TF1's).
PROSE_INITIALIZERS = ("orthogonal", "identity", "glorot_uniform")
#: What the page says instead of a number the parameters leave undefined (a configuration
#: that is not in the grid, a share of no points).
NOT_MEASURED = "not measured with these parameters"


def optional_values() -> dict[str, str]:
    """The prose's values that a parameter set can leave undefined, by glue key, with the
    template the page shows them in (:func:`page_values` pastes :data:`NOT_MEASURED` instead)."""
    out = {}
    for init in PROSE_INITIALIZERS:
        for act in DISCUSSED:
            out.update({f"rate_{act}_{init}_mid": "{:.3f}", f"rate_{act}_{init}_hi": "{:.3f}",
                        f"tight_{act}_{init}": "{:.2f}"})
        out[f"typical_err_{init}"] = "{:.0f} %"
    out.update({key: "{:.2f}" for key in ("glorot_sigma_over_gain", "glorot_rms_over_gain", "relu_active",
                                          "relu_edge_gain", "relu_ratio_fraction", "relu_ratio_sqrt")})
    out.update({"share_vanish_when_below": "{:.0f} %", "share_explode_when_above": "{:.0f} %",
                "irnn_before": "{:.3f}", "irnn_after": "{:.3f}"})
    return out


def prose_number(value, template: str = "{:g}") -> str:
    """``value`` in ``template`` (e.g. ``"{:.0f} %"``), or :data:`NOT_MEASURED` when it is
    missing, NaN or infinite."""
    try:
        finite = value is not None and bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        finite = False
    return template.format(float(value)) if finite else NOT_MEASURED


def names(labels) -> str:
    """A readable list of configuration names, or ``"none"``."""
    labels = list(labels)
    return "; ".join(labels) if labels else "none"


def nearest_to_one(gains) -> float:
    """The gain closest to 1, the Keras default."""
    return min(gains, key=lambda g: abs(g - 1.0))


# ----------------------------------------------------------------------------- the chapter's numbers


@dataclasses.dataclass
class Results:
    """Everything the chapter shows: glued ``numbers`` (and Markdown ``words``) and the frames
    behind its figures."""

    numbers: dict              # glue key -> number (shares in %)
    words: dict                # glue key -> Markdown (lists of configurations)
    lags: pd.DataFrame         # gradient by lag at initialisation (the grid)
    summary: pd.DataFrame      # one row per configuration, gain and seed at initialisation
    trained: dict              # training_grid
    scaled: pd.DataFrame       # summary of the input-scale grid
    marks: dict                # input scales to mark in the input-scale figure


def per_config(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean, min and max per-step rate and mean last relative gradient per configuration and gain."""
    return summary.groupby(["activation", "initializer", "gain", "config", "row"], sort=False).agg(
        rate=("decay_rate", "mean"), rate_lo=("decay_rate", "min"), rate_hi=("decay_rate", "max"),
        last=("grad_last_rel", "mean")).reset_index()


def _lookup(table: pd.DataFrame, column: str, act: str, init: str, gain: float) -> float:
    row = table[(table["activation"] == act) & (table["initializer"] == init) & (table["gain"] == gain)]
    return float(row[column].iloc[0]) if len(row) else float("nan")


def _initial_numbers(summary, activations, initializers, gains):
    """Rates at the smallest, middle and largest gain; vanishing, edge and exploding counts."""
    table = per_config(summary)
    g_lo, g_hi, g_mid = min(gains), max(gains), nearest_to_one(gains)
    nums = {"gain_lo": g_lo, "gain_hi": g_hi, "gain_mid": g_mid}
    for act in activations:
        for init in initializers:
            for tag, gain in (("mid", g_mid), ("hi", g_hi), ("lo", g_lo)):
                nums[f"rate_{act}_{init}_{tag}"] = _lookup(table, "rate", act, init, gain)
            for tag, gain in (("mid", g_mid), ("hi", g_hi)):
                nums[f"last_{act}_{init}_{tag}"] = _lookup(table, "last", act, init, gain)
    edge_low, edge_high = EDGE_BAND
    vanishing = table[table["rate"] < edge_low]
    exploding = table[table["rate"] > edge_high]
    edge = table[table["rate"].between(edge_low, edge_high)]
    hi = table[table["gain"] == g_hi].set_index(["initializer", "activation"])["rate"].unstack()
    tanh_exploding = exploding[exploding["activation"] == "tanh"]
    worst, weakest = table.loc[table["last"].idxmax()], table.loc[table["last"].idxmin()]
    nums.update({"edge_low": edge_low, "edge_high": edge_high, "n_configs": len(table),
                 "n_vanishing": len(vanishing), "n_exploding": len(exploding), "n_edge": len(edge),
                 "relu_worse_hi": int((hi["relu"] > hi["tanh"]).sum()), "n_inits": len(initializers),
                 "n_tanh_exploding": len(tanh_exploding),
                 "worst_last": float(worst["last"]), "weakest_last": float(weakest["last"])})
    words = {"edge_configs": names(edge["row"]), "exploding_configs": names(exploding["row"]),
             "tanh_exploding_configs": names(tanh_exploding["row"]),
             "worst_config": worst["row"], "weakest_config": weakest["row"]}
    return nums, words


def _pascanu_numbers(summary, activations, initializers):
    """How the measured rates compare with Pascanu et al.'s bound and with the typical rate."""
    ok = summary[np.isfinite(summary["decay_rate"]) & (summary["decay_rate"] > 0)].copy()
    ok["ratio_bound"] = ok["decay_rate"] / ok["pascanu_bound"]
    ok["ratio_typical"] = ok["decay_rate"] / ok["typical_rate"]
    below, above = ok[ok["pascanu_bound"] < 1], ok[ok["pascanu_bound"] > 1]
    explode = ok[ok["decay_rate"] > 1]
    nums = {
        "share_within_bound": 100 * float((ok["decay_rate"] <= ok["pascanu_bound"] * (1 + 1e-3)).mean()),
        "n_points": len(ok), "n_below": len(below), "n_explode_points": len(explode), "n_above": len(above),
        "share_vanish_when_below": 100 * float((below["decay_rate"] < 1).mean() if len(below) else np.nan),
        "share_bound_above_when_exploding": 100 * float((explode["pascanu_bound"] > 1).mean()
                                                        if len(explode) else 1.0),
        "share_explode_when_above": 100 * float((above["decay_rate"] > 1).mean() if len(above) else np.nan),
    }
    tight = ok.groupby("config")["ratio_bound"].median()
    nums.update({f"tight_{act}_{init}": float(tight[config_label(act, init)])
                 for init in initializers for act in activations if config_label(act, init) in tight.index})
    typ = ok.groupby("initializer")["ratio_typical"].apply(lambda r: float(np.median(np.abs(np.log(r)))))
    nums.update({f"typical_err_{init}": 100 * float(np.expm1(typ.get(init, np.nan))) for init in initializers})
    gl = ok[ok["initializer"] == "glorot_uniform"]
    nums["glorot_sigma_over_gain"] = float((gl["sigma_max"] / gl["gain"]).mean()) if len(gl) else float("nan")
    nums["glorot_rms_over_gain"] = float((gl["rms_gain"] / gl["gain"]).mean()) if len(gl) else float("nan")
    ro = ok[(ok["activation"] == "relu") & (ok["initializer"] == "orthogonal")]
    active = ro["active_fraction"]
    if len(ro):
        nums.update({"relu_active": float(active.mean()), "relu_edge_gain": float(1 / np.sqrt(active.mean())),
                     "relu_ratio_fraction": float(np.median(ro["decay_rate"] / (ro["sigma_max"] * active))),
                     "relu_ratio_sqrt": float(np.median(ro["decay_rate"] / (ro["sigma_max"] * np.sqrt(active))))})
    else:  # ReLU + orthogonal is not in the grid: the page says so (optional_values)
        nums.update(dict.fromkeys(("relu_active", "relu_edge_gain", "relu_ratio_fraction", "relu_ratio_sqrt"),
                                  float("nan")))
    return nums


def _training_numbers(trained, activations, train_gains):
    """What the short training runs did to the rate, the slopes and the input drive."""
    change, runs = rate_change(trained["summary"]), trained["runs"]
    nums = {"n_trained": len(change), "train_steps": int(runs["steps"].iloc[0]),
            "share_rate_down": 100 * float((change["after"] < change["before"]).mean()),
            "share_toward_edge": 100 * float(change["toward_edge"].mean()),
            "n_diverged": int(runs["diverged"].sum()),
            "val_acc_mean": 100 * float(runs["val_acc"].mean()), "val_acc_max": 100 * float(runs["val_acc"].max()),
            "chance": 100 * float(runs["chance"].mean()),
            "loss_first": float(runs["first_loss"].median()), "loss_last": float(runs["last_loss"].median()),
            "sigma_change": float((change["sigma_after"] / change["sigma_before"]).mean())}
    for act in activations:
        c = change[change["activation"] == act]
        nums.update({f"slope_before_{act}": float(c["slope_before"].mean()),
                     f"slope_after_{act}": float(c["slope_after"].mean()),
                     f"drive_ratio_{act}": float((c["drive_after"] / c["drive_before"]).mean()),
                     f"rate_before_{act}": float(c["before"].mean()),
                     f"rate_after_{act}": float(c["after"].mean())})
    g_train = nearest_to_one(train_gains)
    irnn = change[(change["activation"] == "relu") & (change["initializer"] == "identity")
                  & (change["gain"] == g_train)]
    nums.update({"irnn_gain": g_train,
                 "irnn_before": float(irnn["before"].mean()) if len(irnn) else float("nan"),
                 "irnn_after": float(irnn["after"].mean()) if len(irnn) else float("nan")})
    moved = change.groupby(["activation", "initializer", "gain"])[["before", "after"]].mean().reset_index()
    moved["row"] = [pr.row_label(a, i, g) for a, i, g in zip(moved["activation"], moved["initializer"],
                                                                moved["gain"])]
    words = {"train_gains_text": ", ".join(f"{g:g}" for g in train_gains),
             "exploding_before": names(moved[moved["before"] > EDGE_BAND[1]]["row"]),
             "exploding_after": names(moved[moved["after"] > EDGE_BAND[1]]["row"])}
    return nums, words, change


def scale_initializer(initializers) -> str:
    """The recurrent initializer of the input-scale grid: orthogonal when compared, else the first."""
    return "orthogonal" if "orthogonal" in initializers else initializers[0]


def _scale_numbers(scaled, activations, input_scales):
    """Rate, slope and state at the smallest and largest input scale, per activation."""
    s_lo, s_hi = min(input_scales), max(input_scales)
    by = scaled.groupby(["activation", "input_scale"])[["decay_rate", "mean_slope", "state_rms_last"]].mean()
    nums = {"scale_lo": s_lo, "scale_hi": s_hi}
    for act in activations:
        for name, column in (("rate", "decay_rate"), ("slope", "mean_slope"), ("state", "state_rms_last")):
            nums[f"scale_{name}_{act}_lo"] = float(by.loc[(act, s_lo), column])
            nums[f"scale_{name}_{act}_hi"] = float(by.loc[(act, s_hi), column])
    relu_rates = scaled[scaled["activation"] == "relu"].groupby("seed")["decay_rate"]
    nums["relu_rate_spread"] = float((relu_rates.max() - relu_rates.min()).max())
    return nums


def results(seq_len, units, activations, recurrent_initializers, recurrent_gains, n_probe, seeds, train_gains,
            n_train, epochs, batch_size, learning_rate, input_scales) -> Results:
    """Every number of the chapter: the grid at initialisation, the short training runs and
    the input-scale grid, on probes of each seed shared by the grids."""
    activations = compared(activations)
    probes: dict = {}
    res = pr.grid(activations, recurrent_initializers, recurrent_gains, seeds, seq_len, units, n_probe,
                  probes=probes)
    initial, initial_words = _initial_numbers(res["summary"], activations, recurrent_initializers,
                                              recurrent_gains)
    trained = training_grid(activations, recurrent_initializers, train_gains, seeds, seq_len=seq_len,
                            units=units, n_train=n_train, n_probe=n_probe, epochs=epochs,
                            batch_size=batch_size, learning_rate=learning_rate)
    after, after_words, change = _training_numbers(trained, activations, train_gains)
    scale_init = scale_initializer(recurrent_initializers)
    scaled = pr.grid(activations, [scale_init], [1.0], seeds, seq_len, units, n_probe,
                     input_scales=input_scales, probes=probes)["summary"]
    marks = {"CNN at initialisation": 1.0}
    tanh_drive = change[change["activation"] == "tanh"]
    if len(tanh_drive):
        marks["drive after training (tanh)"] = float((tanh_drive["drive_after"] / tanh_drive["drive_before"]).mean())
    numbers = {"seq_len_used": seq_len, "n_probe_used": n_probe, "n_seeds": len(seeds), "max_lag": seq_len - 1,
               **initial, **_pascanu_numbers(res["summary"], activations, recurrent_initializers), **after,
               **_scale_numbers(scaled, activations, input_scales)}
    words = {**initial_words, **after_words, "scale_init": f"`{scale_init}`"}
    return Results(numbers, words, res["lags"], res["summary"], trained, scaled, marks)


def page_values(res: Results) -> dict:
    """Every value the chapter's prose pastes, by glue key: the numbers, the words, the
    verdicts, and the values of :func:`optional_values` as text (words where undefined)."""
    values = {**res.numbers, **res.words, **verdicts(res.numbers)}
    values.update({key: prose_number(res.numbers.get(key), template) for key, template in optional_values().items()})
    return values


def verdicts(numbers: dict) -> dict[str, str]:
    """The claims, worded from the numbers (Markdown)."""
    worse, n_inits = numbers["relu_worse_hi"], numbers["n_inits"]
    if worse == n_inits:
        relu = ("ReLU does make exploding worse.", "true")
    elif worse > 0:
        relu = ("ReLU makes exploding worse for some initializers.", "true for some initializers")
    else:
        relu = ("ReLU does not make exploding worse here.", "not on this model")
    if numbers["n_tanh_exploding"]:
        tanh = ("A bounded activation does not rule out exploding gradients.", "not quite")
    else:
        tanh = ("No tanh configuration explodes in this grid.", "true in this grid")
    if numbers["share_rate_down"] > 50:
        train = ("Training pushes toward vanishing.",
                 "moves the recurrent layer toward vanishing, not toward exploding")
    else:
        train = ("Training does not push toward vanishing here.", "does not move the recurrent layer toward vanishing")
    return {"verdict_relu_worse": relu[0], "verdict_relu_worse_short": relu[1],
            "verdict_tanh_explodes": tanh[0], "verdict_tanh_short": tanh[1],
            "verdict_training": train[0], "verdict_training_short": train[1]}


# ----------------------------------------------------------------------------- figures


#: Panels side by side at most in the gradient-by-lag figure (more initializers wrap).
MAX_PANEL_COLUMNS = 3


def _legend_below(fig, ax, ncol: int, title=None) -> None:
    """Move ``ax``'s legend under the whole figure (so the figure stays narrow)."""
    legend = ax.get_legend()
    if legend is None:
        return
    handles, labels = legend.legend_handles, [t.get_text() for t in legend.get_texts()]
    legend.remove()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol, title=title,
               fontsize=8, frameon=False)


def fig_grad_vs_lag(lags: pd.DataFrame, value: str = "rel_grad_norm"):
    """Relative gradient norm against lag on a log axis: one panel per activation and recurrent
    initializer (at most :data:`MAX_PANEL_COLUMNS` side by side), one line per gain, 95 % CI
    band over seeds; the gains' legend under the figure."""
    acts = list(dict.fromkeys(lags["activation"]))
    inits = list(dict.fromkeys(lags["initializer"]))
    df = pr.with_gain_label(lags)
    pal = pr.gain_palette(df["gain"])
    ncols = min(len(inits), MAX_PANEL_COLUMNS)
    per_act = -(-len(inits) // ncols)
    nrows = len(acts) * per_act
    fig, axes = plots.grid_figure(nrows, ncols, 2.9 * ncols + 0.3, 2.7 * nrows + 0.3, sharex=True, sharey=True)
    positive = df.loc[df[value] > 0, value]
    lo = max(float(positive.min()) if len(positive) else 1e-12, 1e-12)
    hi = float(np.nanmax(df[value].replace(np.inf, np.nan))) if len(df) else 1.0
    for ax in axes.flat:
        ax.set_visible(False)
    for i, act in enumerate(acts):
        for j, init in enumerate(inits):
            r, c = i * per_act + j // ncols, j % ncols
            ax = axes[r, c]
            ax.set_visible(True)
            part = df[(df["activation"] == act) & (df["initializer"] == init)]
            part = part[part[value] > 0]
            sns.lineplot(data=part, x="lag", y=value, hue="gain_label", palette=pal, errorbar=("ci", 95),
                         n_boot=300, seed=0, ax=ax, legend=(i == 0 and j == 0))
            ax.set_yscale("log")
            ax.set_ylim(lo / 2, max(hi * 2, 2.0))
            ax.axhline(1.0, ls="--", lw=1, color="0.35")
            ax.set_title(config_label(act, init), fontsize=10)
            ax.set_xlabel("lag k" if r == nrows - 1 else "")
            ax.set_ylabel("‖∂L/∂h_{T-k}‖ / ‖∂L/∂h_T‖" if c == 0 else "")
    fig = plots.finish(fig)
    _legend_below(fig, axes[0, 0], ncol=len(pal), title="recurrent gain")
    return fig


def row_order(df: pd.DataFrame) -> list[str]:
    """``row`` labels ordered by activation and initializer (as they first appear), then gain."""
    rank = {c: {v: k for k, v in enumerate(dict.fromkeys(df[c]))} for c in ("activation", "initializer")}
    keys = df[["activation", "initializer", "gain", "row"]].drop_duplicates()
    keys = keys.assign(a=keys["activation"].map(rank["activation"]), i=keys["initializer"].map(rank["initializer"]))
    return list(keys.sort_values(["a", "i", "gain"])["row"])


def fig_grad_heatmap(lags: pd.DataFrame, value: str = "rel_grad_norm"):
    """:func:`rnnbook.plots.lag_heatmap` of the relative gradient (mean over seeds), one row
    per configuration and gain."""
    rows = list(row_order(lags))
    fig, axes = plots.grid_figure(1, 1, 8.0, 0.27 * len(rows) + 1.6)
    plots.lag_heatmap(lags, row="row", value=value, ax=axes[0, 0], row_order=rows,
                      cbar_label="‖∂L/∂h_{T-k}‖ / ‖∂L/∂h_T‖ (log scale)")
    axes[0, 0].set_ylabel("")
    axes[0, 0].tick_params(axis="y", labelsize=8)
    return plots.finish(fig)


def _config_styles(labels) -> tuple[dict, dict]:
    """``({label: colour}, {label: marker})``: the book's style of each configuration
    (:func:`rnnbook.plots.config_style`), spare ones for the others."""
    labels = list(dict.fromkeys(labels))
    return plots.palette(labels), plots.markers(labels)


def fig_pascanu(summary: pd.DataFrame):
    """Measured per-step gradient rate against Pascanu et al.'s bound ``sigma_max * gamma``
    (left) and against the typical rate ``rms singular value * rms slope`` (right).
    One point per configuration (colour and marker), gain (size) and seed; the diagonal is
    equality; the legend under the figure."""
    df = summary[np.isfinite(summary["decay_rate"]) & (summary["decay_rate"] > 0)].copy()
    df["recurrent gain"] = df["gain"]
    df = df.rename(columns={"config": "configuration"})
    pal, marks = _config_styles(df["configuration"])
    gains = sorted(df["recurrent gain"].unique())
    fig, axes = plots.grid_figure(1, 2, 9.0, 4.4)
    panels = (("pascanu_bound", "bound σ_max(R) · γ  (Pascanu et al.)"),
              ("typical_rate", "typical rate  (‖R‖_F/√U) · rms s'(a)"))
    values = np.concatenate([df["decay_rate"], df["pascanu_bound"], df["typical_rate"]])
    values = values[np.isfinite(values) & (values > 0)]
    lo, hi = values.min() / 1.25, values.max() * 1.25
    for k, (ax, (column, label)) in enumerate(zip(axes[0], panels)):
        ax.fill_between([lo, hi], [lo, hi], [hi, hi], color="0.9", zorder=0)
        ax.plot([lo, hi], [lo, hi], color="0.3", lw=1)
        ax.axhline(1, ls="--", lw=1, color="0.5")
        ax.axvline(1, ls="--", lw=1, color="0.5")
        sns.scatterplot(data=df, x=column, y="decay_rate", hue="configuration", palette=pal,
                        style="configuration", markers=marks, size="recurrent gain", sizes=(25, 90),
                        size_order=gains, alpha=0.85, ax=ax, legend=(k == 0))
        ax.set_xscale("log")
        ax.set_yscale("log")
        subs = (1, 2, 5) if hi / lo < 100 else None
        plots.plain_log_ticks(ax, "x", subs)
        plots.plain_log_ticks(ax, "y", subs)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(label)
        ax.set_ylabel("measured per-step rate of ‖∂L/∂h_{T-k}‖" if k == 0 else "")
    axes[0, 0].set_title("the worst-case bound")
    axes[0, 0].text(lo * 1.1, hi / 1.15, "above the diagonal:\nforbidden by the bound", fontsize=8, va="top")
    axes[0, 1].set_title("the typical rate")
    fig = plots.finish(fig)
    _legend_below(fig, axes[0, 0], ncol=3)
    return fig


def fig_after_training(lags: pd.DataFrame, summary: pd.DataFrame):
    """Per trained gain, top: relative gradient against lag after the short training (solid)
    and at initialisation (dashed); bottom: the per-step rate before and after, per
    configuration (bars: mean, ticks: range over seeds). Two gains side by side at most."""
    gains = sorted(lags["gain"].unique())
    pal = plots.palette(lags["config"].unique())
    stages = list(STAGES)
    n_configs = lags["config"].nunique()
    fig, pairs = pr.paired_panels(len(gains), 4.3, 4.6 + 0.35 * n_configs, max_cols=2)
    df = lags[lags["rel_grad_norm"] > 0].rename(columns={"config": "configuration"})
    for j, (gain, (ax, ax_rate)) in enumerate(zip(gains, pairs)):
        part = df[df["gain"] == gain]
        sns.lineplot(data=part, x="lag", y="rel_grad_norm", hue="configuration", palette=pal, style="stage",
                     style_order=stages[::-1], errorbar=("ci", 95), n_boot=300, seed=0, ax=ax,
                     legend=(j == 0))
        ax.set_yscale("log")
        ax.axhline(1.0, ls="--", lw=1, color="0.35")
        ax.set_title(f"recurrent gain {gain:g} at initialisation")
        ax.set_xlabel("lag k")
        ax.set_ylabel("‖∂L/∂h_{T-k}‖ / ‖∂L/∂h_T‖" if j % 2 == 0 else "")
        s = summary[(summary["gain"] == gain) & np.isfinite(summary["decay_rate"])]
        sns.barplot(data=s, y="config", x="decay_rate", hue="stage", hue_order=stages,
                    palette={"at initialisation": "0.7", "after training": "#029e73"},
                    errorbar=("pi", 100), ax=ax_rate, orient="h", legend=(j == 0))
        ax_rate.axvline(1.0, ls="--", lw=1, color="0.2")
        ax_rate.set_xlabel("per-step rate of the gradient norm\n(1 = the edge)")
        ax_rate.set_ylabel("")
        if j % 2:
            ax_rate.set_yticklabels([])
    if pairs:
        ax, ax_rate = pairs[0]
        lines, bars_legend = ax.get_legend(), ax_rate.get_legend()
        handles = list(lines.legend_handles) if lines else []
        labels = [t.get_text() for t in lines.get_texts()] if lines else []
        if bars_legend is not None:
            handles += [h for h in bars_legend.legend_handles]
            labels += [f"rate {t.get_text()} (bars)" for t in bars_legend.get_texts()]
            bars_legend.remove()
        if lines is not None:
            lines.remove()
    fig = plots.finish(fig)
    if pairs and handles:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8,
                   frameon=False)
    return fig


def fig_input_scale(summary: pd.DataFrame, marks: dict | None = None):
    """Against the factor multiplying the CNN features: the per-step gradient rate, the mean
    slope ``|s'(a)|`` and the RMS state at the last step, per configuration (its colour,
    marker and line style; 95 % CI over seeds), on a 2 x 2 grid whose fourth cell holds the
    legend. ``marks`` ({label: scale}) draws labelled vertical lines."""
    df = summary.assign(label=[config_label(a, i) for a, i in zip(summary["activation"], summary["initializer"])])
    levels = list(dict.fromkeys(df["label"]))
    pal = plots.palette(levels)
    fig, axes = plots.grid_figure(2, 2, 8.4, 6.6)
    panels = (("decay_rate", "per-step rate of ‖∂L/∂h_{T-k}‖", False),
              ("mean_slope", "mean slope |s'(a)|", False),
              ("state_rms_last", "RMS state ‖h_T‖/√U", True))
    for k, (ax, (column, label, logy)) in enumerate(zip(axes.flat, panels)):
        part = df[np.isfinite(df[column])]
        sns.lineplot(data=part, x="input_scale", y=column, hue="label", palette=pal, style="label",
                     style_order=levels, markers=plots.markers(levels), dashes=plots.dashes(levels),
                     errorbar=("ci", 95), n_boot=300, seed=0, ax=ax, legend=(k == 0))
        ax.set_xscale("log")
        plots.plain_log_ticks(ax, "x")
        if logy:
            ax.set_yscale("log")
            plots.plain_log_ticks(ax, "y")
        ax.set_xlabel("input scale (× the CNN features)")
        ax.set_ylabel(label)
        for name, x in (marks or {}).items():
            if np.isfinite(x):
                ax.axvline(x, ls=":", lw=1.2, color="0.3")
                ax.text(x, 0.98, f" {name}", transform=ax.get_xaxis_transform(), fontsize=7, va="top",
                        rotation=90, ha="right")
    axes[0, 0].axhline(1.0, ls="--", lw=1, color="0.5")
    legend_ax = axes[1, 1]
    legend_ax.axis("off")
    legend = axes[0, 0].get_legend()
    if legend is not None:
        handles, labels = legend.legend_handles, [t.get_text() for t in legend.get_texts()]
        legend.remove()
        legend_ax.legend(handles, labels, loc="center", title="configuration", frameon=False)
    return plots.finish(fig)


# ----------------------------------------------------------------------------- the data behind the page


_CONFIG = ["activation", "initializer", "config", "gain", "seed"]


def figure_data(res: Results) -> dict[str, pd.DataFrame]:
    """The tidy data behind each figure of the chapter, by its key (one row per plotted point
    and seed), for the page's "Data" downloads. Rates are per step of lag, gradient norms
    relative to the last step (lag 0), states per unit (``||h|| / sqrt(U)``)."""
    lag_cols = [*_CONFIG, "lag", "grad_norm", "rel_grad_norm"]
    heat = (res.lags.groupby(["row", "activation", "initializer", "gain", "lag"], sort=False)["rel_grad_norm"]
            .agg(rel_grad_norm_mean="mean", n_seeds="count").reset_index())
    trained_lags = res.trained["lags"][[*_CONFIG, "stage", "lag", "rel_grad_norm"]].assign(
        quantity="relative gradient norm by lag")
    trained_rates = (res.trained["summary"][[*_CONFIG, "stage", "decay_rate"]]
                     .rename(columns={"decay_rate": "value"}).assign(quantity="per-step rate", lag=np.nan))
    trained = pd.concat([trained_lags.rename(columns={"rel_grad_norm": "value"}), trained_rates],
                        ignore_index=True)[["quantity", *_CONFIG, "stage", "lag", "value"]]
    return {
        "fig-grad-vs-lag": res.lags[lag_cols],
        "fig-grad-heatmap": heat,
        "fig-pascanu-bound": res.summary[[*_CONFIG, "decay_rate", "pascanu_bound", "typical_rate", "sigma_max",
                                          "gamma", "rms_gain", "rms_slope"]],
        "fig-grad-after-training": trained,
        "fig-input-scale": res.scaled[[*_CONFIG, "input_scale", "decay_rate", "mean_slope", "state_rms_last"]],
    }


def all_runs(res: Results) -> pd.DataFrame:
    """Every short training run of the chapter, one row each: its configuration, outcome, and
    the per-step rate, mean slope, input drive and sigma_max before and after training."""
    change = rate_change(res.trained["summary"]).drop(columns=["toward_edge"]).rename(
        columns={"before": "rate_before", "after": "rate_after"})
    keys = ["activation", "initializer", "gain", "seed"]
    return res.trained["runs"].merge(change, on=keys, how="left")


def plan(params: dict) -> list:
    """Runs this chapter trains through :func:`rnnbook.sweeps.run_sweep`: none (for
    ``rnnbook build --dry-run``)."""
    return []
