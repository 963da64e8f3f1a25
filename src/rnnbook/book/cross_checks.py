"""Rules that tie a chapter's parameters together (a recall lag below the sequence length, a
model that fits in memory), checked by ``rnnbook build`` before any chapter runs."""
from __future__ import annotations

import math
import os
from typing import Any, Mapping

from rnnbook.book.params import (BATCH, FRAMES, LAG, REGISTRY, SEQUENCES, UNITS, Param, ParamError, _apply,
                                 in_range)

#: The memory estimate counts float32 numbers: copies of the U x U recurrent matrix (weights,
#: gradient, Adam moments, spares) and of the B x T x U states (states, pre-activations and
#: their gradients in the hand-written BPTT, spares); and the data sets a chapter holds, at most
#: DATA_FRAME_BYTES per frame (8 float64 inputs of a synthetic task; a digit frame is an 8-byte index).
FLOAT_BYTES, WEIGHT_COPIES, STATE_COPIES, DATA_FRAME_BYTES = 4, 8, 16, 64
#: The words of each size of :data:`rnnbook.book.params.SIZES`, and its value when no parameter gives it.
_SIZE_WORDS = {UNITS: "units", BATCH: "batch", FRAMES: "T", SEQUENCES: "held sequences"}
_ABSENT = {UNITS: 0, BATCH: 1, FRAMES: 1, SEQUENCES: 0}


def training_memory(units: int, batch_size: int, seq_len: int) -> int:
    """Estimated bytes to train a recurrent layer of ``units`` on ``batch_size`` sequences of
    ``seq_len`` frames (an order of magnitude, not a measurement).

    >>> training_memory(64, 64, 20) / 2**20  # MiB
    5.125
    """
    return FLOAT_BYTES * (WEIGHT_COPIES * units**2 + STATE_COPIES * batch_size * seq_len * units)


def memory_need(units: int, batch: int, frames: int, sequences: int) -> int:
    """Bytes of the largest run: :func:`training_memory` plus ``sequences`` held sequences of ``frames``."""
    return training_memory(units, batch, frames) + DATA_FRAME_BYTES * sequences * frames


def memory_budget() -> int:
    """This machine's physical memory, in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def run_sizes(values: Mapping[str, Any], registry: Mapping[str, Param] = REGISTRY) -> dict[str, tuple[int, list]]:
    """The sizes of a chapter's largest run, from every parameter the registry marks with a ``size``:
    ``{size: (value, [(number, where it came from), ...])}``. Units, batch and frames are the
    largest given (a list's maximum; a lag ``L`` gives ``L + 1`` frames); held sequences are the
    sum of all given.

    >>> sizes = run_sizes({"units": 64, "widths": [8, 256], "seq_len": 20, "lags": [2, 40], "n_val": 9, "n_test": 5})
    >>> sizes["units"], sizes["frames"], sizes["sequences"], sizes["batch"]
    ((256, [(256, 'max(widths)')]), (41, [(41, 'max(lags) + 1')]), (14, [(9, 'n_val'), (5, 'n_test')]), (1, []))
    """
    found: dict[str, list[tuple[int, str]]] = {size: [] for size in _ABSENT}
    for name, value in values.items():
        param = registry.get(name)
        if param is None or param.size is None or value is None or isinstance(value, bool):
            continue
        many = isinstance(value, list)
        if many and not value:
            continue
        number, where = (max(value), f"max({name})") if many else (value, name)
        if param.size == LAG:
            number, where = number + 1, f"{where} + 1"
        found[FRAMES if param.size == LAG else param.size].append((int(number), where))
    sizes = {}
    for size, items in found.items():
        if not items:
            sizes[size] = (_ABSENT[size], [])
        elif size == SEQUENCES:
            sizes[size] = (sum(n for n, _ in items), items)
        else:
            top = max(n for n, _ in items)
            sizes[size] = (top, [(n, w) for n, w in items if n == top][:1])
    return sizes


def _largest_allowed(size: str, sizes: Mapping[str, int], budget: int) -> float:
    """The largest value of ``size`` that fits in ``budget`` with the other sizes as they are
    (below 1 when no value does)."""
    u, b, t, s = (sizes[k] for k in (UNITS, BATCH, FRAMES, SEQUENCES))
    left = budget / FLOAT_BYTES  # in float32 numbers
    data = DATA_FRAME_BYTES / FLOAT_BYTES
    if size == UNITS:  # WEIGHT_COPIES u^2 + STATE_COPIES b t u <= left - data s t
        a, c = WEIGHT_COPIES, STATE_COPIES * b * t
        rest = left - data * s * t
        return (-c + math.sqrt(c * c + 4 * a * rest)) / (2 * a) if rest > 0 else 0
    if size == BATCH:
        return (left - WEIGHT_COPIES * u * u - data * s * t) / (STATE_COPIES * t * u) if u else math.inf
    if size == FRAMES:
        return (left - WEIGHT_COPIES * u * u) / (STATE_COPIES * b * u + data * s) if b * u + s else math.inf
    return (left - WEIGHT_COPIES * u * u - STATE_COPIES * b * t * u) / (data * t)


def _name(where: str) -> str:
    """``"max(lags) + 1"`` -> ``"lags"``."""
    return where.removeprefix("max(").split(")")[0].split(" ")[0]


def check_memory(values: Mapping[str, Any], where: str = "", budget: int | None = None,
                 registry: Mapping[str, Param] = REGISTRY) -> None:
    """The largest run of a chapter (:func:`run_sizes`) must fit, by :func:`memory_need`, in
    ``budget`` bytes (default: this machine's memory); raises :class:`ParamError` naming the
    parameter furthest over its limit (the largest value that fits with the others as they are)."""
    budget = memory_budget() if budget is None else budget
    sizes = run_sizes(values, registry)
    plain = {size: value for size, (value, _) in sizes.items()}
    need = memory_need(*(plain[k] for k in (UNITS, BATCH, FRAMES, SEQUENCES)))
    if need <= budget:
        return
    culprits = []  # (lowering it alone is enough, how far over its limit, parameter, value, limit)
    for size, (total, items) in sizes.items():
        for number, origin in items:
            limit = _largest_allowed(size, plain, budget) - (total - number if size == SEQUENCES else 0)
            if origin.endswith(" + 1"):  # a lag: T - 1
                number, limit = number - 1, limit - 1
            culprits.append((limit >= 1, number / max(limit, 1e-9), _name(origin), number, int(max(limit, 0))))
    _, _, name, value, limit = max(culprits)
    shown = [f"{_SIZE_WORDS[k]}={v} ({' + '.join(w for _, w in items)})" for k, (v, items) in sizes.items() if items]
    lower = sorted({_name(w) for _, items in sizes.values() for _, w in items})
    raise ParamError(
        f"{where + ': ' if where else ''}parameter {name!r} value {value} is too large: the chapter's largest "
        f"run ({', '.join(shown)}) needs about {need / 2**30:.3g} GiB, more than the {budget / 2**30:.3g} GiB "
        f"of memory here; with the other sizes as they are {name!r} can be at most {limit} (estimate: "
        f"{FLOAT_BYTES} bytes x ({WEIGHT_COPIES} units^2 + {STATE_COPIES} batch x T x units) + {DATA_FRAME_BYTES} "
        f"bytes x held sequences x T; the sizes: {', '.join(lower)})"
    )


def check_chapter(values: Mapping[str, Any], where: str = "", budget: int | None = None) -> None:
    """Rules that tie parameters together, on the values one chapter runs with (its defaults
    updated with the build's values); raises :class:`ParamError`.

    - the recall task with a ``lag`` needs ``0 <= lag <= seq_len - 1``;
    - the largest run must fit in memory (:func:`check_memory`: every parameter the registry
      marks with a ``size`` counts).

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
    check_memory(values, where, budget)
