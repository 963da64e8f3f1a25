"""The CNN-to-RNN interface at initialisation: how hard the CNN's features drive a SimpleRNN
(the share of saturated pre-activations, the input term against the recurrent term), measured
for the chapter "When ReLU helps" (:mod:`.relu`) before any training.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rnnbook.experiments.common import specs
from rnnbook.training import TrainConfig

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
    level of ``p["feature_scales"]`` and seed of ``p["seeds"]``, from ``base``."""
    rows = []
    for spec in specs(p["rnn_configs"]):
        if spec.cell != "simple_rnn":
            continue
        for scale in p["feature_scales"]:
            for seed in p["seeds"]:
                cfg = spec.apply(base, feature_scale=float(scale), seed=int(seed))
                rows.append({"label": spec.label, "feature_scale": float(scale), "seed": int(seed),
                             **input_drive(cfg)})
    return pd.DataFrame(rows)


def drive_display(drive: pd.DataFrame) -> pd.DataFrame:
    """The input-drive table for the page: one row per configuration and interface level (medians)."""
    med = drive.groupby(["label", "feature_scale"], sort=False)[
        ["feature_rms", "saturated_share", "input_to_recurrent"]].median().reset_index()
    return med.rename(columns={"label": "configuration", "feature_scale": "feature scale",
                               "feature_rms": "feature RMS", "saturated_share": "share |a| > 2",
                               "input_to_recurrent": "‖x K‖ / ‖h W‖"})
