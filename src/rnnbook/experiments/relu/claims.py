"""The relu chapter's claims, decided by the book's one rule (:mod:`rnnbook.verdicts`) from the
runs of its sweeps.

A run frame (from :func:`rnnbook.sweeps.run_sweep` with :func:`.common.outcomes`) has one row per
run with ``label`` (the configuration), ``interface`` (the CNN-to-RNN interface level), ``lag``,
``success`` and the run's ``record``. Each claim names its two arms, the points it compares them
at, and what it counts:

* **relu_short** -- ReLU (orthogonal) does as well as tanh at the shortest lag: successes at
  every interface level of the shortest lag (an equivalence claim: a tie reads "no difference
  detected", the honest answer; a significant loss is "contradicted");
* **relu_memory** -- ReLU (orthogonal) reaches longer lags than tanh: successes at every
  interface level and every lag beyond the shortest (:func:`memory_points`: a level at which
  the lag ladder stopped one arm at the shortest lag, while the other met the criterion there, is
  compared at the shortest lag, its only shared lag);
* **gated** -- a gated cell (GRU, LSTM) reaches longer lags than tanh: the same points, for each
  gated cell of the grid;
* **irnn** -- the IRNN does as well as an LSTM, the cell Le et al. compared it with (the grid's
  first gated cell when it has no LSTM): successes at every point (equivalence, as relu_short);
* **relu_unstable** -- ReLU fails more often than tanh under aggressive settings: failures
  (:func:`rnnbook.verdicts.failure_reason`: diverged, dead or never above chance), pooled over
  the unclipped learning-rate sweep and over the width sweep (two points);
* **interface** -- the interface level changes whether a configuration learns (no direction
  claimed): the Keras-default level against every other level, per configuration and lag.

Example:
    >>> import pandas as pd
    >>> runs = pd.DataFrame({"label": ["a"] * 4 + ["b"] * 4, "interface": "keras", "lag": 3,
    ...                      "success": [True] * 4 + [False] * 4,
    ...                      "record": [{"outcome": "success"}] * 4 + [{"outcome": "censored"}] * 4})
    >>> points(runs, "a", "b")[0]
    Point(a=4, n_a=4, b=0, n_b=4, improving_a=0, improving_b=0, label='Keras default (Glorot), lag 3')
"""
from __future__ import annotations

import pandas as pd

from rnnbook import verdicts
from rnnbook.experiments.common import failure_reasons, role_label
from rnnbook.experiments.relu.interface import parse_interface
from rnnbook.verdicts import Point, Verdict, decide

#: The claims of the chapter, in the order of its text, with the sentence the claims table prints.
CLAIMS = {
    "relu_short": "For short sequences ReLU is fine (as good as tanh)",
    "relu_memory": "ReLU helps against vanishing gradients: it reaches longer lags than tanh",
    "gated": "LSTM and GRU reach longer lags than a simple RNN",
    "irnn": "The IRNN trains about as well as an LSTM",
    "relu_unstable": "ReLU is less stable than tanh (fails more often at large learning rates or widths)",
    "interface": "The CNN-to-RNN interface decides whether a configuration learns",
}


def _point_label(keys, by) -> str:
    """``"Keras default (Glorot), lag 10"``: a point's values of ``by``, the interface level by its label."""
    return ", ".join(f"lag {int(v)}" if k == "lag" else f"{v} units" if k == "units"
                     else parse_interface(v).label if k == "interface" else str(v) for k, v in zip(by, keys))


def points(runs: pd.DataFrame, a: str, b: str, by=("interface", "lag"), count: str = "success",
           where=None) -> list[Point]:
    """:class:`~rnnbook.verdicts.Point` per shared value of ``by``: configuration ``a``'s count of
    ``count`` (a boolean column) against ``b``'s, with the runs of each censored while still
    improving. ``where`` filters the runs first."""
    runs = runs if where is None else runs[where(runs)]
    out = []
    for keys, part in runs.groupby(list(by), sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        pa, pb = part[part["label"] == a], part[part["label"] == b]
        if not (len(pa) and len(pb)):
            continue
        out.append(Point(int(pa[count].sum()), len(pa), int(pb[count].sum()), len(pb),
                         improving(pa), improving(pb), _point_label(keys, by)))
    return out


def memory_points(runs: pd.DataFrame, a: str, b: str) -> list[Point]:
    """The points of a memory claim (``a`` reaches longer lags than ``b``): per interface level,
    the lags beyond the grid's shortest where both ran. A level where they share no such lag
    (the lag ladder stopped one of them after the shortest lag) is compared at the shortest lag
    when either met the criterion there: one arm learned where the other did not, which is a
    difference of reach. A level where neither learned anything says nothing about reach and
    gives no point.

    Example:
        >>> runs = pd.DataFrame({"label": ["a"] * 4 + ["b"] * 2, "interface": "he", "lag": [5, 5, 10, 10, 5, 5],
        ...                      "success": [True] * 4 + [False] * 2, "record": [{"outcome": "success"}] * 6})
        >>> [p.label for p in memory_points(runs, "a", "b")]
        ['He-uniform, lag 5']
    """
    if runs.empty:
        return []
    shortest = int(runs["lag"].min())
    out = []
    for _, level in runs.groupby("interface", sort=False):
        longer = points(level, a, b, where=lambda r: r["lag"] > shortest)
        short = points(level, a, b, where=lambda r: r["lag"] == shortest)
        out += longer or [p for p in short if p.a or p.b]
    return out


def improving(runs: pd.DataFrame) -> int:
    """Runs of ``runs`` censored while still improving (:func:`rnnbook.verdicts.still_improving`)."""
    return int(sum(verdicts.still_improving(r) for r in runs["record"]))


def with_failures(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with ``failure`` (the reason or None) and ``failed`` by the book's one failure rule."""
    reasons = failure_reasons(runs)
    return runs.assign(failure=reasons, failed=reasons.notna())


def roles(lag_labels, present) -> dict:
    """The claims' roles: ``tanh``, ``relu``, ``irnn`` and ``tf1``, each its configuration's label
    when ``present`` holds it (else None), and ``gated``, the gated cells among the lag sweep's
    ``lag_labels`` in their order."""
    out = {k: (role_label(k) if role_label(k) in set(present) else None) for k in ("tanh", "relu", "irnn", "tf1")}
    out["gated"] = [lab for lab in dict.fromkeys(lag_labels) if lab in ("GRU", "LSTM")]
    return out


def pooled(pts: list[Point], label: str) -> Point:
    """The points' counts summed into one point."""
    return Point(sum(p.a for p in pts), sum(p.n_a for p in pts), sum(p.b for p in pts), sum(p.n_b for p in pts),
                 sum(p.improving_a for p in pts), sum(p.improving_b for p in pts), label)


def claim_verdicts(lag: pd.DataFrame, lr: pd.DataFrame, width: pd.DataFrame, roles: dict,
                   baseline: str, ablation: pd.DataFrame | None = None) -> dict[str, Verdict]:
    """Every claim's :class:`~rnnbook.verdicts.Verdict`.

    ``roles`` maps ``tanh``, ``relu``, ``irnn``, ``tf1`` and ``gated`` (a list) to the labels
    present in the runs (absent roles: "not decided"); ``baseline`` is the Keras-default
    interface level; ``ablation`` (the interface ablation's runs) adds its points to the
    interface claim."""
    tanh, relu, irnn, tf1, gated = (roles.get(k) for k in ("tanh", "relu", "irnn", "tf1", "gated"))
    lag_min = int(lag["lag"].min()) if len(lag) else 0
    missing = Verdict(verdicts.NOT_DECIDED, "The grid lacks a configuration this claim compares.")
    v: dict[str, Verdict] = {}
    short = lambda r: r["lag"] == lag_min  # noqa: E731
    v["relu_short"] = (decide(points(lag, relu, tanh, where=short), names=(relu, tanh))
                       if relu and tanh else missing)
    v["relu_memory"] = (decide(memory_points(lag, relu, tanh), names=(relu, tanh))
                        if relu and tanh else missing)
    gated_pts = [Point(**{**p.__dict__, "label": f"{g}, {p.label}"})
                 for g in (gated or []) for p in memory_points(lag, g, tanh)]
    v["gated"] = decide(gated_pts, names=("gated cell", tanh)) if gated and tanh else missing
    partner = ("LSTM" if "LSTM" in gated else gated[0]) if gated else None
    v["irnn"] = decide(points(lag, irnn, partner), names=(irnn, partner)) if irnn and partner else missing
    unstable = []
    if relu and tanh and len(lr):
        lr_f = with_failures(lr[lr["clip_mode"] == "none"])
        unstable.append(pooled(points(lr_f, relu, tanh, by=("learning_rate",), count="failed"),
                               "the unclipped learning-rate sweep"))
    if tf1 and tanh and len(width):
        w_f = with_failures(width)
        unstable.append(pooled(points(w_f, tf1, tanh, by=("units",), count="failed"), "the width sweep"))
    unstable = [p for p in unstable if p.n_a and p.n_b]
    v["relu_unstable"] = (decide(unstable, names=("ReLU", tanh), counting="failures") if unstable else missing)
    v["interface"] = interface_verdict(lag, baseline, ablation)
    return v


def _level_points(runs: pd.DataFrame, baseline: str, suffix: str = "") -> list[Point]:
    """Every non-baseline interface level against ``baseline``, per configuration and lag."""
    levels = [x for x in dict.fromkeys(runs["interface"]) if x != baseline]
    pts = []
    for (label, lag_), part in runs.groupby(["label", "lag"], sort=False):
        for level in levels:
            pa, pb = part[part["interface"] == level], part[part["interface"] == baseline]
            if len(pa) and len(pb):
                pts.append(Point(int(pa["success"].sum()), len(pa), int(pb["success"].sum()), len(pb),
                                 improving(pa), improving(pb), f"{label}, lag {int(lag_)}{suffix}",
                                 names=(parse_interface(level).label, parse_interface(baseline).label)))
    return pts


def interface_verdict(lag: pd.DataFrame, baseline: str, ablation: pd.DataFrame | None = None) -> Verdict:
    """The interface claim: does any level differ from the Keras default ``baseline`` for some
    configuration at some lag, in the lag sweep or in the interface ablation (its points join
    the same Holm adjustment)? No direction is claimed, so a difference either way supports it."""
    pts = _level_points(lag, baseline) if baseline in set(lag["interface"]) else []
    if ablation is not None and len(ablation) and baseline in set(ablation["interface"]):
        pts += _level_points(ablation, baseline, " (ablation)")
    if not pts:
        return Verdict(verdicts.NOT_DECIDED, "The grid lacks the Keras-default level or a second level.")
    v = decide(pts, names=("the level", baseline))
    if v.word == verdicts.CONTRADICTED:  # no direction claimed: a difference either way supports
        return Verdict(verdicts.SUPPORTED, v.why, v.test, v.p)
    return v


def claims_table(v: dict[str, Verdict]) -> pd.DataFrame:
    """One row per claim: the claim, the verdict, the rule's test, its p-value and the reason."""
    return pd.DataFrame([{"claim": CLAIMS.get(k, k), "verdict": x.word, "test": x.test or "none",
                          "p": x.p, "evidence": x.why, "_key": k} for k, x in v.items()])
