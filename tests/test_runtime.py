"""Seeding: a run is repeatable without resetting TensorFlow's global seed (which clears its
kernel caches and made every run's first step re-instantiate its graph)."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

import rnnbook  # noqa: F401  (quiets TensorFlow first)
from rnnbook import engine, runtime, training

BASE = training.TrainConfig(seq_len=4, lag=2, n_train=64, n_val=32, n_test=32, epochs=1, units=8, batch_size=32,
                            conv_filters=(4,))


def _numbers(record):
    return record["steps"], record["test_acc"], record["epoch_val_acc"]


def test_a_run_does_not_touch_tensorflows_global_seed(monkeypatch):
    runtime.configure()

    def refuse(seed):
        raise AssertionError(f"tf.random.set_seed({seed}) called during a run: it clears TensorFlow's kernel caches")

    monkeypatch.setattr(tf.random, "set_seed", refuse)
    for seed in (0, 1):  # a fresh model, then the reused one
        training.train(dataclasses.replace(BASE, seed=seed), data_dir=None)
        runtime.seed_everything(seed)


@pytest.mark.parametrize("cell", ["simple_rnn", "gru"])
def test_a_runs_numbers_do_not_depend_on_the_runs_before_it(cell):
    """If any op drew from TensorFlow's global random state, the second run of ``first`` would
    continue that state where the other runs left it, and its numbers would change."""
    first = dataclasses.replace(BASE, cell=cell, seed=3)
    engine._ready.clear()
    alone = training.train(first, data_dir=None)
    training.train(dataclasses.replace(first, seed=4), data_dir=None)
    training.train(dataclasses.replace(first, seed=5, activation="relu"), data_dir=None)
    again = training.train(first, data_dir=None)
    for a, b in zip(_numbers(alone), _numbers(again)):
        np.testing.assert_array_equal(np.asarray(a if not isinstance(a, dict) else list(a.values()), float),
                                      np.asarray(b if not isinstance(b, dict) else list(b.values()), float))
