"""The chapter "Gradient clipping" (rnnbook.experiments.clipping): decision rules on run tables
with a known answer, threshold matching, figures that draw what they are given, the known-gradient
tables, and the chapter executed with the quick preset."""
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
from rnnbook import verdicts  # noqa: E402
from rnnbook.experiments import clipping as clip  # noqa: E402
from rnnbook.experiments.clipping import steps as clip_steps  # noqa: E402
from rnnbook.experiments.common import ExperimentError  # noqa: E402

from conftest import ROOT  # noqa: E402


# ------------------------------------------------------------------ the explosion rule
def test_spike_ratio_is_against_the_median_before_the_update():
    assert verdicts.spike_ratio([1.0, 1.2, 0.8, 1.0, 0.9, 1.1, 12.0, 1.0]) == pytest.approx(12.0)
    assert verdicts.spike_ratio([1.0] * 5 + [9.9]) == pytest.approx(9.9)
    # a collapse (a dead ReLU network) is no spike, though its first norms are 10x its median
    collapse = [1.0, 0.9, 0.8, 0.7, 0.6] + [0.01] * 20
    assert verdicts.spike_ratio(collapse) <= 1.0 and max(collapse) / np.median(collapse) >= 10
    assert verdicts.spike_ratio([1.0] * 5 + [math.inf]) == math.inf
    assert math.isnan(verdicts.spike_ratio([5.0, 1.0]))  # too short to have a median before it
    # the same as the definition, computed the slow way
    norms = np.random.default_rng(0).lognormal(size=300)
    slow = max(norms[i] / np.median(norms[:i]) for i in range(verdicts.SPIKE_WARMUP, len(norms)))
    assert verdicts.spike_ratio(norms) == pytest.approx(slow)


@pytest.mark.parametrize("record, exploded", [
    ({"outcome": "censored", "steps": {"grad_norm": [1.0] * 6 + [10.0]}}, True),   # a spike of 10x
    ({"outcome": "censored", "steps": {"grad_norm": [1.0] * 6 + [9.0]}}, False),
    ({"outcome": "diverged", "steps": {"grad_norm": [1.0, 1.1]}}, True),            # divergence
    ({"outcome": "censored", "failed": True, "steps": {}}, True),                   # a run that raised
    ({"outcome": "success", "steps": {"grad_norm": [1.0] * 20}}, False),
])
def test_exploded_is_a_spike_or_a_divergence(record, exploded):
    assert verdicts.exploded(record) is exploded


def search_runs(ratios):
    """Runs (column ``record``) whose gradient norms spike to the given ratios."""
    return pd.DataFrame({"record": [{"outcome": "censored", "steps": {"grad_norm": [1.0] * 6 + [r]}}
                                    for r in ratios]})


def test_explosion_search_stops_at_the_first_rate_where_half_the_seeds_explode():
    tried = []
    table, rate, met, runs = clip_steps.explosion_search(
        [0.3, 0.01, 0.03, 0.1], lambda x: tried.append(x) or search_runs({0.01: [2, 3, 2, 11], 0.03: [12, 2, 30, 4],
                                                                           0.1: [50] * 4}[x]))
    assert tried == [0.01, 0.03] and rate == 0.03 and met
    assert table["exploded"].tolist() == [1, 2] and table["largest spike ratio"].tolist() == [11.0, 30.0]
    assert sorted(runs["learning_rate"].unique()) == [0.01, 0.03]


def test_a_setting_that_never_explodes_is_premise_not_met():
    table, rate, met, _ = clip_steps.explosion_search([0.01, 0.1], lambda x: search_runs([2, 3, 4, 9.9]))
    assert not met and rate == 0.1 and len(table) == 2
    why = clip_steps.premise_why(table, 4)
    assert "9.9" in why and "No learning rate of the grid" in why
    arms = {"none": fake_runs(["censored"] * 12), "global_clipnorm": fake_runs(["success"] * 12)}
    v = clip.claims(arms, band_frame({1.0: ["success"] * 12}), met, why)
    assert v["clip"].word == verdicts.PREMISE_NOT_MET and v["clip"].why == why
    assert v["clip_step"].word == verdicts.NOT_DECIDED  # no control trained here
    assert v["band"].word == verdicts.SUPPORTED  # the band needs no explosion


# ------------------------------------------------------------------ the verdicts, one rule for every branch
def band_frame(outcomes_by_multiple):
    return pd.concat([fake_runs(o).assign(multiple=m) for m, o in outcomes_by_multiple.items()], ignore_index=True)


def arms_of(clipped, none, matched=None, modes=None):
    arms = {"none": fake_runs(none), "global_clipnorm": fake_runs(clipped)}
    if matched is not None:
        arms["matched"] = fake_runs(matched)
    for mode, outs in (modes or {}).items():
        arms[mode] = fake_runs(outs)
    return arms


@pytest.mark.parametrize("clipped, none, word", [
    (["success"] * 8 + ["censored"] * 4, ["censored"] * 12, verdicts.SUPPORTED),        # clipped better
    (["success"] * 6 + ["censored"] * 6, ["success"] * 6 + ["censored"] * 6, verdicts.NO_DIFFERENCE),  # a tie
    (["censored"] * 12, ["success"] * 8 + ["censored"] * 4, verdicts.CONTRADICTED),     # clipped worse
    (["success"] * 4 + ["censored"] * 8, ["censored"] * 12, verdicts.NO_DIFFERENCE),    # 4 of 12 vs 0: p = 0.09
])
def test_clip_claim_is_symmetric(clipped, none, word):
    v = clip.claims(arms_of(clipped, none, matched=none), band_frame({1.0: clipped}), True, "")
    assert v["clip"].word == word and v["clip_step"].word == word and v["band"].word == word
    # the same evidence the other way round gives the opposite verdict
    flipped = clip.claims(arms_of(none, clipped, matched=clipped), band_frame({1.0: none}), True, "")["clip"].word
    opposite = {verdicts.SUPPORTED: verdicts.CONTRADICTED, verdicts.CONTRADICTED: verdicts.SUPPORTED}
    assert flipped == opposite.get(word, word)


def test_a_censored_still_improving_loser_demotes_the_clip_claim():
    clipped = fake_runs(["success"] * 8 + ["censored"] * 4)
    none = fake_runs(["censored"] * 12, checks=[0.1, 0.2, 0.3, 0.4, 0.45])
    v = clip.claims({"none": none, "global_clipnorm": clipped}, band_frame({1.0: ["success"]}), True, "")
    assert v["clip"].word == verdicts.NOT_DECIDED and "still improving" in v["clip"].why


def test_the_band_claim_uses_only_multiples_inside_the_band():
    none = ["censored"] * 12
    band = band_frame({0.1: ["censored"] * 12, 0.5: ["success"] * 9 + ["censored"] * 3, 10.0: none, 100.0: none})
    v = clip.claims(arms_of(["success"] * 12, none), band, True, "")["band"]
    assert v.word == verdicts.SUPPORTED and "Holm-adjusted over 2 points" in v.test
    v = clip.claims(arms_of(["success"] * 12, none), band_frame({0.1: none, 100.0: none}), True, "")["band"]
    assert v.word == verdicts.NOT_DECIDED


def test_the_mode_claim_compares_global_clipnorm_with_each_other_option():
    good, bad = ["success"] * 10 + ["censored"] * 2, ["censored"] * 12
    v = clip.claims(arms_of(good, bad, modes={"clipnorm": bad, "clipvalue": bad}), band_frame({1.0: good}), True, "")
    assert v["mode"].word == verdicts.SUPPORTED
    v = clip.claims(arms_of(good, bad, modes={"clipnorm": good, "clipvalue": good}), band_frame({1.0: good}), True, "")
    assert v["mode"].word == verdicts.NO_DIFFERENCE
    assert clip.claims(arms_of(good, bad), band_frame({1.0: good}), True, "")["mode"].word == verdicts.NOT_DECIDED


def test_advice_follows_the_mode_verdict():
    arms = clip.counts(clip.outcomes(pd.concat([fake_runs(["success"]).assign(arm=a) for a in
                                                ("no clipping", "global_clipnorm", "clipvalue, step-matched")])), "arm")
    assert clip.advice_clip_mode(arms, verdicts.Verdict(verdicts.SUPPORTED, "")).startswith("Use `global_clipnorm`")
    assert "did better than `global_clipnorm`" in clip.advice_clip_mode(arms, verdicts.Verdict(verdicts.CONTRADICTED,
                                                                                                ""))
    assert "No option was shown" in clip.advice_clip_mode(arms, verdicts.Verdict(verdicts.NO_DIFFERENCE, ""))


# ------------------------------------------------------------------ threshold matching
def test_matched_thresholds_bound_the_global_norm_of_a_real_clip():
    """On a known model (3 variables, 2 + 4 + 3 parameters), each matched threshold applied by Keras
    to a gradient far above it leaves a global norm at most the bound, and exactly the bound when
    every variable (element) is at the threshold."""
    from rnnbook import clipping

    grads = [np.full(2, 50.0), np.full((2, 2), -70.0), np.full(3, 90.0)]
    t = clip.matched_thresholds(2.0, n_vars=3, n_params=9)
    assert t == {"global_clipnorm": 2.0, "clipnorm": pytest.approx(2.0 / math.sqrt(3)),
                 "clipvalue": pytest.approx(2.0 / 3.0)}
    for mode, c in t.items():
        out = np.concatenate([np.ravel(g) for g in clipping.keras_clipped(grads, mode, c)])
        assert np.linalg.norm(out) == pytest.approx(2.0, rel=1e-5), mode
    small = [np.array([1e-3, 0.0]), np.zeros((2, 2)), np.array([0.0, 0.0, 5.0])]
    for mode, c in t.items():
        out = np.concatenate([np.ravel(g) for g in clipping.keras_clipped(small, mode, c)])
        assert np.linalg.norm(out) <= 2.0 + 1e-6, mode


def test_matched_thresholds_reject_bad_input():
    with pytest.raises(ExperimentError, match="n_vars"):
        clip.matched_thresholds(1.0, n_vars=10, n_params=3)
    with pytest.raises(ExperimentError, match="positive"):
        clip.matched_thresholds(float("inf"), 2, 4)


def test_parameter_counts_of_the_exploding_setting():
    cfg = clip.exploding_config(quick_params("clipping"))
    n_vars, n_params = clip.parameter_counts(cfg)
    model = cfg.model(10)
    assert n_vars == len(model.trainable_variables)
    assert n_params == sum(v.numpy().size for v in model.trainable_variables)
    assert cfg.seq_len == cfg.lag + 1 and cfg.optimizer == "sgd" and cfg.recurrent_initializer == "identity"


def test_missing_or_bad_parameters_are_named():
    p = quick_params("clipping")
    del p["pilot_updates"]
    with pytest.raises(ExperimentError, match="pilot_updates"):
        clip.pick(p)
    with pytest.raises(ExperimentError, match="clip_lag"):
        clip.pick(dict(quick_params("clipping"), clip_lag=0))


# ------------------------------------------------------------------ run tables
def fake_runs(outcomes, label="x", n_val=500, checks=None):
    """A runs frame as run_sweep returns it (with :func:`outcomes`' columns), with given outcomes,
    validation checks and grad norms."""
    rows = []
    for seed, outcome in enumerate(outcomes):
        acc = (checks if checks is not None else [0.9] if outcome == "success" else
               [0.1] if outcome == "censored" else [])
        record = {"outcome": outcome, "updates": 10, "updates_to_success": 10 if outcome == "success" else None,
                  "sequences_seen": 640, "check_val_acc": list(acc), "config": {"seed": seed, "n_val": n_val},
                  "chance": 0.1, "diverged": outcome == "diverged",
                  "steps": {"grad_norm": [1.0, 3.0], "loss": [2.0, 2.1]}}
        rows.append({"label": label, "seed": seed, "chance": 0.1, "n_val": n_val, "failed": False, "error": None,
                     "record": record})
    return clip.outcomes(pd.DataFrame(rows))


def test_outcomes_and_counts_with_failures_by_reason():
    runs = fake_runs(["success", "success", "censored", "diverged"])
    runs.at[2, "record"] = dict(runs.at[2, "record"], check_val_acc=[0.1, 0.2, 0.3, 0.4, 0.5])  # still improving
    dead = fake_runs(["censored"], checks=[0.3, 0.3])
    dead.at[0, "record"] = dict(dead.at[0, "record"], steps={"max_abs_state": [0.5, 0.0, 0.0],
                                                             "rnn_grad_norm": [1.0, 0.0, 0.0]},
                                config={"n_val": 500, "check_every": 2})
    runs = pd.concat([runs, dead, fake_runs(["censored"])], ignore_index=True)
    c = clip.counts(runs, "label").iloc[0]
    assert (c["runs"], c["successes"], c["diverged"], c["censored"]) == (6, 2, 1, 3)
    assert (c["dead"], c["never above chance"], c["still improving"], c["exploded"]) == (1, 1, 1, 1)
    assert c["success_rate"] == pytest.approx(2 / 6) and 0 < c["ci_lo"] < c["success_rate"] < c["ci_hi"] < 1
    assert c["median_updates_to_success"] == 10


def test_average_norm_skips_diverged_runs_and_explains_an_unstable_pilot():
    pilot = clip.outcomes(fake_runs(["censored", "diverged"]))
    pilot.at[1, "record"] = dict(pilot.at[1, "record"], steps={"grad_norm": [1e9]})
    assert clip.average_norm(pilot) == pytest.approx(2.0)
    with pytest.raises(ExperimentError, match="pilot_learning_rate"):
        clip.average_norm(clip.outcomes(fake_runs(["diverged"])))


# ------------------------------------------------------------------ figures draw what they are given
def test_fig_clip_band_draws_one_point_per_multiple():
    band = clip.counts(clip.outcomes(pd.concat([fake_runs(["success", "censored"]).assign(multiple=m)
                                                for m in (0.5, 1.0, 2.0, 5.0, 10.0)])), "multiple")
    fig = clip.fig_clip_band(band, (1, 4))
    ax = fig.axes[0]
    points = [c for c in ax.containers if hasattr(c, "lines")]
    assert len(points) == 1 and len(points[0].lines[0].get_xdata()) == 5
    assert list(points[0].lines[0].get_xdata()) == [0.5, 1.0, 2.0, 5.0, 10.0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "no clipping (1 of 4)" in texts and any("Pascanu" in t for t in texts)


def test_fig_clip_vs_lr_draws_each_arm():
    parts = [fake_runs(["success", "censored"]).assign(arm="pilot, unclipped", learning_rate=lr)
             for lr in (0.01, 0.03, 0.1)]
    parts += [fake_runs(["censored", "censored"]).assign(arm="no clipping", learning_rate=0.1),
              fake_runs(["censored", "censored"]).assign(arm="no clipping, matched step", learning_rate=0.02),
              fake_runs(["success", "success"]).assign(arm="global_clipnorm", learning_rate=0.1)]
    table = clip.counts(pd.concat(parts), ["arm", "learning_rate"])
    ax = clip.fig_clip_vs_lr(table).axes[0]
    sizes = sorted(len(c.lines[0].get_xdata()) for c in ax.containers if hasattr(c, "lines"))
    assert sizes == [1, 1, 1, 3]
    assert len(ax.get_legend().get_texts()) == 4


def test_fig_clip_traces_draws_a_line_per_mode_and_marks_divergence():
    runs = []
    for mode, outcome in (("none", "diverged"), ("global_clipnorm", "success")):
        part = fake_runs([outcome, outcome], label=mode)
        part["diverged"] = outcome == "diverged"
        runs.append(part)
    fig = clip.fig_clip_traces(pd.concat(runs, ignore_index=True))
    ax1 = fig.axes[0]
    markers = [ln for ln in ax1.get_lines() if ln.get_marker() == "X" and len(ln.get_xdata())]
    assert len(markers) == 2  # the two diverged runs
    assert [t.get_text() for t in ax1.get_legend().get_texts()][:2] == ["none", "global_clipnorm"]


def test_arms_display_keeps_one_row_per_arm():
    arms = clip.counts(pd.concat([fake_runs(["success"]).assign(arm=a) for a in ("no clipping", "global_clipnorm")]),
                       "arm")
    arms.insert(1, "threshold", [math.nan, 1.0])
    arms.insert(2, "learning rate", [0.03, 0.03])
    shown = clip.arms_display(arms)
    assert shown["arm"].tolist() == ["no clipping", "global_clipnorm"] and shown["threshold"].tolist() == ["none", "1"]
    assert {"dead", "never above chance", "still improving", "exploded"} <= set(shown.columns)


# ------------------------------------------------------------------ the measured step
@pytest.mark.parametrize("mode", ["none", "clipnorm", "global_clipnorm", "clipvalue"])
def test_clipped_gradient_is_what_keras_does(mode):
    from rnnbook import clipping

    rng = np.random.default_rng(1)
    grads = [rng.normal(size=(3, 4)) * 2, rng.normal(size=5) * 0.1, rng.normal(size=2) * 5]
    for c in (0.05, 0.7, 3.0, 100.0):
        want = clipping.keras_clipped(grads, mode, c)
        got = clip_steps.clipped_gradient(grads, mode, c)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6)


def test_step_stats_on_known_gradients():
    grads = [np.array([3.0, 4.0]), np.array([0.0, 0.1])]
    s = clip_steps.step_stats(grads, "clipvalue", 0.5)
    assert s["clip_share"] == 0.5 and s["clipped_norm"] == pytest.approx(math.sqrt(0.5 ** 2 * 2 + 0.01))
    assert s["cosine"] < 0.99  # element-wise clipping turns the gradient
    s = clip_steps.step_stats(grads, "global_clipnorm", 1.0)
    assert s["clip_share"] == 1.0 and s["clipped_norm"] == pytest.approx(1.0) and s["cosine"] == pytest.approx(1.0)
    assert clip_steps.step_stats(grads, "clipnorm", 1.0)["clip_share"] == 0.5
    assert clip_steps.step_stats(grads, "none", 1.0)["clip_share"] == 0.0


def test_step_table_rows_and_matching():
    measured = [{"update_norm": [1.0, 2.0, 3.0], "grad_norm": [5.0] * 3, "clipped_norm": [1.0] * 3,
                 "cosine": [1.0] * 3, "clip_share": [1.0, 0.0, 1.0]}, {"update_norm": [np.nan, 4.0]}]
    cfg = clip.exploding_config(quick_params("clipping"))
    row = clip_steps.step_row("arm", dataclasses.replace(cfg, clip_mode="clipvalue", clip_threshold=0.01),
                              measured, reference=1.25)
    assert row["median update norm"] == 2.5 and row["update / global_clipnorm's"] == 2.0
    assert row["share clipped"] == pytest.approx(2 / 3) and row["updates measured"] == 5 and row["threshold"] == 0.01
    assert clip.step_matched(0.01, reference=2.0, own=4.0) == 0.005
    assert clip.step_matched(0.01, reference=2.0, own=0.0) == 0.01  # nothing measured: unchanged
    # a threshold whose step is not proportional to it is rescaled until within the tolerance
    step_of = lambda c: min(c, 0.5) * 2  # noqa: E731  (clips only below 0.5)
    seen = []

    def measure(config):
        seen.append(config.clip_threshold)
        return [{"update_norm": [step_of(config.clip_threshold)]}]

    make = lambda x: dataclasses.replace(cfg, clip_mode="clipvalue", clip_threshold=x)  # noqa: E731
    config, m = clip.match_step(make, 0.1, measure(make(0.1)), reference=0.8, measure=measure)
    assert abs(clip_steps.median_step(m) / 0.8 - 1) <= clip.MATCH_TOLERANCE and config.clip_threshold == 0.4
    config, _ = clip.match_step(make, 0.1, measure(make(0.1)), reference=5.0, measure=measure)  # out of reach
    assert len(seen) == 2 + 1 + clip.MATCH_ROUNDS  # the rounds are bounded


def test_measure_steps_replays_the_criterion_run():
    """The step probe's first updates are the run's first updates (same gradient norms), and the
    first update of SGD from rest is the learning rate times the clipped gradient."""
    from rnnbook import training

    cfg = dataclasses.replace(clip.exploding_config(quick_params("clipping")), max_updates=3, check_every=3,
                              target_acc=1.0, clip_mode="global_clipnorm", clip_threshold=0.05, learning_rate=0.1)
    probe = clip_steps.measure_steps(cfg)
    run = training.train(cfg)
    np.testing.assert_allclose(probe["grad_norm"], run["steps"]["grad_norm"][:3], rtol=1e-5)
    assert probe["update_norm"][0] == pytest.approx(0.1 * min(0.05, probe["grad_norm"][0]), rel=1e-3)
    assert probe["clip_share"][0] == 1.0 and all(len(v) == 3 for v in probe.values())


# ------------------------------------------------------------------ known gradients (exact, cheap)
def test_clip_modes_table_shows_what_each_option_does():
    t = clip.clip_modes_table(1.0).set_index("Keras option")
    assert t.loc["global_clipnorm=1", "cosine with unclipped"] == pytest.approx(1.0, abs=1e-6)
    assert t.loc["global_clipnorm=1", "global norm"] == pytest.approx(1.0, abs=1e-5)
    assert t.loc["clipnorm=1", "‖weight‖"] == pytest.approx(1.0, abs=1e-5)
    assert t.loc["clipnorm=1", "‖bias‖"] == pytest.approx(0.5, abs=1e-6)  # |(0.3, -0.4)| passes untouched
    assert t.loc["clipnorm=1", "global norm"] == pytest.approx(math.sqrt(1.25), abs=1e-5)
    assert t.loc["clipvalue=1", "largest |element|"] == pytest.approx(1.0)
    assert t.loc["none", "global norm"] == pytest.approx(math.sqrt(30**2 + 40**2 + 5**2 + 0.3**2 + 0.4**2))


def test_sgd_adam_spike_and_overflow_tables():
    spike = clip.optimizer_spike_table(threshold=1.0, spike=1000.0).set_index(["optimizer", "clipping"])
    assert spike.loc[("SGD", "no clipping"), "spike / before"] == pytest.approx(1000.0, rel=1e-3)
    assert spike.loc[("SGD", "global_clipnorm=1"), "spike / before"] == pytest.approx(1.0, rel=1e-3)
    assert spike.loc[("Adam", "no clipping"), "after / before"] < spike.loc[("Adam", "global_clipnorm=1"),
                                                                            "after / before"]
    ov = clip.overflow_table(1.0).set_index(["gradient", "Keras option"])
    assert ov.loc[("one element is Inf", "global_clipnorm=1"), "_finite_share"] == 0.0
    assert ov.loc[("one element is Inf", "clipvalue=1"), "_finite_share"] == 1.0
    assert ov.loc[("one element is NaN", "clipvalue=1"), "_finite_share"] == pytest.approx(5 / 6)
    assert clip.adam_scale_invariance()["max_relative_difference"] < 1e-3
    assert clip.overflow_gain(21) == pytest.approx(10 ** 4.0)


# ------------------------------------------------------------------ the chapter, quick preset




def test_chapter_declares_exactly_the_module_parameters():
    assert set(chapter_defaults("clipping")) == set(clip.PARAMS)


@pytest.mark.slow
def test_quick_chapter_executes_and_glues_every_value(quick_book):
    """The chapter as the quick build executed it: every glue key the prose pastes is glued and
    not empty."""
    from conftest import assert_chapter_glue, glued_value

    executed = quick_book.notebooks(["chapters/clipping"])["chapters/clipping"]
    values = assert_chapter_glue(executed, "chapters/clipping",
                                 ["fig-wall", "fig-clip-traces", "fig-clip-band", "fig-clip-vs-lr", "tbl-clip-modes",
                                  "tbl-clip-step-sizes", "tbl-clip-explosion", "tbl-clip-known",
                                  "tbl-clip-optimizers", "tbl-clip-overflow", "tbl-clip-real-overflow"])
    for key in ("claim_clip_md", "claim_clip_step_md", "claim_band_md", "claim_mode_md"):
        text = glued_value(values[key])[1]
        assert any(v in text for v in verdicts.VERDICTS), (key, text)
    page = (ROOT / "chapters" / "clipping.md").read_text()
    assert "(fig-clip-threshold)=" in page and "(sec-clip-explosion)=" in page
    assert "4 of 4" not in page and "0 of 4" not in page
