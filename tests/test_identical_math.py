"""Faster must not mean different: the book's training path and a plain Keras model
(TimeDistributed CNN + recurrent layer + Dense) give the same loss and gradients for
the same weights and batch."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from rnnbook import bench, data, models, recurrence, training

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.fixture(scope="module")
def task():
    return data.make_task("recall", seq_len=40, lag=30, n_train=32, n_val=8, n_test=8, seed=3, data_dir=None)


def book_loss_and_grads(model, index, bank, labels, fast=True):
    with tf.GradientTape() as tape:
        logits, _ = model.forward_indexed(tf.constant(index), tf.constant(bank), training=True, fast=fast)
        loss = LOSS(labels, logits)
    return float(loss), tape.gradient(loss, model.trainable_variables)


def keras_loss_and_grads(baseline, frames, labels):
    with tf.GradientTape() as tape:
        loss = LOSS(labels, baseline(frames, training=True))
    return float(loss), tape.gradient(loss, baseline.trainable_variables)


def assert_same(book, plain):
    (loss_b, grads_b), (loss_k, grads_k) = book, plain
    assert len(grads_b) == len(grads_k)
    np.testing.assert_allclose(loss_b, loss_k, rtol=1e-5, atol=1e-6)
    for gb, gk in zip(grads_b, grads_k):
        gb, gk = np.asarray(gb), np.asarray(gk)
        assert gb.shape == gk.shape
        scale = max(np.abs(gk).max(), 1e-6)
        np.testing.assert_allclose(gb, gk, rtol=0, atol=2e-5 * scale)


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
def test_indexed_cnn_equals_plain_keras_for_gated_cells(task, cell):
    model = models.build_model(cell=cell, units=16, seed=2)
    split = task.train
    assert_same(book_loss_and_grads(model, split.index, split.bank, split.labels),
                keras_loss_and_grads(model.keras_baseline(), split.frames(), split.labels))


def test_one_training_step_updates_weights_identically(task):
    """After one Adam step from the same weights, both models hold the same weights."""
    model = models.build_model(activation="relu", recurrent_initializer="identity", units=16, seed=4)
    baseline = model.keras_baseline()
    baseline.compile(optimizer=keras.optimizers.Adam(1e-2), loss=LOSS)
    split = task.train
    stepper = training.Stepper(model, keras.optimizers.Adam(1e-2), indexed=True, bank=split.bank, fast=True)
    stepper.step(split.index, split.labels)
    baseline.fit(split.frames(), split.labels, batch_size=len(split), epochs=1, verbose=0, shuffle=False)
    for w_book, w_keras in zip(model.get_weights(), baseline.get_weights()):
        np.testing.assert_allclose(w_book, w_keras, rtol=1e-4, atol=1e-5)


def test_fast_recurrence_matches_keras_layer_on_long_sequences():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 150, 6)).astype("float32")
    layer = keras.layers.SimpleRNN(8, activation="tanh", return_sequences=True)
    np.testing.assert_allclose(recurrence.simple_rnn_states(layer, x), layer(x), atol=1e-5)


def test_bench_flop_count_matches_hand_count():
    model = models.build_model(units=64, conv_filters=(16, 32))
    # conv1: 8*8 outputs * 3*3*1 inputs * 16 channels; conv2: 8*8 * 3*3*16 * 32; two FLOPs per multiply-add
    assert bench.conv_flops_per_image(model) == 2 * (64 * 9 * 1 * 16 + 64 * 9 * 16 * 32)


@pytest.mark.parametrize("steps,unroll", [(1, 8), (7, 8), (13, 4), (16, 8), (9, 1)])
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
