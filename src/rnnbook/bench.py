"""Benchmark: the book's training path against a plain Keras model of the same architecture.

``python -m rnnbook.bench`` measures in one process, same data, batch size and initial
weights:

* sequences per second of the book's path (CNN and input projection once per distinct
  image, fast recurrence, :class:`rnnbook.engine.Stepper`) and of the baseline
  (``TimeDistributed`` CNN + ``SimpleRNN``/``GRU``/``LSTM`` + ``Dense``, ``model.fit``),
  timed interleaved over several repeats; the speedup is the median of the per-repeat
  ratios, its spread half their range;
* the bound deduplication alone gives (frames per batch over distinct images per batch);
* the fixed cost of a run (the wall time of a one-update :func:`rnnbook.training.train`);
* the achieved GFLOP/s of the book's path beside the machine's measured peak for a
  large matrix product and for the model's own convolutions;
* how time per epoch grows with T (the exponent of a power-law fit, T >= 20);
* milliseconds per update of each cell (SimpleRNN, GRU, LSTM) on fresh sequences at T = 10,
  40 and 80, interleaved rounds;
* what a sweep costs (:mod:`rnnbook.bench_sweep`): runs per hour of a fixed sample of
  reference-protocol runs (mixed lags, cells and outcomes) one at a time, as the executor before
  the worker processes ran them, and on the worker processes, with their ratio; and the share
  of a run's time spent in its checks.

Every run uses the protocol's thread count (:data:`rnnbook.runtime.RUN_THREADS`), this process
too. ``--json`` prints one JSON object instead of the table.
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
    the CNN on the distinct images, the input projection of every gate for each distinct
    image, and the recurrent products over ``batch x seq_len`` frames."""
    cell = model.rnn.cell
    features, gate_units = cell.kernel.shape  # gate_units: units x gates (1, 3 or 4)
    forward = (conv_flops_per_image(model) * distinct + 2.0 * features * gate_units * distinct
               + 2.0 * cell.units * gate_units * batch * seq_len)
    return 3.0 * forward


#: Cells whose speedup is measured beside SimpleRNN, and the length they are measured at.
GATED_CELLS = ("gru", "lstm")
GATED_SEQ_LEN = 100


def measure(seq_len: int, batch_size: int | None = None, steps: int = 8, units: int = 64, seed: int = 0,
            cell: str = "simple_rnn", repeats: int = 5) -> dict:
    """Time the book's path and the Keras baseline at one sequence length, interleaved:
    ``repeats`` rounds of one epoch of ``steps`` batches each, book then Keras, after one
    warm-up round (``batch_size`` defaults to the book's training batch size)."""
    import keras

    from rnnbook import clipping, engine, training

    batch_size = batch_size or training_batch_size()
    cfg = training.TrainConfig(seq_len=seq_len, n_train=batch_size * steps, n_val=8, n_test=8, cell=cell,
                               units=units, batch_size=batch_size, seed=seed)
    task = cfg.task_data(data_dir=None)
    model = cfg.model(task.num_classes)
    baseline = model.keras_baseline()  # same initial weights
    baseline.compile(optimizer=clipping.make_optimizer(cfg.optimizer, cfg.learning_rate),
                     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    index, labels = task.train.index, task.train.labels
    frames = task.train.frames()
    stepper = engine.Stepper(model, clipping.make_optimizer(cfg.optimizer, cfg.learning_rate),
                               indexed=True, bank=task.train.bank, fast=True)
    batches = [slice(b, b + batch_size) for b in range(0, len(labels), batch_size)]

    def book_epoch():
        for s in batches:
            stepper.step(index[s], labels[s])

    def keras_epoch():
        baseline.fit(frames, labels, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)

    book_times, keras_times = [], []
    for round_ in range(repeats + 1):
        times = [_seconds(book_epoch), _seconds(keras_epoch)]
        if round_:  # the first round traces and warms up
            book_times.append(times[0])
            keras_times.append(times[1])
    ratios = np.array(keras_times) / np.array(book_times)
    book, base = float(np.median(book_times)), float(np.median(keras_times))
    n = len(labels)
    distinct = float(np.mean([len(np.unique(index[s])) for s in batches]))
    return {
        "cell": cell,
        "seq_len": seq_len,
        "batch_size": batch_size,
        "sequences": n,
        "repeats": repeats,
        "seq_per_s": n / book,
        "baseline_seq_per_s": n / base,
        "speedup": float(np.median(ratios)),
        "speedup_spread": float(np.ptp(ratios) / 2),
        "distinct_images_per_batch": distinct,
        "frames_per_batch": batch_size * seq_len,
        "dedup_bound": batch_size * seq_len / distinct,
        "gflops": step_flops(model, distinct, batch_size, seq_len) * len(batches) / book / 1e9,
        "_model": model,
    }


#: Cells and lengths of the per-update times (``ms_per_update_<cell>_T<T>``).
UPDATE_CELLS = ("simple_rnn", "gru", "lstm")
UPDATE_SEQ_LENS = (10, 40, 80)


def ms_per_update(seq_lens=UPDATE_SEQ_LENS, cells=UPDATE_CELLS, batch_size: int | None = None, units: int = 64,
                  steps: int = 4, repeats: int = 5) -> dict:
    """Milliseconds per update of each cell at each T: a run's training step on fresh sequences of
    the recall task (lag T - 1, the reference protocol's batches), ``repeats`` rounds of ``steps``
    updates after a warm-up, the cells interleaved within a round. ``{(cell, T): (median, spread)}``,
    spread half the range over the rounds."""
    from rnnbook import data, engine, training

    batch_size = batch_size or training_batch_size()
    out = {}
    for t in seq_lens:
        steppers = {}
        for cell in cells:
            cfg = training.TrainConfig(task="recall", seq_len=t, lag=t - 1, n_train=batch_size, n_val=8, n_test=8,
                                       cell=cell, units=units, batch_size=batch_size, max_updates=steps,
                                       check_every=steps, stream="fresh")
            task = cfg.task_data(data_dir=None)
            stream = data.SequenceStream(task, 0)
            steppers[cell] = (engine.prepare_run(cfg, task).steppers["train"],
                              [stream.next(batch_size) for _ in range(steps)])
        times = {cell: [] for cell in cells}
        for round_ in range(repeats + 1):
            for cell, (stepper, batches) in steppers.items():
                seconds = _seconds(lambda: [stepper.step(x, y) for x, y in batches])
                if round_:  # the first round traces and warms up
                    times[cell].append(1000 * seconds / steps)
        for cell, ms in times.items():
            out[(cell, t)] = (float(np.median(ms)), float(np.ptp(ms) / 2))
    return out


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_overhead(seq_len: int = 10, batch_size: int | None = None, units: int = 64, repeats: int = 5) -> float:
    """Median wall time (s) of a whole :func:`rnnbook.training.train` call with one update and
    one-batch validation and test sets: a run's fixed cost. Each repeat changes the seed; one
    warm-up run of the same shapes comes first."""
    import dataclasses

    from rnnbook import training

    batch_size = batch_size or training_batch_size()
    cfg = training.TrainConfig(seq_len=seq_len, n_train=batch_size, n_val=batch_size, n_test=batch_size,
                               epochs=1, units=units, batch_size=batch_size)
    task = cfg.task_data(data_dir=None)
    times = [_seconds(lambda: training.train(dataclasses.replace(cfg, seed=seed), task=task))
             for seed in range(repeats + 1)]
    return float(np.median(times[1:]))


def run(seq_lens=(10, 20, 100, 400), batch_size: int | None = None, steps: int = 8, repeats: int = 5,
        units: int = 64, gated_seq_len: int = GATED_SEQ_LEN, peaks: bool = True, update_seq_lens=UPDATE_SEQ_LENS,
        sweep: bool = True, sweep_updates: int | None = None) -> dict:
    """Every measurement, as one JSON-ready dict (``peaks=False`` skips the peak GFLOP/s runs,
    ``sweep=False`` the sweep; ``sweep_updates`` caps the sample's runs, default
    :data:`rnnbook.bench_sweep.SAMPLE_UPDATES`)."""
    from rnnbook import bench_sweep, runtime

    runtime.configure()
    swept = bench_sweep.measure(max_updates=sweep_updates) if sweep else {}  # first: fresh worker processes
    batch_size = batch_size or training_batch_size()
    rows = [measure(t, batch_size, steps, units, repeats=repeats) for t in seq_lens]
    rows += [measure(gated_seq_len, batch_size, steps, units, cell=c, repeats=repeats) for c in GATED_CELLS]
    model = rows[0]["_model"]
    for r in rows:
        r.pop("_model")
    simple = [r for r in rows if r["cell"] == "simple_rnn"]
    fitted = [r for r in simple if r["seq_len"] >= 20] if sum(r["seq_len"] >= 20 for r in simple) >= 2 else simple
    seconds_per_epoch = [r["sequences"] / r["seq_per_s"] for r in fitted]
    exponent = float(np.polyfit(np.log([r["seq_len"] for r in fitted]), np.log(seconds_per_epoch), 1)[0])
    result = {
        "rows": rows,
        "peak_matmul_gflops": matmul_peak_gflops() if peaks else float("nan"),
        "peak_conv_gflops": conv_peak_gflops(model) if peaks else float("nan"),
        "time_exponent_T": exponent,
        "batch_size": batch_size,
        "repeats": repeats,
        "run_overhead_s": run_overhead(min(seq_lens), batch_size, units, repeats),
        "run_overhead_seq_len": min(seq_lens),
        "threads": runtime.RUN_THREADS,
        **swept,
    }
    for (cell, t), (ms, spread) in ms_per_update(update_seq_lens, UPDATE_CELLS, batch_size, units,
                                                 repeats=repeats).items():
        result[f"ms_per_update_{cell}_T{t}"] = ms
        result[f"ms_per_update_{cell}_T{t}_spread"] = spread
    for r in rows:
        name = "" if r["cell"] == "simple_rnn" else f"{r['cell']}_"
        t = r["seq_len"]
        result[f"speedup_{name}T{t}"] = r["speedup"]
        result[f"speedup_{name}T{t}_spread"] = r["speedup_spread"]
        result[f"seq_per_s_{name}T{t}"] = r["seq_per_s"]
        result[f"baseline_seq_per_s_{name}T{t}"] = r["baseline_seq_per_s"]
        result[f"gflops_{name}T{t}"] = r["gflops"]
        if not name:
            result[f"dedup_bound_T{t}"] = r["dedup_bound"]
    for cell in GATED_CELLS:  # per-update time over the SimpleRNN's at the gated cells' length
        if f"seq_per_s_T{gated_seq_len}" in result:
            result[f"update_ratio_{cell}_T{gated_seq_len}"] = (result[f"seq_per_s_T{gated_seq_len}"]
                                                            / result[f"seq_per_s_{cell}_T{gated_seq_len}"])
    return result


def table(result: dict) -> str:
    """The measurements as a table for people."""
    lines = [f"{'cell':>10} {'T':>5} {'book seq/s':>11} {'Keras seq/s':>12} {'speedup':>14} {'dedup bound':>11} "
             f"{'GFLOP/s':>8}"]
    for r in result["rows"]:
        lines.append(f"{r['cell']:>10} {r['seq_len']:>5} {r['seq_per_s']:>11.1f} {r['baseline_seq_per_s']:>12.1f} "
                     f"{r['speedup']:>6.1f}x +-{r['speedup_spread']:<5.1f} {r['dedup_bound']:>10.1f}x "
                     f"{r['gflops']:>8.1f}")
    lines.append(f"batch size {result['batch_size']}, {result['repeats']} interleaved repeats; peak: matmul 2048^3 "
                 f"{result['peak_matmul_gflops']:.0f} GFLOP/s, model convolutions {result['peak_conv_gflops']:.0f} "
                 f"GFLOP/s; time per epoch ~ T^{result['time_exponent_T']:.2f}; fixed cost of a run "
                 f"{result['run_overhead_s']:.2f} s (T = {result['run_overhead_seq_len']})")
    updates = sorted({(k.split("_T")[0][len("ms_per_update_"):], int(k.split("_T")[1]))
                      for k in result if k.startswith("ms_per_update_") and not k.endswith("_spread")})
    if updates:
        lines.append("ms per update (fresh sequences, " + f"{result['threads']} thread): " + ", ".join(
            f"{c} T={t} {result[f'ms_per_update_{c}_T{t}']:.1f}+-{result[f'ms_per_update_{c}_T{t}_spread']:.1f}"
            for c, t in updates))
    if "sweep_runs_per_hour" in result:
        lines.append(f"sweep of {result['sweep_runs']} reference-protocol runs: {result['sweep_runs_per_hour']:.0f} "
                     f"runs/h on {result['sweep_workers']} worker processes against "
                     f"{result['sweep_runs_per_hour_one_at_a_time']:.0f} one at a time: "
                     f"{result['sweep_speedup']:.2f}x; checks take {result['check_share']:.1%} of a run")
    return "\n".join(lines)


def training_batch_size() -> int:
    """The batch size the book trains with (``TrainConfig``'s default)."""
    from rnnbook.training import TrainConfig

    return TrainConfig.batch_size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnnbook.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[10, 20, 100, 400], metavar="T",
                        help="SimpleRNN sequence lengths to measure (default: 10 20 100 400)")
    parser.add_argument("--gated-seq-len", type=int, default=GATED_SEQ_LEN, metavar="T",
                        help="sequence length of the GRU and LSTM measurements (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=training_batch_size(),
                        help="sequences per batch (default: the book's training default, %(default)s)")
    parser.add_argument("--steps", type=int, default=8, help="training steps per timed epoch (default: 8)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed rounds (default: 5)")
    parser.add_argument("--units", type=int, default=64, help="recurrent units (default: 64)")
    parser.add_argument("--no-peaks", action="store_true", help="skip the peak GFLOP/s measurements")
    parser.add_argument("--update-seq-lens", type=int, nargs="+", default=list(UPDATE_SEQ_LENS), metavar="T",
                        help="lengths of the per-update times of every cell (default: 10 40 80)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the sweep (runs per hour, check share)")
    parser.add_argument("--sweep-updates", type=int, default=None, metavar="N",
                        help="cap of the sweep sample's runs (default: the sample's own)")
    args = parser.parse_args(argv)
    if min(args.seq_lens + args.update_seq_lens + [args.gated_seq_len, args.batch_size, args.steps, args.repeats,
                                                   args.units, args.sweep_updates or 1]) < 1:
        parser.error("--seq-lens, --update-seq-lens, --gated-seq-len, --batch-size, --steps, --repeats, --units "
                     "and --sweep-updates must be positive integers")
    if len(set(args.seq_lens)) < 2:
        parser.error("--seq-lens needs at least two different lengths to fit the time exponent")
    result = run(tuple(args.seq_lens), args.batch_size, args.steps, args.repeats, args.units, args.gated_seq_len,
                 peaks=not args.no_peaks, update_seq_lens=tuple(args.update_seq_lens), sweep=not args.no_sweep,
                 sweep_updates=args.sweep_updates)
    if args.json:
        json.dump({k: v for k, v in result.items()}, sys.stdout, indent=2, default=float)
        print()
    else:
        print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
