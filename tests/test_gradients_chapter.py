"""The chapter "Vanishing and exploding gradients" (:mod:`rnnbook.experiments.gradients`).

Fast tests check the module on small inputs against independent computations and count
what each figure draws against its data; the slow one reads the chapter as the session's
quick build executed it and checks that every figure anchor and every value the prose refers
to is glued, pastes no empty or NaN value, and publishes its data (CSV) with a
caption link (not what the values are).
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PathCollection, QuadMesh  # noqa: E402

import rnnbook  # noqa: F401,E402  (quiets TensorFlow first)
from conftest import assert_chapter_glue, referenced  # noqa: E402
from rnnbook.experiments import gradients, probes  # noqa: E402
from rnnbook.experiments.gradients import short_training  # noqa: E402
from test_figures_drawn import bars, data_lines, legend_labels  # noqa: E402

DOC = "chapters/gradients"
ANCHORS = ["fig-grad-vs-lag", "fig-grad-heatmap", "fig-pascanu-bound", "fig-grad-after-training", "fig-input-scale"]


def test_short_training_runs():
    r = short_training.short_training("relu", "identity", 1.0, seed=0, seq_len=4, units=8, n_train=16, n_probe=8,
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


def test_row_order_sorts_by_activation_initializer_then_gain():
    keys = [("relu", "identity", 1.5), ("tanh", "orthogonal", 1.5), ("relu", "identity", 0.5),
            ("tanh", "identity", 0.5), ("tanh", "orthogonal", 0.5)]
    df = pd.DataFrame([{"activation": a, "initializer": i, "gain": g, "row": probes.row_label(a, i, g)}
                       for a, i, g in keys])
    assert gradients.row_order(df) == [  # activations and initializers in order of appearance
        "ReLU + identity (IRNN), gain 0.5", "ReLU + identity (IRNN), gain 1.5",
        "tanh + identity, gain 0.5", "tanh + orthogonal, gain 0.5", "tanh + orthogonal, gain 1.5"]


def test_fig_grad_vs_lag_draws_one_line_per_gain_in_each_panel(results):
    lags = results.lags
    fig = gradients.fig_grad_vs_lag(lags)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    panels = lags[["activation", "initializer"]].drop_duplicates()
    assert len(shown) == len(panels) and fig.get_size_inches()[0] <= 9.0
    gains, n_lags = sorted(lags["gain"].unique()), lags["lag"].nunique()
    for ax, (_, panel) in zip(shown, panels.iterrows()):
        part = lags[(lags["activation"] == panel["activation"]) & (lags["initializer"] == panel["initializer"])]
        lines = data_lines(ax, n_points=n_lags)
        assert len(lines) == len(gains)
        for line, gain in zip(lines, gains):
            expected = part[part["gain"] == gain].groupby("lag")["rel_grad_norm"].mean().to_numpy()
            np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-9)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [probes.gain_label(g) for g in gains]


def test_fig_grad_heatmap_draws_one_cell_per_row_and_lag(results):
    fig = gradients.fig_grad_heatmap(results.lags)
    (mesh,) = [c for c in fig.axes[0].collections if isinstance(c, QuadMesh)]
    rows = gradients.row_order(results.lags)
    expected = results.lags.pivot_table(index="row", columns="lag", values="rel_grad_norm").reindex(rows)
    np.testing.assert_allclose(np.ma.getdata(mesh.get_array()).ravel(), expected.to_numpy().ravel(), rtol=1e-9)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == rows


def test_fig_pascanu_draws_every_measured_point(results):
    fig = gradients.fig_pascanu(results.summary)
    n_points = int((np.isfinite(results.summary["decay_rate"]) & (results.summary["decay_rate"] > 0)).sum())
    for ax, column in zip(fig.axes, ("pascanu_bound", "typical_rate")):
        points = np.concatenate([c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)])
        assert len(points) == n_points
        expected = sorted(zip(results.summary[column], results.summary["decay_rate"]))
        np.testing.assert_allclose(sorted(map(tuple, points)), expected, rtol=1e-9)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert set(results.summary["config"]) <= set(labels)
    assert fig.get_size_inches()[0] <= 9.0


def test_fig_after_training_draws_both_stages(results):
    lags, summary = results.trained["lags"], results.trained["summary"]
    fig = gradients.fig_after_training(lags, summary)
    top, bottom = fig.axes[:2]
    n_configs, n_lags = lags["config"].nunique(), lags["lag"].nunique()
    assert len(data_lines(top, n_points=n_lags)) == n_configs * len(gradients.STAGES)
    widths = [p.get_width() for p in bars(bottom)]
    expected = summary.groupby(["stage", "config"], sort=False)["decay_rate"].mean()
    np.testing.assert_allclose(widths, [expected[(s, c)] for s in gradients.STAGES
                                        for c in dict.fromkeys(summary["config"])], rtol=1e-9)
    assert len(fig.legends) == 1 and fig.get_size_inches()[0] <= 9.0


def test_fig_input_scale_draws_one_line_per_configuration_in_three_panels(results):
    scaled = results.scaled
    fig = gradients.fig_input_scale(scaled, results.marks)
    configs = list(dict.fromkeys(scaled["config"]))
    scales = sorted(scaled["input_scale"].unique())
    for ax, column in zip(fig.axes[:3], ("decay_rate", "mean_slope", "state_rms_last")):
        lines = [ln for ln in data_lines(ax, n_points=len(scales)) if np.allclose(ln.get_xdata(), scales)]
        assert len(lines) == len(configs)
        means = scaled.groupby(["config", "input_scale"])[column].mean()
        for line, config in zip(lines, configs):
            np.testing.assert_allclose(line.get_ydata(), means.loc[config].to_numpy(), rtol=1e-9)
    assert legend_labels(fig.axes[3]) == configs
    assert fig.get_size_inches()[0] <= 9.0


def test_undefined_values_are_words_not_nan(results):
    values = gradients.page_values(results)  # only identity is in the grid, orthogonal and glorot are not
    optional = gradients.optional_values()
    assert values["rate_tanh_orthogonal_mid"] == gradients.NOT_MEASURED
    assert values["glorot_sigma_over_gain"] == gradients.NOT_MEASURED
    assert values["rate_relu_identity_mid"] == f"{results.numbers['rate_relu_identity_mid']:.3f}"
    assert values["typical_err_identity"].endswith(" %")
    for key in optional:
        text = values[key]
        assert text == gradients.NOT_MEASURED or np.isfinite(float(text.rstrip(" %"))), key
    assert gradients.prose_number(float("inf")) == gradients.prose_number(None) == gradients.NOT_MEASURED
    assert gradients.prose_number(0.25, "{:.0f} %") == "0 %" and gradients.prose_number(2, "{:.1f}") == "2.0"


def test_figure_data_and_runs(results):
    data = gradients.figure_data(results)
    assert len(data["fig-grad-vs-lag"]) == len(results.lags)
    heat = data["fig-grad-heatmap"]
    assert len(heat) == results.lags[["row", "lag"]].drop_duplicates().shape[0] and (heat["n_seeds"] == 1).all()
    assert len(data["fig-pascanu-bound"]) == len(results.summary)
    trained = data["fig-grad-after-training"]
    assert (trained["quantity"] == "per-step rate").sum() == len(results.trained["summary"])
    runs = gradients.all_runs(results)
    assert len(runs) == len(results.trained["runs"])
    change = gradients.rate_change(results.trained["summary"])
    np.testing.assert_allclose(runs["rate_after"], change["after"], rtol=1e-12)


@pytest.mark.slow
def test_chapter_glues_its_figures_and_values(quick_book):
    nb = quick_book.notebooks([DOC])[DOC]
    values = assert_chapter_glue(nb, DOC, ANCHORS, forbid=("nan", "''"))
    for anchor in ANCHORS:  # every figure publishes its data and links it in its caption
        assert f"{anchor}-data" in referenced(nb), f"{DOC}: the caption of {anchor} has no data link"
        assert f"rnnbook-file:{anchor}.csv" in values, f"{DOC}: {anchor} publishes no CSV"
    assert "gradients-runs" in referenced(nb) and "rnnbook-file:gradients.runs.csv" in values
