"""Issue 4: the chapters "Why tanh is the default" and "Vanishing and exploding gradients".

Fast tests check :mod:`rnnbook.dynamics` on small inputs; the slow ones execute each
chapter with the ``quick`` preset, exactly as ``rnnbook build`` does, and check that
every figure and table anchor and every value the prose refers to is glued and
non-empty (not what the values are).
"""
from __future__ import annotations


import numpy as np
import pytest

import rnnbook  # noqa: F401  (quiets TensorFlow first)
from conftest import assert_chapter_glue, referenced
from rnnbook import dynamics, models

ANCHORS = {
    "chapters/why_tanh": ["tbl-defaults", "fig-activations", "fig-state-growth", "fig-state-sign",
                          "tbl-activation-properties"],
    "chapters/gradients": ["fig-grad-vs-lag", "fig-grad-heatmap", "fig-pascanu-bound",
                           "fig-grad-after-training", "fig-input-scale"],
}


# ------------------------------------------------------------------ the module, on small inputs
def test_recurrent_layer_is_the_models_own():
    model = models.build_model(units=8, activation="relu", recurrent_initializer="glorot_uniform",
                               recurrent_gain=1.3, seed=3)
    rnn = dynamics.recurrent_layer("relu", "glorot_uniform", 1.3, seed=3, units=8,
                                   n_features=model.encoder.output_shape[-1])
    for a, b in zip(model.rnn.get_weights(), rnn.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_activation_properties_and_defaults():
    props = dynamics.activation_properties(["tanh", "relu", "sigmoid"])
    assert props.loc["tanh", "largest slope (gamma)"] == pytest.approx(1.0, abs=1e-3)
    assert props.loc["sigmoid", "largest slope (gamma)"] == pytest.approx(0.25, abs=1e-3)
    assert props.loc["tanh", "zero-centred"] == "yes" and props.loc["ReLU", "zero-centred"] == "no"
    assert props.loc["tanh", "range"] == "(-1, 1)" and props.loc["ReLU", "range"] == "(0, +inf)"
    table = dynamics.defaults_table()
    assert table.shape[1] == 4 and "activation" in table.index
    assert table.iloc[:, 0]["activation"] == repr(dynamics.keras_simple_rnn_defaults()["activation"])
    curves = dynamics.activation_curves(["tanh", "linear"], np.linspace(-1, 1, 5))
    assert set(curves["activation"]) == {"tanh", "linear"} and curves["slope"].notna().all()


@pytest.fixture(scope="module")
def probe():
    return dynamics.make_probe(seed=0, seq_len=5, units=8, n_probe=12)


def test_measure_and_grid(probe):
    assert probe.features.shape[:2] == (12, 5) and float(np.min(probe.features)) >= 0
    res = dynamics.grid(["tanh", "relu"], ["orthogonal", "identity"], [0.5, 1.5], [0], seq_len=5, units=8,
                        n_probe=12, input_scales=[1.0, 2.0], probes={0: probe})
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
    assert set(dynamics.row_order(lags)) == set(lags["row"])


def test_sign_stats(probe):
    signs = dynamics.sign_grid(["tanh", "relu"], "orthogonal", 1.0, [0], 5, 8, 12, probes={0: probe})
    relu = signs.set_index("activation").loc["relu"]
    assert relu["feature_negative"] == 0.0 and relu["state_negative"] == 0.0
    for _, r in signs.iterrows():
        assert r["state_positive"] + r["state_zero"] + r["state_negative"] == pytest.approx(1.0)
    shares, moves = dynamics.sign_long(signs)
    assert np.allclose(shares.groupby(["quantity", "seed"])["share"].sum(), 1.0)
    assert np.allclose(moves.groupby(["activation", "seed"])["share"].sum(), 1.0)


def test_short_training_runs():
    r = dynamics.short_training("relu", "identity", 1.0, seed=0, seq_len=4, units=8, n_train=16, n_probe=8,
                                epochs=1, batch_size=8, learning_rate=1e-3)
    assert r["steps"] == 2 and not r["diverged"]
    assert list(r["summary"]["stage"]) == ["at initialisation", "after training"]
    assert set(r["lags"]["stage"]) == {"at initialisation", "after training"}
    assert 0.0 <= r["val_acc"] <= 1.0


def test_figures_draw(probe):
    import matplotlib

    res = dynamics.grid(["tanh", "relu"], ["orthogonal"], [1.0], [0], 5, 8, 12, input_scales=[0.5, 1.0],
                        probes={0: probe})
    figs = [dynamics.fig_activations(dynamics.activation_curves(["tanh", "relu"])),
            dynamics.fig_state_growth(res["states"]),
            dynamics.fig_grad_vs_lag(res["lags"]),
            dynamics.fig_grad_heatmap(res["lags"]),
            dynamics.fig_pascanu(res["summary"]),
            dynamics.fig_input_scale(res["summary"], {"x": 1.0})]
    assert all(isinstance(f, matplotlib.figure.Figure) and f.axes for f in figs)


# ------------------------------------------------------------------ the chapters, executed (quick)
@pytest.fixture(scope="module")
def executed(quick_book):
    """The chapters as the session's quick build executed them."""
    return quick_book.notebooks(ANCHORS)


@pytest.mark.slow
@pytest.mark.parametrize("docname", sorted(ANCHORS))
def test_chapter_glues_its_figures_and_values(executed, docname):
    values = assert_chapter_glue(executed[docname], docname, ANCHORS[docname], forbid=("nan", "''"))
    # a plain number glued for the prose is a real number
    for key in referenced(executed[docname]):
        plain = values[key].get("text/plain", "")
        assert plain.strip() != "nan", f"{docname}: {key} is NaN"
