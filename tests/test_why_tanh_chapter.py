"""The chapter "Why tanh is the default" (:mod:`rnnbook.experiments.why_tanh`) and the probes
it shares with the gradients chapter (:mod:`rnnbook.experiments.probes`).

Fast tests check the module on small inputs; the slow one reads the chapter as the session's
quick build executed it and checks that every figure and table anchor and every value the
prose refers to is glued and non-empty (not what the values are).
"""
from __future__ import annotations

import numpy as np
import pytest

import rnnbook  # noqa: F401  (quiets TensorFlow first)
from conftest import assert_chapter_glue, referenced
from rnnbook import models
from rnnbook.experiments import probes, why_tanh

DOC = "chapters/why_tanh"
ANCHORS = ["tbl-defaults", "fig-activations", "fig-state-growth", "fig-state-sign", "tbl-activation-properties"]
SMALL = dict(seq_len=5, units=8, n_probe=12)


def test_recurrent_layer_is_the_models_own():
    model = models.build_model(units=8, activation="relu", recurrent_initializer="glorot_uniform",
                               recurrent_gain=1.3, seed=3)
    rnn = probes.recurrent_layer("relu", "glorot_uniform", 1.3, seed=3, units=8,
                                 n_features=model.encoder.output_shape[-1])
    for a, b in zip(model.rnn.get_weights(), rnn.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_activation_properties_and_defaults():
    props = why_tanh.activation_properties(["tanh", "relu", "sigmoid"])
    assert props.loc["tanh", "largest slope (gamma)"] == pytest.approx(1.0, abs=1e-3)
    assert props.loc["sigmoid", "largest slope (gamma)"] == pytest.approx(0.25, abs=1e-3)
    assert props.loc["tanh", "zero-centred"] == "yes" and props.loc["ReLU", "zero-centred"] == "no"
    assert props.loc["tanh", "range"] == "(-1, 1)" and props.loc["ReLU", "range"] == "(0, +inf)"
    table = why_tanh.defaults_table()
    assert table.shape[1] == 4 and "activation" in table.index
    words = why_tanh.library_words()
    assert table.iloc[:, 0]["activation"] == repr(words["keras_activation"].strip("`"))
    curves = why_tanh.activation_curves(["tanh", "linear"], np.linspace(-1, 1, 5))
    assert set(curves["activation"]) == {"tanh", "linear"} and curves["slope"].notna().all()


@pytest.fixture(scope="module")
def probe():
    return probes.make_probe(seed=0, **SMALL)


def test_measure_and_grid(probe):
    assert probe.features.shape[:2] == (12, 5) and float(np.min(probe.features)) >= 0
    res = probes.grid(["tanh", "relu"], ["orthogonal", "identity"], [0.5, 1.5], [0], **SMALL,
                      input_scales=[1.0, 2.0], probes={0: probe})
    s = res["summary"]
    assert len(s) == 2 * 2 * 2 * 2
    for col in ("decay_rate", "pascanu_bound", "typical_rate", "active_fraction", "mean_slope"):
        assert s[col].notna().all(), col
    # the measured rate respects Pascanu et al.'s bound
    assert (s["decay_rate"] <= s["pascanu_bound"] * (1 + 1e-6)).all()
    lags = res["lags"]
    assert set(lags["lag"]) == set(range(5))
    assert np.allclose(lags.loc[lags["lag"] == 0, "rel_grad_norm"], 1.0)
    assert (res["states"].query("activation == 'tanh'")["state_max_abs"] <= 1.0).all()


def test_sign_stats(probe):
    signs = why_tanh.sign_grid(["tanh", "relu"], "orthogonal", 1.0, [0], **SMALL, probes={0: probe})
    relu = signs.set_index("activation").loc["relu"]
    assert relu["feature_negative"] == 0.0 and relu["state_negative"] == 0.0
    for _, r in signs.iterrows():
        assert r["state_positive"] + r["state_zero"] + r["state_negative"] == pytest.approx(1.0)
    shares, moves = why_tanh.sign_long(signs)
    assert np.allclose(shares.groupby(["quantity", "seed"])["share"].sum(), 1.0)
    assert np.allclose(moves.groupby(["activation", "seed"])["share"].sum(), 1.0)


@pytest.fixture(scope="module")
def results():
    return why_tanh.results(**SMALL, activations=["sigmoid"], recurrent_initializer="orthogonal",
                            recurrent_gains=[0.5, 1.5], seeds=[0])


def test_results_compare_tanh_and_relu_always(results):
    assert list(results.signs["activation"].unique()) == ["tanh", "relu", "sigmoid"]
    n = results.numbers
    assert n["gain_lo"] == 0.5 and n["gain_hi"] == 1.5 and n["n_seeds"] == 1
    assert n["tanh_max_abs_state"] <= 1.0
    assert n["gamma_sigmoid"] == pytest.approx(0.25, abs=1e-3)
    for key in ("feature_negative", "relu_state_decreases", "tanh_dead_max", "relu_active"):
        assert 0.0 <= n[key] <= 100.0, key  # shares are glued in %
    assert n["relu_state_negative"] == 0.0


def test_verdicts_follow_the_numbers(results):
    n = dict(results.numbers)
    n.update(rate_relu_default=0.5, relu_state_decreases=30.0, relu_state_increases=32.0)
    assert "as often as" in why_tanh.verdicts(n)["verdict_sign"]
    assert why_tanh.verdicts(n)["verdict_relu_default"].startswith("does not")
    n.update(rate_relu_default=1.0, relu_state_decreases=30.0, relu_state_increases=60.0)
    assert "large share" in why_tanh.verdicts(n)["verdict_sign"]
    assert why_tanh.verdicts(n)["verdict_relu_default"] == "keeps the gradient from vanishing"
    n.update(relu_state_decreases=1.0)
    assert "rarely" in why_tanh.verdicts(n)["verdict_sign"]


def test_figures_draw(results):
    import matplotlib

    figs = [why_tanh.fig_activations(results.curves), why_tanh.fig_state_growth(results.states),
            why_tanh.fig_state_sign(results.signs)]
    assert all(isinstance(f, matplotlib.figure.Figure) and f.axes for f in figs)


@pytest.mark.slow
def test_chapter_glues_its_figures_and_values(quick_book):
    nb = quick_book.notebooks([DOC])[DOC]
    values = assert_chapter_glue(nb, DOC, ANCHORS, forbid=("nan", "''"))
    for key in referenced(nb):
        assert values[key].get("text/plain", "").strip() != "nan", f"{DOC}: {key} is NaN"
