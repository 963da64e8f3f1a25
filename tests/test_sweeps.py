"""Sweeps: one row per configuration x seed, a resumable atomic cache, run keys, divergence accounting."""
import copy
import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

import rnnbook  # noqa: F401  (quiets TensorFlow first)
from rnnbook import sweeps
from rnnbook.data import atomic_write
from rnnbook.training import TrainConfig

BASE = TrainConfig(seq_len=3, lag=1, n_train=8, n_val=4, n_test=4, epochs=1, batch_size=8,
                   units=16, conv_filters=(4,))
GRID = [dataclasses.replace(BASE, activation=a) for a in ("tanh", "relu")]
SEEDS = [0, 1]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    cache = root / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # training's default data_dir is relative: keep it out of the repo
        runs = sweeps.run_sweep(GRID, seeds=SEEDS, cache_dir=cache, labels=["tanh!", "relu!"])
    return runs, cache, root


def _no_partial_files(cache):
    names = [p.name for p in cache.iterdir()]
    assert not [n for n in names if n.startswith(".") or n.endswith(".tmp")], names
    return names


def test_one_row_per_config_and_seed(swept):
    runs, cache, _ = swept
    assert len(runs) == len(GRID) * len(SEEDS)
    assert sorted(zip(runs["activation"], runs["seed"])) == sorted((c.activation, s) for c in GRID for s in SEEDS)
    assert dict(zip(runs["activation"], runs["label"])) == {"tanh": "tanh!", "relu": "relu!"}
    expected = set(BASE.to_dict()) | set(sweeps.SUMMARY_FIELDS) | {
        "label", "final_val_acc", "median_grad_norm", "max_grad_norm", "max_abs_state", "steps_run", "record"}
    assert expected <= set(runs.columns)
    assert (runs["steps_run"] == 1).all()
    assert runs["test_acc"].between(0, 1).all()
    assert (runs["conv_filters"] == "4").all()
    for _, row in runs.iterrows():
        assert row["record"]["config"]["seed"] == row["seed"]
    names = _no_partial_files(cache)
    assert sorted(names) == sorted(f"{sweeps.run_key(c)}.json" for c in sweeps.with_seeds(GRID, SEEDS))
    # different seeds really are different runs
    tanh = runs[runs["activation"] == "tanh"]
    assert tanh["median_grad_norm"].nunique() == 2


def test_rerun_loads_from_cache(swept, monkeypatch):
    runs, cache, root = swept
    monkeypatch.chdir(root)
    monkeypatch.setattr(sweeps, "train", lambda *a, **k: pytest.fail("a cached run was trained again"))
    again = sweeps.run_sweep(GRID, seeds=SEEDS, cache_dir=cache, labels=["tanh!", "relu!"])
    cols = [c for c in runs.columns if c != "record"]
    pd.testing.assert_frame_equal(again[cols], runs[cols])


def _fake_trainer(template, fail_on=None):
    """A stand-in for ``train`` that counts calls and can die on the ``fail_on``-th one."""
    calls = []

    def fake(config, *args, **kwargs):
        calls.append(config)
        if fail_on is not None and len(calls) == fail_on:
            raise KeyboardInterrupt("killed mid-sweep")
        record = copy.deepcopy(template)
        record["config"] = config.to_dict()
        record["test_acc"] = 0.1 * len(calls)
        return record

    return fake, calls


def test_interrupted_sweep_resumes_without_redoing_finished_runs(swept, tmp_path, monkeypatch):
    template = swept[0]["record"].iloc[0]
    template = {k: v for k, v in template.items() if k != "label"}
    cache = tmp_path / "runs"
    jobs = sweeps.with_seeds(GRID, SEEDS)

    fake, calls = _fake_trainer(template, fail_on=3)
    monkeypatch.setattr(sweeps, "train", fake)
    with pytest.raises(KeyboardInterrupt):
        sweeps.run_sweep(GRID, seeds=SEEDS, cache_dir=cache)
    assert calls == jobs[:3]
    assert sorted(_no_partial_files(cache)) == sorted(f"{sweeps.run_key(c)}.json" for c in jobs[:2])

    fake, calls = _fake_trainer(template)
    monkeypatch.setattr(sweeps, "train", fake)
    runs = sweeps.run_sweep(GRID, seeds=SEEDS, cache_dir=cache)
    assert calls == jobs[2:], "finished runs were trained again"
    assert len(runs) == 4
    # the two finished runs come from the cache (first attempt), the rest from the rerun
    np.testing.assert_allclose(runs["test_acc"], [0.1, 0.2, 0.1, 0.2])
    assert len(_no_partial_files(cache)) == 4


def test_unreadable_cache_entry_is_retrained(swept, tmp_path, monkeypatch):
    template = {k: v for k, v in swept[0]["record"].iloc[0].items() if k != "label"}
    fake, calls = _fake_trainer(template)
    monkeypatch.setattr(sweeps, "train", fake)
    (tmp_path / f"{sweeps.run_key(BASE)}.json").write_text('{"config": ')
    record = sweeps.cached_train(BASE, tmp_path)
    assert len(calls) == 1 and record["config"] == BASE.to_dict()
    assert json.loads((tmp_path / f"{sweeps.run_key(BASE)}.json").read_text())["config"] == BASE.to_dict()


def test_atomic_write_leaves_nothing_when_killed(tmp_path):
    target = tmp_path / "run.json"

    def dies(f):
        f.write(b'{"half": ')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, dies)
    assert list(tmp_path.iterdir()) == []
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, dies)
    assert target.read_text() == "old"  # the previous version survives
    atomic_write(target, lambda f: f.write(b"new"))
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_nan_survives_the_cache(tmp_path, monkeypatch, swept):
    template = {k: v for k, v in swept[0]["record"].iloc[0].items() if k != "label"}
    template.update(diverged=True, diverged_step=0, test_acc=float("nan"))

    def fake(config, *a, **k):
        return dict(copy.deepcopy(template), config=config.to_dict())

    monkeypatch.setattr(sweeps, "train", fake)
    sweeps.cached_train(BASE, tmp_path)
    monkeypatch.setattr(sweeps, "train", lambda *a, **k: pytest.fail("retrained"))
    cached = sweeps.cached_train(BASE, tmp_path)
    assert cached["diverged"] is True and math.isnan(cached["test_acc"])


@pytest.mark.parametrize("change", [dict(seed=1), dict(activation="relu"), dict(learning_rate=2e-3),
                                    dict(clip_mode="clipnorm"), dict(recurrent_gain=1.5), dict(units=17),
                                    dict(conv_filters=(4, 4)), dict(lag=0)])
def test_run_key_follows_the_config(change):
    assert sweeps.run_key(BASE) == sweeps.run_key(dataclasses.replace(BASE))
    assert sweeps.run_key(dataclasses.replace(BASE, **change)) != sweeps.run_key(BASE)


def test_run_key_follows_the_code(monkeypatch):
    key = sweeps.run_key(BASE)
    monkeypatch.setattr(sweeps, "code_version", lambda: "edited")
    assert sweeps.run_key(BASE) != key


def test_accuracy_with_divergence_never_drops_runs():
    runs = pd.DataFrame({
        "activation": ["tanh", "tanh", "relu", "relu"],
        "diverged": [False, False, True, False],
        "test_acc": [0.8, 0.6, float("nan"), 0.9],
        "test_acc_last_good": [0.8, 0.6, 0.4, 0.9],
        "chance": [0.12, 0.12, 0.12, 0.12],
    })
    acc = sweeps.accuracy_with_divergence(runs)
    assert len(acc) == len(runs) and acc.notna().all()
    np.testing.assert_allclose(acc, [0.8, 0.6, 0.12, 0.9])
    np.testing.assert_allclose(acc.groupby(runs["activation"]).mean()[["relu", "tanh"]], [0.51, 0.7])
    np.testing.assert_allclose(sweeps.accuracy_with_divergence(runs, "last_good"), [0.8, 0.6, 0.4, 0.9])
    with pytest.raises(ValueError, match="diverged_as="):
        sweeps.accuracy_with_divergence(runs, "drop")


def test_accuracy_with_divergence_on_a_summary_frame(swept):
    records = [copy.deepcopy(r) for r in swept[0]["record"]]
    records[1].update(diverged=True, diverged_step=0, test_acc=float("nan"))
    runs = sweeps.summary_frame(records)
    acc = sweeps.accuracy_with_divergence(runs)
    assert len(acc) == len(records) and acc.notna().all()
    assert acc.iloc[1] == records[1]["chance"]
    assert acc.iloc[0] == records[0]["test_acc"]
