"""The chapter "The classic experiments, rerun" (rnnbook.experiments.reproductions): the engine path
for the synthetic vector tasks (outcomes, fresh batches, determinism, the regression rule), the
verdict functions on tables with a known answer, the summary table, figures that draw what they
are given, and the chapter executed with the quick preset."""
from __future__ import annotations

import dataclasses
import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from conftest import chapter_defaults, quick_params  # noqa: E402

import rnnbook  # noqa: E402,F401  (quiets TensorFlow first)
from rnnbook import synthetic, training  # noqa: E402
from rnnbook.experiments import reproductions as repro  # noqa: E402
from rnnbook.experiments.common import ExperimentError  # noqa: E402
from rnnbook.training import ConfigError, TrainConfig  # noqa: E402

from conftest import ROOT  # noqa: E402

TINY = dict(seq_len=10, units=8, batch_size=8, n_val=40, n_test=40, optimizer="sgd", momentum=0.0,
            learning_rate=0.01, clip_mode="global_clipnorm", clip_threshold=1.0, input_std=0.1,
            max_updates=4, check_every=2, target_acc=0.99)


# ------------------------------------------------------------------ the engine path
@pytest.mark.parametrize("task", ["adding", "temporal_order"])
def test_tiny_run_is_censored_with_the_criterion_record_and_is_deterministic(task):
    cfg = TrainConfig(task=task, **TINY)
    first, again = training.train(cfg), training.train(cfg)
    assert first["outcome"] == "censored" and first["updates"] == 4 and first["check_updates"] == [2, 4]
    assert first["sequences_seen"] == 32 and len(first["steps"]["loss"]) == 4
    assert first["steps"]["encoder_grad_norm"] == [0.0] * 4  # no CNN: the encoder passes frames through
    assert len(first["check_val_loss"]) == 2 and all(np.isfinite(first["check_val_loss"]))
    assert first["steps"] == again["steps"] and first["test_loss"] == again["test_loss"]
    other = training.train(dataclasses.replace(cfg, seed=1))
    assert other["steps"]["loss"] != first["steps"]["loss"]
    chance = synthetic.ADDING_BASELINE_ACCURACY if task == "adding" else 0.25
    assert first["chance"] == pytest.approx(chance)


def test_every_update_sees_a_fresh_batch(monkeypatch):
    seen = []
    real = synthetic.SyntheticTask.batch

    def spy(self, seed, index, batch_size, stream="train"):
        if stream == "train":
            seen.append((seed, index))
        return real(self, seed, index, batch_size, stream)

    monkeypatch.setattr(synthetic.SyntheticTask, "batch", spy)
    training.train(TrainConfig(task="adding", seed=3, **TINY))
    assert seen == [(3, 0), (3, 1), (3, 2), (3, 3)]


def test_success_at_the_first_check_and_divergence_are_recorded():
    easy = training.train(TrainConfig(task="temporal_order", **dict(TINY, target_acc=0.01)))
    assert easy["outcome"] == "success" and easy["updates_to_success"] == 2
    wild = training.train(TrainConfig(task="adding", activation="relu", recurrent_initializer="identity",
                                      **dict(TINY, learning_rate=1e4, clip_mode="none", input_std=10.0,
                                             max_updates=20)))
    assert wild["outcome"] == "diverged" and wild["failure_reason"] and math.isnan(wild["test_acc"])


def test_regression_evaluation_uses_pascanus_rule_and_mse():
    cfg = TrainConfig(task="adding", **TINY)
    task = cfg.task_data()
    model = cfg.model(task.num_classes)
    model.head.kernel.assign(np.zeros(model.head.kernel.shape, np.float32))
    model.head.bias.assign(np.ones(1, np.float32))  # predicts 1 for every sequence
    stepper = training.steppers_for(model, None, task)["val"]
    x, y = task.held_out(0, 4000, "val")
    out = stepper.evaluate(x, y)
    assert out["loss"] == pytest.approx(synthetic.always_one_mse(y), rel=1e-5)
    assert out["accuracy"] == pytest.approx(1 - synthetic.adding_error_rate(np.ones(len(y)), y))


def test_vector_model_input_kernel_is_normal_with_the_given_std():
    model = TrainConfig(task="temporal_order", **dict(TINY, units=64, input_std=0.01)).model(4)
    kernel = model.rnn.cell.kernel.numpy()
    assert kernel.shape == (6, 64) and kernel.std() == pytest.approx(0.01, rel=0.15)
    assert model.head.kernel.shape == (64, 4)


@pytest.mark.parametrize("changes, message", [
    (dict(task="adding", seq_len=1), r"seq_len=1 must be an integer >= 2"),
    (dict(task="temporal_order", seq_len=9), r"seq_len=9 must be an integer >= 10"),
    (dict(task="adding", max_updates=None), r"set max_updates"),
    (dict(task="adding", input_std=-1.0), r"input_std=-1.0 must be a positive number"),
    (dict(task="copying"), r"copying"),
])
def test_bad_synthetic_configs_name_the_problem(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**dict(TINY, **changes))


# ------------------------------------------------------------------ verdicts
@pytest.mark.parametrize("args, kwargs, verdict, words", [
    ((3, 3), {}, "reproduced", "3 of 3"),
    ((1, 3), {}, "partly", "1 of 3"),
    ((0, 3), {}, "not at this budget", "censored"),
    ((0, 3), {"budget_reached": True}, "contradicted", "paper's budget"),
    ((0, 3), {"diverged": 2}, "contradicted", "2 diverged"),
    ((3, 3), {"paper_verified": False}, "not verified", "could not be checked"),
])
def test_verdict_solves_every_branch(args, kwargs, verdict, words):
    got, why = repro.verdict_solves(*args, **kwargs)
    assert got == verdict and words in why


@pytest.mark.parametrize("clipped, unclipped, kwargs, verdict", [
    ((0, 4), (0, 4), {}, "not at this budget"),
    ((4, 4), (0, 4), {}, "reproduced"),      # Fisher one-sided p = 1/70
    ((0, 4), (4, 4), {}, "contradicted"),
    ((3, 4), (1, 4), {}, "partly"),          # more, but p = 0.24
    ((1, 4), (2, 4), {}, "not at this budget"),
    ((4, 4), (0, 4), {"paper_verified": False}, "not verified"),
])
def test_verdict_clipping_every_branch(clipped, unclipped, kwargs, verdict):
    assert repro.verdict_clipping(clipped, unclipped, **kwargs)[0] == verdict


def test_verdict_value_and_bad_input():
    assert repro.verdict_value(0.1665, 1 / 6, 0.01)[0] == "reproduced"
    assert repro.verdict_value(0.1767, 1 / 6, 0.005)[0] == "contradicted"
    with pytest.raises(ExperimentError, match="positive tolerance"):
        repro.verdict_value(0.1, 0.1, 0.0)
    with pytest.raises(ExperimentError, match="0 <= successes <= runs"):
        repro.verdict_solves(4, 3)


@pytest.mark.parametrize("k, n, words", [(0, 6, "none of its 6"), (4, 6, "4 of its 6"), (0, 0, "not trained")])
def test_tanh_text_every_branch(k, n, words):
    assert words in repro.tanh_text(k, n)


def test_bar_threshold_is_three_standard_errors_below_one_sixth():
    assert repro.bar_threshold(700) == pytest.approx(1 / 6 - 3 * math.sqrt(7 / 180 / 700))


def _params(**changes):
    p = dict(repro_seeds=[0, 1, 2], repro_adding_lens=[20, 40], repro_adding_configs=["tanh-orthogonal", "lstm"],
             repro_order_lens=[20, 40], repro_order_configs=["relu-identity", "lstm"], repro_units=8,
             repro_batch_size=20, repro_learning_rate=0.01, repro_clip=1.0, repro_input_std=0.1,
             repro_max_updates=100, repro_check_every=50, repro_n_val=100, repro_n_test=100)
    return {**p, **changes}


def test_plan_counts_every_run_with_its_seed_and_arm():
    runs = repro.plan(_params())
    assert len(runs) == 3 * (2 * 2 + 2 * (2 + 2))
    order = [c for c in runs if c.task == "temporal_order"]
    assert sum(c.clip_mode == "none" for c in order) == 2 * 3  # MSGD: tanh unclipped, each T and seed
    assert {c.seed for c in runs} == {0, 1, 2} and all(c.max_updates == 100 for c in runs)


@pytest.mark.parametrize("changes, message", [
    (dict(repro_adding_lens=[1]), "adding length 1"),
    (dict(repro_order_lens=[5]), "temporal-order length 5"),
    (dict(repro_seeds=[]), "repro_seeds must hold"),
    (dict(repro_order_configs=["tanh-bogus"]), "tanh-bogus"),
])
def test_pick_names_the_bad_parameter(changes, message):
    with pytest.raises(ExperimentError, match=message):
        repro.pick(_params(**changes))


def _fake_results(order_successes, lstm_successes=0, adding_successes=0, bar=1 / 6):
    p = _params()
    arms = [a for a, _ in repro.PASCANU_ARMS] + ["ReLU + identity (IRNN), SGD + clipping", "LSTM, SGD + clipping"]
    wins = dict(zip(arms, [*order_successes, 0, lstm_successes]))
    order = pd.DataFrame([{"arm": a, "T": t, "runs": 4, "successes": wins[a] if t == 40 else 0, "diverged": 0}
                          for t in (20, 40) for a in arms])
    adding = pd.DataFrame([{"configuration": c, "T": t, "runs": 3, "successes": adding_successes,
                            "below the bar": 1, "median test MSE": 0.1} for t in (20, 40)
                           for c in ("tanh + orthogonal", "LSTM")])
    return {"params": p, "order_table": order, "adding_table": adding, "bar_measured": bar}


def test_summary_table_rows_and_verdicts_on_known_tables():
    table = repro.summary_table(_fake_results(order_successes=(0, 4), lstm_successes=0))
    by = table.set_index(["task", "configuration"])["verdict"]
    assert by["adding", "predict 1 always"] == "reproduced"
    assert by["adding", "tanh + orthogonal"] == by["adding", "LSTM"] == "not verified"
    assert by["temporal order", "LSTM"] == "not at this budget"
    assert by["temporal order", "tanh, SGD with vs without clipping"] == "reproduced"  # 4 of 4 against 0 of 4: p = 1/70
    assert set(table["verdict"]) <= set(repro.VERDICTS)
    assert (table["T (here)"] == [40, 40, 40, 40, 40, 40]).all()
    worse = repro.summary_table(_fake_results(order_successes=(4, 0), lstm_successes=4, bar=0.2))
    by = worse.set_index(["task", "configuration"])["verdict"]
    assert by["temporal order", "tanh, SGD with vs without clipping"] == "contradicted"
    assert by["adding", "predict 1 always"] == "contradicted" and by["temporal order", "LSTM"] == "reproduced"


# ------------------------------------------------------------------ figures
def test_fig_adding_draws_one_line_per_run_and_the_bar_per_panel():
    frame = pd.DataFrame([{"label": lab, "seq_len": t, "seed": s, "update": u, "val_loss": 0.2 / u, "val_acc": 0.3}
                          for lab in ("a", "b", "c") for t in (20, 40) for s in (0, 1) for u in (1, 2, 3)])
    fig = repro.fig_adding(frame)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        lines = ax.get_lines()
        assert len(lines) == 3 * 2 + 1
        assert sum(np.allclose(line.get_ydata(), 1 / 6) for line in lines) == 1


def test_fig_temporal_order_draws_one_errorbar_series_per_arm():
    table = pd.DataFrame([{"arm": a, "T": t, "success_rate": 0.5, "ci_lo": 0.2, "ci_hi": 0.8}
                          for a in ("x", "y", "z", "w") for t in (20, 40, 80)])
    fig = repro.fig_temporal_order(table)
    ax = fig.axes[0]
    assert len(ax.containers) == 4
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["x", "y", "z", "w"]


# ------------------------------------------------------------------ the chapter, quick preset




def test_chapter_declares_exactly_the_module_parameters():
    assert set(chapter_defaults("reproductions")) == set(repro.PARAMS)


@pytest.mark.slow
def test_quick_chapter_executes_and_glues_every_value(quick_book):
    """The chapter as the quick build executed it: every glue key the prose pastes is glued."""
    from conftest import assert_chapter_glue, glued_value

    executed = quick_book.notebooks(["chapters/reproductions"])["chapters/reproductions"]
    values = assert_chapter_glue(executed, "chapters/reproductions",
                                 ["fig-adding", "fig-temporal-order", "tbl-repro-summary", "tbl-repro-adding"])
    assert "reproduced" in glued_value(values["tbl-repro-summary"])[1]  # the 1/6 bar on 10,000 sequences
