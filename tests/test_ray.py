"""The Ray executor on a local Ray with 2 CPUs: same numbers as local, faults, Ctrl-C."""
from __future__ import annotations

import copy
import dataclasses
import os
import time

import numpy as np
import pytest

import rnnbook  # noqa: F401  (quiets TensorFlow first)
from rnnbook import sweeps
from rnnbook.training import TrainConfig

from worker_faults import killing_a_starting_worker, starts

ray = pytest.importorskip("ray")

BASE = TrainConfig(seq_len=3, lag=1, n_train=8, n_val=4, n_test=4, epochs=2, batch_size=4,
                   units=8, conv_filters=(4,))
GRID = [dataclasses.replace(BASE, activation=a) for a in ("tanh", "relu")]
STEP_FIELDS = ("loss", "grad_norm", "max_abs_state")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def _template():
    """A record as ``train`` returns it, without training."""
    return {"config": BASE.to_dict(), "diverged": False, "diverged_step": None, "test_acc": 0.5,
            "test_acc_last_good": 0.5, "epoch_train_acc": [0.5], "epoch_val_acc": [0.5],
            "steps": {f: [1.0] for f in STEP_FIELDS}, "chance": 0.1, "wall_time": 0.1, "seconds_per_epoch": 0.1}


def _slow_fake(marks, seconds=1.0, fail=(), fast=()):
    """A trainer for Ray workers: adds a line to ``<marks>/<activation>-<seed>.<pid>`` each time it
    starts (a retry may land in the same worker process), sleeps ``seconds`` (no time for the
    ``(activation, seed)`` pairs in ``fast``), and raises for the activations in ``fail``. Nested,
    so Ray ships it by value."""
    template = _template()

    def fake(config):
        with open(marks / f"{config.activation}-{config.seed}.{os.getpid()}", "a") as mark:
            mark.write("started\n")
        time.sleep(0.0 if (config.activation, config.seed) in fast else seconds)
        if config.activation in fail:
            raise ValueError(f"no {config.activation} today")
        return dict(copy.deepcopy(template), config=config.to_dict(), test_acc=0.1 * config.seed)

    return fake


def test_ray_gives_the_local_records(local_ray, tmp_path, monkeypatch):
    """Whole records (but their wall times) equal: every run uses the protocol's thread count."""
    from test_executors import MIXED, comparable

    monkeypatch.chdir(tmp_path)
    local = sweeps.run_sweep(MIXED, seeds=[0], cache_dir=tmp_path / "local", executor=sweeps.LocalExecutor())
    executor = sweeps.RayExecutor(cpus_per_run=1)
    remote = sweeps.run_sweep(MIXED, seeds=[0], cache_dir=tmp_path / "ray", executor=executor)
    assert executor.nodes and len(executor.nodes) == 1
    assert not remote["failed"].any()
    assert [comparable(r) for r in remote["record"]] == [comparable(r) for r in local["record"]]
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == \
        sorted(p.name for p in (tmp_path / "local").iterdir())


def test_a_killed_worker_is_retried_and_every_run_is_present_once(local_ray, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    executor = sweeps.RayExecutor(cpus_per_run=1, max_retries=2, trainer=_slow_fake(marks))
    with killing_a_starting_worker(marks) as killed:
        runs = sweeps.run_sweep(GRID, seeds=[0, 1, 2], cache_dir=tmp_path / "runs", executor=executor)
    assert killed, "no worker was killed"
    assert not runs["failed"].any()
    pairs = list(zip(runs["activation"], runs["seed"]))
    assert pairs == [(a, s) for a in ("tanh", "relu") for s in (0, 1, 2)]
    np.testing.assert_allclose(runs["test_acc"], [0, 0.1, 0.2] * 2)
    started = starts(marks)
    assert started.count(killed[0]) == 2, "the killed run was not retried"
    assert len(list((tmp_path / "runs").glob("*.json"))) == 6


def test_a_failing_run_is_recorded_not_cached(local_ray, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    executor = sweeps.RayExecutor(max_retries=1, trainer=_slow_fake(marks, 0.0, fail=("relu",)))
    runs = sweeps.run_sweep(GRID, seeds=[0, 1], cache_dir=tmp_path / "runs", executor=executor)
    assert list(runs["failed"]) == [False, False, True, True]
    assert all("ValueError: no relu today" in e for e in runs["error"][runs["failed"]])
    assert runs["error"][~runs["failed"]].isna().all()
    assert runs["test_acc"][runs["failed"]].isna().all()
    assert starts(marks) == ["relu-0"] * 2 + ["relu-1"] * 2 + ["tanh-0", "tanh-1"]
    cached = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert cached == sorted(f"{sweeps.run_key(c)}.json" for c in sweeps.with_seeds(GRID[:1], [0, 1]))


def test_ctrl_c_keeps_the_finished_runs(local_ray, tmp_path, monkeypatch):
    marks = tmp_path / "marks"
    marks.mkdir()
    cache = tmp_path / "runs"
    seeds = range(4)
    real_wait, waits = ray.wait, []

    def wait_then_ctrl_c(*args, **kwargs):  # Ctrl-C while the driver waits for the third run
        waits.append(1)
        if len(waits) == 3:
            raise KeyboardInterrupt
        return real_wait(*args, **kwargs)

    monkeypatch.setattr(ray, "wait", wait_then_ctrl_c)
    # Two quick runs, the others still sleeping when Ctrl-C cancels them: a run finishing at the
    # moment it is cancelled can crash Ray 2.60's driver ("Tried to complete task that was not
    # pending", a known race between cancellation and a task's reply), which is not under test.
    executor = sweeps.RayExecutor(trainer=_slow_fake(marks, 5.0, fast={("tanh", 0), ("tanh", 1)}))
    with pytest.raises(KeyboardInterrupt):
        sweeps.run_sweep(GRID, seeds=seeds, cache_dir=cache, executor=executor)
    monkeypatch.undo()
    assert len(list(cache.iterdir())) == 2, "finished runs lost or a partial cache entry"
    # the next sweep runs only what is missing
    (marks / "again").mkdir()
    executor = sweeps.RayExecutor(trainer=_slow_fake(marks / "again", 0.0))
    runs = sweeps.run_sweep(GRID, seeds=seeds, cache_dir=cache, executor=executor)
    assert len(runs) == 8 and not runs["failed"].any()
    assert len(starts(marks / "again")) == 8 - 2


def test_a_lost_cluster_stops_the_sweep_with_the_finished_runs_cached(local_ray, tmp_path, monkeypatch):
    marks = tmp_path / "marks"
    marks.mkdir()
    real_wait, waits = ray.wait, []

    def wait_then_lose(*args, **kwargs):
        waits.append(1)
        if len(waits) == 2:
            raise ConnectionError("GCS unreachable")
        return real_wait(*args, **kwargs)

    monkeypatch.setattr(ray, "wait", wait_then_lose)
    executor = sweeps.RayExecutor(trainer=_slow_fake(marks, 5.0, fast={("tanh", 0)}))  # see the Ctrl-C test
    with pytest.raises(sweeps.SweepError, match=r"lost the Ray cluster after 1 of 4 run\(s\) "
                                                r"\(ConnectionError: GCS unreachable\).*build again to resume"):
        sweeps.run_sweep(GRID, seeds=[0, 1], cache_dir=tmp_path / "runs", executor=executor)
    assert len(list((tmp_path / "runs").iterdir())) == 1
