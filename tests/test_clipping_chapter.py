"""The chapter "Gradient clipping" (rnnbook.experiments.clipping): decision rules on run tables
with a known answer, threshold matching, figures that draw what they are given, the known-gradient
tables, and the chapter executed with the quick preset."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from conftest import chapter_defaults, quick_params  # noqa: E402

import rnnbook  # noqa: E402,F401  (quiets TensorFlow first)
from rnnbook.experiments import clipping as clip  # noqa: E402
from rnnbook.experiments.common import ExperimentError  # noqa: E402

from conftest import ROOT  # noqa: E402


# ------------------------------------------------------------------ decision rules
@pytest.mark.parametrize("a, b, expected", [
    ((4, 4), (0, 4), "better"),     # Fisher one-sided p = 1/70
    ((0, 4), (4, 4), "worse"),
    ((4, 4), (1, 4), "ties"),       # p = 0.071
    ((2, 4), (2, 4), "ties"),
    ((5, 5), (1, 5), "better"),     # p = 0.024
    ((3, 4), (0, 0), "no runs"),
])
def test_compare_by_fisher_exact(a, b, expected):
    assert clip.compare(*a, *b) == expected


def test_compare_rejects_impossible_counts():
    with pytest.raises(ExperimentError, match="successes must lie"):
        clip.compare(5, 4, 0, 4)


@pytest.mark.parametrize("clipped, same, matched, diverged, verdict, words", [
    ((4, 4), (0, 4), (0, 4), 4, "supported", "better than both"),
    ((4, 4), (0, 4), (3, 4), 2, "not decided at this budget", "not than the matched plain step"),
    ((0, 4), (0, 4), (4, 4), 4, "contradicted", "worse than a control"),
    ((0, 4), (4, 4), (4, 4), 0, "not decided at this budget", "nothing to rescue"),
    ((2, 4), (0, 4), (1, 4), 4, "not decided at this budget", "within what 4 seeds"),
    ((0, 4), (2, 4), (0, 4), 1, "not decided at this budget", "nothing to rescue"),  # half succeed unclipped
])
def test_claim_clip_every_branch(clipped, same, matched, diverged, verdict, words):
    got, why = clip.claim_clip(clipped, same, matched, diverged)
    assert got == verdict
    assert words in why and f"{diverged} diverged" in why


def band_table(successes, diverged, runs=4, multiples=(0.5, 1.0, 2.0, 5.0, 10.0)):
    return pd.DataFrame({"multiple": list(multiples), "runs": runs, "successes": list(successes),
                         "diverged": list(diverged)})


@pytest.mark.parametrize("successes, diverged, verdict", [
    ((4, 4, 3, 2, 2), (0, 0, 0, 1, 2), "supported"),
    ((4, 4, 3, 2, 0), (0, 0, 0, 1, 4), "contradicted"),          # 4 of 4 diverged at 10x
    ((4, 4, 3, 1, 0), (0, 0, 0, 0, 0), "not decided at this budget"),  # censored, not diverged
    ((4, 4, 3, 2, 0), (0, 0, 0, 0, 3), "not decided at this budget"),  # 3 of 4: lower bound 0.30 < 0.5
])
def test_claim_band_every_branch(successes, diverged, verdict):
    assert clip.claim_band(band_table(successes, diverged))[0] == verdict


def test_claim_band_ignores_multiples_outside_the_band():
    table = band_table((0, 4, 4, 4, 4, 4, 0), (4, 0, 0, 0, 0, 0, 4), multiples=(0.1, 0.5, 1, 2, 5, 10, 100))
    assert clip.claim_band(table)[0] == "supported"
    assert clip.claim_band(band_table((0, 0), (4, 4), multiples=(0.1, 100)))[0] == "not decided at this budget"


def test_best_of_breaks_ties_by_updates_and_says_whether_it_is_decided():
    table = pd.DataFrame({"mode": ["clipnorm", "global_clipnorm", "clipvalue"], "runs": 4,
                          "successes": [3, 3, 0], "median_updates_to_success": [150.0, 100.0, math.nan]})
    assert clip.best_of(table, "mode") == ("global_clipnorm", False)
    table["successes"] = [0, 4, 0]
    assert clip.best_of(table, "mode") == ("global_clipnorm", True)


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


def test_matched_learning_rate_equalises_the_typical_step():
    norms = [10.0, 20.0, 30.0, np.nan]
    lr2 = clip.matched_learning_rate(0.1, 5.0, norms)  # every norm above c: lr * c / median
    assert lr2 == pytest.approx(0.1 * 5.0 / 20.0)
    assert clip.matched_learning_rate(0.1, 100.0, norms) == pytest.approx(0.1)  # c above every norm
    with pytest.raises(ExperimentError, match="no finite"):
        clip.matched_learning_rate(0.1, 1.0, [np.nan])


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
def fake_runs(outcomes, label="x", n_val=500):
    """A runs frame as run_sweep returns it, with given outcomes and grad norms."""
    rows = []
    for seed, outcome in enumerate(outcomes):
        checks = [0.9] if outcome == "success" else [0.1] if outcome == "censored" else []
        record = {"outcome": outcome, "updates": 10, "updates_to_success": 10 if outcome == "success" else None,
                  "sequences_seen": 640, "check_val_acc": checks, "config": {"seed": seed},
                  "steps": {"grad_norm": [1.0, 3.0], "loss": [2.0, 2.1]}}
        rows.append({"label": label, "seed": seed, "chance": 0.1, "n_val": n_val, "failed": False, "error": None,
                     "record": record})
    return pd.DataFrame(rows)


def test_outcomes_and_counts():
    runs = clip.outcomes(fake_runs(["success", "success", "censored", "diverged"]))
    assert runs["success"].tolist() == [True, True, False, False]
    assert runs["at_chance"].tolist() == [False, False, True, False]
    c = clip.counts(runs, "label").iloc[0]
    assert (c["runs"], c["successes"], c["diverged"], c["censored"], c["at_chance"]) == (4, 2, 1, 1, 1)
    assert c["success_rate"] == 0.5 and 0 < c["ci_lo"] < 0.5 < c["ci_hi"] < 1
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
    parts = [fake_runs(["success", "censored"]).assign(arm="unclipped", learning_rate=lr) for lr in (0.01, 0.03, 0.1)]
    parts += [fake_runs(["censored", "censored"]).assign(arm="matched step", learning_rate=0.02),
              fake_runs(["success", "success"]).assign(arm="clipped", learning_rate=0.1)]
    table = clip.counts(clip.outcomes(pd.concat(parts)), ["arm", "learning_rate"])
    ax = clip.fig_clip_vs_lr(table).axes[0]
    sizes = sorted(len(c.lines[0].get_xdata()) for c in ax.containers if hasattr(c, "lines"))
    assert sizes == [1, 1, 3]
    assert len(ax.get_legend().get_texts()) == 3


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


def test_modes_display_keeps_one_row_per_mode():
    runs = clip.outcomes(pd.concat([fake_runs(["success"], label=m) for m in ("none", "global_clipnorm")]))
    modes = clip.counts(runs, "label").rename(columns={"label": "mode"})
    modes.insert(1, "threshold", [math.nan, 1.0])
    modes.insert(2, "bound on the global norm", [math.inf, 1.0])
    shown = clip.modes_display(modes)
    assert shown["mode"].tolist() == ["none", "global_clipnorm"] and shown["threshold"].tolist() == ["none", "1"]


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
    from conftest import assert_chapter_glue

    executed = quick_book.notebooks(["chapters/clipping"])["chapters/clipping"]
    values = assert_chapter_glue(executed, "chapters/clipping",
                                 ["fig-wall", "fig-clip-traces", "fig-clip-band", "fig-clip-vs-lr", "tbl-clip-modes",
                                  "tbl-clip-known", "tbl-clip-optimizers", "tbl-clip-overflow",
                                  "tbl-clip-real-overflow"])
    from conftest import glued_value

    for key in ("claim_clip_md", "claim_band_md"):
        text = glued_value(values[key])[1]
        assert any(v in text for v in clip.VERDICTS), (key, text)
    assert "(fig-clip-threshold)=" in (ROOT / "chapters" / "clipping.md").read_text()
