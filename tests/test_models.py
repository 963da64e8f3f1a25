"""The CNN + recurrent classifier: variants train, initializers give what they claim,
bad arguments are named, the fast and general feature paths and the Keras baseline agree."""
import numpy as np
import pytest

import rnnbook  # noqa: F401  (quiets TensorFlow first)
import keras

from rnnbook import clipping, engine, models, training
from rnnbook.models import ModelError
from rnnbook.runtime import seed_everything

U, F = 16, 12
SMALL = dict(units=U, conv_filters=(4,), num_classes=5)


@pytest.fixture(autouse=True)
def _seed():
    seed_everything(0)


def batch(b=4, t=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((b, t, 8, 8, 1)).astype(np.float32), rng.integers(0, 5, size=b)


@pytest.mark.parametrize("cell, activation", [
    ("simple_rnn", "tanh"), ("simple_rnn", "relu"), ("simple_rnn", "sigmoid"),
    ("simple_rnn", "linear"), ("simple_rnn", "elu"), ("gru", "tanh"), ("lstm", "tanh"),
])
def test_variant_builds_and_takes_a_training_step(cell, activation):
    model = models.build_model(cell=cell, activation=activation, **SMALL)
    assert isinstance(model.rnn, {"simple_rnn": keras.layers.SimpleRNN, "gru": keras.layers.GRU,
                                  "lstm": keras.layers.LSTM}[cell])
    assert model.rnn.cell.activation is keras.activations.get(activation)
    stepper = engine.Stepper(model, clipping.make_optimizer("sgd", 0.1), indexed=False)
    x, y = batch()
    before = {g: [w.copy() for w in getattr(model, g).get_weights()] for g in ("encoder", "rnn", "head")}
    stats = stepper.step(x, y)
    assert np.isfinite(stats["loss"]) and stats["loss"] > 0
    assert np.isfinite(stats["grad_norm"]) and stats["grad_norm"] > 0
    for group, old in before.items():  # every part of the model was updated
        new = getattr(model, group).get_weights()
        assert any(not np.array_equal(a, b) for a, b in zip(old, new)), group
    np.testing.assert_allclose(np.linalg.norm(stats["layer_norms"]), stats["grad_norm"], rtol=1e-4)
    logits = model(x)
    assert logits.shape == (4, 5)


def recurrent_kernel(name, gain, seed=0):
    layer = models.build_recurrent("simple_rnn", U, "tanh", name, gain, seed=seed)
    layer.build((None, None, F))
    return keras.ops.convert_to_numpy(layer.cell.recurrent_kernel)


@pytest.mark.parametrize("gain", [0.5, 1.0, 3.0])
def test_identity_initializer(gain):
    np.testing.assert_allclose(recurrent_kernel("identity", gain), gain * np.eye(U), atol=0)


@pytest.mark.parametrize("gain", [0.5, 1.0, 2.0])
def test_orthogonal_initializer(gain):
    w = recurrent_kernel("orthogonal", gain).astype(np.float64)
    np.testing.assert_allclose(w.T @ w, gain ** 2 * np.eye(U), atol=1e-5 * max(1, gain ** 2))
    np.testing.assert_allclose(np.linalg.svd(w, compute_uv=False), np.full(U, gain), rtol=1e-5)
    assert not np.allclose(w, gain * np.eye(U))  # a rotation, not the identity


@pytest.mark.parametrize("gain", [0.5, 1.0, 3.0])
def test_glorot_uniform_initializer(gain):
    w = recurrent_kernel("glorot_uniform", gain)
    bound = gain * np.sqrt(6.0 / (2 * U))
    assert np.abs(w).max() <= bound * (1 + 1e-6)
    assert np.abs(w).max() > 0.8 * bound  # the gain really scales the spread (256 draws)
    assert abs(w.mean()) < 0.2 * bound
    np.testing.assert_allclose(w, gain * recurrent_kernel("glorot_uniform", 1.0), rtol=1e-6)


def test_initializers_are_seeded():
    np.testing.assert_array_equal(recurrent_kernel("orthogonal", 1.0, 4), recurrent_kernel("orthogonal", 1.0, 4))
    assert not np.array_equal(recurrent_kernel("orthogonal", 1.0, 4), recurrent_kernel("orthogonal", 1.0, 5))


def test_build_model_passes_initializer_and_gain():
    model = models.build_model(recurrent_initializer="identity", recurrent_gain=2.5, activation="relu", **SMALL)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.rnn.cell.recurrent_kernel), 2.5 * np.eye(U))


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(cell="rnn"), r"cell='rnn'.*simple_rnn, gru, lstm"),
    (dict(activation="swishy"), r"activation='swishy'.*tanh, relu"),
    (dict(recurrent_initializer="zeros"), r"recurrent_initializer='zeros'.*orthogonal, identity, glorot_uniform"),
    (dict(units=0), r"units=0 must be a positive integer"),
    (dict(units=-4), r"units=-4"),
    (dict(units=2.5), r"units=2.5"),
    (dict(recurrent_gain=0.0), r"recurrent_gain=0.0 must be a positive"),
    (dict(recurrent_gain=-1.0), r"recurrent_gain=-1.0"),
    (dict(recurrent_gain=float("nan")), r"recurrent_gain=nan"),
    (dict(num_classes=1), r"num_classes=1"),
    (dict(conv_filters=(4, 0)), r"conv_filters"),
])
def test_bad_arguments_raise_model_error(kwargs, pattern):
    args = dict(SMALL)
    args.update(kwargs)
    with pytest.raises(ModelError, match=pattern):
        models.build_model(**args)


def test_recurrent_initializer_rejects_unknown_name():
    with pytest.raises(ModelError, match="choose one of orthogonal, identity, glorot_uniform"):
        models.recurrent_initializer("he_normal")


def _perturbed(model, seed=1):
    """Give every weight (biases included) non-default values, so copying mistakes show."""
    rng = np.random.default_rng(seed)
    model.set_weights([w + 0.1 * rng.standard_normal(w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def model():
    seed_everything(0)
    return _perturbed(models.build_model(units=U, conv_filters=(4, 8), num_classes=5))


def test_indexed_features_equal_features(model):
    rng = np.random.default_rng(2)
    bank = rng.random((6, 8, 8, 1)).astype(np.float32)
    index = np.array([[0, 3, 3, 5], [5, 1, 0, 0], [2, 2, 2, 2]], dtype=np.int32)  # repeats on purpose
    dense = model.features(bank[index]).numpy()
    fast = model.indexed_features(index, bank).numpy()
    assert fast.shape == dense.shape == (3, 4, 4 * 4 * 8)
    np.testing.assert_allclose(fast, dense, rtol=1e-6, atol=1e-6)
    assert not np.allclose(dense[0, 0], dense[0, 1])  # distinct images, distinct features


def test_keras_baseline_gives_the_same_logits(model):
    x, _ = batch(b=3, t=5, seed=3)
    baseline = model.keras_baseline()
    ours = model(x).numpy()
    theirs = baseline(x).numpy()
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5)
    assert np.abs(ours).max() > 1e-3
    # the baseline owns copies: changing it leaves the model alone
    baseline.set_weights([w * 0 for w in baseline.get_weights()])
    np.testing.assert_allclose(model(x).numpy(), ours, rtol=1e-6)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_keras_baseline_matches_for_gated_cells(cell):
    m = _perturbed(models.build_model(cell=cell, **SMALL))
    x, _ = batch(b=2, t=4, seed=5)
    np.testing.assert_allclose(m.keras_baseline()(x).numpy(), m(x).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell, initializer, gain", [
    ("simple_rnn", "identity", 2.0), ("gru", "glorot_uniform", 1.5), ("lstm", "orthogonal", 0.5)])
def test_reinitialize_gives_exactly_the_weights_of_a_fresh_build(cell, initializer, gain):
    args = dict(cell=cell, units=6, conv_filters=(4, 8), num_classes=5)
    model = _perturbed(models.build_model(seed=5, **args))  # trained-looking weights, biases included
    models.reinitialize(model, 2, initializer, gain)
    fresh = models.build_model(seed=2, recurrent_initializer=initializer, recurrent_gain=gain, **args)
    for a, b in zip(model.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    other = models.build_model(seed=3, recurrent_initializer=initializer, recurrent_gain=gain, **args)
    assert not np.array_equal(model.get_weights()[0], other.get_weights()[0])  # the seed matters


def test_reinitialize_refuses_a_foreign_model():
    with pytest.raises(ModelError, match="build_model"):
        models.reinitialize(keras.Sequential([keras.layers.Dense(2)]), 0)


# ----------------------------------------------------------------------------- the interface and LSTM options


def test_encoder_defaults_to_keras_glorot_uniform():
    assert keras.layers.Conv2D(4, 3).get_config()["kernel_initializer"]["class_name"] == "GlorotUniform"
    encoder = models.build_encoder((4, 8), seed=0)
    assert [type(layer.kernel_initializer).__name__ for layer in encoder.layers[:2]] == ["GlorotUniform"] * 2
    he = models.build_encoder((4, 8), seed=0, encoder_init="he_uniform")
    assert [type(layer.kernel_initializer).__name__ for layer in he.layers[:2]] == ["HeUniform"] * 2


def test_he_and_glorot_encoders_differ_by_a_fixed_factor_per_layer():
    """Same seeded draws, different limits: the ReLU features (zero biases) differ by the product
    of the per-layer limit ratios, sqrt(fan_in / (fan_in + fan_out)) for each convolution."""
    images = np.random.default_rng(0).random((7, 8, 8, 1)).astype(np.float32)
    glorot = models.build_encoder((4, 8), seed=3)(images).numpy()
    he = models.build_encoder((4, 8), seed=3, encoder_init="he_uniform")(images).numpy()
    ratio = np.sqrt(9 / (9 + 36)) * np.sqrt(36 / (36 + 72))
    np.testing.assert_allclose(glorot, ratio * he, rtol=1e-4, atol=1e-6)


def test_feature_norm_and_rms():
    images = np.random.default_rng(1).random((9, 8, 8, 1)).astype(np.float32)
    m = models.build_model(encoder_init="he_uniform", feature_norm="layer_norm", **SMALL)
    assert m.encoder.layers[-1].name == "feature_norm"
    assert abs(models.feature_rms(m, images) - 1.0) < 0.01  # LayerNorm: unit RMS per frame at initialisation
    scaled = models.build_model(encoder_init="he_uniform", feature_scale=0.5, **SMALL)
    plain = models.build_model(encoder_init="he_uniform", **SMALL)
    assert models.feature_rms(scaled, images) == pytest.approx(0.5 * models.feature_rms(plain, images), rel=1e-5)
    assert np.isnan(models.feature_rms(plain, None))


def test_input_gain_scales_the_glorot_input_kernel():
    plain = models.build_model(**SMALL)
    scaled = models.build_model(input_gain=0.25, **SMALL)
    np.testing.assert_allclose(scaled.rnn.cell.kernel.numpy(), 0.25 * plain.rnn.cell.kernel.numpy(), rtol=1e-6)


def test_chrono_lstm_bias():
    m = models.build_model(cell="lstm", lstm_bias_init="chrono", chrono_tmax=21, **SMALL)
    b = m.rnn.cell.bias.numpy()
    i, f, c, o = np.split(b, 4)
    assert (f >= 0).all() and (f <= np.log(20) + 1e-6).all() and f.std() > 0.1
    np.testing.assert_array_equal(i, -f)
    assert not c.any() and not o.any()
    keras_default = models.build_model(cell="lstm", **SMALL).rnn.cell.bias.numpy()
    np.testing.assert_array_equal(np.split(keras_default, 4)[1], np.ones(U))  # unit_forget_bias=True
    other = models.build_model(cell="lstm", lstm_bias_init="chrono", chrono_tmax=21, seed=1, **SMALL)
    assert not np.array_equal(other.rnn.cell.bias.numpy(), b)  # seeded


def test_reinitialize_redraws_the_interface_and_chrono_options():
    args = dict(cell="lstm", units=6, conv_filters=(4, 8), num_classes=5, encoder_init="he_uniform",
                feature_norm="layer_norm", input_gain=0.3, lstm_bias_init="chrono", chrono_tmax=11)
    model = _perturbed(models.build_model(seed=5, **args))
    models.reinitialize(model, 2, "orthogonal", 1.0, chrono_tmax=31)
    fresh = models.build_model(seed=2, **{**args, "chrono_tmax": 31})
    for a, b in zip(model.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(encoder_init="he_normal"), r"encoder_init='he_normal'.*glorot_uniform, he_uniform"),
    (dict(feature_norm="batch_norm"), r"feature_norm='batch_norm'.*none, layer_norm"),
    (dict(input_gain=0.0), r"input_gain=0.0 must be a positive"),
    (dict(lstm_bias_init="zeros", cell="lstm"), r"lstm_bias_init='zeros'.*keras, chrono"),
    (dict(lstm_bias_init="chrono", cell="gru", chrono_tmax=5), r"LSTM only"),
    (dict(lstm_bias_init="chrono", cell="lstm", chrono_tmax=1), r"chrono_tmax=1 must be an integer >= 2"),
])
def test_bad_interface_and_lstm_options_raise_model_error(kwargs, pattern):
    with pytest.raises(ModelError, match=pattern):
        models.build_model(**{**SMALL, **kwargs})


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(encoder_init="xavier"), r"encoder_init='xavier'.*glorot_uniform, he_uniform"),
    (dict(feature_norm="ln"), r"feature_norm='ln'.*none, layer_norm"),
    (dict(input_gain=-1.0), r"input_gain=-1.0"),
    (dict(lstm_bias_init="chrono"), r"cell='lstm' only"),
    (dict(cell="lstm", lstm_bias_init="chrono", chrono_tmax=0), r"chrono_tmax=0"),
])
def test_train_config_validates_the_new_fields(kwargs, pattern):
    with pytest.raises(training.ConfigError, match=pattern):
        training.TrainConfig(**kwargs)


def test_chrono_horizon_follows_seq_len():
    cfg = training.TrainConfig(cell="lstm", lstm_bias_init="chrono", seq_len=31, lag=30)
    assert cfg.chrono_horizon == 31
    assert training.TrainConfig(cell="lstm", lstm_bias_init="chrono", chrono_tmax=7).chrono_horizon == 7
    assert training.TrainConfig(cell="lstm").chrono_horizon is None
