"""Many seeds in one model? ``python -m rnnbook.bench_stacked``: one update of R seeds of one
SimpleRNN configuration as R separate runs (the book's path, :class:`rnnbook.engine.Stepper`)
against one stacked model: the R input projections, recurrences and heads as batched matrix
products, one
loss (the sum of the members' losses, so each member's gradient is its own run's). Each member
draws its own fresh batch, as its run would. TensorFlow has no gradient of a grouped convolution
on the CPU, so the stacked model runs its R CNNs one after the other (on the union of the batches'
distinct images), and batches the rest.

It prints the milliseconds per round of R updates of both (median over interleaved rounds, and
the spread), and how far the stacked model's gradients are from the separate runs' (the largest
difference relative to the gradient's largest entry). The stacked model here is a measurement, not
a training path: the book trains one run per model (see the README's bench section for why).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

import rnnbook  # noqa: F401  (quiets TensorFlow before it loads)


def _stacked_recur(p, r):
    """``h_t = tanh(p_t + h_{t-1} R)`` for M members at once: ``p (T, M, B, U)``, ``r (M, U, U)``;
    the loop and hand-written BPTT of :func:`rnnbook.recurrence.recur`, with batched products."""
    import tensorflow as tf

    from rnnbook.recurrence import UNROLL, _loop, _previous

    @tf.custom_gradient
    def run(p, r):
        def forward(c, x):
            h = tf.tanh(x[0] + tf.matmul(c[0], r))
            return (h,), (h,)

        _, (states,) = _loop(forward, (tf.zeros_like(p[0]),), (p,), (p[0],), UNROLL)

        def grad(d_states):
            previous, slope, r_t = _previous(states), 1 - states * states, tf.transpose(r, [0, 2, 1])

            def back(c, x):
                d_a = (x[0] + c[0]) * x[1]
                return (tf.matmul(d_a, r_t),), (d_a,)

            _, (d_pre,) = _loop(back, (tf.zeros_like(p[0]),), (d_states, slope), (p[0],), UNROLL, reverse=True)
            return d_pre, tf.einsum("tmbu,tmbv->muv", previous, d_pre)

        return states, grad

    return run(p, r)


def measure(seq_len: int = 41, members: int = 4, batch_size: int = 128, units: int = 64, repeats: int = 5) -> dict:
    """Time R separate updates against one stacked update; compare their first gradients."""
    import keras
    import tensorflow as tf

    from rnnbook import clipping, data, engine, runtime, training

    runtime.configure()
    configs = [training.TrainConfig(task="recall", seq_len=seq_len, lag=seq_len - 1, n_train=batch_size, n_val=8,
                                    n_test=8, units=units, batch_size=batch_size, max_updates=2, check_every=2,
                                    seed=s) for s in range(members)]
    task = configs[0].task_data(data_dir=None)
    bank = tf.constant(task.train.bank)
    models = [c.model(task.num_classes) for c in configs]
    steppers = [engine.Stepper(m, clipping.make_optimizer("adam", 1e-3), True, task.train.bank) for m in models]
    batches = [data.SequenceStream(task, c.seed).next(batch_size) for c in configs]

    def weights(i):  # conv1, conv2 (kernel, bias), input kernel, recurrent kernel, bias, head kernel, bias
        m = models[i]
        convs = [layer for layer in m.encoder.layers if isinstance(layer, keras.layers.Conv2D)]
        return [convs[0].kernel, convs[0].bias, convs[1].kernel, convs[1].bias, m.rnn.cell.kernel,
                m.rnn.cell.recurrent_kernel, m.rnn.cell.bias, m.head.kernel, m.head.bias]

    stacked = [tf.Variable(np.stack([np.asarray(weights(i)[k]) for i in range(members)])) for k in range(9)]
    index = tf.constant(np.stack([b[0] for b in batches]).astype(np.int32))       # (M, B, T)
    labels = tf.constant(np.stack([b[1] for b in batches]).astype(np.int64))      # (M, B)

    def stacked_loss():
        c1k, c1b, c2k, c2b, k_in, k_rec, b_in, k_head, b_head = stacked
        distinct, position = tf.unique(tf.reshape(index, [-1]))
        images = tf.gather(bank, distinct)                                             # (D, 8, 8, 1)
        feats = []
        for m in range(members):  # TensorFlow has no gradient of a grouped convolution on the CPU
            f1 = tf.nn.relu(tf.nn.conv2d(images, c1k[m], 1, "SAME") + c1b[m])
            f2 = tf.nn.relu(tf.nn.conv2d(f1, c2k[m], 1, "SAME") + c2b[m])
            pooled = tf.nn.max_pool2d(f2, 2, 2, "VALID")
            feats.append(tf.reshape(pooled, [tf.shape(pooled)[0], -1]))
        feats = tf.stack(feats)                                                        # (M, D, 512)
        proj = tf.matmul(feats, k_in) + b_in[:, None, :]                               # (M, D, U)
        pos = tf.transpose(tf.reshape(position, [members, batch_size, seq_len]), [0, 2, 1])  # (M, T, B)
        p = tf.transpose(tf.gather(proj, pos, batch_dims=1), [1, 0, 2, 3])             # (T, M, B, U)
        last = _stacked_recur(p, k_rec)[-1]                                            # (M, B, U)
        logits = tf.matmul(last, k_head) + b_head[:, None, :]
        return tf.reduce_sum(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits), axis=1))

    optimizer = keras.optimizers.Adam(1e-3)

    @tf.function(autograph=False)
    def stacked_step():
        with tf.GradientTape() as tape:
            loss = stacked_loss()
        grads = tape.gradient(loss, stacked)
        optimizer.apply_gradients(zip(grads, stacked))
        return grads

    @tf.function(autograph=False)
    def stacked_grads():
        with tf.GradientTape() as tape:
            loss = stacked_loss()
        return tape.gradient(loss, stacked)

    # the gradients agree with the separate runs' (before any update)
    first = [g.numpy() for g in stacked_grads()]
    worst = 0.0
    for i, (x, y) in enumerate(batches):
        _, grads, _, _ = steppers[i].loss_and_grads(tf.constant(x.astype(np.int32)), tf.constant(y.astype(np.int64)))
        ids = {id(v): g for v, g in zip(steppers[i].variables, grads)}
        for k, v in enumerate(weights(i)):
            g = np.asarray(ids[id(v)])
            worst = max(worst, float(np.abs(first[k][i] - g).max() / max(np.abs(g).max(), 1e-12)))

    def separate():
        for stepper, (x, y) in zip(steppers, batches):
            stepper.step(x, y)

    def together():
        [g.numpy() for g in stacked_step()]

    times = {"separate": [], "stacked": []}
    for round_ in range(repeats + 1):
        for name, fn in (("separate", separate), ("stacked", together)):
            t0 = time.perf_counter()
            fn()
            if round_:
                times[name].append(1000 * (time.perf_counter() - t0))
    ratios = np.array(times["separate"]) / np.array(times["stacked"])
    return {"seq_len": seq_len, "members": members, "threads": runtime.RUN_THREADS,
            "ms_separate": float(np.median(times["separate"])), "ms_stacked": float(np.median(times["stacked"])),
            "speedup": float(np.median(ratios)), "speedup_spread": float(np.ptp(ratios) / 2),
            "max_relative_gradient_difference": worst}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnnbook.bench_stacked", description=__doc__.splitlines()[0])
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[11, 41, 81], metavar="T")
    parser.add_argument("--members", type=int, default=4, help="seeds stacked in one model (default: 4)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    for t in args.seq_lens:
        print(json.dumps(measure(t, args.members, repeats=args.repeats)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
