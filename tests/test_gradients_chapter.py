"""The chapter "Vanishing and exploding gradients" (:mod:`rnnbook.experiments.gradients`).

Fast tests check the module on small inputs; the slow one reads the chapter as the session's
quick build executed it and checks that every figure anchor and every value the prose refers
to is glued and non-empty (not what the values are).
"""
from __future__ import annotations

import numpy as np
import pytest

import rnnbook  # noqa: F401  (quiets TensorFlow first)
from conftest import assert_chapter_glue, referenced
from rnnbook.experiments import gradients, probes

DOC = "chapters/gradients"
ANCHORS = ["fig-grad-vs-lag", "fig-grad-heatmap", "fig-pascanu-bound", "fig-grad-after-training", "fig-input-scale"]


def test_short_training_runs():
    r = gradients.short_training("relu", "identity", 1.0, seed=0, seq_len=4, units=8, n_train=16, n_probe=8,
                                 epochs=1, batch_size=8, learning_rate=1e-3)
    assert r["steps"] == 2 and not r["diverged"]
    assert list(r["summary"]["stage"]) == list(gradients.STAGES)
    assert set(r["lags"]["stage"]) == set(gradients.STAGES)
    assert 0.0 <= r["val_acc"] <= 1.0


@pytest.fixture(scope="module")
def results():
    return gradients.results(seq_len=5, units=8, activations=["tanh"], recurrent_initializers=["identity"],
                             recurrent_gains=[0.5, 1.5], n_probe=12, seeds=[0], train_gains=[1.0], n_train=16,
                             epochs=1, batch_size=8, learning_rate=1e-3, input_scales=[0.5, 2.0])


def test_results_cover_the_grid(results):
    n, w = results.numbers, results.words
    assert n["n_configs"] == 2 * 1 * 2  # tanh and ReLU always, x initializers x gains
    assert n["n_vanishing"] + n["n_edge"] + n["n_exploding"] == n["n_configs"]
    assert n["max_lag"] == 4 and n["n_trained"] == 2 and n["train_steps"] == 2
    assert n["gain_mid"] == 0.5 and n["irnn_gain"] == 1.0  # the gains closest to 1
    assert w["scale_init"] == "`identity`"  # orthogonal is not compared here
    assert set(probes.row_label("relu", "identity", g) for g in (0.5, 1.5)) <= set(results.lags["row"])
    assert 0.0 <= n["share_within_bound"] <= 100.0
    assert n["share_within_bound"] == 100.0  # a theorem: no rate above Pascanu et al.'s bound
    assert set(results.marks) == {"CNN at initialisation", "drive after training (tanh)"}


def test_names_and_verdicts(results):
    assert gradients.names([]) == "none" and gradients.names(["a", "b"]) == "a; b"
    n = dict(results.numbers)
    n.update(relu_worse_hi=n["n_inits"], n_tanh_exploding=0, share_rate_down=80.0)
    v = gradients.verdicts(n)
    assert v["verdict_relu_worse_short"] == "true" and v["verdict_tanh_short"] == "true in this grid"
    assert v["verdict_training"] == "Training pushes toward vanishing."
    n.update(relu_worse_hi=0, n_tanh_exploding=2, share_rate_down=20.0)
    v = gradients.verdicts(n)
    assert v["verdict_relu_worse_short"] == "not on this model" and v["verdict_tanh_short"] == "not quite"
    assert v["verdict_training"].startswith("Training does not")


def test_rate_change_pairs_stages(results):
    change = gradients.rate_change(results.trained["summary"])
    assert len(change) == len(results.trained["runs"])
    expected = np.abs(np.log(change["after"])) < np.abs(np.log(change["before"]))
    assert (change["toward_edge"] == expected).all()


def test_figures_draw(results):
    import matplotlib

    figs = [gradients.fig_grad_vs_lag(results.lags), gradients.fig_grad_heatmap(results.lags),
            gradients.fig_pascanu(results.summary),
            gradients.fig_after_training(results.trained["lags"], results.trained["summary"]),
            gradients.fig_input_scale(results.scaled, results.marks)]
    assert all(isinstance(f, matplotlib.figure.Figure) and f.axes for f in figs)
    assert set(gradients.row_order(results.lags)) == set(results.lags["row"])


@pytest.mark.slow
def test_chapter_glues_its_figures_and_values(quick_book):
    nb = quick_book.notebooks([DOC])[DOC]
    values = assert_chapter_glue(nb, DOC, ANCHORS, forbid=("nan", "''"))
    for key in referenced(nb):
        assert values[key].get("text/plain", "").strip() != "nan", f"{DOC}: {key} is NaN"
