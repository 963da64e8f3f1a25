"""What Keras's clipping options do, on known gradients and on one overflowing batch (no
training): the exact tables of the chapter "Gradient clipping" (:mod:`rnnbook.experiments.clipping`).

Example:
    >>> clip_label("global_clipnorm", 1.0)
    'global_clipnorm=1'
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from rnnbook.choices import CLIP_MODES
from rnnbook.training import TrainConfig

#: A known gradient of two variables: a large "weight" gradient and a small "bias" gradient.
KNOWN_GRADIENT = (np.array([[30.0, 40.0], [0.0, 5.0]]), np.array([0.3, -0.4]))


def clip_label(mode: str, threshold: float) -> str:
    """``"no clipping"`` or ``"global_clipnorm=1"``."""
    return "no clipping" if mode == "none" else f"{mode}={threshold:g}"


def _flat(grads) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(g, dtype=float)) for g in grads])


def clip_modes_table(threshold: float = 1.0, gradient=KNOWN_GRADIENT) -> pd.DataFrame:
    """What each Keras clipping option does to ``gradient`` (one step of SGD, rate 1): the clipped
    gradient of each variable, each variable's norm, the global norm, the cosine with the
    unclipped direction and the largest element."""
    from rnnbook import clipping

    original = _flat(gradient)
    rows = []
    for mode in CLIP_MODES:
        out = clipping.keras_clipped(list(gradient), mode, threshold)
        flat = _flat(out)
        rows.append({
            "Keras option": "none" if mode == "none" else f"{mode}={threshold:g}",
            "weight gradient": np.array2string(np.asarray(out[0]).ravel(), precision=3, separator=", "),
            "bias gradient": np.array2string(np.asarray(out[1]).ravel(), precision=3, separator=", "),
            "‖weight‖": float(np.linalg.norm(out[0])), "‖bias‖": float(np.linalg.norm(out[1])),
            "global norm": float(np.linalg.norm(flat)),
            "cosine with unclipped": float(flat @ original / (np.linalg.norm(flat) * np.linalg.norm(original))),
            "largest |element|": float(np.abs(flat).max())})
    return pd.DataFrame(rows)


def optimizer_spike_table(threshold: float = 1.0, base_norm: float = 1.0, spike: float = 1000.0,
                          steps_before: int = 20, steps_after: int = 20, sgd_lr: float = 0.01,
                          adam_lr: float = 0.001) -> pd.DataFrame:
    """SGD (no momentum) and Adam, without and with ``global_clipnorm``, on a known gradient
    sequence: ``steps_before`` steps of norm ``base_norm``, one ``spike`` times larger, then
    ``steps_after`` normal ones; the update lengths before, at and after the spike."""
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
            typical, after = float(lengths[steps_before - 1]), float(lengths[steps_before + 1:].mean())
            rows.append({"optimizer": "SGD" if name == "sgd" else "Adam", "learning rate": lr,
                         "clipping": clip_label(mode, threshold), "update before the spike": typical,
                         "update at the spike": float(lengths[steps_before]),
                         "spike / before": float(lengths[steps_before] / typical),
                         "mean update after the spike": after, "after / before": after / typical})
    return pd.DataFrame(rows)


def adam_scale_invariance(threshold: float = 1.0, scale: float = 100.0, steps: int = 10, lr: float = 1e-3) -> dict:
    """Adam on a gradient sequence and on the same sequence clipped by a constant factor (every
    gradient ``scale`` times above ``threshold``): the largest relative difference of the two
    weight trajectories (Adam is scale-invariant)."""
    import keras

    from rnnbook import clipping

    direction = np.random.default_rng(0).normal(size=(steps, 4)).astype(np.float32)
    grads = scale * threshold * direction / np.linalg.norm(direction, axis=1, keepdims=True)
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


def _clipped_rows(grads, threshold: float) -> list[dict]:
    from rnnbook import clipping

    rows = []
    for mode in CLIP_MODES:
        with np.errstate(invalid="ignore", over="ignore"):
            flat = _flat(clipping.keras_clipped(grads, mode, threshold))
            norm = float(np.sqrt(np.sum(flat.astype(np.float64) ** 2)))
        rows.append({"Keras option": "none" if mode == "none" else f"{mode}={threshold:g}",
                     "finite entries": f"{int(np.isfinite(flat).sum())}/{flat.size}",
                     "global norm after": norm, "_finite_share": float(np.isfinite(flat).mean())})
    return rows


def overflow_table(threshold: float = 1.0) -> pd.DataFrame:
    """Keras's clipping options applied to gradients that already hold an Inf or a NaN: the finite
    entries left and the global norm after clipping."""
    cases = {"one element is Inf": [np.array([[np.inf, 1.0], [2.0, 3.0]]), np.array([0.5, -0.5])],
             "one element is NaN": [np.array([[np.nan, 1.0], [2.0, 3.0]]), np.array([0.5, -0.5])]}
    return pd.DataFrame([{"gradient": case, **row} for case, grads in cases.items()
                         for row in _clipped_rows(grads, threshold)])


def overflow_gain(seq_len: int) -> float:
    """A recurrent gain whose ``gain ** (T - 1)`` (about 1e80) overflows float32 (max about 3e38)."""
    return float(f"{10 ** (80 / max(int(seq_len) - 1, 1)):.3g}")


def real_overflow(config: TrainConfig, gain: float | None = None, threshold: float = 1.0) -> pd.DataFrame:
    """The book's model with a ReLU recurrence whose initial recurrent matrix is scaled by ``gain``
    (default :func:`overflow_gain`): one batch's forward pass overflows; each Keras option applied
    to the resulting gradient (finite entries, global norm). ``attrs`` hold the loss, the largest
    state, the share of finite raw entries and the gain."""
    from rnnbook import engine, runtime

    gain = overflow_gain(config.seq_len) if gain is None else gain
    cfg = dataclasses.replace(config, recurrent_gain=float(gain), max_updates=None)
    runtime.seed_everything(cfg.seed)
    task = cfg.task_data()
    model = cfg.model(task.num_classes)
    indexed = task.train.indexed
    stepper = engine.Stepper(model, None, indexed, task.train.bank if indexed else None)
    x = (task.train.index if indexed else task.train.frames())[: cfg.batch_size]
    loss, grads, _, states = stepper.loss_and_grads(x, task.train.labels[: cfg.batch_size])
    grads = [np.asarray(g) for g in grads]
    table = pd.DataFrame(_clipped_rows(grads, threshold)).rename(columns={"global norm after": "global norm"})
    table.attrs.update({"loss": float(loss), "max_abs_state": float(np.nanmax(np.abs(np.asarray(states)))),
                        "raw_finite_share": float(np.isfinite(_flat(grads)).mean()), "gain": float(gain),
                        "seq_len": cfg.seq_len})
    return table


def number_or_word(x: float, fmt: str = ".3g") -> str:
    """``x`` formatted, or in words when it is not finite (a page never pastes a bare NaN)."""
    x = float(x)
    if math.isnan(x):
        return "not a number (the float32 arithmetic broke down)"
    if math.isinf(x):
        return f"{'minus ' if x < 0 else ''}infinite (beyond float32)"
    return format(x, fmt)


def in_words(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every non-finite number written in words (:func:`number_or_word`)."""
    out = table.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]) and not np.isfinite(out[col]).all():
            out[col] = [number_or_word(v) for v in out[col]]
    return out
