"""Keras's clipping options against hand computations, and the optimizer factory's checks."""
import math

import numpy as np
import pytest

import rnnbook  # noqa: F401  (quiets TensorFlow first)
import keras

from rnnbook import clipping
from rnnbook.clipping import ClipError

GRADS = [[3.0, 4.0], [0.0, 10.0]]  # norms 5 and 10, joint norm sqrt(125)


def close(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, np.asarray(w, np.float32), rtol=1e-6, atol=1e-7)


def test_no_clipping_passes_gradients_through():
    close(clipping.keras_clipped(GRADS, "none", 1.0), GRADS)


def test_clipnorm_rescales_each_variable_on_its_own():
    close(clipping.keras_clipped(GRADS, "clipnorm", 1.0), [[0.6, 0.8], [0.0, 1.0]])


def test_global_clipnorm_rescales_all_together():
    s = 1.0 / math.sqrt(125.0)
    got = clipping.keras_clipped(GRADS, "global_clipnorm", 1.0)
    close(got, [[3 * s, 4 * s], [0.0, 10 * s]])
    assert math.isclose(math.sqrt(sum(float((g ** 2).sum()) for g in got)), 1.0, rel_tol=1e-6)


def test_clipnorm_and_global_clipnorm_differ():
    per_var = clipping.keras_clipped(GRADS, "clipnorm", 1.0)
    joint = clipping.keras_clipped(GRADS, "global_clipnorm", 1.0)
    assert not np.allclose(per_var[1], joint[1])
    # global keeps the direction of the whole gradient; per-variable does not
    flat = lambda gs: np.concatenate([np.ravel(g) for g in gs])  # noqa: E731
    d0 = flat(GRADS) / np.linalg.norm(flat(GRADS))
    assert np.allclose(flat(joint) / np.linalg.norm(flat(joint)), d0, atol=1e-6)
    assert not np.allclose(flat(per_var) / np.linalg.norm(flat(per_var)), d0, atol=1e-3)


@pytest.mark.parametrize("mode", ["clipnorm", "global_clipnorm"])
def test_norm_clipping_leaves_small_gradients_alone(mode):
    close(clipping.keras_clipped(GRADS, mode, 20.0), GRADS)


def test_clipnorm_between_the_two_norms():
    # threshold 7: the first variable (norm 5) is untouched, the second (norm 10) is scaled by 0.7
    close(clipping.keras_clipped(GRADS, "clipnorm", 7.0), [[3.0, 4.0], [0.0, 7.0]])
    s = 7.0 / math.sqrt(125.0)
    close(clipping.keras_clipped(GRADS, "global_clipnorm", 7.0), [[3 * s, 4 * s], [0.0, 10 * s]])


def test_clipvalue_is_element_wise():
    grads = [[-3.0, 0.5, 2.0], [[0.25, -0.75], [10.0, -0.1]]]
    close(clipping.keras_clipped(grads, "clipvalue", 1.0), [[-1.0, 0.5, 1.0], [[0.25, -0.75], [1.0, -0.1]]])
    close(clipping.keras_clipped(grads, "clipvalue", 0.5), [[-0.5, 0.5, 0.5], [[0.25, -0.5], [0.5, -0.1]]])


def test_inf_gradient_under_global_clipnorm_gives_nan():
    got = clipping.keras_clipped([[np.inf, 1.0], [2.0]], "global_clipnorm", 1.0)
    assert np.isnan(got[0][0])
    assert not all(np.isfinite(g).all() for g in got)  # clipping cannot undo an overflow


def test_clipvalue_bounds_an_inf_gradient():
    close(clipping.keras_clipped([[np.inf, -np.inf, 0.3]], "clipvalue", 1.0), [[1.0, -1.0, 0.3]])


@pytest.mark.parametrize("name, cls", [("sgd", keras.optimizers.SGD), ("adam", keras.optimizers.Adam),
                                       ("rmsprop", keras.optimizers.RMSprop)])
@pytest.mark.parametrize("mode", clipping.CLIP_MODES)
def test_make_optimizer_sets_exactly_one_clip(name, cls, mode):
    opt = clipping.make_optimizer(name, 0.05, clip_mode=mode, clip_threshold=2.5)
    assert isinstance(opt, cls)
    assert math.isclose(float(keras.ops.convert_to_numpy(opt.learning_rate)), 0.05, rel_tol=1e-6)
    for m in ("clipnorm", "global_clipnorm", "clipvalue"):
        assert getattr(opt, m) == (2.5 if m == mode else None)


def test_make_optimizer_sgd_momentum():
    assert math.isclose(clipping.make_optimizer("sgd", 0.1, momentum=0.5).momentum, 0.5)


def test_make_optimizer_clips_like_keras_clipped():
    v = [keras.Variable(np.zeros(2, np.float32)), keras.Variable(np.zeros(2, np.float32))]
    opt = clipping.make_optimizer("sgd", 1.0, "clipnorm", 1.0, momentum=0.0)
    opt.apply_gradients(zip([keras.ops.convert_to_tensor(np.asarray(g, np.float32)) for g in GRADS], v))
    close([-keras.ops.convert_to_numpy(x) for x in v], [[0.6, 0.8], [0.0, 1.0]])


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(name="adagrad"), r"optimizer='adagrad'.*sgd, adam, rmsprop"),
    (dict(clip_mode="norm"), r"clip_mode='norm'.*none, clipnorm, global_clipnorm, clipvalue"),
    (dict(clip_mode="clipnorm", clip_threshold=0.0), r"clip_threshold=0.0 must be a positive"),
    (dict(clip_mode="global_clipnorm", clip_threshold=-1.0), r"clip_threshold=-1.0"),
    (dict(clip_mode="clipvalue", clip_threshold=float("inf")), r"clip_threshold=inf"),
    (dict(clip_mode="clipvalue", clip_threshold=float("nan")), r"clip_threshold=nan"),
    (dict(learning_rate=0.0), r"learning_rate=0.0 must be a positive"),
    (dict(learning_rate=-0.1), r"learning_rate=-0.1"),
    (dict(learning_rate=float("nan")), r"learning_rate=nan"),
    (dict(learning_rate="fast"), r"learning_rate='fast'"),
])
def test_make_optimizer_rejects_bad_arguments(kwargs, pattern):
    args = dict(name="adam", learning_rate=1e-3, clip_mode="none", clip_threshold=1.0)
    args.update(kwargs)
    with pytest.raises(ClipError, match=pattern):
        clipping.make_optimizer(**args)


def test_keras_clipped_checks_its_arguments():
    with pytest.raises(ClipError, match="clip_mode="):
        clipping.keras_clipped(GRADS, "clip_by_norm", 1.0)
    with pytest.raises(ClipError, match="clip_threshold="):
        clipping.keras_clipped(GRADS, "clipnorm", 0)
