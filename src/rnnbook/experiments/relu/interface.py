"""The CNN-to-RNN interface: its levels, named by keys and measured as the RMS of the features
entering the recurrent layer; how hard those features drive a SimpleRNN at initialisation (the
share of saturated pre-activations, the input term against the recurrent term); and the
interface ablation of the chapter "When ReLU helps" (:mod:`.relu`).

An interface level is a key, parsed in one place (:func:`parse_interface`):

* ``"keras"``: the Keras defaults (Glorot-uniform convolutions, features as they come): the
  **baseline**, :data:`BASELINE`;
* ``"he"``: He-uniform convolutions (what a He-initialised or pretrained encoder gives);

followed by any of these, each at most once:

* ``"*<s>"``, e.g. ``"he*0.3"``: the features rescaled by ``s`` (a fixed ``Rescaling``);
* ``"@<g>"``, e.g. ``"he@0.15"``: the recurrent layer's Glorot-uniform input kernel started at
  gain ``g`` (the same initial drive as ``*g``, another effective learning rate under Adam);
* ``"+ln"``: a LayerNorm on the features at the interface (before any rescaling).

``s`` or ``g`` may be ``r``, the ratio of the Keras-default encoder's feature RMS to the He
encoder's (:func:`keras_he_ratio`, about 0.14 for the book's CNN): ``"he*r"`` and ``"he@r"``
start with exactly the Keras default's drive. With zero biases, ReLU and max pooling, and the
same seeded draws scaled to each initialiser's limit, the two encoders' features differ by the
fixed factor ``r`` for every seed and image; :func:`rescale_ratio` measures it.

Example:
    >>> parse_interface("he*0.15").label
    'He-uniform, features x 0.15'
    >>> parse_interface("he@r").label
    'He-uniform, input gain r (0.14)'
    >>> parse_interface("keras").changes
    {'encoder_init': 'glorot_uniform', 'feature_norm': 'none', 'feature_scale': 1.0, 'input_gain': 1.0}
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import TYPE_CHECKING, Iterable

import numpy as np
import pandas as pd

from rnnbook.experiments.common import ExperimentError, fmt_ci, specs, wilson_interval

if TYPE_CHECKING:
    from rnnbook.training import TrainConfig

#: The baseline interface level: what a user of the Keras defaults has.
BASELINE = "keras"
#: Interface bases: key -> (encoder initialiser, label).
BASES = {"keras": ("glorot_uniform", "Keras default (Glorot)"), "he": ("he_uniform", "He-uniform")}
#: The levels of the interface ablation: the baseline, the He encoder, the He encoder brought to the
#: baseline's initial drive by a fixed rescaling and by the input kernel's gain, and a LayerNorm.
ABLATION_LEVELS = ("keras", "he", "he*r", "he@r", "he+ln")
#: The grammar, as the error message states it.
GRAMMAR = ("'<base>' (keras or he) optionally followed by '*<s>' (features x s), '@<g>' (input-kernel "
           "gain g) and '+ln' (LayerNorm on the features), each at most once; s or g a positive number or r "
           "(Keras-default RMS / He RMS)")
EXAMPLES = ("keras", "he", "he*0.3", "keras*0.3", "he@0.15", "he*r", "he@r", "he+ln")
#: The CNN of the book (``TrainConfig.conv_filters``' default), for the labels of ``r``.
DEFAULT_CONV = (16, 32)
_NUMBER = r"(?:r|[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)"
_TOKEN = re.compile(rf"(?P<op>[*@])(?P<x>{_NUMBER})|(?P<ln>\+ln)")


def keras_he_ratio(conv_filters=DEFAULT_CONV, in_channels: int = 1) -> float:
    """``r``: the factor between the features of the Keras-default (Glorot-uniform) and the He-uniform
    encoder of one seed. Per 3x3 convolution the two limits differ by ``sqrt(fan_in / (fan_in +
    fan_out))``; ReLU, max pooling and zero biases pass each factor through, so ``r`` is their product.

    Example:
        >>> round(keras_he_ratio((16, 32)), 4)
        0.14
    """
    ratio, channels = 1.0, int(in_channels)
    for filters in conv_filters:
        fan_in, fan_out = 9 * channels, 9 * int(filters)
        ratio *= math.sqrt(fan_in / (fan_in + fan_out))
        channels = int(filters)
    return ratio


@dataclasses.dataclass(frozen=True)
class InterfaceSpec:
    """One interface level: its key, its label and the :class:`TrainConfig` fields it sets
    (all four interface fields, so a level means the same whatever config it is applied to).
    ``relative`` names the field (``feature_scale`` or ``input_gain``) set to ``r``, resolved
    for the config's CNN by :meth:`apply`."""

    key: str
    label: str
    changes: dict
    relative: str | None = None

    def apply(self, config: "TrainConfig", **changes) -> "TrainConfig":
        """``config`` at this interface level (and any other ``changes``)."""
        fields = dict(self.changes)
        if self.relative:
            fields[self.relative] = keras_he_ratio(config.conv_filters)
        return dataclasses.replace(config, **{**fields, **changes})

    @property
    def drive_factor(self) -> float:
        """The input gain: the initial drive equals that of features ``drive_factor`` times larger
        entering a gain-1 input kernel."""
        return float(self.changes["input_gain"])


def parse_interface(key: str) -> InterfaceSpec:
    """The :class:`InterfaceSpec` of ``key`` (module docstring); an error naming the grammar and
    examples for any other key."""
    k = key.strip().lower().replace(" ", "") if isinstance(key, str) else ""
    base = next((b for b in sorted(BASES, key=len, reverse=True) if k.startswith(b)), None)
    tokens, rest = [], k[len(base):] if base else k
    while base and rest:
        m = _TOKEN.match(rest)
        if not m:
            break
        tokens.append(m)
        rest = rest[m.end():]
    kinds = [m["op"] or "+ln" for m in tokens]
    if base is None or rest or len(set(kinds)) != len(kinds):
        raise ExperimentError(f"interface {key!r} is not a level: use {GRAMMAR}; e.g. {', '.join(EXAMPLES)}")
    init, label = BASES[base]
    changes = {"encoder_init": init, "feature_norm": "none", "feature_scale": 1.0, "input_gain": 1.0}
    relative, parts = None, []
    if "+ln" in kinds:
        changes["feature_norm"], label = "layer_norm", f"{label} + LayerNorm"
    for m in tokens:
        if not m["op"]:
            continue
        field, words = ("feature_scale", "features x") if m["op"] == "*" else ("input_gain", "input gain")
        if m["x"] == "r":
            relative, x = field, keras_he_ratio(DEFAULT_CONV)
            parts.append(f"{words} r ({x:.2g})")
        else:
            x = float(m["x"])
            if not (math.isfinite(x) and x > 0):
                raise ExperimentError(f"interface {key!r}: the number after {m['op']} must be positive; "
                                      f"use {GRAMMAR}")
            parts.append(f"{words} {x:g}")
        changes[field] = x
    return InterfaceSpec(k, ", ".join([label, *parts]), changes, relative)


def interfaces(keys: Iterable[str]) -> list[InterfaceSpec]:
    """The specs of ``keys`` (at least one)."""
    out = [parse_interface(k) for k in keys]
    if not out:
        raise ExperimentError("no interface level given")
    return out


def interface_key(config) -> str:
    """The canonical key of a :class:`TrainConfig`'s interface (or of a run row holding its fields):
    ``"keras"``, ``"he*0.14"``, ``"he@0.5+ln"``, ... (numbers, not ``r``)."""
    get = config.get if isinstance(config, (dict, pd.Series)) else (lambda name, d=None: getattr(config, name, d))
    base = {init: b for b, (init, _) in BASES.items()}[get("encoder_init", "glorot_uniform")]
    scale, gain = float(get("feature_scale", 1.0)), float(get("input_gain", 1.0))
    return (base + (f"*{scale:.4g}" if scale != 1.0 else "") + (f"@{gain:.4g}" if gain != 1.0 else "")
            + ("+ln" if get("feature_norm", "none") == "layer_norm" else ""))


# ----------------------------------------------------------------------------- feature RMS


def _validation_images():
    """The validation split's images: the fixed batch on which every feature RMS is measured (the
    same images a criterion run's ``check_feature_rms`` uses)."""
    from rnnbook import data

    images, _ = data.digit_bank()
    return images[data.bank_split()["val"]]


def feature_rms_table(keys: Iterable[str], base: "TrainConfig", seeds) -> pd.DataFrame:
    """The RMS of the features entering the recurrent layer at initialisation, per interface level
    of ``keys`` and seed, on the validation images, for ``base``'s CNN. ``drive_rms`` is the feature
    RMS times the input gain: the RMS a gain-1 input kernel needs for the same initial drive (the
    abscissa on which every level, ``@g`` included, can be placed)."""
    from rnnbook import models, runtime

    runtime.configure()
    images, rows = _validation_images(), []
    for spec in interfaces(keys):
        for seed in seeds:
            cfg = spec.apply(base, seed=int(seed))
            encoder = models.build_encoder(cfg.conv_filters, seed=cfg.seed, feature_scale=cfg.feature_scale,
                                           encoder_init=cfg.encoder_init, feature_norm=cfg.feature_norm)
            rms = models.feature_rms(encoder, images, limit=len(images))
            rows.append({"interface": spec.key, "level": spec.label, "baseline": spec.key == BASELINE,
                         "seed": int(seed), "feature_rms": rms, "input_gain": cfg.input_gain,
                         "drive_rms": rms * cfg.input_gain})
    return pd.DataFrame(rows)


def rms_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per level of :func:`feature_rms_table`: seeds, mean, min and max of the feature RMS and of
    the drive RMS, in the table's order."""
    out = table.groupby(["interface", "level", "baseline"], sort=False).agg(
        seeds=("seed", "size"), rms_mean=("feature_rms", "mean"), rms_min=("feature_rms", "min"),
        rms_max=("feature_rms", "max"), drive_mean=("drive_rms", "mean"), drive_min=("drive_rms", "min"),
        drive_max=("drive_rms", "max"))
    return out.reset_index()


def level_rms(keys: Iterable[str], base: "TrainConfig", seeds) -> dict[str, float]:
    """Interface key -> mean drive RMS at initialisation over ``seeds`` (where a level sits on an
    RMS axis; the baseline is :data:`BASELINE`)."""
    summary = rms_summary(feature_rms_table(keys, base, seeds))
    return dict(zip(summary["interface"], summary["drive_mean"]))


def rescale_ratio(base: "TrainConfig", seeds) -> dict:
    """``r`` measured: the Keras-default encoder's feature RMS over the He encoder's, per seed and
    as the ratio of their means, beside :func:`keras_he_ratio` (the factor the initialisers imply)."""
    table = feature_rms_table(["keras", "he"], base, seeds)
    keras_rms = table.loc[table["interface"] == "keras", "feature_rms"].to_numpy()
    he_rms = table.loc[table["interface"] == "he", "feature_rms"].to_numpy()
    per_seed = keras_rms / he_rms
    return {"r": float(keras_rms.mean() / he_rms.mean()), "per_seed_min": float(per_seed.min()),
            "per_seed_max": float(per_seed.max()), "implied": keras_he_ratio(base.conv_filters),
            "keras_rms_mean": float(keras_rms.mean()), "keras_rms_min": float(keras_rms.min()),
            "keras_rms_max": float(keras_rms.max()), "he_rms_mean": float(he_rms.mean()),
            "he_rms_min": float(he_rms.min()), "he_rms_max": float(he_rms.max()), "seeds": len(per_seed)}


# ----------------------------------------------------------------------------- the drive at initialisation

#: A pre-activation beyond this magnitude puts tanh in saturation (slope below 0.08).
SATURATION = 2.0


def input_drive(config: "TrainConfig", n: int = 256) -> dict:
    """How hard the inputs drive a SimpleRNN at initialisation, on ``n`` validation sequences:
    the share of pre-activations ``a_t = x_t K + h_{t-1} W + b`` with ``|a| > 2``
    (:data:`SATURATION`), and the median over steps ``t >= 1`` of the ratio of the input term's
    norm ``||x_t K||`` to the recurrent term's norm ``||h_{t-1} W||`` (both NaN for gated cells);
    the feature RMS on the validation images and the drive RMS (times the input gain)."""
    import tensorflow as tf

    from rnnbook import models, runtime

    runtime.seed_everything(config.seed)
    task = config.task_data(data_dir=None)
    model = config.model(task.num_classes)
    rms = models.feature_rms(model, task.val.bank, limit=len(task.val.bank))
    out = {"saturated_share": math.nan, "input_to_recurrent": math.nan, "feature_rms": rms,
           "drive_rms": rms * config.input_gain}
    if config.cell != "simple_rnn":
        return out
    feats = model.indexed_features(tf.constant(task.val.index[:n]), tf.constant(task.val.bank))
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
    return {**out, "saturated_share": float(np.mean(saturated)),
            "input_to_recurrent": float(np.median(ratios)) if ratios else math.nan}


def drive_table(p: dict, base: "TrainConfig") -> pd.DataFrame:
    """:func:`input_drive` for every SimpleRNN configuration of ``p["rnn_configs"]``, interface
    level of ``p["interfaces"]`` and seed of ``p["seeds"]``, from ``base``. (A ``p`` without
    ``interfaces`` but with the former ``feature_scales`` gives the levels ``keras*<s>``.)"""
    keys = p["interfaces"] if "interfaces" in p else [f"keras*{float(s):g}" for s in p["feature_scales"]]
    rows = []
    for spec in specs(p["rnn_configs"]):
        if spec.cell != "simple_rnn":
            continue
        for level in interfaces(keys):
            for seed in p["seeds"]:
                cfg = level.apply(spec.apply(base, seed=int(seed)))
                rows.append({"label": spec.label, "interface": level.key, "level": level.label,
                             "feature_scale": cfg.feature_scale, "seed": int(seed), **input_drive(cfg)})
    return pd.DataFrame(rows)


def drive_display(drive: pd.DataFrame) -> pd.DataFrame:
    """The input-drive table for the page: one row per configuration and interface level (medians)."""
    cols = [c for c in ("feature_rms", "drive_rms", "saturated_share", "input_to_recurrent") if c in drive]
    med = drive.groupby(["label", "level"], sort=False)[cols].median().reset_index()
    return med.rename(columns={"label": "configuration", "level": "interface level", "feature_rms": "feature RMS",
                               "drive_rms": "drive RMS (x input gain)", "saturated_share": "share |a| > 2",
                               "input_to_recurrent": "‖x K‖ / ‖h W‖"})


# ----------------------------------------------------------------------------- the ablation


def ablation_grid(base: "TrainConfig", levels: Iterable[str] = ABLATION_LEVELS):
    """``(configs, labels, interfaces)``: ``base`` (its recurrent configuration, lag, learning rate
    and budget) at every interface level of ``levels``, one configuration per level (the seeds
    are :func:`rnnbook.sweeps.run_sweep`'s); ``labels`` are the levels' labels."""
    specs_ = interfaces(levels)
    return [s.apply(base) for s in specs_], [s.label for s in specs_], [s.key for s in specs_]


def run_ablation(base: "TrainConfig", levels: Iterable[str] = ABLATION_LEVELS, seeds=(0, 1, 2, 3), **sweep) -> pd.DataFrame:
    """The ablation's runs: :func:`rnnbook.sweeps.run_sweep` of :func:`ablation_grid` over ``seeds``
    (``sweep``: its other arguments), with the criterion's columns (:func:`.common.outcomes`) and
    the ``interface`` key of each run."""
    from rnnbook import sweeps
    from rnnbook.experiments.common import outcomes

    configs, labels, keys = ablation_grid(base, levels)
    runs = outcomes(sweeps.run_sweep(configs, seeds, labels=labels, **{"desc": "interface ablation", **sweep}))
    return runs.assign(interface=[k for k in keys for _ in seeds])


def _last(values) -> float:
    finite = [v for v in (values or []) if v is not None and np.isfinite(v)]
    return float(finite[-1]) if finite else math.nan


def _median(values) -> float:
    x = np.asarray(values, float)
    return float(np.median(x[np.isfinite(x)])) if np.isfinite(x).any() else math.nan


def ablation_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The interface ablation per level (in the runs' order): the feature RMS entering the recurrent
    layer at initialisation (``rms_init``; ``drive_init`` times the input gain) and at the last check
    (``rms_last``: what the CNN did to the scale; ``rms_change`` the median of each run's last / initial),
    medians over seeds; successes (``n_successes`` of ``seeds``, ``successes`` as text) with the Wilson
    95 % interval, censored runs, and the median updates to success. ``runs``: :func:`run_ablation`'s
    (or any with ``record``, ``success``, ``outcome`` and ``updates``; without an ``interface``
    column each run's key is read from its configuration by :func:`interface_key`)."""
    if "interface" not in runs:
        runs = runs.assign(interface=[interface_key(r["config"]) for r in runs["record"]])
    rows = []
    for key, part in runs.groupby("interface", sort=False):
        k, n = int(part["success"].sum()), len(part)
        rate, lo, hi = wilson_interval(k, n)
        first = [r.get("initial_feature_rms", math.nan) for r in part["record"]]
        last = [_last(r.get("check_feature_rms")) for r in part["record"]]
        gains = [float(r["config"].get("input_gain", 1.0)) for r in part["record"]]
        done = part.loc[part["success"], "updates"]
        rows.append({"interface": key, "level": parse_interface(key).label, "baseline": key == BASELINE,
                     "rms_init": _median(first), "drive_init": _median(np.multiply(first, gains)),
                     "rms_last": _median(last), "rms_change": _median(np.divide(last, first)),
                     "seeds": n, "n_successes": k, "successes": f"{k} of {n}", "rate": rate, "lo": lo, "hi": hi,
                     "censored": int((part["outcome"] == "censored").sum()),
                     "median_updates": float(done.median()) if len(done) else math.nan})
    return pd.DataFrame(rows)


def ablation_display(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`ablation_table` for the page."""
    def num(x, spec=".3f"):
        return "n/a" if not np.isfinite(x) else f"{x:{spec}}"

    return pd.DataFrame({
        "interface level": [lab + (" (baseline)" if b else "") for lab, b in zip(table["level"], table["baseline"])],
        "feature RMS at init": table["rms_init"].map(num),
        "drive RMS at init (x input gain)": table["drive_init"].map(num),
        "feature RMS at last check": table["rms_last"].map(num),
        "successes": table["successes"],
        "success rate [95% CI]": [fmt_ci(r, lo, hi) for r, lo, hi in zip(table["rate"], table["lo"], table["hi"])],
        "censored": table["censored"],
        "median updates to success": table["median_updates"].map(lambda x: num(x, ".0f"))})
