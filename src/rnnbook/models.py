"""The book's model: a CNN encoder applied to every frame, feeding a recurrent head.

The recurrent head is a Keras ``SimpleRNN`` (any activation Keras knows, with the
recurrent initializer and gain under study) or a ``GRU`` / ``LSTM`` baseline; a
``Dense`` layer reads the last hidden state.

Two ways to get the per-frame features, with the same math:

* :meth:`SequenceClassifier.features` runs the CNN on every frame, like
  ``TimeDistributed`` (the general path, for a reader's own data);
* :meth:`SequenceClassifier.indexed_features` runs the CNN once per *distinct*
  image of the batch and gathers the features into place (the fast path, for
  sequences drawn from an image bank). The gradient of a gather sums over the
  copies, exactly what the general path's weight gradient sums.

Example:
    >>> model = build_model(activation="relu", recurrent_initializer="identity", units=32)
    >>> model.rnn.cell.activation.__name__
    'relu'
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from rnnbook import recurrence, runtime
from rnnbook.choices import CELLS, RECURRENT_INITIALIZERS, check_choice

FRAME_SHAPE = (8, 8, 1)


class ModelError(ValueError):
    """A model argument outside what the book supports; the message lists the choices."""


@keras.saving.register_keras_serializable(package="rnnbook")
class ScaledGlorotUniform(keras.initializers.Initializer):
    """Glorot-uniform weights times ``gain`` (TF1 ``BasicRNNCell``'s recurrent block at gain 1).

    Example:
        >>> w = ScaledGlorotUniform(gain=2.0, seed=0)((4, 4))
    """

    def __init__(self, gain: float = 1.0, seed: int | None = None):
        self.gain = float(gain)
        self.seed = seed

    def __call__(self, shape, dtype=None):
        return self.gain * keras.initializers.GlorotUniform(seed=self.seed)(shape, dtype=dtype)

    def get_config(self):
        return {"gain": self.gain, "seed": self.seed}


def recurrent_initializer(name: str = "orthogonal", gain: float = 1.0, seed: int | None = None):
    """The Keras initializer for a recurrent matrix: ``orthogonal`` (Keras default),
    ``identity`` (the IRNN of Le et al. 2015) or ``glorot_uniform`` (TF1), scaled by ``gain``."""
    if name == "orthogonal":
        return keras.initializers.Orthogonal(gain=gain, seed=seed)
    if name == "identity":
        return keras.initializers.Identity(gain=gain)
    if name == "glorot_uniform":
        return ScaledGlorotUniform(gain=gain, seed=seed)
    check_choice("recurrent_initializer", name, RECURRENT_INITIALIZERS, ModelError)


def check_activation(name: str) -> str:
    """Return ``name`` if Keras knows the activation, else raise naming some valid ones."""
    try:
        fn = keras.activations.get(name)
    except (ValueError, TypeError):
        fn = None
    if not isinstance(name, str) or fn is None:
        known = ", ".join(["tanh", "relu", "sigmoid", "linear", "elu", "selu", "softsign", "gelu"])
        raise ModelError(f"activation={name!r} is not a Keras activation; for example {known}")
    return name


def build_encoder(conv_filters=(16, 32), frame_shape=FRAME_SHAPE, seed: int = 0) -> keras.Sequential:
    """ReLU 3x3 convolutions at full resolution, then 2x2 max pooling and flatten.

    With the default ``(16, 32)`` on 8x8 digits this gives 4 x 4 x 32 = 512 features per frame.
    """
    if len(conv_filters) < 1 or any(int(f) < 1 for f in conv_filters):
        raise ModelError(f"conv_filters={tuple(conv_filters)!r} must be one or more positive widths")
    encoder = keras.Sequential(name="encoder")
    encoder.add(keras.Input(frame_shape))
    for i, filters in enumerate(conv_filters):
        encoder.add(keras.layers.Conv2D(int(filters), 3, padding="same", activation="relu",
                                        kernel_initializer=keras.initializers.HeUniform(seed=seed + 10 + i),
                                        name=f"conv{i + 1}"))
    encoder.add(keras.layers.MaxPooling2D(2, name="pool"))
    encoder.add(keras.layers.Flatten(name="flatten"))
    return encoder


def build_recurrent(cell: str = "simple_rnn", units: int = 64, activation: str = "tanh",
                    recurrent_initializer_name: str = "orthogonal", recurrent_gain: float = 1.0,
                    seed: int = 0, return_sequences: bool = True) -> keras.layers.Layer:
    """The recurrent head layer."""
    check_choice("cell", cell, CELLS, ModelError)
    if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
        raise ModelError(f"units={units!r} must be a positive integer")
    if not np.isfinite(recurrent_gain) or recurrent_gain <= 0:
        raise ModelError(f"recurrent_gain={recurrent_gain!r} must be a positive number")
    check_activation(activation)
    layer = {"simple_rnn": keras.layers.SimpleRNN, "gru": keras.layers.GRU, "lstm": keras.layers.LSTM}[cell]
    return layer(
        int(units), activation=activation, return_sequences=return_sequences,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1),
        recurrent_initializer=recurrent_initializer(recurrent_initializer_name, recurrent_gain, seed + 2),
        name=cell,
    )


class SequenceClassifier(keras.Model):
    """CNN encoder per frame -> recurrent head -> ``Dense`` logits from the last state."""

    def __init__(self, encoder, rnn, head, frame_shape=FRAME_SHAPE, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.rnn, self.head = encoder, rnn, head
        self.frame_shape = tuple(frame_shape)

    def features(self, frames, training=False):
        """CNN features of every frame: ``(B, T, H, W, C) -> (B, T, F)`` (general path)."""
        shape = tf.shape(frames)
        flat = tf.reshape(frames, tf.concat([[-1], shape[2:]], axis=0))
        feats = self.encoder(flat, training=training)
        return tf.reshape(feats, [shape[0], shape[1], feats.shape[-1]])

    def indexed_features(self, index, bank, training=False):
        """CNN features for frames given as ``index (B, T)`` into ``bank (M, H, W, C)``.

        The CNN runs once per distinct image in the batch; features are gathered into place.
        """
        shape = tf.shape(index)
        distinct, position = tf.unique(tf.reshape(index, [-1]))
        feats = self.encoder(tf.gather(bank, distinct), training=training)
        return tf.reshape(tf.gather(feats, position), [shape[0], shape[1], feats.shape[-1]])

    def forward(self, features, training=False, fast=False):
        """``(logits, hidden states (B, T, U))`` from CNN features ``(B, T, F)``.

        ``fast=True`` runs a ``SimpleRNN`` head through :mod:`rnnbook.recurrence`
        (same weights, same math, hand-written BPTT); GRU and LSTM always use Keras.
        """
        if fast and isinstance(self.rnn, keras.layers.SimpleRNN):
            states = recurrence.simple_rnn_states(self.rnn, features)
        else:
            states = self.rnn(features, training=training)
        return self.head(states[:, -1], training=training), states

    def forward_indexed(self, index, bank, training=False, fast=True):
        """``(logits, hidden states (B, T, U))`` for frames given as ``index (B, T)`` into ``bank``.

        With ``fast=True`` and a ``SimpleRNN`` head, the CNN *and* the input projection
        ``x K + b`` run once per distinct image (``gather(f) K = gather(f K)``), so only
        U numbers per frame are gathered, then the fast recurrence runs.
        """
        if not (fast and isinstance(self.rnn, keras.layers.SimpleRNN)):
            return self.forward(self.indexed_features(index, bank, training=training), training=training,
                                fast=fast)
        shape = tf.shape(index)
        distinct, position = tf.unique(tf.reshape(tf.transpose(index), [-1]))  # time-major order
        cell = self.rnn.cell
        projected = tf.matmul(self.encoder(tf.gather(bank, distinct), training=training), cell.kernel)
        if cell.use_bias:
            projected = projected + cell.bias
        projected = tf.reshape(tf.gather(projected, position), [shape[1], shape[0], cell.units])
        states = tf.transpose(recurrence.recur(projected, cell.recurrent_kernel, cell.activation), [1, 0, 2])
        return self.head(states[:, -1], training=training), states

    def call(self, frames, training=False):
        return self.forward(self.features(frames, training=training), training=training)[0]

    def keras_baseline(self) -> keras.Model:
        """A plain Keras model of the identical architecture and weights:
        ``TimeDistributed(encoder)`` + recurrent layer (last state) + ``Dense``."""
        encoder = keras.models.clone_model(self.encoder)
        rnn_config = dict(self.rnn.get_config(), return_sequences=False)
        rnn = self.rnn.__class__.from_config(rnn_config)
        head = self.head.__class__.from_config(self.head.get_config())
        baseline = keras.Sequential([keras.Input((None, *self.frame_shape)),
                                     keras.layers.TimeDistributed(encoder), rnn, head], name="keras_baseline")
        encoder.set_weights(self.encoder.get_weights())
        rnn.set_weights(self.rnn.get_weights())
        head.set_weights(self.head.get_weights())
        return baseline


def build_model(cell: str = "simple_rnn", units: int = 64, activation: str = "tanh",
                recurrent_initializer: str = "orthogonal", recurrent_gain: float = 1.0,
                conv_filters=(16, 32), num_classes: int = 10, seed: int = 0,
                frame_shape=FRAME_SHAPE) -> SequenceClassifier:
    """Build (and initialise, deterministically for ``seed``) the CNN + recurrent classifier.

    Args:
        cell: ``simple_rnn``, ``gru`` or ``lstm``.
        units: recurrent units.
        activation: the recurrent activation (any name Keras knows).
        recurrent_initializer: ``orthogonal``, ``identity`` or ``glorot_uniform``.
        recurrent_gain: multiplies the initial recurrent matrix.
        conv_filters: width of each convolution; its length is the CNN depth.
        num_classes: size of the output layer.
        seed: seeds every initializer.
    """
    runtime.configure()
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ModelError(f"num_classes={num_classes!r} must be an integer >= 2")
    keras.utils.set_random_seed(seed)
    encoder = build_encoder(conv_filters, frame_shape, seed)
    rnn = build_recurrent(cell, units, activation, recurrent_initializer, recurrent_gain, seed)
    head = keras.layers.Dense(int(num_classes), kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 3),
                              name="head")
    model = SequenceClassifier(encoder, rnn, head, frame_shape, name=f"cnn_{cell}")
    model(np.zeros((1, 2, *frame_shape), np.float32))  # create the weights
    return model
