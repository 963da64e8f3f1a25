"""A run that fails for lack of memory stops its sweep (and so its chapter) at once with that error,
instead of becoming one more quiet failed record while every later run fails the same way."""
from __future__ import annotations

import pytest

import rnnbook  # noqa: F401  (quiets TensorFlow first)
from rnnbook import executors, sweeps
from rnnbook.training import TrainConfig

BASE = TrainConfig(seq_len=3, lag=1, n_train=8, n_val=4, n_test=4, epochs=1, batch_size=8, units=16,
                   conv_filters=(4,))


class ResourceExhaustedError(RuntimeError):
    """Named like TensorFlow's (tf.errors.ResourceExhaustedError), without importing TensorFlow."""


@pytest.mark.parametrize("error", [MemoryError("cannot allocate"), ResourceExhaustedError("OOM when allocating"),
                                   "MemoryError: cannot allocate", "ResourceExhaustedError: OOM when allocating"])
def test_out_of_memory_is_raised_not_recorded(error):
    with pytest.raises((MemoryError, ResourceExhaustedError), match="allocat") as raised:
        executors.failed_record(BASE, error)
    if isinstance(error, BaseException):
        assert raised.value is error  # the run's own error, with its traceback


@pytest.mark.parametrize("error", [ValueError("bad luck"), "WorkerDied: exit code -9", "FloatingPointError: nan"])
def test_other_failures_are_recorded(error):
    record = executors.failed_record(BASE, error)
    assert record["failed"] and record["error"] in (str(error), f"ValueError: {error}")


def test_a_sweep_stops_at_the_first_run_out_of_memory(tmp_path):
    calls = []

    def trainer(config):
        calls.append(config)
        if len(calls) == 2:
            raise MemoryError("cannot allocate the recurrent matrix")
        return {"config": config.to_dict(), "test_acc": 0.5, "diverged": False}

    with pytest.raises(MemoryError, match="recurrent matrix"):
        sweeps.run_sweep([BASE], seeds=[0, 1, 2, 3], cache_dir=tmp_path, executor=sweeps.LocalExecutor(trainer))
    assert len(calls) == 2  # not four: the sweep stopped at once
    assert len(list(tmp_path.glob("*.json"))) == 1  # the run that finished is cached
