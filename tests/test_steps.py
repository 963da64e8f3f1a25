"""The measured step (:mod:`rnnbook.steps`): as the reference protocol keeps it."""
from __future__ import annotations

from rnnbook import reference, steps
from rnnbook.training import TrainConfig


def fake_measure(calls):
    def measure(config):
        calls.append(config.seed)
        return {"update_norm": [float(config.seed)]}
    return measure


def test_stored_steps_are_measured_into_the_store_only_while_the_reference_is_computed(monkeypatch, tmp_path):
    calls, cached = [], []
    monkeypatch.setenv(reference.STORE_ENV, str(tmp_path))
    monkeypatch.setattr(steps, "measure_steps", fake_measure(calls))
    monkeypatch.setattr(steps, "steps_of", lambda config, seeds: cached.extend(seeds) or [{"from": "run cache"}])
    monkeypatch.setenv(reference.MODE_ENV, "read")
    assert steps.stored_steps(TrainConfig(), [1]) == [{"from": "run cache"}] and cached == [1] and not calls
    assert not (tmp_path / steps.STORE_FOLDER).exists()  # a build never adds files to the store
    monkeypatch.setenv(reference.MODE_ENV, "write")
    assert steps.stored_steps(TrainConfig(), [1, 2]) == [{"update_norm": [1.0]}, {"update_norm": [2.0]}]
    assert calls == [1, 2] and len(list((tmp_path / steps.STORE_FOLDER).glob("*.json"))) == 2
    monkeypatch.setenv(reference.MODE_ENV, "read")  # shipped: read back, nothing measured
    assert steps.stored_steps(TrainConfig(), [2]) == [{"update_norm": [2.0]}] and calls == [1, 2] and cached == [1]
