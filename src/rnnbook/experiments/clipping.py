"""The chapter "Gradient clipping": what Keras's three clipping options do, and whether clipping
rescues a recurrent setting that explodes, trained to a criterion (:mod:`rnnbook.criterion`).

The exploding setting is the IRNN (ReLU + identity recurrent matrix, Le et al. 2015) trained
with SGD (momentum 0.9) on the recall task at lag ``clip_lag`` (features scaled by ``clip_scale``), on fresh sequences, until the
validation accuracy reaches ``target_acc`` (success), the run diverges (NaN/Inf, non-finite
weights or a loss above 10 x its first value) or ``clip_max_updates`` run out (censored).

:func:`results` runs (or loads from the run cache) every training the chapter needs:

1. **pilot**: the same configuration, unclipped, at the small ``pilot_learning_rate`` for
   ``pilot_updates`` updates per seed; the *average norm* is the mean global gradient norm
   (before any clipping) over every update of every seed (Pascanu et al. 2013, §3.2:
   "statistics on the average norm over a sufficiently large number of updates");
2. **band**: ``global_clipnorm`` at ``clip_multiples`` x that average norm, at the exploding
   ``sgd_learning_rate``;
3. **lr sweep**: unclipped SGD at ``clip_learning_rates`` and at ``sgd_learning_rate``;
4. **matched step**: unclipped SGD at the learning rate whose typical step equals the clipped
   run's (:func:`matched_learning_rate`);
5. **modes**: ``clipnorm`` and ``clipvalue`` at thresholds matched to the same bound on the
   global norm as ``global_clipnorm`` (:func:`matched_thresholds`).

The decision rules (:func:`compare`, :func:`claim_clip`, :func:`claim_band`) take plain
success counts, so they are tested on tables with a known answer. The ``fig_*`` functions
draw the figures; the known-gradient tables (``*_table``) need no training.

Example:
    >>> compare(4, 4, 0, 4)
    'better'
    >>> matched_thresholds(1.0, n_vars=4, n_params=100)["clipvalue"]
    0.1
"""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd

from rnnbook import sweeps
from rnnbook.experiments.common import (outcomes, chance_bar, PASCANU_BAND, ExperimentError, display_table, parse_rnn_config,
                                        wilson_interval)
from rnnbook.training import TrainConfig
from rnnbook.experiments.clip_options import (  # noqa: F401 - the chapter's exact tables
    KNOWN_GRADIENT, adam_scale_invariance, clip_label, clip_modes_table, in_words, number_or_word,
    optimizer_spike_table, overflow_gain, overflow_table, real_overflow)

#: The chapter's parameters, as its ``parameters`` cell names them.
PARAMS = ("seeds", "clip_lag", "units", "batch_size", "n_val", "n_test", "clip_scale", "clip_max_updates",
          "check_every", "target_acc", "sgd_learning_rate", "clip_learning_rates", "pilot_learning_rate",
          "pilot_updates", "clip_multiples", "clip_multiple", "clip_modes")
#: The exploding setting: the IRNN of Le et al. (2015).
EXPLODING_CONFIG = "relu-identity"
#: SGD momentum of every run of the chapter.
MOMENTUM = 0.9
#: Fixed training sequences a task needs to exist; the criterion runs draw fresh ones instead.
N_FIXED = 64
#: One-sided significance level of :func:`compare` (Fisher's exact test on success counts).
ALPHA = 0.05
#: Pascanu's band is "supported" when every multiple in it succeeds in at least this share of
#: runs, "contradicted" when at some multiple in it this share of runs decisively diverges
#: (lower Wilson bound of the diverged share above it).
BAND_SHARE = 0.5
#: Verdicts of a claim.
VERDICTS = ("supported", "contradicted", "not decided at this budget")


# ----------------------------------------------------------------------------- configurations


def pick(params: dict) -> dict:
    """The chapter's parameters out of ``params`` (a clear error naming the missing ones)."""
    missing = [n for n in PARAMS if n not in params]
    if missing:
        raise ExperimentError(f"clipping: missing parameter(s) {', '.join(missing)}; it needs {', '.join(PARAMS)}")
    p = {n: params[n] for n in PARAMS}
    if not isinstance(p["clip_lag"], int) or p["clip_lag"] < 1:
        raise ExperimentError(f"clipping: clip_lag={p['clip_lag']!r} must be an integer >= 1 (the recall lag; "
                              "T = lag + 1)")
    if len(p["seeds"]) < 1:
        raise ExperimentError("clipping: seeds must name at least one seed")
    return p


def exploding_config(params: dict) -> TrainConfig:
    """The exploding setting (seed 0, unclipped, at ``sgd_learning_rate``) from the parameters."""
    p = pick(params)
    base = TrainConfig(task="recall", seq_len=p["clip_lag"] + 1, lag=p["clip_lag"], n_train=N_FIXED, n_val=p["n_val"],
                       n_test=p["n_test"], units=p["units"], optimizer="sgd", momentum=MOMENTUM,
                       learning_rate=float(p["sgd_learning_rate"]), batch_size=p["batch_size"],
                       feature_scale=float(p["clip_scale"]), max_updates=p["clip_max_updates"],
                       check_every=p["check_every"], target_acc=float(p["target_acc"]), stream="fresh")
    return parse_rnn_config(EXPLODING_CONFIG).apply(base)


def pilot_config(params: dict) -> TrainConfig:
    """The stable pilot: the exploding setting, unclipped, at ``pilot_learning_rate`` for exactly
    ``pilot_updates`` updates (one validation check at the end; target 1.0, so it never stops early
    unless every validation sequence is right)."""
    p = pick(params)
    return dataclasses.replace(exploding_config(p), learning_rate=float(p["pilot_learning_rate"]),
                               max_updates=p["pilot_updates"], check_every=p["pilot_updates"], target_acc=1.0)


def plan(params: dict) -> list[TrainConfig]:
    """Every training run of the chapter (seeds applied), for ``rnnbook build --dry-run``. The
    thresholds of the clipped runs depend on the pilot's average norm, which only the pilot
    measures: they are counted here at a norm of 1 (so the count and cost are right, but a
    cache check cannot find them before the pilot has run)."""
    p = pick(params)
    cfg = exploding_config(p)
    multiples = sorted({float(m) for m in p["clip_multiples"]} | {float(p["clip_multiple"])})
    rates = sorted({float(x) for x in p["clip_learning_rates"]} | {cfg.learning_rate})
    configs = [pilot_config(p)]
    configs += [dataclasses.replace(cfg, clip_mode="global_clipnorm", clip_threshold=m) for m in multiples]
    configs += [dataclasses.replace(cfg, learning_rate=x) for x in rates]
    configs += [cfg]  # the matched-step control
    configs += [dataclasses.replace(cfg, clip_mode=m, clip_threshold=1.0) for m in p["clip_modes"]
                if m not in ("none", "global_clipnorm")]
    return sweeps.with_seeds(configs, p["seeds"])


def parameter_counts(config: TrainConfig) -> tuple[int, int]:
    """``(trainable variables, trainable parameters)`` of the model of ``config``."""
    model = config.model(10)
    return len(model.trainable_variables), int(sum(int(np.prod(v.shape)) for v in model.trainable_variables))


def matched_thresholds(bound: float, n_vars: int, n_params: int) -> dict[str, float]:
    """Each Keras option's threshold for which the clipped gradient's *global* norm is at most
    ``bound``: ``global_clipnorm`` at ``bound``; ``clipnorm`` (each of ``n_vars`` variables to norm
    ``c``) at ``bound / sqrt(n_vars)``; ``clipvalue`` (each of ``n_params`` elements to ``[-c, c]``)
    at ``bound / sqrt(n_params)``. The bounds are tight: all variables (elements) at the threshold."""
    if not (bound > 0 and math.isfinite(bound)) or n_vars < 1 or n_params < n_vars:
        raise ExperimentError(f"matched_thresholds: bound={bound!r} must be positive and finite, and "
                              f"1 <= n_vars={n_vars!r} <= n_params={n_params!r}")
    return {"global_clipnorm": float(bound), "clipnorm": float(bound / math.sqrt(n_vars)),
            "clipvalue": float(bound / math.sqrt(n_params))}


def matched_learning_rate(learning_rate: float, threshold: float, grad_norms) -> float:
    """The unclipped learning rate with the clipped run's typical step: clipped SGD steps
    ``lr * min(c, |g|)``; its median over the updates divided by the median ``|g|`` gives the rate
    ``lr'`` with ``lr' * median|g| = lr * median min(c, |g|)``. With ``c`` below most norms this is
    about ``lr * c / median|g|``."""
    g = np.asarray(grad_norms, dtype=float)
    g = g[np.isfinite(g)]
    if not g.size:
        raise ExperimentError("matched_learning_rate: no finite gradient norm to match")
    return float(learning_rate * np.median(np.minimum(threshold, g)) / np.median(g))


# ----------------------------------------------------------------------------- runs and counts






def counts(runs: pd.DataFrame, by) -> pd.DataFrame:
    """One row per group: runs, successes, diverged, censored, the success share with its Wilson
    95 % interval, and the median updates to success."""
    rows = []
    by = [by] if isinstance(by, str) else list(by)
    for keys, part in runs.groupby(by, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        k, n = int(part["success"].sum()), len(part)
        share, lo, hi = wilson_interval(k, n)
        rows.append({**dict(zip(by, keys)), "runs": n, "successes": k, "diverged": int(part["diverged"].sum()),
                     "censored": int(part["censored"].sum()), "at_chance": int(part["at_chance"].sum()), "success_rate": share, "ci_lo": lo, "ci_hi": hi,
                     "median_updates_to_success": float(part["updates_to_success"].median())
                     if k else math.nan})
    return pd.DataFrame(rows)


def k_of_n(k: int, n: int) -> str:
    """``"3 of 4"``."""
    return f"{int(k)} of {int(n)}"


# ----------------------------------------------------------------------------- decision rules


def compare(k_a: int, n_a: int, k_b: int, n_b: int, alpha: float = ALPHA) -> str:
    """``"better"`` when arm a succeeds more often than arm b by a one-sided Fisher exact test at
    ``alpha`` (4 of 4 against 0 of 4: p = 1/70), ``"worse"`` the other way round, else ``"ties"``;
    ``"no runs"`` when an arm is empty."""
    if min(n_a, n_b) <= 0:
        return "no runs"
    if not (0 <= k_a <= n_a and 0 <= k_b <= n_b):
        raise ExperimentError(f"compare: successes must lie in [0, runs]; got {k_a}/{n_a} and {k_b}/{n_b}")
    from scipy import stats

    table = [[k_a, n_a - k_a], [k_b, n_b - k_b]]
    if stats.fisher_exact(table, alternative="greater")[1] < alpha:
        return "better"
    if stats.fisher_exact(table, alternative="less")[1] < alpha:
        return "worse"
    return "ties"


def claim_clip(clipped: tuple[int, int], same_lr: tuple[int, int], matched: tuple[int, int],
               diverged_same_lr: int) -> tuple[str, str]:
    """Verdict on "clipping rescues the exploding setting", from ``(successes, runs)`` of the
    clipped arm, of unclipped SGD at the same learning rate and of unclipped SGD at the matched
    step, and the runs that diverged unclipped at the same rate (for the sentence).

    * not decided when unclipped SGD at that rate reached the criterion in at least half of its
      runs (nothing to rescue);
    * supported when clipping is **better** (:func:`compare`) than both controls: it does what
      neither the same nor a shorter plain step does;
    * contradicted when it is **worse** than either control;
    * otherwise not decided (e.g. better than the same rate but tied with the matched step:
      the rescue is not shown to be clipping's own rather than the shorter step's).

    Returns ``(verdict, why)``, ``why`` a Markdown sentence with the counts.
    """
    vs_same, vs_matched = compare(*clipped, *same_lr), compare(*clipped, *matched)
    counts_md = (f"clipped: {k_of_n(*clipped)} runs reached the criterion; unclipped at the same rate: "
                 f"{k_of_n(*same_lr)} ({diverged_same_lr} diverged); unclipped at the matched step: {k_of_n(*matched)}")
    if same_lr[1] and same_lr[0] >= same_lr[1] / 2:
        return VERDICTS[2], (f"unclipped SGD reached the criterion in at least half of its runs at this learning "
                             f"rate, so there was nothing to rescue ({counts_md})")
    if vs_same == "better" and vs_matched == "better":
        return VERDICTS[0], f"clipping did better than both controls ({counts_md})"
    if "worse" in (vs_same, vs_matched):
        return VERDICTS[1], f"clipping did worse than a control ({counts_md})"
    if vs_same == "better":
        return VERDICTS[2], (f"clipping did better than the same learning rate but not than the matched plain "
                             f"step, so the rescue is not shown to be clipping's own rather than the shorter "
                             f"step's ({counts_md})")
    return VERDICTS[2], f"the difference is within what {clipped[1]} seeds can separate ({counts_md})"


def claim_band(band: pd.DataFrame, band_range=PASCANU_BAND, share: float = BAND_SHARE) -> tuple[str, str]:
    """Verdict on Pascanu et al.'s statement that thresholds from half to ten times the average
    norm "can still yield convergence", from :func:`counts` by ``multiple`` (columns ``multiple``,
    ``runs``, ``successes``, ``diverged``):

    * not decided when no multiple tried lies in the band;
    * contradicted when at some multiple in the band at least ``share`` of the runs diverged,
      decisively (the lower Wilson bound of the diverged share is above ``share``);
    * supported when every multiple in the band succeeded in at least ``share`` of its runs;
    * otherwise not decided (runs censored: convergence may only be slower, which they allow).
    """
    lo, hi = band_range
    inside = band[(band["multiple"] >= lo) & (band["multiple"] <= hi)]
    if inside.empty:
        return VERDICTS[2], f"no threshold tried lies between {lo:g} and {hi:g} times the average norm"
    parts = ", ".join(f"{m:g}x: {k_of_n(k, n)}" for m, k, n in
                      zip(inside["multiple"], inside["successes"], inside["runs"]))
    diverged = [wilson_interval(int(d), int(n))[1] > share for d, n in zip(inside["diverged"], inside["runs"])]
    if any(diverged):
        bad = ", ".join(f"{m:g}x" for m, d in zip(inside["multiple"], diverged) if d)
        return VERDICTS[1], f"most runs diverged at {bad} (successes per multiple: {parts})"
    if ((inside["successes"] / inside["runs"]) >= share).all():
        return VERDICTS[0], f"every threshold in the band succeeded in at least {share:.0%} of its runs ({parts})"
    return VERDICTS[2], (f"some thresholds in the band succeeded in fewer than {share:.0%} of the runs without "
                         f"diverging: they may only be slower, which the statement allows ({parts})")


def best_of(table: pd.DataFrame, key: str) -> tuple[str, bool]:
    """The row key with the most successes (ties: fewer median updates to success, then order),
    and whether it beats every other row by :func:`compare`."""
    order = table.assign(_m=table["median_updates_to_success"].fillna(np.inf)).sort_values(
        ["successes", "_m"], ascending=[False, True], kind="stable")
    best = order.iloc[0]
    decided = len(order) > 1 and all(compare(int(best["successes"]), int(best["runs"]), int(r["successes"]),
                                             int(r["runs"])) == "better" for _, r in order.iloc[1:].iterrows())
    return str(best[key]), bool(decided)


# ----------------------------------------------------------------------------- the chapter's numbers


def _sweep(configs, labels, seeds, desc, cache_dir) -> pd.DataFrame:
    return outcomes(sweeps.run_sweep(configs, seeds, cache_dir=cache_dir, desc=f"clipping: {desc}",
                                     labels=labels))


def average_norm(pilot: pd.DataFrame) -> float:
    """Mean global gradient norm over every update of every pilot run that did not diverge."""
    stable = pilot[~pilot["diverged"] & ~pilot["failed"]]
    if stable.empty:
        errors = "; ".join(str(e) for e in pilot["error"].dropna().unique())
        raise ExperimentError("clipping: no pilot run finished without diverging; lower pilot_learning_rate so "
                              f"that the pilot is stable{' (errors: ' + errors + ')' if errors else ''}")
    norms = np.concatenate([np.asarray(r["steps"]["grad_norm"], float) for r in stable["record"]])
    return float(np.mean(norms[np.isfinite(norms)]))


def results(params: dict, cache_dir=sweeps.RUNS_DIR) -> dict:
    """Every number, table and run frame of the chapter, from its parameters (:data:`PARAMS`).

    Keys (plain data unless said):

    * ``claim_clip`` / ``claim_clip_why``: "supported", "contradicted" or "not decided at this
      budget" for "clipping rescues the exploding setting" (:func:`claim_clip`), and why (Markdown);
    * ``claim_band`` / ``claim_band_why``: the same for Pascanu et al.'s band (:func:`claim_band`);
    * ``clip_vs_same_lr``, ``clip_vs_matched``, ``clip_vs_best_lr``: "better", "ties" or "worse"
      (:func:`compare`) of the clipped arm against each unclipped control;
    * ``best_mode`` (a Keras option), ``best_mode_decided`` (it beats every other option),
      ``advice_threshold``, ``advice_clip_mode``: Markdown sentences for the recommendations;
    * the setting: ``lag``, ``seq_len``, ``learning_rate`` (exploding), ``momentum``,
      ``feature_scale``, ``units``, ``target_acc``;
    * the pilot: ``pilot_learning_rate``, ``pilot_updates``, ``pilot_runs``, ``pilot_diverged``,
      ``average_norm``; the clipped arm: ``clip_multiple``, ``clip_threshold``;
      ``matched_learning_rate``; ``best_lr`` (best unclipped rate); ``n_vars``, ``n_params``,
      ``thresholds`` (mode -> threshold);
    * the budget: ``max_updates``, ``check_every``, ``batch_size``, ``sequences_cap``
      (sequences a run may see), ``n_seeds``, ``n_val``, ``n_runs`` (trained runs, pilot
      included), ``n_censored``, ``n_diverged``, ``sequences_seen`` (all runs);
    * frames: ``band`` (:func:`counts` per multiple), ``lr`` (per learning rate and arm),
      ``modes`` (per option), ``runs`` (every run, column ``arm``), ``pilot`` (pilot runs).
    """
    p = pick(params)
    seeds = list(p["seeds"])
    cfg = exploding_config(p)
    lr = cfg.learning_rate
    pilot = _sweep([pilot_config(p)], ["pilot"], seeds, "pilot", cache_dir)
    avg = average_norm(pilot)
    multiples = sorted({float(m) for m in p["clip_multiples"]} | {float(p["clip_multiple"])})
    clip = lambda mode, c: dataclasses.replace(cfg, clip_mode=mode, clip_threshold=float(c))  # noqa: E731
    band = _sweep([clip("global_clipnorm", m * avg) for m in multiples], [f"{m:g}" for m in multiples], seeds,
                  "band", cache_dir).assign(arm="band")
    band["multiple"] = band["label"].astype(float)
    rates = sorted({float(x) for x in p["clip_learning_rates"]} | {lr})
    sweep = _sweep([dataclasses.replace(cfg, learning_rate=x) for x in rates], [f"{x:g}" for x in rates], seeds,
                   "learning rates", cache_dir).assign(arm="unclipped")
    c = float(p["clip_multiple"]) * avg
    clipped = band[band["multiple"] == float(p["clip_multiple"])].assign(arm="clipped")
    norms = np.concatenate([np.asarray(r["steps"]["grad_norm"], float) for r in clipped["record"]])
    lr_matched = matched_learning_rate(lr, c, norms)
    matched = _sweep([dataclasses.replace(cfg, learning_rate=lr_matched)], ["matched"], seeds, "matched step",
                     cache_dir).assign(arm="matched step")
    n_vars, n_params = parameter_counts(cfg)
    thresholds = matched_thresholds(c, n_vars, n_params)
    other = [m for m in p["clip_modes"] if m not in ("none", "global_clipnorm")]
    trained = _sweep([clip(m, thresholds[m]) for m in other], other, seeds, "modes", cache_dir) if other else None
    parts = {"none": sweep[sweep["learning_rate"] == lr], "global_clipnorm": clipped}
    modes = pd.concat([parts[m].assign(label=m) if m in parts else trained[trained["label"] == m]
                       for m in p["clip_modes"]]).assign(arm="modes")
    return _numbers(p, cfg, avg, c, lr_matched, n_vars, n_params, thresholds,
                    {"pilot": pilot, "band": band, "sweep": sweep, "clipped": clipped, "matched": matched,
                     "modes": modes})


def _pair(table: pd.DataFrame, mask) -> tuple[int, int]:
    part = table[mask]
    return int(part["successes"].sum()), int(part["runs"].sum())


def _numbers(p, cfg, avg, c, lr_matched, n_vars, n_params, thresholds, frames) -> dict:
    """The chapter's numbers and verdicts from its run frames (see :func:`results`)."""
    lr = cfg.learning_rate
    band = counts(frames["band"], "multiple")
    arms = pd.concat([frames["sweep"], frames["matched"], frames["clipped"]])
    lr_table = counts(arms, ["arm", "learning_rate"])
    modes = counts(frames["modes"], "label").rename(columns={"label": "mode"})
    modes.insert(1, "threshold", [thresholds.get(m, math.nan) for m in modes["mode"]])
    modes.insert(2, "bound on the global norm", [c if m != "none" else math.inf for m in modes["mode"]])
    unclipped = lr_table[lr_table["arm"] == "unclipped"]
    best_lr, _ = best_of(unclipped, "learning_rate")
    clipped = _pair(lr_table, lr_table["arm"] == "clipped")
    same = _pair(unclipped, unclipped["learning_rate"] == lr)
    matched = _pair(lr_table, lr_table["arm"] == "matched step")
    best = _pair(unclipped, unclipped["learning_rate"] == float(best_lr))
    div_same = int(frames["sweep"].loc[frames["sweep"]["learning_rate"] == lr, "diverged"].sum())
    verdict, why = claim_clip(clipped, same, matched, div_same)
    band_verdict, band_why = claim_band(band)
    clipping_modes = modes[modes["mode"] != "none"]
    best_mode, mode_decided = best_of(clipping_modes, "mode") if len(clipping_modes) else ("global_clipnorm", False)
    every = pd.concat(list(frames.values()), ignore_index=True)
    every = every[~every["record"].map(lambda r: json.dumps(r["config"], sort_keys=True)).duplicated()]
    n = {"claim_clip": verdict, "claim_clip_why": why, "claim_band": band_verdict, "claim_band_why": band_why,
         "clip_vs_same_lr": compare(*clipped, *same), "clip_vs_matched": compare(*clipped, *matched),
         "clip_vs_best_lr": compare(*clipped, *best), "best_mode": best_mode, "best_mode_decided": mode_decided,
         "lag": p["clip_lag"], "seq_len": cfg.seq_len, "learning_rate": lr, "momentum": cfg.momentum,
         "feature_scale": cfg.feature_scale, "units": cfg.units, "target_acc": cfg.target_acc,
         "pilot_learning_rate": float(p["pilot_learning_rate"]), "pilot_updates": int(p["pilot_updates"]),
         "pilot_runs": len(frames["pilot"]), "pilot_diverged": int(frames["pilot"]["diverged"].sum()),
         "average_norm": avg, "clip_multiple": float(p["clip_multiple"]), "clip_threshold": c,
         "matched_learning_rate": lr_matched, "best_lr": float(best_lr), "n_vars": n_vars, "n_params": n_params,
         "thresholds": thresholds, "max_updates": cfg.max_updates, "check_every": cfg.check_every,
         "batch_size": cfg.batch_size, "sequences_cap": cfg.max_updates * cfg.batch_size,
         "n_seeds": len(p["seeds"]), "n_val": cfg.n_val, "n_runs": len(every),
         "n_censored": int(every["censored"].sum()), "n_diverged": int(every["diverged"].sum()),
         "sequences_seen": int(every["sequences_seen"].sum()),
         "clipped_counts": clipped, "same_lr_counts": same, "matched_counts": matched, "best_lr_counts": best,
         "same_lr_diverged": div_same,
         "band": band, "lr": lr_table, "modes": modes, "runs": every, "pilot": frames["pilot"],
         "traces": frames["modes"]}
    n["advice_threshold"] = advice_threshold(band, avg, n)
    n["advice_clip_mode"] = advice_clip_mode(modes, best_mode, mode_decided)
    return n


def advice_threshold(band: pd.DataFrame, avg: float, n: dict) -> str:
    """Markdown: how to pick the threshold, with the multiples that did best here."""
    top = band[band["successes"] == band["successes"].max()]
    best = ", ".join(f"{m:g}" for m in top["multiple"])
    k, runs = int(top["successes"].iloc[0]), int(top["runs"].iloc[0])
    found = (f"here {best} times it did best ({k_of_n(k, runs)} runs reached the criterion)" if k else
             f"here no multiple tried ({best}) reached the criterion at this learning rate, so lower the learning "
             f"rate first")
    return (f"Run a stable pilot (here {n['pilot_updates']} updates at learning rate {n['pilot_learning_rate']:g}), "
            f"take the average global gradient norm over its updates (here {avg:.3g}) and clip with "
            f"`global_clipnorm` at a multiple of it; {found}; Pascanu et al.'s band: {n['claim_band']}.")


def advice_clip_mode(modes: pd.DataFrame, best_mode: str, decided: bool) -> str:
    """Markdown: which Keras option to use, from the comparison at matched bounds."""
    rows = ", ".join(f"`{m}` {k_of_n(k, r)}" for m, k, r in zip(modes["mode"], modes["successes"], modes["runs"]))
    if decided:
        return (f"Use `{best_mode}`: at thresholds matched to the same bound on the global norm it reached the "
                f"criterion more often than every other option ({rows}).")
    return (f"Prefer `global_clipnorm`, which keeps the gradient's direction: at thresholds matched to the same "
            f"bound on the global norm no option reached the criterion decisively more often than the others "
            f"({rows}).")


# ----------------------------------------------------------------------------- figures


def _errorbars(ax, x, table, color, marker, label):
    share = table["success_rate"].to_numpy(float)
    err = np.vstack([share - table["ci_lo"].to_numpy(float), table["ci_hi"].to_numpy(float) - share])
    return ax.errorbar(x, share, yerr=err, fmt=marker, color=color, ms=8, capsize=4, lw=1.4, label=label)


def fig_clip_band(band: pd.DataFrame, same_lr: tuple[int, int], band_range=PASCANU_BAND):
    """Success rate (Wilson 95 % interval) against the threshold as a multiple of the pilot's average
    norm, one point per multiple; Pascanu et al.'s band shaded; the unclipped runs at the same
    learning rate as a dashed line."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from rnnbook import plots

    plots.set_style()
    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    color = plots.color_for("global_clipnorm")
    sns.lineplot(data=band, x="multiple", y="success_rate", color=color, lw=1.0, ax=ax, legend=False)
    _errorbars(ax, band["multiple"].to_numpy(float), band, color, "o", "global_clipnorm")
    k, n = same_lr
    ax.axhline(k / n if n else math.nan, ls="--", color=plots.color_for("none"), label=f"no clipping ({k_of_n(k, n)})")
    ax.axvspan(*band_range, color="0.85", alpha=0.6, zorder=0, label="Pascanu et al.: 0.5x to 10x")
    ax.set_xscale("log")
    ax.set_ylim(-0.04, 1.04)
    ax.set_xlabel("clipping threshold / average gradient norm of the pilot")
    ax.set_ylabel("share of runs reaching the criterion")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    plt.close(fig)
    return fig


#: Marker and colour key of each arm of :func:`fig_clip_vs_lr`.
ARMS = {"unclipped": ("o", "none"), "matched step": ("s", "clipnorm"), "clipped": ("D", "global_clipnorm")}


def fig_clip_vs_lr(lr_table: pd.DataFrame):
    """Success rate (Wilson 95 % interval) against the learning rate: unclipped SGD at each rate
    (a line), the unclipped run at the matched step and the clipped run (one point each)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from rnnbook import plots

    plots.set_style()
    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    plain = lr_table[lr_table["arm"] == "unclipped"].sort_values("learning_rate")
    sns.lineplot(data=plain, x="learning_rate", y="success_rate", color=plots.color_for("none"), lw=1.0, ax=ax,
                 legend=False)
    for arm, (marker, key) in ARMS.items():
        part = lr_table[lr_table["arm"] == arm]
        if len(part):
            _errorbars(ax, part["learning_rate"].to_numpy(float), part, plots.color_for(key), marker,
                       {"unclipped": "no clipping", "matched step": "no clipping, matched step",
                        "clipped": "global_clipnorm"}[arm])
    ax.set_xscale("log")
    rates = sorted(lr_table["learning_rate"].astype(float).unique())
    ax.set_xticks(rates, [f"{r:.2g}" for r in rates], minor=False)
    ax.minorticks_off(), plots.fit_tick_labels(ax)
    ax.set_ylim(-0.04, 1.04)
    ax.set_xlabel("SGD learning rate (momentum 0.9)")
    ax.set_ylabel("share of runs reaching the criterion")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    plt.close(fig)
    return fig


def fig_clip_traces(runs: pd.DataFrame):
    """Global gradient norm before clipping (top) and training loss (bottom) over the updates, per
    Keras option (column ``label``; mean and 95 % band over seeds); a cross marks where a run
    diverged."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from rnnbook import plots

    plots.set_style()
    steps = sweeps.steps_frame(runs, fields=("loss", "grad_norm")).replace([np.inf, -np.inf], np.nan)
    order = list(dict.fromkeys(runs["label"]))
    pal = {m: plots.color_for(m) or plots.palette([m])[m] for m in order}
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9.0, 6.8), sharex=True)
    for ax, col, label in ((ax1, "grad_norm", "global gradient norm before clipping (log)"),
                           (ax2, "loss", "training loss (log)")):
        sns.lineplot(data=steps, x="step", y=col, hue="label", hue_order=order, palette=pal, errorbar=("ci", 95),
                     n_boot=200, seed=0, lw=1.2, ax=ax)
        ax.set_yscale("log")
        ax.set_ylabel(label)
        for _, run in runs[runs["diverged"]].iterrows():
            part = steps[(steps["label"] == run["label"]) & (steps["seed"] == run["seed"])].dropna(subset=[col])
            if len(part):
                ax.plot(part["step"].iloc[-1], part[col].iloc[-1], "X", ms=9, color=pal[run["label"]],
                        mec="black", mew=0.6)
    ax1.plot([], [], "X", color="0.5", mec="black", label="run diverged here")
    ax1.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax2.get_legend().remove()
    ax2.set_xlabel("update")
    fig.tight_layout()
    plt.close(fig)
    return fig


def fig_wall(surface, paths: dict):
    """Pascanu's single-unit loss surface with gradient-descent paths."""
    from rnnbook import plots

    return plots.loss_surface(surface.w, surface.b, surface.loss, paths)


def modes_display(modes: pd.DataFrame) -> pd.DataFrame:
    """The trained clip-mode table as the page shows it."""
    t = modes.copy()
    t["success rate [95 % CI]"] = [f"{s:.2f} [{lo:.2f}, {hi:.2f}]" for s, lo, hi in
                                   zip(t["success_rate"], t["ci_lo"], t["ci_hi"])]
    t["threshold"] = [("none" if m == "none" else f"{x:.3g}") for m, x in zip(t["mode"], t["threshold"])]
    t["bound on the global norm"] = [("none" if not math.isfinite(b) else f"{b:.3g}")
                                     for b in t["bound on the global norm"]]
    t["median updates to success"] = [("none succeeded" if not math.isfinite(u) else f"{u:.0f}")
                                      for u in t["median_updates_to_success"]]
    return display_table(t[["mode", "threshold", "bound on the global norm", "runs", "successes",
                            "success rate [95 % CI]", "diverged", "censored", "median updates to success"]])


# ----------------------------------------------------------------------------- what the prose pastes


def budget_md(n: dict, table: pd.DataFrame) -> str:
    """The budget of one trained figure: cap, sequences, seeds, runs, censored and diverged runs."""
    runs, cens, div = int(table["runs"].sum()), int(table["censored"].sum()), int(table["diverged"].sum())
    return (f"Budget: at most {n['max_updates']} updates of {n['batch_size']} fresh sequences per run "
            f"({n['sequences_cap']:,} sequences), validation on {n['n_val']} sequences every {n['check_every']} "
            f"updates, {n['n_seeds']} seeds per point; {runs} runs, of which {cens} censored "
            f"({int(table['at_chance'].sum())} of them still at chance) and {div} diverged.")


def prose(n: dict) -> dict:
    """The values the chapter's prose pastes: numbers (float or int) and Markdown (str)."""
    out = {k: n[k] for k in ("lag", "seq_len", "learning_rate", "momentum", "feature_scale", "units", "target_acc",
                             "pilot_learning_rate", "pilot_updates", "pilot_runs", "pilot_diverged", "average_norm",
                             "clip_multiple", "clip_threshold", "matched_learning_rate", "best_lr", "n_vars",
                             "n_params", "max_updates", "check_every", "batch_size", "sequences_cap", "n_seeds",
                             "n_val", "n_runs", "n_censored", "n_diverged", "sequences_seen", "same_lr_diverged")}
    for mode, c in n["thresholds"].items():
        out[f"threshold_{mode}"] = c
    for name in ("clipped", "same_lr", "matched", "best_lr"):
        out[f"{name}_runs_md"] = k_of_n(*n[f"{name}_counts"])
    for key in ("claim_clip", "claim_band", "clip_vs_same_lr", "clip_vs_matched", "clip_vs_best_lr"):
        out[f"{key}_md"] = f"**{n[key]}**"
    for key in ("claim_clip_why", "claim_band_why", "advice_threshold", "advice_clip_mode"):
        out[f"{key}_md"] = n[key]
    out["best_mode_md"] = f"`{n['best_mode']}`" + ("" if n["best_mode_decided"] else
                                                   " (not decisively ahead of the other options)")
    lr_table = n["lr"]
    out["budget_band_md"] = budget_md(n, n["band"])
    out["budget_lr_md"] = budget_md(n, lr_table)
    out["budget_modes_md"] = budget_md(n, n["modes"])
    return out
