"""Divergence, through the public API of :mod:`rnnbook.training`: a non-finite update is
skipped, weights that turn non-finite stop the run, and the restored weights are the last
good ones (their accuracy is recomputed independently or by a run that stops there)."""
import dataclasses
import math

import numpy as np
import pytest

import rnnbook  # noqa: F401  (quiets TensorFlow first)
from rnnbook import clipping, engine, training
from rnnbook.training import TrainConfig

# two batches of 8 per epoch; the test set is large enough that accuracies differ
TINY = TrainConfig(seq_len=6, n_train=16, n_val=8, n_test=32, epochs=1, batch_size=8, units=16,
                   conv_filters=(4, 8), optimizer="sgd", learning_rate=0.1)
STEPS_PER_EPOCH = 2


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("sequences")


def keras_accuracy(model, split) -> float:
    """Accuracy of ``model``'s weights computed by the plain Keras model on dense frames."""
    logits = np.asarray(model.keras_baseline()(split.frames()))
    return float(np.mean(logits.argmax(axis=1) == split.labels))


def test_a_non_finite_update_leaves_the_weights_unchanged(data_dir):
    task = TINY.task_data(data_dir)
    model = TINY.model(task.num_classes)
    optimizer = clipping.make_optimizer("adam", 1e-2)
    stepper = engine.Stepper(model, optimizer, indexed=False)
    frames, labels = task.train.frames()[:8].copy(), task.train.labels[:8]
    before = model.get_weights()

    poisoned = frames.copy()
    poisoned[3, 2] = np.inf  # one frame of one sequence
    stats = stepper.step(poisoned, labels)
    assert not (np.isfinite(stats["loss"]) and np.isfinite(stats["grad_norm"]))
    for w0, w1 in zip(before, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)
    assert int(optimizer.iterations) == 0  # Adam's moments and step count untouched too

    stats = stepper.step(frames, labels)  # a finite batch does move them
    assert np.isfinite(stats["loss"]) and int(optimizer.iterations) == 1
    assert any(not np.array_equal(w0, w1) for w0, w1 in zip(before, model.get_weights()))


def test_weights_that_turn_non_finite_stop_the_run_and_are_restored(data_dir):
    # 1e39 overflows float32 to inf: the step's loss and gradient are finite, its update is not
    cfg = dataclasses.replace(TINY, learning_rate=1e39, batch_size=16, epochs=2)
    r = training.train(cfg, data_dir=data_dir)
    assert r["diverged"] is True
    assert r["diverged_step"] == 1  # the step after the last one taken: the weights failed
    assert len(r["steps"]["loss"]) == 1
    assert math.isfinite(r["steps"]["loss"][0]) and math.isfinite(r["steps"]["grad_norm"][0])
    assert r["epoch_val_acc"] == [] and r["epoch_train_acc"] == []
    assert math.isnan(r["test_acc"])
    # the last good weights are the initial ones: rebuild them and score them with plain Keras
    task = cfg.task_data(data_dir)
    assert r["test_acc_last_good"] == keras_accuracy(cfg.model(task.num_classes), task.test)


def test_a_run_diverging_mid_epoch_restores_the_last_good_epoch(data_dir):
    """ReLU + identity with plain SGD at a large rate: finite for one epoch, then a step blows up
    after another step of the epoch was applied. The restored weights must be those after the
    last complete epoch, so the run's last good accuracy is that of a run stopped there."""
    # the He-uniform encoder's larger features make this setting blow up in its second epoch, after
    # one complete epoch (with Keras's default Glorot encoder it blows up within the first)
    cfg = dataclasses.replace(TINY, activation="relu", recurrent_initializer="identity", learning_rate=100.0,
                              epochs=3, encoder_init="he_uniform")
    long = training.train(cfg, data_dir=data_dir)
    d = long["diverged_step"]
    assert long["diverged"] and d is not None
    good_epochs, within = divmod(d, STEPS_PER_EPOCH)
    assert good_epochs >= 1 and within >= 1, f"diverged at step {d}: pick a rate that diverges mid-epoch"
    assert not math.isfinite(long["steps"]["loss"][d]) or not math.isfinite(long["steps"]["grad_norm"][d])

    short = training.train(dataclasses.replace(cfg, epochs=good_epochs), data_dir=data_dir)
    assert short["diverged"] is False
    assert short["steps"]["loss"] == long["steps"]["loss"][: good_epochs * STEPS_PER_EPOCH]
    assert long["epoch_val_acc"] == short["epoch_val_acc"]
    assert long["test_acc_last_good"] == short["test_acc"]
    assert math.isnan(long["test_acc"])
