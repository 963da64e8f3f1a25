"""The chapter "Why tanh is the default": what the libraries choose, the activations and
their slopes, how big the state gets and which signs it takes, on the book's model at
initialisation.

:func:`results` computes every number of the chapter (the prose's glued values and the
frames the figures draw); :func:`verdicts` words the claims from those numbers; the
``fig_*`` functions draw the figures::

    res = results(seq_len=20, units=64, activations=["tanh", "relu"], recurrent_initializer="orthogonal",
                  recurrent_gains=[0.5, 1.0, 1.5], n_probe=256, seeds=[0, 1, 2])
    res.numbers["rate_tanh_default"], verdicts(res.numbers)["verdict_sign"]
"""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pandas as pd
import seaborn as sns
import tensorflow as tf

from rnnbook import diagnostics, plots
from rnnbook.experiments import probes as pr
from rnnbook.experiments.common import EDGE_BAND, activation_label, keras_simple_rnn_defaults, tf1_cell_status

#: The chapter's parameters, as its ``parameters`` cell names them.
PARAMS = ("seq_len", "units", "activations", "recurrent_initializer", "recurrent_gains", "n_probe", "seeds")
#: Activations drawn in the activation figure (plus any the chapter compares).
CURVE_ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear", "elu")
#: The activations the prose always discusses.
DISCUSSED = ("tanh", "relu")
#: A ReLU state goes down "often" in at least this share of the steps (%), and "as often as
#: it goes up" when the two shares differ by at most AS_OFTEN points.
OFTEN, AS_OFTEN = 10.0, 5.0

#: Documented defaults of other libraries (not installed here), with where they are stated.
DOCUMENTED_DEFAULTS = {
    "TF1 BasicRNNCell (documented)": {
        "activation": "None, which means tanh",
        "input kernel": "one glorot_uniform matrix over [input, state] (variable-scope default)",
        "recurrent kernel": "the state block of that matrix: glorot_uniform, not orthogonal",
        "bias": "yes, zeros",
        "unroll": "n/a (tf.nn.dynamic_rnn loops with tf.while_loop)",
    },
    "PyTorch nn.RNN (documented)": {
        "activation": "nonlinearity='tanh' ('relu' allowed)",
        "input kernel": "uniform(-1/sqrt(hidden), 1/sqrt(hidden))",
        "recurrent kernel": "uniform(-1/sqrt(hidden), 1/sqrt(hidden))",
        "bias": "yes (two: b_ih and b_hh), same uniform",
        "unroll": "n/a (cuDNN/ATen loop)",
    },
    "Keras 0.x SimpleRNN, 2015 (documented)": {
        "activation": "sigmoid",
        "input kernel": "glorot_uniform",
        "recurrent kernel": "orthogonal",
        "bias": "yes, zeros",
        "unroll": "n/a (theano.scan)",
    },
}


# ----------------------------------------------------------------------------- library defaults


def _initializer_name(value) -> str:
    return value if isinstance(value, str) else type(value).__name__


def defaults_table() -> pd.DataFrame:
    """Default settings of a simple RNN: the installed Keras (read at run time) beside the
    documented TF1 ``BasicRNNCell``, PyTorch ``nn.RNN`` and the first Keras ``SimpleRNN``."""
    d = keras_simple_rnn_defaults()
    installed = {
        "activation": repr(d["activation"]),
        "input kernel": _initializer_name(d["kernel_initializer"]),
        "recurrent kernel": _initializer_name(d["recurrent_initializer"]),
        "bias": f"use_bias={d['use_bias']}, {_initializer_name(d['bias_initializer'])}",
        "unroll": f"unroll={d['unroll']}",
    }
    columns = {f"Keras {keras.__version__} SimpleRNN (read at run time)": installed, **DOCUMENTED_DEFAULTS}
    table = pd.DataFrame(columns)
    table.index.name = "setting"
    return table


def library_words() -> dict[str, str]:
    """The installed Keras' SimpleRNN defaults and TF1's cell status, as Markdown code spans."""
    d = keras_simple_rnn_defaults()
    return {"keras_activation": f"`{d['activation']}`", "keras_recurrent_init": f"`{d['recurrent_initializer']}`",
            "keras_kernel_init": f"`{d['kernel_initializer']}`", "keras_unroll": f"`unroll={d['unroll']}`",
            "keras_version": f"`{keras.__version__}`", "tf1_status": tf1_cell_status()}


# ----------------------------------------------------------------------------- activations


def activation_curves(names=CURVE_ACTIVATIONS, x=None) -> pd.DataFrame:
    """Long frame ``activation, x, value, slope`` of each Keras activation and its derivative."""
    x = np.linspace(-4.0, 4.0, 801) if x is None else np.asarray(x, float)
    rows = []
    for name in names:
        fn = keras.activations.get(name)
        xt = tf.constant(x, tf.float64)
        y = fn(xt)
        slope = diagnostics.activation_slope(fn, xt)
        slope = np.ones_like(x) if slope is None else slope.numpy()
        rows.append(pd.DataFrame({"activation": activation_label(name), "x": x, "value": np.asarray(y),
                                  "slope": slope}))
    return pd.concat(rows, ignore_index=True)


def _bound(v: float) -> str:
    """A range bound as text: ``+inf`` for one reached only in the limit, else rounded."""
    if abs(v) > 50:
        return "-inf" if v < 0 else "+inf"
    return f"{v:.0f}" if abs(v - round(v)) < 1e-6 else f"{v:.2f}"


def activation_properties(names=CURVE_ACTIVATIONS) -> pd.DataFrame:
    """Range, mean output for standard-normal input, slope at 0 and largest slope (gamma).

    Everything is computed from the Keras activation itself: the range from a wide
    grid (a bound reached only in the limit is shown as such), the slope at 0 as
    one-sided difference quotients, gamma as the largest slope on the grid (compared
    with :data:`rnnbook.diagnostics.ACTIVATION_GAMMA`).
    """
    wide = np.linspace(-60.0, 60.0, 240001)
    z = np.random.default_rng(0).standard_normal(200_000)
    eps = 1e-6
    rows = []
    for name in names:
        fn = keras.activations.get(name)

        def f(v):
            return np.asarray(fn(tf.constant(v, tf.float64)), float)

        y = f(wide)
        slopes = activation_curves([name], wide)["slope"].to_numpy()
        right = (f(np.array([eps])) - f(np.array([0.0])))[0] / eps
        left = (f(np.array([0.0])) - f(np.array([-eps])))[0] / eps
        slope0 = f"{right:.2f}" if abs(right - left) < 1e-3 else f"{left:.2f} (left), {right:.2f} (right)"
        mean_normal = float(f(z).mean())
        rows.append({
            "activation": activation_label(name),
            "range": f"({_bound(y.min())}, {_bound(y.max())})",
            "f(0)": float(f(np.array([0.0]))[0]),
            "mean of f(z), z ~ N(0,1)": mean_normal,
            "zero-centred": "yes" if abs(mean_normal) < 1e-2 else "no",
            "slope at 0": slope0,
            "largest slope (gamma)": float(np.max(np.abs(slopes))),
        })
    return pd.DataFrame(rows).set_index("activation")


# ----------------------------------------------------------------------------- signs


def sign_stats(rnn, features) -> dict:
    """Signs of everything that enters or leaves the recurrent units.

    Keys: ``feature_negative`` / ``feature_zero`` (shares of CNN features), ``drive_positive``
    (share of input-drive entries ``x_t K + b`` above zero), ``drive_mean``,
    ``drive_one_signed_units`` (units whose drive never changes sign), ``recurrent_positive``
    (share of ``h_{t-1} R`` entries above zero, t >= 1), ``state_positive``,
    ``state_zero``, ``state_negative``, ``state_mean``, ``state_decreases`` (share of
    ``h_t < h_{t-1}``, t >= 1), ``state_increases``, ``state_two_signed_units`` (units
    that take both signs somewhere) and ``state_one_signed_units``.
    """
    x = np.asarray(features, np.float64)
    drive_stats = diagnostics.input_drive_stats(rnn, features)
    pre, h = pr.pre_activations(rnn, features)
    drive = diagnostics.input_drive(rnn, features).numpy().astype(np.float64)
    h = h.numpy().astype(np.float64)
    recurrent_part = pre.numpy().astype(np.float64)[:, 1:] - drive[:, 1:]
    step = np.diff(h, axis=1)
    positive, negative = h > 0, h < 0
    two_signed = positive.any(axis=(0, 1)) & negative.any(axis=(0, 1))
    return {
        "feature_negative": float((x < 0).mean()),
        "feature_zero": float((x == 0).mean()),
        "feature_mean": float(x.mean()),
        "drive_positive": drive_stats["drive_positive_fraction"],
        "drive_mean": drive_stats["drive_mean"],
        "drive_std": drive_stats["drive_std"],
        "drive_one_signed_units": drive_stats["one_signed_units"],
        "recurrent_positive": float((recurrent_part > 0).mean()),
        "state_positive": float(positive.mean()),
        "state_zero": float((h == 0).mean()),
        "state_negative": float(negative.mean()),
        "state_mean": float(h.mean()),
        "state_decreases": float((step < 0).mean()),
        "state_increases": float((step > 0).mean()),
        "state_two_signed_units": float(two_signed.mean()),
        "state_one_signed_units": float(1.0 - two_signed.mean()),
    }


def sign_grid(activations, initializer, gain, seeds, seq_len, units, n_probe, probes=None) -> pd.DataFrame:
    """:func:`sign_stats` for each activation x seed (one row each)."""
    probes = {} if probes is None else probes
    rows = []
    for seed in seeds:
        probe = pr.probe_for(probes, seed, seq_len, units, n_probe)
        for activation in activations:
            rnn = pr.recurrent_layer(activation, initializer, gain, seed, units, probe.n_features)
            rows.append({"activation": activation, "label": activation_label(activation), "seed": int(seed),
                         **sign_stats(rnn, probe.features)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the chapter's numbers


@dataclasses.dataclass
class Results:
    """Everything the chapter shows: glued ``numbers`` and the frames behind its figures."""

    numbers: dict            # glue key -> number (shares in %)
    curves: pd.DataFrame     # activation_curves
    properties: pd.DataFrame  # the activation table (computed and measured columns)
    states: pd.DataFrame     # state statistics per step (grid over the gains)
    signs: pd.DataFrame      # sign_grid at gain 1


def compared(activations) -> list[str]:
    """The activations the chapter compares: tanh and ReLU first, then the others given."""
    return list(dict.fromkeys([*DISCUSSED, *activations]))


def _activation_table(curve_names, seeds, seq_len, units, n_probe, probes) -> pd.DataFrame:
    """:func:`activation_properties` joined with the rate, slope and state measured with the
    Keras defaults (orthogonal, gain 1), averaged over the seeds."""
    at_default = pr.grid(curve_names, ["orthogonal"], [1.0], seeds, seq_len, units, n_probe, probes=probes)
    measured = (at_default["summary"].assign(label=lambda d: d["activation"].map(activation_label))
                .groupby("label", sort=False)[["decay_rate", "mean_slope", "state_rms_last"]].mean())
    return activation_properties(curve_names).join(measured).rename(columns={
        "decay_rate": "measured gradient rate per step",
        "mean_slope": "measured mean slope",
        "state_rms_last": "measured RMS state at T",
    })


def _activation_numbers(props: pd.DataFrame) -> dict:
    m = props["measured gradient rate per step"]
    return {"rate_tanh_default": float(m["tanh"]), "rate_relu_default": float(m["ReLU"]),
            "rate_sigmoid_default": float(m["sigmoid"]), "rate_linear_default": float(m["linear"]),
            "gamma_sigmoid": float(props.loc["sigmoid", "largest slope (gamma)"]),
            "sigmoid_steps_ratio": float(np.log(m["sigmoid"]) / np.log(m["tanh"])),
            "slope_tanh_default": float(props.loc["tanh", "measured mean slope"])}


def _growth_numbers(states, summary, activations, gains) -> dict:
    """Size of the state and dead units per activation, at the smallest and largest gain."""
    g_lo, g_hi = min(gains), max(gains)
    last, first = states[states["t"] == states["t"].max()], states[states["t"] == 0]

    def rms(frame, act, gain=None):
        part = frame[frame["activation"] == act]
        return float((part if gain is None else part[part["gain"] == gain])["state_rms"].mean())

    out = {"gain_lo": g_lo, "gain_hi": g_hi}
    for act in activations:
        sub = summary[summary["activation"] == act]
        out.update({
            f"{act}_max_abs_state": float(sub["state_max_abs"].max()),
            f"{act}_rms_lo": rms(last, act, g_lo), f"{act}_rms_hi": rms(last, act, g_hi),
            f"{act}_rms_first": rms(first, act),
            f"{act}_dead_max": 100 * float(sub["dead_units"].max()),
            f"{act}_dead_mean": 100 * float(sub["dead_units"].mean()),
            f"{act}_active": 100 * float(sub["active_fraction"].mean()),
            f"{act}_dead_step": 100 * float(states[states["activation"] == act]["dead_units"].mean()),
            f"{act}_state_zero_growth": 100 * float(1 - sub["active_fraction"].mean() if act == "relu" else 0.0),
            f"{act}_growth_hi": rms(last, act, g_hi) / rms(first, act, g_hi),
        })
    # per-step factor of the state of an orthogonal ReLU net: gain x sqrt(share of active units)
    relu = summary[summary["activation"] == "relu"]
    out["relu_critical_gain"] = float(1.0 / np.sqrt(relu["active_fraction"].mean()))
    return out


def _sign_numbers(signs, activations) -> dict:
    """Shares (in %) of negative, zero and positive features, drives and states."""
    mean = signs.groupby("activation").mean(numeric_only=True)
    any_act = activations[0]
    out = {"feature_negative": 100 * float(mean.loc[any_act, "feature_negative"]),
           "feature_zero": 100 * float(mean.loc[any_act, "feature_zero"]),
           "feature_mean": float(mean.loc[any_act, "feature_mean"]),
           "drive_positive": 100 * float(mean.loc[any_act, "drive_positive"]),
           "drive_one_signed": 100 * float(mean.loc[any_act, "drive_one_signed_units"])}
    for act in activations:
        for key in ("state_positive", "state_negative", "state_zero", "state_decreases", "state_increases",
                    "state_two_signed_units", "recurrent_positive"):
            out[f"{act}_{key}"] = 100 * float(mean.loc[act, key])
        out[f"{act}_state_mean"] = float(mean.loc[act, "state_mean"])
    return out


def results(seq_len: int, units: int, activations, recurrent_initializer: str, recurrent_gains, n_probe: int,
            seeds) -> Results:
    """Every number of the chapter, measured on probes of each seed (shared by all sections)."""
    activations = compared(activations)
    probes: dict = {}
    curve_names = list(dict.fromkeys([*CURVE_ACTIVATIONS, *activations]))
    props = _activation_table(curve_names, seeds, seq_len, units, n_probe, probes)
    growth = pr.grid(activations, [recurrent_initializer], recurrent_gains, seeds, seq_len, units, n_probe,
                     probes=probes)
    signs = sign_grid(activations, recurrent_initializer, 1.0, seeds, seq_len, units, n_probe, probes=probes)
    numbers = {**_activation_numbers(props), "n_seeds": len(seeds), "seq_len_used": seq_len,
               "n_probe_used": n_probe, "slope_tol": pr.SLOPE_TOL,
               **_growth_numbers(growth["states"], growth["summary"], activations, recurrent_gains),
               **_sign_numbers(signs, activations)}
    return Results(numbers, activation_curves(curve_names), props, growth["states"], signs)


def verdicts(numbers: dict) -> dict[str, str]:
    """The claims, worded from the numbers (Markdown): ReLU against vanishing at the Keras
    defaults, and whether a ReLU state can go down."""
    relu_vanishes = numbers["rate_relu_default"] < EDGE_BAND[0]
    down, up = numbers["relu_state_decreases"], numbers["relu_state_increases"]
    if down >= OFTEN and abs(down - up) <= AS_OFTEN:
        sign = "does not hold on this model: **a ReLU state goes down as often as it goes up**"
    elif down >= OFTEN:
        sign = "does not hold on this model: **a ReLU state goes down in a large share of the steps**"
    else:
        sign = "holds on this model: **a ReLU state rarely goes down**"
    return {"verdict_relu_default": "does not stop the gradient from vanishing" if relu_vanishes
            else "keeps the gradient from vanishing",
            "verdict_sign": sign}


# ----------------------------------------------------------------------------- figures


def fig_activations(curves: pd.DataFrame):
    """Activations (left) and their derivatives (right), from :func:`activation_curves`; one
    colour and line style per activation."""
    fig, axes = plots.grid_figure(1, 2, 9.0, 3.6)
    levels = list(dict.fromkeys(curves["activation"]))
    pal, dash = plots.palette(levels), plots.dashes(levels)
    for ax, column, label in zip(axes[0], ("value", "slope"), ("s(x)", "slope s'(x)")):
        sns.lineplot(data=curves, x="x", y=column, hue="activation", palette=pal, style="activation",
                     style_order=levels, dashes=dash, ax=ax, lw=2)
        ax.axhline(0, color="0.5", lw=0.8)
        ax.axvline(0, color="0.5", lw=0.8)
        ax.set_xlabel("pre-activation x")
        ax.set_ylabel(label)
        ax.legend(title=None)
    axes[0, 0].set_ylim(-1.6, 4.0)
    axes[0, 0].set_title("activation")
    axes[0, 1].set_ylim(-0.05, 1.15)
    axes[0, 1].set_title("derivative (its maximum is gamma)")
    axes[0, 1].get_legend().remove()
    return plots.finish(fig)


def fig_state_growth(states: pd.DataFrame):
    """Per activation, top: RMS hidden state ``||h_t|| / sqrt(U)`` against t, one line per gain
    (band: 95 % CI over seeds); bottom: share of dead units (off for every probe sequence)
    at each step. Two activations side by side at most; more wrap onto further rows."""
    acts = list(dict.fromkeys(states["activation"]))
    df = pr.with_gain_label(states)
    pal = pr.gain_palette(df["gain"])
    fig, pairs = pr.paired_panels(len(acts), 4.2, 6.6, max_cols=2, sharex=True)
    for j, (act, (ax, ax_dead)) in enumerate(zip(acts, pairs)):
        part = df[df["activation"] == act]
        sns.lineplot(data=part, x="t", y="state_rms", hue="gain_label", palette=pal, errorbar=("ci", 95),
                     n_boot=300, seed=0, ax=ax, marker="o", markersize=3)
        wide = part["state_rms"].max() > 5 * max(part["state_rms"].min(), 1e-12)
        if wide:  # a log axis only where the state grows by orders of magnitude
            ax.set_yscale("log")
            plots.plain_log_ticks(ax)
        ax.axhline(1.0, ls="--", lw=1, color="0.35")
        ax.set_title(f"{activation_label(act)}: size of the state" + (" (log scale)" if wide else ""))
        ax.set_ylabel("RMS state ‖h_t‖/√U" if j % 2 == 0 else "")
        ax.legend(title="recurrent gain", fontsize=8) if j == len(acts) - 1 else ax.get_legend().remove()
        sns.lineplot(data=part, x="t", y="dead_units", hue="gain_label", palette=pal, errorbar=("ci", 95),
                     n_boot=300, seed=0, ax=ax_dead, marker="o", markersize=3, legend=False)
        ax_dead.set_ylim(-0.02, max(0.3, float(df["dead_units"].max()) * 1.15))
        ax_dead.set_title(f"{activation_label(act)}: dead units")
        ax_dead.set_ylabel("share of units off for every sequence" if j % 2 == 0 else "")
        ax_dead.set_xlabel("time step t")
    return plots.finish(fig)


SIGN_COLORS = {"negative": "#0173b2", "zero": "#949494", "positive": "#de8f05",
               "down": "#0173b2", "unchanged": "#949494", "up": "#de8f05"}


def sign_long(signs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long frames for :func:`fig_state_sign`: shares by quantity and sign, and step directions."""
    rows, moves = [], []
    for _, r in signs.iterrows():
        label = r["label"]
        quantities = {}
        if r["activation"] == signs["activation"].iloc[0]:
            quantities["CNN features x_t"] = (r["feature_negative"], r["feature_zero"])
            quantities["input drive x_t K + b"] = (1 - r["drive_positive"], 0.0)
        quantities[f"recurrent drive h R ({label})"] = (1 - r["recurrent_positive"], 0.0)
        quantities[f"state h_t ({label})"] = (r["state_negative"], r["state_zero"])
        for q, (neg, zero) in quantities.items():
            for sign, share in (("negative", neg), ("zero", zero), ("positive", 1 - neg - zero)):
                rows.append({"quantity": q, "sign": sign, "share": share, "seed": r["seed"]})
        for direction, share in (("down", r["state_decreases"]), ("up", r["state_increases"]),
                                 ("unchanged", 1 - r["state_decreases"] - r["state_increases"])):
            moves.append({"activation": label, "direction": direction, "share": share, "seed": r["seed"]})
    return pd.DataFrame(rows), pd.DataFrame(moves)


def fig_state_sign(signs: pd.DataFrame):
    """Top: share of negative / zero / positive entries of the CNN features, the input drive,
    the recurrent drive and the state. Bottom: share of steps where a unit's state goes down,
    stays or goes up. Bars: mean over seeds; ticks: range over seeds."""
    shares, moves = sign_long(signs)
    n_quantities = shares["quantity"].nunique()
    fig, axes = plots.grid_figure(2, 1, 8.0, 0.42 * n_quantities + 4.6,
                                  gridspec_kw={"height_ratios": [0.42 * n_quantities + 0.9, 3.0]})
    ax = axes[0, 0]
    sns.barplot(data=shares, y="quantity", x="share", hue="sign", palette=SIGN_COLORS,
                hue_order=["negative", "zero", "positive"], errorbar=("pi", 100), ax=ax, orient="h")
    ax.axvline(0.5, ls="--", lw=1, color="0.35")
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("share of entries")
    ax.set_ylabel("")
    ax.set_title("signs of what enters and leaves the units")
    sns.move_legend(ax, "center left", bbox_to_anchor=(1.01, 0.5), title=None, fontsize=8)
    ax = axes[1, 0]
    sns.barplot(data=moves, x="activation", y="share", hue="direction", palette=SIGN_COLORS,
                hue_order=["down", "unchanged", "up"], errorbar=("pi", 100), ax=ax)
    ax.set_ylim(0, 1.0)
    ax.set_ylabel("share of steps, h_t vs h_{t-1}")
    ax.set_xlabel("")
    ax.set_title("does the state go down?")
    sns.move_legend(ax, "center left", bbox_to_anchor=(1.01, 0.5), title=None, fontsize=8)
    return plots.finish(fig)


# ----------------------------------------------------------------------------- the data behind the page


def figure_data(res: Results) -> dict[str, pd.DataFrame]:
    """The tidy data behind each figure and table of the chapter, by its key (one row per
    plotted point or per measurement), for the page's "Data" downloads."""
    shares, moves = sign_long(res.signs)
    states = res.states[["activation", "initializer", "gain", "seed", "t", "state_rms", "dead_units"]]
    return {
        "tbl-defaults": defaults_table().reset_index(),
        "fig-activations": res.curves.rename(columns={"x": "pre_activation", "value": "activation_value",
                                                      "slope": "activation_slope"}),
        "tbl-activation-properties": res.properties.reset_index(),
        "fig-state-growth": states.rename(columns={"state_rms": "state_rms_per_unit",
                                                   "dead_units": "dead_unit_share"}),
        "fig-state-sign": pd.concat([
            shares.assign(panel="signs of entries").rename(columns={"quantity": "what", "sign": "category"}),
            moves.assign(panel="step direction of the state").rename(columns={"activation": "what",
                                                                               "direction": "category"})],
            ignore_index=True)[["panel", "what", "category", "seed", "share"]],
    }


def plan(params: dict) -> list:
    """Runs this chapter trains through :func:`rnnbook.sweeps.run_sweep`: none (for
    ``rnnbook build --dry-run``)."""
    return []
