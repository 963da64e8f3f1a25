"""Figures draw their data: count the lines, points, bars, cells and legend entries each plot
helper puts on the axes and compare them with the data, recomputed here with pandas.

The pattern for a chapter's figure function: build a small frame with a known answer, call the
function, then read back what was drawn (``data_lines``, ``bars``, ``legend_labels``, the
heatmap's ``QuadMesh``) and compare it with the frame's own group means and counts."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection, QuadMesh  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from rnnbook import pascanu, plots  # noqa: E402

CONFIGS = ["tanh + orthogonal", "ReLU + identity (IRNN)", "my new idea"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def data_lines(ax, n_points=None):
    """Lines that carry data (seaborn's legend proxies and reference lines excluded)."""
    lines = [ln for ln in ax.lines if len(ln.get_xdata()) > 1 and len(set(np.atleast_1d(ln.get_xdata()))) > 1]
    return [ln for ln in lines if n_points is None or len(ln.get_xdata()) == n_points]


def legend_labels(ax):
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def bars(ax):
    return [p for c in ax.containers for p in c]


def test_line_with_band_draws_one_line_of_means_per_configuration():
    rng = np.random.default_rng(1)
    epochs, seeds = range(5), range(3)
    df = pd.DataFrame([{"epoch": e, "seed": s, "config": c, "val_accuracy": 0.1 * (i + 1) + 0.05 * e + rng.normal(0, 0.02)}
                       for i, c in enumerate(CONFIGS) for e in epochs for s in seeds])
    ax = plots.line_with_band(df, "epoch", "val_accuracy", hue="config", chance=0.1).axes[0]
    lines = data_lines(ax, n_points=len(epochs))
    assert len(lines) == len(CONFIGS)
    colours = plots.palette(CONFIGS)
    means = df.groupby(["config", "epoch"])["val_accuracy"].mean()
    for config in CONFIGS:
        (line,) = [ln for ln in lines if to_hex(ln.get_color()) == to_hex(colours[config])]
        np.testing.assert_array_equal(line.get_xdata(), list(epochs))
        np.testing.assert_allclose(line.get_ydata(), means.loc[config].to_numpy(), rtol=1e-12)
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == len(CONFIGS)  # one band each
    assert legend_labels(ax) == [*CONFIGS, "chance (0.1)"]
    chance = [ln for ln in ax.lines if ln.get_label() == "chance (0.1)"]
    assert len(chance) == 1 and set(chance[0].get_ydata()) == {0.1}


def test_line_with_band_without_hue_draws_one_line_and_no_legend():
    df = pd.DataFrame({"lag": [0, 1, 2] * 2, "grad_norm": [1.0, 0.5, 0.25, 3.0, 1.5, 0.75]})
    ax = plots.line_with_band(df, "lag", "grad_norm").axes[0]
    (line,) = data_lines(ax)
    np.testing.assert_allclose(line.get_ydata(), [2.0, 1.0, 0.5])
    assert legend_labels(ax) == []


def test_lag_heatmap_draws_one_cell_per_row_and_lag():
    lags, seeds = range(7), range(2)
    df = pd.DataFrame([{"lag": k, "config": c, "seed": s, "grad_norm": (i + 1) * 0.5**k * (1 + s)}
                       for i, c in enumerate(CONFIGS) for k in lags for s in seeds])
    df.loc[(df.config == CONFIGS[0]) & (df.lag >= 5), "grad_norm"] = 0.0  # underflow: grey
    df.loc[(df.config == CONFIGS[1]) & (df.lag == 6), "grad_norm"] = np.inf  # overflow: grey
    fig = plots.lag_heatmap(df, row_order=CONFIGS)
    ax = fig.axes[0]
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    cells = mesh.get_array()
    assert cells.size == len(CONFIGS) * len(lags)
    cells = cells.reshape(len(CONFIGS), len(lags))
    expected = df.groupby(["config", "lag"])["grad_norm"].mean().unstack().reindex(CONFIGS).to_numpy()
    shown = np.isfinite(expected) & (expected > 0)
    np.testing.assert_array_equal(~np.ma.getmaskarray(cells), shown)
    assert (~shown).sum() == 3
    np.testing.assert_allclose(cells.compressed(), expected[shown], rtol=1e-12)
    assert [t.get_text() for t in ax.get_yticklabels()] == CONFIGS


def test_divergence_chart_draws_one_bar_per_group_at_its_share():
    df = pd.DataFrame({
        "seq_len": np.repeat([10, 50, 100], 6),
        "config": np.tile(np.repeat(CONFIGS[:2], 3), 3),
        "diverged": [0, 0, 0, 0, 0, 1,  0, 0, 1, 0, 1, 1,  0, 1, 1, 1, 1, 1],
    })
    ax = plots.divergence_chart(df, "seq_len", "config").axes[0]
    drawn = bars(ax)
    assert len(drawn) == 3 * 2
    share = df.groupby(["config", "seq_len"])["diverged"].mean()
    expected = [share[(c, n)] for c in CONFIGS[:2] for n in (10, 50, 100)]  # one container per config
    np.testing.assert_allclose([b.get_height() for b in drawn], expected)
    assert [t.get_text() for t in ax.texts] == ["0/3", "1/3", "2/3", "1/3", "2/3", "3/3"]
    assert legend_labels(ax) == CONFIGS[:2]


def test_loss_surface_draws_every_step_of_every_path():
    surf = pascanu.loss_surface(np.linspace(2, 8, 31), np.linspace(-5, 1, 21))
    paths = {"plain": pascanu.descend(5.5, -2.0, lr=0.5, n_steps=6),
             "clipped": pascanu.descend(5.5, -2.0, lr=0.5, n_steps=4, clip_threshold=1.0)}
    fig = plots.loss_surface(surf.w, surf.b, surf.loss, paths)
    ax = fig.axes[0]
    assert legend_labels(ax) == ["plain", "clipped"]
    for label, path in paths.items():
        (line,) = [ln for ln in ax.lines if ln.get_label() == label]
        assert line.get_marker() == "o" and len(line.get_xdata()) == len(path)
        np.testing.assert_array_equal(line.get_xdata(), path["w"])
        np.testing.assert_array_equal(line.get_ydata(), path["b"])
    starts = [ln for ln in ax.lines if ln.get_marker() == "s"]
    assert [(ln.get_xdata()[0], ln.get_ydata()[0]) for ln in starts] == [(p["w"].iloc[0], p["b"].iloc[0])
                                                                          for p in paths.values()]
    assert len(ax.lines) == 3 * len(paths)  # halo, steps, start
    assert ax.collections, "no filled contour"
