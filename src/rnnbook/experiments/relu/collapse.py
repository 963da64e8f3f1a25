"""Clipping where explosions happen: the relu chapter's long lags, each simple RNN unclipped and
with ``global_clipnorm``, and the runs that learn and then lose what they learned (collapses,
:mod:`rnnbook.collapse`).

The clipping chapter looks for an explosion by raising plain SGD's learning rate at a short lag;
here the setting is the lag sweep's own (Adam at each configuration's tuned rate, fresh
sequences, the criterion and the cap), at the lags where a simple RNN only just learns:

* **The long lags** (:func:`long_lags`): the ``collapse_lag_count`` longest lags of the lag sweep
  at which some simple-RNN configuration (not GRU or LSTM) met the criterion at least once with
  Keras-default features (the baseline interface level), each with the simple-RNN
  configurations the lag sweep ran there (the lag ladder may have stopped the others). With
  ``collapse_next_lag``, also the next lag of the sweep beyond the longest of them, where no
  simple RNN learned unclipped: does clipping let one learn there at all? With
  ``collapse_stopped``, the learned long lags also run every simple-RNN configuration the lag
  ladder had stopped before them (at its first lag with no success).
* **Two arms** per configuration and lag, on ``collapse_seeds``: *no clipping* (the lag sweep's
  own runs, read from the run cache; seeds it did not run are trained at the same settings) and
  *global_clipnorm* at a threshold set by Pascanu et al.'s §3.2 heuristic:
  ``collapse_clip_multiple`` times the average gradient norm of the unclipped runs at that point
  over their first :data:`PILOT_UPDATES` updates (:func:`rnnbook.collapse.pilot_norm`).
* **The matched-step check** (:func:`.collapse_steps.step_check`): both arms' measured steps
  (:func:`rnnbook.steps.measure_steps`) over their first :data:`STEP_UPDATES` updates on the
  first :data:`STEP_SEEDS` seeds. Under Adam, clipping rescales the gradient before the
  optimiser normalises it, so the clipped runs' median step may equal the unclipped runs'; when
  the two lie within :data:`rnnbook.steps.MATCH_TOLERANCE`, the unclipped arm is itself the
  control at the clipped runs' measured step. Where they do not, a third arm, the **step
  control**, trains unclipped on the same seeds at the learning rate rescaled by the measured
  steps (:func:`rnnbook.steps.match_step`, as the clipping chapter's control); it is a
  matched-step control only if its step ends within the tolerance.
* **Verdicts** (:func:`claim_verdicts`), by the book's one rule: clipping makes collapses rarer
  (Fisher on collapse counts) and reaches the criterion sooner (log-rank), Holm-adjusted over the
  points; no unclipped run collapsing is "premise not met".

Every function takes the chapter's own grid and run functions as arguments (``grid(lag,
labels)`` and ``run``), so it is tested on planted runs without training.

Example:
    >>> threshold(0.123456, 2.0)
    0.2469
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from rnnbook import collapse as rule, verdicts as V
from rnnbook.experiments.common import fmt_ci, fmt_norm, fmt_p, join_and, wilson_interval
from rnnbook.experiments.relu.claims import improving
from rnnbook.experiments.relu.collapse_steps import (STEP_SEEDS, STEP_UPDATES,  # noqa: F401 (API)
                                                     control_text, step_check, steps_text)
from rnnbook.verdicts import Point, Verdict, decide

#: The comparison's parameters (in the relu chapter's parameters cell).
PARAMS = ("collapse_seeds", "collapse_lag_count", "collapse_clip_multiple", "collapse_next_lag", "collapse_stopped")
#: The average gradient norm is taken over the unclipped runs' check intervals up to this update.
PILOT_UPDATES = 200
#: The arms: key -> label (``matched``: the step control, trained where the steps differ).
ARMS = {"none": "no clipping", "global_clipnorm": "global_clipnorm", "matched": "no clipping, step control"}
#: The two arms every claim compares and ``fig-collapse`` draws.
COMPARED = ("none", "global_clipnorm")
#: ``tbl-collapse-rates``'s column of the step control (unclipped at a rescaled learning rate).
CONTROL_COLUMN = "step control: collapses; successes"
#: How the list of collapses names each arm.
EVENT_ARMS = {"none": "unclipped", "global_clipnorm": "clipped", "matched": "unclipped, step control"}
#: The claims, by key, as the page states them.
CLAIMS = {"collapse": "At long lags, clipping the global gradient norm makes collapses rarer (Adam)",
          "collapse_time": "At long lags, clipping the global gradient norm reaches the criterion sooner (Adam)"}


def long_lags(lag_runs: pd.DataFrame, n_lags: int, baseline: str,
              next_lag: bool = False, stopped: bool = False) -> list[tuple[int, list[str]]]:
    """``(lag, configuration labels)`` of the ``n_lags`` longest lags (in increasing order) at
    which some simple-RNN configuration succeeded at least once at interface level ``baseline``;
    the labels are the simple-RNN configurations the lag sweep ran there. With ``next_lag``, also
    the shortest lag beyond the longest of them at which the sweep ran a simple RNN at that level
    (none succeeded there), if it ran one. With ``stopped``, the learned lags take every
    simple-RNN configuration the sweep ran at that level at any lag (those the ladder stopped too).

    Example:
        >>> runs = pd.DataFrame({"cell": ["simple_rnn"] * 3 + ["gru"], "interface": "keras",
        ...                      "lag": [10, 20, 40, 80], "label": "a", "success": [True, True, False, True]})
        >>> long_lags(runs, 2, "keras")
        [(10, ['a']), (20, ['a'])]
        >>> long_lags(runs, 1, "keras", next_lag=True)
        [(20, ['a']), (40, ['a'])]
        >>> stopped = pd.concat([runs, runs.iloc[:1].assign(label="b", success=False)])
        >>> long_lags(stopped, 1, "keras"), long_lags(stopped, 1, "keras", stopped=True)
        ([(20, ['a'])], [(20, ['a', 'b'])])
    """
    if lag_runs.empty:
        return []
    simple = lag_runs[(lag_runs["cell"] == "simple_rnn") & (lag_runs["interface"] == baseline)]
    learned = sorted({int(x) for x in simple.loc[simple["success"].astype(bool), "lag"]}, reverse=True)[:int(n_lags)]
    beyond = sorted({int(x) for x in simple["lag"] if learned and int(x) > learned[0]})[:1] if next_lag else []
    every = list(dict.fromkeys(simple["label"]))
    ran = {lag: list(dict.fromkeys(simple.loc[simple["lag"] == lag, "label"])) for lag in learned + beyond}
    return [(lag, every if stopped and lag in learned else ran[lag]) for lag in sorted(learned) + beyond]


def threshold(average_norm: float, multiple: float) -> float:
    """``multiple`` x ``average_norm`` to four significant digits (NaN when not a positive number)."""
    value = float(multiple) * float(average_norm)
    if not (math.isfinite(value) and value > 0):
        return math.nan
    return float(f"{value:.4g}")


def annotate(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with each run's :class:`rnnbook.collapse.Collapse`: ``collapsed``,
    ``collapse_update``, ``collapse_grad_norm``, ``best_val_acc``, ``drop``, ``collapse_how``."""
    found = [rule.collapse(r) for r in runs["record"]]
    return runs.assign(collapsed=[c.collapsed for c in found],
                       collapse_update=[c.update if c.update is not None else math.nan for c in found],
                       collapse_grad_norm=[c.grad_norm for c in found], best_val_acc=[c.best for c in found],
                       drop=[c.drop for c in found], collapse_how=[c.how for c in found])


def study(p: dict, lag_runs: pd.DataFrame, grid, run, baseline: str, steps=None) -> dict:
    """Run (or load) the comparison. ``grid(lag, labels)`` gives the lag sweep's ``(configs,
    labels, levels)`` of ``labels`` at ``lag`` and the baseline level; ``run(configs, labels,
    seeds, desc, levels)`` is the chapter's :func:`run`; ``steps(config, seeds)`` measures the
    first updates (:func:`rnnbook.steps.steps_of`; None: no matched-step check).

    Keys: ``wanted`` (``collapse_lag_count``), ``points`` (:func:`long_lags`), ``next`` (the lag
    beyond the learned ones, with ``collapse_next_lag``; else None), ``next_asked``, ``stopped``
    (``collapse_stopped``), ``runs`` (one row per
    run of both arms: ``arm``, ``pilot_norm``, ``threshold`` (the point's, on every arm's rows: only
    the clipped arm clips at it), ``added`` (a run the lag sweep did
    not have) and :func:`annotate`'s columns), ``table`` (:func:`rates_table`), ``verdicts``
    (:func:`claim_verdicts`), ``steps`` (:func:`step_check`), ``seeds`` and ``multiple``. Rows of
    the step control (arm ``matched``) join ``runs`` where the steps differ."""
    seeds, multiple = [int(s) for s in p["collapse_seeds"]], float(p["collapse_clip_multiple"])
    learned = long_lags(lag_runs, int(p["collapse_lag_count"]), baseline)
    points = long_lags(lag_runs, int(p["collapse_lag_count"]), baseline, bool(p["collapse_next_lag"]),
                       bool(p["collapse_stopped"]))
    out = {"wanted": int(p["collapse_lag_count"]), "points": points, "seeds": seeds, "multiple": multiple,
           "next": points[-1][0] if len(points) > len(learned) else None, "next_asked": bool(p["collapse_next_lag"]),
           "stopped": bool(p["collapse_stopped"]),
           "steps": step_check([], seeds, steps)[0]}
    grids = [grid(lag, labels) for lag, labels in points]
    configs = [c for g in grids for c in g[0]]
    labels = [lab for g in grids for lab in g[1]]
    levels = [lvl for g in grids for lvl in g[2]]
    if not configs:
        out["runs"] = pd.DataFrame()
        out["table"], out["verdicts"] = rates_table(out["runs"]), claim_verdicts(out["runs"])
        return out
    plain = run(configs, labels, seeds, "relu: long lags, no clipping", levels).assign(arm="none")
    clipped_configs, clipped_labels, clipped_levels, norms, pairs = [], [], [], {}, []
    for config, label, level in zip(configs, labels, levels):
        point = plain[(plain["label"] == label) & (plain["lag"] == config.lag)]
        norms[(label, int(config.lag))] = average = rule.pilot_norm(point["record"], PILOT_UPDATES)
        c = threshold(average, multiple)
        if math.isfinite(c):
            clipped_configs.append(dataclasses.replace(config, clip_mode="global_clipnorm", clip_threshold=c))
            pairs.append((label, level, config, clipped_configs[-1]))
            clipped_labels.append(label)
            clipped_levels.append(level)
    parts = [plain]
    if clipped_configs:
        parts.append(run(clipped_configs, clipped_labels, seeds, "relu: long lags, global_clipnorm",
                         clipped_levels).assign(arm="global_clipnorm"))
    out["steps"], controls = step_check(pairs, seeds, steps)  # once both arms are in hand
    if controls:
        parts.append(run([c for _, _, c in controls], [lab for lab, _, _ in controls], seeds,
                         "relu: long lags, step control",
                         [lvl for _, lvl, _ in controls]).assign(arm="matched"))
    runs = pd.concat(parts, ignore_index=True)
    runs["pilot_norm"] = [norms.get((lab, int(lag)), math.nan) for lab, lag in zip(runs["label"], runs["lag"])]
    runs["threshold"] = [threshold(a, multiple) for a in runs["pilot_norm"]]
    swept = set(zip(lag_runs["label"], lag_runs["interface"], lag_runs["lag"].astype(int), lag_runs["seed"].astype(int)))
    runs["added"] = [arm != "none" or (lab, lvl, int(lag), int(s)) not in swept
                     for arm, lab, lvl, lag, s in zip(runs["arm"], runs["label"], runs["interface"], runs["lag"],
                                                      runs["seed"])]
    out["runs"] = annotate(runs)
    out["table"], out["verdicts"] = rates_table(out["runs"], out["steps"]), claim_verdicts(out["runs"])
    return out


def _arm_counts(part: pd.DataFrame, tag: str) -> dict:
    n, k, s = len(part), int(part["collapsed"].sum()) if len(part) else 0, int(part["success"].sum()) if len(part) else 0
    rate, lo, hi = wilson_interval(k, n)
    srate, slo, shi = wilson_interval(s, n)
    done = part.loc[part["success"].astype(bool), "updates"] if n else pd.Series(dtype=float)
    diverged = int((part["outcome"] == "diverged").sum()) if n and "outcome" in part else 0
    return {f"runs_{tag}": n, f"collapses_{tag}": k, f"diverged_{tag}": diverged, f"collapse_rate_{tag}": rate, f"collapse_lo_{tag}": lo,
            f"collapse_hi_{tag}": hi, f"successes_{tag}": s, f"success_rate_{tag}": srate, f"success_lo_{tag}": slo,
            f"success_hi_{tag}": shi, f"median_updates_{tag}": float(done.median()) if len(done) else math.nan}


def rates_table(runs: pd.DataFrame, steps: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per configuration and lag: the pilot's average norm and the threshold, and per arm
    (``none``, ``clip``, ``control``: the step control, no runs where it was not trained)
    the runs, collapses and successes with Wilson 95 % intervals and the median updates to
    success; Fisher's p of the collapse counts and the log-rank p of updates to success, clipped
    against unclipped and (``control_*``) against the control (all raw, per point); with
    ``steps`` (:func:`step_check`), whether each control took the clipped runs' step
    (``control_matched``, ``control_ratio``)."""
    columns = ["label", "lag", "pilot_norm", "threshold"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for (label, lag), part in runs.groupby(["label", "lag"], sort=False):
        a, b, c = (part[part["arm"] == arm] for arm in ARMS)
        row = {"label": label, "lag": int(lag), "pilot_norm": float(part["pilot_norm"].iloc[0]),
               "threshold": float(part["threshold"].iloc[0]), **_arm_counts(a, "none"), **_arm_counts(b, "clip"),
               **_arm_counts(c, "control")}
        for fisher, logrank, other, tag in (("collapse_fisher_p", "logrank_p", a, "none"),
                                            ("control_fisher_p", "control_logrank_p", c, "control")):
            both = len(other) and len(b)
            row[fisher] = (V.fisher_p(row[f"collapses_{tag}"], len(other), row["collapses_clip"], len(b))
                           if both else math.nan)
            row[logrank] = (V.logrank_p(b["updates"], b["success"], other["updates"], other["success"])
                            if both else math.nan)
        rows.append(row)
    table = pd.DataFrame(rows)
    if steps is not None and not steps.empty:
        table = table.merge(steps[["label", "lag", "control_ratio", "control_matched"]], on=["label", "lag"], how="left")
    return table


def _k_of_n(k, n, rate, lo, hi) -> str:
    return "n/a" if not n else f"{int(k)} of {int(n)}: {fmt_ci(rate, lo, hi)}"


def _unmatched(r: pd.Series) -> str:
    """A control's table cell suffix when its step did not match the clipped runs'."""
    if bool(r.get("control_matched", True)) or not np.isfinite(r.get("control_ratio", math.nan)):
        return ""
    return f" (not matched: step {r['control_ratio']:.2f} times the clipped runs')"


def rates_display(table: pd.DataFrame) -> pd.DataFrame:
    """``tbl-collapse-rates`` for the page: per configuration and lag, the threshold, collapses
    and successes of each arm (k of n: share [Wilson 95 %]) and the two tests' raw p-values; one
    row saying so when there is no long lag."""
    if table.empty:
        return pd.DataFrame([{"configuration": "none: no simple RNN met the criterion at any lag of this build"}])
    out = {"configuration": table["label"], "lag": table["lag"].astype(int),
           "global_clipnorm threshold (average norm)": [f"{c:.3g} ({a:.3g})" if np.isfinite(c) else "n/a"
                                                        for c, a in zip(table["threshold"], table["pilot_norm"])]}
    for what, key in (("collapses", "collapse"), ("successes", "success")):
        for tag, arm in (("none", "no clipping"), ("clip", "clipped")):
            out[f"{what}, {arm}"] = [_k_of_n(r[f"{what}_{tag}"], r[f"runs_{tag}"], r[f"{key}_rate_{tag}"],
                                             r[f"{key}_lo_{tag}"], r[f"{key}_hi_{tag}"]) for _, r in table.iterrows()]
    out["Fisher p (collapses)"] = table["collapse_fisher_p"].map(fmt_p)
    out["log-rank p (updates to success)"] = table["logrank_p"].map(fmt_p)
    if "runs_control" in table and bool((table["runs_control"] > 0).any()):
        out[CONTROL_COLUMN] = [
            f"{int(r['collapses_control'])} of {int(r['runs_control'])}; {int(r['successes_control'])} of "
            f"{int(r['runs_control'])}" + _unmatched(r) if r["runs_control"] else "not trained (steps matched)"
            for _, r in table.iterrows()]
    return pd.DataFrame(out)


def claim_verdicts(runs: pd.DataFrame) -> dict[str, Verdict]:
    """The two claims of :data:`CLAIMS` by :func:`rnnbook.verdicts.decide`, one point per
    configuration and lag: collapses (no clipping against clipped, counting collapses: more
    collapses without clipping is the claimed direction) and updates to success (clipped against
    no clipping, log-rank). Premise: some unclipped run collapsed."""
    pts_c, pts_t = [], []
    if not runs.empty:
        for (label, lag), part in runs.groupby(["label", "lag"], sort=False):
            a, b = part[part["arm"] == "none"], part[part["arm"] == "global_clipnorm"]
            if not (len(a) and len(b)):
                continue
            where = f"{label}, lag {int(lag)}"
            # a run that collapsed has had its event: only the others could change with more updates
            pts_c.append(Point(int(a["collapsed"].sum()), len(a), int(b["collapsed"].sum()), len(b),
                               improving(a[~a["collapsed"]]), improving(b[~b["collapsed"]]), where))
            pts_t.append(Point(int(b["success"].sum()), len(b), int(a["success"].sum()), len(a), improving(b),
                               improving(a), where,
                               p=V.logrank_p(b["updates"], b["success"], a["updates"], a["success"]),
                               favours=V.logrank_favours(b["updates"], b["success"], a["updates"], a["success"])))
    if not pts_c:
        premise, why = False, ("No simple RNN met the criterion at any lag of this build's sweep with Keras-default "
                               "features, so no run could learn and then lose it: there was nothing to compare.")
    else:
        premise = any(pt.a for pt in pts_c)
        why = (f"No unclipped run collapsed at the long lags (fell more than {rule.DROP:g} below its best "
               "validation accuracy), so there was nothing for clipping to prevent.")
    names = (ARMS["none"], ARMS["global_clipnorm"])
    return {"collapse": decide(pts_c, premise, why, names=names, counting="collapses"),
            "collapse_time": decide(pts_t, premise, why, names=names[::-1], test_name="log-rank test")}


# ----------------------------------------------------------------------------- the figure


def example(runs: pd.DataFrame) -> pd.Series | None:
    """The run ``fig-collapse`` shows: a collapsed run before one that did not, an unclipped one
    before a clipped one, the largest fall below its best first; None without runs."""
    runs = runs[runs["arm"].isin(COMPARED)] if not runs.empty else runs
    if runs.empty:
        return None
    order = runs.assign(_plain=runs["arm"] == "none").sort_values(["collapsed", "_plain", "drop"], ascending=False,
                                                                   kind="stable")
    return order.iloc[0]


def traces(runs: pd.DataFrame, shown: pd.Series | None) -> pd.DataFrame:
    """Per check of the shown run and of its twin in the other arm (same configuration, lag and
    seed): updates, validation accuracy and the largest gradient norm of the interval before the
    check (an interval after the last check, up to a divergence, has no accuracy)."""
    if shown is None:
        return pd.DataFrame()
    same = runs[(runs["label"] == shown["label"]) & (runs["lag"] == shown["lag"]) & (runs["seed"] == shown["seed"])]
    rows = []
    for arm in (shown["arm"], *[a for a in COMPARED if a != shown["arm"]]):
        for _, r in same[same["arm"] == arm].iterrows():
            s = rule.interval_stats(r["record"])
            ends = s["check_interval_end"]
            for i, update in enumerate(ends):
                rows.append({"arm": ARMS[arm], "label": r["label"], "lag": int(r["lag"]), "seed": int(r["seed"]),
                             "updates": int(update),
                             "validation accuracy": s["check_val_acc"][i] if i < len(s["check_val_acc"]) else math.nan,
                             "gradient norm (largest since the last check)":
                                 s["check_grad_norm_max"][i] if i < len(s["check_grad_norm_max"]) else math.nan,
                             "threshold": float(r["threshold"]) if arm != "none" else math.nan})
    return pd.DataFrame(rows)


def fig_collapse(curves: pd.DataFrame, shown: pd.Series | None, chance: float, target: float):
    """``fig-collapse``: the shown run's validation accuracy (top) and gradient norm (bottom, log
    scale) on one time axis, solid, with its twin of the other arm dashed; the collapse marked by a
    vertical line, the clipping threshold by a horizontal one, chance and the target dotted."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from rnnbook import plots

    plots.set_style()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.6, 5.4), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    top.set_ylabel("validation accuracy")
    bottom.set_ylabel("gradient norm\n(largest since last check)")
    bottom.set_xlabel("updates")
    if curves.empty or shown is None:
        top.text(0.5, 0.5, "no run: no long lag in this build", ha="center", va="center", transform=top.transAxes)
        bottom.text(0.5, 0.5, "no run", ha="center", va="center", transform=bottom.transAxes)
        fig.tight_layout()
        plt.close(fig)
        return fig
    color = plots.color_for(shown["label"]) or "#0173b2"
    arms = list(dict.fromkeys(curves["arm"]))
    style = dict(hue="arm", style="arm", palette={a: (color if a == arms[0] else "0.45") for a in arms},
                 dashes={a: ("" if a == arms[0] else (4, 1.5)) for a in arms}, hue_order=arms, style_order=arms)
    sns.lineplot(data=curves, x="updates", y="validation accuracy", marker="o", markersize=3, errorbar=None, ax=top,
                 **style)
    finite = curves[np.isfinite(curves["gradient norm (largest since the last check)"])
                    & (curves["gradient norm (largest since the last check)"] > 0)]
    sns.lineplot(data=finite, x="updates", y="gradient norm (largest since the last check)", marker="o",
                 markersize=3, errorbar=None, ax=bottom, legend=False, **style)
    bottom.set_yscale("log")
    plots.plain_log_ticks(bottom, subs=(1, 2, 5))
    top.axhline(chance, ls=":", lw=1, color="0.4", label=f"chance ({chance:.2f})")
    top.axhline(target, ls="--", lw=0.8, color="0.6", label=f"target ({target:.2f})")
    clip = curves["threshold"].dropna()
    if len(clip):
        bottom.axhline(float(clip.iloc[0]), ls="--", lw=1, color="0.3")
        bottom.annotate(f"threshold {float(clip.iloc[0]):.3g}", xy=(1, float(clip.iloc[0])),
                        xycoords=("axes fraction", "data"), xytext=(-3, 3), textcoords="offset points",
                        ha="right", fontsize=8, color="0.3")
    if bool(shown["collapsed"]) and np.isfinite(shown["collapse_update"]):
        for ax in (top, bottom):
            ax.axvline(float(shown["collapse_update"]), color="#d55e00", lw=1.2, ls="-.",
                       label="collapse" if ax is top else None)
    what = "collapsed" if bool(shown["collapsed"]) else "largest fall, no collapse"
    top.set_title(f"{shown['label']}, lag {int(shown['lag'])}, seed {int(shown['seed'])} ({what})", fontsize=10)
    top.set_ylim(0, 1.02)
    top.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


# ----------------------------------------------------------------------------- the page


def page_values(res: dict) -> dict:
    """Every value the section pastes, by glue key (strings are Markdown)."""
    runs, table, v = res["runs"], res["table"], res["verdicts"]
    lags = [lag for lag, _ in res["points"]]
    vals = {"collapse_drop": rule.DROP, "collapse_multiple": res["multiple"], "collapse_pilot_updates": PILOT_UPDATES,
            "collapse_n_seeds": len(res["seeds"]), "collapse_lag_count": res["wanted"]}
    if not lags:
        vals["collapse_where"] = ("No simple RNN met the criterion at any lag of this build's lag sweep with "
                                  "Keras-default features, so there is no long lag to compare clipping at: the "
                                  "table below is empty and both claims' premise is not met.")
    else:
        where = "; ".join(f"lag {lag}: {join_and(labels)}" for lag, labels in res["points"])
        n_learned = len(lags) - (res.get("next") is not None)
        short = (f" The lag sweep had only {n_learned} such lag{'s' if n_learned > 1 else ''}, fewer than the "
                 f"{res['wanted']} asked for." if n_learned < res["wanted"] else "")
        who = "the comparison runs" if res.get("stopped") else "the lag sweep ran"
        vals["collapse_where"] = f"The long lags and the simple RNNs {who} there: {where}.{short}"
        vals["collapse_where"] += next_lag_text(res)
        vals["collapse_where"] += (" At the learned long lags the comparison also runs the simple RNNs the lag ladder "
                                   "had stopped before them (`collapse_stopped`)." if res.get("stopped") else
                                   " A simple RNN the lag ladder had stopped before a long lag is not run there "
                                   "(`collapse_stopped` is off).")
    vals["collapse_steps"] = steps_text(res.get("steps", pd.DataFrame()), table)
    vals["collapse_thresholds"] = "; ".join(
        f"{r['label']} at lag {int(r['lag'])}: average norm {r['pilot_norm']:.3g}, threshold {r['threshold']:.3g}"
        for _, r in table.iterrows() if np.isfinite(r["threshold"])) or "none"
    vals["collapse_summary"] = "; ".join(
        f"{r['label']} at lag {int(r['lag'])}: collapses {r['collapses_none']} of {r['runs_none']} unclipped and "
        f"{r['collapses_clip']} of {r['runs_clip']} clipped, successes {r['successes_none']} of {r['runs_none']} "
        f"unclipped and {r['successes_clip']} of {r['runs_clip']} clipped" for _, r in table.iterrows()) or "none"
    vals["collapse_unlearned"] = unlearned_text(runs)
    n_runs = len(runs)
    added = runs[runs["added"]] if n_runs else runs
    vals.update({"collapse_n_runs": n_runs, "collapse_n_added": len(added),
                 "collapse_n_censored": int((runs["outcome"] == "censored").sum()) if n_runs else 0,
                 "collapse_added_minutes": float(added["wall_time"].fillna(0).sum()) / 60 if len(added) else 0.0,
                 "collapse_added_updates": int(added["updates"].sum()) if len(added) else 0})
    collapsed = runs[runs["collapsed"]] if n_runs else runs
    vals["collapse_events"] = "; ".join(
        f"{r['label']} at lag {int(r['lag'])}, seed {int(r['seed'])} ({EVENT_ARMS[r['arm']]}): "
        f"from {r['best_val_acc']:.2f} at update {int(r['collapse_update']) if np.isfinite(r['collapse_update']) else 'n/a'}"
        f" ({r['collapse_how']}), gradient norm {fmt_norm(r['collapse_grad_norm'])}"
        for _, r in collapsed.iterrows()) or "none"
    shown = example(runs)
    vals["collapse_shown"] = ("no run" if shown is None else
                              f"{shown['label']} at lag {int(shown['lag'])}, seed {int(shown['seed'])}, "
                              f"{ARMS[shown['arm']]}" + ("" if bool(shown["collapsed"]) else
                                                         " (no run collapsed: the run with the largest fall)"))
    for key, verdict in v.items():
        vals[f"verdict_{key}"] = V.markdown(verdict)
        vals[f"word_{key}"] = verdict.word
    return vals


def unlearned_text(runs: pd.DataFrame) -> str:
    """Markdown: the points where no run of any arm ever beat chance by three standard errors
    (``ever_above_chance``, from the chapter's ``run``: :func:`rnnbook.experiments.common.outcomes`), with their best validation accuracy: nothing was learned there, so
    nothing could collapse; a sentence saying so when every point learned something.

    Example:
        >>> runs = pd.DataFrame({"label": ["a", "a", "b"], "lag": [40, 40, 20], "ever_above_chance": [False, False, True],
        ...                      "best_val_acc": [0.11, 0.13, 0.9]})
        >>> unlearned_text(runs)  # doctest: +ELLIPSIS
        'At a at lag 40, no run of either arm ever beat chance by three standard errors (best validation ...'
    """
    if runs.empty:
        return "No run was trained, so no run could learn and lose it."
    points = [(lab, int(lag), float(part["best_val_acc"].max()))
              for (lab, lag), part in runs.groupby(["label", "lag"], sort=False) if not part["ever_above_chance"].any()]
    if not points:
        return "At every point some run beat chance by three standard errors: each point had something to lose."
    where = join_and([f"{lab} at lag {lag}" for lab, lag, _ in points])
    best = join_and([f"{b:.3f}" for _, _, b in points])
    return (f"At {where}, no run of either arm ever beat chance by three standard errors (best validation "
            f"accuracy {best}): nothing was learned there to lose, so these points cannot show whether clipping "
            "prevents collapses; they show only that clipping at this threshold did not make them learn within "
            "the cap.")


def next_lag_text(res: dict) -> str:
    """What the page says of the lag beyond the learned ones (``collapse_next_lag``).

    Example:
        >>> next_lag_text({"next_asked": True, "next": 80})  # doctest: +ELLIPSIS
        ' Lag 80 is the next lag of the sweep, where no simple RNN met the criterion unclipped: ...'
    """
    if not res.get("next_asked"):
        return ""
    if res.get("next") is None:
        return (" The next lag beyond them was asked for too, but the lag sweep ran no simple RNN there with "
                "Keras-default features.")
    return (f" Lag {res['next']} is the next lag of the sweep, where no simple RNN met the criterion unclipped: "
            "there the comparison asks whether clipping lets one learn at all.")


def figure_data(res: dict, chance: float, target: float) -> dict:
    """The figure, its data and the table's data, by key."""
    shown = example(res["runs"])
    curves = traces(res["runs"], shown)
    data = curves if not curves.empty else pd.DataFrame([{"note": "no run: no long lag in this build"}])
    table = res["table"] if not res["table"].empty else rates_display(res["table"])
    return {"fig-collapse": data, "tbl-collapse-rates": table,
            "figure": fig_collapse(curves, shown, chance, target)}


# ----------------------------------------------------------------------------- the dry run


def plan(p: dict, lag_configs, load, grid, baseline: str) -> list:
    """The comparison's runs, for ``--dry-run``: the long lags read from the lag sweep's runs that
    are cached (``lag_configs``: ``(config, label, level)`` of every run the lag ladder plans;
    ``load(config)``: its record or None), or the grid's longest lags when none is; unclipped runs
    on ``collapse_seeds``, and clipped ones at the threshold of the cached unclipped runs (a
    placeholder threshold of 1 when they are not all cached). The step control's runs are
    not counted: whether a point needs one, and at which rate, is known only once both arms'
    first updates are measured."""
    rows = []
    for config, label, level in lag_configs:
        record = load(config)
        if record is not None:
            rows.append({"cell": config.cell, "interface": level, "lag": int(config.lag), "label": label,
                         "success": record.get("outcome") == "success"})
    n = int(p["collapse_lag_count"])
    points = long_lags(pd.DataFrame(rows), n, baseline, bool(p["collapse_next_lag"]), bool(p["collapse_stopped"]))
    if not rows:  # nothing cached: the grid's longest lags, every simple RNN
        simple = list(dict.fromkeys(lab for c, lab, lvl in lag_configs if c.cell == "simple_rnn" and lvl == baseline))
        points = [(int(lag), simple) for lag in sorted({int(x) for x in p["lags"]})[-n:]] if simple else []
    seeds = [int(s) for s in p["collapse_seeds"]]
    planned = []
    for lag, labels in points:
        configs, _, _ = grid(lag, labels)
        for config in configs:
            plain = [dataclasses.replace(config, seed=s) for s in seeds]
            records = [load(c) for c in plain]
            c = (threshold(rule.pilot_norm(records, PILOT_UPDATES), float(p["collapse_clip_multiple"]))
                 if all(r is not None for r in records) else math.nan)
            clipped = dataclasses.replace(config, clip_mode="global_clipnorm",
                                          clip_threshold=c if math.isfinite(c) else 1.0)
            planned += plain + [dataclasses.replace(clipped, seed=s) for s in seeds]
    return planned
