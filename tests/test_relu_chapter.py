"""The chapter "When ReLU helps": its statistics, decision rules, verdicts and figures, on small
synthetic run tables whose answer is known, and the criterion protocol it trains with."""
import dataclasses
import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from rnnbook import verdicts as V
from rnnbook.experiments import relu
from rnnbook.experiments.relu import claims as relu_claims
from rnnbook.experiments.common import role_label, wilson_interval

TANH, RELU, IRNN = role_label("tanh"), role_label("relu"), role_label("irnn")


def _record(o, lag=2, rising=False):
    val = {"s": [0.3, 0.95], "c": [0.1, 0.15, 0.3, 0.45, 0.6] if rising else [0.3, 0.3, 0.3, 0.3, 0.3],
           "d": [0.1], "z": [0.1, 0.1]}[o]
    states = [0.0, 0.0] if o == "z" else [0.5, 0.5]
    return {"outcome": {"s": "success", "c": "censored", "d": "diverged", "z": "censored"}[o],
            "check_val_acc": val, "chance": 0.1, "config": {"n_val": 2000, "check_every": 2},
            "steps": {"max_abs_state": states, "rnn_grad_norm": states}, "diverged": o == "d"}


def runs_table(spec, rising=False):
    """Runs from ``{(label, interface, lag): "outcomes"}`` (outcome: 's'uccess, 'c'ensored,
    'd'iverged, 'z' dead: censored with every state zero); ``rising`` censored runs still improve."""
    rows = []
    for (label, level, lag), outcomes in spec.items():
        for seed, o in enumerate(outcomes):
            rec = _record(o, lag, rising)
            rows.append({"label": label, "interface": level, "lag": lag, "seed": seed, "units": 64,
                         "outcome": rec["outcome"], "success": o == "s", "diverged": o == "d",
                         "updates": 100 if o == "s" else 400, "chance": 0.1, "record": rec,
                         "learning_rate": 1e-3, "clip_mode": "none"})
    return pd.DataFrame(rows)


def test_success_table_counts_and_wilson_interval():
    t = relu.success_table(runs_table({(TANH, "keras", 2): "sssc", (TANH, "keras", 5): "cccd"}))
    first = t.iloc[0]
    assert (first.successes, first.seeds, first.censored, first.diverged_runs) == (3, 4, 1, 0)
    assert first.rate == 0.75
    # Wilson 95 % for 3/4, computed independently: centre (p + z^2/2n)/(1 + z^2/n)
    z = 1.959964
    centre = (0.75 + z * z / 8) / (1 + z * z / 4)
    half = z * math.sqrt(0.75 * 0.25 / 4 + z * z / 64) / (1 + z * z / 4)
    assert first.lo == pytest.approx(centre - half, abs=1e-5)
    assert first.hi == pytest.approx(centre + half, abs=1e-5)
    assert t.iloc[1].diverged_runs == 1 and t.iloc[1].rate == 0.0
    assert first.median_updates == 100 and math.isnan(t.iloc[1].median_updates)


def test_wilson_interval_edges():
    assert wilson_interval(0, 0)[0] != wilson_interval(0, 0)[0]  # NaN
    rate, lo, hi = wilson_interval(4, 4)
    assert rate == 1.0 and hi == 1.0 and 0.5 < lo < 0.52
    assert wilson_interval(0, 4)[1] == 0.0
    # the interval contains the share at every count, so an error bar is never negative
    # (10 of 10 put the upper end a hair below 1, 0 of 3 the lower end a hair above 0)
    assert wilson_interval(10, 10)[2] == 1.0 and wilson_interval(0, 3)[1] == 0.0
    assert all(lo <= rate <= hi for n in range(1, 60) for k in range(n + 1) for rate, lo, hi in [wilson_interval(k, n)])


def test_reach_is_largest_lag_with_enough_successes():
    t = relu.success_table(runs_table({(TANH, "keras", 2): "ssss", (TANH, "keras", 5): "sssc",
                                       (TANH, "keras", 10): "sscc", (TANH, "keras", 20): "ssss"}))
    assert relu.reach(t, TANH, "keras") == 20  # the rule is "largest lag", not "first failure"
    t = relu.success_table(runs_table({(TANH, "keras", 2): "sscc"}))
    assert math.isnan(relu.reach(t, TANH, "keras"))
    assert list(relu.reach_table(t, ["keras"]).iloc[0])[1] == "none"


def test_the_learning_rate_rule_prefers_successes_then_speed_then_the_smaller_rate():
    t = pd.DataFrame({"learning_rate": [1e-3, 3e-3, 1e-2], "successes": [2, 2, 1],
                      "median_updates": [300.0, 150.0, 50.0]})
    assert relu.rate_rule(t) == 3e-3
    tie = pd.DataFrame({"learning_rate": [3e-3, 1e-3], "successes": [0, 0], "median_updates": [math.nan] * 2})
    assert relu.rate_rule(tie) == 1e-3
    tuning = runs_table({(TANH, "keras", 10): "ss", (RELU, "keras", 10): "cc"})
    tuning = pd.concat([tuning, tuning.assign(learning_rate=3e-3, success=[False, False, True, True])])
    rates, table = relu.choose_rates(tuning)
    assert rates == {TANH: 1e-3, RELU: 3e-3} and table["chosen"].sum() == 2


def test_tuning_seeds_may_not_be_verdict_seeds():
    from rnnbook.experiments.common import ExperimentError
    from conftest import quick_params

    params = dict(quick_params("relu"), tuning_seeds=[0])
    with pytest.raises(ExperimentError, match="tuning_seeds and seeds"):
        relu._pick(params)


def verdicts_of(spec, lr=None, width=None, rising=False):
    roles = {"tanh": TANH, "relu": RELU, "irnn": IRNN, "tf1": role_label("tf1"),
             "gated": sorted({k[0] for k in spec} & {"GRU", "LSTM"})}
    empty = runs_table({})
    return relu_claims.claim_verdicts(runs_table(spec, rising), lr if lr is not None else empty,
                                      width if width is not None else empty, roles, "keras")


def test_relu_memory_supported_contradicted_and_tied():
    more = {(TANH, "keras", 2): "s" * 8, (RELU, "keras", 2): "s" * 8,
            (TANH, "keras", 10): "c" * 8, (RELU, "keras", 10): "s" * 8}
    assert verdicts_of(more)["relu_memory"].word == V.SUPPORTED
    less = {**more, (TANH, "keras", 10): "s" * 8, (RELU, "keras", 10): "c" * 8}
    assert verdicts_of(less)["relu_memory"].word == V.CONTRADICTED
    tie = {**more, (TANH, "keras", 10): "sscc", (RELU, "keras", 10): "sccc"}
    v = verdicts_of(tie)["relu_memory"]
    assert v.word == V.NO_DIFFERENCE, v  # a tie is never "contradicted"


def test_a_censored_still_improving_loser_is_not_decided():
    spec = {(IRNN, "keras", 10): "c" * 8, ("GRU", "keras", 10): "s" * 8}
    assert verdicts_of(spec)["irnn"].word == V.CONTRADICTED  # flat at the cap: a real loss
    v = verdicts_of(spec, rising=True)["irnn"]
    assert v.word == V.NOT_DECIDED and "still improving" in v.why


def test_the_irnn_is_compared_with_the_lstm_as_le_et_al_did():
    spec = {(IRNN, "keras", 10): "c" * 8, ("GRU", "keras", 10): "s" * 8, ("LSTM", "keras", 10): "c" * 8}
    v = verdicts_of(spec)["irnn"]
    assert v.word == V.NO_DIFFERENCE and "LSTM" in v.why, v
    without = {k: x for k, x in spec.items() if k[0] != "LSTM"}
    assert verdicts_of(without)["irnn"].word == V.CONTRADICTED  # the first gated cell when there is no LSTM


def test_gated_and_short_lags():
    spec = {(TANH, "keras", 2): "s" * 8, (RELU, "keras", 2): "c" * 8, ("GRU", "keras", 2): "s" * 8,
            (TANH, "keras", 40): "c" * 8, ("GRU", "keras", 40): "s" * 8, ("LSTM", "keras", 40): "s" * 8}
    v = verdicts_of(spec)
    assert v["relu_short"].word == V.CONTRADICTED
    assert v["gated"].word == V.SUPPORTED and "LSTM" in v["gated"].why or "GRU" in v["gated"].why


def test_a_level_the_ladder_stopped_is_compared_at_the_shortest_lag():
    """At He the ladder stopped tanh after lag 2 (no seed learned): the memory claims compare
    the level there, where the gated cell learned; at Keras default they compare beyond it."""
    spec = {(TANH, "keras", 2): "s" * 8, ("GRU", "keras", 2): "s" * 8,
            (TANH, "keras", 10): "s" * 8, ("GRU", "keras", 10): "c" * 8,
            (TANH, "he", 2): "c" * 8, ("GRU", "he", 2): "s" * 8, ("GRU", "he", 10): "s" * 8}
    labels = [p.label for p in relu_claims.memory_points(runs_table(spec), "GRU", TANH)]
    assert labels == ["Keras default (Glorot), lag 10", "He-uniform, lag 2"]
    v = verdicts_of(spec)["gated"]
    assert v.word == V.NOT_DECIDED and "It depends on the point" in v.why and "He-uniform, lag 2" in v.why
    without = {k: x for k, x in spec.items() if k[1] == "keras"}
    assert verdicts_of(without)["gated"].word == V.CONTRADICTED


def test_a_level_where_neither_learned_gives_no_point():
    spec = {(TANH, "keras", 2): "s" * 8, (RELU, "keras", 2): "s" * 8,
            (TANH, "keras", 10): "c" * 8, (RELU, "keras", 10): "s" * 8,
            (TANH, "he", 2): "c" * 8, (RELU, "he", 2): "c" * 8}
    labels = [p.label for p in relu_claims.memory_points(runs_table(spec), RELU, TANH)]
    assert labels == ["Keras default (Glorot), lag 10"]


def test_the_interface_claim_has_no_direction():
    spec = {(TANH, "keras", 10): "s" * 8, (TANH, "he", 10): "c" * 8}
    assert verdicts_of(spec)["interface"].word == V.SUPPORTED
    # the reason names the two levels of the deciding point
    assert verdicts_of(spec)["interface"].why.startswith(
        f"He-uniform 0 of 8 against 8 of 8 at {TANH}, lag 10 (Keras default (Glorot); successes)")
    flipped = {(TANH, "keras", 10): "c" * 8, (TANH, "he", 10): "s" * 8}
    assert verdicts_of(flipped)["interface"].word == V.SUPPORTED
    same = {(TANH, "keras", 10): "sssc", (TANH, "he", 10): "ssss"}
    assert verdicts_of(same)["interface"].word == V.NO_DIFFERENCE
    assert verdicts_of({(TANH, "keras", 10): "ssss"})["interface"].word == V.NOT_DECIDED


def test_the_interface_ablation_joins_the_interface_claim():
    """A lag sweep too small to separate the levels, and an ablation that does: supported; the
    ablation's points share the Holm adjustment (its label names the ablation)."""
    roles = {"tanh": TANH, "relu": RELU, "irnn": IRNN, "tf1": role_label("tf1"), "gated": []}
    empty = runs_table({})
    lag = runs_table({(TANH, "keras", 10): "ssss", (TANH, "he", 10): "sscc"})
    ablation = runs_table({(TANH, "keras", 10): "s" * 8, (TANH, "he", 10): "c" * 8, (TANH, "he*r", 10): "s" * 8})
    without = relu_claims.claim_verdicts(lag, empty, empty, roles, "keras")["interface"]
    assert without.word == V.NO_DIFFERENCE
    v = relu_claims.claim_verdicts(lag, empty, empty, roles, "keras", ablation)["interface"]
    assert v.word == V.SUPPORTED and "(ablation)" in v.why and "3 points" in v.test
    tied = runs_table({(TANH, "keras", 10): "s" * 8, (TANH, "he", 10): "s" * 7 + "c"})
    assert relu_claims.claim_verdicts(lag, empty, empty, roles, "keras", tied)["interface"].word == V.NO_DIFFERENCE


def test_a_dead_relu_network_counts_as_a_failure_of_the_stability_claim():
    # ReLU dies (every state exactly 0) at every seed; tanh diverges at two: ReLU failed more
    lr = pd.concat([runs_table({(RELU, "keras", 5): "z" * 12}), runs_table({(TANH, "keras", 5): "dd" + "s" * 10})])
    v = verdicts_of({(TANH, "keras", 2): "s"}, lr=lr)["relu_unstable"]
    assert v.word == V.SUPPORTED, v
    alive = pd.concat([runs_table({(RELU, "keras", 5): "s" * 12}), runs_table({(TANH, "keras", 5): "dd" + "s" * 10})])
    assert verdicts_of({(TANH, "keras", 2): "s"}, lr=alive)["relu_unstable"].word == V.NO_DIFFERENCE


def test_fig_interface_scale_draws_one_line_per_configuration_and_panel():
    t = relu.success_table(runs_table({(TANH, "keras", 2): "ssss", (TANH, "keras", 5): "sccc",
                                       (RELU, "keras", 2): "sscc", (RELU, "keras", 5): "cccc",
                                       (TANH, "he", 2): "ssss", (TANH, "he", 5): "ssss",
                                       (RELU, "he", 2): "ssss", (RELU, "he", 5): "sscc"}))
    fig = relu.fig_interface_scale(t, 0.9)
    assert len(fig.axes) == 2
    expected = {"keras": [[1.0, 0.25], [0.5, 0.0]], "he": [[1.0, 1.0], [1.0, 0.5]]}
    for ax, level in zip(fig.axes, ("keras", "he")):
        assert len(ax.containers) == 2  # one error-bar line per configuration
        ys = [np.asarray(c.lines[0].get_ydata(), float).tolist() for c in ax.containers]
        assert ys == expected[level]  # success rates per lag, from the run table
    assert "Keras default" in fig.axes[0].get_title()
    legend = fig.axes[-1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [TANH, RELU]


def test_fig_updates_to_success_draws_every_run():
    runs = runs_table({(TANH, "keras", 2): "ssss", (RELU, "keras", 2): "sccd"})
    fig = relu.fig_updates_to_success(runs, 400)
    points = sum(len(c.get_offsets()) for c in fig.axes[0].collections)
    assert points == 8


def test_kaplan_meier_curves_and_log_rank():
    runs = runs_table({(TANH, "keras", 2): "ssss", (RELU, "keras", 2): "sscc"})
    curves = relu.km_curves(runs)
    tanh = curves[curves["label"] == TANH]
    assert tanh["reached"].max() == 1.0
    assert curves[curves["label"] == RELU]["reached"].max() == 0.5  # two of four, the rest censored
    fig = relu.fig_time_to_success(curves, 400)
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) >= 2
    table = relu.logrank_table(runs, TANH)
    assert list(table["configuration"]) == [RELU] and 0 < table["log-rank p"].iloc[0] < 1


def test_criterion_run_outcomes_and_fresh_batches():
    from rnnbook import data
    from rnnbook.training import ConfigError, TrainConfig, train

    cfg = TrainConfig(seq_len=3, lag=2, n_train=16, n_val=32, n_test=32, units=8, conv_filters=(4,),
                      max_updates=4, check_every=2, target_acc=1.0, batch_size=8)
    rec = train(cfg)
    assert rec["outcome"] == "censored" and rec["updates"] == 4 and rec["check_updates"] == [2, 4]
    assert rec["sequences_seen"] == 32
    easy = train(cfg.__class__(**{**cfg.to_dict(), "conv_filters": (4,), "target_acc": 0.01}))
    assert easy["outcome"] == "success" and easy["updates_to_success"] == 2
    boom = train(cfg.__class__(**{**cfg.to_dict(), "conv_filters": (4,), "activation": "relu",
                                  "recurrent_initializer": "identity", "recurrent_gain": 50.0,
                                  "optimizer": "sgd", "learning_rate": 100.0}))
    assert boom["outcome"] == "diverged" and boom["diverged"] and boom["failure_reason"]
    with pytest.raises(ConfigError, match="stream"):
        TrainConfig(max_updates=4, stream="memorised")
    with pytest.raises(ConfigError, match="target_acc"):
        TrainConfig(max_updates=4, target_acc=1.5)
    task = data.make_task("recall", seq_len=4, lag=3, n_train=8, n_val=8, n_test=8, data_dir=None)
    a, b = data.SequenceStream(task, seed=1), data.SequenceStream(task, seed=1)
    first, second = a.next(16), a.next(16)
    assert not np.array_equal(first[0], second[0])  # fresh sequences every batch
    assert np.array_equal(b.next(16)[0], first[0])  # reproducible per seed
    assert (task.train.bank_digits[first[0][:, 0]] == first[1]).all()  # the label is the first frame


@pytest.mark.slow
def test_quick_chapter_glues_its_figures_values_and_data(quick_book):
    from conftest import assert_chapter_glue, referenced

    doc = "chapters/relu"
    anchors = ["tbl-interface-drive", "fig-interface-scale", "tbl-reach", "fig-updates-to-success",
               "fig-memorisation", "fig-lr-stability", "fig-time-to-success", "tbl-learning-rates",
               "tbl-interface-ablation", "tbl-logrank", "tbl-verdict-by-budget", "fig-reach-by-budget", "tbl-rerun-relu"]
    nb = quick_book.notebooks([doc])[doc]
    values = assert_chapter_glue(nb, doc, anchors)
    for anchor in anchors:
        assert f"{anchor}-data" in referenced(nb), f"the caption of {anchor} has no data link"
        assert f"rnnbook-file:{anchor}.csv" in values
    page = quick_book.page(doc)
    for old in ("fig-accuracy-vs-lag", "fig-recall-curves", "fig-count-task", "fig-width", "tbl-relu-summary"):
        assert f'id="{old}"' in page, f"the shared anchor {old} no longer resolves on the page"


def test_fig_stability_draws_each_setting_in_its_configuration_colour():
    from rnnbook import plots

    lr = pd.DataFrame({"label": [TANH] * 4 + [RELU] * 4, "clip_mode": ["none", "none", "global_clipnorm",
                                                                      "global_clipnorm"] * 2,
                       "learning_rate": [0.01, 1.0] * 4, "diverged": [False, True, False, False] * 2,
                       "ever_above_chance": [True] * 8})
    width = pd.DataFrame({"label": [TANH, TANH, RELU, RELU], "units": [64, 1024] * 2,
                          "diverged": [False, False, False, True], "ever_above_chance": [True, False, True, True]})
    def recs(frame):
        return [_record("d") if d else _record("s") if ok else _record("z")
                for d, ok in zip(frame["diverged"], frame["ever_above_chance"])]

    lr, width = lr.assign(record=recs(lr)), width.assign(record=recs(width))
    fig = relu.fig_stability(lr, width)
    left, right = fig.axes
    assert len(left.containers) == 4 and len(right.containers) == 2
    tanh_line = left.containers[0].lines[0]
    assert list(np.asarray(tanh_line.get_ydata(), float)) == [0.0, 1.0]  # one run per point: 0/1, 1/1 failed
    assert matplotlib.colors.to_hex(tanh_line.get_color()) == matplotlib.colors.to_hex(
        plots.config_style(TANH)["color"])
    assert list(np.asarray(right.containers[0].lines[0].get_ydata(), float)) == [0.0, 1.0]


def test_the_dry_run_plans_every_run_the_quick_build_trained(quick_book):
    """``plan`` (what ``rnnbook build --dry-run`` counts) uses the build's success target once the
    encoder's ceiling is cached and the tuned learning rates once the tuning runs are; it plans the
    lag sweep whole (top-up seeds at every point, every lag), an upper bound of what the lag ladder
    and the top-up rule run. So every run the quick build trained is planned, and the tuning,
    ablation and stability runs are all found in the run cache."""
    from conftest import quick_params
    from rnnbook import sweeps
    from rnnbook.book.chapter_cache import src_digest
    from rnnbook.training import TrainConfig

    assert quick_book.code == 0, quick_book.output
    if src_digest() != quick_book.src_digest:  # only in a checkout shared with people editing src/
        pytest.skip("src/rnnbook changed since the quick build: its cached runs have other keys")
    params = quick_params("relu")
    configs = relu.plan(params)
    target = relu.target_of(relu._pick(params), relu.encoder_ceiling(params["ceiling_epochs"], compute=False))
    assert {c.target_acc for c in configs} == {target, 1.0} and target != relu.PLANNING_TARGET  # 1.0: memorisation
    planned = {sweeps.run_key(c) for c in configs}
    trained = relu.all_runs(relu.results(params))  # every run loads from the cache: nothing trains here
    keys = [sweeps.run_key(TrainConfig(**r["config"])) for r in trained["record"]]
    assert set(keys) <= planned, f"{len(set(keys) - planned)} trained runs were not planned"
    missing = [c for c in configs if not sweeps.is_cached(c, sweeps.RUNS_DIR)]
    assert not [c for c in missing if c.seed in params["tuning_seeds"]], "a planned tuning run was not trained"


def test_the_lag_sweep_tops_up_mixed_points_and_stops_a_ladder_at_its_first_failure(monkeypatch):
    """At a point where some but not all seeds succeed, ``top_up_seeds`` add runs (with their
    configurations, labels and levels); a ladder with no success at a lag stops there."""
    calls = []

    def fake_run(configs, labels, seeds, desc, interfaces=None):
        calls.append((desc, [c.lag for c in configs], list(labels), list(seeds), list(interfaces)))
        rows = [{"label": lab, "interface": key, "lag": c.lag, "seed": s,
                 "success": lab == "A" and (c.lag == 2 or s == 0)}  # A: all at lag 2, one seed at 4
                for c, lab, key in zip(configs, labels, interfaces) for s in seeds]
        return pd.DataFrame(rows)

    monkeypatch.setattr(relu, "run", fake_run)
    monkeypatch.setattr(relu, "lag_grid", lambda p, t, r, lags, keep: relu.grid_frame(
        [(relu.at_lag(relu.TrainConfig(task="recall", max_updates=4), lag), lab, "keras")
         for lab in ("A", "B") for lag in lags if keep(lab, "keras")]))
    p = {"lags": [2, 4, 8], "seeds": [0, 1], "top_up_seeds": [5, 6], "lag_ladder": True}
    runs = relu.lag_sweep(p, 0.9, {})
    assert calls[1] == ("relu: lag 4", [4], ["A"], [0, 1], ["keras"])  # B stopped after lag 2
    assert calls[2] == ("relu: lag 4, more seeds", [4], ["A"], [5, 6], ["keras"])
    assert calls[3][1:3] == ([8], ["A"])  # A succeeded at lag 4 (one seed): its ladder goes on
    assert len(runs[(runs["label"] == "A") & (runs["lag"] == 4)]) == 4


def test_the_planner_keeps_the_ladder_stops_it_knows_beyond_the_first_unrecorded_lag(monkeypatch):
    """Lag 2 is recorded (B learned nothing there: its ladder stopped), lag 4 is not: the plan has
    lag 2's runs once, and A alone at lags 4 and 8 with every seed and top-up seed."""
    def fake_run(configs, labels, seeds, desc, interfaces=None):
        return pd.DataFrame([{"label": lab, "interface": key, "lag": c.lag, "seed": s, "success": lab == "A"}
                             for c, lab, key in zip(configs, labels, interfaces) for s in seeds])

    monkeypatch.setattr(relu, "run", fake_run)
    monkeypatch.setattr(relu, "_cached_record", lambda c: {} if c.lag == 2 else None)
    monkeypatch.setattr(relu, "lag_grid", lambda p, t, r, lags, keep=lambda lab, key: True: relu.grid_frame(
        [(relu.at_lag(relu.TrainConfig(task="recall", max_updates=4, learning_rate=0.1 if lab == "A" else 0.2), lag),
          lab, "keras") for lab in ("A", "B") for lag in lags if keep(lab, "keras")]))
    p = {"lags": [2, 4, 8], "seeds": [0, 1], "top_up_seeds": [5, 6], "lag_ladder": True}
    planned = relu.planned_lag_runs(p, 0.9, {})
    by_lag = {lag: sorted((c.learning_rate, c.seed) for c in planned if c.lag == lag) for lag in (2, 4, 8)}
    assert by_lag[2] == [(0.1, 0), (0.1, 1), (0.2, 0), (0.2, 1)]
    assert by_lag[4] == by_lag[8] == [(0.1, s) for s in (0, 1, 5, 6)]  # B's ladder stopped at lag 2


def test_the_dry_run_reads_the_long_lags_from_the_ladders_runs_not_the_whole_grid(monkeypatch):
    """The long-lag comparison's planner sees only the runs the lag ladder plans: a cached run at a
    lag the ladder stopped before (as the comparison's own ``collapse_stopped`` runs are) is not a
    lag-sweep run, so it cannot add a configuration or a lag to the plan."""
    empty = relu.grid_frame([])
    base = relu.TrainConfig(task="recall", max_updates=4)
    grid = [(relu.at_lag(dataclasses.replace(base, learning_rate=lr), lag), lab, "keras")
            for lab, lr in (("A", 0.1), ("B", 0.2)) for lag in (2, 4)]
    ladder = [dataclasses.replace(c, seed=s) for c, lab, _ in grid if lab == "A" or c.lag == 2 for s in (0, 1)]
    seen = []
    for name in ("tuning_grid", "ablation_grid"):
        monkeypatch.setattr(relu, name, lambda *a, **k: empty)
    for name in ("memo_grid", "lr_grid", "width_grid"):
        monkeypatch.setattr(relu, name, lambda *a, **k: ([], []))
    monkeypatch.setattr(relu, "run", lambda *a, **k: pd.DataFrame())
    monkeypatch.setattr(relu, "choose_rates", lambda tuning: ({}, tuning))
    monkeypatch.setattr(relu, "_cached_record", lambda c: {"outcome": "success"})  # B at lag 4 too
    monkeypatch.setattr(relu, "lag_grid", lambda *a, **k: relu.grid_frame(grid))
    monkeypatch.setattr(relu, "planned_lag_runs", lambda *a, **k: list(ladder))
    monkeypatch.setattr(relu, "collapse_grid", lambda *a, **k: None)
    monkeypatch.setattr(relu.relu_collapse, "plan", lambda p, swept, *a: seen.extend(swept) or [])
    p = {"tuning_seeds": [0], "tuning_learning_rates": [0.1], "rnn_configs": [], "seeds": [0, 1],
         "ablation_seeds": [0]}
    monkeypatch.setattr(relu, "_pick", lambda params: params)
    monkeypatch.setattr(relu, "specs", lambda names: [])
    assert relu.plan(p, target_acc=0.9) == ladder
    assert sorted((lab, c.lag, c.seed) for c, lab, _ in seen) == [
        ("A", 2, 0), ("A", 2, 1), ("A", 4, 0), ("A", 4, 1), ("B", 2, 0), ("B", 2, 1)]  # not B at lag 4
    assert {level for _, _, level in seen} == {"keras"}
