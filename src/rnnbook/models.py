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

import weakref

import keras
import numpy as np
import tensorflow as tf

from rnnbook import recurrence, runtime
from rnnbook.choices import (CELLS, ENCODER_INITS, FEATURE_NORMS, LSTM_BIAS_INITS, NORMAL_STD, RECURRENT_INITIALIZERS,
                              check_choice)

FRAME_SHAPE = (8, 8, 1)
#: The initial biases of every model build_model made (see reinitialize).
_INITIAL_BIASES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


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
    ``identity`` (the IRNN of Le et al. 2015), ``glorot_uniform`` (TF1) or ``normal``
    (N(0, :data:`rnnbook.choices.NORMAL_STD`), Pascanu et al. 2013's "basic tanh"), scaled by ``gain``."""
    if name == "orthogonal":
        return keras.initializers.Orthogonal(gain=gain, seed=seed)
    if name == "identity":
        return keras.initializers.Identity(gain=gain)
    if name == "glorot_uniform":
        return ScaledGlorotUniform(gain=gain, seed=seed)
    if name == "normal":
        return keras.initializers.RandomNormal(0.0, NORMAL_STD * float(gain), seed=seed)
    check_choice("recurrent_initializer", name, RECURRENT_INITIALIZERS, ModelError)


def conv_initializer(seed: int, layer: int, name: str = "glorot_uniform"):
    """The kernel initializer of convolution ``layer`` (0-based) for ``seed``: Keras's default
    ``glorot_uniform`` or ``he_uniform``. Both draw the same seeded uniform numbers, scaled to
    their own limit, so the two encoders of one seed differ by a fixed factor per layer."""
    check_choice("encoder_init", name, ENCODER_INITS, ModelError)
    cls = keras.initializers.GlorotUniform if name == "glorot_uniform" else keras.initializers.HeUniform
    return cls(seed=seed + 10 + layer)


def input_initializer(seed: int, std: float | None = None, gain: float = 1.0):
    """The recurrent layer's input-kernel initializer for ``seed``: Glorot-uniform (times ``gain``
    when it is not 1), or N(0, ``std``) when ``std`` is given (the synthetic tasks' small inputs,
    Pascanu et al. 2013)."""
    if std is not None:
        return keras.initializers.RandomNormal(0.0, float(std), seed=seed + 1)
    if gain != 1.0:
        return ScaledGlorotUniform(gain=gain, seed=seed + 1)
    return keras.initializers.GlorotUniform(seed=seed + 1)


@keras.saving.register_keras_serializable(package="rnnbook")
class ChronoBias(keras.initializers.Initializer):
    """The LSTM bias of the chrono initialisation (Tallec & Ollivier 2018, "Can recurrent neural
    networks warp time?"): forget-gate bias ``b_f ~ log(U[1, tmax - 1])``, input-gate bias
    ``-b_f``, cell and output biases 0, in Keras's gate order (i, f, c, o).

    Example:
        >>> b = keras.ops.convert_to_numpy(ChronoBias(tmax=11, seed=0)((8,)))
        >>> bool((b[2:4] >= 0).all() and (b[2:4] <= np.log(10)).all() and (b[:2] == -b[2:4]).all())
        True
    """

    def __init__(self, tmax: int = 2, seed: int | None = None):
        self.tmax = int(tmax)
        self.seed = seed

    def __call__(self, shape, dtype=None):
        units = int(shape[0]) // 4
        u = keras.random.uniform((units,), 1.0, max(float(self.tmax - 1), 1.0), seed=self.seed)
        forget = keras.ops.log(u)
        zeros = keras.ops.zeros((2 * units,))
        return keras.ops.cast(keras.ops.concatenate([-forget, forget, zeros]), dtype or "float32")

    def get_config(self):
        return {"tmax": self.tmax, "seed": self.seed}


def lstm_bias_initializer(seed: int, name: str = "keras", tmax: int | None = None):
    """The seeded :class:`ChronoBias` for ``name="chrono"`` (horizon ``tmax``), None for Keras's
    own LSTM bias (zeros and a forget-gate bias of 1, ``unit_forget_bias=True``)."""
    check_choice("lstm_bias_init", name, LSTM_BIAS_INITS, ModelError)
    if name == "keras":
        return None
    if isinstance(tmax, bool) or not isinstance(tmax, (int, np.integer)) or tmax < 2:
        raise ModelError(f"chrono_tmax={tmax!r} must be an integer >= 2 (the longest dependency, in steps)")
    return ChronoBias(tmax=int(tmax), seed=seed + 4)


def head_initializer(seed: int, std: float | None = None):
    """The output layer's kernel initializer for ``seed``: Glorot-uniform, or N(0, ``std``)."""
    if std is not None:
        return keras.initializers.RandomNormal(0.0, float(std), seed=seed + 3)
    return keras.initializers.GlorotUniform(seed=seed + 3)


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


def build_encoder(conv_filters=(16, 32), frame_shape=FRAME_SHAPE, seed: int = 0,
                  feature_scale: float = 1.0, encoder_init: str = "glorot_uniform",
                  feature_norm: str = "none") -> keras.Sequential:
    """ReLU 3x3 convolutions at full resolution, then 2x2 max pooling and flatten.

    With the default ``(16, 32)`` on 8x8 digits this gives 4 x 4 x 32 = 512 features per frame.
    The convolution kernels start as ``encoder_init`` (Keras's default ``glorot_uniform``, or
    ``he_uniform``), the biases at zero. At the CNN-to-RNN interface, ``feature_norm="layer_norm"``
    normalises each frame's features (a ``LayerNormalization``, trainable gain and offset), then
    ``feature_scale`` multiplies them by a fixed number (a ``Rescaling`` layer, no weights; 1 adds none).
    """
    if not (np.isfinite(feature_scale) and feature_scale > 0):
        raise ModelError(f"feature_scale={feature_scale!r} must be a positive number")
    check_choice("encoder_init", encoder_init, ENCODER_INITS, ModelError)
    check_choice("feature_norm", feature_norm, FEATURE_NORMS, ModelError)
    if len(conv_filters) < 1 or any(int(f) < 1 for f in conv_filters):
        raise ModelError(f"conv_filters={tuple(conv_filters)!r} must be one or more positive widths")
    encoder = keras.Sequential(name="encoder")
    encoder.add(keras.Input(frame_shape))
    for i, filters in enumerate(conv_filters):
        encoder.add(keras.layers.Conv2D(int(filters), 3, padding="same", activation="relu",
                                        kernel_initializer=conv_initializer(seed, i, encoder_init),
                                        name=f"conv{i + 1}"))
    encoder.add(keras.layers.MaxPooling2D(2, name="pool"))
    encoder.add(keras.layers.Flatten(name="flatten"))
    if feature_norm == "layer_norm":
        encoder.add(keras.layers.LayerNormalization(name="feature_norm"))
    if feature_scale != 1.0:
        encoder.add(keras.layers.Rescaling(float(feature_scale), name="feature_scale"))
    return encoder


def build_recurrent(cell: str = "simple_rnn", units: int = 64, activation: str = "tanh",
                    recurrent_initializer_name: str = "orthogonal", recurrent_gain: float = 1.0,
                    seed: int = 0, return_sequences: bool = True, input_gain: float = 1.0,
                    lstm_bias_init: str = "keras", chrono_tmax: int | None = None) -> keras.layers.Layer:
    """The recurrent head layer. ``input_gain`` multiplies the Glorot-uniform input kernel;
    ``lstm_bias_init="chrono"`` gives an LSTM the chrono biases for horizon ``chrono_tmax``
    (:class:`ChronoBias`) instead of Keras's ``unit_forget_bias=True``."""
    check_choice("cell", cell, CELLS, ModelError)
    if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
        raise ModelError(f"units={units!r} must be a positive integer")
    for name, value in (("recurrent_gain", recurrent_gain), ("input_gain", input_gain)):
        if not np.isfinite(value) or value <= 0:
            raise ModelError(f"{name}={value!r} must be a positive number")
    check_activation(activation)
    chrono = lstm_bias_initializer(seed, lstm_bias_init, chrono_tmax)
    if chrono is not None and cell != "lstm":
        raise ModelError(f"lstm_bias_init={lstm_bias_init!r} applies to an LSTM only, not cell={cell!r}")
    layer = {"simple_rnn": keras.layers.SimpleRNN, "gru": keras.layers.GRU, "lstm": keras.layers.LSTM}[cell]
    extra = {} if chrono is None else {"unit_forget_bias": False, "bias_initializer": chrono}
    return layer(
        int(units), activation=activation, return_sequences=return_sequences,
        kernel_initializer=input_initializer(seed, gain=input_gain),
        recurrent_initializer=recurrent_initializer(recurrent_initializer_name, recurrent_gain, seed + 2),
        name=cell, **extra,
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

        ``fast=True`` runs the head through :mod:`rnnbook.recurrence` (same weights, same
        math, hand-written BPTT) when it covers the layer (SimpleRNN, GRU, LSTM).
        """
        if fast and recurrence.is_fast(self.rnn):
            states = recurrence.layer_states(self.rnn, features)
        else:
            states = self.rnn(features, training=training)
        return self.head(states[:, -1], training=training), states

    def forward_indexed(self, index, bank, training=False, fast=True):
        """``(logits, hidden states (B, T, U))`` for frames given as ``index (B, T)`` into ``bank``.

        With ``fast=True`` the CNN *and* the input projection of every gate ``x K + b``
        run once per distinct image (``gather(f) K = gather(f K)``), so only the
        projections (gates x U numbers per frame) are gathered, then the fast recurrence runs.
        """
        if not (fast and recurrence.is_fast(self.rnn)):
            return self.forward(self.indexed_features(index, bank, training=training), training=training,
                                fast=fast)
        shape = tf.shape(index)
        distinct, position = tf.unique(tf.reshape(tf.transpose(index), [-1]))  # time-major order
        cell = self.rnn.cell
        projected = recurrence.input_projection(cell, self.encoder(tf.gather(bank, distinct), training=training))
        projected = tf.reshape(tf.gather(projected, position), [shape[1], shape[0], projected.shape[-1]])
        states = tf.transpose(recurrence.cell_states(cell, projected), [1, 0, 2])
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
                frame_shape=FRAME_SHAPE, feature_scale: float = 1.0, encoder_init: str = "glorot_uniform",
                feature_norm: str = "none", input_gain: float = 1.0, lstm_bias_init: str = "keras",
                chrono_tmax: int | None = None) -> SequenceClassifier:
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
        feature_scale: fixed factor on the CNN features entering the recurrent layer.
        encoder_init: the convolution kernels' initializer, ``glorot_uniform`` (Keras's default)
            or ``he_uniform``.
        feature_norm: ``none`` or ``layer_norm`` (a LayerNorm on the features at the interface).
        input_gain: multiplies the recurrent layer's Glorot-uniform input kernel.
        lstm_bias_init: ``keras`` or ``chrono`` (LSTM only; horizon ``chrono_tmax``).
    """
    runtime.configure()
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ModelError(f"num_classes={num_classes!r} must be an integer >= 2")
    runtime.seed_everything(seed)
    encoder = build_encoder(conv_filters, frame_shape, seed, feature_scale, encoder_init, feature_norm)
    rnn = build_recurrent(cell, units, activation, recurrent_initializer, recurrent_gain, seed,
                          input_gain=input_gain, lstm_bias_init=lstm_bias_init, chrono_tmax=chrono_tmax)
    head = keras.layers.Dense(int(num_classes), kernel_initializer=head_initializer(seed),
                              name="head")
    model = SequenceClassifier(encoder, rnn, head, frame_shape, name=f"cnn_{cell}")
    model.init_options = {"encoder_init": encoder_init, "input_gain": float(input_gain),
                          "lstm_bias_init": lstm_bias_init, "chrono_tmax": chrono_tmax}
    model(np.zeros((1, 2, *frame_shape), np.float32))  # create the weights
    kernels = {id(v) for v, _ in _seeded_kernels(model, seed, recurrent_initializer, recurrent_gain)}
    _INITIAL_BIASES[model] = [(v, v.numpy()) for v in model.weights if id(v) not in kernels]
    return model


def build_vector_model(cell: str = "simple_rnn", units: int = 64, activation: str = "tanh",
                       recurrent_initializer: str = "orthogonal", recurrent_gain: float = 1.0,
                       n_features: int = 2, n_outputs: int = 1, seed: int = 0,
                       input_std: float | None = None, lstm_bias_init: str = "keras",
                       chrono_tmax: int | None = None) -> SequenceClassifier:
    """A recurrent model with no CNN, for frames that are small vectors (the synthetic tasks of
    :mod:`rnnbook.synthetic`): the "encoder" passes the ``n_features`` numbers through unchanged,
    so the same steppers, fast recurrence, layer groups and :func:`reinitialize` apply. The input
    kernel is N(0, ``input_std``) when given, else Glorot-uniform; ``n_outputs`` read-out units
    (1 for a regression)."""
    runtime.configure()
    for name, value, low in (("n_features", n_features, 1), ("n_outputs", n_outputs, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ModelError(f"{name}={value!r} must be an integer >= {low}")
    if input_std is not None and not (np.isfinite(input_std) and input_std > 0):
        raise ModelError(f"input_std={input_std!r} must be a positive number (or None: Glorot-uniform)")
    runtime.seed_everything(seed)
    encoder = keras.Sequential([keras.Input((int(n_features),)), keras.layers.Identity(name="frames")],
                               name="encoder")
    rnn = build_recurrent(cell, units, activation, recurrent_initializer, recurrent_gain, seed,
                          lstm_bias_init=lstm_bias_init, chrono_tmax=chrono_tmax)
    if input_std is not None:
        rnn.cell.kernel_initializer = input_initializer(seed, input_std)
    head = keras.layers.Dense(int(n_outputs), kernel_initializer=head_initializer(seed), name="head")
    model = SequenceClassifier(encoder, rnn, head, (int(n_features),), name=f"vector_{cell}")
    model.input_std = input_std
    model.init_options = {"lstm_bias_init": lstm_bias_init, "chrono_tmax": chrono_tmax}
    model(np.zeros((1, 2, int(n_features)), np.float32))  # create the weights
    kernels = {id(v) for v, _ in _seeded_kernels(model, seed, recurrent_initializer, recurrent_gain)}
    _INITIAL_BIASES[model] = [(v, v.numpy()) for v in model.weights if id(v) not in kernels]
    reinitialize(model, seed, recurrent_initializer, recurrent_gain)  # the input kernel from input_std
    return model


def _head_std(model: SequenceClassifier, recurrent_initializer_name: str) -> float | None:
    """A vector model (it has ``input_std``) with the ``normal`` recurrent initializer reads out
    through N(0, NORMAL_STD) weights, as Pascanu et al.'s "basic tanh" does; otherwise None."""
    return NORMAL_STD if recurrent_initializer_name == "normal" and hasattr(model, "input_std") else None


def _seeded_kernels(model: SequenceClassifier, seed: int, recurrent_initializer_name: str,
                    recurrent_gain: float) -> list:
    """``(variable, its seeded initializer)`` for every kernel of ``model`` (and the LSTM's
    chrono bias, which the seed draws too)."""
    options = getattr(model, "init_options", {})
    convs = [layer for layer in model.encoder.layers if isinstance(layer, keras.layers.Conv2D)]
    cell = model.rnn.cell
    encoder_init = options.get("encoder_init", "glorot_uniform")
    chrono = lstm_bias_initializer(seed, options.get("lstm_bias_init", "keras"), options.get("chrono_tmax"))
    return [*[(layer.kernel, conv_initializer(seed, i, encoder_init)) for i, layer in enumerate(convs)],
            (cell.kernel, input_initializer(seed, getattr(model, "input_std", None), options.get("input_gain", 1.0))),
            (cell.recurrent_kernel, recurrent_initializer(recurrent_initializer_name, recurrent_gain, seed + 2)),
            (model.head.kernel, head_initializer(seed, _head_std(model, recurrent_initializer_name))),
            *([(cell.bias, chrono)] if chrono is not None else [])]


def reinitialize(model: SequenceClassifier, seed: int, recurrent_initializer_name: str = "orthogonal",
                 recurrent_gain: float = 1.0, chrono_tmax: int | None = None) -> None:
    """Give ``model`` the initial weights :func:`build_model` gives for ``seed``, initializer and gain
    (the same architecture otherwise), without building a new model: every kernel is drawn again
    from its seeded initializer; biases, which no seed touches, get their initial values back.
    A chrono LSTM's bias is drawn again too, for horizon ``chrono_tmax`` when given (a run of
    another sequence length), else the model's own."""
    if model not in _INITIAL_BIASES:
        raise ModelError("reinitialize needs a model made by build_model")
    options = getattr(model, "init_options", {})
    if chrono_tmax is not None and options.get("lstm_bias_init") == "chrono":
        options["chrono_tmax"] = int(chrono_tmax)
    for variable, init in _seeded_kernels(model, seed, recurrent_initializer_name, recurrent_gain):
        variable.assign(init(tuple(variable.shape), dtype=variable.dtype))
    for variable, value in _INITIAL_BIASES[model]:
        variable.assign(value)


def feature_rms(model, images, limit: int = 256) -> float:
    """Root mean square of the features entering the recurrent layer (after any LayerNorm and
    rescaling of the interface) on the first ``limit`` of ``images`` (a split's image bank);
    NaN without images. ``model``: a :class:`SequenceClassifier` or its encoder."""
    if images is None or len(images) == 0:
        return float("nan")
    feats = getattr(model, "encoder", model)(tf.constant(np.asarray(images[:limit], np.float32)), training=False)
    return float(tf.sqrt(tf.reduce_mean(tf.square(tf.cast(feats, tf.float64)))))
