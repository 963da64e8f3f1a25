"""One training run: config checks, the record, divergence handling, reproducibility, fast == general."""
import dataclasses
import math

import numpy as np
import pytest

import rnnbook  # noqa: F401  (quiets TensorFlow first)
from rnnbook import data, engine, training
from rnnbook.training import ConfigError, TrainConfig

TINY = TrainConfig(seq_len=4, lag=2, n_train=16, n_val=8, n_test=8, epochs=2, batch_size=8,
                   units=16, conv_filters=(4, 8), optimizer="adam", learning_rate=1e-2)
STEPS_PER_RUN = 2 * 2  # ceil(16 / 8) batches x 2 epochs

RECORD_KEYS = {"config", "diverged", "diverged_step", "test_acc", "test_acc_last_good", "epoch_train_acc",
               "epoch_val_acc", "steps", "learning_rate", "chance", "indexed", "wall_time", "seconds_per_epoch"}
STEP_KEYS = {"loss", "grad_norm", "max_abs_state", "encoder_grad_norm", "rnn_grad_norm", "head_grad_norm"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("sequences")


@pytest.fixture(scope="module")
def runs(data_dir):
    return {
        "a": training.train(TINY, data_dir=data_dir),
        "b": training.train(TINY, data_dir=data_dir),
        "seed1": training.train(dataclasses.replace(TINY, seed=1), data_dir=data_dir),
        "general": training.train(TINY, data_dir=data_dir, fast=False),
    }


@pytest.mark.parametrize("field, value", [
    ("task", "copy"), ("seq_len", 0), ("lag", 4), ("lag", -1), ("n_train", 0),
    ("cell", "rnn"), ("activation", "swishy"), ("recurrent_initializer", "zeros"),
    ("units", 0), ("units", 1.5), ("epochs", 0), ("batch_size", -8), ("batch_size", True),
    ("recurrent_gain", 0.0), ("recurrent_gain", float("inf")),
    ("optimizer", "adagrad"), ("learning_rate", 0.0), ("learning_rate", float("nan")),
    ("clip_mode", "norm"),
])
def test_config_rejects_bad_values(field, value, monkeypatch):
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("trained despite a bad config"))
    with pytest.raises(ConfigError, match=rf"\b{field}="):
        dataclasses.replace(TINY, **{field: value})


@pytest.mark.parametrize("mode", ["clipnorm", "global_clipnorm", "clipvalue"])
def test_config_rejects_non_positive_threshold(mode):
    with pytest.raises(ConfigError, match=r"clip_threshold=0"):
        dataclasses.replace(TINY, clip_mode=mode, clip_threshold=0)
    dataclasses.replace(TINY, clip_mode="none", clip_threshold=0)  # ignored without clipping


def test_config_round_trips_through_dict():
    d = TINY.to_dict()
    assert d["conv_filters"] == [4, 8]
    assert TrainConfig(**d) == TINY


def test_record_has_every_key(runs):
    r = runs["a"]
    assert set(r) == RECORD_KEYS
    assert set(r["steps"]) == STEP_KEYS
    assert r["config"] == TINY.to_dict()
    assert r["diverged"] is False and r["diverged_step"] is None
    assert r["indexed"] is True and runs["general"]["indexed"] is False
    assert r["learning_rate"] == TINY.learning_rate
    assert len(r["epoch_train_acc"]) == len(r["epoch_val_acc"]) == TINY.epochs
    assert all(0.0 <= a <= 1.0 for a in r["epoch_train_acc"] + r["epoch_val_acc"])
    assert 0.0 <= r["test_acc"] <= 1.0 and r["test_acc"] == r["test_acc_last_good"]
    assert 0.0 < r["chance"] <= 1.0
    assert r["wall_time"] > 0 and r["seconds_per_epoch"] > 0


def test_record_chance_matches_test_labels(runs, data_dir):
    labels = TINY.task_data(data_dir).test.labels
    assert runs["a"]["chance"] == np.bincount(labels).max() / len(labels)


def test_per_step_lists(runs):
    steps = runs["a"]["steps"]
    assert {len(v) for v in steps.values()} == {STEPS_PER_RUN}
    for key in STEP_KEYS:
        values = np.asarray(steps[key])
        assert np.isfinite(values).all(), key
        assert (values > 0).all(), key
    # layer norms add up (in quadrature) to the global norm
    layers = np.sqrt(sum(np.square(steps[f"{g}_grad_norm"]) for g in engine.LAYER_GROUPS))
    np.testing.assert_allclose(layers, steps["grad_norm"], rtol=1e-4)
    assert steps["loss"][-1] != steps["loss"][0]  # the model is actually updated


def test_same_seed_same_numbers(runs):
    a, b = runs["a"], runs["b"]
    assert a["steps"]["loss"] == b["steps"]["loss"]
    assert a["steps"]["grad_norm"] == b["steps"]["grad_norm"]
    assert a["test_acc"] == b["test_acc"] and a["epoch_val_acc"] == b["epoch_val_acc"]


def test_different_seed_different_numbers(runs):
    assert runs["seed1"]["steps"]["loss"] != runs["a"]["steps"]["loss"]
    assert runs["seed1"]["steps"]["grad_norm"] != runs["a"]["steps"]["grad_norm"]


def test_fast_and_general_paths_agree(runs):
    fast, general = runs["a"]["steps"], runs["general"]["steps"]
    for key in ("loss", "grad_norm", "rnn_grad_norm", "encoder_grad_norm", "max_abs_state"):
        np.testing.assert_allclose(general[key], fast[key], rtol=2e-4, atol=1e-6, err_msg=key)
    assert runs["general"]["epoch_val_acc"] == runs["a"]["epoch_val_acc"]


def assert_diverged_cleanly(r):
    assert r["diverged"] is True
    assert isinstance(r["diverged_step"], int)
    assert math.isnan(r["test_acc"])
    assert 0.0 <= r["test_acc_last_good"] <= 1.0
    assert {len(v) for v in r["steps"].values()} == {len(r["steps"]["loss"])}


def test_nan_frame_marks_the_run_diverged(data_dir):
    task = TINY.task_data(data_dir)
    frames = task.train.frames().copy()
    frames[:, 0, 4, 4, 0] = np.nan  # every training sequence: the first step already fails
    train = data.SequenceSet(labels=task.train.labels, num_classes=task.num_classes, dense=frames)
    bad = dataclasses.replace(task, train=train)
    r = training.train(TINY, task=bad)
    assert_diverged_cleanly(r)
    assert r["diverged_step"] == 0
    assert len(r["steps"]["loss"]) == 1
    # (max pooling may swallow the NaN in the forward pass; the gradient still carries it)
    assert not (math.isfinite(r["steps"]["loss"][0]) and math.isfinite(r["steps"]["grad_norm"][0]))
    assert r["epoch_train_acc"] == [] and r["epoch_val_acc"] == []
    assert r["indexed"] is False


def test_exploding_relu_irnn_diverges_without_raising(data_dir):
    cfg = dataclasses.replace(TINY, activation="relu", recurrent_initializer="identity", recurrent_gain=3.0,
                              optimizer="sgd", learning_rate=1e3, epochs=3, seq_len=6, lag=None)
    r = training.train(cfg, data_dir=data_dir)
    assert_diverged_cleanly(r)
    assert 0 < r["diverged_step"] < 3 * 2
    bad = r["steps"]["loss"][r["diverged_step"]], r["steps"]["grad_norm"][r["diverged_step"]]
    assert not all(map(math.isfinite, bad))
    assert all(map(math.isfinite, r["steps"]["loss"][: r["diverged_step"]]))


def test_runs_reuse_model_and_traces_and_match_fresh_runs(data_dir):
    """A run that differs only in seed and learning rate re-initialises the previous run's model
    instead of rebuilding it, retraces nothing (not even for a partial last batch), and gives
    exactly the numbers of a fresh run; validation and test share one traced evaluation step."""
    cfg = dataclasses.replace(TINY, n_train=12)  # batches of 8 and 4
    later = dataclasses.replace(cfg, seed=3, learning_rate=3e-3, recurrent_initializer="identity")
    engine._ready.clear()
    fresh = training.train(later, data_dir=data_dir)
    engine._ready.clear()
    training.train(cfg, data_dir=data_dir)
    (parts,) = engine._ready.values()
    trainer, evaluator = parts.steppers["train"], parts.steppers["val"]
    assert evaluator is parts.steppers["test"]
    counts = trainer.tracing_count(), evaluator.tracing_count()
    assert counts == (2, 1)  # gradient step + update; one evaluation step
    reused = training.train(later, data_dir=data_dir)
    assert list(engine._ready.values()) == [parts]
    assert (trainer.tracing_count(), evaluator.tracing_count()) == counts
    assert reused["steps"] == fresh["steps"]
    assert reused["epoch_val_acc"] == fresh["epoch_val_acc"] and reused["test_acc"] == fresh["test_acc"]
    assert reused["steps"]["loss"] != runs_loss(cfg, data_dir)


def runs_loss(cfg, data_dir):
    return training.train(cfg, data_dir=data_dir)["steps"]["loss"]


def test_a_different_layout_gets_its_own_model(data_dir):
    engine._ready.clear()
    training.train(TINY, data_dir=data_dir)
    training.train(dataclasses.replace(TINY, units=8), data_dir=data_dir)
    assert len(engine._ready) == 2
    assert len({id(p.model) for p in engine._ready.values()}) == 2
