"""The chapter "The classic experiments, rerun" (rnnbook.experiments.reproductions): the engine path
for the synthetic vector tasks (outcomes, fresh batches, determinism, the regression rule on the
mean's scale), Pascanu et al.'s basic tanh N(0, 0.1), the verdict functions on tables with a known
answer (comparisons through rnnbook.verdicts.decide), the generator check's label, the summary
table, figures that draw what they are given, and the chapter executed with the quick preset."""
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
from rnnbook import engine, synthetic, training, verdicts  # noqa: E402
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


def test_regression_evaluation_uses_pascanus_rule_and_mse_on_the_mean():
    """A known prediction gives the known error share: a model that predicts the expected target
    (0.5) for every sequence is right on the share computed from the mean's triangular density."""
    cfg = TrainConfig(task="adding", **TINY)
    task = cfg.task_data()
    model = cfg.model(task.num_classes)
    model.head.kernel.assign(np.zeros(model.head.kernel.shape, np.float32))
    model.head.bias.assign(np.full(1, synthetic.ADDING_CONSTANT, np.float32))  # predicts 0.5 for every sequence
    stepper = engine.steppers_for(model, None, task)["val"]
    x, y = task.held_out(0, 4000, "val")
    out = stepper.evaluate(x, y)
    assert out["loss"] == pytest.approx(synthetic.constant_mse(y), rel=1e-5)
    assert out["accuracy"] == pytest.approx(1 - synthetic.adding_error_rate(np.full(len(y), 0.5), y))
    p = synthetic.ADDING_BASELINE_ACCURACY  # 0.64: |Y - 0.5| <= 0.2
    assert abs(out["accuracy"] - p) < 5 * math.sqrt(p * (1 - p) / len(y))
    assert abs(out["loss"] - 1 / 24) < 5 * synthetic.ADDING_BASELINE_SD / math.sqrt(len(y))


def test_vector_model_input_kernel_is_normal_with_the_given_std():
    model = TrainConfig(task="temporal_order", **dict(TINY, units=64, input_std=0.01)).model(4)
    kernel = model.rnn.cell.kernel.numpy()
    assert kernel.shape == (6, 64) and kernel.std() == pytest.approx(0.01, rel=0.15)
    assert model.head.kernel.shape == (64, 4)


def test_basic_tanh_draws_every_weight_from_normal_0_1_and_zero_biases():
    """Pascanu et al.'s "basic tanh" (key tanh-normal): input, recurrent and output weights N(0, 0.1),
    biases zero; with 50 units the recurrent spectral radius is about 0.1 sqrt(50) = 0.71."""
    from rnnbook import models
    from rnnbook.experiments.common import parse_rnn_config

    spec = parse_rnn_config("tanh-normal")
    assert (spec.activation, spec.recurrent_initializer, spec.label) == ("tanh", "normal", "tanh + N(0, 0.1)")
    radii, weights = [], {"input": [], "recurrent": [], "head": []}
    for seed in range(4):
        model = spec.apply(TrainConfig(task="adding", **dict(TINY, units=50, input_std=0.1, seed=seed))).model(1)
        cell = model.rnn.cell
        for name, v in (("input", cell.kernel), ("recurrent", cell.recurrent_kernel), ("head", model.head.kernel)):
            weights[name].append(v.numpy().ravel())
        assert not cell.bias.numpy().any() and not model.head.bias.numpy().any()
        radii.append(np.abs(np.linalg.eigvals(cell.recurrent_kernel.numpy())).max())
    for name, w in weights.items():
        w = np.concatenate(w)
        assert abs(w.mean()) < 4 * 0.1 / math.sqrt(w.size), name
        assert w.std() == pytest.approx(0.1, rel=4 / math.sqrt(2 * w.size) + 0.02), name
    assert 0.6 < np.mean(radii) < 0.85
    # the Keras-default arm keeps its Glorot-uniform read-out; the same model reinitialised switches
    orth = TrainConfig(task="adding", **dict(TINY, units=50, seed=0)).model(1)
    limit = math.sqrt(6 / (50 + 1))
    assert np.abs(orth.head.kernel.numpy()).max() <= limit and orth.head.kernel.numpy().std() > 0.15
    models.reinitialize(orth, 0, "normal")
    assert orth.head.kernel.numpy().std() < 0.15 and np.abs(orth.head.kernel.numpy()).max() < 0.5
    gained = models.recurrent_initializer("normal", 2.0, seed=1)((400, 400))
    assert float(np.std(gained)) == pytest.approx(0.2, rel=0.02)  # the gain scales the standard deviation


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
    ((3, 3), {"paper": (5, 5)}, "reproduced", "3 of 3"),
    ((1, 3), {"paper": (5, 5)}, "partly", "1 of 3"),
    ((0, 3), {"paper": (20, 20)}, "not at this budget", "censored"),
    ((0, 3), {"paper": (20, 20), "budget_reached": True}, "contradicted", "paper's budget"),
    ((0, 3), {"paper": (20, 20), "hard_failures": 2}, "contradicted", "2 diverged or died"),
    ((0, 1), {"paper": (2, 2), "budget_reached": True}, "not at this budget", "no difference detected"),
    ((3, 3), {}, "not verified", "could not be checked"),
])
def test_verdict_solves_every_branch(args, kwargs, verdict, words):
    got, why = repro.verdict_solves(*args, **kwargs)
    assert got == verdict and words in why


P = verdicts.Point


@pytest.mark.parametrize("pts, kwargs, verdict, words", [
    ([P(8, 8, 0, 8)], {}, "reproduced", "supported"),
    ([P(0, 8, 8, 8)], {}, "contradicted", "contradicted"),                 # a significant difference the other way
    ([P(3, 8, 1, 8)], {}, "no difference detected", "No point differs"),   # more, but not significantly
    ([P(3, 3, 0, 3)], {}, "no difference detected", "p = 0.1"),            # 3 seeds cannot separate
    ([P(1, 8, 8, 8, improving_a=3)], {}, "not at this budget", "still improving"),  # the loser was cut short
    ([P(0, 4, 0, 4, improving_b=2)], {}, "not at this budget", "still improving"),
    ([P(8, 8, 0, 8)], {"premise": False, "premise_why": "clipping never acted"}, "not at this budget",
     "clipping never acted"),
])
def test_verdict_compare_reads_verdicts_decide(pts, kwargs, verdict, words):
    word, why, decided = repro.verdict_compare(pts, **kwargs)
    assert word == verdict == repro.FROM_DECIDE[decided.word] and words in why
    assert decided == verdicts.decide(pts, kwargs.get("premise", True), kwargs.get("premise_why", ""))


def test_generator_check_is_labelled_as_a_check_not_a_reproduction():
    word, why = repro.check_generator(1 / 24, 10_000)
    assert word == repro.CHECK_WORDS[0] == "generator check passed" and "not a reproduction" in why
    assert "0.1667" in why and "0.167 is that value rounded" in why  # Le et al.'s sum-scale bar, computed
    assert repro.check_generator(1 / 6, 10_000)[0] == "generator check failed"  # the sum's bar on the mean
    assert not set(repro.CHECK_WORDS) & set(repro.VERDICTS)
    with pytest.raises(ExperimentError, match="finite MSE"):
        repro.check_generator(math.nan, 10)
    with pytest.raises(ExperimentError, match="0 <= successes <= runs"):
        repro.verdict_solves(4, 3)


def test_bar_threshold_is_three_standard_errors_below_one_twentyfourth():
    assert repro.bar_threshold(700) == pytest.approx(1 / 24 - 3 * math.sqrt(7 / 180) / 4 / math.sqrt(700))


@pytest.mark.parametrize("n, words", [(3, "above the level 0.05"), (4, "below the level 0.05")])
def test_min_p_says_whether_the_seeds_can_separate_two_arms(n, words):
    assert words in repro.min_p_text(n)
    assert repro.min_p(3) == pytest.approx(0.1) and repro.min_p(4) == pytest.approx(2 / 70)


def _params(**changes):
    p = dict(repro_seeds=[0, 1, 2], repro_adding_lens=[20, 40], repro_adding_configs=["tanh-orthogonal", "lstm"],
             repro_order_lens=[20, 40], repro_order_configs=["relu-identity", "lstm"], repro_units=8,
             repro_batch_size=20, repro_learning_rate=0.01, repro_clip=1.0, repro_input_std=0.1,
             repro_max_updates=100, repro_check_every=50, repro_n_val=100, repro_n_test=100,
             rerun_samples=1, rerun_updates=50)
    return {**p, **changes}


def test_plan_counts_every_run_with_its_seed_and_arm():
    runs = repro.plan(_params())
    assert len(runs) == 3 * (2 * 2 + 2 * (2 + 2))
    order = [c for c in runs if c.task == "temporal_order"]
    msgd = [c for c in order if c.clip_mode == "none"]
    assert len(msgd) == 2 * 3  # MSGD: the basic tanh unclipped, each T and seed
    assert all((c.activation, c.recurrent_initializer, c.input_std) == ("tanh", "normal", 0.1) for c in msgd)
    assert sum(c.recurrent_initializer == "normal" for c in order) == 2 * 2 * 3  # MSGD and MSGD-C
    assert {c.seed for c in runs} == {0, 1, 2} and all(c.max_updates == 100 for c in runs)


@pytest.mark.parametrize("changes, message", [
    (dict(repro_adding_lens=[1]), "adding length 1"),
    (dict(repro_order_lens=[5]), "temporal-order length 5"),
    (dict(repro_seeds=[]), "repro_seeds must hold"),
    (dict(repro_order_configs=["tanh-bogus"]), "tanh-bogus"),
    (dict(repro_order_configs=["tanh-normal"]), "always trains it"),
])
def test_pick_names_the_bad_parameter(changes, message):
    with pytest.raises(ExperimentError, match=message):
        repro.pick(_params(**changes))


def _fake_results(order_successes, lstm_successes=0, adding_successes=0, bar=1 / 24, clip_peak=5.0, runs=6):
    p = _params()
    arms = [repro.pascanu_label(False), repro.pascanu_label(True), repro.order_label("relu-identity"),
            repro.order_label("lstm")]
    wins = dict(zip(arms, [*order_successes, 0, lstm_successes]))
    order = pd.DataFrame([{"arm": a, "T": t, "runs": runs, "successes": wins[a] if t == 40 else 0, "diverged or dead": 0,
                           "still improving": 0} for t in (20, 40) for a in arms])
    adding = pd.DataFrame([{"configuration": c, "T": t, "runs": 3, "successes": adding_successes,
                            "below the bar": 1, "median test MSE": 0.03} for t in (20, 40)
                           for c in ("tanh + orthogonal", "LSTM")])
    return {"params": p, "order_table": order, "adding_table": adding, "bar_measured": bar, "clip_peak": clip_peak}


def test_summary_table_rows_and_verdicts_on_known_tables():
    table = repro.summary_table(_fake_results(order_successes=(0, 6), lstm_successes=0))
    assert table["task"].iloc[0] == repro.CHECK_TASK and table["verdict"].iloc[0] == "generator check passed"
    by = table.set_index(["task", "configuration"])["verdict"]
    assert by["adding", "tanh + orthogonal"] == by["adding", "LSTM"] == "not verified"
    assert by["temporal order", "LSTM"] == "not at this budget"
    clip = "basic tanh, SGD with vs without clipping"
    assert by["temporal order", clip] == "reproduced"  # 6 of 6 against 0 of 6, Holm over two T: p = 0.0043
    assert set(table["verdict"].iloc[1:]) <= set(repro.VERDICTS)
    assert (table["T (here)"] == [40] * 6).all()
    worse = repro.summary_table(_fake_results(order_successes=(6, 0), lstm_successes=6, bar=1 / 6))
    by = worse.set_index(["task", "configuration"])["verdict"]
    assert by["temporal order", clip] == "contradicted"
    assert by[repro.CHECK_TASK, "predict 0.5 always (1 on the sum scale)"] == "generator check failed"
    assert by["temporal order", "LSTM"] == "reproduced"
    tie = repro.summary_table(_fake_results(order_successes=(2, 4))).set_index(["task", "configuration"])["verdict"]
    assert tie["temporal order", clip] == "no difference detected"  # more, not significantly: never "contradicted"
    idle = repro.summary_table(_fake_results(order_successes=(0, 6), clip_peak=0.5))
    row = idle.set_index(["task", "configuration"]).loc[("temporal order", clip)]
    assert row["verdict"] == "not at this budget" and "clipping never acted" in row["why"]


def test_page_values_tally_leaves_the_generator_check_out():
    res = _fake_results(order_successes=(0, 6))
    res["summary"] = repro.summary_table(res)
    res.update(adding=pd.DataFrame({"censored": [True]}), order=pd.DataFrame({"censored": [True]}),
               budget={k: 1 for k in ("n_runs", "n_censored", "n_success", "n_hard", "n_improving", "updates",
                                      "sequences")}, train_seconds=60.0, bar_threshold=0.04, n_shipped=0,
               order_table=res["order_table"].assign(success_rate=0.5, ci_lo=0.1, ci_hi=0.9))
    values = repro.page_values(res)
    assert "generator" not in values["repro_verdicts"] and "reproduced: 1" in values["repro_verdicts"]
    assert values["repro_check_word"] == "generator check passed"
    assert values["repro_bar"] == pytest.approx(1 / 24) and values["repro_bar_sum"] == pytest.approx(1 / 6)
    assert values["repro_scale_factor"] == 4 and values["repro_chance_adding"] == pytest.approx(0.64)
    assert "does not train both" in values["repro_init_adding_verdict"]
    assert values["repro_verdict_temporal_order_lstm"] == "not at this budget"
    assert not [k for k in values if k.startswith("repro_verdict_") and "generator" in k]  # repro_check_word


# ------------------------------------------------------------------ figures
def test_fig_adding_draws_one_line_per_run_and_the_bar_per_panel():
    frame = pd.DataFrame([{"label": lab, "seq_len": t, "seed": s, "update": u, "val_loss": 0.2 / u, "val_acc": 0.3}
                          for lab in ("a", "b", "c") for t in (20, 40) for s in (0, 1) for u in (1, 2, 3)])
    fig = repro.fig_adding(frame)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        lines = ax.get_lines()
        assert len(lines) == 3 * 2 + 1
        assert sum(np.allclose(line.get_ydata(), 1 / 24) for line in lines) == 1


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
    summary = glued_value(values["tbl-repro-summary"])[1]
    assert "generator check passed" in summary and "check of this book" in summary  # the 1/24 bar on 10,000 sequences
