"""Sweeps: one row per configuration x seed, a resumable atomic cache, run keys, divergence accounting."""
import sys
import copy
import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

import rnnbook  # noqa: F401  (quiets TensorFlow first)
from rnnbook import executors, sweeps
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
    monkeypatch.setattr(executors, "train", lambda *a, **k: pytest.fail("a cached run was trained again"))
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
    monkeypatch.setattr(executors, "train", fake)
    with pytest.raises(KeyboardInterrupt):
        sweeps.run_sweep(GRID, seeds=SEEDS, cache_dir=cache)
    assert calls == jobs[:3]
    assert sorted(_no_partial_files(cache)) == sorted(f"{sweeps.run_key(c)}.json" for c in jobs[:2])

    fake, calls = _fake_trainer(template)
    monkeypatch.setattr(executors, "train", fake)
    runs = sweeps.run_sweep(GRID, seeds=SEEDS, cache_dir=cache)
    assert calls == jobs[2:], "finished runs were trained again"
    assert len(runs) == 4
    # the two finished runs come from the cache (first attempt), the rest from the rerun
    np.testing.assert_allclose(runs["test_acc"], [0.1, 0.2, 0.1, 0.2])
    assert len(_no_partial_files(cache)) == 4


def test_unreadable_cache_entry_is_retrained(swept, tmp_path, monkeypatch):
    template = {k: v for k, v in swept[0]["record"].iloc[0].items() if k != "label"}
    fake, calls = _fake_trainer(template)
    monkeypatch.setattr(executors, "train", fake)
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

    monkeypatch.setattr(executors, "train", fake)
    sweeps.cached_train(BASE, tmp_path)
    monkeypatch.setattr(executors, "train", lambda *a, **k: pytest.fail("retrained"))
    cached = sweeps.cached_train(BASE, tmp_path)
    assert cached["diverged"] is True and math.isnan(cached["test_acc"])


@pytest.mark.parametrize("change", [dict(seed=1), dict(activation="relu"), dict(learning_rate=2e-3),
                                    dict(clip_mode="clipnorm"), dict(recurrent_gain=1.5), dict(units=17),
                                    dict(conv_filters=(4, 4)), dict(lag=0)])
def test_run_key_follows_the_config(change):
    assert sweeps.run_key(BASE) == sweeps.run_key(dataclasses.replace(BASE))
    assert sweeps.run_key(dataclasses.replace(BASE, **change)) != sweeps.run_key(BASE)


def test_run_key_follows_the_installed_versions(monkeypatch):
    key = sweeps.run_key(BASE)
    real = sweeps.installed_version
    tf_dist = next(d for d in sweeps.dependencies()[1] if d.startswith("tensorflow"))
    monkeypatch.setattr(sweeps, "installed_version", lambda d: "99.0" if d == tf_dist else real(d))
    assert sweeps.run_key(BASE) != key
    monkeypatch.setattr(sweeps, "installed_version", lambda d: "2.0" if d == "numpy" else real(d))
    assert sweeps.run_key(BASE) != key
    monkeypatch.setattr(sweeps, "installed_version", lambda d: "0.1" if d == "seaborn" else real(d))
    assert sweeps.run_key(BASE) == key, "a package no run imports changed the key"


def _edited(module):
    real = sweeps._source
    return lambda m: real(m) + b"\n# edited\n" if m == module else real(m)


@pytest.mark.parametrize("module", ["rnnbook.recurrence", "rnnbook.training", "rnnbook.choices", "rnnbook"])
def test_run_key_follows_the_source_of_what_a_run_imports(module, monkeypatch):
    key = sweeps.run_key(BASE)
    monkeypatch.setattr(sweeps, "_source", _edited(module))
    assert sweeps.run_key(BASE) != key


def test_run_key_ignores_modules_runs_do_not_import(monkeypatch):
    key = sweeps.run_key(BASE)
    for module in ("rnnbook.plots", "rnnbook.pascanu", "rnnbook.sweeps"):
        monkeypatch.setattr(sweeps, "_source", _edited(module))
        assert sweeps.run_key(BASE) == key, module


def test_dependencies_of_a_run_come_from_its_imports():
    modules, distributions = sweeps.dependencies()
    for name in ("recurrence", "training", "engine", "criterion", "models", "data", "clipping", "runtime", "choices"):
        assert f"rnnbook.{name}" in modules
    assert "rnnbook.plots" not in modules and "rnnbook.sweeps" not in modules
    assert {"keras", "numpy"} <= set(distributions)
    assert any(d.startswith("tensorflow") for d in distributions)


@pytest.fixture
def toy_package(tmp_path, monkeypatch):
    pkg = tmp_path / "rnnbook"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "import os\n",
        "top.py": "from rnnbook import a\nimport rnnbook.sub.deep\n",
        "a.py": "import numpy as np\n\ndef f():\n    from .b import thing  # lazy and relative\n    return thing\n",
        "b.py": "from rnnbook.a import f\nthing = 1\n",
        "unused.py": "import pandas\n",
        "sub/__init__.py": "",
        "sub/deep.py": "from .. import b\nimport yaml\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    monkeypatch.setattr(sweeps, "PACKAGE_DIR", pkg)
    sweeps.dependencies.cache_clear()
    yield pkg
    sweeps.dependencies.cache_clear()


def test_dependency_walk_follows_every_kind_of_import(toy_package):
    modules, distributions = sweeps.dependencies("rnnbook.top")
    assert modules == ("rnnbook", "rnnbook.a", "rnnbook.b", "rnnbook.sub", "rnnbook.sub.deep", "rnnbook.top")
    assert set(distributions) == {"numpy", "PyYAML"}
    with pytest.raises(ValueError, match="'rnnbook.nope' is not a module of the rnnbook package"):
        sweeps.dependencies("rnnbook.nope")


def test_cached_call_follows_the_code_of_the_measurement(tmp_path, monkeypatch):
    calls = []

    def measure(config):
        calls.append(config)
        return np.arange(3) * config.seed

    measure.__module__ = "rnnbook.pascanu"  # as if defined there (a chapter module in the book)
    first = sweeps.cached_call("norms", measure, BASE, tmp_path)
    assert first == [0, 0, 0] and len(calls) == 1
    assert sweeps.cached_call("norms", measure, BASE, tmp_path) == first and len(calls) == 1
    assert sweeps.cached_call("norms", measure, dataclasses.replace(BASE, seed=2), tmp_path) == [0, 2, 4]
    assert len(calls) == 2
    (path,) = [p for p in tmp_path.iterdir() if json.loads(p.read_text())["config"]["seed"] == 0]
    assert path.name.startswith("norms-")
    monkeypatch.setattr(sweeps, "_source", _edited("rnnbook.pascanu"))
    assert sweeps.cached_call("norms", measure, BASE, tmp_path) == first and len(calls) == 3
    monkeypatch.setattr(sweeps, "_source", _edited("rnnbook.recurrence"))
    sweeps.cached_call("norms", measure, BASE, tmp_path)
    assert len(calls) == 4
    assert sweeps.cached_call("norms", measure, BASE, None) == first and len(calls) == 5
    with pytest.raises(ValueError, match="without slashes"):
        sweeps.cached_call("a/b", measure, BASE, tmp_path)


def test_failed_runs_are_rows_never_cache_entries(swept, tmp_path):
    template = {k: v for k, v in swept[0]["record"].iloc[0].items() if k != "label"}
    fake, calls = _fake_trainer(template)

    def flaky(config):
        if config.activation == "relu":
            raise ValueError("bad luck")
        return fake(config)

    runs = sweeps.run_sweep(GRID, seeds=SEEDS, cache_dir=tmp_path, executor=sweeps.LocalExecutor(flaky))
    assert list(runs["failed"]) == [False, False, True, True]
    assert list(runs["error"][2:]) == ["ValueError: bad luck"] * 2
    assert runs["test_acc"][2:].isna().all() and runs["max_abs_state"][2:].isna().all()
    assert (runs["steps_run"][2:] == 0).all()
    assert len(list(tmp_path.iterdir())) == 2 and len(calls) == 2
    assert len(sweeps.steps_frame(runs)) == 2  # one step per finished run, none for the failed
    runs = sweeps.run_sweep(GRID, seeds=SEEDS, cache_dir=tmp_path, executor=sweeps.LocalExecutor(fake))
    assert not runs["failed"].any() and len(calls) == 4  # only the failed runs ran again


def test_a_run_listed_twice_runs_once(swept, tmp_path):
    template = {k: v for k, v in swept[0]["record"].iloc[0].items() if k != "label"}
    fake, calls = _fake_trainer(template)
    runs = sweeps.run_sweep([BASE, BASE], seeds=[0], cache_dir=tmp_path, labels=["a", "b"],
                            executor=sweeps.LocalExecutor(fake))
    assert list(runs["label"]) == ["a", "b"] and len(calls) == 1
    assert runs["test_acc"].tolist() == [0.1, 0.1]


def test_executor_from_the_environment():
    assert isinstance(sweeps.executor_from_env({sweeps.WORKERS_ENV: "1"}), sweeps.LocalExecutor)
    env = sweeps.executor_env("ray", "ray://head:10001", 2)
    ex = sweeps.executor_from_env(env)
    assert isinstance(ex, sweeps.RayExecutor) and ex.address == "ray://head:10001" and ex.cpus_per_run == 2
    ex = sweeps.executor_from_env(sweeps.executor_env("ray"))
    assert ex.address is None and ex.cpus_per_run == 1
    with pytest.raises(sweeps.SweepError, match="RNNBOOK_EXECUTOR='dask': choose one of local, ray"):
        sweeps.executor_from_env({sweeps.EXECUTOR_ENV: "dask"})
    with pytest.raises(sweeps.SweepError, match="RNNBOOK_RAY_CPUS_PER_RUN='two' must be a positive number"):
        sweeps.executor_from_env({sweeps.EXECUTOR_ENV: "ray", sweeps.RAY_CPUS_ENV: "two"})
    with pytest.raises(sweeps.SweepError, match="cpus_per_run=0 must be a positive number"):
        sweeps.executor_env("ray", None, 0)


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


def _cached_cost(cache, config, updates, wall_time, diverged=False):
    """A cached run record of ``config`` that made ``updates`` updates in ``wall_time`` seconds."""
    cache.mkdir(exist_ok=True)
    record = {"config": config.to_dict(), "diverged": diverged, "wall_time": wall_time,
              "steps": {"loss": [1.0] * updates}}
    (cache / f"{sweeps.run_key(config)}.json").write_text(json.dumps(record))


def test_work_frames_counts_training_and_weighted_checks():
    epochs = TrainConfig(seq_len=10, n_train=256, n_val=100, n_test=50, epochs=3, batch_size=128)
    assert sweeps.work_frames(epochs.to_dict(), 6) == 6 * 128 * 10 + sweeps.EVAL_SHARE * (3 * 100 + 50) * 10
    capped = dataclasses.replace(epochs, max_updates=200, check_every=50)
    assert sweeps.planned_updates(capped) == 200
    assert sweeps.work_frames(capped.to_dict(), 120) == 120 * 128 * 10 + sweeps.EVAL_SHARE * (3 * 100 + 50) * 10


def test_the_estimate_is_calibrated_on_runs_of_the_same_kind_and_nearest_length(tmp_path):
    cache = tmp_path / "runs"
    big = dict(n_train=128 * 400, n_val=128, n_test=128, epochs=1, batch_size=128)
    image_short = TrainConfig(seq_len=4, lag=1, **big)
    image_long = TrainConfig(seq_len=41, lag=40, **big)
    adding = TrainConfig(task="adding", seq_len=40, **big, max_updates=400, check_every=100)
    tiny = TrainConfig(seq_len=41, lag=40, n_train=32, n_val=8, n_test=8, epochs=1, batch_size=32)
    for config, rate in ((image_short, 1e-5), (image_long, 3e-6), (adding, 5e-7)):
        _cached_cost(cache, config, 400, rate * sweeps.work_frames(config.to_dict(), 400))
    _cached_cost(cache, tiny, 1, 100.0)  # overhead only: below MIN_CALIBRATION_WORK, ignored
    _cached_cost(cache, dataclasses.replace(image_long, seed=9), 400, 1e6, diverged=True)  # ignored
    costs = sweeps.frame_costs(cache)
    assert sorted(costs) == sorted([("images", 4, pytest.approx(1e-5)), ("images", 41, pytest.approx(3e-6)),
                                    ("synthetic", 40, pytest.approx(5e-7))])
    planned = dataclasses.replace(image_long, seq_len=101, lag=100, seed=1)
    assert sweeps.seconds_per_frame(planned, costs) == pytest.approx(3e-6)  # nearest T: 41, not 4
    assert sweeps.seconds_per_frame(dataclasses.replace(adding, seq_len=200), costs) == pytest.approx(5e-7)
    assert sweeps.seconds_per_frame(planned, []) == sweeps.SECONDS_PER_FRAME
    expected = 3e-6 * sweeps.work_frames(planned.to_dict(), sweeps.planned_updates(planned))
    assert sweeps.estimate_seconds([planned], cache) == pytest.approx(expected)
    assert sweeps.estimate_seconds([], cache) == 0.0


def test_the_progress_bars_go_to_the_builds_terminal_when_it_names_one(tmp_path, monkeypatch):
    """In a chapter's kernel (whose stderr is the chapter's log) the bars go to the terminal the
    build names; without one, to stderr."""
    from rnnbook import sweeps

    term = tmp_path / "tty"
    term.touch()
    monkeypatch.setattr(sweeps, "_progress", {})
    monkeypatch.delenv(sweeps.PROGRESS_ENV, raising=False)
    assert sweeps.progress_file() == (sys.__stderr__, None)
    monkeypatch.setenv(sweeps.PROGRESS_ENV, str(term))
    out, position = sweeps.progress_file()
    assert out.name == str(term) and position == 2
    from test_executors import GRID, _fake

    sweeps.run_sweep(GRID, seeds=[0], desc="a sweep", cache_dir=tmp_path / "runs", executor=sweeps.LocalExecutor(_fake))
    out.flush()
    assert "a sweep:   0%|" in term.read_text() and "0/2" in term.read_text()
    monkeypatch.setenv(sweeps.PROGRESS_ENV, str(tmp_path / "no" / "such" / "tty"))
    assert sweeps.progress_file() == (sys.__stderr__, None)  # an unusable terminal: stderr, not an error
