"""Measurements on a SimpleRNN head fed by CNN features.

Everything takes a plain ``keras.layers.SimpleRNN`` (its ``cell`` holds ``kernel`` K
of shape (F, U), ``recurrent_kernel`` R (U, U), ``bias`` b (U,) and ``activation`` s),
a features tensor ``(B, T, F)`` and, for gradients, the ``Dense`` head on the last
state. The recurrence is re-computed explicitly::

    a_t = x_t K + h_{t-1} R + b,    h_t = s(a_t) (+ perturbation_t),    h_0 = 0

Results are tidy ``pandas.DataFrame`` s or dicts of floats (for seaborn and myst-nb glue).
Example, with ``features = model.encoder(images)`` of shape (B, T, F)::

    lags = grad_norm_by_lag(model.rnn, model.head, features, labels)  # lag, grad_norm, ...
    decay_rate(lags)            # measured per-step factor: < 1 vanishing, > 1 exploding
    pascanu_bound(model.rnn)    # sigma_max(R) * gamma, the bound it must respect
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf

#: Supremum of |s'| for Keras activations (Pascanu et al. 2013 call it gamma).
#: selu: scale * alpha; gelu and silu overshoot 1 slightly; hard_sigmoid is relu6(x+3)/6.
ACTIVATION_GAMMA = {
    "tanh": 1.0, "relu": 1.0, "sigmoid": 0.25, "linear": 1.0, "elu": 1.0,
    "selu": 1.0507009873554805 * 1.6732632423543772, "softsign": 1.0, "relu6": 1.0,
    "leaky_relu": 1.0, "hard_sigmoid": 1.0 / 6.0, "silu": 1.0998393, "swish": 1.0998393,
    "gelu": 1.1289046,
}


def _cell(rnn):
    return getattr(rnn, "cell", rnn)


def activation_name(activation) -> str:
    """Name of a Keras activation given as a string or a function (``None`` is linear)."""
    if activation is None:
        return "linear"
    if isinstance(activation, str):
        return activation
    return getattr(activation, "__name__", str(activation))


def _weights(rnn, dtype):
    cell = _cell(rnn)
    kernel = tf.cast(cell.kernel, dtype)
    recurrent = tf.cast(cell.recurrent_kernel, dtype)
    bias = None if cell.bias is None else tf.cast(cell.bias, dtype)
    return kernel, recurrent, bias


def _as_features(rnn, features):
    """Features as a float tensor; float64 is kept, anything else uses the layer's dtype."""
    features = tf.convert_to_tensor(features)
    if features.dtype != tf.float64:
        features = tf.cast(features, _cell(rnn).kernel.dtype)
    return features


def input_drive(rnn, features) -> tf.Tensor:
    """The input drive ``x_t K + b`` for every step, shape ``(B, T, U)``."""
    features = _as_features(rnn, features)
    kernel, _, bias = _weights(rnn, features.dtype)
    drive = tf.einsum("btf,fu->btu", features, kernel)
    return drive if bias is None else drive + bias


def _unroll(rnn, features, perturbation=None):
    """Pre-activations ``a`` and states ``h``, both ``(B, T, U)``."""
    features = _as_features(rnn, features)
    _, recurrent, _ = _weights(rnn, features.dtype)
    activation = _cell(rnn).activation or (lambda a: a)
    drive = input_drive(rnn, features)
    h = tf.zeros_like(drive[:, 0])
    pre, states = [], []
    for t in range(drive.shape[1]):
        a = drive[:, t] + tf.matmul(h, recurrent)
        h = activation(a)
        if perturbation is not None:
            h = h + perturbation[:, t]
        pre.append(a)
        states.append(h)
    return tf.stack(pre, axis=1), tf.stack(states, axis=1)


def unrolled_states(rnn, features, perturbation=None) -> tf.Tensor:
    """Hidden states ``h_t`` of the SimpleRNN, re-computed step by step, ``(B, T, U)``.

    ``perturbation`` (same shape) is added to each ``h_t`` before it feeds step t+1;
    differentiating with respect to a zero perturbation gives ``dL/dh_t``.
    Equals ``rnn(features)`` (with ``return_sequences=True``) when no perturbation is given.
    """
    return _unroll(rnn, features, perturbation)[1]


def example_losses(rnn, head, features, labels, perturbation=None) -> tf.Tensor:
    """Per-example cross-entropy of ``head(h_T)`` (logits) against integer ``labels``, ``(B,)``."""
    last = unrolled_states(rnn, features, perturbation)[:, -1]
    logits = head(last)
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def state_gradients(rnn, head, features, labels) -> tf.Tensor:
    """``d loss_i / d h_t`` of each example's own loss, ``(B, T, U)``.

    Zero-perturbation trick: the gradient with respect to a zero tensor added to h_t
    is the total derivative through all later steps. (The gradient of the batch-mean
    loss is this divided by B.)
    """
    features = _as_features(rnn, features)
    shape = (features.shape[0], features.shape[1], _cell(rnn).units)
    perturbation = tf.zeros(shape, features.dtype)
    with tf.GradientTape() as tape:
        tape.watch(perturbation)
        total = tf.reduce_sum(example_losses(rnn, head, features, labels, perturbation))
    return tape.gradient(total, perturbation)


def grad_norm_by_lag(rnn, head, features, labels) -> pd.DataFrame:
    """Norm of ``dL/dh_t`` indexed by time lag ``k = T-1-t`` (k = 0 is the last step).

    Columns: ``lag``, ``t``, ``grad_norm`` (mean over examples of the per-example norm
    ``||d loss_i / d h_t||``), ``grad_norm_median``, ``grad_norm_max`` and
    ``batch_grad_norm`` (Frobenius norm of the gradient of the batch-mean loss with
    respect to the (B, U) state tensor at step t).
    """
    grads = state_gradients(rnn, head, features, labels).numpy().astype(np.float64)
    batch, steps, _ = grads.shape
    per_example = np.sqrt(np.sum(grads**2, axis=-1))  # (B, T)
    t = np.arange(steps)
    frame = pd.DataFrame({
        "lag": steps - 1 - t,
        "t": t,
        "grad_norm": per_example.mean(axis=0),
        "grad_norm_median": np.median(per_example, axis=0),
        "grad_norm_max": per_example.max(axis=0),
        "batch_grad_norm": np.sqrt(np.sum(per_example**2, axis=0)) / batch,
    })
    return frame.sort_values("lag", ignore_index=True)


def decay_rate(lag_df, value="grad_norm", lag="lag", min_lag=0, max_lag=None) -> float:
    """Per-step growth (> 1) or decay (< 1) factor of the gradient norm with the lag.

    ``exp`` of the least-squares slope of ``log(value)`` against ``lag``: the geometric
    mean of the step-to-step ratios of a fitted exponential. Zeros (underflow), infs
    and NaNs are dropped; rows with repeated lags (several seeds) are pooled.
    Returns NaN when fewer than two distinct lags remain.

    >>> decay_rate(pd.DataFrame({"lag": [0, 1, 2], "grad_norm": [1.0, 0.5, 0.25]}))
    0.5
    """
    x = np.asarray(lag_df[lag], float)
    y = np.asarray(lag_df[value], float)
    keep = np.isfinite(y) & (y > 0) & (x >= min_lag)
    if max_lag is not None:
        keep &= x <= max_lag
    x, y = x[keep], np.log(y[keep])
    if np.unique(x).size < 2:
        return float("nan")
    slope = np.polyfit(x, y, 1)[0]
    return float(np.round(np.exp(slope), 12))  # trim float noise in the last digits


def decay_rates(lag_df, by, **kwargs) -> pd.DataFrame:
    """``decay_rate`` per group, e.g. ``decay_rates(df, by=["config", "seed"])``."""
    by = [by] if isinstance(by, str) else list(by)
    rows = [
        {**dict(zip(by, key)), "decay_rate": decay_rate(group, **kwargs)}
        for key, group in lag_df.groupby(by)
    ]
    return pd.DataFrame(rows)


def recurrent_spectrum(rnn) -> dict:
    """Largest and smallest singular value and spectral radius of the recurrent kernel R."""
    recurrent = np.asarray(_cell(rnn).recurrent_kernel, np.float64)
    singular = np.linalg.svd(recurrent, compute_uv=False)
    return {
        "sigma_max": float(singular[0]),
        "sigma_min": float(singular[-1]),
        "spectral_radius": float(np.abs(np.linalg.eigvals(recurrent)).max()),
    }


def activation_gamma(activation) -> float:
    """Bound gamma on ``|s'|`` for an activation name or Keras activation function.

    >>> activation_gamma("sigmoid")
    0.25
    """
    name = activation_name(activation)
    try:
        return ACTIVATION_GAMMA[name]
    except KeyError:
        raise ValueError(f"no known bound on the slope of {name!r}") from None


def pascanu_bound(rnn) -> float:
    """``sigma_max(R) * gamma``: below 1 the gradient must vanish (Pascanu et al. 2013);
    above 1 is necessary (not sufficient) for it to explode."""
    return recurrent_spectrum(rnn)["sigma_max"] * activation_gamma(_cell(rnn).activation)


def activation_slope(activation, pre_activation):
    """``s'(a)`` element-wise, for any element-wise Keras activation (one gradient call), as a
    tensor; None when the output does not depend on ``a`` through a gradient."""
    with tf.GradientTape() as tape:
        tape.watch(pre_activation)
        out = activation(pre_activation)
    return tape.gradient(out, pre_activation)


def activation_slopes(rnn, pre) -> np.ndarray:
    """``s'(a)`` of the layer's activation for the pre-activations ``pre`` (a tensor), as an
    array in their dtype (ones for a linear cell)."""
    grad = activation_slope(_cell(rnn).activation or (lambda a: a), pre)
    return np.ones(pre.shape, pre.dtype.as_numpy_dtype) if grad is None else grad.numpy()


def active_fraction(rnn, features) -> float:
    """Share of (example, step, unit) pre-activations above zero.

    For ReLU these are the units that pass gradient (slope 1); the rest pass none, so
    the effective per-step gain is about ``sigma_max * active_fraction``.
    """
    pre, _ = _unroll(rnn, features)
    return float(tf.reduce_mean(tf.cast(pre > 0, tf.float64)))


def mean_slope(rnn, features) -> float:
    """Mean ``|s'(a_t)|`` over examples, steps and units: the measured slope.

    Equals :func:`active_fraction` for ReLU; for tanh it is the mean of ``1 - h^2``.
    """
    pre, _ = _unroll(rnn, features)
    return float(tf.reduce_mean(tf.abs(tf.cast(activation_slopes(rnn, pre), tf.float64))))


def state_stats(rnn, features, slope_tol=1e-3) -> pd.DataFrame:
    """Per time step statistics of the hidden state ``h_t``.

    Columns: ``t``, ``state_norm`` (mean over examples of ``||h_t||``), ``state_max_abs``,
    ``state_mean``, ``positive_fraction`` (share of entries > 0), ``blocked_fraction``
    (share of entries whose slope ``|s'(a)| <= slope_tol``: inactive ReLU units,
    saturated tanh/sigmoid units; they pass no gradient back) and ``dead_units`` (share of
    units blocked for every example at this step).
    """
    pre, states = _unroll(rnn, features)
    h = states.numpy().astype(np.float64)
    blocked = np.abs(activation_slopes(rnn, pre)) <= slope_tol
    return pd.DataFrame({
        "t": np.arange(h.shape[1]),
        "state_norm": np.linalg.norm(h, axis=-1).mean(axis=0),
        "state_max_abs": np.abs(h).max(axis=(0, 2)),
        "state_mean": h.mean(axis=(0, 2)),
        "positive_fraction": (h > 0).mean(axis=(0, 2)),
        "blocked_fraction": blocked.mean(axis=(0, 2)),
        "dead_units": blocked.all(axis=0).mean(axis=-1),
    })


def dead_unit_fraction(rnn, features, slope_tol=1e-3) -> float:
    """Share of units that pass no gradient for any example at any step (dead ReLU units)."""
    pre, _ = _unroll(rnn, features)
    blocked = np.abs(activation_slopes(rnn, pre)) <= slope_tol
    return float(blocked.all(axis=(0, 1)).mean())


def input_drive_stats(rnn, features) -> dict:
    """Scale and sign of the features and of the input drive ``x_t K + b``.

    CNN features after a ReLU are non-negative, so whether the drive can push a unit
    down as well as up depends on the signs in K and b. Keys: ``feature_mean``,
    ``feature_std``, ``feature_nonneg_fraction``, ``drive_mean``, ``drive_std``,
    ``drive_abs_mean``, ``drive_positive_fraction`` and ``one_signed_units`` (share of
    units whose drive has the same sign for every example and step).
    """
    x = np.asarray(_as_features(rnn, features), np.float64)
    drive = input_drive(rnn, features).numpy().astype(np.float64)
    positive = drive > 0
    return {
        "feature_mean": float(x.mean()),
        "feature_std": float(x.std()),
        "feature_nonneg_fraction": float((x >= 0).mean()),
        "drive_mean": float(drive.mean()),
        "drive_std": float(drive.std()),
        "drive_abs_mean": float(np.abs(drive).mean()),
        "drive_positive_fraction": float(positive.mean()),
        "one_signed_units": float((positive.all(axis=(0, 1)) | (~positive).all(axis=(0, 1))).mean()),
    }
