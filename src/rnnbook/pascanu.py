"""The single-unit recurrence of Pascanu, Mikolov & Bengio (2013), Sec. 3.

The model behind their "exploding-gradient wall" figure::

    x_t = w * s(x_{t-1}) + b,    x_0 = 0.5,    L(w, b) = (s(x_T) - 0.7)^2,  T = 50

with ``s`` the logistic sigmoid. Past ``w = 4`` (where ``w * max s' = 1``) the unit
becomes bistable: ``x_T`` falls into a low or a high fixed point depending on
(w, b), and the border between the two basins is a cliff in the loss whose gradient
is orders of magnitude larger than anywhere else. The valley of low loss runs right
along that cliff, so plain gradient descent that reaches the valley can touch the wall
and be thrown far away, while Pascanu's norm clipping keeps every step short.

Everything here is NumPy float64 and vectorised over any broadcastable (w, b) arrays;
gradients are exact, by forward-mode differentiation through the 50 steps (for two
parameters this is cheaper than backprop through time and gives the same numbers).

>>> surf = loss_surface(np.linspace(0, 10, 201), np.linspace(-6, 2, 161))
>>> plain = descend(**WALL_EXAMPLE)
>>> clipped = descend(**WALL_EXAMPLE, clip_threshold=1.0)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: The paper's setup: initial state, target output and number of steps.
X0 = 0.5
TARGET = 0.7
STEPS = 50

#: A start and learning rate where plain gradient descent walks along the valley,
#: touches the wall after about 30 updates and jumps hundreds of units away (landing
#: on the flat high plateau, loss 0.09), while clipping at 1 keeps every step at most
#: ``lr`` long and ends in the valley (loss < 0.01). Pass as ``descend(**WALL_EXAMPLE)``.
WALL_EXAMPLE = {"w0": 5.5, "b0": -2.0, "lr": 0.5, "n_steps": 100}


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def _sigmoid_slope(x):
    s = _sigmoid(x)
    return s * (1.0 - s)


#: name -> (s, s') as vectorised NumPy functions.
ACTIVATIONS = {
    "sigmoid": (_sigmoid, _sigmoid_slope),
    "tanh": (np.tanh, lambda x: 1.0 - np.tanh(x) ** 2),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float)),
    "linear": (lambda x: x, np.ones_like),
}


def _activation(name):
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}") from None


def final_state(w, b, steps=STEPS, activation="sigmoid", x0=X0):
    """Return ``(x_T, dx_T/dw, dx_T/db)`` for every broadcast (w, b) pair.

    Forward-mode sensitivities: ``dx_t/dw = s(x_{t-1}) + w s'(x_{t-1}) dx_{t-1}/dw`` and
    ``dx_t/db = 1 + w s'(x_{t-1}) dx_{t-1}/db``, starting from zero.
    """
    s, ds = _activation(activation)
    w, b = np.broadcast_arrays(np.asarray(w, float), np.asarray(b, float))
    x = np.full(w.shape, float(x0))
    dx_dw = np.zeros(w.shape)
    dx_db = np.zeros(w.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            sx, gain = s(x), w * ds(x)
            dx_dw = sx + gain * dx_dw
            dx_db = 1.0 + gain * dx_db
            x = w * sx + b
    return x, dx_dw, dx_db


def loss_and_grad(w, b, steps=STEPS, activation="sigmoid", x0=X0, target=TARGET):
    """Return ``(loss, dL/dw, dL/db)`` of ``(s(x_T) - target)^2``, vectorised.

    >>> loss, gw, gb = loss_and_grad(5.5, -2.0)
    """
    s, ds = _activation(activation)
    x, dx_dw, dx_db = final_state(w, b, steps, activation, x0)
    with np.errstate(over="ignore", invalid="ignore"):
        residual = s(x) - target
        dl_dx = 2.0 * residual * ds(x)
        return residual**2, dl_dx * dx_dw, dl_dx * dx_db


@dataclass(frozen=True)
class Surface:
    """Loss and gradient on a grid; arrays have shape ``(len(b), len(w))``.

    That is the layout of ``plt.contour(w, b, loss)``.
    """

    w: np.ndarray
    b: np.ndarray
    loss: np.ndarray
    grad_w: np.ndarray
    grad_b: np.ndarray

    @property
    def grad_norm(self) -> np.ndarray:
        return np.hypot(self.grad_w, self.grad_b)

    def to_frame(self) -> pd.DataFrame:
        """Tidy form: one row per grid point, columns w, b, loss, grad_w, grad_b, grad_norm."""
        ww, bb = np.meshgrid(self.w, self.b)
        return pd.DataFrame({
            "w": ww.ravel(), "b": bb.ravel(), "loss": self.loss.ravel(),
            "grad_w": self.grad_w.ravel(), "grad_b": self.grad_b.ravel(),
            "grad_norm": self.grad_norm.ravel(),
        })


def loss_surface(w_grid, b_grid, steps=STEPS, activation="sigmoid", x0=X0, target=TARGET) -> Surface:
    """Evaluate loss and exact gradient on the grid ``w_grid x b_grid``.

    >>> surf = loss_surface(np.linspace(0, 10, 101), np.linspace(-6, 2, 81))
    >>> surf.loss.shape
    (81, 101)
    """
    w_grid = np.asarray(w_grid, float)
    b_grid = np.asarray(b_grid, float)
    loss, gw, gb = loss_and_grad(w_grid[None, :], b_grid[:, None], steps, activation, x0, target)
    return Surface(w_grid, b_grid, loss, gw, gb)


def clip_by_norm(grad, threshold):
    """Pascanu's rule: if ``||g|| >= threshold`` then ``g <- threshold * g / ||g||``.

    Returns ``(clipped_grad, was_clipped)``. A non-finite norm gives a non-finite
    result, as in Keras: clipping cannot undo an overflow.
    """
    grad = np.asarray(grad, float)
    norm = np.linalg.norm(grad)
    if threshold is None or not norm >= threshold:
        return grad, False
    with np.errstate(invalid="ignore"):
        return grad * (threshold / norm), True


def descend(w0, b0, lr, n_steps, clip_threshold=None, steps=STEPS, activation="sigmoid",
            x0=X0, target=TARGET) -> pd.DataFrame:
    """Plain gradient descent on (w, b), optionally with norm clipping.

    Returns one row per visited point (``n_steps + 1`` rows): ``step, w, b, loss,
    grad_norm`` at that point, ``clipped`` (whether the update leaving it is clipped)
    and ``update_norm`` (the length of that update). The trajectory stops early if the
    parameters become non-finite.

    >>> plain = descend(5.5, -2.0, lr=0.5, n_steps=100)
    >>> clipped = descend(5.5, -2.0, lr=0.5, n_steps=100, clip_threshold=1.0)
    >>> bool(plain.update_norm.max() > 100), bool(clipped.update_norm.max() <= 0.5)
    (True, True)
    """
    params = np.array([w0, b0], float)
    rows = []
    for step in range(n_steps + 1):
        loss, gw, gb = loss_and_grad(params[0], params[1], steps, activation, x0, target)
        grad = np.array([gw, gb], float)
        update, clipped = clip_by_norm(grad, clip_threshold)
        update = lr * update
        rows.append({
            "step": step, "w": params[0], "b": params[1], "loss": float(loss),
            "grad_norm": float(np.linalg.norm(grad)), "clipped": clipped,
            "update_norm": float(np.linalg.norm(update)),
        })
        params = params - update
        if not np.all(np.isfinite(params)):
            break
    return pd.DataFrame(rows)


def wall_summary(surface: Surface) -> dict:
    """A few numbers that describe the wall on a grid, ready for glue.

    ``grad_norm_max``, ``grad_norm_median``, ``orders_of_magnitude`` (log10 of max over
    median), and the ``(w, b)`` where the gradient is largest.
    """
    norm = surface.grad_norm
    i, j = np.unravel_index(np.nanargmax(norm), norm.shape)
    median = float(np.nanmedian(norm))
    return {
        "grad_norm_max": float(norm[i, j]),
        "grad_norm_median": median,
        "orders_of_magnitude": float(np.log10(norm[i, j] / median)),
        "w_at_max": float(surface.w[j]),
        "b_at_max": float(surface.b[i]),
    }
