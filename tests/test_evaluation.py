"""Cheaper checks, same decisions: a check evaluates forward only, from the last state
(:func:`rnnbook.recurrence.final_state`), with the CNN and input projections once per distinct image
of the whole validation set. Its logits are the training forward pass's within float rounding, and
on a set of runs to a criterion every check's accuracy, every outcome and update of success equal
those of the reference evaluation (the training forward pass, batches of 256)."""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

import rnnbook  # noqa: F401  (quiets TensorFlow first)
from rnnbook import data, engine, recurrence, synthetic, training

CELLS = ("simple_rnn", "gru", "lstm")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("seq_len", [5, 9, 16])  # below, at and above the unroll factor, ragged and not
def test_final_state_is_the_last_training_state(cell, seq_len):
    layer = {"simple_rnn": keras.layers.SimpleRNN, "gru": keras.layers.GRU, "lstm": keras.layers.LSTM}[cell](8)
    layer.build((None, seq_len, 5))
    rng = np.random.default_rng(seq_len)
    for w in layer.weights:  # biases off zero too
        w.assign(w + 0.2 * rng.standard_normal(w.shape).astype("float32"))
    gates = layer.cell.kernel.shape[-1]
    bank = tf.constant(rng.normal(size=(7, gates)).astype("float32"))
    index = tf.constant(rng.integers(0, 7, size=(seq_len, 6)).astype("int32"))
    projected = tf.gather(bank, index)
    states = recurrence.cell_states(layer.cell, projected)
    np.testing.assert_allclose(recurrence.final_state(layer.cell, projected), states[-1], rtol=0, atol=1e-6)
    np.testing.assert_allclose(recurrence.final_state(layer.cell, bank, index), states[-1], rtol=0, atol=1e-6)


def _reference(monkeypatch):
    monkeypatch.setattr(engine.Stepper, "forward_only", False)


@pytest.mark.parametrize("cell", CELLS)
def test_check_logits_are_the_training_forward_passes(cell, monkeypatch):
    config = training.TrainConfig(seq_len=12, lag=11, n_train=32, n_val=300, n_test=8, units=16, cell=cell,
                                  conv_filters=(4, 8), batch_size=32, seed=2)
    task = config.task_data(data_dir=None)
    parts = engine.prepare_run(config, task)
    stream = data.SequenceStream(task, 0)
    for _ in range(3):
        parts.steppers["train"].step(*stream.next(32))
    evaluator = parts.steppers["val"]
    fast = evaluator.logits(task.val.index, task.val.bank)
    fast_acc = evaluator.accuracy(task.val)
    _reference(monkeypatch)
    reference = np.concatenate([evaluator.logits(task.val.index[i:i + 256], task.val.bank) for i in range(0, 300, 256)])
    np.testing.assert_allclose(fast, reference, rtol=0, atol=1e-5 * np.abs(reference).max())
    assert (fast.argmax(1) == reference.argmax(1)).all()
    assert fast_acc == evaluator.accuracy(task.val, batch_size=256)


@pytest.mark.parametrize("task", synthetic.TASKS)
def test_synthetic_checks_are_the_training_forward_passes(task, monkeypatch):
    config = training.TrainConfig(task=task, seq_len=20, units=8, cell="lstm" if task == "temporal_order" else "gru",
                                  max_updates=2, check_every=1, n_val=64, n_test=8, batch_size=16)
    parts = engine.prepare_run(config, config.task_data())
    x, y = config.task_data().held_out(0, 64, "val")
    fast = parts.steppers["val"].evaluate(x, y)
    _reference(monkeypatch)
    reference = parts.steppers["val"].evaluate(x, y, batch_size=16)
    assert fast["accuracy"] == reference["accuracy"]
    assert fast["loss"] == pytest.approx(reference["loss"], rel=1e-5)


#: Runs to a criterion with every kind of ending: success early and late, censored, diverged.
BASE = training.TrainConfig(seq_len=3, lag=2, n_train=32, n_val=400, n_test=64, units=16, conv_filters=(4, 8),
                            batch_size=32, max_updates=40, check_every=4, learning_rate=5e-3)
DECISIONS = [dataclasses.replace(BASE, cell=cell, target_acc=target, seed=seed)
             for cell, targets in (("simple_rnn", (0.2, 0.45)), ("gru", (0.15, 0.5)), ("lstm", (0.18, 0.5)))
             for seed, target in enumerate(targets)]
DECISIONS.append(dataclasses.replace(BASE, optimizer="sgd", learning_rate=1e4, activation="relu",
                                     recurrent_initializer="identity", target_acc=1.0))
KEPT = ("outcome", "updates", "updates_to_success", "check_updates", "check_val_acc", "failure_reason", "diverged_step",
        "test_acc_last_good")


@pytest.mark.slow
def test_the_decisions_of_a_set_of_runs_do_not_change(monkeypatch):
    fast = [training.train(c, data_dir=None) for c in DECISIONS]
    _reference(monkeypatch)
    reference = [training.train(c, data_dir=None) for c in DECISIONS]
    outcomes = [r["outcome"] for r in reference]
    assert {"success", "censored", "diverged"} <= set(outcomes), outcomes
    assert len({r["updates"] for r in reference if r["outcome"] == "success"}) > 1, "successes all at one check"
    for config, a, b in zip(DECISIONS, fast, reference):
        assert {k: a.get(k) for k in KEPT} == {k: b.get(k) for k in KEPT}, config
