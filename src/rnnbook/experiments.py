"""The trained half of the book: configuration grids, runs, summary tables and figures.

The chapters "When ReLU helps", "Gradient clipping" and "Recommendations" call the
functions here with their parameters, so that the same parameters always give the
same configurations: the recommendations chapter re-uses the cached runs of the
other two (see :func:`rnnbook.sweeps.run_sweep`) and never trains again.

A recurrent configuration is named by a short key:

* ``"<activation>-<recurrent initializer>"`` for a Keras ``SimpleRNN``, e.g.
  ``"tanh-orthogonal"`` (the Keras default), ``"relu-identity"`` (the IRNN of Le et
  al. 2015) or ``"relu-glorot_uniform"`` (like TF1's ``BasicRNNCell``);
* ``"gru"`` or ``"lstm"`` for the gated baselines (Keras defaults).

Diverged runs (NaN or Inf loss) are never dropped: :func:`run_grid` adds a column
``accuracy`` in which a diverged run counts as the chance level, and every summary
carries the number of diverged runs.

Example:
    >>> spec = parse_rnn_config("relu-identity")
    >>> spec.label
    'ReLU + identity (IRNN)'
    >>> base = base_config(n_train=64, n_val=16, n_test=16, epochs=1, units=8)
    >>> points = recall_grid(["tanh-orthogonal", "gru"], lags=[2, 5], base=base)
    >>> [(p.config.seq_len, p.config.lag, p.label) for p in points][:2]
    [(3, 2, 'tanh + orthogonal'), (6, 5, 'tanh + orthogonal')]
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from rnnbook import sweeps
from rnnbook.training import TrainConfig

#: The six configurations the trained chapters compare, in the order of their legends.
DEFAULT_RNN_CONFIGS = ("tanh-orthogonal", "relu-orthogonal", "relu-identity", "relu-glorot_uniform", "gru", "lstm")
#: Configurations of the learning-rate sweep (the Keras default initialiser, both activations).
LR_CONFIGS = ("tanh-orthogonal", "relu-orthogonal")
#: Configurations of the width sweep: the Keras default and the question's TF1-style ReLU cell.
WIDTH_CONFIGS = ("tanh-orthogonal", "relu-glorot_uniform")
#: The exploding setting of the clipping chapter: the IRNN (ReLU, identity) of Le et al. (2015).
EXPLODING_CONFIG = "relu-identity"
GATED = ("gru", "lstm")
INITIALIZERS = ("orthogonal", "identity", "glorot_uniform")


class ExperimentError(ValueError):
    """A configuration key or grid argument the experiments cannot use."""


# ----------------------------------------------------------------------------- configurations


@dataclasses.dataclass(frozen=True)
class RnnSpec:
    """One recurrent configuration: cell, activation and recurrent initialiser."""

    key: str
    cell: str
    activation: str
    recurrent_initializer: str

    @property
    def label(self) -> str:
        """The label used in legends and tables (the colours of :data:`rnnbook.plots.CONFIG_COLORS`)."""
        if self.cell != "simple_rnn":
            return self.cell.upper()
        act = "ReLU" if self.activation == "relu" else self.activation
        init = self.recurrent_initializer
        return f"{act} + {init}" + (" (IRNN)" if (self.activation, init) == ("relu", "identity") else "")

    @property
    def is_relu(self) -> bool:
        return self.cell == "simple_rnn" and self.activation == "relu"

    @property
    def is_gated(self) -> bool:
        return self.cell in GATED

    def apply(self, config: TrainConfig, **changes) -> TrainConfig:
        """``config`` with this cell, activation and initialiser (and any other ``changes``)."""
        return dataclasses.replace(config, cell=self.cell, activation=self.activation,
                                   recurrent_initializer=self.recurrent_initializer, **changes)


def parse_rnn_config(key: str) -> RnnSpec:
    """The :class:`RnnSpec` of a key such as ``"relu-identity"``, ``"gru"`` or ``"lstm"``."""
    if not isinstance(key, str):
        raise ExperimentError(f"rnn config {key!r} must be a string such as 'tanh-orthogonal' or 'gru'")
    k = key.strip().lower()
    if k in GATED:
        return RnnSpec(k, k, "tanh", "orthogonal")
    act, sep, init = k.partition("-")
    if not sep or init not in INITIALIZERS or not act:
        raise ExperimentError(
            f"rnn config {key!r} is not '<activation>-<initializer>' (initializer one of "
            f"{', '.join(INITIALIZERS)}), 'gru' or 'lstm'; e.g. 'relu-identity'")
    from rnnbook import models

    try:
        models.check_activation(act)
    except models.ModelError as exc:
        raise ExperimentError(f"rnn config {key!r}: {exc}") from None
    return RnnSpec(k, "simple_rnn", act, init)


def specs(keys: Iterable[str]) -> list[RnnSpec]:
    out = [parse_rnn_config(k) for k in keys]
    if not out:
        raise ExperimentError("no recurrent configuration given")
    return out


def base_config(n_train=1000, n_val=200, n_test=500, units=64, epochs=10, batch_size=64,
                learning_rate=1e-3, optimizer="adam", **changes) -> TrainConfig:
    """The chapters' training recipe: the book's CNN + SimpleRNN, Adam, no clipping."""
    return TrainConfig(n_train=int(n_train), n_val=int(n_val), n_test=int(n_test), units=int(units),
                       epochs=int(epochs), batch_size=int(batch_size), learning_rate=float(learning_rate),
                       optimizer=optimizer, **changes)


@dataclasses.dataclass(frozen=True)
class Point:
    """One configuration of a grid, its legend label and extra columns for the runs table."""

    config: TrainConfig
    label: str
    extra: dict = dataclasses.field(default_factory=dict)


def recall_grid(rnn_configs, lags, base: TrainConfig) -> list[Point]:
    """Recall at each lag: ``T = lag + 1`` frames, the label is the first frame's digit."""
    points = []
    for spec in specs(rnn_configs):
        for lag in lags:
            lag = int(lag)
            if lag < 1:
                raise ExperimentError(f"lag={lag} must be >= 1")
            cfg = spec.apply(base, task="recall", seq_len=lag + 1, lag=lag)
            points.append(Point(cfg, spec.label, {"key": spec.key}))
    return points


def count_grid(rnn_configs, seq_len, base: TrainConfig) -> list[Point]:
    """Count the zeros among ``seq_len`` frames (classes 0 to min(9, T))."""
    return [Point(spec.apply(base, task="count", seq_len=int(seq_len)), spec.label, {"key": spec.key})
            for spec in specs(rnn_configs)]


def clip_label(mode: str, threshold: float) -> str:
    return "no clipping" if mode == "none" else f"{mode}={threshold:g}"


def lr_grid(learning_rates, clip_threshold, seq_len, base: TrainConfig, rnn_configs=LR_CONFIGS,
            optimizer="sgd") -> list[Point]:
    """Count task under SGD with momentum at every learning rate, without and with
    ``global_clipnorm=clip_threshold``."""
    points = []
    for spec in specs(rnn_configs):
        for mode in ("none", "global_clipnorm"):
            for lr in learning_rates:
                threshold = float(clip_threshold) if mode != "none" else 1.0
                cfg = spec.apply(base, task="count", seq_len=int(seq_len), optimizer=optimizer,
                                 learning_rate=float(lr), clip_mode=mode, clip_threshold=threshold)
                points.append(Point(cfg, spec.label, {"key": spec.key,
                                                      "clipping": clip_label(mode, float(clip_threshold))}))
    return points


def width_grid(widths, seq_len, base: TrainConfig, learning_rate, rnn_configs=WIDTH_CONFIGS) -> list[Point]:
    """Count task with Adam at ``learning_rate`` for every number of units."""
    return [Point(spec.apply(base, task="count", seq_len=int(seq_len), units=int(u),
                             learning_rate=float(learning_rate)), spec.label, {"key": spec.key})
            for spec in specs(rnn_configs) for u in widths]


def exploding_base(seq_len, base: TrainConfig, learning_rate, key=EXPLODING_CONFIG) -> TrainConfig:
    """The clipping chapter's setting: count task, ReLU + identity, SGD with momentum."""
    return parse_rnn_config(key).apply(base, task="count", seq_len=int(seq_len), optimizer="sgd",
                                       learning_rate=float(learning_rate))


def clip_mode_grid(config: TrainConfig, clip_modes, threshold) -> list[Point]:
    return [Point(dataclasses.replace(config, clip_mode=m, clip_threshold=float(threshold) if m != "none" else 1.0),
                  m, {"clipping": clip_label(m, float(threshold))}) for m in clip_modes]


def threshold_grid(config: TrainConfig, multiples, reference: float, mode="global_clipnorm") -> list[Point]:
    """``mode`` at ``multiple x reference`` for every multiple (threshold rounded to 4 significant digits)."""
    points = []
    for m in multiples:
        threshold = float(f"{float(m) * reference:.4g}")
        points.append(Point(dataclasses.replace(config, clip_mode=mode, clip_threshold=threshold), mode,
                            {"multiple": float(m), "threshold": threshold}))
    return points


def run_grid(points: Sequence[Point], seeds, desc="sweep", cache_dir=None) -> pd.DataFrame:
    """Run (or load from the cache) every point x seed; one row per run.

    Adds the points' extra columns and ``accuracy``: the test accuracy with a diverged
    run counted at the chance level (it is never dropped).
    """
    cache_dir = sweeps.RUNS_DIR if cache_dir is None else cache_dir
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ExperimentError("seeds must hold at least one seed")
    runs = sweeps.run_sweep([p.config for p in points], seeds, cache_dir=cache_dir, desc=desc,
                            labels=[p.label for p in points])
    for col in sorted({c for p in points for c in p.extra}):
        runs[col] = np.repeat([p.extra.get(col) for p in points], len(seeds))
    runs["accuracy"] = sweeps.accuracy_with_divergence(runs, "chance")
    return runs


# ----------------------------------------------------------------------------- statistics


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval of ``values`` (NaN bounds for fewer than two)."""
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


def chance_bar(chance: float, n_test: int, z: float = 3.0) -> float:
    """Accuracy a guessing classifier exceeds with probability about 0.1 % on ``n_test`` sequences:
    chance plus ``z`` binomial standard errors."""
    return float(chance + z * math.sqrt(chance * (1.0 - chance) / max(int(n_test), 1)))


def above_chance(runs: pd.DataFrame) -> bool:
    """True when *every* run beats its :func:`chance_bar` (diverged runs count as chance, so one
    diverged run is enough to fail)."""
    if runs.empty:
        return False
    bars = [chance_bar(c, n) for c, n in zip(runs["chance"], runs["n_test"])]
    return bool((runs["accuracy"].to_numpy() > np.asarray(bars)).all())


def reach(runs: pd.DataFrame, label: str, by: str = "lag") -> float:
    """The longest ``by`` (lag) at which every run of ``label`` is :func:`above_chance`
    (NaN if at no lag)."""
    part = runs[runs["label"] == label]
    ok = [lag for lag, g in part.groupby(by) if above_chance(g)]
    return float(max(ok)) if ok else math.nan


def beats_every_run(a, b) -> bool:
    """True when every value of ``a`` is above every value of ``b`` (for 3 vs 3 runs a one-sided
    rank test at p = 1/20 = 0.05)."""
    return bool(len(a) and len(b) and np.min(a) > np.max(b))


def _fmt_ci(mean, lo, hi) -> str:
    if not np.isfinite(mean):
        return "n/a"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{mean:.2f}"
    return f"{mean:.2f} [{max(lo, 0):.2f}, {min(hi, 1):.2f}]"


def winners_by_lag(runs: pd.DataFrame, by: str = "lag") -> pd.DataFrame:
    """Which configuration wins at each lag; display-ready strings plus numeric columns.

    A win is "clear" when each of the winner's runs beats each of the runner-up's runs.
    Accuracies count diverged runs as chance.
    """
    rows = []
    for lag, part in runs.groupby(by, sort=True):
        summary = summarise(part, "label")
        summary = summary.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)
        win, runner = summary.iloc[0], (summary.iloc[1] if len(summary) > 1 else None)
        chance = float(part["chance"].mean())
        clear = runner is not None and beats_every_run(part.loc[part.label == win.label, "accuracy"],
                                                       part.loc[part.label == runner.label, "accuracy"])
        relu = summary[summary["label"].map(lambda s: s.startswith("ReLU"))]
        tanh = summary[summary["label"] == "tanh + orthogonal"]
        at_chance = not above_chance(part[part.label == win["label"]])
        rows.append({
            by: int(lag),
            "winner": win["label"] + ("" if not at_chance else " (none above chance)"),
            "winner accuracy [95% CI]": _fmt_ci(win["mean"], win["ci_lo"], win["ci_hi"]),
            "runner-up": "" if runner is None else f"{runner['label']} ({runner['mean']:.2f})",
            "clear win": "yes" if clear else "no (tie)",
            "tanh + orthogonal": _fmt_ci(*tanh[["mean", "ci_lo", "ci_hi"]].iloc[0]) if len(tanh) else "n/a",
            "best ReLU": (f"{relu.iloc[0]['label'].replace('ReLU + ', '')}: {relu.iloc[0]['mean']:.2f}"
                          if len(relu) else "n/a"),
            "chance": f"{chance:.2f}",
            "diverged runs": f"{int(part['diverged'].sum())}/{len(part)}",
            "_winner": win["label"], "_winner_mean": float(win["mean"]), "_clear": bool(clear),
            "_at_chance": bool(at_chance),
        })
    return pd.DataFrame(rows)


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The table without its helper columns (those starting with ``_``), index hidden."""
    return table[[c for c in table.columns if not c.startswith("_")]]


def epoch_curves(runs: pd.DataFrame, extra=("lag",)) -> pd.DataFrame:
    """Long frame of per-epoch validation accuracy: one row per run x epoch (1-based).

    A diverged run contributes the epochs it finished.
    """
    rows = []
    for _, r in runs.iterrows():
        for e, acc in enumerate(r["record"]["epoch_val_acc"], start=1):
            rows.append({"label": r["label"], "seed": r["seed"], "epoch": e, "val_accuracy": acc,
                         **{c: r[c] for c in extra if c in runs.columns}})
    return pd.DataFrame(rows)


def improving_at_end(curves: pd.DataFrame, by=("label", "lag"), last: int = 3, min_gain: float = 0.02) -> pd.DataFrame:
    """Per group: mean validation accuracy gain over the last ``last`` epochs; ``still_improving``
    when the gain exceeds ``min_gain`` (the run had not converged: a training-budget limit)."""
    by = [c for c in by if c in curves.columns]
    rows = []
    for keys, part in curves.groupby(by, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        mean = part.groupby("epoch")["val_accuracy"].mean().sort_index()
        k = min(last, len(mean) - 1)
        gain = float(mean.iloc[-1] - mean.iloc[-1 - k]) if k >= 1 else math.nan
        rows.append({**dict(zip(by, keys)), "gain": gain, "still_improving": bool(gain > min_gain)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- gradients at initialisation


def initial_grad_norms(config: TrainConfig, cache_dir=None) -> np.ndarray:
    """Global gradient norm of every training batch of one epoch at the initial weights
    (no update): the scale of the unclipped gradient before training moves anything.

    Cached as JSON next to the runs (keyed like a run).
    """
    cache_dir = Path(sweeps.RUNS_DIR if cache_dir is None else cache_dir)
    path = cache_dir / f"initnorm-{sweeps.run_key(config)}.json"
    if path.exists():
        try:
            return np.asarray(json.loads(path.read_text())["norms"], dtype=float)
        except (ValueError, KeyError):
            pass
    from rnnbook import runtime, training
    from rnnbook.data import atomic_write

    runtime.seed_everything(config.seed)
    task = config.task_data()
    model = config.model(task.num_classes)
    indexed = task.train.indexed
    stepper = training.Stepper(model, None, indexed, task.train.bank if indexed else None)
    x_all = task.train.index if indexed else task.train.frames()
    order = np.random.default_rng([config.seed, 7]).permutation(len(task.train))
    norms = []
    for b in range(0, len(order), config.batch_size):
        rows = np.sort(order[b:b + config.batch_size])
        _, stats = stepper._grads(x_all[rows], task.train.labels[rows])
        norms.append(float(stats["grad_norm"].numpy()))
    cache_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"config": config.to_dict(), "norms": norms}, allow_nan=True)
    atomic_write(path, lambda f: f.write(text.encode()))
    return np.asarray(norms, dtype=float)


def reference_norm(config: TrainConfig, seeds, cache_dir=None) -> float:
    """Median initial gradient norm over the batches of one epoch and the seeds."""
    norms = np.concatenate([initial_grad_norms(dataclasses.replace(config, seed=int(s)), cache_dir)
                            for s in seeds])
    finite = norms[np.isfinite(norms)]
    return float(np.median(finite)) if finite.size else math.nan


# ----------------------------------------------------------------------------- Keras clipping on known gradients


#: A known gradient of two variables: a large "weight" gradient and a small "bias" gradient.
KNOWN_GRADIENT = (np.array([[30.0, 40.0], [0.0, 5.0]]), np.array([0.3, -0.4]))


def _flat(grads) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(g, dtype=float)) for g in grads])


def clip_modes_table(threshold: float = 1.0, gradient=KNOWN_GRADIENT) -> pd.DataFrame:
    """What each Keras clipping option does to ``gradient`` (one step of SGD, rate 1).

    Columns: the clipped gradient of each variable, each variable's norm, the global
    norm, the cosine with the unclipped direction and the largest element.
    """
    from rnnbook import clipping

    original = _flat(gradient)
    rows = []
    for mode in clipping.CLIP_MODES:
        out = clipping.keras_clipped(list(gradient), mode, threshold)
        flat = _flat(out)
        cos = float(flat @ original / (np.linalg.norm(flat) * np.linalg.norm(original)))
        rows.append({
            "Keras option": "none" if mode == "none" else f"{mode}={threshold:g}",
            "weight gradient": np.array2string(np.asarray(out[0]).ravel(), precision=3, separator=", "),
            "bias gradient": np.array2string(np.asarray(out[1]).ravel(), precision=3, separator=", "),
            "‖weight‖": float(np.linalg.norm(out[0])),
            "‖bias‖": float(np.linalg.norm(out[1])),
            "global norm": float(np.linalg.norm(flat)),
            "cosine with unclipped": cos,
            "largest |element|": float(np.abs(flat).max()),
        })
    return pd.DataFrame(rows)


def optimizer_spike_table(threshold: float = 1.0, base_norm: float = 1.0, spike: float = 1000.0,
                          steps_before: int = 20, steps_after: int = 20, sgd_lr: float = 0.01,
                          adam_lr: float = 0.001) -> pd.DataFrame:
    """SGD and Adam, without and with ``global_clipnorm``, on a known gradient sequence:
    ``steps_before`` steps of a fixed gradient of norm ``base_norm``, one step ``spike``
    times larger, then ``steps_after`` normal steps again.

    Reports the length of the update at the spike, the typical update before it, the
    mean update after it, and the update at the spike relative to the typical one.
    """
    import keras

    from rnnbook import clipping

    direction = np.array([3.0, 4.0], dtype=np.float32) / 5.0
    grads = ([base_norm * direction] * steps_before + [spike * base_norm * direction]
             + [base_norm * direction] * steps_after)
    rows = []
    for name, lr in (("sgd", sgd_lr), ("adam", adam_lr)):
        for mode in ("none", "global_clipnorm"):
            opt = clipping.make_optimizer(name, lr, mode, threshold, momentum=0.0)
            var = keras.Variable(np.zeros(2, np.float32))
            lengths = []
            for g in grads:
                before = keras.ops.convert_to_numpy(var).copy()
                opt.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
                lengths.append(float(np.linalg.norm(keras.ops.convert_to_numpy(var) - before)))
            lengths = np.asarray(lengths)
            typical = float(lengths[steps_before - 1])
            rows.append({
                "optimizer": "SGD" if name == "sgd" else "Adam", "learning rate": lr,
                "clipping": clip_label(mode, threshold),
                "update before the spike": typical,
                "update at the spike": float(lengths[steps_before]),
                "spike / before": float(lengths[steps_before] / typical),
                "mean update after the spike": float(lengths[steps_before + 1:].mean()),
                "after / before": float(lengths[steps_before + 1:].mean() / typical),
            })
    return pd.DataFrame(rows)


def adam_scale_invariance(threshold: float = 1.0, scale: float = 100.0, steps: int = 10, lr: float = 1e-3) -> dict:
    """Adam's updates for a gradient sequence and for the same sequence clipped by a
    constant factor (every gradient ``scale`` times above ``threshold``): the largest
    relative difference of the two weight trajectories (Adam is scale-invariant)."""
    import keras

    from rnnbook import clipping

    rng = np.random.default_rng(0)
    direction = rng.normal(size=(steps, 4)).astype(np.float32)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    grads = scale * threshold * direction
    paths = {}
    for mode in ("none", "global_clipnorm"):
        opt = clipping.make_optimizer("adam", lr, mode, threshold)
        var = keras.Variable(np.zeros(4, np.float32))
        traj = []
        for g in grads:
            opt.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
            traj.append(keras.ops.convert_to_numpy(var).copy())
        paths[mode] = np.asarray(traj)
    diff = np.abs(paths["none"] - paths["global_clipnorm"]).max() / np.abs(paths["none"]).max()
    return {"scale": scale, "steps": steps, "max_relative_difference": float(diff)}


def overflow_table(threshold: float = 1.0) -> pd.DataFrame:
    """Keras's clipping options applied to gradients that already hold an Inf or a NaN:
    the share of finite entries left and the global norm after clipping."""
    from rnnbook import clipping

    cases = {
        "one element is Inf": [np.array([[np.inf, 1.0], [2.0, 3.0]]), np.array([0.5, -0.5])],
        "one element is NaN": [np.array([[np.nan, 1.0], [2.0, 3.0]]), np.array([0.5, -0.5])],
    }
    rows = []
    for case, grads in cases.items():
        for mode in clipping.CLIP_MODES:
            with np.errstate(invalid="ignore", over="ignore"):
                flat = _flat(clipping.keras_clipped(grads, mode, threshold))
                norm = float(np.sqrt(np.sum(flat.astype(np.float64) ** 2)))
            rows.append({"gradient": case, "Keras option": "none" if mode == "none" else f"{mode}={threshold:g}",
                         "finite entries": f"{int(np.isfinite(flat).sum())}/{flat.size}",
                         "global norm after": norm, "_finite_share": float(np.isfinite(flat).mean())})
    return pd.DataFrame(rows)


def overflow_gain(seq_len: int) -> float:
    """A recurrent gain whose ``gain ** (T - 1)`` (about 1e80) overflows float32 (max about 3e38)."""
    return float(f"{10 ** (80 / max(int(seq_len) - 1, 1)):.3g}")


def real_overflow(config: TrainConfig, gain: float | None = None, threshold: float = 1.0) -> pd.DataFrame:
    """The book's model with a ReLU recurrence whose initial recurrent matrix is scaled by
    ``gain`` (default :func:`overflow_gain`): one batch's forward pass overflows, and Keras's
    clipping of the resulting gradient is shown for every mode (share of finite entries,
    global norm).
    """
    from rnnbook import clipping, runtime, training

    gain = overflow_gain(config.seq_len) if gain is None else gain
    cfg = dataclasses.replace(config, recurrent_gain=float(gain))
    runtime.seed_everything(cfg.seed)
    task = cfg.task_data()
    model = cfg.model(task.num_classes)
    indexed = task.train.indexed
    stepper = training.Stepper(model, None, indexed, task.train.bank if indexed else None)
    x = (task.train.index if indexed else task.train.frames())[: cfg.batch_size]
    loss, grads, _, states = stepper.loss_and_grads(x, task.train.labels[: cfg.batch_size])
    grads = [np.asarray(g) for g in grads]
    raw = _flat(grads)
    state_max = float(np.nanmax(np.abs(np.asarray(states))))
    rows = []
    for mode in clipping.CLIP_MODES:
        with np.errstate(invalid="ignore", over="ignore"):
            flat = _flat(clipping.keras_clipped(grads, mode, threshold))
            norm = float(np.sqrt(np.sum(flat.astype(np.float64) ** 2)))
        rows.append({"Keras option": "none" if mode == "none" else f"{mode}={threshold:g}",
                     "finite entries": f"{int(np.isfinite(flat).sum())}/{flat.size}",
                     "global norm": norm, "_finite_share": float(np.isfinite(flat).mean())})
    table = pd.DataFrame(rows)
    table.attrs.update({"loss": float(loss), "max_abs_state": state_max,
                        "raw_finite_share": float(np.isfinite(raw).mean()), "gain": float(gain),
                        "seq_len": cfg.seq_len})
    return table


# ----------------------------------------------------------------------------- roles (for the prose)

#: Role name -> configuration key: the prose speaks of roles, so it holds whatever the grid is.
ROLES = {"tanh": "tanh-orthogonal", "relu": "relu-orthogonal", "irnn": "relu-identity",
         "tf1": "relu-glorot_uniform", "gru": "gru", "lstm": "lstm"}


def role_label(role: str) -> str:
    return parse_rnn_config(ROLES[role]).label


def value_at(summary: pd.DataFrame, label: str, column: str = "mean", **where) -> float:
    """``column`` of the summary row of ``label`` (and ``where``), NaN if absent."""
    mask = summary["label"] == label
    for k, v in where.items():
        mask &= summary[k] == v
    part = summary[mask]
    return float(part[column].iloc[0]) if len(part) else math.nan


def fmt_lag(x: float) -> str:
    """A reach for the prose: ``"25 frames"``, or ``"none"`` when no lag was above chance."""
    return "none" if not np.isfinite(x) else f"{int(x)} frames"


# ----------------------------------------------------------------------------- figures


def _legend_outside(ax, title=None):
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, title=title, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)


def fig_accuracy_vs_lag(runs: pd.DataFrame):
    """Test accuracy (diverged = chance) against the lag, one line per configuration, with
    the chance level; below, the share of diverged runs per lag and configuration."""
    import matplotlib.pyplot as plt

    from rnnbook import plots

    plots.set_style()
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9.0, 7.2), gridspec_kw={"height_ratios": [3, 1.3]})
    chance = float(runs["chance"].mean())
    plots.line_with_band(runs, x="lag", y="accuracy", hue="label", ax=ax, logx=True, chance=round(chance, 3),
                         ylabel="test accuracy (diverged run = chance)")
    lags = sorted(runs["lag"].unique())
    ax.set_xticks(lags)
    ax.set_xticklabels([str(int(v)) for v in lags])
    ax.minorticks_off()
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("time lag (frames between the digit to recall and the answer; T = lag + 1)")
    _legend_outside(ax)
    plots.divergence_chart(runs, x="lag", hue="label", ax=ax2)
    if ax2.get_legend():
        ax2.get_legend().remove()
    ax2.set_ylabel("share diverged")
    ax2.set_xlabel("time lag (frames)")
    fig.tight_layout()
    plt.close(fig)
    return fig


def fig_learning_curves(curves: pd.DataFrame, chance: float):
    """Validation accuracy after every epoch, one panel per lag (mean and 95 % band over seeds)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from rnnbook import plots

    plots.set_style()
    lags = sorted(curves["lag"].unique())
    fig, axes = plt.subplots(1, len(lags), figsize=(2.6 * len(lags) + 1.5, 3.4), sharey=True, squeeze=False)
    for i, (lag, ax) in enumerate(zip(lags, axes[0])):
        part = curves[curves["lag"] == lag]
        plots.line_with_band(part, x="epoch", y="val_accuracy", hue="label", ax=ax, chance=round(chance, 3),
                             ylabel="validation accuracy", title=f"lag {int(lag)}")
        if i < len(lags) - 1:
            ax.get_legend().remove()
        else:
            _legend_outside(ax)
        ax.set_ylim(0, 1.02)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    plt.close(fig)
    return fig


def fig_count_task(runs: pd.DataFrame):
    """Count task: test accuracy per configuration (bars: mean and 95 % CI; dots: runs) and the
    largest |hidden state| reached during training (log scale)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from rnnbook import plots

    plots.set_style()
    order = list(dict.fromkeys(runs["label"]))
    pal = plots.palette(order)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11.0, 4.4))
    sns.barplot(data=runs, x="label", y="accuracy", hue="label", order=order, hue_order=order, palette=pal,
                errorbar=("ci", 95), n_boot=500, seed=0, legend=False, ax=ax1, alpha=0.85)
    sns.stripplot(data=runs, x="label", y="accuracy", order=order, color="0.15", size=4, jitter=0.15, ax=ax1)
    chance = float(runs["chance"].mean())
    ax1.axhline(chance, ls="--", lw=1, color="0.35")
    ax1.text(len(order) - 0.5, chance, f" chance ({chance:.2f})", va="bottom", ha="right", fontsize=8, color="0.3")
    ax1.set_ylim(0, 1.0)
    ax1.set_ylabel("test accuracy (diverged run = chance)")
    ax1.set_xlabel("")
    state = runs.assign(max_abs_state=runs["max_abs_state"].replace([np.inf], np.nan))
    sns.stripplot(data=state, x="label", y="max_abs_state", hue="label", order=order, hue_order=order,
                  palette=pal, size=6, jitter=0.15, legend=False, ax=ax2)
    ax2.set_yscale("log")
    ax2.set_ylabel("largest |hidden state| during training (log)")
    ax2.set_xlabel("")
    div = runs.groupby("label", sort=False)["diverged"].agg(["sum", "count"])
    names = [f"{lab}\n{int(div.loc[lab, 'sum'])}/{int(div.loc[lab, 'count'])} diverged" for lab in order]
    for ax in (ax1, ax2):
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels(names, rotation=30, ha="right")
    fig.tight_layout()
    plt.close(fig)
    return fig


def fig_lr_stability(runs: pd.DataFrame):
    """Final accuracy (diverged = chance) and share of diverged runs against the SGD learning
    rate, per activation (colour) without and with clipping (line style)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from rnnbook import plots

    plots.set_style()
    data = runs.assign(diverged_share=runs["diverged"].astype(float))
    pal = plots.palette(list(dict.fromkeys(data["label"])))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11.0, 4.2))
    kw = dict(x="learning_rate", hue="label", style="clipping", palette=pal, markers=True, dashes=True)
    sns.lineplot(data=data, y="accuracy", errorbar=("ci", 95), n_boot=500, seed=0, ax=ax1, **kw)
    chance = float(runs["chance"].mean())
    ax1.axhline(chance, ls=":", lw=1, color="0.35", label=f"chance ({chance:.2f})")
    ax1.set_ylabel("test accuracy (diverged run = chance)")
    sns.lineplot(data=data, y="diverged_share", errorbar=None, ax=ax2, **kw)
    ax2.set_ylabel("share of runs diverged (NaN/Inf loss)")
    ax2.set_ylim(-0.04, 1.04)
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (SGD" + (f", momentum {float(runs['momentum'].iloc[0]):g})"
                                                if "momentum" in runs.columns else ")"))
    ax1.get_legend().remove()
    _legend_outside(ax2)
    for text in ax2.get_legend().get_texts():
        text.set_text({"label": "configuration", "clipping": "clipping"}.get(text.get_text(), text.get_text()))
    fig.tight_layout()
    plt.close(fig)
    return fig


def fig_width(runs: pd.DataFrame):
    """Largest |hidden state|, share of diverged runs and accuracy against the number of units."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from rnnbook import plots

    plots.set_style()
    data = runs.assign(diverged_share=runs["diverged"].astype(float),
                       max_abs_state=runs["max_abs_state"].replace([np.inf], np.nan))
    pal = plots.palette(list(dict.fromkeys(data["label"])))
    fig, axes = plt.subplots(1, 3, figsize=(12.5, 3.9))
    kw = dict(x="units", hue="label", palette=pal, marker="o")
    sns.lineplot(data=data, y="max_abs_state", errorbar=("ci", 95), n_boot=500, seed=0, ax=axes[0], **kw)
    sns.stripplot(data=data, x="units", y="max_abs_state", hue="label", palette=pal, native_scale=True,
                  size=3.5, alpha=0.6, legend=False, ax=axes[0])
    axes[0].set_yscale("log")
    axes[0].set_ylabel("largest |hidden state| in training (log)")
    sns.lineplot(data=data, y="diverged_share", errorbar=None, ax=axes[1], **kw)
    axes[1].set_ylim(-0.04, 1.04)
    axes[1].set_ylabel("share of runs diverged (NaN/Inf loss)")
    sns.lineplot(data=data, y="accuracy", errorbar=("ci", 95), n_boot=500, seed=0, ax=axes[2], **kw)
    chance = float(runs["chance"].mean())
    axes[2].axhline(chance, ls="--", lw=1, color="0.35", label=f"chance ({chance:.2f})")
    axes[2].set_ylabel("test accuracy (diverged run = chance)")
    units = sorted(data["units"].unique())
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(units)
        ax.set_xticklabels([str(int(u)) for u in units])
        ax.minorticks_off()
        ax.set_xlabel("hidden units")
        if ax.get_legend():
            ax.get_legend().remove()
    _legend_outside(axes[2])
    fig.tight_layout()
    plt.close(fig)
    return fig


def fig_wall(surface, paths: dict):
    """Pascanu's single-unit loss surface with gradient-descent paths."""
    from rnnbook import plots

    return plots.loss_surface(surface.w, surface.b, surface.loss, paths)


def fig_clip_traces(steps: pd.DataFrame, diverged: pd.DataFrame):
    """Global gradient norm (before clipping) and training loss over the updates, per clip
    mode (mean and 95 % band over seeds); a cross marks where a run diverged."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from rnnbook import plots

    plots.set_style()
    data = steps.replace([np.inf, -np.inf], np.nan)
    order = list(dict.fromkeys(data["clipping"]))
    modes = dict(zip(data["clipping"], data["clip_mode"]))
    pal = {c: plots.color_for(modes[c]) or plots.palette([c])[c] for c in order}
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9.0, 6.8), sharex=True)
    for ax, col, label in ((ax1, "grad_norm", "global gradient norm before clipping (log)"),
                           (ax2, "loss", "training loss (log)")):
        sns.lineplot(data=data, x="step", y=col, hue="clipping", hue_order=order, palette=pal,
                     errorbar=("ci", 95), n_boot=200, seed=0, lw=1.2, ax=ax)
        ax.set_yscale("log")
        ax.set_ylabel(label)
        for _, d in diverged.iterrows():
            last = data[(data["clipping"] == d["clipping"]) & (data["seed"] == d["seed"])]
            finite = last[np.isfinite(last[col])]
            if len(finite):
                ax.plot(d["diverged_step"], finite[col].iloc[-1], "X", ms=9, color=pal[d["clipping"]],
                        mec="black", mew=0.6)
    ax1.plot([], [], "X", color="0.5", mec="black", label="run diverged (NaN/Inf) here")
    _legend_outside(ax1)
    ax2.get_legend().remove()
    ax2.set_xlabel("update step")
    fig.tight_layout()
    plt.close(fig)
    return fig


def fig_clip_threshold(runs: pd.DataFrame, unclipped: pd.DataFrame, band=(0.5, 10.0)):
    """Share of diverged runs and final accuracy against the clipping threshold as a multiple of
    the reference gradient norm; Pascanu's rule-of-thumb band shaded; the unclipped runs as a
    dashed line."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from rnnbook import plots

    plots.set_style()
    data = runs.assign(diverged_share=runs["diverged"].astype(float))
    color = plots.color_for("global_clipnorm")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11.0, 4.0))
    sns.lineplot(data=data, x="multiple", y="diverged_share", errorbar=None, marker="o", color=color, ax=ax1,
                 label="global_clipnorm")
    sns.lineplot(data=data, x="multiple", y="accuracy", errorbar=("ci", 95), n_boot=500, seed=0, marker="o",
                 color=color, ax=ax2, label="global_clipnorm")
    none_color = plots.color_for("none")
    ax1.axhline(float(unclipped["diverged"].mean()), ls="--", color=none_color, label="no clipping")
    ax2.axhline(float(sweeps.accuracy_with_divergence(unclipped).mean()), ls="--", color=none_color,
                label="no clipping")
    chance = float(runs["chance"].mean())
    ax2.axhline(chance, ls=":", lw=1, color="0.35", label=f"chance ({chance:.2f})")
    for ax in (ax1, ax2):
        ax.axvspan(*band, color="0.85", alpha=0.6, zorder=0, label="Pascanu et al.: 0.5x to 10x")
        ax.set_xscale("log")
        ax.set_xlabel("threshold / median initial gradient norm")
    ax1.set_ylim(-0.04, 1.04)
    ax1.set_ylabel("share of runs diverged (NaN/Inf loss)")
    ax2.set_ylabel("test accuracy (diverged run = chance)")
    ax1.get_legend().remove()
    _legend_outside(ax2)
    fig.tight_layout()
    plt.close(fig)
    return fig


def clipping_modes() -> tuple:
    """Keras's clipping options, ``"none"`` first."""
    from rnnbook import clipping

    return tuple(clipping.CLIP_MODES)


# ----------------------------------------------------------------------------- the chapters' sweeps

#: Parameters that define the runs of the chapter "When ReLU helps".
RELU_PARAMS = ("seeds", "rnn_configs", "lags", "seq_len", "n_train", "n_val", "n_test", "units", "epochs",
               "batch_size", "learning_rate", "learning_rates", "clip_value", "stability_epochs", "widths",
               "width_learning_rate")
#: Parameters that define the runs of the chapter "Gradient clipping".
CLIPPING_PARAMS = ("seeds", "seq_len", "n_train", "n_val", "n_test", "units", "epochs", "batch_size",
                   "sgd_learning_rate", "clip_modes", "clip_value", "clip_multiples")


def _pick(params: dict, names) -> dict:
    missing = [n for n in names if n not in params]
    if missing:
        raise ExperimentError(f"missing parameter(s) {', '.join(missing)}")
    return {n: params[n] for n in names}


def relu_sweep(name: str, params: dict) -> pd.DataFrame:
    """One sweep of the chapter "When ReLU helps" (``recall``, ``count``, ``lr`` or ``width``),
    from the chapter's parameters; cached runs load instantly."""
    p = _pick(params, RELU_PARAMS)
    common = dict(n_train=p["n_train"], n_val=p["n_val"], n_test=p["n_test"], units=p["units"],
                  batch_size=p["batch_size"], learning_rate=p["learning_rate"])
    base = base_config(epochs=p["epochs"], **common)
    short = base_config(epochs=p["stability_epochs"], **common)
    if name == "recall":
        points = recall_grid(p["rnn_configs"], p["lags"], base)
    elif name == "count":
        points = count_grid(p["rnn_configs"], p["seq_len"], base)
    elif name == "lr":
        points = lr_grid(p["learning_rates"], p["clip_value"], p["seq_len"], short)
    elif name == "width":
        points = width_grid(p["widths"], p["seq_len"], short, p["width_learning_rate"])
    else:
        raise ExperimentError(f"unknown sweep {name!r}; choose recall, count, lr or width")
    return run_grid(points, p["seeds"], desc=f"relu: {name}")


def exploding_config(params: dict) -> TrainConfig:
    """The clipping chapter's exploding setting (seed 0) from its parameters."""
    p = _pick(params, CLIPPING_PARAMS)
    base = base_config(n_train=p["n_train"], n_val=p["n_val"], n_test=p["n_test"], units=p["units"],
                       epochs=p["epochs"], batch_size=p["batch_size"])
    return exploding_base(p["seq_len"], base, p["sgd_learning_rate"])


def clipping_sweep(name: str, params: dict) -> pd.DataFrame:
    """One sweep of the chapter "Gradient clipping": ``modes`` (every clip mode at
    ``clip_value``), ``none`` (the unclipped runs) or ``thresholds`` (``global_clipnorm`` at
    ``clip_multiples`` x :func:`reference_norm`)."""
    p = _pick(params, CLIPPING_PARAMS)
    cfg = exploding_config(p)
    if name == "modes":
        points = clip_mode_grid(cfg, p["clip_modes"], p["clip_value"])
    elif name == "none":
        points = clip_mode_grid(cfg, ["none"], p["clip_value"])
    elif name == "thresholds":
        points = threshold_grid(cfg, p["clip_multiples"], reference_norm(cfg, p["seeds"]))
    else:
        raise ExperimentError(f"unknown sweep {name!r}; choose modes, none or thresholds")
    return run_grid(points, p["seeds"], desc=f"clipping: {name}")


# ----------------------------------------------------------------------------- evidence and advice


def _k_of_n(frame: pd.DataFrame) -> str:
    return f"{int(frame['diverged'].sum())} of {len(frame)}"


def evidence(runs: dict, params: dict) -> dict:
    """Every number the recommendations and the front page quote, from the chapters' runs.

    ``runs`` holds the sweeps ``recall``, ``count``, ``lr``, ``width`` (:func:`relu_sweep`)
    and ``clip_modes``, ``clip_none``, ``clip_thresholds`` (:func:`clipping_sweep`).
    Values are floats (NaN when the grid lacks a configuration), ints or short strings.
    """
    from rnnbook import models

    e: dict = {}
    recall, count, lr, width = runs["recall"], runs["count"], runs["lr"], runs["width"]
    rs = summarise(recall, ["label", "lag"])
    lags = sorted(int(v) for v in recall["lag"].unique())
    e["lag_min"], e["lag_max"] = lags[0], lags[-1]
    e["chance_recall"] = float(recall["chance"].mean())
    labels = list(dict.fromkeys(recall["label"]))
    simple = [lab for lab in labels if lab not in ("GRU", "LSTM")]
    relu_labels = [lab for lab in simple if lab.startswith("ReLU")]
    for role in ROLES:
        label = role_label(role)
        e[f"acc_{role}_short"] = value_at(rs, label, lag=lags[0])
        e[f"acc_{role}_long"] = value_at(rs, label, lag=lags[-1])
        e[f"reach_{role}"] = fmt_lag(reach(recall, label))
        e[f"mean_acc_{role}"] = float(recall.loc[recall.label == label, "accuracy"].mean()) \
            if label in labels else math.nan
    reaches = {lab: reach(recall, lab) for lab in labels}
    e["reach_best_simple"] = fmt_lag(max([reaches[lab] for lab in simple if np.isfinite(reaches[lab])],
                                         default=math.nan))
    e["_reach_best_simple"] = max([reaches[lab] for lab in simple if np.isfinite(reaches[lab])], default=math.nan)
    gated = [reaches[lab] for lab in ("GRU", "LSTM") if lab in reaches and np.isfinite(reaches[lab])]
    e["_reach_best_gated"] = max(gated, default=math.nan)
    e["reach_best_gated"] = fmt_lag(e["_reach_best_gated"])
    e["gated_reach_word"] = _further(e["_reach_best_gated"], e["_reach_best_simple"])
    e["acc_best_simple_long"] = max([value_at(rs, lab, lag=lags[-1]) for lab in simple], default=math.nan)
    short = recall[recall.lag == lags[0]]
    best_relu = max(relu_labels, key=lambda lab: short.loc[short.label == lab, "accuracy"].mean(), default=None)
    e["best_relu_short_label"] = best_relu or "none"
    e["acc_best_relu_short"] = float(short.loc[short.label == best_relu, "accuracy"].mean()) if best_relu else math.nan
    tanh = role_label("tanh")
    e["_short_verdict"] = compare(best_relu, tanh, short) if best_relu and tanh in labels else "not compared"
    best_relu_mean = max(relu_labels, key=lambda lab: e.get("mean_acc_" + _role_of(lab), -1.0), default=None)
    e["best_relu_init"] = parse_rnn_config(_key_of(best_relu_mean)).recurrent_initializer if best_relu_mean else "none"
    relu_reach = max([reaches[lab] for lab in relu_labels if np.isfinite(reaches[lab])], default=math.nan)
    e["_relu_reach"], e["_tanh_reach"] = relu_reach, reaches.get(tanh, math.nan)
    e["reach_best_relu"] = fmt_lag(relu_reach)
    e["short_word"] = e["_short_verdict"]
    e["relu_reach_word"] = _further(relu_reach, e["_tanh_reach"])
    e["vanish_answer"] = {"further than": "Yes, in this book's runs.",
                          "no further than": "Not in what the trained network remembers.",
                          "less far than": "No: ReLU remembered less far than tanh."}[e["relu_reach_word"]]
    e["short_answer"] = {"loses to": "At short lags it did worse than tanh:",
                         "not compared": "Not compared here:"}.get(e["_short_verdict"], "Not at short lags:")
    e["_irnn_reach"], e["_lstm_reach"] = reaches.get(role_label("irnn"), math.nan), reaches.get("LSTM", math.nan)
    e["_irnn_verdict"] = irnn_vs_lstm(recall)
    e["n_recall_wins_relu"] = int(winners_by_lag(recall)["_winner"].str.startswith("ReLU").sum())
    e["n_lags"] = len(lags)

    cs = summarise(count, "label")
    e["chance_count"] = float(count["chance"].mean())
    state = count.groupby("label", sort=False)["max_abs_state"].median()
    for role in ROLES:
        label = role_label(role)
        e[f"count_acc_{role}"] = value_at(cs, label)
        e[f"count_state_{role}"] = float(state.get(label, math.nan))
    count_relu = [lab for lab in cs["label"] if lab.startswith("ReLU")]
    best_count_relu = max(count_relu, key=lambda lab: value_at(cs, lab), default=None)
    e["count_best_relu_label"] = best_count_relu or "none"
    e["count_acc_best_relu"] = value_at(cs, best_count_relu) if best_count_relu else math.nan
    e["count_state_best_relu"] = float(state.get(best_count_relu, math.nan)) if best_count_relu else math.nan
    e["count_best_label"] = cs.sort_values("mean", ascending=False).iloc[0]["label"]
    e["_count_verdict"] = compare(best_count_relu, tanh, count) if best_count_relu and tanh in set(cs.label) \
        else "not compared"

    for role in ("tanh", "relu"):
        key = ROLES[role]
        part = lr[lr.key == key]
        e[f"lr_div_{role}_noclip"] = int(part.loc[part.clip_mode == "none", "diverged"].sum())
        e[f"lr_div_{role}_clip"] = int(part.loc[part.clip_mode != "none", "diverged"].sum())
        e[f"lr_runs_{role}"] = int((part.clip_mode == "none").sum())
        unclipped = part[part.clip_mode == "none"]
        accs = unclipped.groupby("learning_rate")["accuracy"].mean()
        e[f"lr_best_acc_{role}"] = float(accs.max()) if len(accs) else math.nan
    e["explode_answer"] = ("But it is less forgiving:" if e["lr_div_relu_noclip"] > e["lr_div_tanh_noclip"]
                           else "Nor was it less stable here:")
    e["sgd_div_noclip"] = _k_of_n(lr[lr.clip_mode == "none"])
    e["sgd_div_clip"] = _k_of_n(lr[lr.clip_mode != "none"])
    e["adam_div"] = _k_of_n(pd.concat([recall, count], ignore_index=True))

    widths = sorted(int(u) for u in width["units"].unique())
    e["width_min"], e["width_max"] = widths[0], widths[-1]
    e["width_lr"] = f"{float(params['width_learning_rate']):g}"
    wstate = width.groupby(["key", "units"])["max_abs_state"].median()
    for role in ("tanh", "tf1"):
        for tag, u in (("min", widths[0]), ("max", widths[-1])):
            e[f"width_state_{role}_{tag}"] = float(wstate.get((ROLES[role], u), math.nan))
            part = width[(width.key == ROLES[role]) & (width.units == u)]
            e[f"width_div_{role}_{tag}"] = _k_of_n(part)
    tf1 = width[width.key == ROLES["tf1"]]
    e["_width_unstable"] = bool(
        e["width_state_tf1_max"] > 10 * e["width_state_tf1_min"]
        or tf1.loc[tf1.units == widths[-1], "diverged"].mean() > tf1.loc[tf1.units == widths[0], "diverged"].mean())

    table = clip_modes_table(1.0).set_index("Keras option")
    e["cos_global"] = float(table.loc["global_clipnorm=1", "cosine with unclipped"])
    e["cos_clipnorm"] = float(table.loc["clipnorm=1", "cosine with unclipped"])
    e["cos_value"] = float(table.loc["clipvalue=1", "cosine with unclipped"])
    modes, none, thr = runs["clip_modes"], runs["clip_none"], runs["clip_thresholds"]
    e["clip_div_none"] = _k_of_n(none)
    e["_clip_none_share"] = float(none["diverged"].mean())
    for mode, tag in (("clipnorm", "clipnorm"), ("global_clipnorm", "global"), ("clipvalue", "value")):
        part = modes[modes.clip_mode == mode]
        e[f"clip_div_{tag}"] = _k_of_n(part) if len(part) else "not run"
        e[f"clip_acc_{tag}"] = float(part["accuracy"].mean()) if len(part) else math.nan
    e["clip_acc_none"] = float(sweeps.accuracy_with_divergence(none).mean())
    e["_clip_global_share"] = float(modes.loc[modes.clip_mode == "global_clipnorm", "diverged"].mean()) \
        if (modes.clip_mode == "global_clipnorm").any() else math.nan
    e["ref_norm"] = reference_norm(exploding_config(params), params["seeds"])
    ts = summarise(thr, "multiple").sort_values("mean", ascending=False)
    e["best_multiple"] = float(ts.iloc[0]["multiple"])
    e["best_threshold"] = float(ts.iloc[0]["multiple"] * e["ref_norm"])
    e["best_threshold_acc"] = float(ts.iloc[0]["mean"])
    e["clip_value"] = float(params["clip_value"])
    e["n_features"] = int(models.build_encoder(base_config().conv_filters).output_shape[-1])
    everything = [recall, count, lr, width, modes, none, thr]
    e["n_runs_total"] = int(sum(len(r) for r in everything))
    e["n_diverged_total"] = int(sum(int(r["diverged"].sum()) for r in everything))
    return e


def _further(a: float, b: float) -> str:
    """'further than', 'no further than' or 'less far than' (NaN = no lag learned)."""
    a, b = np.nan_to_num(a, nan=-1.0), np.nan_to_num(b, nan=-1.0)
    return "further than" if a > b else ("no further than" if a == b else "less far than")


def _role_of(label: str | None) -> str:
    for role in ROLES:
        if label is not None and role_label(role) == label:
            return role
    return "?"


def _key_of(label: str) -> str:
    role = _role_of(label)
    if role != "?":
        return ROLES[role]
    act, _, init = label.partition(" + ")
    return f"{act.lower()}-{init.split(' ')[0]}"


def compare(a, b, frame) -> str:
    """'beats', 'loses to' or 'ties with' (every run of one above every run of the other)."""
    xa, xb = frame.loc[frame.label == a, "accuracy"], frame.loc[frame.label == b, "accuracy"]
    if beats_every_run(xa, xb):
        return "beats"
    if beats_every_run(xb, xa):
        return "loses to"
    return "ties with"


def irnn_vs_lstm(recall: pd.DataFrame) -> tuple[str, str]:
    """Le et al.'s claim (IRNN about as good as LSTM) against the recall runs: a verdict
    (``"supported"``, ``"partly"``, ``"not reproduced"`` or ``"not tested"``) and a Markdown reason."""
    irnn, lstm = role_label("irnn"), "LSTM"
    labels = set(recall["label"])
    if irnn not in labels or lstm not in labels:
        return "not tested", "The grid lacks the IRNN or the LSTM"
    ri, rl = reach(recall, irnn), reach(recall, lstm)
    if not (np.isfinite(ri) or np.isfinite(rl)):
        return "not tested", ("Neither the IRNN nor the LSTM is above chance at any lag here, so this budget "
                              "cannot test Le et al.'s finding that the two are comparable")
    losses = []
    for lag, part in recall.groupby("lag", sort=True):
        if compare(irnn, lstm, part) == "loses to":
            acc = part.groupby("label")["accuracy"].mean()
            losses.append(f"{int(lag)} frames ({acc[irnn]:.2f} against {acc[lstm]:.2f})")
    if np.nan_to_num(ri, nan=-1) < np.nan_to_num(rl, nan=-1):
        return "not reproduced", (f"This **disagrees** with Le et al., whose IRNN matched the LSTM on long "
                                  f"dependencies: here the IRNN's reach is {fmt_lag(ri)}, the LSTM's {fmt_lag(rl)}")
    if losses:
        return "partly", (f"This **partly** agrees with Le et al.: the IRNN is above chance as far as the LSTM "
                          f"({fmt_lag(ri)}), but every one of its runs is below every LSTM run at a lag of "
                          + ", ".join(losses))
    return "supported", (f"This agrees with Le et al.: the IRNN reaches as far as the LSTM ({fmt_lag(ri)}) and "
                         "never loses to it at any lag")


def public(e: dict) -> dict:
    """The evidence without its private (underscore) entries: what gets glued."""
    return {k: v for k, v in e.items() if not k.startswith("_")}


def advice(e: dict) -> dict:
    """The decision guide's advice, one Markdown sentence per question, from :func:`evidence`."""
    a = {}
    simple_reach, gated_reach = e["_reach_best_simple"], e["_reach_best_gated"]
    if not np.isfinite(simple_reach):
        a["advice_lag"] = ("Even the shortest lag defeated every simple RNN in this budget: start with a "
                           "**GRU or LSTM**.")
    else:
        a["advice_lag"] = (f"Up to about **{int(simple_reach)} frames** a SimpleRNN was above chance; beyond "
                           "that, use a **GRU or LSTM**" + (f" (above chance up to {int(gated_reach)})."
                                                            if np.isfinite(gated_reach) else "."))
    v = e["_count_verdict"]
    a["advice_count"] = {
        "beats": f"ReLU's unbounded state pays off here: the best ReLU cell ({e['count_best_relu_label']}) "
                 "**beat** tanh; try it, and compare with a GRU.",
        "loses to": "ReLU's unbounded state did **not** help: tanh beat every ReLU cell; keep tanh or a gated cell.",
    }.get(v, f"ReLU and tanh **tied** on counting; the best configuration was {e['count_best_label']}.")
    relu_better = e["_short_verdict"] == "beats" or e["n_recall_wins_relu"] > 0 or v == "beats"
    more_div = e["lr_div_relu_noclip"] > e["lr_div_tanh_noclip"]
    if relu_better:
        a["advice_activation"] = ("ReLU is worth a try where it won here, but " +
                                  ("it diverged more often than tanh without clipping: **clip** it." if more_div
                                   else "check stability at your learning rate."))
    else:
        a["advice_activation"] = ("**Keep tanh**, the default: ReLU won at no lag here" +
                                  (" and diverged more often without clipping." if more_div else "."))
    a["advice_init"] = (f"If you use ReLU, the **{e['best_relu_init']}** initialiser did best over the lags here"
                        + ("; it is also what TF1's `BasicRNNCell` used." if e["best_relu_init"] == "glorot_uniform"
                           else "; TF1's `BasicRNNCell` used glorot_uniform."))
    a["advice_width"] = (f"Wide ReLU layers need care: at the same Adam learning rate the largest state grew "
                         f"from {e['width_min']} to {e['width_max']} units; **lower the learning rate or clip**."
                         if e["_width_unstable"] else
                         "Width alone did not destabilise the ReLU layer at this learning rate; the usual "
                         "learning-rate tuning applies.")
    text = ("Start with **`global_clipnorm`**: it is Pascanu et al.'s rule and keeps the update's direction; "
            "`clipnorm` and `clipvalue` change it.")
    accs = {m: e[f"clip_acc_{m}"] for m in ("global", "clipnorm", "value")}
    if np.nan_to_num(accs["clipnorm"], nan=-1) > np.nan_to_num(accs["global"], nan=-1):
        text += (f" In the IRNN runs, though, `clipnorm` reached the higher accuracy ({accs['clipnorm']:.2f} "
                 f"against {accs['global']:.2f}): try both.")
    if np.nan_to_num(accs["value"], nan=1) < min(np.nan_to_num(accs["global"], nan=1),
                                                 np.nan_to_num(accs["clipnorm"], nan=1)):
        text += " `clipvalue` at the same number trained worst."
    a["advice_clip_mode"] = text
    band = 0.5 <= e["best_multiple"] <= 10
    a["advice_threshold"] = (f"Log the gradient norm over the first epoch; start near **{e['best_multiple']:g} x its "
                             "median** and move by factors of 10" +
                             (" (inside Pascanu et al.'s band)." if band else
                              ", which is below Pascanu et al.'s band when, as here, the initial norm is inflated."))
    a["advice_optimizer"] = ("**Adam** (the Keras default) produced no NaN in the recall and count sweeps; "
                             "with **SGD**, always clip." if e["adam_div"].startswith("0 ") else
                             "Clip with either optimizer: Adam runs diverged too.")
    a["advice_gated"] = ("When the lag is beyond the reach of every SimpleRNN above, or when it must be robust to "
                         "the learning rate without tuning.")
    return a


def claim_verdicts(e: dict) -> dict:
    """Verdict and reason (Markdown) for each claim of the usual answer and the literature."""
    c = {}
    v = e["_short_verdict"]
    c["claim_short"] = {"beats": "**supported**", "ties with": "**supported**", "loses to": "**partly**"}.get(
        v, "not tested")
    c["claim_short_why"] = (f"At lag {e['lag_min']} the best ReLU cell ({e['best_relu_short_label']}, "
                            f"{e['acc_best_relu_short']:.2f}) {v} tanh ({e['acc_tanh_short']:.2f}).")
    rr, tr = e["_relu_reach"], e["_tanh_reach"]
    longer = np.nan_to_num(rr, nan=-1) > np.nan_to_num(tr, nan=-1)
    c["claim_vanish"] = "**supported**" if longer else "**not supported**"
    c["claim_vanish_why"] = (f"Longest lag above chance: best ReLU cell {fmt_lag(rr)}, tanh {fmt_lag(tr)}. "
                             + ("" if longer else "Whatever ReLU does to the gradient at initialisation, it did "
                                "not turn into longer memory in training."))
    more = e["lr_div_relu_noclip"] > e["lr_div_tanh_noclip"]
    c["claim_explode"] = "**supported**" if more else "**not supported**"
    c["claim_explode_why"] = (f"Unclipped SGD runs diverged: ReLU {e['lr_div_relu_noclip']} of {e['lr_runs_relu']}, "
                              f"tanh {e['lr_div_tanh_noclip']} of {e['lr_runs_tanh']}; the largest ReLU state at "
                              f"{e['width_max']} units was {e['width_state_tf1_max']:.3g}.")
    g, s = e["_reach_best_gated"], e["_reach_best_simple"]
    better = np.nan_to_num(g, nan=-1) > np.nan_to_num(s, nan=-1)
    c["claim_gated"] = "**supported**" if better else "**not supported**"
    c["claim_gated_why"] = (f"Longest lag above chance: gated {fmt_lag(g)}, simple {fmt_lag(s)}; at lag {e['lag_max']} "
                            f"GRU {e['acc_gru_long']:.2f}, LSTM {e['acc_lstm_long']:.2f}, best simple "
                            f"{e['acc_best_simple_long']:.2f}.")
    helped = e["_clip_none_share"] > np.nan_to_num(e["_clip_global_share"], nan=1.0)
    c["claim_clip"] = "**supported**" if helped else ("not tested" if e["_clip_none_share"] == 0 else "**not supported**")
    c["claim_clip_why"] = (f"IRNN with SGD diverged in {e['clip_div_none']} runs without clipping and in "
                           f"{e['clip_div_global']} with `global_clipnorm`; accuracy {e['clip_acc_none']:.2f} "
                           f"against {e['clip_acc_global']:.2f}. It cannot repair a NaN.")
    verdict, why = e["_irnn_verdict"]
    c["claim_irnn"] = verdict if verdict == "not tested" else f"**{verdict}**"
    c["claim_irnn_why"] = why + ("." if verdict == "supported" else
                                 "; Le et al. trained far longer, with SGD and clipping, on low-dimensional "
                                 "inputs (see the learning curves in the ReLU chapter).")
    needed = e["lr_div_relu_noclip"] > e["lr_div_relu_clip"]
    c["claim_d2l"] = "**yes**" if needed else "**not here**"
    c["claim_d2l_why"] = (f"ReLU trained with SGD diverged in {e['lr_div_relu_noclip']} of {e['lr_runs_relu']} runs "
                          f"without clipping and in {e['lr_div_relu_clip']} of {e['lr_runs_relu']} with "
                          f"`global_clipnorm={e['clip_value']:g}`.")
    band = 0.5 <= e["best_multiple"] <= 10
    c["claim_band"] = "**supported**" if band else "**not reproduced**"
    c["claim_band_why"] = (f"Best multiple of the median *initial* norm ({e['ref_norm']:.3g}): "
                           f"{e['best_multiple']:g}" + ("." if band else
                                                        "; the identity initialisation inflates the initial norm, "
                                                        "so the band measured against it is too high."))
    return c


def fig_decision_map(recall: pd.DataFrame):
    """Heatmap: mean test accuracy (diverged = chance) per configuration and lag, annotated."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from rnnbook import plots

    plots.set_style()
    order = list(dict.fromkeys(recall["label"]))
    table = recall.pivot_table(index="label", columns="lag", values="accuracy", aggfunc="mean").reindex(order)
    fig, ax = plt.subplots(figsize=(1.1 * table.shape[1] + 3.5, 0.5 * len(order) + 1.6))
    sns.heatmap(table, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="mako", ax=ax,
                cbar_kws={"label": "mean test accuracy (diverged = chance)"})
    ax.set_xlabel("time lag (frames)")
    ax.set_ylabel("")
    fig.tight_layout()
    plt.close(fig)
    return fig


def tf1_cell_status() -> str:
    """Whether TF1's ``BasicRNNCell`` still exists in the installed TensorFlow (Markdown)."""
    import tensorflow as tf

    try:
        tf.compat.v1.nn.rnn_cell.BasicRNNCell  # noqa: B018
    except Exception as exc:  # noqa: BLE001 - the message is what the reader needs
        message = str(exc).replace("`", "").strip().rstrip(".")
        return f"`tf.compat.v1.nn.rnn_cell.BasicRNNCell` raises *{type(exc).__name__}: {message}*"
    return "`tf.compat.v1.nn.rnn_cell.BasicRNNCell` still exists in the installed TensorFlow, but is deprecated"


def keras_port(units: int, n_features: int, evidence: dict | None = None, seed: int = 0) -> dict:
    """The Keras 3 equivalent of ``BasicRNNCell(units, activation=tf.nn.relu)``: the code, its
    initialiser bound, its parameter count, a check against the equations in NumPy, and the
    code the measurements recommend instead (from :func:`evidence`)."""
    import keras

    limit = math.sqrt(6.0 / (n_features + 2 * units))
    init_k = keras.initializers.RandomUniform(-limit, limit, seed=seed)
    init_r = keras.initializers.RandomUniform(-limit, limit, seed=seed + 1)
    layer = keras.layers.SimpleRNN(units, activation="relu", kernel_initializer=init_k,
                                   recurrent_initializer=init_r, return_sequences=True)
    x = np.random.default_rng(seed).normal(size=(2, 5, n_features)).astype(np.float32)
    states = keras.ops.convert_to_numpy(layer(x))
    k, r, b = (keras.ops.convert_to_numpy(w) for w in layer.weights)
    h = np.zeros((2, units), np.float32)
    ref = []
    for t in range(x.shape[1]):
        h = np.maximum(x[:, t] @ k + h @ r + b, 0.0)
        ref.append(h)
    max_diff = float(np.abs(np.stack(ref, 1) - states).max())
    exact = (
        "```python\nimport keras\n\n"
        f"# TF1: tf.nn.rnn_cell.BasicRNNCell({units}, activation=tf.nn.relu)\n"
        f"n_inputs = {n_features}                                  # features per frame from the CNN\n"
        f"limit = (6 / (n_inputs + 2 * {units})) ** 0.5            # TF1's Glorot bound over [input, state]\n"
        "init = keras.initializers.RandomUniform(-limit, limit)\n"
        f"rnn = keras.layers.SimpleRNN({units}, activation=\"relu\",\n"
        "                             kernel_initializer=init, recurrent_initializer=init)\n```"
    )
    e = evidence or {}
    relu_won = e.get("_short_verdict") == "beats" or e.get("n_recall_wins_relu", 0) > 0 \
        or e.get("_count_verdict") == "beats"
    reach = e.get("_reach_best_simple", math.nan)
    reach_text = (f"lags beyond about {int(reach)} frames: a gated cell" if np.isfinite(reach)
                  else "even the shortest lag tried needed a gated cell here")
    threshold = e.get("best_multiple", 1.0)
    lines = ["```python", "import keras", ""]
    if relu_won:
        init = e.get("best_relu_init", "orthogonal")
        lines += [f"# ReLU won somewhere in this book's measurements; its best initialiser was {init}",
                  f"rnn = keras.layers.SimpleRNN({units}, activation=\"relu\", recurrent_initializer=\"{init}\")"]
    else:
        lines += ["# the Keras defaults (tanh, orthogonal): ReLU did not beat them in this book's measurements",
                  f"rnn = keras.layers.SimpleRNN({units})"]
    lines += [f"# {reach_text}",
              f"# rnn = keras.layers.GRU({units})",
              "",
              "# clip the global norm: measure the median gradient norm over the first epoch first",
              "median_norm = 1.0  # replace with your measurement",
              f"optimizer = keras.optimizers.Adam(1e-3, global_clipnorm={threshold:g} * median_norm)",
              "```"]
    return {"tf1_status": tf1_cell_status(), "exact_code": exact, "recommended_code": "\n".join(lines),
            "limit": limit, "params": int(layer.count_params()), "max_abs_diff": max_diff}


def headline(e: dict) -> str:
    """The book's one-sentence answer, in plain text, from :func:`evidence`."""
    relu_won = e["_short_verdict"] == "beats" or e["n_recall_wins_relu"] > 0 or e["_count_verdict"] == "beats"
    first = ("ReLU is worth trying where it won here, with clipping" if relu_won
             else "keep tanh, the default: ReLU did not beat it here")
    reach = e["_reach_best_simple"]
    second = (f"move to a GRU or LSTM beyond about {int(reach)} frames" if np.isfinite(reach)
              else "use a GRU or LSTM: no simple RNN was above chance even at the shortest lag here")
    return f"{first}; {second}; and clip the global gradient norm (global_clipnorm) when training with SGD."


def modes_verdict(traces: pd.DataFrame) -> str:
    """One Markdown sentence comparing the clipping options of the traces (by test accuracy,
    diverged runs as chance); a difference counts when every run of one beats every run of the other."""
    frame = traces.assign(label=traces["clip_mode"])
    present = [m for m in ("clipnorm", "global_clipnorm", "clipvalue") if m in set(frame["label"])]
    if not present:
        return "No clipping option was run"
    best = max(present, key=lambda m: frame.loc[frame.label == m, "accuracy"].mean())
    parts = []
    for m in present:
        if m != best:
            parts.append(f"{compare(best, m, frame)} `{m}`")
    text = f"By test accuracy `{best}` did best of the clipping options"
    if parts:
        text += " (it " + ", ".join(parts) + "; a win means every one of its runs beats every run of the other)"
    if "none" in set(frame["label"]):
        text += f", and it {compare(best, 'none', frame)} no clipping"
    if best != "global_clipnorm" and "global_clipnorm" in present:
        text += (f". Pascanu et al.'s rule is `global_clipnorm`; in this setting `{best}` trained better, so "
                 "the option is worth trying, not assuming")
    return text


def lr_accuracy_note(lr_runs: pd.DataFrame) -> str:
    """A caveat when no learning rate of the sweep got clearly above chance."""
    if any(above_chance(g) for _, g in lr_runs.groupby(["key", "clipping", "learning_rate"])):
        return "Some settings are clearly above chance at every seed, so the left panel ranks them too."
    return ("After so few epochs no setting of this sweep is clearly above chance at every seed, so the "
            "left panel mainly shows that diverged runs fall to chance; the right panel carries the evidence.")
