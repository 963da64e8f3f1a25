"""The named choices the book supports, in one light module (no TensorFlow import),
shared by the engine's argument checks and the build's parameter validation."""
from __future__ import annotations

TASKS = ("recall", "count")
CELLS = ("simple_rnn", "gru", "lstm")
RECURRENT_INITIALIZERS = ("orthogonal", "identity", "glorot_uniform", "normal")
#: Standard deviation of the ``normal`` recurrent initializer (times the gain): Pascanu et al.
#: (2013)'s "basic tanh" draws its weights from N(0, 0.1).
NORMAL_STD = 0.1
OPTIMIZERS = ("sgd", "adam", "rmsprop")
CLIP_MODES = ("none", "clipnorm", "global_clipnorm", "clipvalue")
#: The encoder's convolution kernels: Keras's default (``glorot_uniform``) or He-uniform.
ENCODER_INITS = ("glorot_uniform", "he_uniform")
#: A normalisation of the CNN features at the interface to the recurrent layer.
FEATURE_NORMS = ("none", "layer_norm")
#: The LSTM's initial biases: Keras's (``unit_forget_bias=True``) or chrono (Tallec & Ollivier 2018).
LSTM_BIAS_INITS = ("keras", "chrono")
#: The keys of the gated configurations of the trained chapters (``lstm-chrono``: chrono LSTM biases).
GATED_CONFIGS = ("gru", "lstm", "lstm-chrono")


def check_choice(name: str, value, choices, error=ValueError) -> None:
    """Raise ``error`` naming the argument and the valid choices unless ``value`` is one of them.

    Example:
        >>> check_choice("clip_mode", "clipnorm", CLIP_MODES)
        >>> check_choice("clip_mode", "norm", CLIP_MODES)
        Traceback (most recent call last):
        ...
        ValueError: clip_mode='norm' is not supported; choose one of none, clipnorm, global_clipnorm, clipvalue
    """
    if value not in choices:
        raise error(f"{name}={value!r} is not supported; choose one of {', '.join(choices)}")
