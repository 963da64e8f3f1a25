"""The chapter "Why tanh is the default" (:mod:`rnnbook.experiments.why_tanh`) and the probes
it shares with the gradients chapter (:mod:`rnnbook.experiments.probes`).

Fast tests check the module on small inputs against independent computations and count
what each figure draws against its data; the slow one reads the chapter as the session's
quick build executed it and checks that every figure and table anchor and every value the
prose refers to is glued, pastes no empty or NaN value, and publishes its data (CSV) with a
caption link (not what the values are).
"""
from __future__ import annotations

import inspect

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import rnnbook  # noqa: F401,E402  (quiets TensorFlow first)
import keras  # noqa: E402
from conftest import assert_chapter_glue, referenced  # noqa: E402
from rnnbook import models  # noqa: E402
from rnnbook.experiments import probes, why_tanh  # noqa: E402
from rnnbook.experiments.common import activation_label  # noqa: E402
from test_figures_drawn import bars, data_lines, legend_labels  # noqa: E402

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
    installed = table.iloc[:, 0]
    assert installed["activation"] == "'tanh'"
    signature = inspect.signature(keras.layers.SimpleRNN).parameters  # read here, not through the module
    assert installed["recurrent kernel"] == signature["recurrent_initializer"].default == "orthogonal"
    assert installed["input kernel"] == signature["kernel_initializer"].default
    assert installed["unroll"] == f"unroll={signature['unroll'].default}"
    assert why_tanh.library_words()["keras_activation"] == "`tanh`"
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
    for _, group in lags.groupby(["activation", "initializer", "gain", "input_scale", "seed"]):
        at_end = group.loc[group["lag"] == 0, "grad_norm"].iloc[0]
        np.testing.assert_allclose(group["rel_grad_norm"], group["grad_norm"] / at_end, rtol=1e-12)
    assert (res["states"].query("activation == 'tanh'")["state_max_abs"] <= 1.0).all()


def test_a_linear_rnn_with_half_the_identity_halves_the_gradient_per_step(probe):
    rnn = probes.recurrent_layer("linear", "identity", 0.5, seed=0, units=8, n_features=probe.n_features)
    np.testing.assert_allclose(rnn.cell.recurrent_kernel.numpy(), 0.5 * np.eye(8), atol=1e-7)
    lags, _, summary = probes.measure(rnn, probe.head, probe.features, probe.labels)
    np.testing.assert_allclose(lags["rel_grad_norm"], 0.5 ** lags["lag"].to_numpy(), rtol=1e-5)
    assert summary["decay_rate"] == pytest.approx(0.5, rel=1e-5)
    assert summary["pascanu_bound"] == pytest.approx(0.5, rel=1e-5)  # sigma_max 0.5, gamma 1


def _states_by_hand(rnn, features, activation):
    """The SimpleRNN's states, h_t = s(x_t K + b + h_{t-1} R), computed with NumPy."""
    kernel, recurrent, bias = (np.asarray(w, np.float64) for w in rnn.get_weights())
    x = np.asarray(features, np.float64)
    s = np.tanh if activation == "tanh" else (lambda a: np.maximum(a, 0.0))
    h, out = np.zeros((x.shape[0], kernel.shape[1])), []
    for t in range(x.shape[1]):
        h = s(x[:, t] @ kernel + bias + h @ recurrent)
        out.append(h)
    return np.stack(out, axis=1)


def test_sign_stats(probe):
    signs = why_tanh.sign_grid(["tanh", "relu"], "orthogonal", 1.0, [0], **SMALL, probes={0: probe})
    relu = signs.set_index("activation").loc["relu"]
    assert relu["feature_negative"] == 0.0 and relu["state_negative"] == 0.0
    for _, r in signs.iterrows():
        rnn = probes.recurrent_layer(r["activation"], "orthogonal", 1.0, seed=0, units=8,
                                     n_features=probe.n_features)
        h = _states_by_hand(rnn, probe.features, r["activation"])
        tol = 3 / h.size  # float32 against float64: a near-zero entry may flip
        assert r["state_positive"] == pytest.approx(np.mean(h > 1e-7), abs=tol)
        assert r["state_negative"] == pytest.approx(np.mean(h < -1e-7), abs=tol)
        assert r["state_zero"] == pytest.approx(np.mean(np.abs(h) <= 1e-7), abs=tol)
        step = np.diff(h, axis=1)
        assert r["state_decreases"] == pytest.approx(np.mean(step < -1e-7), abs=3 / step.size)
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


def test_fig_activations_draws_each_curve(results):
    fig = why_tanh.fig_activations(results.curves)
    names = list(dict.fromkeys(results.curves["activation"]))
    n_x = results.curves["x"].nunique()
    value_ax, slope_ax = fig.axes
    for ax, column in ((value_ax, "value"), (slope_ax, "slope")):
        lines = data_lines(ax, n_points=n_x)
        assert len(lines) == len(names)
        for line, name in zip(lines, names):
            expected = results.curves.loc[results.curves["activation"] == name, column].to_numpy()
            np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-12)
    assert legend_labels(value_ax) == names
    assert fig.get_size_inches()[0] <= 9.0


def test_fig_state_growth_draws_one_line_per_gain_and_activation(results):
    states = results.states
    fig = why_tanh.fig_state_growth(states)
    acts, gains = list(dict.fromkeys(states["activation"])), sorted(states["gain"].unique())
    n_t = states["t"].nunique()
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == 2 * len(acts) and fig.get_size_inches()[0] <= 9.0
    size_axes = [ax for ax in shown if "size of the state" in ax.get_title()]
    dead_axes = [ax for ax in shown if ax.get_title().endswith("dead units")]
    for act, ax, ax_dead in zip(acts, size_axes, dead_axes):
        assert ax.get_title().startswith(activation_label(act))
        for axis, column in ((ax, "state_rms"), (ax_dead, "dead_units")):
            lines = data_lines(axis, n_points=n_t)
            assert len(lines) == len(gains)
            means = states[states["activation"] == act].groupby(["gain", "t"])[column].mean()
            for line, gain in zip(lines, gains):
                np.testing.assert_allclose(line.get_ydata(), means.loc[gain].to_numpy(), rtol=1e-9)
    assert legend_labels(size_axes[-1]) == [probes.gain_label(g) for g in gains]


def test_fig_state_sign_draws_each_share(results):
    fig = why_tanh.fig_state_sign(results.signs)
    shares, moves = why_tanh.sign_long(results.signs)
    top, bottom = fig.axes
    quantities = list(dict.fromkeys(shares["quantity"]))
    assert [t.get_text() for t in top.get_yticklabels()] == quantities
    expected = shares.groupby(["sign", "quantity"])["share"].mean()
    widths = [p.get_width() for p in bars(top)]
    assert len(widths) == 3 * len(quantities)
    np.testing.assert_allclose(widths, [expected[(s, q)] for s in ("negative", "zero", "positive")
                                        for q in quantities], atol=1e-12)
    acts = list(dict.fromkeys(moves["activation"]))
    heights = [p.get_height() for p in bars(bottom)]
    expected = moves.groupby(["direction", "activation"])["share"].mean()
    np.testing.assert_allclose(heights, [expected[(d, a)] for d in ("down", "unchanged", "up") for a in acts],
                               atol=1e-12)
    assert fig.get_size_inches()[0] <= 9.0


def test_figure_data_has_one_row_per_plotted_point(results):
    data = why_tanh.figure_data(results)
    assert len(data["fig-activations"]) == len(results.curves)
    assert len(data["fig-state-growth"]) == len(results.states)
    shares, moves = why_tanh.sign_long(results.signs)
    assert len(data["fig-state-sign"]) == len(shares) + len(moves)
    assert list(data["tbl-defaults"]["setting"])[:1] == ["activation"]
    assert list(data["tbl-activation-properties"]["activation"]) == list(results.properties.index)


@pytest.mark.slow
def test_chapter_glues_its_figures_and_values(quick_book):
    nb = quick_book.notebooks([DOC])[DOC]
    values = assert_chapter_glue(nb, DOC, ANCHORS, forbid=("nan", "''"))
    for anchor in ANCHORS:  # every figure and table publishes its data and links it in its caption
        assert f"{anchor}-data" in referenced(nb), f"{DOC}: the caption of {anchor} has no data link"
        assert f"rnnbook-file:{anchor}.csv" in values, f"{DOC}: {anchor} publishes no CSV"
