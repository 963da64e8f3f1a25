"""Short training runs of the chapter "Vanishing and exploding gradients" (:mod:`.gradients`):
one configuration trained briefly and measured before and after, on the same probe.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from rnnbook import clipping, diagnostics, engine, models, runtime
from rnnbook.experiments import probes as pr
from rnnbook.experiments.common import config_label

#: The two moments a short run is measured at.
STAGES = ("at initialisation", "after training")

def short_training(activation: str, initializer: str, gain: float, seed: int, seq_len: int, units: int,
                   n_train: int, n_probe: int, epochs: int, batch_size: int,
                   learning_rate: float) -> dict:
    """Train one configuration briefly (Adam, no clipping) and measure it before and after.

    Not :func:`rnnbook.training.train`: that builds its model inside and does not return
    it (so it cannot be measured after training), and it stops at the first non-finite
    step, while this run keeps training (a non-finite step is skipped, never applied).

    The recall task's training split trains; its validation split is the probe. Returns a
    dict with ``lags`` (before and after, column ``stage``), ``summary`` (two rows),
    ``val_acc`` after training, ``chance``, ``diverged`` (a non-finite loss or gradient
    was met), ``steps``, ``first_loss``, ``last_loss`` and ``seconds``.
    """
    start = time.perf_counter()
    runtime.seed_everything(seed)
    task = pr.probe_task(seq_len, n_probe, seed, n_train=n_train)
    model = models.build_model(units=units, activation=activation, recurrent_initializer=initializer,
                               recurrent_gain=gain, num_classes=task.num_classes, seed=seed)
    keys = pr.config_keys(activation, initializer, gain, seed)

    def snapshot(stage):
        feats = pr.features_of(model, task.val)
        lags, _, summary = pr.measure(model.rnn, model.head, feats, task.val.labels)
        drive = diagnostics.input_drive_stats(model.rnn, feats)
        return (lags.assign(stage=stage, **keys),
                {**keys, "stage": stage, **summary, "drive_std": drive["drive_std"],
                 "feature_mean": drive["feature_mean"]})

    lags_before, summary_before = snapshot(STAGES[0])
    stepper = engine.Stepper(model, clipping.make_optimizer("adam", learning_rate), indexed=True,
                               bank=task.train.bank)
    rng = np.random.default_rng([seed, 7])
    diverged, losses = False, []
    for _ in range(epochs):
        order = rng.permutation(len(task.train))
        for b in range(0, len(order), batch_size):
            rows = np.sort(order[b:b + batch_size])
            stats = stepper.step(task.train.index[rows], task.train.labels[rows])
            losses.append(float(stats["loss"]))
            diverged |= not (np.isfinite(stats["loss"]) and np.isfinite(stats["grad_norm"]))
    lags_after, summary_after = snapshot(STAGES[1])
    evaluator = engine.Stepper(model, None, indexed=True, bank=task.val.bank)
    return {
        "lags": pd.concat([lags_before, lags_after], ignore_index=True),
        "summary": pd.DataFrame([summary_before, summary_after]),
        "val_acc": evaluator.accuracy(task.val),
        "chance": float(np.bincount(task.val.labels).max() / len(task.val)),
        "diverged": diverged,
        "steps": len(losses),
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


def rate_change(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per trained run: per-step rate, mean slope, drive scale and sigma_max before
    and after training, and whether the rate moved toward 1 (``toward_edge``)."""
    keys = ["activation", "initializer", "gain", "seed"]
    before = summary[summary["stage"] == STAGES[0]].set_index(keys)
    after = summary[summary["stage"] == STAGES[1]].set_index(keys)
    change = pd.DataFrame({
        "before": before["decay_rate"], "after": after["decay_rate"],
        "slope_before": before["mean_slope"], "slope_after": after["mean_slope"],
        "drive_before": before["drive_std"], "drive_after": after["drive_std"],
        "sigma_before": before["sigma_max"], "sigma_after": after["sigma_max"],
    }).reset_index()
    change["toward_edge"] = np.abs(np.log(change["after"])) < np.abs(np.log(change["before"]))
    return change
