"""Benchmark: the book's training path against a plain Keras model of the same architecture.

``python -m rnnbook.bench`` measures in one process, same data, batch size and initial
weights:

* sequences per second of the book's path (CNN once per distinct image, fast
  SimpleRNN recurrence, :class:`rnnbook.training.Stepper`) and of the baseline
  (``TimeDistributed`` CNN + ``SimpleRNN`` + ``Dense``, ``model.fit``) at several T,
  and their ratio;
* the achieved GFLOP/s of the book's path beside the machine's measured peak for a
  large matrix product and for the model's own convolutions;
* how time per epoch grows with T (the exponent of a power-law fit).

``--json`` prints one JSON object instead of the table.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

import rnnbook  # noqa: F401  (quiets TensorFlow before it loads)


def _timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def matmul_peak_gflops(n: int = 2048, repeats: int = 3) -> float:
    """GFLOP/s of an ``n x n`` float32 matrix product in TensorFlow."""
    import tensorflow as tf

    a = tf.constant(np.random.default_rng(0).random((n, n), dtype=np.float32))
    f = tf.function(lambda: tf.matmul(a, a))
    return 2 * n**3 / _timed(lambda: f().numpy(), repeats) / 1e9


def conv_flops_per_image(model) -> float:
    """Forward multiply-add FLOPs of the model's convolutions for one frame."""
    flops = 0.0
    for layer in model.encoder.layers:
        if layer.__class__.__name__ == "Conv2D":
            _, h, w, c_out = layer.output.shape
            kh, kw, c_in, _ = layer.kernel.shape
            flops += 2.0 * h * w * kh * kw * c_in * c_out
    return flops


def conv_peak_gflops(model, images: int = 4096, repeats: int = 3) -> float:
    """GFLOP/s of the model's own CNN (forward, inference) on a large batch of frames."""
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(0).random((images, *model.frame_shape), dtype=np.float32))
    f = tf.function(lambda: model.encoder(x, training=False))
    return conv_flops_per_image(model) * images / _timed(lambda: f().numpy(), repeats) / 1e9


def step_flops(model, distinct: int, batch: int, seq_len: int) -> float:
    """FLOPs of one training step of the book's path (forward + backward ~ 3x forward):
    the CNN on the distinct images, the input projection of each distinct image, and the
    recurrence over ``batch x seq_len`` frames."""
    cell = model.rnn.cell
    features, units = cell.kernel.shape
    forward = (conv_flops_per_image(model) * distinct + 2.0 * features * units * distinct
               + 2.0 * units * units * batch * seq_len)
    return 3.0 * forward


def measure(seq_len: int, batch_size: int | None = None, steps: int = 6, units: int = 64, seed: int = 0) -> dict:
    """Time the book's path and the Keras baseline at one sequence length
    (``batch_size`` defaults to the book's training batch size)."""
    import keras

    from rnnbook import clipping, training

    batch_size = batch_size or training_batch_size()
    cfg = training.TrainConfig(seq_len=seq_len, n_train=batch_size * steps, n_val=8, n_test=8,
                               units=units, batch_size=batch_size, seed=seed)
    task = cfg.task_data(data_dir=None)
    model = cfg.model(task.num_classes)
    baseline = model.keras_baseline()  # same initial weights
    baseline.compile(optimizer=clipping.make_optimizer(cfg.optimizer, cfg.learning_rate),
                     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    index, labels = task.train.index, task.train.labels
    frames = task.train.frames()
    stepper = training.Stepper(model, clipping.make_optimizer(cfg.optimizer, cfg.learning_rate),
                               indexed=True, bank=task.train.bank, fast=True)
    batches = [slice(b, b + batch_size) for b in range(0, len(labels), batch_size)]

    def book_epoch():
        for s in batches:
            stepper.step(index[s], labels[s])

    def keras_epoch():
        baseline.fit(frames, labels, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)

    book = _timed(book_epoch, 2)
    base = _timed(keras_epoch, 1 if seq_len >= 400 else 2)
    n = len(labels)
    distinct = float(np.mean([len(np.unique(index[s])) for s in batches]))
    return {
        "seq_len": seq_len,
        "batch_size": batch_size,
        "sequences": n,
        "seq_per_s": n / book,
        "baseline_seq_per_s": n / base,
        "speedup": base / book,
        "distinct_images_per_batch": distinct,
        "frames_per_batch": batch_size * seq_len,
        "gflops": step_flops(model, distinct, batch_size, seq_len) * len(batches) / book / 1e9,
        "_model": model,
    }


def run(seq_lens=(20, 100, 400), batch_size: int | None = None, steps: int = 6) -> dict:
    """Every measurement, as one JSON-ready dict."""
    from rnnbook import runtime

    runtime.configure()
    batch_size = batch_size or training_batch_size()
    rows = [measure(t, batch_size, steps) for t in seq_lens]
    model = rows[0].pop("_model")
    for r in rows[1:]:
        r.pop("_model")
    seconds_per_epoch = [r["sequences"] / r["seq_per_s"] for r in rows]
    exponent = float(np.polyfit(np.log(seq_lens), np.log(seconds_per_epoch), 1)[0])
    result = {
        "rows": rows,
        "peak_matmul_gflops": matmul_peak_gflops(),
        "peak_conv_gflops": conv_peak_gflops(model),
        "time_exponent_T": exponent,
        "batch_size": batch_size,
    }
    for r in rows:
        t = r["seq_len"]
        result[f"speedup_T{t}"] = r["speedup"]
        result[f"seq_per_s_T{t}"] = r["seq_per_s"]
        result[f"baseline_seq_per_s_T{t}"] = r["baseline_seq_per_s"]
        result[f"gflops_T{t}"] = r["gflops"]
    return result


def table(result: dict) -> str:
    """The measurements as a table for people."""
    lines = [f"{'T':>5} {'book seq/s':>11} {'Keras seq/s':>12} {'speedup':>8} {'distinct/frames':>16} {'GFLOP/s':>8}"]
    for r in result["rows"]:
        lines.append(f"{r['seq_len']:>5} {r['seq_per_s']:>11.1f} {r['baseline_seq_per_s']:>12.1f} "
                     f"{r['speedup']:>7.1f}x {r['distinct_images_per_batch']:>7.0f}/{r['frames_per_batch']:<8} "
                     f"{r['gflops']:>8.1f}")
    lines.append(f"batch size {result['batch_size']}; peak: matmul 2048^3 {result['peak_matmul_gflops']:.0f} GFLOP/s, "
                 f"model convolutions {result['peak_conv_gflops']:.0f} GFLOP/s; "
                 f"time per epoch ~ T^{result['time_exponent_T']:.2f}")
    return "\n".join(lines)


def training_batch_size() -> int:
    """The batch size the book trains with (``TrainConfig``'s default)."""
    from rnnbook.training import TrainConfig

    return TrainConfig.batch_size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnnbook.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[20, 100, 400], metavar="T",
                        help="sequence lengths to measure (default: 20 100 400)")
    parser.add_argument("--batch-size", type=int, default=training_batch_size(),
                        help="sequences per batch (default: the book's training default, %(default)s)")
    parser.add_argument("--steps", type=int, default=6, help="training steps per timed epoch (default: 6)")
    args = parser.parse_args(argv)
    if min(args.seq_lens) < 1 or args.batch_size < 1 or args.steps < 1:
        parser.error("--seq-lens, --batch-size and --steps must be positive integers")
    if len(set(args.seq_lens)) < 2:
        parser.error("--seq-lens needs at least two different lengths to fit the time exponent")
    result = run(tuple(args.seq_lens), args.batch_size, args.steps)
    if args.json:
        json.dump({k: v for k, v in result.items()}, sys.stdout, indent=2, default=float)
        print()
    else:
        print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
