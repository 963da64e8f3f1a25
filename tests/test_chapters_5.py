"""Issue 5: the trained chapters "When ReLU helps", "Gradient clipping", "Recommendations"
and the short answer on the front page.

Fast tests check :mod:`rnnbook.experiments` on small synthetic frames and on two tiny
real runs (one of which is made to diverge), above all that diverged runs are counted,
never dropped. The slow ones read the session's quick build (``quick_book``) and check
that every figure and table anchor and every value the prose refers to is glued and
non-empty, and that the front page pastes its values and headline figure.
"""
from __future__ import annotations

import dataclasses
import html
import math
import re

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import rnnbook  # noqa: E402,F401  (quiets TensorFlow first)
from rnnbook import experiments as ex, sweeps
from rnnbook.book import build, params  # noqa: E402

from conftest import ROOT, assert_chapter_glue, glued
CHAPTERS = ("chapters/relu", "chapters/clipping", "chapters/recommendations")
ANCHORS = {
    "chapters/relu": ["fig-accuracy-vs-lag", "fig-count-task", "fig-lr-stability", "fig-width",
                      "tbl-relu-summary", "fig-recall-curves"],
    "chapters/clipping": ["fig-wall", "fig-clip-traces", "fig-clip-threshold", "tbl-clip-modes",
                          "tbl-clip-optimizers", "tbl-clip-overflow", "tbl-clip-real-overflow"],
    "chapters/recommendations": ["fig-reco-map"],
}


# ------------------------------------------------------------------ configurations and grids
def test_config_keys_labels_and_the_parameter_validator_agree():
    labels = [ex.parse_rnn_config(k).label for k in ex.DEFAULT_RNN_CONFIGS]
    assert labels == ["tanh + orthogonal", "ReLU + orthogonal", "ReLU + identity (IRNN)",
                      "ReLU + glorot_uniform", "GRU", "LSTM"]
    from rnnbook import plots

    assert all(plots.color_for(lab) for lab in labels)  # the book's fixed colours
    spec = ex.parse_rnn_config("elu-glorot_uniform")
    assert (spec.cell, spec.activation, spec.recurrent_initializer) == ("simple_rnn", "elu", "glorot_uniform")
    for bad in ("relu", "relu-random", "nonsense-identity", ""):
        with pytest.raises(ex.ExperimentError):
            ex.parse_rnn_config(bad)
        with pytest.raises(params.ParamError):
            params.REGISTRY["rnn_configs"].check([bad])
    assert params.REGISTRY["rnn_configs"].check(list(ex.DEFAULT_RNN_CONFIGS)) == list(ex.DEFAULT_RNN_CONFIGS)


def test_grids():
    base = ex.base_config(n_train=32, n_val=8, n_test=8, epochs=1, units=8)
    recall = ex.recall_grid(["tanh-orthogonal", "lstm"], [2, 9], base)
    assert [(p.config.seq_len, p.config.lag, p.config.cell) for p in recall] == [
        (3, 2, "simple_rnn"), (10, 9, "simple_rnn"), (3, 2, "lstm"), (10, 9, "lstm")]
    lr = ex.lr_grid([0.1, 1.0], 2.0, 6, base)
    assert {(p.label, p.config.clip_mode, p.config.optimizer) for p in lr} == {
        (lab, m, "sgd") for lab in ("tanh + orthogonal", "ReLU + orthogonal") for m in ("none", "global_clipnorm")}
    assert {p.config.clip_threshold for p in lr if p.config.clip_mode != "none"} == {2.0}
    width = ex.width_grid([8, 32], 6, base, 0.01)
    assert sorted({p.config.units for p in width}) == [8, 32] and {p.config.learning_rate for p in width} == {0.01}
    thr = ex.threshold_grid(ex.exploding_base(6, base, 0.01), [0.5, 10], reference=3.0)
    assert [p.config.clip_threshold for p in thr] == [1.5, 30.0]
    assert thr[0].config.activation == "relu" and thr[0].config.recurrent_initializer == "identity"


def test_chapters_share_their_parameter_defaults():
    """The recommendations chapter re-reads the other two chapters' runs: same names, same defaults."""
    declared = {d: params.declared_parameters(ROOT / f"{d}.md") for d in CHAPTERS}
    reco = declared["chapters/recommendations"]
    for d in ("chapters/relu", "chapters/clipping"):
        for name, value in declared[d].items():
            assert name in reco, f"{d} declares {name!r}, which recommendations must declare too"
            assert reco[name] == value, f"{name}: {d} has {value!r}, recommendations {reco[name]!r}"
    assert set(ex.RELU_PARAMS) <= set(declared["chapters/relu"])
    assert set(ex.CLIPPING_PARAMS) <= set(declared["chapters/clipping"])
    assert len(declared["chapters/relu"]["seeds"]) >= 3


# ------------------------------------------------------------------ diverged runs are counted
def synthetic_runs(n_seeds=3, lags=(2, 5), labels=("tanh + orthogonal", "ReLU + identity (IRNN)", "GRU")):
    rows = []
    for lab in labels:
        for lag in lags:
            for s in range(n_seeds):
                diverged = lab.startswith("ReLU") and s == 0
                acc = np.nan if diverged else 0.9 / lag + 0.01 * s + (0.2 if lab == "GRU" else 0.0)
                rows.append({
                    "label": lab, "key": ex._key_of(lab), "lag": lag, "seed": s, "diverged": diverged,
                    "diverged_step": 3 if diverged else None, "test_acc": acc, "test_acc_last_good": 0.3,
                    "chance": 0.1, "n_test": 500, "max_abs_state": 1.0 if lab != "ReLU + identity (IRNN)" else 40.0 * (s + 1),
                    "units": 8 * lag, "learning_rate": 0.1 * lag, "clip_mode": "none" if s else "global_clipnorm",
                    "clipping": "no clipping" if s else "global_clipnorm=1", "multiple": float(lag),
                    "record": {"epoch_val_acc": [0.1, 0.2, 0.3][: 1 if diverged else 3],
                               "steps": {"loss": [1.0, 0.5], "grad_norm": [2.0, np.inf]}},
                })
    runs = pd.DataFrame(rows)
    runs["accuracy"] = sweeps.accuracy_with_divergence(runs, "chance")
    return runs


def test_summaries_count_diverged_runs_as_chance():
    runs = synthetic_runs()
    s = ex.summarise(runs, ["label", "lag"]).set_index(["label", "lag"])
    relu = s.loc[("ReLU + identity (IRNN)", 2)]
    assert relu["n_runs"] == 3 and relu["n_diverged"] == 1  # counted, not dropped
    expected = np.mean([0.1, 0.9 / 2 + 0.01, 0.9 / 2 + 0.02])
    assert relu["mean"] == pytest.approx(expected)
    assert relu["ci_lo"] < relu["mean"] < relu["ci_hi"]
    table = ex.winners_by_lag(runs)
    assert list(table["diverged runs"]) == ["1/9", "1/9"]
    assert list(table["_winner"]) == ["GRU", "GRU"]
    assert table["clear win"].tolist() == ["yes", "yes"]
    assert ex.reach(runs, "GRU") == 5.0
    assert math.isnan(ex.reach(runs, "ReLU + identity (IRNN)"))  # one diverged run is enough to fail
    assert ex.chance_bar(0.1, 100) == pytest.approx(0.1 + 3 * 0.03)
    mean, lo, hi = ex.mean_ci([0.5])
    assert mean == 0.5 and math.isnan(lo) and math.isnan(hi)
    curves = ex.epoch_curves(runs)
    assert len(curves) == sum(len(r["epoch_val_acc"]) for r in runs["record"])  # diverged runs keep their epochs


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """One ordinary run and one whose first forward pass overflows, through the real pipeline."""
    base = ex.base_config(n_train=32, n_val=8, n_test=16, epochs=1, units=8, batch_size=16)
    ok = ex.parse_rnn_config("tanh-orthogonal").apply(base, task="count", seq_len=6)
    boom = dataclasses.replace(ex.parse_rnn_config("relu-identity").apply(base, task="count", seq_len=6),
                               recurrent_gain=ex.overflow_gain(6))
    points = [ex.Point(ok, "tanh + orthogonal"), ex.Point(boom, "ReLU + identity (IRNN)")]
    return ex.run_grid(points, [0], desc="test", cache_dir=tmp_path_factory.mktemp("runs"))


def test_a_diverged_run_is_counted_not_dropped(tiny_runs):
    runs = tiny_runs
    assert len(runs) == 2
    boom = runs[runs.label == "ReLU + identity (IRNN)"].iloc[0]
    assert bool(boom["diverged"]) and boom["diverged_step"] == 0 and math.isnan(boom["test_acc"])
    assert boom["accuracy"] == pytest.approx(boom["chance"])  # counted as chance
    s = ex.summarise(runs, "label").set_index("label")
    assert s.loc["ReLU + identity (IRNN)", "n_diverged"] == 1 and s["n_runs"].sum() == 2
    assert not bool(runs[runs.label == "tanh + orthogonal"].iloc[0]["diverged"])


# ------------------------------------------------------------------ Keras clipping on known gradients
def test_clip_modes_table_shows_what_each_option_does():
    t = ex.clip_modes_table(1.0).set_index("Keras option")
    assert t.loc["global_clipnorm=1", "cosine with unclipped"] == pytest.approx(1.0, abs=1e-6)
    assert t.loc["global_clipnorm=1", "global norm"] == pytest.approx(1.0, abs=1e-5)
    assert t.loc["clipnorm=1", "‖weight‖"] == pytest.approx(1.0, abs=1e-5)
    assert t.loc["clipnorm=1", "cosine with unclipped"] < 0.95  # per-variable clipping turns the step
    assert t.loc["clipnorm=1", "global norm"] > 1.0
    assert t.loc["clipvalue=1", "largest |element|"] == pytest.approx(1.0)
    assert t.loc["none", "global norm"] == pytest.approx(np.linalg.norm(ex._flat(ex.KNOWN_GRADIENT)), rel=1e-5)


def test_sgd_adam_spike_and_overflow_tables():
    spike = ex.optimizer_spike_table(threshold=1.0, spike=1000.0).set_index(["optimizer", "clipping"])
    assert spike.loc[("SGD", "no clipping"), "spike / before"] == pytest.approx(1000.0, rel=1e-3)
    assert spike.loc[("SGD", "global_clipnorm=1"), "spike / before"] == pytest.approx(1.0, rel=1e-3)
    assert spike.loc[("Adam", "no clipping"), "after / before"] < spike.loc[("Adam", "global_clipnorm=1"),
                                                                           "after / before"]
    assert ex.adam_scale_invariance()["max_relative_difference"] < 1e-3
    ov = ex.overflow_table(1.0).set_index(["gradient", "Keras option"])
    assert ov.loc[("one element is Inf", "global_clipnorm=1"), "_finite_share"] == 0.0
    assert ov.loc[("one element is Inf", "clipvalue=1"), "_finite_share"] == 1.0
    assert ov.loc[("one element is NaN", "clipvalue=1"), "_finite_share"] < 1.0


def test_real_overflow_is_not_repaired_by_clipping():
    base = ex.base_config(n_train=16, n_val=8, n_test=8, epochs=1, units=8, batch_size=8)
    cfg = ex.exploding_base(6, base, 0.01)
    table = ex.real_overflow(cfg)
    assert not math.isfinite(table.attrs["loss"])
    assert (table["_finite_share"] == 0.0).all()


# ------------------------------------------------------------------ figures, evidence, advice
def test_figures_draw_from_runs_frames():
    import matplotlib.figure

    runs = synthetic_runs()
    steps = pd.DataFrame({"step": [0, 1, 0, 1], "loss": [1.0, np.nan, 1.0, 0.5], "grad_norm": [2.0, np.inf, 2.0, 1.0],
                          "clipping": ["no clipping", "no clipping", "global_clipnorm=1", "global_clipnorm=1"],
                          "clip_mode": ["none", "none", "global_clipnorm", "global_clipnorm"], "seed": 0})
    figs = [ex.fig_accuracy_vs_lag(runs), ex.fig_learning_curves(ex.epoch_curves(runs), 0.1),
            ex.fig_count_task(runs), ex.fig_lr_stability(runs), ex.fig_width(runs),
            ex.fig_clip_threshold(runs, runs[runs.clip_mode == "none"]), ex.fig_decision_map(runs),
            ex.fig_clip_traces(steps, pd.DataFrame({"clipping": ["no clipping"], "seed": [0], "diverged_step": [1]}))]
    for fig in figs:
        assert isinstance(fig, matplotlib.figure.Figure) and fig.axes
        fig.canvas.draw()
    assert not matplotlib.pyplot.get_fignums()


def test_evidence_advice_and_claims(monkeypatch):
    monkeypatch.setattr(ex, "reference_norm", lambda cfg, seeds, cache_dir=None: 50.0)
    runs = synthetic_runs()
    lr = runs.assign(key=runs["label"].map(ex._key_of))
    modes = runs.assign(clip_mode=np.where(runs.seed == 0, "global_clipnorm", "clipnorm"))
    none = runs.assign(clip_mode="none")
    everything = {"recall": runs, "count": runs, "lr": lr, "width": lr, "clip_modes": modes, "clip_none": none,
                  "clip_thresholds": runs}
    p = {"width_learning_rate": 0.01, "clip_value": 1.0, "seeds": [0], "seq_len": 6, "n_train": 16, "n_val": 8,
         "n_test": 8, "units": 8, "epochs": 1, "batch_size": 8, "sgd_learning_rate": 0.01,
         "clip_modes": ["none"], "clip_multiples": [1.0]}
    e = ex.evidence(everything, p)
    assert e["n_runs_total"] == 7 * len(runs) and e["n_diverged_total"] == 7 * int(runs["diverged"].sum())
    assert e["reach_gru"] == "5 frames" and e["reach_tanh"] == "5 frames"
    for key, value in ex.public(e).items():
        assert not key.startswith("_") and value is not None
    for text in [*ex.advice(e).values(), *ex.claim_verdicts(e).values(), ex.headline(e)]:
        assert isinstance(text, str) and text.strip() and "nan" not in text.split()
    port = ex.keras_port(units=16, n_features=32, evidence=e)
    assert port["params"] == 32 * 16 + 16 * 16 + 16 and port["max_abs_diff"] < 1e-4
    assert "SimpleRNN(16" in port["exact_code"] and "global_clipnorm" in port["recommended_code"]


# ------------------------------------------------------------------ the chapters, executed (quick)
@pytest.fixture(scope="module")
def executed(quick_book):
    """The chapters as the session's quick build executed them."""
    return quick_book.notebooks(CHAPTERS)


@pytest.mark.slow
@pytest.mark.parametrize("docname", CHAPTERS)
def test_chapter_glues_its_figures_and_values(executed, docname):
    assert_chapter_glue(executed[docname], docname, ANCHORS[docname])
    source = (ROOT / f"{docname}.md").read_text()
    for anchor in ANCHORS[docname]:
        assert re.search(rf":name: {re.escape(anchor)}\n", source), f"{docname}: no anchor {anchor}"


def _number(values, key):
    data = values[key]
    text = next(v for k, v in data.items() if k.endswith("text/plain"))
    return float(text.strip("'"))


@pytest.mark.slow
def test_every_run_of_the_relu_chapter_is_counted(executed, quick_book):
    """The chapter's run total is the whole grid: diverged runs are not dropped anywhere."""
    chapters = build.find_chapters(ROOT)
    resolved = build.resolve_parameters(ROOT, chapters, "quick", (), [])
    p = next(j for j in build.plan(ROOT, chapters, resolved) if j.chapter.docname == "chapters/relu").parameters
    d = {**params.declared_parameters(ROOT / "chapters/relu.md"), **p}
    expected = len(d["seeds"]) * (len(d["rnn_configs"]) * (len(d["lags"]) + 1) + 4 * len(d["learning_rates"])
                                  + 2 * len(d["widths"]))
    relu = glued(executed["chapters/relu"])
    assert _number(relu, "n_runs_total") == expected
    table = next(v for k, v in relu["tbl-relu-summary"].items() if k.endswith("text/html"))
    assert "diverged runs" in table and "/" in table
    reco = glued(executed["chapters/recommendations"])
    diverged = next(v for k, v in reco["adam_div"].items() if k.endswith("text/plain"))
    assert re.fullmatch(r"'\d+ of \d+'", diverged)


@pytest.mark.slow
def test_front_page_pastes_the_short_answer(quick_book):
    page = quick_book.page("index")
    body = page[page.find("<main"): page.find("</main>")]
    start, end = body.find('id="short-answer"'), body.find('id="the-question"')
    assert 0 <= start < end, "the short answer opens the front page"
    section = body[start:end]
    pasted = re.findall(r'<span class="pasted-text">(.*?)</span>', section, flags=re.S)
    source = (ROOT / "index.md").read_text()
    assert len(pasted) == source.count("{glue:text}`chapters/")
    assert all(html.unescape(v).strip() for v in pasted)
    assert "<img" in section, "the headline figure is missing"
    for anchor in ("fig-accuracy-vs-lag", "fig-lr-stability", "fig-clip-traces", "tbl-clip-modes"):
        assert f"#{anchor}" in section, f"no link to {anchor}"
