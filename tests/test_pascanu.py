"""The single-unit recurrence of Pascanu et al. (2013): gradients, clipping, the wall."""
import numpy as np
import pytest

from rnnbook import pascanu


def finite_difference(w, b, eps=1e-6, **kw):
    def loss(w_, b_):
        return pascanu.loss_and_grad(w_, b_, **kw)[0]

    return ((loss(w + eps, b) - loss(w - eps, b)) / (2 * eps),
            (loss(w, b + eps) - loss(w, b - eps)) / (2 * eps))


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "linear"])
def test_gradient_matches_finite_differences(activation):
    rng = np.random.default_rng(0)
    # linear blows up past |w| = 1; keep its weights where 50 steps stay representable
    scale = 0.9 if activation == "linear" else 6.0
    w = rng.uniform(-scale, scale, 20)
    b = rng.uniform(-3, 3, 20)
    _, gw, gb = pascanu.loss_and_grad(w, b, activation=activation)
    fw, fb = finite_difference(w, b, activation=activation)
    np.testing.assert_allclose(gw, fw, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(gb, fb, rtol=1e-5, atol=1e-9)


def test_forward_matches_plain_loop():
    w, b = 3.0, -1.0
    x = 0.5
    for _ in range(50):
        x = w / (1 + np.exp(-x)) + b
    loss_loop = (1 / (1 + np.exp(-x)) - 0.7) ** 2
    assert pascanu.loss_and_grad(w, b)[0] == pytest.approx(loss_loop, rel=1e-12)


def test_surface_layout_matches_pointwise_evaluation():
    w_grid, b_grid = np.linspace(0, 8, 7), np.linspace(-4, 1, 5)
    surf = pascanu.loss_surface(w_grid, b_grid)
    assert surf.loss.shape == (5, 7)
    assert surf.loss[3, 2] == pytest.approx(pascanu.loss_and_grad(w_grid[2], b_grid[3])[0])
    frame = surf.to_frame()
    assert len(frame) == 35 and {"w", "b", "loss", "grad_norm"} <= set(frame.columns)


def test_the_wall_exists():
    surf = pascanu.loss_surface(np.linspace(0, 10, 201), np.linspace(-6, 2, 161))
    summary = pascanu.wall_summary(surf)
    assert summary["orders_of_magnitude"] > 3
    # the steepest point sits past the bifurcation w = 4 of the sigmoid unit
    assert summary["w_at_max"] > 4


def test_clipped_steps_never_exceed_lr_times_threshold():
    lr, threshold = 0.5, 1.0
    path = pascanu.descend(**{**pascanu.WALL_EXAMPLE, "lr": lr}, clip_threshold=threshold)
    steps = np.hypot(np.diff(path.w), np.diff(path.b))
    assert steps.max() <= lr * threshold * (1 + 1e-12)
    assert path.clipped.any()
    np.testing.assert_allclose(steps, path.update_norm.iloc[:-1], rtol=1e-9, atol=1e-15)


def test_wall_example_plain_jumps_and_clipped_does_not():
    plain = pascanu.descend(**pascanu.WALL_EXAMPLE)
    clipped = pascanu.descend(**pascanu.WALL_EXAMPLE, clip_threshold=1.0)
    lr = pascanu.WALL_EXAMPLE["lr"]
    assert plain.update_norm.max() > 100 * lr
    assert not plain.clipped.any()
    assert clipped.loss.iloc[-1] < 0.01 < plain.loss.iloc[-1]


def test_clip_by_norm_rule():
    g, was = pascanu.clip_by_norm([3.0, 4.0], 1.0)
    np.testing.assert_allclose(g, [0.6, 0.8])
    assert was
    g, was = pascanu.clip_by_norm([0.3, 0.4], 1.0)
    np.testing.assert_allclose(g, [0.3, 0.4])
    assert not was
    g, _ = pascanu.clip_by_norm([np.inf, 1.0], 1.0)
    assert not np.all(np.isfinite(g))
