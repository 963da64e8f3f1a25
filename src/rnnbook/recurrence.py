"""Fast SimpleRNN, GRU and LSTM recurrences with the same math as the Keras layers.

Keras computes every step of a recurrent layer inside a generic loop whose gradient
TensorFlow derives step by step. Here the input projection ``x K + b`` of every gate
and every step is one large matrix product (:func:`input_projection`, done once per
distinct image by :mod:`rnnbook.models`), the forward loop does only the recurrent
part, and back-propagation through time is written out by hand. For the SimpleRNN the
activation slopes are recomputed for all steps at once after the forward loop; the GRU and
LSTM keep their gate pre-activations from the forward loop, so the reverse loop does no
recurrent product again, only element-wise work and one product with ``R^T`` per step,
and emits the gradients of the input projections in place. Both loops run :data:`UNROLL`
steps per iteration. An evaluation needs only the last state: :func:`final_state` runs the
same steps forward and keeps nothing else.

The cells, as in Keras 3 (``s`` the activation, ``σ`` the recurrent activation):

* SimpleRNN: ``h_t = s(p_t + h_{t-1} R)``;
* GRU (``reset_after=True``): ``[z, r] = σ(p^{zr}_t + h_{t-1} R^{zr} + b^{zr})``,
  ``h~ = s(p^h_t + r * (h_{t-1} R^h + b^h))``, ``h_t = z h_{t-1} + (1 - z) h~``;
* LSTM: ``[i, f, g, o] = [σ, σ, s, σ](p_t + h_{t-1} R)``, ``c_t = f c_{t-1} + i g``,
  ``h_t = o s(c_t)``.

Example:
    >>> import keras, numpy as np
    >>> layer = keras.layers.GRU(4, return_sequences=True)
    >>> x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    >>> bool(np.allclose(layer_states(layer, x), layer(x), atol=1e-6))
    True
"""
from __future__ import annotations

import keras
import tensorflow as tf

#: Steps unrolled inside one loop iteration: fewer, larger iterations cut the loop's overhead.
UNROLL = 8


def activation_slope(activation, pre_activation):
    """``s'(a)`` element-wise, for any element-wise Keras activation."""
    with tf.GradientTape() as tape:
        tape.watch(pre_activation)
        out = activation(pre_activation)
    return tape.gradient(out, pre_activation)


def _loop(step, carry, xs, ys_like, unroll, reverse=False):
    """Run ``carry, ys_t = step(carry, xs_t)`` over time-major tensors ``xs`` (tuples).

    ``unroll`` steps run per iteration of a ``tf.while_loop`` (the ``T % unroll`` ragged steps at
    the start run outside it); ``ys_like`` gives the shape of one step's outputs. Returns the final
    carry and the outputs stacked ``(T, ...)`` in time order. Each step writes its outputs into a
    ``TensorArray`` of T entries, stacked once at the end (per-chunk stacks joined to the ragged
    steps copied every output twice more: the gated cells' kept pre-activations made that costly).
    """
    steps = int(xs[0].shape[0])
    head = steps % unroll
    arrays = tuple(tf.TensorArray(y.dtype, size=steps, element_shape=y.shape) for y in ys_like)

    def run(carry, arrays, times):
        for t in times:
            carry, ys = step(carry, tuple(x[t] for x in xs))
            arrays = tuple(a.write(t, y) for a, y in zip(arrays, ys))
        return tuple(carry), arrays

    chunks = (steps - head) // unroll

    def iteration(i, carry, arrays):
        first = head + ((chunks - 1 - i) if reverse else i) * unroll
        times = [first + k for k in range(unroll)]
        return (i + 1, *run(carry, arrays, reversed(times) if reverse else times))

    def body(carry, arrays):
        if not chunks:
            return carry, arrays
        _, carry, arrays = tf.while_loop(lambda i, carry, arrays: i < chunks, iteration,
                                         (tf.constant(0), carry, arrays))
        return carry, arrays

    carry = tuple(carry)
    if reverse:
        carry, arrays = run(*body(carry, arrays), reversed(range(head)))
    else:
        carry, arrays = body(*run(carry, arrays, range(head)))
    return carry, tuple(a.stack() for a in arrays)


def _slope(activation, pre, out):
    """``s'(pre)`` where ``out = s(pre)``: tanh and sigmoid from their output, as TensorFlow's own
    gradients compute them; any other activation by differentiating it (:func:`activation_slope`)."""
    if activation is keras.activations.tanh:
        return 1 - out * out
    if activation is keras.activations.sigmoid:
        return out * (1 - out)
    return activation_slope(activation, pre)


def _gates(x, n: int) -> list:
    """``x (..., n U)`` as ``n`` tensors ``(..., U)``, one per gate."""
    return tf.split(x, n, axis=-1)


def _previous(states):
    """``(T, B, U)`` states shifted one step later, with zeros first: ``h_{t-1}`` for every t."""
    return tf.concat([tf.zeros_like(states[:1]), states[:-1]], axis=0)


def _flat_matmul(x, w):
    """``x (T, B, K) @ w (K, N) -> (T, B, N)`` as one matrix product."""
    shape = tf.shape(x)
    return tf.reshape(tf.matmul(tf.reshape(x, [-1, shape[-1]]), w), tf.concat([shape[:-1], [w.shape[-1]]], 0))


def _weight_grad(previous, d_pre):
    """``sum_t h_{t-1}^T dL/da_t``: the gradient of a recurrent kernel, as one matrix product."""
    return tf.matmul(tf.reshape(previous, [-1, previous.shape[-1]]), tf.reshape(d_pre, [-1, d_pre.shape[-1]]),
                     transpose_a=True)


def recur(projected, recurrent_kernel, activation, unroll: int | None = None):
    """SimpleRNN states ``(T, B, U)`` of ``h_t = s(p_t + h_{t-1} R)``, ``h_0 = 0``, from time-major
    ``p (T, B, U)``; differentiable in ``p`` and ``R`` by hand-written BPTT."""
    unroll = UNROLL if unroll is None else int(unroll)

    @tf.custom_gradient
    def _recur(p, r):
        def forward(c, x):
            h = activation(x[0] + tf.matmul(c[0], r))
            return (h,), (h,)

        _, (states,) = _loop(forward, (tf.zeros_like(p[0]),), (p,), (p[0],), unroll)

        def grad(d_states):
            previous = _previous(states)
            slope = activation_slope(activation, p + _flat_matmul(previous, r))
            r_t = tf.transpose(r)

            def back(c, x):
                d_a = (x[0] + c[0]) * x[1]
                return (tf.matmul(d_a, r_t),), (d_a,)

            _, (d_pre,) = _loop(back, (tf.zeros_like(p[0]),), (d_states, slope), (p[0],), unroll, reverse=True)
            return d_pre, _weight_grad(previous, d_pre)

        return states, grad

    return _recur(tf.convert_to_tensor(projected), tf.convert_to_tensor(recurrent_kernel))


def recur_gru(projected, recurrent_kernel, recurrent_bias, activation, recurrent_activation,
              unroll: int | None = None):
    """GRU states ``(T, B, U)`` (Keras ``reset_after=True``) from time-major input projections
    ``p (T, B, 3U)`` (gates z, r, h; input bias included), ``R (U, 3U)`` and the recurrent bias
    ``(3U,)``; differentiable in all three by hand-written BPTT. The forward loop keeps each step's
    gate pre-activations and recurrent candidate term; the backward loop reuses them (no recurrent
    product again, only element-wise activations) and emits the gradients in place."""
    unroll = UNROLL if unroll is None else int(unroll)

    @tf.custom_gradient
    def _recur(p, r, b):
        units = r.shape[0]
        r_zr, r_h = r[:, :2 * units], r[:, 2 * units:]
        b_zr, b_h = b[:2 * units], b[2 * units:]

        def forward(c, x):
            h = c[0]
            a_zr = (x[0][:, :2 * units] + b_zr) + tf.matmul(h, r_zr)
            z, reset = _gates(recurrent_activation(a_zr), 2)
            rec_h = tf.matmul(h, r_h) + b_h
            h = z * h + (1 - z) * activation(x[0][:, 2 * units:] + reset * rec_h)
            return (h,), (h, a_zr, rec_h)

        zeros = tf.zeros_like(p[0][:, :units])
        _, (states, a_zr, rec_h) = _loop(forward, (zeros,), (p,), (zeros, p[0][:, :2 * units], zeros), unroll)

        def grad(d_states):
            previous = _previous(states)
            r_t = tf.transpose(r)

            def back(c, x):
                d_state, a_zr, rec_h, p_t, h_prev = x
                zr = recurrent_activation(a_zr)
                (z, reset), (s_z, s_r) = _gates(zr, 2), _gates(_slope(recurrent_activation, a_zr, zr), 2)
                a_h = p_t[:, 2 * units:] + reset * rec_h
                candidate = activation(a_h)
                d_h = d_state + c[0]
                d_a_h = d_h * ((1 - z) * _slope(activation, a_h, candidate))
                d_a_z = d_h * (h_prev - candidate) * s_z
                d_a_r = d_a_h * rec_h * s_r
                d_rec = tf.concat([d_a_z, d_a_r, d_a_h * reset], axis=-1)  # dL/d(h R + b_rec)
                return (d_h * z + tf.matmul(d_rec, r_t),), (d_rec, tf.concat([d_a_z, d_a_r, d_a_h], axis=-1))

            _, (d_rec, d_p) = _loop(back, (zeros,), (d_states, a_zr, rec_h, p, previous), (p[0], p[0]), unroll,
                                    reverse=True)
            return d_p, _weight_grad(previous, d_rec), tf.reduce_sum(d_rec, axis=[0, 1])

        return states, grad

    return _recur(*(tf.convert_to_tensor(v) for v in (projected, recurrent_kernel, recurrent_bias)))


def recur_lstm(projected, recurrent_kernel, activation, recurrent_activation, unroll: int | None = None):
    """LSTM hidden states ``(T, B, U)`` from time-major input projections ``p (T, B, 4U)`` (gates
    i, f, c, o; bias included) and ``R (U, 4U)``; differentiable in both by hand-written BPTT. The
    forward loop keeps each step's gate pre-activations ``p_t + h_{t-1} R`` and cell state; the
    backward loop reuses them (no recurrent product again, only element-wise activations) and
    emits the gradient of the pre-activations in place."""
    unroll = UNROLL if unroll is None else int(unroll)

    @tf.custom_gradient
    def _recur(p, r):
        units = r.shape[0]

        def forward(carry, x):
            h, c = carry
            a = x[0] + tf.matmul(h, r)
            i, f, _, o = _gates(recurrent_activation(a), 4)
            c = f * c + i * activation(a[:, 2 * units:3 * units])
            h = o * activation(c)
            return (h, c), (h, c, a)

        zeros = tf.zeros_like(p[0][:, :units])
        _, (states, cells, pre) = _loop(forward, (zeros, zeros), (p,), (zeros, zeros, p[0]), unroll)

        def grad(d_states):
            r_t = tf.transpose(r)

            def back(carry, x):
                d_state, a, c, c_prev = x
                gates = recurrent_activation(a)
                (i, f, _, o), (s_i, s_f, _, s_o) = _gates(gates, 4), _gates(_slope(recurrent_activation, a, gates), 4)
                a_g = a[:, 2 * units:3 * units]
                g, t_c = activation(a_g), activation(c)
                d_h = d_state + carry[0]
                d_c = carry[1] + d_h * o * _slope(activation, c, t_c)
                d_a = tf.concat([d_c * g * s_i, d_c * c_prev * s_f, d_c * i * _slope(activation, a_g, g),
                                 d_h * t_c * s_o], axis=-1)
                return (tf.matmul(d_a, r_t), d_c * f), (d_a,)

            _, (d_a,) = _loop(back, (zeros, zeros), (d_states, pre, cells, _previous(cells)), (p[0],), unroll,
                              reverse=True)
            return d_a, _weight_grad(_previous(states), d_a)

        return states, grad

    return _recur(tf.convert_to_tensor(projected), tf.convert_to_tensor(recurrent_kernel))


def _forward_only(step, carry, steps: int, unroll: int):
    """``carry = step(carry, t)`` for t = 0 .. ``steps`` - 1 (``t`` a Python int for the ragged
    head, a scalar tensor inside the ``tf.while_loop``), ``unroll`` steps per iteration; the final
    carry. Nothing per step is kept."""
    head = steps % unroll
    carry = tuple(carry)
    for t in range(head):
        carry = step(carry, t)
    n = (steps - head) // unroll
    if n:
        def iteration(i, carry):
            first = head + i * unroll
            for k in range(unroll):
                carry = step(carry, first + k)
            return i + 1, carry

        _, carry = tf.while_loop(lambda i, carry: i < n, iteration, (tf.constant(0), carry))
    return tuple(carry)


def final_state(cell, projected, index=None, unroll: int | None = None):
    """The last hidden state ``(B, U)`` of a Keras SimpleRNN, GRU or LSTM cell, forward only (an
    evaluation keeps no state but the last): the same step as :func:`recur`, :func:`recur_gru` and
    :func:`recur_lstm`. ``projected``: time-major input projections ``(T, B, gates x U)``
    (:func:`input_projection`), or with ``index (T, B)`` the projections of a bank's images
    ``(M, gates x U)`` that step ``t`` gathers at ``index[t]`` (no ``(T, B, gates x U)`` tensor)."""
    unroll = UNROLL if unroll is None else int(unroll)
    projected = tf.convert_to_tensor(projected)
    steps = int((index if index is not None else projected).shape[0])
    batch = tf.shape(index)[1] if index is not None else tf.shape(projected)[1]
    zeros = tf.zeros(tf.stack([batch, cell.units]), projected.dtype)
    r = cell.recurrent_kernel

    def inputs(t):
        return tf.gather(projected, index[t]) if index is not None else projected[t]

    units, activation, gate = cell.units, cell.activation, getattr(cell, "recurrent_activation", None)
    if isinstance(cell, keras.layers.GRUCell):
        _, recurrent_bias = _biases(cell)
        b = recurrent_bias if recurrent_bias is not None else tf.zeros([3 * units])
        r_zr, r_h, b_zr, b_h = r[:, :2 * units], r[:, 2 * units:], b[:2 * units], b[2 * units:]

        def step(carry, t):
            h, x = carry[0], inputs(t)
            z, reset = _gates(gate((x[:, :2 * units] + b_zr) + tf.matmul(h, r_zr)), 2)
            return (z * h + (1 - z) * activation(x[:, 2 * units:] + reset * (tf.matmul(h, r_h) + b_h)),)

        return _forward_only(step, (zeros,), steps, unroll)[0]
    if isinstance(cell, keras.layers.LSTMCell):
        def step(carry, t):
            (h, c), a = carry, inputs(t) + tf.matmul(carry[0], r)
            i, f, _, o = _gates(gate(a), 4)
            c = f * c + i * activation(a[:, 2 * units:3 * units])
            return o * activation(c), c

        return _forward_only(step, (zeros, zeros), steps, unroll)[0]

    def step(carry, t):
        return (activation(inputs(t) + tf.matmul(carry[0], r)),)

    return _forward_only(step, (zeros,), steps, unroll)[0]


def is_fast(layer) -> bool:
    """True when the fast recurrence computes ``layer`` exactly: a SimpleRNN, a GRU with
    ``reset_after=True`` or an LSTM, without dropout, going forward."""
    if not isinstance(layer, (keras.layers.SimpleRNN, keras.layers.GRU, keras.layers.LSTM)):
        return False
    cell = layer.cell
    return (not layer.go_backwards and not getattr(cell, "dropout", 0) and not getattr(cell, "recurrent_dropout", 0)
            and getattr(cell, "reset_after", True))


def _biases(cell):
    """``(input bias or None, recurrent bias or None)`` of a Keras recurrent cell."""
    if not cell.use_bias:
        return None, None
    if isinstance(cell, keras.layers.GRUCell):
        return cell.bias[0], cell.bias[1]
    return cell.bias, None


def input_projection(cell, features):
    """``features (..., F) @ K + input bias``: every gate's input projection, ``(..., gates x U)``."""
    projected = tf.matmul(features, cell.kernel) if features.shape.rank == 2 else \
        tf.einsum("...f,fu->...u", features, cell.kernel)
    bias, _ = _biases(cell)
    return projected if bias is None else projected + bias


def cell_states(cell, projected):
    """Hidden states ``(T, B, U)`` of a Keras SimpleRNN, GRU or LSTM cell from its input
    projections ``(T, B, gates x U)`` (time-major, see :func:`input_projection`)."""
    if isinstance(cell, keras.layers.GRUCell):
        _, recurrent_bias = _biases(cell)
        if recurrent_bias is None:
            recurrent_bias = tf.zeros([3 * cell.units])
        return recur_gru(projected, cell.recurrent_kernel, recurrent_bias, cell.activation,
                         cell.recurrent_activation)
    if isinstance(cell, keras.layers.LSTMCell):
        return recur_lstm(projected, cell.recurrent_kernel, cell.activation, cell.recurrent_activation)
    return recur(projected, cell.recurrent_kernel, cell.activation)


def layer_states(layer, features):
    """Hidden states ``(B, T, U)`` of a Keras ``SimpleRNN``, ``GRU`` or ``LSTM`` layer on
    ``features (B, T, F)``, computed by the fast recurrence with the layer's own weights."""
    if not layer.built:
        layer.build(tuple(features.shape))
    if not is_fast(layer):
        raise ValueError(f"{layer.name}: the fast recurrence covers SimpleRNN, GRU (reset_after=True) and LSTM "
                         "without dropout, going forward; use the Keras layer")
    features = tf.convert_to_tensor(features)
    projected = input_projection(layer.cell, tf.transpose(features, [1, 0, 2]))
    return tf.transpose(cell_states(layer.cell, projected), [1, 0, 2])


#: The SimpleRNN name this module first had.
simple_rnn_states = layer_states
