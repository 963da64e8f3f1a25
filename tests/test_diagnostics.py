"""Diagnostics of a SimpleRNN head: unrolling, gradients by lag, spectra, state statistics."""
import numpy as np
import pandas as pd
import pytest

import rnnbook  # noqa: F401  (quiets TensorFlow first)
import keras
import tensorflow as tf

from rnnbook import diagnostics as dg
from rnnbook.runtime import seed_everything

B, T, F, U, C = 3, 6, 5, 4, 3


def make_rnn(activation="tanh", units=U, dtype="float32", **kwargs):
    rnn = keras.layers.SimpleRNN(units, activation=activation, return_sequences=True, dtype=dtype, **kwargs)
    rnn.build((None, None, F))
    return rnn


def make_head(dtype="float32"):
    head = keras.layers.Dense(C, dtype=dtype)
    head.build((None, U))
    return head


def data(dtype=np.float32, nonneg=False, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, F))
    if nonneg:
        x = np.maximum(x, 0.0)
    return x.astype(dtype), rng.integers(0, C, size=B)


@pytest.fixture(autouse=True)
def _seed():
    seed_everything(0)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_unrolled_states_match_keras(activation):
    rnn = make_rnn(activation, bias_initializer="random_normal")
    x, _ = data()
    np.testing.assert_allclose(dg.unrolled_states(rnn, x), rnn(x), rtol=1e-5, atol=1e-6)


def test_perturbation_feeds_later_steps():
    rnn = make_rnn("tanh")
    x, _ = data()
    h = dg.unrolled_states(rnn, x).numpy()
    bump = np.zeros((B, T, U), np.float32)
    bump[:, 2] = 0.1
    hp = dg.unrolled_states(rnn, x, bump).numpy()
    np.testing.assert_allclose(hp[:, :2], h[:, :2])
    np.testing.assert_allclose(hp[:, 2], h[:, 2] + 0.1, rtol=1e-6)
    assert not np.allclose(hp[:, 3], h[:, 3])


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_state_gradients_match_finite_differences(activation):
    rnn = make_rnn(activation, dtype="float64", bias_initializer="random_normal")
    head = make_head("float64")
    x, y = data(np.float64)
    grads = dg.state_gradients(rnn, head, x, y).numpy()

    def total_loss(perturbation):
        return float(tf.reduce_sum(dg.example_losses(rnn, head, x, y, perturbation)))

    eps = 1e-6
    fd = np.zeros((B, T, U))
    for idx in np.ndindex(B, T, U):
        bump = np.zeros((B, T, U))
        bump[idx] = eps
        fd[idx] = (total_loss(bump) - total_loss(-bump)) / (2 * eps)
    np.testing.assert_allclose(grads, fd, rtol=1e-6, atol=1e-9)

    lags = dg.grad_norm_by_lag(rnn, head, x, y)
    fd_norms = np.linalg.norm(fd, axis=-1)  # (B, T)
    np.testing.assert_allclose(lags.grad_norm, fd_norms.mean(axis=0)[::-1], rtol=1e-6)


def test_last_step_gradient_is_softmax_error_through_head():
    rnn, head = make_rnn("relu"), make_head()
    x, y = data()
    lags = dg.grad_norm_by_lag(rnn, head, x, y)
    assert list(lags.lag) == list(range(T)) and list(lags.t) == list(range(T - 1, -1, -1))

    probs = tf.nn.softmax(head(dg.unrolled_states(rnn, x)[:, -1])).numpy()
    error = probs - np.eye(C)[y]                       # d loss_i / d logits
    expected = error @ head.kernel.numpy().T           # (B, U)
    norms = np.linalg.norm(expected, axis=-1)
    row = lags.iloc[0]
    assert row.grad_norm == pytest.approx(norms.mean(), rel=1e-5)
    assert row.batch_grad_norm == pytest.approx(np.linalg.norm(expected) / B, rel=1e-5)
    assert row.grad_norm_max == pytest.approx(norms.max(), rel=1e-5)


@pytest.mark.parametrize("scale", [0.5, 1.0])
def test_linear_rnn_decays_at_the_recurrent_scale(scale):
    rnn, head = make_rnn("linear"), make_head()
    rnn.cell.recurrent_kernel.assign(scale * np.eye(U, dtype=np.float32))
    x, y = data()
    rate = dg.decay_rate(dg.grad_norm_by_lag(rnn, head, x, y))
    assert rate == pytest.approx(scale, rel=1e-4)
    assert dg.pascanu_bound(rnn) == pytest.approx(scale, rel=1e-6)


def test_tanh_decay_respects_pascanu_bound():
    rnn, head = make_rnn("tanh"), make_head()
    q = np.linalg.qr(np.random.default_rng(1).normal(size=(U, U)))[0]
    rnn.cell.recurrent_kernel.assign((0.8 * q).astype(np.float32))
    x, y = data()
    lags = dg.grad_norm_by_lag(rnn, head, x, y)
    assert dg.decay_rate(lags) <= dg.pascanu_bound(rnn) + 1e-6
    ratios = lags.grad_norm.to_numpy()[1:] / lags.grad_norm.to_numpy()[:-1]
    assert ratios.max() <= 0.8 + 1e-5  # every single step contracts by at most sigma * gamma


def test_decay_rate_is_robust_to_underflow_and_overflow():
    lag = np.arange(8)
    norm = 3.0 * 0.5**lag
    frame = pd.DataFrame({"lag": lag, "grad_norm": norm})
    assert dg.decay_rate(frame) == pytest.approx(0.5)
    broken = frame.assign(grad_norm=np.r_[norm[:5], 0.0, np.inf, np.nan])
    assert dg.decay_rate(broken) == pytest.approx(0.5)
    assert dg.decay_rate(frame, max_lag=3) == pytest.approx(0.5)
    assert np.isnan(dg.decay_rate(frame.iloc[:1]))
    growing = pd.concat([frame.assign(seed=0), frame.assign(seed=1, grad_norm=2.0**lag)])
    rates = dg.decay_rates(growing, by="seed")
    assert list(rates.seed) == [0, 1]
    np.testing.assert_allclose(rates.decay_rate, [0.5, 2.0])


def test_recurrent_spectrum():
    rnn = make_rnn("tanh")  # Keras default recurrent initializer: orthogonal
    spec = dg.recurrent_spectrum(rnn)
    assert spec["sigma_max"] == pytest.approx(1.0, abs=1e-5)
    assert spec["sigma_min"] == pytest.approx(1.0, abs=1e-5)
    assert spec["spectral_radius"] == pytest.approx(1.0, abs=1e-5)
    rnn.cell.recurrent_kernel.assign(np.diag([2.0, 1.0, 0.5, 0.1]).astype(np.float32))
    spec = dg.recurrent_spectrum(rnn)
    assert (spec["sigma_max"], spec["sigma_min"]) == pytest.approx((2.0, 0.1))
    rnn.cell.recurrent_kernel.assign(np.array(np.triu(np.ones((U, U))) * 3 - 2 * np.eye(U), np.float32))
    spec = dg.recurrent_spectrum(rnn)
    assert spec["spectral_radius"] == pytest.approx(1.0, abs=1e-5)
    assert spec["sigma_max"] > 2  # non-normal: the spectral radius understates the gain


@pytest.mark.parametrize("name", sorted(dg.ACTIVATION_GAMMA))
def test_activation_gamma_is_the_sup_of_the_slope(name):
    a = tf.constant(np.r_[np.linspace(-10, 10, 200001), -1e-9], tf.float64)  # selu peaks at 0-
    fn = keras.activations.get(name)
    with tf.GradientTape() as tape:
        tape.watch(a)
        out = fn(a)
    slope = np.abs(tape.gradient(out, a).numpy()).max()
    assert dg.activation_gamma(name) == pytest.approx(slope, rel=1e-4)
    assert dg.activation_gamma(fn) == dg.activation_gamma(name)


def test_activation_gamma_unknown_and_bound():
    with pytest.raises(ValueError):
        dg.activation_gamma("mish_of_my_own")
    rnn = make_rnn("sigmoid")
    rnn.cell.recurrent_kernel.assign(4.0 * np.eye(U, dtype=np.float32))
    assert dg.pascanu_bound(rnn) == pytest.approx(1.0)


def test_relu_activity_dead_units_and_slopes():
    rnn = make_rnn("relu")
    x, _ = data()
    frac = dg.active_fraction(rnn, x)
    assert 0 < frac < 1
    assert dg.mean_slope(rnn, x) == pytest.approx(frac)
    stats = dg.state_stats(rnn, x)
    # ReLU: a state entry is positive exactly when its unit is active
    assert (stats.positive_fraction + stats.blocked_fraction).to_numpy() == pytest.approx(np.ones(T))

    rnn.cell.bias.assign(np.array([-100.0, -100.0, 0.0, 0.0], np.float32))
    assert dg.dead_unit_fraction(rnn, x) == 0.5
    assert (dg.state_stats(rnn, x).dead_units >= 0.5).all()


def test_state_stats_columns_and_values():
    rnn = make_rnn("tanh")
    x, _ = data()
    stats = dg.state_stats(rnn, x)
    assert list(stats.columns) == ["t", "state_norm", "state_max_abs", "state_mean",
                                   "positive_fraction", "blocked_fraction", "dead_units"]
    assert len(stats) == T and (stats.state_max_abs <= 1).all()
    h = rnn(x).numpy()
    np.testing.assert_allclose(stats.state_norm, np.linalg.norm(h, axis=-1).mean(0), rtol=1e-5)
    # drive it into saturation: tanh units with huge drive stop passing gradient
    rnn.cell.bias.assign(np.full(U, 50.0, np.float32))
    assert dg.state_stats(rnn, x).blocked_fraction.min() == 1.0


def test_input_drive_stats_sign_of_nonnegative_features():
    rnn = make_rnn("relu")
    x, _ = data(nonneg=True)
    rnn.cell.kernel.assign(np.abs(rnn.cell.kernel.numpy()) + 0.01)
    stats = dg.input_drive_stats(rnn, x)
    assert stats["feature_nonneg_fraction"] == 1.0
    # non-negative inputs through a positive kernel can only push units up
    assert stats["drive_positive_fraction"] > 0.9 and stats["drive_mean"] > 0
    assert stats["one_signed_units"] == 1.0
    drive = dg.input_drive(rnn, x).numpy()
    assert stats["drive_std"] == pytest.approx(drive.std(), rel=1e-5)
