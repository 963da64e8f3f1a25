"""Rules that tie a chapter's parameters together (a recall lag below the sequence length, a
model that fits in memory), checked by ``rnnbook build`` before any chapter runs."""
from __future__ import annotations

import os
from typing import Any, Mapping

from rnnbook.book.params import ParamError, _apply, in_range

#: The memory estimate counts float32 numbers: copies of the U x U recurrent matrix (weights,
#: gradient, Adam moments, spares) and of the B x T x U states (states, pre-activations and
#: their gradients in the hand-written BPTT, spares).
FLOAT_BYTES, WEIGHT_COPIES, STATE_COPIES = 4, 8, 16


def training_memory(units: int, batch_size: int, seq_len: int) -> int:
    """Estimated bytes to train a recurrent layer of ``units`` on ``batch_size`` sequences of
    ``seq_len`` frames (an order of magnitude, not a measurement).

    >>> training_memory(64, 64, 20) / 2**20  # MiB
    5.125
    """
    return FLOAT_BYTES * (WEIGHT_COPIES * units**2 + STATE_COPIES * batch_size * seq_len * units)


def memory_budget() -> int:
    """This machine's physical memory, in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _largest(values: Mapping[str, Any], *names: str, plus: Mapping[str, int] | None = None,
             default: tuple[int, str]) -> tuple[int, str]:
    """The largest of the ``names`` present (a number, or a list's maximum, plus ``plus[name]``),
    with where it came from; ``default`` when none is present."""
    found = []
    for name in names:
        value, extra = values.get(name), (plus or {}).get(name, 0)
        if isinstance(value, list) and value:
            found.append((max(value) + extra, f"max({name})" + (f" + {extra}" if extra else "")))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found.append((value + extra, name))
    return max(found) if found else default


def check_chapter(values: Mapping[str, Any], where: str = "", budget: int | None = None) -> None:
    """Rules that tie parameters together, on the values one chapter runs with (its defaults
    updated with the build's values); raises :class:`ParamError`.

    - the recall task with a ``lag`` needs ``0 <= lag <= seq_len - 1``;
    - the largest run (``units`` or ``widths``; ``batch_size`` or ``n_probe``; ``seq_len`` or
      ``max(lags) + 1``) must fit, by :func:`training_memory`, in ``budget`` bytes (default:
      this machine's memory).

    >>> check_chapter({"task": "recall", "seq_len": 20, "lag": 19})
    >>> check_chapter({"task": "recall", "seq_len": 20, "lag": 20}, "ch")
    Traceback (most recent call last):
    ...
    rnnbook.book.params.ParamError: ch: parameter 'lag' value 20 is not allowed: must be between 0 and 19 (the recall task needs lag < seq_len = 20)
    """
    at = f"{where}: " if where else ""
    lag, seq_len = values.get("lag"), values.get("seq_len")
    if values.get("task", "recall") == "recall" and lag is not None and seq_len is not None:
        _apply(in_range(0, seq_len - 1), lag, f"{at}parameter 'lag' value {lag!r}",
               f"the recall task needs lag < seq_len = {seq_len}")
    units = _largest(values, "units", "widths", default=(0, "no recurrent layer"))
    batch = _largest(values, "batch_size", "n_probe", default=(1, "one sequence"))
    steps = _largest(values, "seq_len", "lags", plus={"lags": 1}, default=(1, "one frame"))
    need = training_memory(units[0], batch[0], steps[0])
    budget = memory_budget() if budget is None else budget
    if need > budget:
        raise ParamError(
            f"{at}units={units[0]} ({units[1]}) x batch={batch[0]} ({batch[1]}) x T={steps[0]} ({steps[1]}) "
            f"needs about {need / 2**30:.3g} GiB to train (estimate: {FLOAT_BYTES} bytes x "
            f"({WEIGHT_COPIES} units^2 + {STATE_COPIES} batch x T x units)), more than the "
            f"{budget / 2**30:.3g} GiB of memory available; lower units/widths, batch_size/n_probe "
            f"or seq_len/lags"
        )
