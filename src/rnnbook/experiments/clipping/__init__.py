"""The chapter "Gradient clipping": what Keras's three clipping options do, and whether clipping
rescues a recurrent setting that explodes, trained to a criterion (:mod:`rnnbook.criterion`).

The setting is the IRNN (ReLU + identity recurrent matrix, Le et al. 2015) trained with SGD
(momentum 0.9) on the recall task at lag ``clip_lag`` (features scaled by ``clip_scale``), on
fresh sequences, until the validation accuracy reaches ``target_acc`` (success), the run diverges
or ``clip_max_updates`` run out (censored). :func:`results` runs (or loads from the run cache)
every training the chapter needs; the pilots run on ``clip_pilot_seeds``, the comparison on
``clip_seeds`` (the verdicts never see a pilot seed):

1. **stable pilot**: unclipped, at the small ``pilot_learning_rate`` for ``pilot_updates``
   updates per seed; the *average norm* is the mean global gradient norm over every update of
   every seed (Pascanu et al. 2013, §3.2);
2. **explosion search** (:func:`.steps.explosion_search`): unclipped SGD at the rates of
   ``explode_learning_rates``, raised until at least half the pilot seeds explode
   (:func:`rnnbook.verdicts.exploded`). That rate is the *exploding rate*; when none explodes the
   clipping claims are "premise not met" (the comparison still runs, at the largest rate);
3. **step probes** (:func:`.steps.measure_steps`, the first ``pilot_updates`` updates):
   the measured update per option at the exploding rate: ``global_clipnorm`` at
   ``c = clip_multiple x`` the average norm, ``clipnorm`` and ``clipvalue`` at the thresholds with
   the same bound on the global norm (:func:`matched_thresholds`), then at thresholds rescaled to
   ``global_clipnorm``'s measured step (*step-matched*), and unclipped SGD at the learning rate
   rescaled likewise (the *matched-step control*);
4. **comparison**: unclipped, ``global_clipnorm`` at ``c``, the matched-step control and the
   step-matched ``clipnorm`` and ``clipvalue``, at the exploding rate; ``global_clipnorm`` at
   every multiple of ``clip_multiples`` for Pascanu et al.'s band.

Every claim is decided by :func:`rnnbook.verdicts.decide` on success counts (:func:`claims`), so
"supported" and "contradicted" need the same evidence in opposite directions.

Example:
    >>> matched_thresholds(1.0, n_vars=4, n_params=100)["clipvalue"]
    0.1
"""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd

from rnnbook import sweeps, verdicts
from rnnbook.experiments.clipping import steps as clip_steps
from rnnbook.experiments.clipping.figures import (  # noqa: F401 - the chapter's figures
    fig_clip_band, fig_clip_traces, fig_clip_vs_lr, fig_wall, k_of_n)
from rnnbook.experiments.clipping.options import (  # noqa: F401 - the chapter's exact tables
    KNOWN_GRADIENT, adam_scale_invariance, clip_label, clip_modes_table, in_words, number_or_word,
    optimizer_spike_table, overflow_gain, overflow_table, real_overflow)
from rnnbook.experiments.common import (ExperimentError, PASCANU_BAND, display_table, outcomes,  # noqa: F401
                                        parse_rnn_config, wilson_interval)
from rnnbook.steps import MATCH_ROUNDS, MATCH_TOLERANCE, match_step, step_matched  # noqa: F401 (the chapter's API)
from rnnbook.training import TrainConfig
from rnnbook.verdicts import Point, decide

#: The chapter's parameters, as its ``parameters`` cell names them.
PARAMS = ("clip_seeds", "clip_pilot_seeds", "clip_lag", "units", "batch_size", "n_val", "n_test", "clip_scale",
          "clip_max_updates", "check_every", "target_acc", "explode_learning_rates", "pilot_learning_rate",
          "pilot_updates", "clip_multiples", "clip_multiple", "clip_modes")
#: The exploding setting: the IRNN of Le et al. (2015).
EXPLODING_CONFIG = "relu-identity"
#: SGD momentum of every run of the chapter.
MOMENTUM = 0.9
#: Fixed training sequences a task needs to exist; the criterion runs draw fresh ones instead.
N_FIXED = 64
#: The arms of the comparison at the exploding rate: key -> label.
ARM_LABELS = {"none": "no clipping", "global_clipnorm": "global_clipnorm", "matched": "no clipping, matched step",
              "clipnorm": "clipnorm, step-matched", "clipvalue": "clipvalue, step-matched"}
#: The claims of the chapter, by key (``claim_<key>`` in :func:`results`).
CLAIMS = {"clip": "Clipping (global_clipnorm) rescues the exploding setting: it reaches the criterion more often "
                  "than unclipped SGD at the same learning rate",
          "clip_step": "Clipping does more than a shorter step: global_clipnorm reaches the criterion more often "
                       "than unclipped SGD at the learning rate with the same measured step",
          "band": "Thresholds from half to ten times the average norm still converge (Pascanu et al.): "
                  "global_clipnorm in that band reaches the criterion more often than no clipping",
          "mode": "global_clipnorm does better than clipnorm and clipvalue at the same measured step"}


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
    for name in ("clip_seeds", "clip_pilot_seeds", "explode_learning_rates"):
        if len(p[name]) < 1:
            raise ExperimentError(f"clipping: {name} must not be empty")
    shared = sorted(set(map(int, p["clip_seeds"])) & set(map(int, p["clip_pilot_seeds"])))
    if shared:
        raise ExperimentError(f"clipping: seed(s) {shared} are both pilot and comparison seeds; the pilots choose "
                              "the setting, so the verdicts must run on other seeds")
    return p


def exploding_config(params: dict, learning_rate: float | None = None) -> TrainConfig:
    """The setting (seed 0, unclipped) at ``learning_rate`` (default: the grid's first rate)."""
    p = pick(params)
    rate = float(min(p["explode_learning_rates"]) if learning_rate is None else learning_rate)
    base = TrainConfig(task="recall", seq_len=p["clip_lag"] + 1, lag=p["clip_lag"], n_train=N_FIXED, n_val=p["n_val"],
                       n_test=p["n_test"], units=p["units"], optimizer="sgd", momentum=MOMENTUM, learning_rate=rate,
                       batch_size=p["batch_size"], feature_scale=float(p["clip_scale"]),
                       max_updates=p["clip_max_updates"], check_every=p["check_every"],
                       target_acc=float(p["target_acc"]), stream="fresh")
    return parse_rnn_config(EXPLODING_CONFIG).apply(base)


def pilot_config(params: dict) -> TrainConfig:
    """The stable pilot: the setting, unclipped, at ``pilot_learning_rate`` for exactly
    ``pilot_updates`` updates (one validation check at the end; target 1.0)."""
    p = pick(params)
    return dataclasses.replace(exploding_config(p), learning_rate=float(p["pilot_learning_rate"]),
                               max_updates=p["pilot_updates"], check_every=p["pilot_updates"], target_acc=1.0)


def _other_modes(p: dict) -> list[str]:
    return [m for m in ("clipnorm", "clipvalue") if m in p["clip_modes"]]


def plan(params: dict) -> list[TrainConfig]:
    """Every training run of the chapter, for ``rnnbook build --dry-run``: the pilot, every rate of
    the explosion grid (an upper bound: the search stops at the first exploding rate) and the
    comparison, counted at the grid's first rate and at thresholds for a norm of 1 (the pilots
    decide both, so a cache check cannot find those runs before the pilots have run). The step
    probes (short, in the run cache under ``clip-steps-``) are not counted."""
    p = pick(params)
    cfg = exploding_config(p)
    pilots = [pilot_config(p)] + [dataclasses.replace(cfg, learning_rate=float(x))
                                  for x in sorted(set(p["explode_learning_rates"]))]
    multiples = sorted({float(m) for m in p["clip_multiples"]} | {float(p["clip_multiple"])})
    arms = [cfg, dataclasses.replace(cfg, learning_rate=cfg.learning_rate * 0.5)]  # unclipped; matched step
    arms += [dataclasses.replace(cfg, clip_mode="global_clipnorm", clip_threshold=m) for m in multiples]
    arms += [dataclasses.replace(cfg, clip_mode=m, clip_threshold=1.0) for m in _other_modes(p)]
    return sweeps.with_seeds(pilots, p["clip_pilot_seeds"]) + sweeps.with_seeds(arms, p["clip_seeds"])


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


# ----------------------------------------------------------------------------- runs and counts


def counts(runs: pd.DataFrame, by) -> pd.DataFrame:
    """One row per group: runs, successes (with the Wilson 95 % interval of the share), failures by
    :func:`rnnbook.verdicts.failure_reason` (diverged, dead, never above chance), censored runs and
    those still improving at the cap (:func:`rnnbook.verdicts.still_improving`), runs whose
    gradient exploded (:func:`rnnbook.verdicts.exploded`) and the median updates to success."""
    rows = []
    by = [by] if isinstance(by, str) else list(by)
    for keys, part in runs.groupby(by, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        k, n = int(part["success"].sum()), len(part)
        share, lo, hi = wilson_interval(k, n)
        records = [{**r, "failed": bool(f)} for r, f in zip(part["record"], part.get("failed", [False] * n))]
        reasons = [verdicts.failure_reason(r) for r in records]
        rows.append({**dict(zip(by, keys)), "runs": n, "successes": k, "success_rate": share, "ci_lo": lo,
                     "ci_hi": hi, "diverged": reasons.count("diverged"), "dead": reasons.count("dead"),
                     "never above chance": reasons.count("never above chance"),
                     "censored": int(part["censored"].sum()),
                     "still improving": int(sum(verdicts.still_improving(r) for r in records)),
                     "exploded": int(sum(verdicts.exploded(r) for r in records)),
                     "median_updates_to_success": float(part["updates_to_success"].median()) if k else math.nan})
    return pd.DataFrame(rows)


def point(a: pd.DataFrame, b: pd.DataFrame, label: str = "") -> Point:
    """A :class:`~rnnbook.verdicts.Point` of success counts of run frames ``a`` and ``b``, with the
    runs of each censored while still improving."""
    improving = [int(sum(verdicts.still_improving(r) for r in x["record"])) for x in (a, b)]
    return Point(int(a["success"].sum()), len(a), int(b["success"].sum()), len(b), *improving, label=label)


def claims(arms: dict[str, pd.DataFrame], band: pd.DataFrame, premise: bool, premise_why: str,
           band_range=PASCANU_BAND) -> dict[str, verdicts.Verdict]:
    """The verdict of every claim of :data:`CLAIMS` (:func:`rnnbook.verdicts.decide` on success
    counts) from the comparison's run frames: ``arms`` by key of :data:`ARM_LABELS` (any but
    ``none`` and ``global_clipnorm`` may be missing) and ``band`` (``global_clipnorm`` runs with a
    ``multiple`` column). ``premise``: the explosion search found an exploding rate; without it
    the two rescue claims are "premise not met"."""
    none, clipped = arms["none"], arms["global_clipnorm"]
    out = {"clip": decide([point(clipped, none)], premise, premise_why, names=("global_clipnorm", "no clipping"))}
    if "matched" in arms:
        out["clip_step"] = decide([point(clipped, arms["matched"])], premise, premise_why,
                                  names=("global_clipnorm", "no clipping at the matched step"))
    else:
        out["clip_step"] = verdicts.Verdict(verdicts.NOT_DECIDED, "The matched-step control was not trained.")
    lo, hi = band_range
    inside = band[(band["multiple"] >= lo) & (band["multiple"] <= hi)]
    pts = [point(part, none, f"{m:g}x") for m, part in inside.groupby("multiple")]
    out["band"] = (decide(pts, names=("global_clipnorm", "no clipping")) if pts else
                   verdicts.Verdict(verdicts.NOT_DECIDED, f"No threshold tried lies between {lo:g} and {hi:g} "
                                                          "times the average norm."))
    others = [(m, arms[m]) for m in ("clipnorm", "clipvalue") if m in arms]
    out["mode"] = (decide([point(clipped, part, f"against {m}") for m, part in others],
                          names=("global_clipnorm", "the other option")) if others else
                   verdicts.Verdict(verdicts.NOT_DECIDED, "No other option was trained."))
    return out


def average_norm(pilot: pd.DataFrame) -> float:
    """Mean global gradient norm over every update of every pilot run that did not diverge."""
    stable = pilot[~pilot["diverged"] & ~pilot["failed"]]
    if stable.empty:
        errors = "; ".join(str(e) for e in pilot["error"].dropna().unique())
        raise ExperimentError("clipping: no pilot run finished without diverging; lower pilot_learning_rate so "
                              f"that the pilot is stable{' (errors: ' + errors + ')' if errors else ''}")
    norms = np.concatenate([np.asarray(r["steps"]["grad_norm"], float) for r in stable["record"]])
    return float(np.mean(norms[np.isfinite(norms)]))


# ----------------------------------------------------------------------------- the chapter's numbers


def _sweep(configs, labels, seeds, desc, cache_dir) -> pd.DataFrame:
    return outcomes(sweeps.run_sweep(configs, seeds, cache_dir=cache_dir, desc=f"clipping: {desc}",
                                     labels=labels))


def probes(cfg: TrainConfig, c: float, n_vars: int, n_params: int, modes, seeds, updates: int,
           cache_dir=sweeps.RUNS_DIR) -> tuple[pd.DataFrame, dict[str, TrainConfig]]:
    """The step probes at ``cfg``'s (exploding) rate on the pilot ``seeds`` (module docstring, 3):
    the step-size table (:func:`.steps.step_row` per arm) and the configurations of the
    comparison's arms by key of :data:`ARM_LABELS` (thresholds and the control's rate step-matched)."""
    bound = matched_thresholds(c, n_vars, n_params)
    clip = lambda mode, x: dataclasses.replace(cfg, clip_mode=mode, clip_threshold=float(x))  # noqa: E731
    measure = lambda config: clip_steps.steps_of(dataclasses.replace(config, max_updates=updates), seeds,  # noqa: E731
                                                 cache_dir)
    arms = {"none": cfg, "global_clipnorm": clip("global_clipnorm", c)}
    measured = {k: measure(v) for k, v in arms.items()}
    ref = clip_steps.median_step(measured["global_clipnorm"])
    rows = [clip_steps.step_row(ARM_LABELS[k], arms[k], measured[k], ref) for k in arms]
    for mode in modes:
        at_bound = clip(mode, bound[mode])
        m = measure(at_bound)
        rows.append(clip_steps.step_row(f"{mode}, bound-matched", at_bound, m, ref))
        arms[mode], m = match_step(lambda x: clip(mode, x), bound[mode], m, ref, measure)  # noqa: B023
        rows.append(clip_steps.step_row(ARM_LABELS[mode], arms[mode], m, ref))
    control, m = match_step(lambda x: dataclasses.replace(cfg, learning_rate=x), cfg.learning_rate,
                            measured["none"], ref, measure)
    arms["matched"] = control
    rows.append(clip_steps.step_row(ARM_LABELS["matched"], control, m, ref))
    return pd.DataFrame(rows), arms


def results(params: dict, cache_dir=sweeps.RUNS_DIR) -> dict:
    """Every number, table and run frame of the chapter, from its parameters (:data:`PARAMS`).

    Keys (plain data unless said):

    * ``claim_<key>`` (a verdict word), ``claim_<key>_why`` (Markdown), ``claim_<key>_test`` and
      ``claim_<key>_p`` for every claim of :data:`CLAIMS` (``clip``, ``clip_step``, ``band``,
      ``mode``); ``verdicts`` (key -> :class:`rnnbook.verdicts.Verdict`);
    * ``advice_threshold``, ``advice_clip_mode``: Markdown sentences for the recommendations;
    * ``premise_met``, ``premise_why``, ``explosion`` (the search's table), ``learning_rate``
      (the exploding rate, or the largest rate tried);
    * the setting and the pilots: ``lag``, ``seq_len``, ``momentum``, ``feature_scale``, ``units``,
      ``target_acc``, ``pilot_learning_rate``, ``pilot_updates``, ``average_norm``,
      ``clip_multiple``, ``clip_threshold``, ``n_vars``, ``n_params``, ``thresholds`` (bound-matched),
      ``arm_configs`` (key -> :class:`TrainConfig`), ``matched_learning_rate``;
    * tables: ``steps`` (the step sizes), ``arms`` (:func:`counts` per arm), ``band`` (per
      multiple), ``lr`` (per arm and learning rate, the pilot's included); frames ``runs`` (every
      run), ``traces`` (the runs of each option at the exploding rate), ``pilot``;
    * the budget: ``max_updates``, ``check_every``, ``batch_size``, ``sequences_cap``,
      ``n_seeds``, ``n_pilot_seeds``, ``n_val``, ``n_runs``, ``sequences_seen``.
    """
    p = pick(params)
    seeds, pilot_seeds = list(p["clip_seeds"]), list(p["clip_pilot_seeds"])
    pilot = _sweep([pilot_config(p)], ["pilot"], pilot_seeds, "pilot", cache_dir)
    avg = average_norm(pilot)
    run_rate = lambda x: _sweep([exploding_config(p, x)], [f"{x:g}"], pilot_seeds,  # noqa: E731
                                f"explosion search at {x:g}", cache_dir)
    explosion, rate, met, searched = clip_steps.explosion_search(p["explode_learning_rates"], run_rate)
    cfg = exploding_config(p, rate)
    c = float(p["clip_multiple"]) * avg
    n_vars, n_params = parameter_counts(cfg)
    steps, configs = probes(cfg, c, n_vars, n_params, _other_modes(p), pilot_seeds, p["pilot_updates"], cache_dir)
    keys = list(configs)
    trained = _sweep([configs[k] for k in keys], keys, seeds, "comparison", cache_dir)
    arms = {k: trained[trained["label"] == k].assign(arm=ARM_LABELS[k]) for k in keys}
    multiples = sorted({float(m) for m in p["clip_multiples"]} | {float(p["clip_multiple"])})
    others = [m for m in multiples if m != float(p["clip_multiple"])]
    band = _sweep([dataclasses.replace(cfg, clip_mode="global_clipnorm", clip_threshold=m * avg) for m in others],
                  [f"{m:g}" for m in others], seeds, "band", cache_dir) if others else arms["none"].iloc[:0]
    band = pd.concat([band, arms["global_clipnorm"].assign(label=f"{float(p['clip_multiple']):g}")])
    band["multiple"] = band["label"].astype(float)
    premise_why = "" if met else clip_steps.premise_why(explosion, len(pilot_seeds))
    decided = claims(arms, band, met, premise_why)
    frames = {"pilot": pilot, "search": searched.assign(arm="pilot, unclipped"), "band": band, **arms}
    return _numbers(p, cfg, avg, c, n_vars, n_params, configs, explosion, met, premise_why, steps, decided, frames)


def _numbers(p, cfg, avg, c, n_vars, n_params, configs, explosion, met, premise_why, steps, decided, frames) -> dict:
    """The chapter's numbers and verdicts from its run frames (see :func:`results`)."""
    keys = [k for k in ARM_LABELS if k in configs]
    arm_runs = pd.concat([frames[k] for k in keys])
    arm_table = counts(arm_runs, "arm")
    arm_table.insert(1, "threshold", [configs[k].clip_threshold if configs[k].clip_mode != "none" else math.nan
                                      for k in keys])
    arm_table.insert(2, "learning rate", [configs[k].learning_rate for k in keys])
    lr_table = counts(pd.concat([frames["search"], frames["none"], frames["matched"], frames["global_clipnorm"]]),
                      ["arm", "learning_rate"])
    every = pd.concat(list(frames.values()), ignore_index=True)
    every = every[~every["record"].map(lambda r: json.dumps(r["config"], sort_keys=True)).duplicated()]
    n = {"premise_met": met, "premise_why": premise_why, "explosion": explosion, "learning_rate": cfg.learning_rate,
         "verdicts": decided, "lag": p["clip_lag"], "seq_len": cfg.seq_len, "momentum": cfg.momentum,
         "feature_scale": cfg.feature_scale, "units": cfg.units, "target_acc": cfg.target_acc,
         "pilot_learning_rate": float(p["pilot_learning_rate"]), "pilot_updates": int(p["pilot_updates"]),
         "pilot_runs": len(frames["pilot"]), "pilot_diverged": int(frames["pilot"]["diverged"].sum()),
         "average_norm": avg, "clip_multiple": float(p["clip_multiple"]), "clip_threshold": c, "n_vars": n_vars,
         "n_params": n_params, "thresholds": matched_thresholds(c, n_vars, n_params), "arm_configs": configs,
         "matched_learning_rate": configs["matched"].learning_rate, "max_updates": cfg.max_updates,
         "check_every": cfg.check_every, "batch_size": cfg.batch_size,
         "sequences_cap": cfg.max_updates * cfg.batch_size, "n_seeds": len(p["clip_seeds"]),
         "n_pilot_seeds": len(p["clip_pilot_seeds"]), "n_val": cfg.n_val, "n_runs": len(every),
         "sequences_seen": int(every["sequences_seen"].sum()), "explode_rates": sorted(p["explode_learning_rates"]),
         "steps": steps, "arms": arm_table, "band": counts(frames["band"], "multiple"), "lr": lr_table,
         "runs": every, "pilot": frames["pilot"],
         "traces": pd.concat([frames[k].assign(label=configs[k].clip_mode) for k in keys if k != "matched"])}
    for key, v in decided.items():
        n.update({f"claim_{key}": v.word, f"claim_{key}_why": v.why, f"claim_{key}_test": v.test,
                  f"claim_{key}_p": v.p})
    n["advice_threshold"] = advice_threshold(n["band"], avg, n)
    n["advice_clip_mode"] = advice_clip_mode(arm_table, decided["mode"])
    return n


def advice_threshold(band: pd.DataFrame, avg: float, n: dict) -> str:
    """Markdown: how to pick the threshold, with the multiples that did best here."""
    top = band[band["successes"] == band["successes"].max()]
    best = ", ".join(f"{m:g}" for m in top["multiple"])
    k, runs = int(top["successes"].iloc[0]), int(top["runs"].iloc[0])
    found = (f"here {best} times it reached the criterion most often ({k_of_n(k, runs)} runs)" if k else
             f"here no multiple tried ({best}) reached the criterion at this learning rate, so lower the learning "
             f"rate first")
    return (f"Run a stable pilot (here {n['pilot_updates']} updates at learning rate {n['pilot_learning_rate']:g}), "
            f"take the average global gradient norm over its updates (here {avg:.3g}) and clip with "
            f"`global_clipnorm` at a multiple of it; {found}; Pascanu et al.'s band: {n['claim_band']}.")


def advice_clip_mode(arms: pd.DataFrame, verdict: verdicts.Verdict) -> str:
    """Markdown: which Keras option to use, from the comparison at the same measured step."""
    rows = ", ".join(f"`{a}` {k_of_n(k, r)}" for a, k, r in zip(arms["arm"], arms["successes"], arms["runs"])
                     if a != ARM_LABELS["matched"])
    if verdict.word == verdicts.SUPPORTED:
        return (f"Use `global_clipnorm`: at the same measured step it reached the criterion more often than the "
                f"options that clip each variable or element ({rows}).")
    if verdict.word == verdicts.CONTRADICTED:
        return (f"An option that clips each variable or element did better than `global_clipnorm` here at the same "
                f"measured step ({rows}); which one suits another model is open.")
    return (f"No option was shown to do better than `global_clipnorm` or worse at the same measured step ({rows}; "
            f"{verdict.word}); which option suits a model is open here. `global_clipnorm` is the one that keeps "
            f"the gradient's direction.")


# ----------------------------------------------------------------------------- what the page shows

#: The step-size table's column of the step relative to ``global_clipnorm``'s.
STEP_RATIO = "update / global_clipnorm's"
#: ``clipvalue`` that clips at least this share of the elements is called SGD on the signs.
SIGN_SHARE = 0.9



def arms_display(arms: pd.DataFrame) -> pd.DataFrame:
    """The comparison's table as the page shows it."""
    t = arms.copy()
    t["success rate [95 % CI]"] = [f"{s:.2f} [{lo:.2f}, {hi:.2f}]" for s, lo, hi in
                                   zip(t["success_rate"], t["ci_lo"], t["ci_hi"])]
    t["threshold"] = ["none" if not math.isfinite(x) else f"{x:.3g}" for x in t["threshold"]]
    t["learning rate"] = [f"{x:.3g}" for x in t["learning rate"]]
    t["median updates to success"] = [("none succeeded" if not math.isfinite(u) else f"{u:.0f}")
                                      for u in t["median_updates_to_success"]]
    return display_table(t[["arm", "threshold", "learning rate", "runs", "successes", "success rate [95 % CI]",
                            "exploded", "diverged", "dead", "never above chance", "censored", "still improving",
                            "median updates to success"]])


def steps_display(steps: pd.DataFrame) -> pd.DataFrame:
    """The step-size table as the page shows it."""
    t = steps.copy()
    t["threshold"] = ["none" if not math.isfinite(x) else f"{x:.3g}" for x in t["threshold"]]
    for col in ("learning rate", "median update norm", "median gradient norm", "median clipped norm"):
        t[col] = [f"{x:.3g}" for x in t[col]]
    for col in ("update / global_clipnorm's", "share clipped", "cosine with raw gradient"):
        t[col] = [f"{x:.2f}" for x in t[col]]
    return display_table(t.drop(columns=["mode"]))


def explosion_display(table: pd.DataFrame) -> pd.DataFrame:
    """The explosion search's table as the page shows it."""
    t = table.copy()
    t["explodes"] = ["yes" if x else "no" for x in t["explodes"]]
    for col in ("largest spike ratio", "median spike ratio"):
        t[col] = [clip_steps.ratio_text(x) for x in t[col]]
    return t


def budget_md(n: dict, table: pd.DataFrame, seeds: str = "n_seeds") -> str:
    """The budget of one trained table or figure: cap, sequences, seeds, runs and their ends."""
    runs, cens = int(table["runs"].sum()), int(table["censored"].sum())
    fails = {k: int(table[k].sum()) for k in ("diverged", "dead", "never above chance")}
    return (f"Budget: at most {n['max_updates']} updates of {n['batch_size']} fresh sequences per run "
            f"({n['sequences_cap']:,} sequences), validation on {n['n_val']} sequences every {n['check_every']} "
            f"updates, {n[seeds]} seeds per point; {runs} runs, of which {cens} censored "
            f"({int(table['still improving'].sum())} of them still improving), {fails['diverged']} diverged, "
            f"{fails['dead']} dead and {fails['never above chance']} never above chance.")


def modes_md(n: dict) -> str:
    """Markdown: what the bound-matched ``clipnorm`` and ``clipvalue`` measurably did to a gradient
    and its step, and their step-matched thresholds (from the step-size table)."""
    steps, parts = n["steps"].set_index("arm"), []
    for mode, unit in (("clipnorm", "variables"), ("clipvalue", "elements")):
        bound = f"{mode}, bound-matched"
        if bound not in steps.index:
            continue
        b, s = steps.loc[bound], steps.loc[ARM_LABELS[mode]]
        text = (f"`{mode}` at its bound-matched threshold {b['threshold']:.3g} clipped "
                f"{100 * b['share clipped']:.0f} % of the {unit} of a gradient on average, turned the gradient "
                f"(median cosine with the raw one {b['cosine with raw gradient']:.2f}) and took a median step of {b[STEP_RATIO]:.2f} times "
                f"`global_clipnorm`'s")
        if mode == "clipvalue":
            text += (f", so there it is SGD on the signs of the elements, each element moving by at most "
                     f"{b['learning rate'] * b['threshold']:.2g} per update before momentum"
                     if b["share clipped"] >= SIGN_SHARE else
                     f", so it is not SGD on the signs here: most elements stay below the threshold")
        parts.append(text + f"; step-matched, at {s['threshold']:.3g}, its step is {s[STEP_RATIO]:.2f} times "
                            f"`global_clipnorm`'s")
    return ("; ".join(parts) + ".") if parts else "No other option was trained (`clip_modes`)."


def matched_md(n: dict) -> str:
    """Markdown: the matched-step control's rate and measured step, and what it means when the
    unclipped step at the same rate already matches (the control is then the unclipped arm)."""
    steps = n["steps"].set_index("arm")
    control, glob = steps.loc[ARM_LABELS["matched"]], steps.loc[ARM_LABELS["global_clipnorm"]]
    text = (f"Its learning rate is {control['learning rate']:.3g} and its measured step "
            f"{control[STEP_RATIO]:.2f} times `global_clipnorm`'s")
    if n["arm_configs"]["matched"] == n["arm_configs"]["none"]:
        text += (f". Here the unclipped step at the same rate already matched, so the control is the unclipped arm "
                 f"itself: at this threshold clipping did not shorten the typical step; it acted on "
                 f"{100 * glob['share clipped']:.0f} % of the updates, the largest")
    return text + "."


def prose(n: dict) -> dict:
    """The values the chapter's prose pastes: numbers (float or int) and Markdown (str)."""
    out = {k: n[k] for k in ("lag", "seq_len", "learning_rate", "momentum", "feature_scale", "units", "target_acc",
                             "pilot_learning_rate", "pilot_updates", "pilot_runs", "pilot_diverged", "average_norm",
                             "clip_multiple", "clip_threshold", "matched_learning_rate", "n_vars", "n_params",
                             "max_updates", "check_every", "batch_size", "sequences_cap", "n_seeds", "n_pilot_seeds",
                             "n_val", "n_runs", "sequences_seen")}
    for mode, c in n["thresholds"].items():
        out[f"threshold_{mode}"] = c
    for key, v in n["verdicts"].items():
        out[f"claim_{key}_md"] = f"**{v.word}**"
        out[f"claim_{key}_why_md"] = v.why
    if not n["premise_met"]:  # the premise's reason is pasted once, beside the explosion search
        out["claim_clip_why_md"] = out["claim_clip_step_why_md"] = "no rate of the grid exploded (see above)."
    out["advice_threshold_md"], out["advice_clip_mode_md"] = n["advice_threshold"], n["advice_clip_mode"]
    out.update(explode_factor=verdicts.SPIKE_FACTOR, explode_warmup=verdicts.SPIKE_WARMUP,
               explode_share=100 * clip_steps.EXPLODE_SHARE, rule_md=verdicts.RULE_TEXT,
               explode_rates_md=", ".join(f"{x:g}" for x in n["explode_rates"]),
               n_rates_tried=len(n["explosion"]), match_tolerance=100 * MATCH_TOLERANCE, match_rounds=MATCH_ROUNDS)
    ex, tried = n["explosion"].iloc[-1], len(n["explosion"])
    largest = ex["largest spike ratio"]
    spike = (f"the largest spike was {clip_steps.ratio_text(largest)} times the median before it"
             if math.isfinite(largest) else "the runs were too short to measure a spike" if math.isnan(largest)
             else "a gradient norm turned non-finite")
    where = (f"The search stopped at the first rate, {ex['learning rate']:g}" if tried == 1 else
             f"It tried {tried} rates; at the last, {ex['learning rate']:g}")
    out.update(explode_exploded=int(ex["exploded"]), explode_runs=int(ex["runs"]),
               search_md=f"{where}, {int(ex['exploded'])} of {int(ex['runs'])} pilot runs exploded ({spike}).",
               matched_md=matched_md(n),
               premise_md=("That is the exploding rate, and every comparison below runs at it." if n["premise_met"]
                           else f"**{verdicts.PREMISE_NOT_MET}**: {n['premise_why']} The comparison below still "
                           f"runs, at the largest rate tried, but the claims that clipping rescues an explosion "
                           f"are {verdicts.PREMISE_NOT_MET}."))
    arms = n["arms"].set_index("arm")
    none = arms.loc[ARM_LABELS["none"]]
    out.update(none_runs_md=k_of_n(none["successes"], none["runs"]), none_exploded=int(none["exploded"]),
               none_diverged=int(none["diverged"]), none_dead=int(none["dead"]))
    steps = n["steps"].set_index("arm")
    for key, label in (("none", ARM_LABELS["none"]), ("global", "global_clipnorm"),
                       ("matched", ARM_LABELS["matched"]), ("clipvalue_bound", "clipvalue, bound-matched"),
                       ("clipvalue", ARM_LABELS["clipvalue"]), ("clipnorm_bound", "clipnorm, bound-matched")):
        if label in steps.index:
            row = steps.loc[label]
            out.update({f"step_{key}": row["median update norm"], f"step_ratio_{key}": row[STEP_RATIO],
                        f"step_share_{key}": 100 * row["share clipped"],
                        f"step_cos_{key}": row["cosine with raw gradient"], f"step_lr_{key}": row["learning rate"]})
            if math.isfinite(row["threshold"]):
                out[f"step_threshold_{key}"] = row["threshold"]
    out["modes_steps_md"] = modes_md(n)
    out["band_multiples"] = ", ".join(f"{m:g}" for m in sorted(n["band"]["multiple"]))
    out["budget_arms_md"] = budget_md(n, n["arms"])
    out["budget_band_md"] = budget_md(n, n["band"])
    out["budget_lr_md"] = budget_md(n, n["arms"]) + (f" The pilot's points: {n['n_pilot_seeds']} other seeds each.")
    return out
