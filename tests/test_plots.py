"""Plot helpers: each returns a labelled Figure, closed in pyplot, from a small frame."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from rnnbook import pascanu, plots  # noqa: E402

CONFIGS = ["tanh + orthogonal", "ReLU + identity (IRNN)", "my new idea"]


@pytest.fixture(autouse=True)
def _no_leaked_figures():
    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before, "a helper left a figure open in pyplot"


def labelled(fig):
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel()
    fig.canvas.draw()  # renders without error
    return ax


def test_set_style_is_idempotent():
    plots.set_style()
    first = dict(matplotlib.rcParams)
    plots.set_style()
    assert dict(matplotlib.rcParams) == first
    assert matplotlib.rcParams["figure.dpi"] == 110


def test_palette_is_fixed_for_known_labels_and_distinct_for_new_ones():
    pal = plots.palette(CONFIGS)
    assert pal["tanh + orthogonal"] == plots.CONFIG_COLORS["tanh + orthogonal"]
    assert plots.palette(["ReLU + identity (IRNN)"]) == {"ReLU + identity (IRNN)": pal["ReLU + identity (IRNN)"]}
    assert len(set(pal.values())) == 3
    assert plots.color_for("ReLU") == plots.ACTIVATION_COLORS["relu"]
    assert plots.color_for("unheard of") is None


def test_line_with_band():
    rng = np.random.default_rng(0)
    df = pd.DataFrame([
        {"epoch": e, "seed": s, "config": c, "val_accuracy": 0.1 + 0.1 * e + rng.normal(0, 0.02)}
        for e in range(4) for s in range(3) for c in CONFIGS
    ])
    fig = plots.line_with_band(df, "epoch", "val_accuracy", hue="config", chance=0.1, logy=True,
                               title="accuracy")
    ax = labelled(fig)
    assert ax.get_ylabel() == "validation accuracy" and ax.get_yscale() == "log"
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == CONFIGS + ["chance (0.1)"]
    assert len(ax.collections) >= 3  # one confidence band per configuration
    chance = [line for line in ax.lines if line.get_label() == "chance (0.1)"]
    assert chance and np.allclose(chance[0].get_ydata(), 0.1)


def test_line_with_band_draws_into_a_given_axes_and_leaves_it_open():
    fig, ax = plt.subplots()
    try:
        df = pd.DataFrame({"lag": [0, 1, 0, 1], "grad_norm": [1.0, 0.5, 1.2, 0.4]})
        out = plots.line_with_band(df, "lag", "grad_norm", ax=ax, xlabel="k", ylabel="norm")
        assert out is fig and plt.fignum_exists(fig.number)
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("k", "norm")
    finally:
        plt.close(fig)


def test_lag_heatmap_log_scale_and_blank_zeros():
    df = pd.DataFrame([
        {"lag": k, "config": c, "seed": s, "grad_norm": (0.5 if c == CONFIGS[0] else 1.05) ** k}
        for k in range(30) for c in CONFIGS for s in range(2)
    ])
    df.loc[(df.config == CONFIGS[0]) & (df.lag > 25), "grad_norm"] = 0.0
    fig = plots.lag_heatmap(df)
    ax = labelled(fig)
    assert ax.get_xlabel().startswith("time lag")
    mesh = ax.collections[0]
    assert isinstance(mesh.norm, matplotlib.colors.LogNorm)
    assert mesh.norm.vmin == pytest.approx(0.5**25)
    cbar = fig.axes[1]
    assert "log" in cbar.get_ylabel()
    assert np.ma.count_masked(mesh.get_array()) == 4  # the four underflowed lags


def test_divergence_chart_counts():
    df = pd.DataFrame({
        "seq_len": [10] * 4 + [100] * 4,
        "config": ["tanh + orthogonal", "ReLU + identity (IRNN)"] * 4,
        "diverged": [False, False, False, True, False, True, False, True],
    })
    fig = plots.divergence_chart(df, "seq_len", "config")
    ax = labelled(fig)
    labels = [t.get_text() for t in ax.texts]
    assert labels == ["0/2", "0/2", "1/2", "2/2"]  # tanh bars, then ReLU bars
    heights = [p.get_height() for c in ax.containers for p in c]
    assert heights == pytest.approx([0, 0, 0.5, 1])
    assert "diverged" in ax.get_ylabel()


def test_divergence_chart_without_hue():
    df = pd.DataFrame({"clip_norm": [0.5, 0.5, 5.0, 5.0], "diverged": [0, 1, 1, 1]})
    ax = labelled(plots.divergence_chart(df, "clip_norm"))
    assert [t.get_text() for t in ax.texts] == ["1/2", "2/2"]


def test_loss_surface_with_paths():
    surf = pascanu.loss_surface(np.linspace(2, 8, 41), np.linspace(-5, 1, 31))
    paths = {
        "plain": pascanu.descend(5.5, -2.0, lr=0.5, n_steps=5),
        "clipped": pascanu.descend(5.5, -2.0, lr=0.5, n_steps=5, clip_threshold=1.0),
    }
    fig = plots.loss_surface(surf.w, surf.b, surf.loss, paths)
    ax = labelled(fig)
    assert ax.get_xlabel() == "recurrent weight w"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["plain", "clipped"]
    assert ax.get_xlim() == (2, 8)
    assert "log" in fig.axes[1].get_ylabel()
