"""What several chapters share: configuration keys and their labels, the library facts the
prose quotes, statistics with intervals, and the book's decision rules and constants.

A recurrent configuration is named by a short key:

* ``"<activation>-<recurrent initializer>"`` for a Keras ``SimpleRNN``, e.g.
  ``"tanh-orthogonal"`` (the Keras default), ``"relu-identity"`` (the IRNN of Le et al.
  2015), ``"relu-glorot_uniform"`` (like TF1's ``BasicRNNCell``) or ``"tanh-normal"``
  (recurrent weights N(0, 0.1), Pascanu et al. 2013's "basic tanh", label ``"tanh + N(0, 0.1)"``);
* ``"gru"`` or ``"lstm"`` for the gated cells (Keras defaults), ``"lstm-chrono"`` for an LSTM
  with the chrono biases of Tallec & Ollivier (2018) (label ``"LSTM (chrono)"``).

Example:
    >>> parse_rnn_config("relu-identity").label
    'ReLU + identity (IRNN)'
    >>> config_label("tanh", "orthogonal")
    'tanh + orthogonal'
    >>> wilson_interval(3, 4)
    (0.75, 0.3006..., 0.9544...)
"""
from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Iterable

import numpy as np
import pandas as pd

from rnnbook.choices import GATED_CONFIGS, NORMAL_STD, RECURRENT_INITIALIZERS
from rnnbook.verdicts import chance_bar  # noqa: F401 (the chapters' name for it)

#: Pascanu, Mikolov & Bengio (2013, section 3.2): thresholds "from half to ten times" the
#: average gradient norm over a sufficiently large number of updates can still converge.
PASCANU_BAND = (0.5, 10.0)
#: A per-step gradient factor inside this band counts as "near the edge"; below it the
#: gradient vanishes, above it it explodes.
EDGE_BAND = (0.95, 1.05)
#: The gated cells, by key.
GATED = ("gru", "lstm")
#: Role name -> configuration key: the prose speaks of roles, so it holds whatever the grid is.
ROLES = {"tanh": "tanh-orthogonal", "relu": "relu-orthogonal", "irnn": "relu-identity",
         "tf1": "relu-glorot_uniform", "gru": "gru", "lstm": "lstm"}
#: Confidence level of every interval in the book.
LEVEL = 0.95

_ACTIVATION_DISPLAY = {"relu": "ReLU", "elu": "ELU", "selu": "SELU", "gelu": "GELU"}


class ExperimentError(ValueError):
    """A configuration key or grid argument the experiments cannot use."""


# ----------------------------------------------------------------------------- labels


def activation_label(name: str) -> str:
    """``"relu"`` -> ``"ReLU"``, ``"tanh"`` -> ``"tanh"`` (display names)."""
    return _ACTIVATION_DISPLAY.get(name, name)


def config_label(activation: str, initializer: str, cell: str = "simple_rnn") -> str:
    """The book's one name of a configuration, used in every legend and table
    (``"ReLU + identity (IRNN)"``, ``"tanh + orthogonal"``, ``"GRU"``)."""
    if cell != "simple_rnn":
        return cell.upper()
    shown = f"N(0, {NORMAL_STD:g})" if initializer == "normal" else initializer
    label = f"{activation_label(activation)} + {shown}"
    if activation == "relu" and initializer == "identity":
        label += " (IRNN)"
    return label


@dataclasses.dataclass(frozen=True)
class RnnSpec:
    """One recurrent configuration: cell, activation and recurrent initialiser."""

    key: str
    cell: str
    activation: str
    recurrent_initializer: str
    lstm_bias_init: str = "keras"

    @property
    def label(self) -> str:
        """The label used in legends and tables (:func:`config_label`)."""
        label = config_label(self.activation, self.recurrent_initializer, self.cell)
        return f"{label} (chrono)" if self.lstm_bias_init == "chrono" else label

    def apply(self, config, **changes):
        """``config`` (a :class:`rnnbook.training.TrainConfig`) with this cell, activation,
        initialiser and LSTM biases (and any other ``changes``)."""
        return dataclasses.replace(config, **{"cell": self.cell, "activation": self.activation,
                                              "recurrent_initializer": self.recurrent_initializer,
                                              "lstm_bias_init": self.lstm_bias_init, **changes})


def parse_rnn_config(key: str) -> RnnSpec:
    """The :class:`RnnSpec` of a key such as ``"relu-identity"``, ``"gru"``, ``"lstm"`` or ``"lstm-chrono"``."""
    if not isinstance(key, str):
        raise ExperimentError(f"rnn config {key!r} must be a string such as 'tanh-orthogonal' or 'gru'")
    k = key.strip().lower()
    if k in GATED_CONFIGS:
        cell, _, bias = k.partition("-")
        return RnnSpec(k, cell, "tanh", "orthogonal", bias or "keras")
    act, sep, init = k.partition("-")
    if not sep or init not in RECURRENT_INITIALIZERS or not act:
        raise ExperimentError(
            f"rnn config {key!r} is not '<activation>-<initializer>' (initializer one of "
            f"{', '.join(RECURRENT_INITIALIZERS)}), or one of {', '.join(GATED_CONFIGS)}; e.g. 'relu-identity'")
    from rnnbook import models

    try:
        models.check_activation(act)
    except models.ModelError as exc:
        raise ExperimentError(f"rnn config {key!r}: {exc}") from None
    return RnnSpec(k, "simple_rnn", act, init)


def specs(keys: Iterable[str]) -> list[RnnSpec]:
    """The specs of ``keys`` (at least one)."""
    out = [parse_rnn_config(k) for k in keys]
    if not out:
        raise ExperimentError("no recurrent configuration given")
    return out


def role_label(role: str) -> str:
    """The label of a role of :data:`ROLES` (``"irnn"`` -> ``"ReLU + identity (IRNN)"``)."""
    return parse_rnn_config(ROLES[role]).label


# ----------------------------------------------------------------------------- library facts


def keras_simple_rnn_defaults() -> dict:
    """Defaults of the installed ``keras.layers.SimpleRNN``, read from its signature."""
    import keras

    signature = inspect.signature(keras.layers.SimpleRNN.__init__)
    return {name: p.default for name, p in signature.parameters.items()
            if p.default is not inspect.Parameter.empty}


def tf1_cell_status() -> str:
    """Whether TF1's ``BasicRNNCell`` can still be built in the installed TensorFlow (Markdown)."""
    import tensorflow as tf

    try:
        tf.compat.v1.nn.rnn_cell.BasicRNNCell(4)
    except Exception as exc:  # noqa: BLE001 - AttributeError/ImportError/ValueError by version
        message = str(exc).replace("`", "").strip().rstrip(".") or type(exc).__name__
        return f"not available in TensorFlow {tf.__version__}: {message}"
    return f"available in TensorFlow {tf.__version__}, but deprecated"


# ----------------------------------------------------------------------------- statistics


def mean_ci(values, level: float = LEVEL) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval of the finite ``values`` (NaN bounds for fewer
    than two).

    Example:
        >>> mean_ci([1.0, 2.0, 3.0])
        (2.0, -0.484..., 4.484...)
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if x.size < 2:
        return (mean, math.nan, math.nan)
    from scipy import stats

    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return (mean, mean - half, mean + half)


def wilson_interval(k: int, n: int, level: float = LEVEL) -> tuple[float, float, float]:
    """Share ``k / n`` and its Wilson score interval (NaN for ``n = 0``), which always contains
    the share (at ``k = n`` rounding could put the upper end a hair below 1)."""
    if n <= 0:
        return (math.nan, math.nan, math.nan)
    from scipy import stats

    z = float(stats.norm.ppf(0.5 + level / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (p, min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)))


def summarise(runs: pd.DataFrame, by, value: str = "accuracy") -> pd.DataFrame:
    """One row per group: runs, diverged runs, mean ``value`` with its 95 % CI, min, max, chance."""
    by = [by] if isinstance(by, str) else list(by)
    rows = []
    for keys, part in runs.groupby(by, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        mean, lo, hi = mean_ci(part[value])
        rows.append({**dict(zip(by, keys)), "n_runs": len(part), "n_diverged": int(part["diverged"].sum()),
                     "share_diverged": float(part["diverged"].mean()), "mean": mean, "ci_lo": lo, "ci_hi": hi,
                     "min": float(part[value].min()), "max": float(part[value].max()),
                     "chance": float(part["chance"].mean())})
    return pd.DataFrame(rows)


def value_at(summary: pd.DataFrame, label: str, column: str = "mean", **where) -> float:
    """``column`` of the summary row of ``label`` (and ``where``), NaN if absent."""
    mask = summary["label"] == label
    for k, v in where.items():
        mask &= summary[k] == v
    part = summary[mask]
    return float(part[column].iloc[0]) if len(part) else math.nan


def failed(runs: pd.DataFrame) -> pd.Series:
    """The book's one failure rule (:func:`rnnbook.verdicts.failure_reason`): diverged (NaN/Inf,
    non-finite weights or loss blow-up, or the run raised), dead (hidden state or recurrent
    gradient identically zero over the last checks), or never above chance."""
    return failure_reasons(runs).notna()


def failure_reasons(runs: pd.DataFrame) -> pd.Series:
    """Each run's failure reason (:data:`rnnbook.verdicts.FAILURES`) or None."""
    from rnnbook import verdicts

    flags = runs["failed"] if "failed" in runs else pd.Series(False, index=runs.index)
    return pd.Series([verdicts.failure_reason({**r, "failed": bool(f)}) for r, f in zip(runs["record"], flags)],
                     index=runs.index, dtype=object)


def outcomes(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` (from :func:`rnnbook.sweeps.run_sweep`) with the criterion's columns: ``outcome``,
    ``updates``, ``updates_to_success``, ``sequences_seen``, ``success``, ``censored``, ``diverged``, ``at_chance`` (censored and
    still at chance) and ``ever_above_chance`` (some check beat :func:`chance_bar`); a run that
    raised counts as failed (neither success nor censored)."""
    rec = runs["record"]
    out = runs.assign(
        outcome=[r.get("outcome", "failed") for r in rec],
        updates=[int(r.get("updates", 0)) for r in rec],
        updates_to_success=[r.get("updates_to_success") or np.nan for r in rec],
        sequences_seen=[int(r.get("sequences_seen", 0)) for r in rec])
    out = out.assign(success=out["outcome"] == "success", censored=out["outcome"] == "censored",
                     diverged=out["outcome"] == "diverged")
    last = np.array([(r.get("check_val_acc") or [math.nan])[-1] for r in rec], dtype=float)
    bars = np.broadcast_to(chance_bar(out["chance"].to_numpy(float), out["n_val"].to_numpy(float)), len(out))
    ever = [any(v > bar for v in (r.get("check_val_acc") or [])) for r, bar in zip(rec, bars)]
    return out.assign(at_chance=out["censored"] & (last <= bars), ever_above_chance=ever)


def beats_every_run(a, b) -> bool:
    """True when every value of ``a`` is above every value of ``b`` (for 4 vs 4 runs a one-sided
    rank test at p = 1/70)."""
    return bool(len(a) and len(b) and np.min(a) > np.max(b))


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The table without its helper columns (those starting with ``_``)."""
    return table[[c for c in table.columns if not c.startswith("_")]]


def fmt_ci(mean: float, lo: float, hi: float, digits: int = 2) -> str:
    """``"0.75 [0.30, 0.95]"``; the mean alone without bounds; ``"n/a"`` without a mean."""
    if not np.isfinite(mean):
        return "n/a"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def join_and(items: list[str]) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``; ``""`` for none.

    Example:
        >>> join_and(["a", "b", "c"])
        'a, b and c'
    """
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else ""


def fmt_norm(x: float) -> str:
    """A gradient or update norm for the prose: ``"0.953"``, ``"26,229"``, ``"not finite"``."""
    return "not finite" if not np.isfinite(x) else f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def fmt_p(x: float) -> str:
    """A p value to two significant digits; ``"n/a"`` when there is none."""
    return "n/a" if not np.isfinite(x) else f"{x:.2g}"


def encoder_ceiling(epochs: int = 30, seed: int = 0, compute: bool = True) -> dict | None:
    """The encoder's per-image test accuracy (:func:`rnnbook.criterion.encoder_ceiling`),
    cached with the runs: the reference of every chapter's success criterion.
    ``compute=False`` returns it only if cached (else None), without training."""
    from rnnbook import criterion, sweeps
    from rnnbook.training import TrainConfig

    return sweeps.cached_call("ceiling", criterion.ceiling_of, TrainConfig(epochs=int(epochs), seed=int(seed)),
                              compute=compute)
