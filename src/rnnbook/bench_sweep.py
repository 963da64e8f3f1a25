"""What a sweep costs, for :mod:`rnnbook.bench`: runs per hour of a fixed sample of runs of the
reference protocol, one at a time and on the local executor's worker processes, and the share of
a run's time its checks take.

The sample (:func:`sample`) mixes the protocol's cells (tanh and ReLU SimpleRNNs, GRU, LSTM),
lags (5, 20, 80) and outcomes (the short lags meet a modest target within the cap, the long ones
are censored), with the protocol's validation set (2,000 sequences), batch (128), width (64) and
checks (every 25 updates), capped at :data:`SAMPLE_UPDATES` updates so that the whole sample runs
in minutes. Both executors run it after their processes have started (TensorFlow imported, one
warm-up run each), so the times are the sweep's, as in a build whose kernels are up:

* one at a time: one process with TensorFlow on every core (intra-op threads = cores, two
  inter-op threads), the local executor before the worker processes;
* worker processes: :func:`rnnbook.executors.default_workers` processes, the protocol's thread
  count each.

The check share is ``1 - (time inside the training steps) / (the run's wall time)`` summed over the
sample's runs on the worker processes: what a run spends besides its updates, its checks
(validation, weights copied, any statistics recorded at a check) and their bookkeeping. Beside the
wall times, the CPU seconds per run of both (every thread of the process running it): on a
machine whose cores other processes keep busy, a second worker cannot show its gain in wall time,
but a run that keeps two threads busy for little more speed shows it in CPU time.
"""
from __future__ import annotations

import dataclasses
import os
import time

#: The cap of the sample's runs (the protocol's caps are thousands of updates; the per-update and
#: per-check costs are the same).
SAMPLE_UPDATES = 100
#: ``(cell, activation, recurrent initializer, lag, success target)`` of the sample's runs.
#: At lag 5 the tanh and ReLU-identity runs meet their targets within the cap (about 75 and 50
#: updates measured here); the others are censored.
SAMPLE = (("simple_rnn", "tanh", "orthogonal", 5, 0.85), ("simple_rnn", "relu", "identity", 5, 0.2),
          ("gru", "tanh", "orthogonal", 5, 0.9), ("lstm", "tanh", "orthogonal", 5, 0.9),
          ("simple_rnn", "tanh", "orthogonal", 20, 0.9), ("gru", "tanh", "orthogonal", 20, 0.9),
          ("lstm", "tanh", "orthogonal", 80, 0.9), ("simple_rnn", "relu", "identity", 80, 0.9))


def sample(max_updates: int | None = None) -> list:
    """The sample's :class:`rnnbook.training.TrainConfig` s (seed 0), longest first."""
    from rnnbook.training import TrainConfig

    base = TrainConfig(task="recall", n_train=64, n_val=2000, n_test=500, units=64, batch_size=128,
                       max_updates=int(max_updates or SAMPLE_UPDATES), check_every=25, stream="fresh")
    return [dataclasses.replace(base, cell=cell, activation=act, recurrent_initializer=init, seq_len=lag + 1, lag=lag,
                                target_acc=target) for cell, act, init, lag, target in SAMPLE]


_STEP_SECONDS: list[float] = []


def _patch_step() -> None:
    """Time every :meth:`rnnbook.engine.Stepper.step` of this process (once)."""
    from rnnbook import engine

    if getattr(engine.Stepper.step, "_timed", False):
        return
    step = engine.Stepper.step

    def timed(self, x, y):
        t0 = time.perf_counter()
        try:
            return step(self, x, y)
        finally:
            _STEP_SECONDS.append(time.perf_counter() - t0)

    timed._timed = True
    engine.Stepper.step = timed


def timed_train(config) -> dict:
    """A run's record with ``bench_step_seconds``, the time inside its training steps, and
    ``bench_cpu_seconds``, the CPU time of its process (every thread) during the run (a trainer
    for :class:`rnnbook.executors.PoolExecutor`: module level, picklable)."""
    from rnnbook import sweeps

    _patch_step()
    _STEP_SECONDS.clear()
    cpu = time.process_time()
    record = sweeps.train(config)
    return dict(record, bench_step_seconds=float(sum(_STEP_SECONDS)), bench_cpu_seconds=time.process_time() - cpu)


def _warm_up(executor) -> None:
    """Start the executor's processes and give each one run (TensorFlow's import, the data)."""
    from rnnbook.training import TrainConfig

    tiny = TrainConfig(seq_len=3, lag=2, n_train=8, n_val=8, n_test=8, epochs=1, batch_size=8, units=8,
                       conv_filters=(4,))
    executor.run([dataclasses.replace(tiny, seed=s) for s in range(executor.workers)], lambda i, record: None)


def run_sample(executor, configs) -> tuple[float, list[dict]]:
    """``(seconds, records in the order of configs)`` of ``configs`` on ``executor`` (warmed up first)."""
    _warm_up(executor)
    records: list = [None] * len(configs)

    def done(i, record):
        records[i] = record

    t0 = time.perf_counter()
    executor.run(list(configs), done)
    return time.perf_counter() - t0, records


def measure(max_updates: int | None = None, configs=None, workers: int | None = None) -> dict:
    """The sweep keys of the bench (see the README): runs per hour one at a time and on the worker
    processes, their ratio, the check share, and what the sample held."""
    from rnnbook import executors, runtime

    configs = list(configs) if configs is not None else sample(max_updates)
    workers = workers or executors.default_workers()
    cores = os.cpu_count() or 1
    old = executors.PoolExecutor(1, threads=cores, trainer=timed_train, min_frames=0)
    new = executors.PoolExecutor(workers, threads=runtime.RUN_THREADS, trainer=timed_train, min_frames=0)
    try:
        old_seconds, old_records = run_sample(old, configs)
        old.close()
        new_seconds, new_records = run_sample(new, configs)
    finally:
        old.close()
        new.close()
    failed = [r.get("error") for r in old_records + new_records if r.get("failed")]
    if failed:
        raise RuntimeError(f"the bench's sweep sample failed: {failed[0]}")

    def share(records):
        wall = sum(r["wall_time"] for r in records)
        return 1.0 - sum(r["bench_step_seconds"] for r in records) / wall

    outcomes = [r.get("outcome") for r in new_records]
    return {
        "sweep_runs": len(configs),
        "sweep_updates": int(sum(r["updates"] for r in new_records)),
        "sweep_successes": outcomes.count("success"),
        "sweep_censored": outcomes.count("censored"),
        "sweep_workers": workers,
        "sweep_threads_one_at_a_time": cores,
        "sweep_seconds_one_at_a_time": old_seconds,
        "sweep_seconds": new_seconds,
        "sweep_runs_per_hour_one_at_a_time": 3600 * len(configs) / old_seconds,
        "sweep_runs_per_hour": 3600 * len(configs) / new_seconds,
        "sweep_speedup": old_seconds / new_seconds,
        "check_share": share(new_records),
        "check_share_one_at_a_time": share(old_records),
        # what the runs cost in CPU time, less sensitive than wall time to other processes on the cores
        "sweep_cpu_seconds_per_run": sum(r["bench_cpu_seconds"] for r in new_records) / len(configs),
        "sweep_cpu_seconds_per_run_one_at_a_time": sum(r["bench_cpu_seconds"] for r in old_records) / len(configs),
    }
