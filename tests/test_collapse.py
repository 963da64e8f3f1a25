"""Collapses and the long-lag clipping comparison (issue 22): the collapse rule on planted runs
(one that collapses, ones that do not), the pilot's average norm, the log-rank points of the
verdict rule, and the relu chapter's comparison (lags, thresholds, tables, verdicts, figure, page
values, dry-run plan) on planted runs, without training."""
import dataclasses
import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from rnnbook import collapse as rule, verdicts as V  # noqa: E402
from rnnbook.experiments.common import role_label  # noqa: E402
from rnnbook.experiments.relu import collapse as study_mod  # noqa: E402
from rnnbook.training import TrainConfig  # noqa: E402
from rnnbook.verdicts import Point, decide  # noqa: E402

TANH, IRNN = role_label("tanh"), role_label("irnn")


def record(acc, norms=None, medians=None, outcome="censored", every=25, chance=0.1, n_val=2000, **extra):
    """A compact run record with one check every ``every`` updates."""
    ends = [every * (i + 1) for i in range(len(acc))]
    return {"check_updates": ends, "check_val_acc": list(acc), "check_grad_norm_max": list(norms or [1.0] * len(acc)),
            "check_grad_norm_median": list(medians or [0.5] * len(acc)), "chance": chance, "outcome": outcome,
            "config": {"n_val": n_val, "check_every": every}, "updates": ends[-1] if ends else 0,
            "diverged": outcome == "diverged", **extra}


# ----------------------------------------------------------------------------- the rule


def test_a_run_that_learns_and_falls_back_collapses_with_the_norm_of_that_interval():
    c = rule.collapse(record([0.1, 0.45, 0.78, 0.74, 0.30, 0.36], norms=[1, 1.5, 2, 3, 55, 4]))
    assert c.collapsed and c.how == "accuracy fell"
    assert (c.update, c.grad_norm, c.best, c.accuracy) == (125, 55.0, 0.78, 0.30)
    assert c.drop == pytest.approx(0.48)


def test_a_fall_of_the_stated_amount_or_less_is_no_collapse():
    c = rule.collapse(record([0.1, 0.5, 0.8, 0.6, 0.79]))  # 0.8 - 0.6 is 0.2 (not 0.20000000000000007)
    assert not c.collapsed and c.update is None and c.how == ""
    assert c.drop == pytest.approx(0.2) and c.best == 0.8
    assert rule.collapse(record([0.1, 0.5, 0.8, 0.6]), drop=0.1).collapsed  # the drop is a parameter


def test_a_run_that_never_beat_chance_cannot_collapse():
    # chance 0.1 on 16 validation sequences: the bar is 0.1 + 3 * sqrt(0.09 / 16) = 0.325
    c = rule.collapse(record([0.1, 0.31, 0.05], n_val=16))
    assert not c.collapsed and c.drop == pytest.approx(0.26)
    assert rule.collapse(record([0.1, 0.40, 0.05], n_val=16)).collapsed


def test_non_finite_checks_are_skipped():
    c = rule.collapse(record([0.1, 0.8, math.nan, 0.5]))
    assert c.collapsed and c.update == 100


def test_a_run_that_diverged_after_learning_collapsed_where_it_diverged():
    learned = record([0.2, 0.6, 0.7], norms=[1, 2, 3, math.inf], outcome="diverged", diverged_step=83)
    c = rule.collapse(learned)
    assert c.collapsed and c.how == "diverged" and c.update == 83 and c.grad_norm == math.inf
    assert rule.collapse(dict(learned, diverged_step=None, updates=90)).update == 90
    at_chance = record([0.1, 0.11], outcome="diverged", diverged_step=40)
    assert not rule.collapse(at_chance).collapsed


def test_a_full_record_is_read_through_its_per_update_logs():
    full = {"check_updates": [2, 4], "check_val_acc": [0.8, 0.3], "chance": 0.1, "outcome": "censored",
            "config": {"n_val": 2000}, "steps": {"grad_norm": [1.0, 2.0, 7.0, 3.0], "max_abs_state": [1.0] * 4,
                                                 "rnn_grad_norm": [1.0] * 4}}
    c = rule.collapse(full)
    assert c.collapsed and c.update == 4 and c.grad_norm == 7.0
    assert rule.pilot_norm([full], 2) == 1.5  # the median of the first interval


def test_the_pilot_average_is_over_the_first_intervals_of_every_run():
    runs = [record([0.1] * 3, medians=[1.0, 2.0, 90.0]), record([0.1], medians=[3.0], every=300)]
    assert rule.pilot_norm(runs, 50) == 2.0  # 1, 2 and the second run's first (and only) interval
    assert math.isnan(rule.pilot_norm([], 50))
    assert math.isnan(rule.pilot_norm([record([0.1], medians=[math.nan])], 50))


# ----------------------------------------------------------------------------- the verdict rule


def test_logrank_favours_the_arm_that_succeeds_sooner():
    fast, slow = ([100, 150, 200], [True] * 3), ([400, 500, 500], [True, False, False])
    assert V.logrank_favours(*fast, *slow) == 1
    assert V.logrank_favours(*slow, *fast) == -1
    assert V.logrank_favours([500, 500], [False, False], [500], [False]) == 0


def test_points_with_their_own_test_decide_in_their_own_direction():
    pts = [Point(5, 10, 5, 10, label="x", p=0.001, favours=1)]  # equal counts: only the log-rank test differs
    v = decide(pts, test_name="log-rank test")
    assert v.word == V.SUPPORTED and v.test == "log-rank test" and v.p == 0.001
    assert decide([Point(5, 10, 5, 10, p=0.001, favours=-1)]).word == V.CONTRADICTED
    assert decide([Point(9, 10, 1, 10, p=math.nan, favours=1)]).word == V.NO_DIFFERENCE  # NaN counts as 1
    two = [Point(5, 10, 5, 10, p=0.03, favours=1), Point(5, 10, 5, 10, p=0.04, favours=1)]
    assert decide(two, test_name="log-rank test").word == V.NO_DIFFERENCE  # Holm: 0.06, 0.06
    assert "Holm-adjusted over 2 points" in decide(two, test_name="log-rank test").test
    assert decide([Point(5, 10, 5, 10, improving_b=2, p=0.001, favours=1)]).word == V.NOT_DECIDED


def test_collapses_count_like_failures():
    assert decide([Point(8, 10, 1, 10)], counting="collapses").word == V.SUPPORTED
    # more collapses without clipping, but the arm with more collapses had runs still improving
    v = decide([Point(8, 10, 1, 10, improving_a=1)], counting="collapses")
    assert v.word == V.NOT_DECIDED and "collapses" in decide([Point(8, 10, 1, 10)], counting="collapses").why


# ----------------------------------------------------------------------------- the comparison


def lag_frame(spec, baseline="keras"):
    """A lag sweep from ``{(label, cell, lag): "sc.."}`` (one run per letter: s success)."""
    rows = []
    for (label, cell, lag), outcomes in spec.items():
        for seed, o in enumerate(outcomes):
            rows.append({"label": label, "cell": cell, "lag": lag, "interface": baseline, "seed": seed,
                         "success": o == "s"})
    return pd.DataFrame(rows)


def test_the_long_lags_are_the_longest_a_simple_rnn_learned_at_the_baseline():
    runs = lag_frame({(TANH, "simple_rnn", 5): "ss", (TANH, "simple_rnn", 10): "sc", (IRNN, "simple_rnn", 10): "cc",
                      (TANH, "simple_rnn", 20): "cc", ("GRU", "gru", 40): "ss"})
    other = lag_frame({(TANH, "simple_rnn", 20): "ss"}, baseline="he")
    both = pd.concat([runs, other], ignore_index=True)
    assert study_mod.long_lags(both, 2, "keras") == [(5, [TANH]), (10, [TANH, IRNN])]
    assert study_mod.long_lags(both, 1, "keras") == [(10, [TANH, IRNN])]
    assert study_mod.long_lags(both, 3, "keras") == [(5, [TANH]), (10, [TANH, IRNN])]  # fewer than asked
    assert study_mod.long_lags(lag_frame({(TANH, "simple_rnn", 5): "cc"}), 2, "keras") == []
    assert study_mod.long_lags(pd.DataFrame(), 2, "keras") == []


def test_the_next_lag_is_the_first_lag_beyond_the_learned_ones_where_a_simple_rnn_ran():
    runs = lag_frame({(TANH, "simple_rnn", 5): "ss", (TANH, "simple_rnn", 10): "sc", (IRNN, "simple_rnn", 10): "cc",
                      (TANH, "simple_rnn", 20): "cc", (TANH, "simple_rnn", 40): "cc", ("GRU", "gru", 80): "ss"})
    assert study_mod.long_lags(runs, 1, "keras", next_lag=True) == [(10, [TANH, IRNN]), (20, [TANH])]
    assert study_mod.long_lags(runs, 1, "keras") == [(10, [TANH, IRNN])]
    only_gated_beyond = lag_frame({(TANH, "simple_rnn", 10): "ss", ("GRU", "gru", 20): "ss"})
    assert study_mod.long_lags(only_gated_beyond, 2, "keras", next_lag=True) == [(10, [TANH])]
    assert study_mod.long_lags(lag_frame({(TANH, "simple_rnn", 5): "cc"}), 2, "keras", next_lag=True) == []


def test_stopped_configurations_join_the_learned_long_lags_only_when_asked():
    runs = lag_frame({(TANH, "simple_rnn", 10): "ss", (IRNN, "simple_rnn", 5): "cc", (TANH, "simple_rnn", 20): "cc"})
    run = planted_run()
    res = study_mod.study(dict(PARAMS, collapse_lag_count=1, collapse_next_lag=True, collapse_stopped=True), runs,
                          grid, run, "keras")
    assert res["points"] == [(10, [TANH, IRNN]), (20, [TANH])]  # not at the next lag
    plain, _ = run.calls[0]
    assert {(c.lag, c.recurrent_initializer) for c in plain} == {(10, "orthogonal"), (10, "identity"), (20, "orthogonal")}
    where = study_mod.page_values(res)["collapse_where"]
    assert "also runs the simple RNNs the lag ladder had stopped" in where
    assert where.startswith("The long lags and the simple RNNs the comparison runs there: lag 10:")
    res = study_mod.study(dict(PARAMS, collapse_lag_count=1), runs, grid, planted_run(), "keras")
    where = study_mod.page_values(res)["collapse_where"]
    assert res["points"] == [(10, [TANH])] and "`collapse_stopped` is off" in where
    assert where.startswith("The long lags and the simple RNNs the lag sweep ran there: lag 10:")


def test_the_page_names_the_next_lag_and_counts_only_learned_lags_against_the_asked_number():
    runs = lag_frame({(TANH, "simple_rnn", 10): "ss", (TANH, "simple_rnn", 20): "cc"})
    res = study_mod.study(dict(PARAMS, collapse_lag_count=1, collapse_next_lag=True), runs, grid, planted_run(),
                          "keras")
    assert [lag for lag, _ in res["points"]] == [10, 20] and res["next"] == 20
    where = study_mod.page_values(res)["collapse_where"]
    assert "Lag 20 is the next lag of the sweep" in where and "fewer than" not in where
    res = study_mod.study(dict(PARAMS, collapse_lag_count=1, collapse_next_lag=True),
                          lag_frame({(TANH, "simple_rnn", 10): "ss"}), grid, planted_run(), "keras")
    assert res["next"] is None and "ran no simple RNN there" in study_mod.page_values(res)["collapse_where"]
    res = study_mod.study(dict(PARAMS, collapse_lag_count=1), runs, grid, planted_run(), "keras")
    assert res["next"] is None and "next lag" not in study_mod.page_values(res)["collapse_where"]


def test_the_threshold_is_the_multiple_of_the_average_norm():
    assert study_mod.threshold(0.123456, 2.0) == 0.2469
    assert math.isnan(study_mod.threshold(math.nan, 1.0)) and math.isnan(study_mod.threshold(0.0, 1.0))


def _config(label, lag):
    spec = {TANH: ("tanh", "orthogonal"), IRNN: ("relu", "identity")}[label]
    return TrainConfig(task="recall", seq_len=lag + 1, lag=lag, max_updates=100, check_every=25,
                       activation=spec[0], recurrent_initializer=spec[1])


COLLAPSING = [0.1, 0.7, 0.2, 0.25, 0.22, 0.24, 0.2]


def planted_run(collapsing_seeds=range(6), clipped_collapse=False):
    """The chapter's ``run`` on planted records: unclipped runs of ``collapsing_seeds`` rise and fall
    back (a gradient spike of 50 in that interval), the others and the clipped runs climb to
    success (the clipped ones sooner)."""
    calls = []

    def run(configs, labels, seeds, desc, levels):
        calls.append((list(configs), desc))
        rows = []
        for config, label, level in zip(configs, labels, levels):
            for seed in seeds:
                clipped = config.clip_mode != "none"
                if (not clipped and seed in collapsing_seeds) or (clipped and clipped_collapse):
                    rec = record(COLLAPSING, norms=[1, 2, 50, 3, 3, 3, 3], medians=[0.4, 0.6, 9, 2, 2, 2, 2])
                elif clipped:
                    rec = record([0.3, 0.95], outcome="success", medians=[0.5, 0.5])
                else:
                    rec = record([0.1, 0.5, 0.8, 0.95], outcome="success", medians=[0.4, 0.6, 0.8, 0.8])
                rows.append({"label": label, "lag": config.lag, "seed": seed, "interface": level, "record": rec,
                             "outcome": rec["outcome"], "success": rec["outcome"] == "success",
                             "updates": rec["updates"], "wall_time": 60.0, "chance": 0.1,
                             "ever_above_chance": V.above_chance(rec),  # as common.outcomes gives it
                             "clip_mode": config.clip_mode, "clip_threshold": config.clip_threshold})
        return pd.DataFrame(rows)

    run.calls = calls
    return run


def grid(lag, labels):
    return [_config(lab, lag) for lab in labels], list(labels), ["keras"] * len(labels)


PARAMS = {"collapse_seeds": list(range(10)), "collapse_lag_count": 2, "collapse_clip_multiple": 2.0,
          "collapse_next_lag": False, "collapse_stopped": False}


def test_the_comparison_reuses_the_lag_sweep_and_clips_at_the_pilot_threshold():
    sweep = lag_frame({(TANH, "simple_rnn", 10): "ss", (TANH, "simple_rnn", 20): "sc"})
    run = planted_run()
    res = study_mod.study(PARAMS, sweep, grid, run, "keras")
    assert res["points"] == [(10, [TANH]), (20, [TANH])]
    (plain, _), (clipped, _) = run.calls
    assert {c.clip_mode for c in plain} == {"none"} and {c.clip_mode for c in clipped} == {"global_clipnorm"}
    # pilot: the first 200 updates (every check here) of the ten unclipped runs: six collapsing
    # runs (0.4, 0.6, 9, 2, 2, 2, 2) and four rising (0.4, 0.6, 0.8, 0.8)
    average = (6 * (0.4 + 0.6 + 9 + 8) + 4 * (0.4 + 0.6 + 0.8 + 0.8)) / (6 * 7 + 4 * 4)
    assert {c.clip_threshold for c in clipped} == {study_mod.threshold(average, 2.0)}
    runs = res["runs"]
    assert len(runs) == 40 and runs["pilot_norm"].iloc[0] == pytest.approx(average)
    # the lag sweep ran seeds 0 and 1: the eight other unclipped runs per lag and every clipped run are added
    assert int(runs["added"].sum()) == 2 * (8 + 10)
    t = res["table"].set_index("lag")
    assert (t.loc[10, "collapses_none"], t.loc[10, "collapses_clip"], t.loc[10, "successes_clip"]) == (6, 0, 10)
    assert t.loc[10, "collapse_fisher_p"] == pytest.approx(V.fisher_p(6, 10, 0, 10))
    assert t.loc[10, "collapse_lo_none"] < 0.6 < t.loc[10, "collapse_hi_none"]
    v = res["verdicts"]
    assert v["collapse"].word == V.SUPPORTED and "collapses" in v["collapse"].why  # 6 of 10 vs 0, twice
    assert v["collapse_time"].word == V.SUPPORTED and v["collapse_time"].test.startswith("log-rank test")
    shown = study_mod.rates_display(res["table"])
    assert list(shown["collapses, no clipping"])[0].startswith("6 of 10: 0.60 [")


def planted_steps(ratio, scales=True):
    """``steps(config, seeds)`` on planted measurements: unclipped updates of norm proportional to
    the learning rate (1 at the planted configurations' rate; always 1 unless ``scales``), clipped
    ones of ``ratio``, half of the clipped updates clipped."""
    calls = []
    base = TrainConfig().learning_rate

    def steps(config, seeds):
        calls.append((config, list(seeds)))
        clipped = config.clip_mode != "none"
        plain = config.learning_rate / base if scales else 1.0
        return [{"update_norm": [ratio if clipped else plain] * 3, "grad_norm": [2.0, 5.0],
                 "clip_share": [1.0, 0.0] if clipped else [0.0]} for _ in seeds]

    steps.calls = calls
    return steps


@pytest.mark.parametrize("ratio, matched", [(0.95, True), (0.5, False)])
def test_the_matched_step_check_measures_both_arms_first_updates(ratio, matched):
    steps, run = planted_steps(ratio), planted_run()
    res = study_mod.study(PARAMS, lag_frame({(TANH, "simple_rnn", 10): "ss"}), grid, run, "keras", steps)
    t = res["steps"]
    assert list(t["ratio"]) == [pytest.approx(ratio)] and list(t["matched"]) == [matched]
    assert list(t["share_clipped"]) == [0.5]
    measured = [(c.clip_mode, c.max_updates, s) for c, s in steps.calls]
    assert measured[:2] == [("none", study_mod.STEP_UPDATES, [0, 1]), ("global_clipnorm", study_mod.STEP_UPDATES, [0, 1])]
    text = study_mod.page_values(res)["collapse_steps"]
    assert f", {ratio:.2f} (" in text
    assert ("the unclipped arm is itself the control" in text) == matched
    assert "was not trained" not in text  # where the steps differ, the control trains
    arms = set(res["runs"]["arm"])
    assert ("matched" in arms) == (not matched)
    if not matched:
        # one rescaling: the step is proportional to the rate, so half the rate matches
        assert len(measured) == 3 and measured[2][0] == "none"
        rate = TrainConfig().learning_rate
        assert list(t["control_learning_rate"]) == [pytest.approx(rate * ratio)]
        assert list(t["control_ratio"]) == [pytest.approx(1.0)]
        (control, desc) = run.calls[-1]
        assert desc.endswith("step control") and {c.clip_mode for c in control} == {"none"}
        assert {c.max_updates for c in control} == {_config(TANH, 10).max_updates}  # the run's own cap
        row = res["table"].iloc[0]
        assert (row["runs_control"], row["collapses_control"]) == (10, 6)  # planted: unclipped seeds 0-5 collapse
        assert row["control_fisher_p"] == pytest.approx(V.fisher_p(6, 10, 0, 10))
        assert "the matched-step control (unclipped Adam at learning rate" in text and "6 collapsed" in text
        shown = study_mod.rates_display(res["table"])
        assert list(shown[study_mod.CONTROL_COLUMN]) == ["6 of 10; 4 of 10"]
        assert res["runs"].loc[res["runs"]["arm"] == "matched", "added"].all()
        # the claims still compare the two arms a user chooses between; the figure draws only them
        assert set(study_mod.traces(res["runs"], study_mod.example(res["runs"]))["arm"]) <= {
            study_mod.ARMS[a] for a in study_mod.COMPARED}
    else:
        assert len(measured) == 2 and study_mod.CONTROL_COLUMN not in study_mod.rates_display(res["table"])


def test_a_control_whose_step_does_not_follow_the_rate_is_not_called_matched():
    steps, run = planted_steps(2.0, scales=False), planted_run()  # clipped steps twice as long, whatever the rate
    res = study_mod.study(PARAMS, lag_frame({(TANH, "simple_rnn", 10): "ss"}), grid, run, "keras", steps)
    t = res["steps"].iloc[0]
    rate = TrainConfig().learning_rate
    assert not t["matched"] and not t["control_matched"] and t["control_ratio"] == pytest.approx(0.5)
    # every rescaling doubled the rate, up to the bounded number of rounds
    assert [r for r, _, _ in t["control_trail"]] == pytest.approx([rate * 2 ** i for i in range(1, 4)])
    assert [(x, g) for _, x, g in t["control_trail"]] == [(0.5, 5.0)] * 3
    text = study_mod.page_values(res)["collapse_steps"]
    assert "no unclipped learning rate tried took the clipped runs' step" in text
    assert "not used as a matched-step control" in text and "the matched-step control (unclipped" not in text
    assert "at 0.002 (2 times the tuned rate) the step was 0.50 times the clipped runs' and the largest gradient norm 5" in text
    assert "0 of 10 diverged, 6 of 10" not in text and "0 of 10 diverged, 6 collapsed" in text
    cell = study_mod.rates_display(res["table"])[study_mod.CONTROL_COLUMN].iloc[0]
    assert cell == "6 of 10; 4 of 10 (not matched: step 0.50 times the clipped runs')"


def test_without_a_step_measure_the_check_is_empty():
    res = study_mod.study(PARAMS, lag_frame({(TANH, "simple_rnn", 10): "ss"}), grid, planted_run(), "keras")
    assert res["steps"].empty and study_mod.steps_text(res["steps"]).startswith("No step was measured")


def test_no_collapse_without_clipping_is_premise_not_met():
    res = study_mod.study(PARAMS, lag_frame({(TANH, "simple_rnn", 10): "ss"}), grid, planted_run(()), "keras")
    assert {v.word for v in res["verdicts"].values()} == {V.PREMISE_NOT_MET}
    assert "No unclipped run collapsed" in res["verdicts"]["collapse"].why


def test_clipped_runs_that_collapse_more_contradict_the_claim():
    res = study_mod.study(PARAMS, lag_frame({(TANH, "simple_rnn", 10): "ss"}), grid,
                          planted_run(range(1), clipped_collapse=True), "keras")
    assert res["verdicts"]["collapse"].word == V.CONTRADICTED


def test_without_a_long_lag_the_section_says_so_and_draws_an_empty_figure():
    res = study_mod.study(PARAMS, lag_frame({(TANH, "simple_rnn", 10): "cc"}), grid, planted_run(), "keras")
    assert res["runs"].empty and res["table"].empty
    assert {v.word for v in res["verdicts"].values()} == {V.PREMISE_NOT_MET}
    vals = study_mod.page_values(res)
    assert vals["collapse_where"].startswith("No simple RNN met the criterion")
    assert vals["collapse_summary"] == "none" and vals["collapse_n_runs"] == 0 and vals["collapse_shown"] == "no run"
    assert len(study_mod.rates_display(res["table"])) == 1
    data = study_mod.figure_data(res, 0.1, 0.9)
    assert len(data["fig-collapse"]) == 1 and len(data["tbl-collapse-rates"]) == 1
    assert data["figure"].axes[0].get_ylabel() == "validation accuracy"


def test_page_values_state_the_lags_thresholds_counts_and_budget():
    res = study_mod.study(dict(PARAMS, collapse_lag_count=3), lag_frame({(TANH, "simple_rnn", 10): "ss"}), grid,
                          planted_run(), "keras")
    vals = study_mod.page_values(res)
    assert "fewer than the 3 asked for" in vals["collapse_where"]
    assert vals["collapse_summary"].startswith(f"{TANH} at lag 10: collapses 6 of 10 unclipped and 0 of 10 clipped")
    assert "threshold" in vals["collapse_thresholds"] and vals["collapse_n_runs"] == 20
    assert vals["collapse_n_censored"] == 6  # the six collapsing unclipped runs end censored, the rest succeed
    assert vals["collapse_n_added"] == 18 and vals["collapse_added_minutes"] == pytest.approx(18.0)
    assert vals["collapse_events"].count("(accuracy fell)") == 6 and "(unclipped)" in vals["collapse_events"]
    assert vals["collapse_shown"].startswith(f"{TANH} at lag 10, seed 0, no clipping")
    assert vals["verdict_collapse"].startswith("**") and vals["word_collapse_time"] in V.VERDICTS


def test_fig_collapse_draws_both_arms_on_one_time_axis_and_marks_the_collapse():
    res = study_mod.study(PARAMS, lag_frame({(TANH, "simple_rnn", 10): "ss"}), grid, planted_run(), "keras")
    shown = study_mod.example(res["runs"])
    assert bool(shown["collapsed"]) and shown["arm"] == "none" and shown["seed"] == 0
    curves = study_mod.traces(res["runs"], shown)
    assert list(dict.fromkeys(curves["arm"])) == ["no clipping", "global_clipnorm"] and len(curves) == 7 + 2
    fig = study_mod.fig_collapse(curves, shown, 0.1, 0.9)
    top, bottom = fig.axes[:2]
    data = [ln for ln in top.lines if len(set(np.atleast_1d(ln.get_xdata()))) > 1]
    assert [list(ln.get_ydata()) for ln in data[:2]] == [COLLAPSING, [0.3, 0.95]]
    assert bottom.get_yscale() == "log" and top.get_shared_x_axes().joined(top, bottom)
    assert [ln for ln in top.lines if list(ln.get_xdata()) == [75.0, 75.0]], "the collapse is not marked"
    fig.canvas.draw()
    norms = [t.get_text() for t in bottom.get_yticklabels() if t.get_text()]
    assert norms and not [t for t in norms if "^" in t or "times" in t], norms  # 2, 5, 10, not 2x10^0


def test_the_example_is_the_largest_fall_when_nothing_collapsed():
    runs = pd.DataFrame({"arm": ["none", "global_clipnorm", "none"], "collapsed": [False] * 3,
                         "drop": [0.05, 0.15, 0.1]})
    assert study_mod.example(runs).name == 2  # unclipped first, then the largest fall
    assert study_mod.example(pd.DataFrame()) is None


def test_the_dry_run_plans_both_arms_from_cached_runs_or_the_grids_longest_lags():
    p = dict(PARAMS, lags=[5, 10, 20], collapse_seeds=[0, 1], collapse_lag_count=1)
    swept = [(dataclasses.replace(_config(TANH, lag), seed=s), TANH, "keras") for lag in (5, 10, 20) for s in (0, 1)]
    nothing = study_mod.plan(p, swept, lambda c: None, grid, "keras")
    assert [(c.lag, c.clip_mode, c.clip_threshold, c.seed) for c in nothing] == [
        (20, "none", 1.0, 0), (20, "none", 1.0, 1), (20, "global_clipnorm", 1.0, 0), (20, "global_clipnorm", 1.0, 1)]

    def load(config):  # lags 5 and 10 learned, 20 not; every run cached
        ok = config.lag < 20
        return record([0.5, 0.95 if ok else 0.1], outcome="success" if ok else "censored", medians=[0.25, 0.75])

    cached = study_mod.plan(p, swept, load, grid, "keras")
    assert {c.lag for c in cached} == {10}
    assert {c.lag for c in study_mod.plan(dict(p, collapse_next_lag=True), swept, load, grid, "keras")} == {10, 20}
    assert {c.clip_threshold for c in cached if c.clip_mode == "global_clipnorm"} == {1.0}  # 2 x mean(0.25, 0.75)
    assert {c.clip_threshold for c in study_mod.plan(dict(p, collapse_clip_multiple=3.0), swept, load, grid, "keras")
            if c.clip_mode == "global_clipnorm"} == {1.5}


def test_collapse_seeds_may_not_be_tuning_seeds():
    from conftest import quick_params
    from rnnbook.experiments import relu
    from rnnbook.experiments.common import ExperimentError

    params = quick_params("relu")
    with pytest.raises(ExperimentError, match="tuning_seeds and collapse_seeds"):
        relu._pick(dict(params, collapse_seeds=list(params["tuning_seeds"])))


def test_the_front_page_clipping_answer_comes_from_the_long_lags_when_the_short_lag_did_not_explode():
    from rnnbook.experiments.recommendations import clip_verdict
    from rnnbook.verdicts import Verdict

    short, met = Verdict(V.PREMISE_NOT_MET, "No explosion."), Verdict(V.NO_DIFFERENCE, "Same.")
    long = Verdict(V.SUPPORTED, "Fewer collapses.", "Fisher's exact test", 0.01)
    assert clip_verdict(short, long).word == V.SUPPORTED and clip_verdict(short, long).p == 0.01
    assert "long lags" in clip_verdict(short, long).why
    assert clip_verdict(met, long) == met
    assert clip_verdict(short, Verdict(V.PREMISE_NOT_MET, "None collapsed.")) == short
    assert clip_verdict(short, None) == short


def test_a_diverged_collapse_pastes_no_inf():
    runs = pd.DataFrame([{"label": TANH, "lag": 10, "seed": 0, "interface": "keras", "arm": "none", "success": False,
                          "outcome": "diverged", "updates": 60, "wall_time": 1.0, "added": False, "pilot_norm": 1.0,
                          "ever_above_chance": True,
                          "threshold": 1.0, "record": record([0.2, 0.8], norms=[1, 2, math.inf], outcome="diverged",
                                                             diverged_step=60)}])
    runs = study_mod.annotate(runs)
    res = {"runs": runs, "table": study_mod.rates_table(runs), "verdicts": study_mod.claim_verdicts(runs),
           "points": [(10, [TANH])], "wanted": 1, "seeds": [0], "multiple": 1.0}
    events = study_mod.page_values(res)["collapse_events"]
    assert "(diverged), gradient norm not finite" in events and "inf" not in events


def test_the_quick_chapter_glues_the_long_lag_figure_and_table(quick_book):
    from conftest import assert_chapter_glue, referenced

    doc = "chapters/relu"
    nb = quick_book.notebooks([doc])[doc]
    values = assert_chapter_glue(nb, doc, ["fig-collapse", "tbl-collapse-rates"])
    for anchor in ("fig-collapse", "tbl-collapse-rates"):
        assert f"{anchor}-data" in referenced(nb) and f"rnnbook-file:{anchor}.csv" in values
    assert 'id="sec-relu-collapse"' in quick_book.page(doc)
    assert "sec-relu-collapse" in quick_book.page("chapters/clipping")



def test_the_step_check_says_which_way_the_steps_differ():
    t = pd.DataFrame({"label": ["tanh", "IRNN", "ReLU"], "lag": [40, 20, 20], "ratio": [0.98, 2.3, 0.5],
                      "share_clipped": [0.3, 0.4, 0.5], "matched": [True, False, False]})
    text = study_mod.steps_text(t)
    assert "at IRNN at lag 20 the clipped runs took longer steps" in text
    assert "at ReLU at lag 20 the clipped runs took shorter steps" in text
    assert "multiples of the unclipped runs': tanh at lag 40, 0.98 (30 % of the updates clipped); IRNN" in text
    assert "tanh at lag 40 the clipped" not in text and "was not trained" in text
    assert "possible reason for longer steps" in text
    only_shorter = study_mod.steps_text(t.iloc[[0, 2]])
    assert "took shorter steps" in only_shorter and "longer" not in only_shorter
    matched = study_mod.steps_text(t.iloc[:1])
    assert "the unclipped arm is itself the control" in matched and "longer" not in matched


def test_points_where_no_run_left_chance_are_named_as_unable_to_show_a_collapse():
    """A point whose runs, clipped or not, never beat chance by three standard errors cannot show
    a collapse: the page names it with its best accuracy; a point where some run learned is not
    named."""
    learned = planted_run()

    def run(configs, labels, seeds, desc, levels):
        rows = learned(configs, labels, seeds, desc, levels)
        at_chance = rows["lag"] == 20
        rows.loc[at_chance, "record"] = [record([0.1, 0.11, 0.104, 0.1]) for _ in range(int(at_chance.sum()))]
        return rows.assign(ever_above_chance=[V.above_chance(r) for r in rows["record"]])

    sweep = lag_frame({(TANH, "simple_rnn", 10): "ss", (TANH, "simple_rnn", 20): "sc"})
    vals = study_mod.page_values(study_mod.study(PARAMS, sweep, grid, run, "keras"))
    assert vals["collapse_unlearned"].startswith(f"At {TANH} at lag 20, no run of either arm ever beat chance")
    assert "accuracy 0.110" in vals["collapse_unlearned"] and "lag 10" not in vals["collapse_unlearned"]
    every = study_mod.page_values(study_mod.study(PARAMS, sweep, grid, learned, "keras"))["collapse_unlearned"]
    assert every.startswith("At every point some run beat chance")
