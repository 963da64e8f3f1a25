"""The measurements at initialisation that the chapters "Why tanh is the default" and
"Vanishing and exploding gradients" share: probes, the recurrent layer, one measurement,
a grid of them.

A *probe* is the model's CNN, initialised for one seed, applied to held-out sequences
(the validation split of the recall task); its features feed every recurrent
configuration of that seed, so configurations differ only in the recurrent layer::

    probe = make_probe(seed=0, seq_len=20, units=64, n_probe=256)
    rnn = recurrent_layer("relu", "identity", 1.0, seed=0, units=64, n_features=probe.n_features)
    lags, states, summary = measure(rnn, probe.head, probe.features, probe.labels)
"""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from rnnbook import data, diagnostics, models, runtime
from rnnbook.experiments.common import config_label

#: A unit whose slope ``|s'(a)|`` is at most this passes (almost) no gradient: "off" or "blocked".
SLOPE_TOL = 1e-3


def gain_label(gain: float) -> str:
    """``1.5`` -> ``"gain 1.5"`` (legend entries)."""
    return f"gain {gain:g}"


def row_label(activation: str, initializer: str, gain: float) -> str:
    """One heatmap row: ``"ReLU + identity (IRNN), gain 1"``."""
    return f"{config_label(activation, initializer)}, gain {gain:g}"


def config_keys(activation: str, initializer: str, gain: float, seed: int, **extra) -> dict:
    """The columns that name one measured configuration in every frame (``extra`` ones, such
    as ``input_scale``, before ``seed``)."""
    return {"activation": activation, "initializer": initializer, "gain": float(gain), **extra,
            "seed": int(seed), "config": config_label(activation, initializer),
            "row": row_label(activation, initializer, gain)}


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


def probe_for(probes: dict, seed: int, seq_len: int, units: int, n_probe: int) -> Probe:
    """The probe of ``seed`` from ``probes`` (seed -> :class:`Probe`), made and stored if absent."""
    if seed not in probes:
        probes[seed] = make_probe(seed, seq_len, units, n_probe)
    return probes[seed]


def recurrent_layer(activation: str, initializer: str, gain: float, seed: int, units: int,
                    n_features: int) -> keras.layers.SimpleRNN:
    """The SimpleRNN exactly as :func:`rnnbook.models.build_model` makes it for ``seed``
    (same seeded initializers), built for ``n_features`` inputs."""
    rnn = models.build_recurrent("simple_rnn", units, activation, initializer, gain, seed)
    rnn.build((None, None, int(n_features)))
    return rnn


def pre_activations(rnn, features) -> tuple[tf.Tensor, tf.Tensor]:
    """``(a, h)``: pre-activations ``a_t = x_t K + b + h_{t-1} R`` and states, ``(B, T, U)``."""
    states = diagnostics.unrolled_states(rnn, features)
    recurrent = tf.cast(rnn.cell.recurrent_kernel, states.dtype)
    previous = tf.concat([tf.zeros_like(states[:, :1]), states[:, :-1]], axis=1)
    pre = diagnostics.input_drive(rnn, features) + tf.einsum("btu,uv->btv", previous, recurrent)
    return pre, states


def recurrent_gains_of(rnn) -> dict:
    """Largest singular value, spectral radius and root-mean-square singular value of R.

    The RMS singular value ``||R||_F / sqrt(U)`` is how much R stretches a *typical*
    vector; ``sigma_max`` is the worst case that Pascanu et al.'s bound uses.
    """
    spectrum = diagnostics.recurrent_spectrum(rnn)
    recurrent = np.asarray(rnn.cell.recurrent_kernel, np.float64)
    spectrum["rms_gain"] = float(np.linalg.norm(recurrent) / np.sqrt(recurrent.shape[0]))
    return spectrum


def measure(rnn, head, features, labels, slope_tol: float = SLOPE_TOL):
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
    states["state_rms"] = states["state_norm"] / np.sqrt(rnn.cell.units)

    pre, h = pre_activations(rnn, features)
    s = np.abs(diagnostics.activation_slopes(rnn, pre).astype(np.float64))
    gains = recurrent_gains_of(rnn)
    try:
        gamma = diagnostics.activation_gamma(rnn.cell.activation)
    except ValueError:  # an activation without a known bound on its slope
        gamma = float("nan")
    mean_slope = float(s.mean())
    rms_slope = float(np.sqrt((s**2).mean()))
    summary = {
        **gains,
        "gamma": gamma,
        "mean_slope": mean_slope,
        "rms_slope": rms_slope,
        "active_fraction": float((pre.numpy() > 0).mean()),
        "blocked_fraction": float((s <= slope_tol).mean()),
        "dead_units": float((s <= slope_tol).all(axis=(0, 1)).mean()),
        "decay_rate": diagnostics.decay_rate(lags, min_lag=1),
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
    real features). Returns ``{"lags", "states", "summary"}``, each with the columns of
    :func:`config_keys` and ``input_scale``. ``probes`` (seed -> :class:`Probe`) are
    reused when given and filled in otherwise.
    """
    runtime.configure()
    probes = {} if probes is None else probes
    out = {"lags": [], "states": [], "summary": []}
    for seed in seeds:
        probe = probe_for(probes, seed, seq_len, units, n_probe)
        for activation in activations:
            for initializer in initializers:
                for gain in gains:
                    rnn = recurrent_layer(activation, initializer, gain, seed, units, probe.n_features)
                    for scale in input_scales:
                        keys = config_keys(activation, initializer, gain, seed, input_scale=float(scale))
                        lags, states, summary = measure(rnn, probe.head, probe.features * float(scale),
                                                        probe.labels)
                        out["lags"].append(lags.assign(**keys))
                        out["states"].append(states.assign(**keys))
                        out["summary"].append({**keys, **summary})
    return {"lags": pd.concat(out["lags"], ignore_index=True),
            "states": pd.concat(out["states"], ignore_index=True),
            "summary": pd.DataFrame(out["summary"])}


# ----------------------------------------------------------------------------- figure helpers


def gain_palette(gains) -> dict:
    """``{gain label: colour}`` on seaborn's "flare" ramp, in increasing gain."""
    import seaborn as sns

    gains = sorted(set(float(g) for g in gains))
    colors = sns.color_palette("flare", len(gains)) if len(gains) > 1 else [sns.color_palette("flare", 3)[1]]
    return {gain_label(g): c for g, c in zip(gains, colors)}


def with_gain_label(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a ``gain_label`` column for seaborn's ``hue``."""
    return df.assign(gain_label=df["gain"].map(gain_label))


def paired_panels(n: int, col_width: float, pair_height: float, max_cols: int = 2, **subplots):
    """``(fig, pairs)``: ``n`` panels of two stacked axes (top, bottom), at most ``max_cols``
    side by side and wrapping onto further rows, so a figure of many panels stays within the
    book's content width; unused axes are hidden. ``subplots`` go to
    :func:`rnnbook.plots.grid_figure` (e.g. ``sharex=True``)."""
    from rnnbook import plots

    ncols = max(1, min(n, max_cols))
    blocks = -(-n // ncols)
    fig, axes = plots.grid_figure(2 * blocks, ncols, col_width * ncols, pair_height * blocks, **subplots)
    pairs = [(axes[2 * (k // ncols), k % ncols], axes[2 * (k // ncols) + 1, k % ncols]) for k in range(n)]
    for k in range(n, blocks * ncols):
        axes[2 * (k // ncols), k % ncols].set_visible(False)
        axes[2 * (k // ncols) + 1, k % ncols].set_visible(False)
    return fig, pairs
