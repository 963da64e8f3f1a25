"""Seeds, deterministic ops and thread settings for TensorFlow.

Call :func:`configure` once before building models; :func:`seed_everything`
before every run that must be repeatable.

TensorFlow's global seed is set once per process, in :func:`configure`, and not per run:
``tf.random.set_seed`` (which ``keras.utils.set_random_seed`` calls) clears TensorFlow's
kernel caches, so the first call of every traced step afterwards pays for instantiating
its graph again, about 0.25 s a run measured here. No run needs it: every kernel the book
trains is drawn by an initializer with an explicit seed (:func:`rnnbook.models.reinitialize`),
data come from NumPy generators seeded per run, and no op draws from TensorFlow's global
random state (``tests/test_runtime.py`` checks that a run's numbers do not depend on the
runs before it in the process).

Every run uses :data:`RUN_THREADS` intra-op threads, whatever the machine's core count and
whichever executor runs it (in the kernel, in a worker process of :mod:`rnnbook.executors`, as a
Ray task): the thread count decides how TensorFlow splits some float32 sums, so it is part of the
protocol, like the seed. A machine's cores run several runs side by side instead.
"""
from __future__ import annotations

import random

import numpy as np

_CONFIGURED = False
#: TensorFlow's global seed, set once per process (see the module docstring).
GLOBAL_TF_SEED = 0
#: Intra-op threads of every run (part of the protocol, see the module docstring). One: a
#: 64-unit recurrence at batch 128 gained about 10 % from a second thread on two cores, while a
#: second run beside it nearly doubles what the cores do.
RUN_THREADS = 1


def configure(threads: int | None = None) -> None:
    """Make TensorFlow deterministic and quiet; idempotent.

    ``threads``: intra-op threads (default :data:`RUN_THREADS`; inter-op threads: as many, at most
    two). Only the first call of a process counts, and only before TensorFlow has run anything.
    """
    global _CONFIGURED
    if _CONFIGURED:
        return
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    tf.random.set_seed(GLOBAL_TF_SEED)
    tf.config.experimental.enable_op_determinism()
    n = int(threads or RUN_THREADS)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, n))
    except RuntimeError:  # already initialised: settings are fixed for this process
        pass
    _CONFIGURED = True


def threads() -> int:
    """The intra-op threads TensorFlow runs with in this process (0: TensorFlow's default, every core)."""
    import tensorflow as tf

    return tf.config.threading.get_intra_op_parallelism_threads()


def seed_everything(seed: int) -> None:
    """Seed Python's and NumPy's global generators (which Keras's unseeded initializers draw
    from) from one integer; TensorFlow's global seed stays as :func:`configure` set it."""
    configure()
    random.seed(seed)
    np.random.seed(seed)
