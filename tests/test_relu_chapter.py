"""The chapter "When ReLU helps": its statistics, decision rules, verdicts and figures, on small
synthetic run tables whose answer is known, and the criterion protocol it trains with."""
import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from rnnbook.experiments import relu
from rnnbook.experiments.common import role_label, wilson_interval

TANH, RELU, IRNN = role_label("tanh"), role_label("relu"), role_label("irnn")


def runs_table(spec):
    """Runs from ``{(label, scale, lag): [outcome, ...]}`` (outcome: 's'uccess, 'c'ensored, 'd'iverged)."""
    rows = []
    for (label, scale, lag), outcomes in spec.items():
        for seed, o in enumerate(outcomes):
            rows.append({"label": label, "feature_scale": scale, "lag": lag, "seed": seed,
                         "outcome": {"s": "success", "c": "censored", "d": "diverged"}[o],
                         "success": o == "s", "diverged": o == "d", "updates": 100 if o == "s" else 400,
                         "ever_above_chance": o == "s", "chance": 0.1})
    return pd.DataFrame(rows)


def test_success_table_counts_and_wilson_interval():
    t = relu.success_table(runs_table({(TANH, 1.0, 2): "sssc", (TANH, 1.0, 5): "cccd"}))
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


def test_reach_is_largest_lag_with_enough_successes():
    t = relu.success_table(runs_table({(TANH, 1.0, 2): "ssss", (TANH, 1.0, 5): "sssc",
                                       (TANH, 1.0, 10): "sscc", (TANH, 1.0, 20): "ssss"}))
    assert relu.reach(t, TANH, 1.0) == 20  # the rule is "largest lag", not "first failure"
    t = relu.success_table(runs_table({(TANH, 1.0, 2): "sscc"}))
    assert math.isnan(relu.reach(t, TANH, 1.0))
    assert relu.reach_table(t).iloc[0]["features x 1"] == "none"


@pytest.mark.parametrize("a, b, expected", [
    ("ssss", "cccc", "better"), ("cccc", "ssss", "worse"), ("sscc", "sccc", "ties"),
])
def test_compare_points_single_point(a, b, expected):
    t = relu.success_table(runs_table({(RELU, 1.0, 2): a, (TANH, 1.0, 2): b}))
    assert relu.compare_points(t, RELU, TANH) == expected


def test_compare_points_mixed_and_missing():
    t = relu.success_table(runs_table({(RELU, 1.0, 2): "ssss", (TANH, 1.0, 2): "cccc",
                                       (RELU, 1.0, 5): "cccc", (TANH, 1.0, 5): "ssss"}))
    assert relu.compare_points(t, RELU, TANH) == "mixed"
    assert relu.compare_points(t, RELU, "GRU") == "not compared"


def numbers_for(spec, lr_fail=None):
    t = relu.success_table(runs_table(spec))
    out = {"table": t, "lag": runs_table(spec), "params": {"lags": sorted({k[2] for k in spec})},
           "drive": pd.DataFrame({"label": [TANH], "feature_scale": [1.0], "saturated_share": [0.5],
                                  "input_to_recurrent": [3.0], "feature_rms": [0.4]}),
           "memo": pd.DataFrame({"label": ["fresh sequences"], "record": [{"check_train_acc": [0.5],
                                                                         "check_val_acc": [0.5]}]}),
           "lr": pd.DataFrame(lr_fail or {"label": [TANH, RELU], "clip_mode": ["none", "none"],
                                          "diverged": [False, True], "ever_above_chance": [True, True],
                                          "success": [True, False]}),
           "width": pd.DataFrame({"label": [TANH], "units": [64], "diverged": [False], "ever_above_chance": [True],
                                  "success": [True], "max_abs_state": [1.0]})}
    return relu.numbers(out)


def test_verdicts_relu_memory_branches():
    further = numbers_for({(TANH, 1.0, 2): "ssss", (TANH, 1.0, 5): "cccc",
                           (RELU, 1.0, 2): "ssss", (RELU, 1.0, 5): "ssss"})
    assert relu.verdicts(further)["relu_memory"][0] == "supported"
    shorter = numbers_for({(TANH, 1.0, 2): "ssss", (TANH, 1.0, 5): "ssss",
                           (RELU, 1.0, 2): "ssss", (RELU, 1.0, 5): "cccc"})
    assert relu.verdicts(shorter)["relu_memory"][0] == "contradicted"
    nothing = numbers_for({(TANH, 1.0, 2): "cccc", (RELU, 1.0, 2): "cccc"})
    assert relu.verdicts(nothing)["relu_memory"][0] == "not decided at this budget"
    depends = numbers_for({(TANH, 1.0, 2): "ssss", (TANH, 1.0, 5): "cccc", (RELU, 1.0, 2): "ssss",
                           (RELU, 1.0, 5): "ssss", (TANH, 0.1, 2): "ssss", (TANH, 0.1, 5): "ssss",
                           (RELU, 0.1, 2): "ssss", (RELU, 0.1, 5): "cccc"})
    assert relu.verdicts(depends)["relu_memory"][0] == "not decided at this budget"


def test_verdicts_short_gated_interface_and_stability():
    n = numbers_for({(TANH, 1.0, 2): "cccc", (RELU, 1.0, 2): "ssss", ("GRU", 1.0, 2): "ssss",
                     (TANH, 0.1, 2): "ssss", (RELU, 0.1, 2): "ssss", ("GRU", 0.1, 2): "ssss"})
    v = relu.verdicts(n)
    assert v["relu_short"][0] == "supported"
    assert v["interface"][0] == "supported"  # tanh: 0 of 4 at x 1, 4 of 4 at x 0.1
    assert "tanh + orthogonal at lag 2" in v["interface"][1]
    assert v["relu_unstable"][0] == "supported"  # ReLU failed 1 of 1 unclipped, tanh 0 of 1
    worse = numbers_for({(TANH, 1.0, 2): "ssss", (RELU, 1.0, 2): "cccc", ("GRU", 1.0, 2): "cccc"})
    vw = relu.verdicts(worse)
    assert vw["relu_short"][0] == "contradicted"
    assert vw["gated"][0] == "contradicted"
    assert vw["interface"][0] == "not decided at this budget"  # one level only
    same = numbers_for({(TANH, 1.0, 2): "sssc", (TANH, 0.1, 2): "ssss"})
    assert relu.verdicts(same)["interface"][0] == "contradicted"
    none = numbers_for({(TANH, 1.0, 2): "cccc", (TANH, 0.1, 2): "cccc"})
    assert relu.verdicts(none)["interface"][0] == "not decided at this budget"


def test_failed_is_symmetric():
    runs = pd.DataFrame({"diverged": [True, False, False], "ever_above_chance": [True, False, True]})
    assert relu.failed(runs).tolist() == [True, True, False]


def test_chance_bar_and_above_chance_ever():
    assert relu.chance_bar(0.1, 100) == pytest.approx(0.1 + 3 * math.sqrt(0.09 / 100))
    rec = {"chance": 0.1, "config": {"n_val": 100}, "check_val_acc": [0.1, 0.25]}
    assert relu.above_chance_ever(rec)
    assert not relu.above_chance_ever(dict(rec, check_val_acc=[0.1, 0.15]))


def test_fig_interface_scale_draws_one_line_per_configuration_and_panel():
    t = relu.success_table(runs_table({(TANH, 1.0, 2): "ssss", (TANH, 1.0, 5): "sccc", (RELU, 1.0, 2): "sscc",
                                       (RELU, 1.0, 5): "cccc", (TANH, 0.1, 2): "ssss", (TANH, 0.1, 5): "ssss",
                                       (RELU, 0.1, 2): "ssss", (RELU, 0.1, 5): "sscc"}))
    fig = relu.fig_interface_scale(t, 0.9)
    assert len(fig.axes) == 2
    expected = {1.0: [[1.0, 0.25], [0.5, 0.0]], 0.1: [[1.0, 1.0], [1.0, 0.5]]}
    for ax, scale in zip(fig.axes, (1.0, 0.1)):
        assert len(ax.containers) == 2  # one error-bar line per configuration
        ys = [np.asarray(c.lines[0].get_ydata(), float).tolist() for c in ax.containers]
        assert ys == expected[scale]  # success rates per lag, from the run table
    legend = fig.axes[-1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [TANH, RELU]


def test_fig_updates_to_success_draws_every_run():
    runs = runs_table({(TANH, 1.0, 2): "ssss", (RELU, 1.0, 2): "sccd"})
    fig = relu.fig_updates_to_success(runs, 400)
    points = sum(len(c.get_offsets()) for c in fig.axes[0].collections)
    assert points == 8


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
               "fig-memorisation", "fig-lr-stability"]
    nb = quick_book.notebooks([doc])[doc]
    values = assert_chapter_glue(nb, doc, anchors)
    for anchor in anchors:
        assert f"{anchor}-data" in referenced(nb), f"the caption of {anchor} has no data link"
        assert f"rnnbook-file:{anchor}.csv" in values
    page = quick_book.page(doc)
    for old in ("fig-accuracy-vs-lag", "fig-recall-curves", "fig-count-task", "fig-width", "tbl-relu-summary"):
        assert f'id="{old}"' in page, f"the shared anchor {old} no longer resolves on the page"


def test_exploding_claim_counts_divergences_not_runs_that_never_learned():
    spec = {(TANH, 1.0, 2): "ssss", (RELU, 1.0, 2): "ssss"}
    stuck = {"label": [TANH, RELU], "clip_mode": ["none", "none"], "diverged": [True, False],
             "ever_above_chance": [True, False], "success": [False, False]}
    v = relu.verdicts(numbers_for(spec, lr_fail=stuck))
    assert v["relu_unstable"][0] == "contradicted"  # tanh diverged, ReLU only never learned
    assert "failed (diverged or never above chance): ReLU + orthogonal 1, tanh 1" in v["relu_unstable"][1]
    same = dict(stuck, diverged=[False, False])
    assert relu.verdicts(numbers_for(spec, lr_fail=same))["relu_unstable"][0] == "not decided at this budget"


def test_fig_stability_draws_each_setting_in_its_configuration_colour():
    from rnnbook import plots

    lr = pd.DataFrame({"label": [TANH] * 4 + [RELU] * 4, "clip_mode": ["none", "none", "global_clipnorm",
                                                                      "global_clipnorm"] * 2,
                       "learning_rate": [0.01, 1.0] * 4, "diverged": [False, True, False, False] * 2,
                       "ever_above_chance": [True] * 8})
    width = pd.DataFrame({"label": [TANH, TANH, RELU, RELU], "units": [64, 1024] * 2,
                          "diverged": [False, False, False, True], "ever_above_chance": [True, False, True, True]})
    fig = relu.fig_stability(lr, width)
    left, right = fig.axes
    assert len(left.containers) == 4 and len(right.containers) == 2
    tanh_line = left.containers[0].lines[0]
    assert list(np.asarray(tanh_line.get_ydata(), float)) == [0.0, 1.0]  # one run per point: 0/1, 1/1 failed
    assert matplotlib.colors.to_hex(tanh_line.get_color()) == matplotlib.colors.to_hex(
        plots.config_style(TANH)["color"])
    assert list(np.asarray(right.containers[0].lines[0].get_ydata(), float)) == [0.0, 1.0]


def test_the_dry_run_plans_exactly_the_runs_the_quick_build_trained(quick_book):
    """``plan`` (what ``rnnbook build --dry-run`` counts) uses the build's success target once the
    encoder's ceiling is cached, so every planned run is found in the run cache."""
    from conftest import quick_params
    from rnnbook import sweeps
    from rnnbook.book.chapter_cache import src_digest

    assert quick_book.code == 0, quick_book.output
    if src_digest() != quick_book.src_digest:  # only in a checkout shared with people editing src/
        pytest.skip("src/rnnbook changed since the quick build: its cached runs have other keys")
    params = quick_params("relu")
    configs = relu.plan(params)
    target = relu.target_of(relu._pick(params), relu.encoder_ceiling(params["ceiling_epochs"], compute=False))
    assert {c.target_acc for c in configs} == {target, 1.0} and target != relu.PLANNING_TARGET  # 1.0: memorisation
    missing = [c for c in configs if not sweeps.is_cached(c, sweeps.RUNS_DIR)]
    assert not missing, f"{len(missing)} of {len(configs)} planned runs are not in the cache, e.g. {missing[0]}"
