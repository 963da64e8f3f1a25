"""A fast SimpleRNN recurrence with the same math as ``keras.layers.SimpleRNN``.

Keras computes, for every step, ``h_t = s(x_t K + b + h_{t-1} R)`` inside a generic
loop whose gradient TensorFlow derives step by step. Here the input projection
``x K + b`` of all steps is one large matrix product, the loop does only
``h_t = s(p_t + h_{t-1} R)``, and back-propagation through time is written out
by hand (one reverse loop over ``dL/da_t = (dL/dh_t + dL/da_{t+1} R^T) * s'(a_t)``),
so both directions run with few, large operations.

Example:
    >>> import keras, numpy as np
    >>> layer = keras.layers.SimpleRNN(4, return_sequences=True)
    >>> x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    >>> fast = simple_rnn_states(layer, x)
    >>> bool(np.allclose(fast, layer(x), atol=1e-6))
    True
"""
from __future__ import annotations

import keras
import tensorflow as tf


def activation_slope(activation, pre_activation):
    """``s'(a)`` element-wise, for any element-wise Keras activation."""
    with tf.GradientTape() as tape:
        tape.watch(pre_activation)
        out = activation(pre_activation)
    return tape.gradient(out, pre_activation)


#: Steps unrolled inside one loop iteration: fewer, larger iterations cut the loop's overhead.
UNROLL = 8


def _chunks(x, unroll):
    """Split time-major ``x (T, ...)`` into a ragged head of ``T % unroll`` steps and
    ``(T // unroll, unroll, ...)`` chunks (static T), or no chunks when T is unknown."""
    steps = x.shape[0]
    if steps is None or unroll <= 1:
        return None, x
    head = steps % unroll
    body = x[head:]
    return x[:head], tf.reshape(body, tf.concat([[steps // unroll, unroll], tf.shape(body)[1:]], 0))


def _forward(p, r, activation, unroll):
    zeros = tf.zeros_like(p[0])
    head, body = _chunks(p, unroll)
    if head is None:
        return tf.scan(lambda h, p_t: activation(p_t + tf.matmul(h, r)), p, initializer=zeros)
    h, outputs = zeros, []
    for t in range(head.shape[0]):
        h = activation(head[t] + tf.matmul(h, r))
        outputs.append(h)

    def chunk_step(previous, p_chunk):
        h, hs = previous[-1], []
        for i in range(unroll):
            h = activation(p_chunk[i] + tf.matmul(h, r))
            hs.append(h)
        return tf.stack(hs)

    if body.shape[0]:
        chunks = tf.scan(chunk_step, body, initializer=tf.stack([h] * unroll))
        outputs.append(tf.reshape(chunks, tf.shape(p[head.shape[0]:])))
    return tf.concat([o[None] if o.shape.rank == 2 else o for o in outputs], axis=0)


def _backward(d_states, slope, r_t, unroll):
    """``dL/da_t`` for all t from ``dL/dh_t`` (direct) and ``s'(a_t)``, by the reverse recursion
    ``dL/da_t = (dL/dh_t + dL/da_{t+1} R^T) * s'(a_t)``."""
    zeros = tf.zeros_like(d_states[0])
    d_head, d_body = _chunks(d_states, unroll)
    if d_head is None:
        carries = tf.scan(lambda c, x: tf.matmul((x[0] + c) * x[1], r_t), (d_states, slope),
                          initializer=zeros, reverse=True)
        next_carry = tf.concat([carries[1:], zeros[None]], axis=0)
        return (d_states + next_carry) * slope
    s_head, s_body = _chunks(slope, unroll)

    def chunk_step(state, x):
        carry, _ = state
        d_h, s = x
        d_as = [None] * unroll
        for i in reversed(range(unroll)):
            d_as[i] = (d_h[i] + carry) * s[i]
            carry = tf.matmul(d_as[i], r_t)
        return carry, tf.stack(d_as)

    carry, parts = zeros, []
    if d_body.shape[0]:
        carries, d_chunks = tf.scan(chunk_step, (d_body, s_body),
                                    initializer=(zeros, tf.zeros_like(d_body[0])), reverse=True)
        carry = carries[0]
        parts.append(tf.reshape(d_chunks, tf.shape(d_states[d_head.shape[0]:])))
    head_parts = []
    for t in reversed(range(d_head.shape[0])):
        d_a = (d_head[t] + carry) * s_head[t]
        carry = tf.matmul(d_a, r_t)
        head_parts.insert(0, d_a[None])
    return tf.concat(head_parts + parts, axis=0)


def recur(projected, recurrent_kernel, activation, unroll: int | None = None):
    """States ``(T, B, U)`` of ``h_t = s(p_t + h_{t-1} R)``, ``h_0 = 0``, from time-major ``p (T, B, U)``.

    Differentiable in ``projected`` and ``recurrent_kernel`` by hand-written BPTT;
    ``unroll`` steps (default :data:`UNROLL`) run per loop iteration when T is known
    at tracing time.
    """
    unroll = UNROLL if unroll is None else int(unroll)

    @tf.custom_gradient
    def _recur(p, r):
        states = _forward(p, r, activation, unroll)

        def grad(d_states):
            units = tf.shape(r)[0]
            previous = tf.concat([tf.zeros_like(states[:1]), states[:-1]], axis=0)
            flat_previous = tf.reshape(previous, [-1, units])
            pre = p + tf.reshape(tf.matmul(flat_previous, r), tf.shape(p))
            slope = activation_slope(activation, pre)
            d_pre = _backward(d_states, slope, tf.transpose(r), unroll)
            d_r = tf.matmul(flat_previous, tf.reshape(d_pre, [-1, units]), transpose_a=True)
            return d_pre, d_r

        return states, grad

    return _recur(tf.convert_to_tensor(projected), tf.convert_to_tensor(recurrent_kernel))


def simple_rnn_states(layer: keras.layers.SimpleRNN, features):
    """Hidden states ``(B, T, U)`` of a Keras ``SimpleRNN`` layer on ``features (B, T, F)``,
    computed by the fast recurrence with the layer's own weights."""
    if not layer.built:
        layer.build(tuple(features.shape))
    cell = layer.cell
    projected = tf.einsum("btf,fu->tbu", features, cell.kernel)
    if cell.use_bias:
        projected = projected + cell.bias
    states = recur(projected, cell.recurrent_kernel, cell.activation)
    return tf.transpose(states, [1, 0, 2])
