"""Optimizers and Keras's gradient-clipping options, by name.

Keras 3 optimizers accept at most one of three clipping arguments:

* ``clipnorm``: each variable's gradient is rescaled on its own to norm <= threshold
  (the update direction can change);
* ``global_clipnorm``: all gradients are rescaled together by one factor so their
  joint norm is <= threshold (Pascanu et al.'s rule; the direction is kept);
* ``clipvalue``: every element is clipped to [-threshold, threshold].

Example:
    >>> opt = make_optimizer("sgd", 0.1, clip_mode="global_clipnorm", clip_threshold=1.0)
    >>> [round(float(v), 3) for v in keras_clipped([[3.0, 4.0]], "global_clipnorm", 1.0)[0]]
    [0.6, 0.8]
"""
from __future__ import annotations

import math

import keras
import numpy as np

from rnnbook.choices import CLIP_MODES, OPTIMIZERS, check_choice


class ClipError(ValueError):
    """An optimizer or clipping argument outside the supported set."""


def check_clip(clip_mode: str, clip_threshold: float) -> None:
    """Raise :class:`ClipError` unless the mode is supported and the threshold is positive."""
    check_choice("clip_mode", clip_mode, CLIP_MODES, ClipError)
    if clip_mode != "none" and not (isinstance(clip_threshold, (int, float)) and math.isfinite(clip_threshold)
                                    and clip_threshold > 0):
        raise ClipError(f"clip_threshold={clip_threshold!r} must be a positive finite number")


def make_optimizer(name: str = "adam", learning_rate: float = 1e-3, clip_mode: str = "none",
                   clip_threshold: float = 1.0, momentum: float = 0.9) -> keras.optimizers.Optimizer:
    """A Keras optimizer (``sgd`` with momentum, ``adam`` or ``rmsprop``) with the given clipping."""
    check_choice("optimizer", name, OPTIMIZERS, ClipError)
    if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate > 0):
        raise ClipError(f"learning_rate={learning_rate!r} must be a positive finite number")
    check_clip(clip_mode, clip_threshold)
    clip = {} if clip_mode == "none" else {clip_mode: float(clip_threshold)}
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=momentum, **clip)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate, **clip)
    return keras.optimizers.RMSprop(learning_rate, **clip)


def keras_clipped(gradients, clip_mode: str, clip_threshold: float) -> list:
    """The gradients as Keras's own clipping leaves them: one SGD step (rate 1, no momentum)
    from zero weights, read back as ``-update``. Shows what each option really does."""
    check_clip(clip_mode, clip_threshold)
    grads = [np.asarray(g, dtype=np.float32) for g in gradients]
    variables = [keras.Variable(np.zeros_like(g)) for g in grads]
    clip = {} if clip_mode == "none" else {clip_mode: float(clip_threshold)}
    opt = keras.optimizers.SGD(1.0, **clip)
    opt.apply_gradients(zip([keras.ops.convert_to_tensor(g) for g in grads], variables))
    return [0.0 - keras.ops.convert_to_numpy(v) for v in variables]
