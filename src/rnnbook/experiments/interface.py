"""The CNN-to-RNN interface: its levels, named by keys, how hard the CNN's features drive a
SimpleRNN at initialisation (the share of saturated pre-activations, the input term against the
recurrent term), and the interface ablation of the chapter "When ReLU helps" (:mod:`.relu`).

An interface level is a key:

* ``"keras"``: the Keras defaults (Glorot-uniform convolutions, features as they come): the
  **baseline**, :data:`BASELINE`;
* ``"he"``: He-uniform convolutions (what a He-initialised or pretrained encoder gives);
* ``"<base>*<s>"``, e.g. ``"he*0.15"``: the features rescaled by ``s`` (a fixed ``Rescaling``);
* ``"<base>@<g>"``, e.g. ``"he@0.15"``: the recurrent layer's input kernel started at gain ``g``
  (the same initial drive as ``*g``, another effective learning rate under Adam);
* ``"<base>+ln"``: a LayerNorm on the features at the interface.

Example:
    >>> parse_interface("he*0.15").label
    'He-uniform, features x 0.15'
    >>> parse_interface("keras").changes
    {'encoder_init': 'glorot_uniform'}
"""
from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pandas as pd

from rnnbook.experiments.common import ExperimentError, specs, wilson_interval
from rnnbook.training import TrainConfig

#: The baseline interface level: what a user of the Keras defaults has.
BASELINE = "keras"
#: Interface bases: key -> (encoder initialiser, label).
BASES = {"keras": ("glorot_uniform", "Keras default (Glorot)"), "he": ("he_uniform", "He-uniform")}
_GRAMMAR = re.compile(r"^(?P<base>[a-z]+)(?:(?P<op>[*@])(?P<x>[0-9.eE+-]+)|(?P<ln>\+ln))?$")


@dataclasses.dataclass(frozen=True)
class InterfaceSpec:
    """One interface level: its key, its label and the :class:`TrainConfig` fields it sets."""

    key: str
    label: str
    changes: dict

    def apply(self, config: TrainConfig) -> TrainConfig:
        """``config`` at this interface level."""
        return dataclasses.replace(config, **self.changes)


def parse_interface(key: str) -> InterfaceSpec:
    """The :class:`InterfaceSpec` of ``key`` (module docstring); a clear error for any other key."""
    m = _GRAMMAR.match(str(key).strip().lower()) if isinstance(key, str) else None
    if not m or m["base"] not in BASES:
        raise ExperimentError(
            f"interface {key!r} is not a level: use {' or '.join(BASES)}, optionally followed by *<scale> "
            "(features rescaled), @<gain> (input-kernel gain) or +ln (LayerNorm); e.g. keras, he, he*0.15, "
            "he@0.15, he+ln")
    init, label = BASES[m["base"]]
    changes: dict = {"encoder_init": init}
    if m["op"]:
        try:
            x = float(m["x"])
        except ValueError:
            x = math.nan
        if not (math.isfinite(x) and x > 0):
            raise ExperimentError(f"interface {key!r}: the number after {m['op']} must be positive")
        if m["op"] == "*":
            changes["feature_scale"], label = x, f"{label}, features x {x:g}"
        else:
            changes["input_gain"], label = x, f"{label}, input gain {x:g}"
    elif m["ln"]:
        changes["feature_norm"], label = "layer_norm", f"{label} + LayerNorm"
    return InterfaceSpec(str(key).strip().lower(), label, changes)

#: A pre-activation beyond this magnitude puts tanh in saturation (slope below 0.08).
SATURATION = 2.0


def input_drive(config: TrainConfig, n: int = 256) -> dict:
    """How hard the inputs drive a SimpleRNN at initialisation, on ``n`` validation sequences:
    the share of pre-activations ``a_t = x_t K + h_{t-1} W + b`` with ``|a| > 2``
    (:data:`SATURATION`), and the median over steps ``t >= 1`` of the ratio of the input term's
    norm ``||x_t K||`` to the recurrent term's norm ``||h_{t-1} W||``. NaN for gated cells."""
    if config.cell != "simple_rnn":
        return {"saturated_share": math.nan, "input_to_recurrent": math.nan, "feature_rms": math.nan}
    import tensorflow as tf

    from rnnbook import runtime

    runtime.seed_everything(config.seed)
    task = config.task_data(data_dir=None)
    model = config.model(task.num_classes)
    index = task.val.index[:n]
    feats = model.indexed_features(tf.constant(index), tf.constant(task.val.bank))
    cell = model.rnn.cell
    x = tf.einsum("btf,fu->btu", feats, cell.kernel) + (cell.bias if cell.use_bias else 0.0)
    h = tf.zeros((x.shape[0], cell.units))
    saturated, ratios = [], []
    for t in range(x.shape[1]):
        r = tf.matmul(h, cell.recurrent_kernel)
        a = x[:, t] + r
        saturated.append(float(tf.reduce_mean(tf.cast(tf.abs(a) > SATURATION, tf.float32))))
        if t:
            ratios.append(float(tf.norm(x[:, t]) / tf.maximum(tf.norm(r), 1e-12)))
        h = cell.activation(a)
    return {"saturated_share": float(np.mean(saturated)),
            "input_to_recurrent": float(np.median(ratios)) if ratios else math.nan,
            "feature_rms": float(tf.sqrt(tf.reduce_mean(tf.square(feats))))}


def drive_table(p: dict, base: TrainConfig) -> pd.DataFrame:
    """:func:`input_drive` for every SimpleRNN configuration of ``p["rnn_configs"]``, interface
    level of ``p["interfaces"]`` and seed of ``p["seeds"]``, from ``base``."""
    rows = []
    for spec in specs(p["rnn_configs"]):
        if spec.cell != "simple_rnn":
            continue
        for key in p["interfaces"]:
            level = parse_interface(key)
            for seed in p["seeds"]:
                cfg = level.apply(spec.apply(base, seed=int(seed)))
                rows.append({"label": spec.label, "interface": level.key, "level": level.label, "seed": int(seed),
                             **input_drive(cfg)})
    return pd.DataFrame(rows)


def ablation_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The interface ablation per level: the feature RMS entering the recurrent layer at
    initialisation and at the last check (medians over seeds), successes with the Wilson 95 %
    interval, and the median updates to success."""
    rows = []
    for key, part in runs.groupby("interface", sort=False):
        k, n = int(part["success"].sum()), len(part)
        rate, lo, hi = wilson_interval(k, n)
        first = [r.get("initial_feature_rms", math.nan) for r in part["record"]]
        last = [(r.get("check_feature_rms") or [math.nan])[-1] for r in part["record"]]
        done = part.loc[part["success"], "updates"]
        rows.append({"interface": key, "level": parse_interface(key).label, "baseline": key == BASELINE,
                     "rms_init": float(np.nanmedian(first)) if np.isfinite(first).any() else math.nan,
                     "rms_last": float(np.nanmedian(last)) if np.isfinite(last).any() else math.nan,
                     "successes": f"{k} of {n}", "rate": rate, "lo": lo, "hi": hi,
                     "median_updates": float(done.median()) if len(done) else math.nan})
    return pd.DataFrame(rows)


def ablation_display(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`ablation_table` for the page."""
    from rnnbook.experiments.common import fmt_ci

    return pd.DataFrame({
        "interface level": [lab + (" (baseline)" if b else "") for lab, b in zip(table["level"], table["baseline"])],
        "feature RMS at init": table["rms_init"].map(lambda x: f"{x:.3f}"),
        "feature RMS at last check": table["rms_last"].map(lambda x: f"{x:.3f}"),
        "successes": table["successes"],
        "success rate [95% CI]": [fmt_ci(r, lo, hi) for r, lo, hi in zip(table["rate"], table["lo"], table["hi"])],
        "median updates to success": table["median_updates"].map(lambda x: "n/a" if not np.isfinite(x) else f"{x:.0f}")})


def drive_display(drive: pd.DataFrame) -> pd.DataFrame:
    """The input-drive table for the page: one row per configuration and interface level (medians)."""
    med = drive.groupby(["label", "level"], sort=False)[
        ["feature_rms", "saturated_share", "input_to_recurrent"]].median().reset_index()
    return med.rename(columns={"label": "configuration", "level": "interface level",
                               "feature_rms": "feature RMS", "saturated_share": "share |a| > 2",
                               "input_to_recurrent": "‖x K‖ / ‖h W‖"})
