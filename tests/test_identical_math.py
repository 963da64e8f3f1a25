"""Faster must not mean different: the book's training path and a plain Keras model
(TimeDistributed CNN + recurrent layer + Dense) give the same loss and gradients for
the same weights and batch."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from rnnbook import bench, data, engine, models, recurrence

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.fixture(scope="module")
def task():
    return data.make_task("recall", seq_len=40, lag=30, n_train=32, n_val=8, n_test=8, seed=3, data_dir=None)


def traced(fn):
    """``fn()`` run as a tf.function (long sequences: one graph instead of thousands of eager ops)."""
    return tf.function(fn, autograph=False)()


def book_loss_and_grads(model, index, bank, labels, fast=True):
    def run():
        with tf.GradientTape() as tape:
            logits, _ = model.forward_indexed(tf.constant(index), tf.constant(bank), training=True, fast=fast)
            loss = LOSS(labels, logits)
        return loss, tape.gradient(loss, model.trainable_variables)
    loss, grads = traced(run)
    return float(loss), grads


def keras_loss_and_grads(baseline, frames, labels):
    def run():
        with tf.GradientTape() as tape:
            loss = LOSS(labels, baseline(frames, training=True))
        return loss, tape.gradient(loss, baseline.trainable_variables)
    loss, grads = traced(run)
    return float(loss), grads


def perturbed(model, seed=1, scale=0.1):
    """Every weight (biases included) moved off its initial value, so a wrongly used bias shows."""
    rng = np.random.default_rng(seed)
    model.set_weights([w + scale * rng.standard_normal(w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def assert_same(book, plain, rel=2e-5):
    (loss_b, grads_b), (loss_k, grads_k) = book, plain
    assert len(grads_b) == len(grads_k)
    np.testing.assert_allclose(loss_b, loss_k, rtol=1e-5, atol=1e-6)
    for gb, gk in zip(grads_b, grads_k):
        gb, gk = np.asarray(gb), np.asarray(gk)
        assert gb.shape == gk.shape
        scale = max(np.abs(gk).max(), 1e-6)
        np.testing.assert_allclose(gb, gk, rtol=0, atol=rel * scale)


@pytest.mark.parametrize("activation,initializer,gain", [
    ("tanh", "orthogonal", 1.0),
    ("relu", "identity", 1.0),
    ("relu", "glorot_uniform", 1.5),
    ("sigmoid", "orthogonal", 2.0),
])
def test_book_path_equals_plain_keras(task, activation, initializer, gain):
    model = models.build_model(activation=activation, recurrent_initializer=initializer,
                               recurrent_gain=gain, units=24, seed=1)
    baseline = model.keras_baseline()
    split = task.train
    book = book_loss_and_grads(model, split.index, split.bank, split.labels)
    plain = keras_loss_and_grads(baseline, split.frames(), split.labels)
    assert_same(book, plain)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in book[1]) > 0  # a real, non-zero gradient


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_gated_cells_on_the_fast_path_equal_plain_keras(task, cell, monkeypatch):
    model = perturbed(models.build_model(cell=cell, units=16, seed=2))
    split = task.train
    calls = []
    fast = recurrence.recur_gru if cell == "gru" else recurrence.recur_lstm
    monkeypatch.setattr(recurrence, fast.__name__, lambda *a, **k: calls.append(1) or fast(*a, **k))
    book = book_loss_and_grads(model, split.index, split.bank, split.labels)
    assert calls, "the gated cell did not take the fast recurrence"
    assert_same(book, keras_loss_and_grads(model.keras_baseline(), split.frames(), split.labels))


def test_fast_recurrence_matches_keras_layer_on_long_sequences():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 150, 6)).astype("float32")
    layer = keras.layers.SimpleRNN(8, activation="tanh", return_sequences=True)
    np.testing.assert_allclose(recurrence.simple_rnn_states(layer, x), layer(x), atol=1e-5)


def test_bench_flop_count_matches_hand_count():
    model = models.build_model(units=64, conv_filters=(16, 32))
    # conv1: 8*8 outputs * 3*3*1 inputs * 16 channels; conv2: 8*8 * 3*3*16 * 32; two FLOPs per multiply-add
    assert bench.conv_flops_per_image(model) == 2 * (64 * 9 * 1 * 16 + 64 * 9 * 16 * 32)


@pytest.mark.parametrize("steps,unroll", [(7, 8), (13, 4), (9, 1)])
@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
def test_unrolled_chunks_give_keras_states_and_gradients(steps, unroll, activation):
    """Any T, including T not a multiple of the unroll factor, traced inside tf.function."""
    x = tf.constant(np.random.default_rng(steps).normal(size=(3, steps, 5)).astype("float32"))
    layer = keras.layers.SimpleRNN(6, activation=activation, return_sequences=True,
                                   recurrent_initializer=keras.initializers.Orthogonal(gain=1.3, seed=0))
    layer.build(x.shape)
    weights = [x, layer.cell.kernel, layer.cell.recurrent_kernel, layer.cell.bias]
    wave = tf.cos(tf.range(steps, dtype=tf.float32))[None, :, None]  # every step feeds the loss

    def states_and_grads(states_fn):
        with tf.GradientTape() as tape:
            tape.watch(x)
            states = states_fn(x)
            loss = tf.reduce_sum(tf.sin(states) * wave)
        return [states] + tape.gradient(loss, weights)

    def fast(inputs):
        cell = layer.cell
        projected = tf.einsum("btf,fu->tbu", inputs, cell.kernel) + cell.bias
        return tf.transpose(recurrence.recur(projected, cell.recurrent_kernel, cell.activation, unroll), [1, 0, 2])

    reference = states_and_grads(layer)
    for got in (states_and_grads(fast), tf.function(lambda: states_and_grads(fast))()):
        for a, b in zip(got, reference):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * max(1.0, float(tf.reduce_max(tf.abs(b)))))


LAYERS = {"simple_rnn": keras.layers.SimpleRNN, "gru": keras.layers.GRU, "lstm": keras.layers.LSTM}
#: Every remainder of T modulo the unroll factor (8), T < 8 (no unrolled chunk) and T = 8 (no ragged head).
REMAINDER_LENGTHS = (3, 8, 9, 10, 11, 12, 13, 14, 15)


def layer_states_and_grads(layer, x, states_fn):
    wave = tf.cos(tf.range(x.shape[1], dtype=tf.float32))[None, :, None]  # every step feeds the loss
    weights = [x, *layer.trainable_variables]
    with tf.GradientTape() as tape:
        tape.watch(x)
        states = states_fn(x)
        loss = tf.reduce_sum(tf.sin(states) * wave)
    return [states] + tape.gradient(loss, weights)


def assert_all_close(got, reference, rel=1e-5):
    for a, b in zip(got, reference, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=rel * max(1.0, float(tf.reduce_max(tf.abs(b)))))


@pytest.mark.parametrize("cell", sorted(LAYERS))
def test_every_remainder_of_T_gives_keras_states_and_gradients(cell):
    """States and gradients (inputs, kernel, recurrent kernel, biases) equal the Keras layer's for
    every T mod 8, eagerly, and traced in a tf.function for one ragged T."""
    rng = np.random.default_rng(7)
    layer = LAYERS[cell](6, return_sequences=True, activation="tanh")
    layer.build((None, None, 5))
    layer.set_weights([w + 0.2 * rng.standard_normal(w.shape).astype("float32") for w in layer.get_weights()])
    fast = lambda v: recurrence.layer_states(layer, v)  # noqa: E731
    for steps in REMAINDER_LENGTHS:
        x = tf.constant(rng.normal(size=(3, steps, 5)).astype("float32"))
        reference = layer_states_and_grads(layer, x, layer)
        assert_all_close(layer_states_and_grads(layer, x, fast), reference)
        if steps == 13:
            assert_all_close(tf.function(lambda: layer_states_and_grads(layer, x, fast))(), reference)


LONG = 400
TINY_MODEL = dict(units=8, conv_filters=(4,))
#: The configurations the book trains at its longest sequences (GRU and LSTM: every remainder of T above).
LONG_CONFIGS = [("simple_rnn", "tanh", "orthogonal"), ("simple_rnn", "relu", "orthogonal"),
                ("simple_rnn", "relu", "identity")]


@pytest.fixture(scope="module")
def long_task():
    return data.make_task("recall", seq_len=LONG, lag=LONG - 1, n_train=6, n_val=8, n_test=8, seed=5, data_dir=None)


def long_model(cell, activation, initializer, seed=6):
    return models.build_model(cell=cell, activation=activation, recurrent_initializer=initializer, seed=seed,
                              **TINY_MODEL)


@pytest.mark.parametrize("cell,activation,initializer", LONG_CONFIGS)
def test_T400_states_loss_and_gradients_equal_plain_keras(long_task, cell, activation, initializer):
    """At the book's longest sequences, ReLU and identity included: every hidden state, the loss
    and every gradient equal those of the Keras layers (TimeDistributed CNN + RNN + Dense)."""
    model = long_model(cell, activation, initializer)
    split = long_task.train
    frames = split.frames()
    states = traced(lambda: model.forward_indexed(tf.constant(split.index), tf.constant(split.bank), fast=True)[1])
    keras_states = traced(lambda: model.rnn(model.features(frames)))
    np.testing.assert_allclose(states, keras_states, rtol=0, atol=1e-5 * float(tf.reduce_max(tf.abs(keras_states))))
    book = book_loss_and_grads(model, split.index, split.bank, split.labels)
    assert_same(book, keras_loss_and_grads(model.keras_baseline(), frames, split.labels), rel=1e-4)
    assert all(np.isfinite(g).all() and np.abs(g).max() > 0 for g in book[1])


def updates(model_weights_before, model_weights_after):
    return [after - before for before, after in zip(model_weights_before, model_weights_after)]


def assert_same_updates(book, plain, rel):
    assert len(book) == len(plain)
    for d_book, d_keras in zip(book, plain):
        scale = np.abs(d_keras).max()
        assert scale > 0, "a weight did not move: the comparison would be empty"
        np.testing.assert_allclose(d_book, d_keras, rtol=0, atol=rel * scale)


def train_both(model, split, optimizer_fn, steps):
    """``steps`` full-batch updates of the book's Stepper and of Keras ``model.fit`` from the same weights;
    returns (book updates, Keras updates)."""
    before = model.get_weights()
    baseline = model.keras_baseline()
    baseline.compile(optimizer=optimizer_fn(), loss=LOSS)
    stepper = engine.Stepper(model, optimizer_fn(), indexed=True, bank=split.bank, fast=True)
    for _ in range(steps):
        stepper.step(split.index, split.labels)
    baseline.fit(split.frames(), split.labels, batch_size=len(split), epochs=steps, verbose=0, shuffle=False)
    return updates(before, model.get_weights()), updates(before, baseline.get_weights())


def test_T400_plain_sgd_updates_equal_plain_keras(long_task):
    """Plain SGD moves every weight by -lr x gradient, so a gradient off by any factor shows here
    (Adam, nearly invariant to a gradient's scale, cannot show it); ReLU + identity, the exploding case."""
    model = long_model("simple_rnn", "relu", "identity")
    split = long_task.train
    _, grads = book_loss_and_grads(model, split.index, split.bank, split.labels)
    rate = 1e-2 / max(float(np.abs(g).max()) for g in grads)  # largest first move 0.01
    book, plain = train_both(model, split, lambda: keras.optimizers.SGD(rate), steps=2)
    assert_same_updates(book, plain, rel=1e-3)


@pytest.mark.parametrize("cell,activation,initializer", [("simple_rnn", "relu", "identity"),
                                                         ("gru", "tanh", "orthogonal"), ("lstm", "tanh", "orthogonal")])
def test_several_adam_steps_update_weights_identically(task, cell, activation, initializer):
    """Four Adam steps (past the first, which moves every weight by about lr x sign(g)) land on
    the same weights as Keras ``model.fit``."""
    model = perturbed(models.build_model(cell=cell, activation=activation, recurrent_initializer=initializer,
                                         units=12, conv_filters=(4,), seed=4))
    book, plain = train_both(model, task.train, lambda: keras.optimizers.Adam(1e-2), steps=4)
    assert_same_updates(book, plain, rel=2e-3)


@pytest.mark.parametrize("kwargs, perturb", [
    (dict(cell="simple_rnn", encoder_init="he_uniform", feature_norm="layer_norm"), True),
    (dict(cell="simple_rnn", encoder_init="he_uniform", feature_scale=0.14, input_gain=0.5), False),
    (dict(cell="gru", feature_norm="layer_norm", feature_scale=0.3), True),
    (dict(cell="lstm", lstm_bias_init="chrono", chrono_tmax=40), False),
])
def test_interface_options_and_chrono_lstm_equal_plain_keras(task, kwargs, perturb):
    """The interface levels (He encoder, LayerNorm at the interface, rescaling, input gain) and the
    chrono LSTM, with its bias as initialised: the book's fast path equals plain Keras."""
    model = models.build_model(units=16, seed=2, **kwargs)
    if kwargs.get("lstm_bias_init") == "chrono":
        assert np.abs(model.rnn.cell.bias.numpy()).max() > 0.5  # the chrono bias, not Keras's
    model = perturbed(model) if perturb else model
    split = task.train
    book = book_loss_and_grads(model, split.index, split.bank, split.labels)
    assert_same(book, keras_loss_and_grads(model.keras_baseline(), split.frames(), split.labels))
