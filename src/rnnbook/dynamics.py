"""Forward and backward dynamics of the book's SimpleRNN head, measured on real CNN features.

The chapters "Why tanh is the default" and "Vanishing and exploding gradients" ask the
same question of many configurations (activation x recurrent initializer x recurrent
gain x seed): how big does the hidden state get, what signs does it take, and how fast
does the gradient ``dL/dh_{T-k}`` shrink or grow with the lag ``k``? This module runs
those measurements (with :mod:`rnnbook.diagnostics`) and returns tidy
``pandas.DataFrame`` s for seaborn and ``myst_nb.glue``.

A *probe* is the model's CNN, initialised for one seed, applied to held-out sequences
(the validation split of the recall task); its features feed every recurrent
configuration of that seed, so configurations differ only in the recurrent layer::

    probe = make_probe(seed=0, seq_len=20, units=64, n_probe=256)
    rnn = recurrent_layer("relu", "identity", 1.0, seed=0, units=64, n_features=probe.n_features)
    lags, states, summary = measure(rnn, probe.head, probe.features, probe.labels)

:func:`grid` does this for a whole grid; :func:`short_training` trains one
configuration briefly and measures it before and after.
"""
from __future__ import annotations

import dataclasses
import inspect
import time

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from rnnbook import clipping, data, diagnostics, models, runtime, training

#: Activations drawn in the activation figure (plus any a chapter compares).
CURVE_ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear", "elu")
#: A per-step gradient factor inside this band counts as "near the edge"; below it the
#: gradient vanishes, above it it explodes.
EDGE_BAND = (0.95, 1.05)

_ACTIVATION_DISPLAY = {"relu": "ReLU", "elu": "ELU", "selu": "SELU", "gelu": "GELU"}


# ----------------------------------------------------------------------------- labels


def activation_label(name: str) -> str:
    """``"relu"`` -> ``"ReLU"``, ``"tanh"`` -> ``"tanh"`` (display names)."""
    return _ACTIVATION_DISPLAY.get(name, name)


def config_label(activation: str, initializer: str) -> str:
    """The book's name of an (activation, recurrent initializer) pair, as in
    :data:`rnnbook.plots.CONFIG_COLORS` (``"ReLU + identity (IRNN)"``, ``"tanh + orthogonal"``)."""
    label = f"{activation_label(activation)} + {initializer}"
    if activation == "relu" and initializer == "identity":
        label += " (IRNN)"
    return label


def gain_label(gain: float) -> str:
    return f"gain {gain:g}"


# ----------------------------------------------------------------------------- library defaults


def keras_simple_rnn_defaults() -> dict:
    """Defaults of the installed ``keras.layers.SimpleRNN``, read from its signature."""
    signature = inspect.signature(keras.layers.SimpleRNN.__init__)
    return {name: p.default for name, p in signature.parameters.items()
            if p.default is not inspect.Parameter.empty}


def tf1_basic_rnn_cell_status() -> str:
    """Whether TF1's ``BasicRNNCell`` can still be built here (it cannot with Keras 3)."""
    try:
        cell = tf.compat.v1.nn.rnn_cell.BasicRNNCell
        cell(4)
    except Exception as exc:  # AttributeError / ImportError / ValueError, depending on versions
        return f"not available in TensorFlow {tf.__version__}: {str(exc).strip() or type(exc).__name__}"
    return f"available in TensorFlow {tf.__version__}"


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


def _initializer_name(value) -> str:
    if isinstance(value, str):
        return value
    return type(value).__name__


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


# ----------------------------------------------------------------------------- activations


def activation_curves(names=CURVE_ACTIVATIONS, x=None) -> pd.DataFrame:
    """Long frame ``activation, x, value, slope`` of each Keras activation and its derivative."""
    x = np.linspace(-4.0, 4.0, 801) if x is None else np.asarray(x, float)
    rows = []
    for name in names:
        fn = keras.activations.get(name)
        xt = tf.constant(x, tf.float64)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = fn(xt)
        slope = tape.gradient(y, xt)
        slope = np.ones_like(x) if slope is None else slope.numpy()
        rows.append(pd.DataFrame({"activation": activation_label(name), "x": x, "value": np.asarray(y),
                                  "slope": slope}))
    return pd.concat(rows, ignore_index=True)


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
        lo, hi = y.min(), y.max()
        slopes = activation_curves([name], wide)["slope"].to_numpy()
        right = (f(np.array([eps])) - f(np.array([0.0])))[0] / eps
        left = (f(np.array([0.0])) - f(np.array([-eps])))[0] / eps
        slope0 = f"{right:.2f}" if abs(right - left) < 1e-3 else f"{left:.2f} (left), {right:.2f} (right)"
        mean_normal = float(f(z).mean())

        def bound(v, edge):
            if abs(v) > 50:
                return "-inf" if v < 0 else "+inf"
            return f"{v:.0f}" if abs(v - round(v)) < 1e-6 else f"{v:.2f}"

        rows.append({
            "activation": activation_label(name),
            "range": f"({bound(lo, 'lo')}, {bound(hi, 'hi')})",
            "f(0)": float(f(np.array([0.0]))[0]),
            "mean of f(z), z ~ N(0,1)": mean_normal,
            "zero-centred": "yes" if abs(mean_normal) < 1e-2 else "no",
            "slope at 0": slope0,
            "largest slope (gamma)": float(np.max(np.abs(slopes))),
        })
    return pd.DataFrame(rows).set_index("activation")


# ----------------------------------------------------------------------------- probes and layers


@dataclasses.dataclass
class Probe:
    """CNN features of held-out sequences under one seed's initial model."""

    seed: int
    features: tf.Tensor          # (B, T, F) float32, non-negative (ReLU CNN)
    labels: np.ndarray           # (B,)
    head: keras.layers.Dense     # the model's own classifier head
    model: models.SequenceClassifier

    @property
    def n_features(self) -> int:
        return int(self.features.shape[-1])


def probe_task(seq_len: int, n_probe: int, seed: int, n_train: int = 1) -> data.TaskData:
    """The recall task (label = the first frame) with ``n_probe`` validation sequences.

    The validation split does not depend on ``n_train`` (each split has its own random
    stream), so probes before and after training see the same sequences.
    """
    return data.make_task("recall", seq_len=seq_len, n_train=n_train, n_val=n_probe, n_test=1,
                          seed=seed, data_dir=None)


def features_of(model: models.SequenceClassifier, split: data.SequenceSet) -> tf.Tensor:
    """The model's CNN features of a bank-indexed split, ``(N, T, F)``."""
    return model.indexed_features(split.index, split.bank)


def make_probe(seed: int, seq_len: int, units: int, n_probe: int) -> Probe:
    """Build the book's model for ``seed`` and compute CNN features of the probe sequences."""
    task = probe_task(seq_len, n_probe, seed)
    model = models.build_model(units=units, num_classes=task.num_classes, seed=seed)
    return Probe(seed, features_of(model, task.val), task.val.labels, model.head, model)


def recurrent_layer(activation: str, initializer: str, gain: float, seed: int, units: int,
                    n_features: int) -> keras.layers.SimpleRNN:
    """The SimpleRNN exactly as :func:`rnnbook.models.build_model` makes it for ``seed``
    (same seeded initializers), built for ``n_features`` inputs."""
    rnn = models.build_recurrent("simple_rnn", units, activation, initializer, gain, seed)
    rnn.build((None, None, int(n_features)))
    return rnn


# ----------------------------------------------------------------------------- measurements


def pre_activations(rnn, features) -> tuple[tf.Tensor, tf.Tensor]:
    """``(a, h)``: pre-activations ``a_t = x_t K + b + h_{t-1} R`` and states, ``(B, T, U)``."""
    states = diagnostics.unrolled_states(rnn, features)
    recurrent = tf.cast(rnn.cell.recurrent_kernel, states.dtype)
    previous = tf.concat([tf.zeros_like(states[:, :1]), states[:, :-1]], axis=1)
    pre = diagnostics.input_drive(rnn, features) + tf.einsum("btu,uv->btv", previous, recurrent)
    return pre, states


def slopes(rnn, pre) -> np.ndarray:
    """``s'(a)`` element-wise, as float64."""
    activation = rnn.cell.activation or (lambda a: a)
    with tf.GradientTape() as tape:
        tape.watch(pre)
        out = activation(pre)
    grad = tape.gradient(out, pre)
    return np.ones(pre.shape) if grad is None else grad.numpy().astype(np.float64)


def recurrent_gains_of(rnn) -> dict:
    """Largest singular value, spectral radius and root-mean-square singular value of R.

    The RMS singular value ``||R||_F / sqrt(U)`` is how much R stretches a *typical*
    vector; ``sigma_max`` is the worst case that Pascanu et al.'s bound uses.
    """
    spectrum = diagnostics.recurrent_spectrum(rnn)
    recurrent = np.asarray(rnn.cell.recurrent_kernel, np.float64)
    spectrum["rms_gain"] = float(np.linalg.norm(recurrent) / np.sqrt(recurrent.shape[0]))
    return spectrum


def measure(rnn, head, features, labels, slope_tol: float = 1e-3):
    """Gradient by lag, state statistics per step and a one-row summary of one configuration.

    Returns ``(lags, states, summary)``: ``lags`` from
    :func:`rnnbook.diagnostics.grad_norm_by_lag` plus ``rel_grad_norm`` (relative to lag
    0); ``states`` from :func:`rnnbook.diagnostics.state_stats` plus ``state_rms``
    (``||h_t|| / sqrt(U)``); ``summary`` a dict with the recurrent matrix's gains,
    gamma, the measured slopes and the fitted per-step gradient rate (lags >= 1) with
    the predictions it is compared with.
    """
    lags = diagnostics.grad_norm_by_lag(rnn, head, features, labels)
    lags["rel_grad_norm"] = lags["grad_norm"] / float(lags.loc[lags["lag"] == 0, "grad_norm"].iloc[0])
    states = diagnostics.state_stats(rnn, features, slope_tol=slope_tol)
    units = rnn.cell.units
    states["state_rms"] = states["state_norm"] / np.sqrt(units)

    pre, h = pre_activations(rnn, features)
    s = np.abs(slopes(rnn, pre))
    gains = recurrent_gains_of(rnn)
    try:
        gamma = diagnostics.activation_gamma(rnn.cell.activation)
    except ValueError:  # an activation without a known bound on its slope
        gamma = float("nan")
    mean_slope = float(s.mean())
    rms_slope = float(np.sqrt((s**2).mean()))
    rate = diagnostics.decay_rate(lags, min_lag=1)
    summary = {
        **gains,
        "gamma": gamma,
        "mean_slope": mean_slope,
        "rms_slope": rms_slope,
        "active_fraction": float((pre.numpy() > 0).mean()),
        "blocked_fraction": float((s <= slope_tol).mean()),
        "dead_units": float((s <= slope_tol).all(axis=(0, 1)).mean()),
        "decay_rate": rate,
        "pascanu_bound": gains["sigma_max"] * gamma,
        "effective_bound": gains["sigma_max"] * mean_slope,
        "typical_rate": gains["rms_gain"] * rms_slope,
        "grad_lag0": float(lags["grad_norm"].iloc[0]),
        "grad_last_rel": float(lags["rel_grad_norm"].iloc[-1]),
        "state_rms_last": float(states["state_rms"].iloc[-1]),
        "state_max_abs": float(states["state_max_abs"].max()),
        "finite": bool(np.isfinite(h.numpy()).all() and np.isfinite(lags["grad_norm"]).all()),
    }
    return lags, states, summary


def grid(activations, initializers, gains, seeds, seq_len: int, units: int, n_probe: int,
         input_scales=(1.0,), probes: dict | None = None) -> dict[str, pd.DataFrame]:
    """Measure every activation x initializer x gain x input scale x seed at initialisation.

    The CNN features of each seed's probe are multiplied by the input scale (1 = the
    real features). Returns ``{"lags", "states", "summary"}``, each with the columns
    ``activation``, ``initializer``, ``gain``, ``input_scale``, ``seed``, ``config``
    (:func:`config_label`) and ``row`` (config and gain, for heatmaps).
    ``probes`` (seed -> :class:`Probe`) are reused when given and filled in otherwise.
    """
    runtime.configure()
    probes = {} if probes is None else probes
    out = {"lags": [], "states": [], "summary": []}
    for seed in seeds:
        if seed not in probes:
            probes[seed] = make_probe(seed, seq_len, units, n_probe)
        probe = probes[seed]
        for activation in activations:
            for initializer in initializers:
                for gain in gains:
                    rnn = recurrent_layer(activation, initializer, gain, seed, units, probe.n_features)
                    for scale in input_scales:
                        keys = {"activation": activation, "initializer": initializer, "gain": float(gain),
                                "input_scale": float(scale), "seed": int(seed),
                                "config": config_label(activation, initializer),
                                "row": f"{config_label(activation, initializer)}, gain {gain:g}"}
                        lags, states, summary = measure(rnn, probe.head, probe.features * float(scale),
                                                        probe.labels)
                        out["lags"].append(lags.assign(**keys))
                        out["states"].append(states.assign(**keys))
                        out["summary"].append({**keys, **summary})
    return {"lags": pd.concat(out["lags"], ignore_index=True),
            "states": pd.concat(out["states"], ignore_index=True),
            "summary": pd.DataFrame(out["summary"])}


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
    pre, h = pre_activations(rnn, features)
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
        if seed not in probes:
            probes[seed] = make_probe(seed, seq_len, units, n_probe)
        probe = probes[seed]
        for activation in activations:
            rnn = recurrent_layer(activation, initializer, gain, seed, units, probe.n_features)
            rows.append({"activation": activation, "label": activation_label(activation), "seed": int(seed),
                         **sign_stats(rnn, probe.features)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- short training


def short_training(activation: str, initializer: str, gain: float, seed: int, seq_len: int, units: int,
                   n_train: int, n_probe: int, epochs: int, batch_size: int,
                   learning_rate: float) -> dict:
    """Train one configuration briefly (Adam, no clipping) and measure it before and after.

    The recall task's training split trains; its validation split is the probe. Returns a
    dict with ``lags`` (before and after, column ``stage``), ``summary`` (two rows),
    ``val_acc`` after training, ``chance``, ``diverged`` (a non-finite loss or gradient
    was met; such steps are skipped, never applied), ``steps``, ``drive_std`` before and
    after (the scale of the CNN's input drive) and ``seconds``.
    """
    start = time.perf_counter()
    runtime.seed_everything(seed)
    task = probe_task(seq_len, n_probe, seed, n_train=n_train)
    model = models.build_model(units=units, activation=activation, recurrent_initializer=initializer,
                               recurrent_gain=gain, num_classes=task.num_classes, seed=seed)
    keys = {"activation": activation, "initializer": initializer, "gain": float(gain), "seed": int(seed),
            "config": config_label(activation, initializer),
            "row": f"{config_label(activation, initializer)}, gain {gain:g}"}

    def snapshot(stage):
        feats = features_of(model, task.val)
        lags, _, summary = measure(model.rnn, model.head, feats, task.val.labels)
        drive = diagnostics.input_drive_stats(model.rnn, feats)
        return (lags.assign(stage=stage, **keys),
                {**keys, "stage": stage, **summary, "drive_std": drive["drive_std"],
                 "feature_mean": drive["feature_mean"]})

    lags_before, summary_before = snapshot("at initialisation")
    optimizer = clipping.make_optimizer("adam", learning_rate)
    stepper = training.Stepper(model, optimizer, indexed=True, bank=task.train.bank)
    rng = np.random.default_rng([seed, 7])
    diverged, steps, losses = False, 0, []
    for _ in range(epochs):
        order = rng.permutation(len(task.train))
        for b in range(0, len(order), batch_size):
            rows = np.sort(order[b:b + batch_size])
            stats = stepper.step(task.train.index[rows], task.train.labels[rows])
            steps += 1
            losses.append(float(stats["loss"]))
            if not (np.isfinite(stats["loss"]) and np.isfinite(stats["grad_norm"])):
                diverged = True
    lags_after, summary_after = snapshot("after training")
    evaluator = training.Stepper(model, None, indexed=True, bank=task.val.bank)
    return {
        "lags": pd.concat([lags_before, lags_after], ignore_index=True),
        "summary": pd.DataFrame([summary_before, summary_after]),
        "val_acc": evaluator.accuracy(task.val),
        "chance": float(np.bincount(task.val.labels).max() / len(task.val)),
        "diverged": diverged,
        "steps": steps,
        "first_loss": losses[0] if losses else float("nan"),
        "last_loss": losses[-1] if losses else float("nan"),
        "seconds": time.perf_counter() - start,
    }


def training_grid(activations, initializers, gains, seeds, **kwargs) -> dict[str, pd.DataFrame]:
    """:func:`short_training` for every configuration x seed; ``{"lags", "summary", "runs"}``."""
    lags, summaries, runs = [], [], []
    for activation in activations:
        for initializer in initializers:
            for gain in gains:
                for seed in seeds:
                    r = short_training(activation, initializer, gain, seed, **kwargs)
                    lags.append(r["lags"])
                    summaries.append(r["summary"])
                    runs.append({"activation": activation, "initializer": initializer, "gain": float(gain),
                                 "seed": int(seed), "config": config_label(activation, initializer),
                                 **{k: r[k] for k in ("val_acc", "chance", "diverged", "steps",
                                                      "first_loss", "last_loss", "seconds")}})
    return {"lags": pd.concat(lags, ignore_index=True),
            "summary": pd.concat(summaries, ignore_index=True),
            "runs": pd.DataFrame(runs)}


# ----------------------------------------------------------------------------- figures
# Chapter figures, drawn with seaborn in the book's style (rnnbook.plots). Each returns a
# closed matplotlib Figure for ``myst_nb.glue``.


def _new_figure(nrows, ncols, width, height, **kwargs):
    import matplotlib.pyplot as plt

    from rnnbook import plots

    plots.set_style()
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, **kwargs)
    return fig, axes


def _close(fig):
    import matplotlib.pyplot as plt

    fig.tight_layout()
    plt.close(fig)
    return fig


def _plain_log_ticks(ax, axis="y", subs=None):
    """Tick labels like 0.6 and 10 rather than 6x10^-1 on a log axis; ``subs`` (e.g.
    ``(1, 2, 5)``) puts major ticks at those multiples of each power of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    target = ax.yaxis if axis == "y" else ax.xaxis
    if subs is not None:
        target.set_major_locator(LogLocator(base=10, subs=subs, numticks=30))
        target.set_minor_locator(NullLocator())
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _gain_palette(gains):
    import seaborn as sns

    gains = sorted(set(float(g) for g in gains))
    colors = sns.color_palette("flare", len(gains)) if len(gains) > 1 else [sns.color_palette("flare", 3)[1]]
    return {gain_label(g): c for g, c in zip(gains, colors)}


def _with_gain_label(df):
    return df.assign(gain_label=df["gain"].map(gain_label))


def fig_activations(curves: pd.DataFrame):
    """Activations (left) and their derivatives (right), from :func:`activation_curves`."""
    import seaborn as sns

    from rnnbook import plots

    fig, axes = _new_figure(1, 2, 9.0, 3.6)
    pal = plots.palette(curves["activation"].unique())
    for ax, column, label in zip(axes[0], ("value", "slope"), ("s(x)", "slope s'(x)")):
        sns.lineplot(data=curves, x="x", y=column, hue="activation", palette=pal, ax=ax, lw=2)
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
    return _close(fig)


def fig_state_growth(states: pd.DataFrame):
    """Top: RMS hidden state ``||h_t|| / sqrt(U)`` against t, one panel per activation, one
    line per gain (band: 95 % CI over seeds). Bottom: share of dead units (off for every
    probe sequence) at each step."""
    import seaborn as sns

    acts = list(dict.fromkeys(states["activation"]))
    df = _with_gain_label(states)
    pal = _gain_palette(df["gain"])
    fig, axes = _new_figure(2, len(acts), 4.2 * len(acts), 6.6, sharex=True)
    for j, act in enumerate(acts):
        part = df[df["activation"] == act]
        ax = axes[0, j]
        sns.lineplot(data=part, x="t", y="state_rms", hue="gain_label", palette=pal, errorbar=("ci", 95),
                     n_boot=300, seed=0, ax=ax, marker="o", markersize=3)
        wide = part["state_rms"].max() > 5 * max(part["state_rms"].min(), 1e-12)
        if wide:  # a log axis only where the state grows by orders of magnitude
            ax.set_yscale("log")
            _plain_log_ticks(ax)
        ax.axhline(1.0, ls="--", lw=1, color="0.35")
        ax.set_title(f"{activation_label(act)}: size of the state" + (" (log scale)" if wide else ""))
        ax.set_ylabel("RMS state ‖h_t‖/√U" if j == 0 else "")
        ax.legend(title="recurrent gain", fontsize=8) if j == len(acts) - 1 else ax.get_legend().remove()
        ax = axes[1, j]
        sns.lineplot(data=part, x="t", y="dead_units", hue="gain_label", palette=pal, errorbar=("ci", 95),
                     n_boot=300, seed=0, ax=ax, marker="o", markersize=3, legend=False)
        ax.set_ylim(-0.02, max(0.3, float(df["dead_units"].max()) * 1.15))
        ax.set_title(f"{activation_label(act)}: dead units")
        ax.set_ylabel("share of units off for every sequence" if j == 0 else "")
        ax.set_xlabel("time step t")
    return _close(fig)


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
    """Left: share of negative / zero / positive entries of the CNN features, the input
    drive, the recurrent drive and the state. Right: share of steps where a unit's state
    goes down, stays or goes up. Bars: mean over seeds; ticks: range over seeds."""
    import seaborn as sns

    shares, moves = sign_long(signs)
    fig, axes = _new_figure(1, 2, 11.0, 4.4, gridspec_kw={"width_ratios": [2.2, 1]})
    ax = axes[0, 0]
    sns.barplot(data=shares, y="quantity", x="share", hue="sign", palette=SIGN_COLORS,
                hue_order=["negative", "zero", "positive"], errorbar=("pi", 100), ax=ax, orient="h")
    ax.axvline(0.5, ls="--", lw=1, color="0.35")
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("share of entries")
    ax.set_ylabel("")
    ax.set_title("signs of what enters and leaves the units")
    ax.legend(title=None, loc="lower right", fontsize=8, frameon=True)
    ax = axes[0, 1]
    sns.barplot(data=moves, x="activation", y="share", hue="direction", palette=SIGN_COLORS,
                hue_order=["down", "unchanged", "up"], errorbar=("pi", 100), ax=ax)
    ax.set_ylim(0, 1.0)
    ax.set_ylabel("share of steps, h_t vs h_{t-1}")
    ax.set_xlabel("")
    ax.set_title("does the state go down?")
    ax.legend(title=None, fontsize=8)
    return _close(fig)


def _order(values, preferred):
    values = list(dict.fromkeys(values))
    return [v for v in preferred if v in values] + [v for v in values if v not in preferred]


def fig_grad_vs_lag(lags: pd.DataFrame, value: str = "rel_grad_norm"):
    """Relative gradient norm against lag on a log axis: rows activation, columns recurrent
    initializer, one line per gain, 95 % CI band over seeds."""
    import seaborn as sns

    acts = list(dict.fromkeys(lags["activation"]))
    inits = list(dict.fromkeys(lags["initializer"]))
    df = _with_gain_label(lags)
    pal = _gain_palette(df["gain"])
    fig, axes = _new_figure(len(acts), len(inits), 3.6 * len(inits), 3.0 * len(acts) + 0.4,
                            sharex=True, sharey=True)
    positive = df.loc[df[value] > 0, value]
    lo = max(float(positive.min()) if len(positive) else 1e-12, 1e-12)
    hi = float(np.nanmax(df[value].replace(np.inf, np.nan))) if len(df) else 1.0
    for i, act in enumerate(acts):
        for j, init in enumerate(inits):
            ax = axes[i, j]
            part = df[(df["activation"] == act) & (df["initializer"] == init)]
            part = part[part[value] > 0]
            sns.lineplot(data=part, x="lag", y=value, hue="gain_label", palette=pal, errorbar=("ci", 95),
                         n_boot=300, seed=0, ax=ax, legend=(i == 0 and j == len(inits) - 1))
            ax.set_yscale("log")
            ax.set_ylim(lo / 2, max(hi * 2, 2.0))
            ax.axhline(1.0, ls="--", lw=1, color="0.35")
            ax.set_title(config_label(act, init), fontsize=10)
            ax.set_xlabel("lag k" if i == len(acts) - 1 else "")
            ax.set_ylabel("‖∂L/∂h_{T-k}‖ / ‖∂L/∂h_T‖" if j == 0 else "")
    if axes[0, -1].get_legend() is not None:
        sns.move_legend(axes[0, -1], "upper left", bbox_to_anchor=(1.02, 1.0), title="recurrent gain")
    return _close(fig)


def row_order(df: pd.DataFrame) -> list[str]:
    """``row`` labels ordered by activation and initializer (as they first appear), then gain."""
    rank = {c: {v: k for k, v in enumerate(dict.fromkeys(df[c]))} for c in ("activation", "initializer")}
    keys = df[["activation", "initializer", "gain", "row"]].drop_duplicates()
    keys = keys.assign(a=keys["activation"].map(rank["activation"]), i=keys["initializer"].map(rank["initializer"]))
    return list(keys.sort_values(["a", "i", "gain"])["row"])


def fig_grad_heatmap(lags: pd.DataFrame, value: str = "rel_grad_norm"):
    """:func:`rnnbook.plots.lag_heatmap` of the relative gradient (mean over seeds), one row
    per configuration and gain."""
    from rnnbook import plots

    rows = list(row_order(lags))
    fig, axes = _new_figure(1, 1, 8.0, 0.27 * len(rows) + 1.6)
    plots.lag_heatmap(lags, row="row", value=value, ax=axes[0, 0], row_order=rows,
                      cbar_label="‖∂L/∂h_{T-k}‖ / ‖∂L/∂h_T‖ (log scale)")
    axes[0, 0].set_ylabel("")
    axes[0, 0].tick_params(axis="y", labelsize=8)
    return _close(fig)


def fig_pascanu(summary: pd.DataFrame):
    """Measured per-step gradient rate against Pascanu et al.'s bound ``sigma_max * gamma``
    (left) and against the typical rate ``rms singular value * rms slope`` (right).
    One point per configuration and seed; the diagonal is equality."""
    import seaborn as sns

    from rnnbook import plots

    df = summary[np.isfinite(summary["decay_rate"]) & (summary["decay_rate"] > 0)].copy()
    df["recurrent gain"] = df["gain"].map(gain_label)
    df = df.rename(columns={"config": "configuration"})
    pal = plots.palette(df["configuration"].unique())
    fig, axes = _new_figure(1, 2, 11.0, 4.6)
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
                        style="recurrent gain", s=45, alpha=0.85, ax=ax, legend=(k == 1))
        ax.set_xscale("log")
        ax.set_yscale("log")
        subs = (1, 2, 5) if hi / lo < 100 else None
        _plain_log_ticks(ax, "x", subs)
        _plain_log_ticks(ax, "y", subs)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(label)
        ax.set_ylabel("measured per-step rate of ‖∂L/∂h_{T-k}‖" if k == 0 else "")
    axes[0, 0].set_title("the worst-case bound")
    axes[0, 0].text(lo * 1.1, hi / 1.15, "above the diagonal: forbidden by the bound", fontsize=8, va="top")
    axes[0, 1].set_title("the typical rate")
    axes[0, 1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _close(fig)


def fig_after_training(lags: pd.DataFrame, summary: pd.DataFrame):
    """Top: relative gradient against lag after the short training (solid) and at
    initialisation (dashed), one panel per trained gain. Bottom: the per-step rate
    before and after, per configuration (bars: mean, ticks: range over seeds)."""
    import seaborn as sns

    from rnnbook import plots

    gains = sorted(lags["gain"].unique())
    pal = plots.palette(lags["config"].unique())
    stages = ["at initialisation", "after training"]
    fig, axes = _new_figure(2, len(gains), 5.6 * len(gains), 8.0)
    df = lags[lags["rel_grad_norm"] > 0].rename(columns={"config": "configuration"})
    for j, gain in enumerate(gains):
        ax = axes[0, j]
        part = df[df["gain"] == gain]
        sns.lineplot(data=part, x="lag", y="rel_grad_norm", hue="configuration", palette=pal, style="stage",
                     style_order=stages[::-1], errorbar=("ci", 95), n_boot=300, seed=0, ax=ax,
                     legend=(j == len(gains) - 1))
        ax.set_yscale("log")
        ax.axhline(1.0, ls="--", lw=1, color="0.35")
        ax.set_title(f"recurrent gain {gain:g} at initialisation")
        ax.set_xlabel("lag k")
        ax.set_ylabel("‖∂L/∂h_{T-k}‖ / ‖∂L/∂h_T‖" if j == 0 else "")
        ax = axes[1, j]
        s = summary[(summary["gain"] == gain) & np.isfinite(summary["decay_rate"])]
        sns.barplot(data=s, y="config", x="decay_rate", hue="stage", hue_order=stages,
                    palette={"at initialisation": "0.7", "after training": "#029e73"},
                    errorbar=("pi", 100), ax=ax, orient="h")
        ax.axvline(1.0, ls="--", lw=1, color="0.2")
        ax.set_xlabel("per-step rate of the gradient norm (1 = the edge)")
        ax.set_ylabel("")
        if j == len(gains) - 1:
            sns.move_legend(ax, "center left", bbox_to_anchor=(1.02, 0.5), title=None, fontsize=8)
        else:
            ax.get_legend().remove()
    legend = axes[0, -1].get_legend()
    if legend is not None:
        sns.move_legend(axes[0, -1], "center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, title=None)
    return _close(fig)


def fig_input_scale(summary: pd.DataFrame, marks: dict | None = None):
    """Against the factor multiplying the CNN features: the per-step gradient rate, the mean
    slope ``|s'(a)|`` and the RMS state at the last step, per activation (95 % CI over
    seeds). ``marks`` ({label: scale}) draws labelled vertical lines."""
    import seaborn as sns

    from rnnbook import plots

    df = summary.assign(label=summary["activation"].map(activation_label))
    pal = plots.palette(df["label"].unique())
    fig, axes = _new_figure(1, 3, 13.0, 3.9)
    panels = (("decay_rate", "per-step rate of ‖∂L/∂h_{T-k}‖", False),
              ("mean_slope", "mean slope |s'(a)|", False),
              ("state_rms_last", "RMS state ‖h_T‖/√U", True))
    for k, (ax, (column, label, logy)) in enumerate(zip(axes[0], panels)):
        part = df[np.isfinite(df[column])]
        sns.lineplot(data=part, x="input_scale", y=column, hue="label", palette=pal, errorbar=("ci", 95),
                     n_boot=300, seed=0, marker="o", ax=ax, legend=(k == 0))
        ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("input scale (× the CNN features at initialisation)")
        ax.set_ylabel(label)
        for name, x in (marks or {}).items():
            if np.isfinite(x):
                ax.axvline(x, ls=":", lw=1.2, color="0.3")
                ax.text(x, 0.98, f" {name}", transform=ax.get_xaxis_transform(), fontsize=7, va="top",
                        rotation=90, ha="right")
    axes[0, 0].axhline(1.0, ls="--", lw=1, color="0.5")
    axes[0, 0].legend(title=None)
    return _close(fig)
