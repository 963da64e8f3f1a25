"""The long-lag clipping comparison's matched-step check (:mod:`.collapse`): both arms' measured
steps, and where they differ, the step control and what the page says of it.

Under Adam, clipping rescales the gradient before the optimiser divides it by its own running
scale, so a clipped run may step as far as an unclipped one, or further. :func:`step_check`
measures both arms' first :data:`STEP_UPDATES` updates (:func:`rnnbook.steps.measure_steps`) on
the first :data:`STEP_SEEDS` seeds; where the medians differ by more than
:data:`rnnbook.steps.MATCH_TOLERANCE`, it looks for the unclipped learning rate with the clipped
runs' step (:func:`rnnbook.steps.match_step`), the **step control**. :func:`steps_text` and
:func:`control_text` say it on the page; a control whose step ends outside the tolerance is not
called matched.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from rnnbook import steps as measured
from rnnbook.experiments.common import fmt_norm, fmt_p, join_and

#: The matched-step check measures each arm's first updates on the first seeds of the comparison.
STEP_UPDATES = 100
STEP_SEEDS = 2


def step_check(pairs, seeds, steps) -> tuple[pd.DataFrame, list]:
    """Per point (``pairs``: a label, an interface level, an unclipped configuration and its
    clipped twin), both arms' median update norm over their first :data:`STEP_UPDATES` updates on
    the first :data:`STEP_SEEDS` of ``seeds`` (``steps(config, seeds)``: the measured steps), the
    ratio clipped / unclipped, the share of updates clipped, and ``matched``: the ratio within
    :data:`rnnbook.steps.MATCH_TOLERANCE` of 1. Where it is not, the step control: the
    unclipped configuration at the learning rate :func:`rnnbook.steps.match_step` finds
    (``control_learning_rate``; ``control_ratio``: its measured step / the clipped runs';
    ``control_matched``: within the tolerance), and every rate the search tried
    (``control_trail``: ``(rate, step ratio, largest gradient norm)``; the rescaling assumes a step
    proportional to the rate, which a run whose gradient spikes inflate Adam's running scale may
    not take).

    Returns the table (empty without ``steps`` or pairs) and the controls to train, as
    ``(label, level, configuration)``."""
    columns = ["label", "lag", "median_update_none", "median_update_clip", "ratio", "share_clipped", "matched",
               "learning_rate", "control_learning_rate", "control_ratio", "control_matched", "control_trail"]
    if steps is None or not pairs:
        return pd.DataFrame(columns=columns), []
    probe_seeds = list(seeds)[:STEP_SEEDS]
    measure = lambda config: steps(dataclasses.replace(config, max_updates=STEP_UPDATES), probe_seeds)  # noqa: E731
    rows, controls = [], []
    for label, level, plain, clipped in pairs:
        a, b = measure(plain), measure(clipped)
        none, clip = measured.median_step(a), measured.median_step(b)
        ratio = clip / none if none > 0 else math.nan
        matched = bool(np.isfinite(ratio) and abs(ratio - 1) <= measured.MATCH_TOLERANCE)
        row = {"label": label, "lag": int(plain.lag), "median_update_none": none, "median_update_clip": clip,
               "ratio": ratio, "share_clipped": measured.median_step(b, "clip_share", np.mean), "matched": matched,
               "learning_rate": float(plain.learning_rate), "control_learning_rate": math.nan,
               "control_ratio": math.nan, "control_matched": False, "control_trail": ()}
        if not matched and np.isfinite(ratio):
            trail = []

            def tried(config, clip=clip):
                m = measure(config)
                trail.append((float(config.learning_rate), measured.median_step(m) / clip,
                              measured.median_step(m, "grad_norm", np.max)))
                return m

            control, m = measured.match_step(lambda x, c=plain: dataclasses.replace(c, learning_rate=x),
                                             plain.learning_rate, a, clip, tried)
            ratio_c = measured.median_step(m) / clip
            row.update(control_learning_rate=float(control.learning_rate), control_ratio=ratio_c,
                       control_matched=bool(abs(ratio_c - 1) <= measured.MATCH_TOLERANCE), control_trail=tuple(trail))
            controls.append((label, level, control))
        rows.append(row)
    return pd.DataFrame(rows, columns=columns), controls


def steps_text(table: pd.DataFrame, rates: pd.DataFrame | None = None) -> str:
    """The matched-step check in a few sentences (Markdown), with the step controls'
    outcomes from ``rates`` (:func:`rates_table`) where they were trained.

    Example:
        >>> t = pd.DataFrame({"label": ["tanh"], "lag": [80], "ratio": [0.97], "share_clipped": [0.4],
        ...                   "matched": [True]})
        >>> print(steps_text(t))  # doctest: +ELLIPSIS
        Over their first 100 updates on 2 seeds, the clipped runs' median update was, in multiples of ...
    """
    if table.empty:
        return "No step was measured: there is no long lag with a clipped arm."
    each = "; ".join(f"{r['label']} at lag {int(r['lag'])}, {r['ratio']:.2f} ({100 * r['share_clipped']:.0f} % of "
                     "the updates clipped)" for _, r in table.iterrows())
    text = (f"Over their first {STEP_UPDATES} updates on {STEP_SEEDS} seeds, the clipped runs' median update was, "
            f"in multiples of the unclipped runs': {each}. ")
    tol = f"{100 * measured.MATCH_TOLERANCE:.0f} %"
    if bool(table["matched"].all()):
        return text + (f"Within {tol}, clipping left the typical step as it was, so the unclipped arm is itself "
                       "the control at the clipped runs' measured step: a difference between the arms is not "
                       "the effect of shorter steps.")
    off = table[~table["matched"]]
    parts = []
    for word, side in (("shorter", off["ratio"] < 1), ("longer", off["ratio"] > 1)):
        where = join_and([f"{r['label']} at lag {int(r['lag'])}" for _, r in off[side].iterrows()])
        if where:
            parts.append(f"at {where} the clipped runs took {word} steps")
    why_longer = (" A possible reason for longer steps, not tested here: under Adam a clipped spike no longer "
                  "inflates the optimiser's running scale of the gradient, which would otherwise shorten the "
                  "steps after it." if bool((off["ratio"] > 1).any()) else "")
    text += f"The steps differ by more than {tol}: {'; '.join(parts)}.{why_longer}"
    trained = [] if rates is None or rates.empty else [control_text(r, rates) for _, r in off.iterrows()]
    trained = [t for t in trained if t]
    if not trained:
        return text + (" A control at the clipped runs' measured step (unclipped Adam at the learning rate times the "
                       "ratio) was not trained, so a difference there may be the step size's, not the clipping's.")
    return text + " " + " ".join(trained)


def control_text(step: pd.Series, rates: pd.DataFrame) -> str:
    """One point's step control (a row of :func:`step_check`) against the clipped arm,
    from ``rates`` (:func:`rates_table`); empty when the control has no runs. A control whose
    step the rescaling did not bring within the tolerance is not called matched; every rate tried
    is given.

    Example:
        >>> step = pd.Series({"label": "IRNN", "lag": 20, "learning_rate": 1e-3, "control_learning_rate": 2.3e-3,
        ...                   "control_ratio": 1.04, "control_matched": True, "control_trail": ((2.3e-3, 1.04, 9.0),)})
        >>> rates = pd.DataFrame([{"label": "IRNN", "lag": 20, "runs_control": 10, "collapses_control": 0,
        ...     "successes_control": 3, "diverged_control": 0, "runs_clip": 10, "collapses_clip": 0,
        ...     "successes_clip": 0, "control_fisher_p": 1.0, "control_logrank_p": 0.07}])
        >>> print(control_text(step, rates))  # doctest: +ELLIPSIS
        At IRNN at lag 20 the matched-step control (unclipped Adam at learning rate 0.0023, 2.30 times ...
    """
    row = rates[(rates["label"] == step["label"]) & (rates["lag"] == int(step["lag"]))]
    if row.empty or not int(row["runs_control"].iloc[0]):
        return ""
    r, where, base = row.iloc[0], f"{step['label']} at lag {int(step['lag'])}", float(step["learning_rate"])
    n = int(r["runs_control"])
    outcome = (f"{int(r['diverged_control'])} of {n} diverged, {int(r['collapses_control'])} collapsed and "
               f"{int(r['successes_control'])} met the criterion, against the clipped arm's "
               f"{int(r['collapses_clip'])} collapses and {int(r['successes_clip'])} successes of {int(r['runs_clip'])} "
               f"(Fisher p {fmt_p(r['control_fisher_p'])} on collapses, log-rank p {fmt_p(r['control_logrank_p'])} on "
               "updates to success; raw, not part of the verdicts, which compare the two arms a user chooses "
               "between)")
    if bool(step["control_matched"]):
        return (f"At {where} the matched-step control (unclipped Adam at learning rate "
                f"{step['control_learning_rate']:.2g}, {step['control_learning_rate'] / base:.2f} times the tuned "
                f"rate; its measured step {step['control_ratio']:.2f} times the clipped runs') trained on the same "
                f"seeds: {outcome}.")
    trail = list(step["control_trail"])
    tried = "; ".join(f"at {rate:.3g} ({rate / base:.3g} times the tuned rate) the step was {x:.2f} times the clipped "
                      f"runs' and the largest gradient norm {fmt_norm(g)}" for rate, x, g in trail)
    return (f"At {where} no unclipped learning rate tried took the clipped runs' step. Rescaling the rate by the "
            f"step it measured, {len(trail)} time{'s' if len(trail) != 1 else ''} (first {STEP_UPDATES} updates, "
            f"{STEP_SEEDS} seeds): {tried}.{_growth(trail, float(step['ratio']))} The unclipped runs at the last "
            f"rate trained on the same seeds anyway: {outcome}. They did not take the clipped runs' step, so they are "
            "reported here and not used as a matched-step control.")


def _growth(trail: list, ratio: float) -> str:
    """How the rate, the step and the largest gradient norm grew from the first rate tried to the
    last, and whether that fits Adam's spikes (:func:`steps_text`'s reason for longer clipped steps).

    Example:
        >>> _growth([(0.002, 0.4, 100.0), (0.02, 0.5, 9000.0)], 2.3)  # doctest: +ELLIPSIS
        ' From the first rate tried to the last, the rate grew 10-fold, the step 1.2-fold and the ...'
    """
    if len(trail) < 2 or not all(np.isfinite(x) and x > 0 for t in (trail[0], trail[-1]) for x in t):
        return ""
    rate, step, norm = (trail[-1][i] / trail[0][i] for i in range(3))
    text = (f" From the first rate tried to the last, the rate grew {rate:.3g}-fold, the step {step:.2g}-fold and "
            f"the largest gradient norm {fmt_norm(norm)}-fold.")
    if ratio > 1 and step < rate / 2 and norm > rate:
        text += (" The step lagged far behind the rate while the spikes grew faster than it, which is consistent "
                 "with the reason above for longer clipped steps (not tested apart).")
    return text
