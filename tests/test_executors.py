"""The local executor's worker processes: the same records as one run at a time, a dead worker's
run retried, a failing run recorded, Ctrl-C keeping every finished run, small sweeps in-process."""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from pathlib import Path

import pytest

import rnnbook  # noqa: F401  (quiets TensorFlow first)
from rnnbook import executors, runtime, sweeps
from rnnbook.training import TrainConfig

from worker_faults import killing_a_starting_worker, starts

TINY = TrainConfig(seq_len=3, lag=2, n_train=8, n_val=16, n_test=16, epochs=2, batch_size=8, units=8,
                   conv_filters=(4,))
CRITERION = dataclasses.replace(TINY, max_updates=6, check_every=2)
#: Epoch runs and runs to a criterion with every outcome: success at the first check (a target any
#: model meets), censored (a target none meets), diverged (a learning rate that blows up); a GRU.
MIXED = [TINY, dataclasses.replace(TINY, activation="relu", cell="gru"),
         dataclasses.replace(CRITERION, target_acc=0.01), dataclasses.replace(CRITERION, target_acc=1.0),
         dataclasses.replace(CRITERION, optimizer="sgd", learning_rate=1e4, activation="relu",
                             recurrent_initializer="identity", target_acc=1.0)]
WALL = ("wall_time", "seconds_per_epoch")


def comparable(record: dict) -> str:
    """A record without its wall times, as JSON (NaN equals NaN)."""
    return json.dumps({k: v for k, v in record.items() if k not in WALL}, sort_keys=True)


def _sweep(executor, tmp_path, name, configs=MIXED, seeds=(0, 1)):
    return sweeps.run_sweep(configs, seeds=seeds, cache_dir=tmp_path / name, executor=executor)


@pytest.fixture(scope="module")
def pool():
    """Two worker processes shared by the tests (starting one costs seconds: TensorFlow's import);
    each test sets its trainer."""
    shared = executors.PoolExecutor(2, min_frames=0)
    yield shared
    shared.close()


@pytest.fixture
def trainer(pool):
    def use(trainer=None, max_retries=executors.MAX_RETRIES):
        pool.trainer, pool.max_retries, pool.retried = trainer, max_retries, []
        return pool
    yield use
    use()


@pytest.fixture(scope="module")
def one_at_a_time(tmp_path_factory):
    root = tmp_path_factory.mktemp("local")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        return _sweep(sweeps.LocalExecutor(), root, "runs")


def test_runs_use_the_protocols_thread_count(one_at_a_time):
    assert runtime.threads() == runtime.RUN_THREADS == 1


def test_two_workers_give_the_records_of_one_run_at_a_time(one_at_a_time, trainer, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outcomes = {r.get("outcome") for r in one_at_a_time["record"]}
    assert {"success", "censored", "diverged", None} <= outcomes, outcomes
    pool = trainer()
    runs = _sweep(pool, tmp_path, "runs")
    assert len(pool._pool) == 2 and not runs["failed"].any()
    assert [comparable(r) for r in runs["record"]] == [comparable(r) for r in one_at_a_time["record"]]


def _fake(config, marks=None, seconds=0.0, fail=()):
    """A trainer for the worker processes (module level: picklable): marks ``<seed>.<pid>`` when it
    starts, sleeps, raises for the activations in ``fail``."""
    if marks:
        with open(os.path.join(marks, f"{config.activation}-{config.seed}.{os.getpid()}"), "a") as f:
            f.write("started\n")
    time.sleep(seconds if config.seed else 0.0)  # seed 0 finishes at once
    if config.activation in fail:
        raise ValueError(f"no {config.activation} today")
    return {"config": config.to_dict(), "diverged": False, "diverged_step": None, "test_acc": 0.1 * config.seed,
            "test_acc_last_good": 0.0, "chance": 0.1, "epoch_train_acc": [], "epoch_val_acc": [],
            "steps": {"loss": [1.0]}, "wall_time": 0.0, "seconds_per_epoch": 0.0}


GRID = [dataclasses.replace(TINY, activation=a) for a in ("tanh", "relu")]


def test_a_failing_run_is_recorded_not_cached(tmp_path, trainer):
    marks = tmp_path / "marks"
    marks.mkdir()
    pool = trainer(functools.partial(_fake, marks=str(marks), fail=("relu",)))
    runs = sweeps.run_sweep(GRID, seeds=[0, 1], cache_dir=tmp_path / "runs", executor=pool)
    assert list(runs["failed"]) == [False, False, True, True]
    assert list(runs["error"][2:]) == ["ValueError: no relu today"] * 2
    assert starts(marks) == ["relu-0", "relu-1", "tanh-0", "tanh-1"]  # an error is not retried
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == \
        sorted(f"{sweeps.run_key(c)}.json" for c in sweeps.with_seeds(GRID[:1], [0, 1]))


def test_a_killed_worker_is_replaced_and_its_run_retried(tmp_path, trainer):
    marks = tmp_path / "marks"
    marks.mkdir()
    pool = trainer(functools.partial(_fake, marks=str(marks), seconds=1.0))
    with killing_a_starting_worker(marks, which=lambda mark: mark.stem.endswith("-1"), timeout=120) as killed:
        runs = sweeps.run_sweep(GRID, seeds=[0, 1, 2], cache_dir=tmp_path / "runs", executor=pool)
    assert killed and not runs["failed"].any()
    assert list(zip(runs["activation"], runs["seed"])) == [(a, s) for a in ("tanh", "relu") for s in (0, 1, 2)]
    assert list(runs["test_acc"]) == pytest.approx([0, 0.1, 0.2] * 2)
    assert starts(marks).count(killed[0]) == 2 and len(pool.retried) == 1
    assert len(list((tmp_path / "runs").iterdir())) == 6


def _die(config):
    os._exit(3)


def test_a_run_whose_worker_always_dies_becomes_a_failed_record(tmp_path, trainer):
    pool = trainer(_die, max_retries=1)
    runs = sweeps.run_sweep(GRID[:1], seeds=[0], cache_dir=tmp_path / "runs", executor=pool)
    assert runs["failed"].all() and "exited with code 3 (2 tries)" in runs["error"][0]
    assert pool.retried == [0] and not list((tmp_path / "runs").glob("*.json"))


def test_ctrl_c_keeps_every_finished_run_and_stops_the_workers(tmp_path, monkeypatch, trainer):
    real_wait, waits = executors.wait, []

    def wait_then_ctrl_c(*args, **kwargs):
        waits.append(1)
        if len(waits) == 2:  # Ctrl-C once the second seed-0 run has finished, its record still unread
            time.sleep(2.0)
            raise KeyboardInterrupt
        return real_wait(*args, **kwargs)

    monkeypatch.setattr(executors, "wait", wait_then_ctrl_c)
    pool = trainer(functools.partial(_fake, seconds=60.0))
    grid = [dataclasses.replace(GRID[0], units=u) for u in (8, 9)]  # equal expected costs: grid order
    with pytest.raises(KeyboardInterrupt):
        sweeps.run_sweep(grid, seeds=[0, 1], cache_dir=tmp_path / "runs", executor=pool)
    assert not pool._pool, "the workers were not stopped"
    assert len(list((tmp_path / "runs").iterdir())) == 2, "a finished run was lost"
    monkeypatch.undo()
    runs = sweeps.run_sweep(grid, seeds=[0, 1], cache_dir=tmp_path / "runs",
                            executor=sweeps.LocalExecutor(functools.partial(_fake, marks=str(tmp_path))))
    assert len(runs) == 4 and not runs["failed"].any()
    started = sorted(p.name.split(".")[0] for p in tmp_path.glob("tanh-*") for _ in p.read_text().splitlines())
    assert started == ["tanh-1", "tanh-1"]  # only the rest ran (one line per start: one process may run both)


def test_a_small_sweep_runs_in_this_process(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(executors, "train", lambda config: calls.append(config) or _fake(config))
    pool = executors.PoolExecutor(2)
    runs = sweeps.run_sweep(GRID, seeds=[0, 1], cache_dir=tmp_path / "runs", executor=pool)
    assert len(calls) == 4 and not pool._pool and not runs["failed"].any()


def test_the_longest_runs_go_first():
    short = dataclasses.replace(CRITERION, max_updates=10)
    long_gru = dataclasses.replace(CRITERION, max_updates=1000, cell="gru", seq_len=161, lag=160)
    long_simple = dataclasses.replace(long_gru, cell="simple_rnn")
    costs = [executors.expected_cost(c) for c in (short, long_simple, long_gru)]
    assert costs == sorted(costs)


def test_the_executor_from_the_environment_has_the_workers():
    assert isinstance(sweeps.executor_from_env({sweeps.WORKERS_ENV: "1"}), sweeps.LocalExecutor)
    pool = sweeps.executor_from_env({sweeps.WORKERS_ENV: "3"})
    assert isinstance(pool, executors.PoolExecutor) and pool.workers == 3 and pool.threads == runtime.RUN_THREADS
    assert sweeps.executor_from_env({sweeps.WORKERS_ENV: "3"}) is pool  # one pool per process
    default = sweeps.executor_from_env({})
    assert (default.workers if isinstance(default, executors.PoolExecutor) else 1) == executors.default_workers()
    assert sweeps.executor_env("local", workers=2)[sweeps.WORKERS_ENV] == "2"
    for bad in ("0", "two", "-1"):
        with pytest.raises(sweeps.SweepError, match=f"RNNBOOK_WORKERS='{bad}' must be a positive integer"):
            sweeps.executor_from_env({sweeps.WORKERS_ENV: bad})


def test_the_workers_of_a_killed_driver_exit_mid_run(tmp_path):
    """A driver killed outright (SIGKILL: no Ctrl-C handler runs) leaves no worker training on."""
    import signal
    import subprocess
    import sys

    marks = tmp_path / "marks"
    marks.mkdir()
    driver = subprocess.Popen([sys.executable, "-c", f"""
import dataclasses, functools, sys
sys.path[:0] = {[str(Path(__file__).parent), str(Path(executors.__file__).parents[1])]!r}
from rnnbook import executors
from test_executors import TINY, _fake
pool = executors.PoolExecutor(1, min_frames=0, trainer=functools.partial(_fake, marks={str(marks)!r}, seconds=600.0))
pool.run([dataclasses.replace(TINY, seed=1)], lambda i, record: None)
"""])
    try:
        deadline = time.time() + 120
        while not list(marks.iterdir()) and time.time() < deadline:
            time.sleep(0.2)
        (mark,) = marks.iterdir()
        worker = int(mark.suffix[1:])
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    deadline = time.time() + 60
    while _alive(worker) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(worker), "the worker kept training after its driver was killed"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie has exited
        return f.read().split(")")[-1].split()[0] != "Z"
