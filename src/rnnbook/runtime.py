"""Seeds, deterministic ops and thread settings for TensorFlow.

Call :func:`configure` once before building models; :func:`seed_everything`
before every run that must be repeatable.
"""
from __future__ import annotations

import os
import random

import numpy as np

_CONFIGURED = False


def configure(threads: int | None = None) -> None:
    """Make TensorFlow deterministic and quiet; idempotent.

    ``threads`` caps intra-op parallelism (default: every core).
    """
    global _CONFIGURED
    if _CONFIGURED:
        return
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    tf.config.experimental.enable_op_determinism()
    n = threads or os.cpu_count() or 1
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, n))
    except RuntimeError:  # already initialised: settings are fixed for this process
        pass
    _CONFIGURED = True


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, TensorFlow and Keras from one integer."""
    configure()
    import keras

    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
