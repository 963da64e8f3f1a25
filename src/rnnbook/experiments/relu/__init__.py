"""The chapter "When ReLU helps": memory across lags on the criterion protocol, the
CNN-to-RNN interface as a factor, memorisation, and stability against learning rate and width.

Every trained run follows :mod:`rnnbook.criterion`: fresh sequences for every batch, a
validation check every ``check_every`` updates, success at ``target_fraction`` of the encoder's
ceiling, a cap of ``max_updates`` (a run that hits it is *censored*), and one failure rule for
every activation (:func:`rnnbook.verdicts.failure_reason`). :func:`results` computes every number
of the chapter; the recommendations chapter reads them from there and never recomputes them.

* The **baseline** is what a Keras user has: the interface level ``"keras"`` (Keras's default
  Glorot-uniform convolutions, features as they come); every other level is named against it
  (:mod:`.interface`).
* **A fair race**: each configuration's Adam learning rate is chosen from
  ``tuning_learning_rates`` on ``tuning_seeds`` (seeds the verdicts never use) at
  ``tuning_lag`` and the baseline interface (:func:`choose_rates`).
* The claims are decided by :mod:`.relu_claims` with the book's one rule
  (:mod:`rnnbook.verdicts`); **reach** (the largest lag at which at least :data:`REACH_SHARE`
  of the seeds succeed) describes, it does not decide.

Example:
    >>> rate_rule(pd.DataFrame({"learning_rate": [1e-3, 3e-3], "successes": [2, 2],
    ...                         "median_updates": [300.0, 150.0]}))
    0.003
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from rnnbook import steps, sweeps, verdicts as V
from rnnbook.experiments import reruns
from rnnbook.experiments.relu import claims as relu_claims, collapse as relu_collapse
from rnnbook.experiments.common import (ExperimentError, ROLES, encoder_ceiling, outcomes,
                                        parse_rnn_config, role_label, specs, wilson_interval)
from rnnbook.experiments.relu.interface import (SATURATION, BASELINE, drive_display, drive_table,  # noqa: F401
                                           parse_interface)
from rnnbook.experiments.relu.tables import (failure_text, lag_text, logrank_display,  # noqa: F401 - the page's tables
                                             rates_display, success_display)
from rnnbook.experiments.relu.figures import (  # noqa: F401 - the chapter's figures
    fig_interface_scale, fig_memorisation, fig_stability, fig_time_to_success, fig_updates_to_success,
    km_curves, memo_curves)
from rnnbook.training import TrainConfig

#: The chapter's shipped reference records (:mod:`rnnbook.reference`): ``data/reference/relu-*.jsonl.gz``.
STORE = "relu"
#: Reach: the largest lag at which at least this share of a configuration's seeds succeed.
REACH_SHARE = 0.75
#: Names of the chapter's parameters (its ``parameters`` cell).
PARAMS = ("seeds", "top_up_seeds", "lag_ladder", "rnn_configs", "lags", "interfaces", "max_updates", "check_every", "target_fraction",
          "units", "batch_size", "tuning_learning_rates", "tuning_seeds", "tuning_lag", "ablation_interfaces",
          "ablation_lag", "ablation_seeds", "n_val", "n_test", "memo_lag", "memo_n_train",
          "learning_rates", "clip_value", "stability_lag", "stability_max_updates", "widths",
          "width_learning_rate", "ceiling_epochs", "rerun_samples", "rerun_updates", "budget_caps",
          *relu_collapse.PARAMS)


def _pick(params: dict) -> dict:
    missing = [n for n in PARAMS if n not in params]
    if missing:
        raise ExperimentError(f"missing parameter(s) {', '.join(missing)} of the relu chapter")
    p = {n: params[n] for n in PARAMS}
    overlap = sorted(set(map(int, p["tuning_seeds"])) & (set(map(int, p["seeds"])) | set(map(int, p["top_up_seeds"]))))
    if overlap:
        raise ExperimentError(f"tuning_seeds and seeds (or top_up_seeds) share {overlap}: the learning rates "
                              "must be chosen on seeds the verdicts do not use")
    if set(map(int, p["seeds"])) & set(map(int, p["top_up_seeds"])):
        raise ExperimentError("top_up_seeds must be seeds not already in seeds")
    if set(map(int, p["tuning_seeds"])) & set(map(int, p["collapse_seeds"])):
        raise ExperimentError("tuning_seeds and collapse_seeds share seeds: the learning rates must be chosen on "
                              "seeds the verdicts do not use")
    return p


# ----------------------------------------------------------------------------- grids


def base_config(p: dict, target_acc: float) -> TrainConfig:
    """The chapter's protocol: recall, Adam, fresh sequences, criterion with a cap."""
    return TrainConfig(task="recall", n_train=64, n_val=int(p["n_val"]), n_test=int(p["n_test"]),
                       units=int(p["units"]), batch_size=int(p["batch_size"]), optimizer="adam",
                       learning_rate=1e-3, max_updates=int(p["max_updates"]),
                       check_every=int(p["check_every"]), target_acc=float(target_acc), stream="fresh")


def at_lag(config: TrainConfig, lag: int) -> TrainConfig:
    """``config`` recalling the first frame of ``T = lag + 1`` frames."""
    if int(lag) < 1:
        raise ExperimentError(f"lag={lag} must be >= 1")
    return dataclasses.replace(config, seq_len=int(lag) + 1, lag=int(lag))


def grid_frame(rows: list[tuple[TrainConfig, str, str]]) -> tuple[list[TrainConfig], list[str], list[str]]:
    """``(configs, labels, interfaces)`` of ``(config, label, interface key)`` rows."""
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def tuning_grid(p: dict, target_acc: float):
    """Every configuration at every tuning learning rate, at ``tuning_lag`` and the baseline level."""
    base, level = base_config(p, target_acc), parse_interface(BASELINE)
    return grid_frame([(level.apply(at_lag(spec.apply(base, learning_rate=float(lr)), p["tuning_lag"])),
                        spec.label, BASELINE)
                       for spec in specs(p["rnn_configs"]) for lr in p["tuning_learning_rates"]])


def lag_grid(p: dict, target_acc: float, rates: dict[str, float], lags=None, keep=None):
    """Configuration x interface level x lag (``lags``, default all), each configuration at its
    chosen learning rate; ``keep(label, level)`` filters the pairs still on their lag ladder."""
    base = base_config(p, target_acc)
    return grid_frame([(parse_interface(key).apply(at_lag(spec.apply(base, learning_rate=rates[spec.label]), lag)),
                        spec.label, key)
                       for spec in specs(p["rnn_configs"]) for key in p["interfaces"]
                       for lag in (p["lags"] if lags is None else lags)
                       if keep is None or keep(spec.label, key)])


def lag_sweep(p: dict, target_acc: float, rates: dict[str, float], runner=None) -> pd.DataFrame:
    """The lag sweep, lag by lag in increasing order. With ``lag_ladder``, a configuration's ladder
    (per interface level) stops after the first lag at which no seed met the criterion
    (:func:`rnnbook.reference.ladder_stops`), so a reach is bounded by a failure, not by the grid.
    At every point where some but not all ``seeds`` succeeded, ``top_up_seeds`` add runs: the
    points that decide comparisons get more seeds than the clear ones. ``runner`` stands in for
    :func:`run` (the dry run's planner)."""
    from rnnbook.reference import ladder_stops

    run_ = runner or run

    parts, stopped = [], set()
    for lag in sorted(int(x) for x in p["lags"]):
        configs, labels, levels = lag_grid(p, target_acc, rates, [lag], lambda lab, key: (lab, key) not in stopped)
        if not configs:
            break
        runs = run_(configs, labels, p["seeds"], f"relu: lag {lag}", levels)
        mixed = [(c, lab, key) for c, lab, key in zip(configs, labels, levels)
                 if 0 < runs[(runs["label"] == lab) & (runs["interface"] == key)]["success"].sum() < len(p["seeds"])]
        if mixed and p["top_up_seeds"]:
            more_configs, more_labels, more_levels = map(list, zip(*mixed))
            more = run_(more_configs, more_labels, p["top_up_seeds"], f"relu: lag {lag}, more seeds", more_levels)
            runs = pd.concat([runs, more], ignore_index=True)
        parts.append(runs)
        if p["lag_ladder"]:
            for (lab, key), part in runs.groupby(["label", "interface"], sort=False):
                if ladder_stops({lag: int(part["success"].sum())}) is not None:
                    stopped.add((lab, key))
    return pd.concat(parts, ignore_index=True)


def collapse_grid(p: dict, target_acc: float, rates: dict[str, float]):
    """``grid(lag, labels)`` of the long-lag clipping comparison (:mod:`.collapse`): the lag
    sweep's configurations ``labels`` at ``lag`` and the baseline interface level, as
    :func:`lag_grid` makes them (so the unclipped arm is the lag sweep's own runs)."""
    return lambda lag, labels: lag_grid(p, target_acc, rates, [lag], lambda lab, key: key == BASELINE and lab in labels)


def ablation_grid(p: dict, target_acc: float, rates: dict[str, float], key: str = ROLES["tanh"]):
    """tanh + orthogonal at ``ablation_lag`` at every level of ``ablation_interfaces``."""
    spec = parse_rnn_config(key)
    base = at_lag(spec.apply(base_config(p, target_acc), learning_rate=rates.get(spec.label, 1e-3)),
                  p["ablation_lag"])
    return grid_frame([(parse_interface(k).apply(base), spec.label, k) for k in p["ablation_interfaces"]])


def _stability_base(p: dict, target_acc: float, **changes) -> TrainConfig:
    base = dataclasses.replace(base_config(p, target_acc), max_updates=int(p["stability_max_updates"]), **changes)
    return parse_interface(BASELINE).apply(at_lag(base, p["stability_lag"]))


def memo_grid(p: dict, target_acc: float, key: str = ROLES["tanh"]):
    """One configuration at ``memo_lag`` on a fixed training set and on fresh sequences; never
    stopped early (target 1.0), so both curves run to the cap."""
    base = at_lag(parse_interface(BASELINE).apply(parse_rnn_config(key).apply(base_config(p, 1.0))), p["memo_lag"])
    fixed = dataclasses.replace(base, stream="fixed", n_train=int(p["memo_n_train"]))
    return [fixed, base], [f"fixed set of {int(p['memo_n_train'])}", "fresh sequences"]


def lr_grid(p: dict, target_acc: float, keys=(ROLES["tanh"], ROLES["relu"])):
    """SGD (momentum 0.9) at every learning rate, without and with ``global_clipnorm``."""
    base = _stability_base(p, target_acc, optimizer="sgd")
    configs, labels = [], []
    for spec in specs(keys):
        for mode in ("none", "global_clipnorm"):
            for lr in p["learning_rates"]:
                configs.append(spec.apply(base, learning_rate=float(lr), clip_mode=mode,
                                          clip_threshold=float(p["clip_value"]) if mode != "none" else 1.0))
                labels.append(spec.label)
    return configs, labels


def width_grid(p: dict, target_acc: float, keys=(ROLES["tanh"], ROLES["tf1"])):
    """Adam at ``width_learning_rate`` for every number of units."""
    base = _stability_base(p, target_acc, learning_rate=float(p["width_learning_rate"]))
    configs, labels = [], []
    for spec in specs(keys):
        for u in p["widths"]:
            configs.append(spec.apply(base, units=int(u)))
            labels.append(spec.label)
    return configs, labels


#: The success target a dry run assumes while the encoder's ceiling is not yet measured (the
#: build measures it first); the planned runs then carry this target, not the build's.
PLANNING_TARGET = 0.9


def target_of(p: dict, ceiling: dict) -> float:
    """The success target: ``target_fraction`` of the encoder's ceiling, to three decimals."""
    return round(float(p["target_fraction"]) * ceiling["test_acc"], 3)


def plan(params: dict, target_acc: float | None = None) -> list[TrainConfig]:
    """Every training run of the chapter (seeds included), without running any: for
    ``rnnbook build --dry-run``. The target is the build's when the encoder's ceiling is cached,
    else :data:`PLANNING_TARGET`; the lag sweep's learning rates are the tuning runs' choice once
    they are shipped or cached. The lag sweep follows its ladder and top-up rule as far as
    shipped or cached records decide them (:func:`planned_lag_runs`), and is an upper bound
    beyond."""
    p = _pick(params)
    if target_acc is None:
        ceiling = encoder_ceiling(p["ceiling_epochs"], compute=False)
        target_acc = PLANNING_TARGET if ceiling is None else target_of(p, ceiling)
    tuned = sweeps.with_seeds(tuning_grid(p, target_acc)[0], p["tuning_seeds"])
    guess = {spec.label: float(p["tuning_learning_rates"][0]) for spec in specs(p["rnn_configs"])}
    if all(_cached_record(c) is not None for c in tuned):  # the tuning runs decide the lag sweep's rates
        configs, labels, levels = tuning_grid(p, target_acc)
        guess = choose_rates(run(configs, labels, p["tuning_seeds"], "relu: learning rates", levels))[0]
    lag = planned_lag_runs(p, target_acc, guess)
    ablation = sweeps.with_seeds(ablation_grid(p, target_acc, guess)[0], p["ablation_seeds"])
    rest = [c for configs, _ in (memo_grid(p, target_acc), lr_grid(p, target_acc), width_grid(p, target_acc))
            for c in configs]
    unseeded = lambda c: dataclasses.replace(c, seed=0)  # noqa: E731
    named = {unseeded(c): (lab, key) for c, lab, key in zip(*lag_grid(p, target_acc, guess))}
    swept = [(c, *named[unseeded(c)]) for c in lag]  # the ladder's runs, not the grid's
    long_lags = relu_collapse.plan(p, swept, _cached_record, collapse_grid(p, target_acc, guess), BASELINE)
    return tuned + lag + ablation + sweeps.with_seeds(rest, p["seeds"]) + long_lags


def _cached_record(config: TrainConfig) -> dict | None:
    """The record a build would read for ``config`` (shipped, else in the run cache), or None
    (nothing trains)."""
    return sweeps.recorded(config, STORE)


class _Unknown(Exception):
    """A lag of the sweep whose records are not all there: the planner cannot follow the ladder."""

    def __init__(self, lag: int):
        super().__init__(lag)
        self.lag = lag


def planned_lag_runs(p: dict, target_acc: float, rates: dict[str, float]) -> list[TrainConfig]:
    """The lag sweep's runs as :func:`lag_sweep` would run them, its ladder and top-ups decided by
    the records there are; from the first lag with a run not recorded, every point the ladder
    has not stopped yet, at every remaining lag, with all seeds and top-ups (an upper bound)."""
    planned: list[TrainConfig] = []
    alive: dict[int, set] = {}  # lag -> the (label, level) points the ladder still runs there

    def runner(configs, labels, seeds, desc, interfaces=None):
        runs = sweeps.with_seeds(configs, seeds)
        alive.setdefault(int(configs[0].lag), set(zip(labels, interfaces or [None] * len(labels))))
        planned.extend(runs)
        if any(_cached_record(c) is None for c in runs):
            raise _Unknown(int(configs[0].lag))
        return run(configs, labels, seeds, desc, interfaces)  # every record is there: nothing trains

    try:
        lag_sweep(p, target_acc, rates, runner)
    except _Unknown as unknown:
        rest = [int(x) for x in p["lags"] if int(x) >= unknown.lag]
        points = alive[unknown.lag]
        planned = [c for c in planned if int(c.lag) < unknown.lag]
        planned += sweeps.with_seeds(lag_grid(p, target_acc, rates, rest, lambda lab, key: (lab, key) in points)[0],
                                     list(p["seeds"]) + list(p["top_up_seeds"]))
    return planned


# ----------------------------------------------------------------------------- runs and statistics


def run(configs, labels, seeds, desc, interfaces=None) -> pd.DataFrame:
    """Run (or load) a grid; one row per run with ``outcome``, ``success``, ``updates`` and, given
    ``interfaces`` (one key per configuration), the ``interface`` level."""
    runs = outcomes(sweeps.run_sweep(configs, seeds, desc=desc, labels=labels, store=STORE))
    runs["accuracy"] = sweeps.accuracy_with_divergence(runs, "chance")
    if interfaces is not None:
        runs["interface"] = [key for key in interfaces for _ in seeds]
    return runs


def success_table(runs: pd.DataFrame, by=("label", "interface", "lag")) -> pd.DataFrame:
    """Per point: seeds, successes, censored (and still improving) and failed runs, success rate
    with its Wilson interval, median updates to success."""
    rows = []
    for keys, part in runs.groupby(list(by), sort=False):
        k, n = int(part["success"].sum()), len(part)
        rate, lo, hi = wilson_interval(k, n)
        done = part.loc[part["success"], "updates"]
        rows.append({**dict(zip(by, keys)), "seeds": n, "successes": k,
                     "censored": int((part["outcome"] == "censored").sum()),
                     "still_improving": relu_claims.improving(part),
                     "diverged_runs": int(part["diverged"].sum()), "rate": rate, "lo": lo, "hi": hi,
                     "median_updates": float(done.median()) if len(done) else math.nan})
    return pd.DataFrame(rows)


def rate_rule(table: pd.DataFrame) -> float:
    """The learning rate chosen from one configuration's tuning rows: most successes, then the
    fewest median updates to success, then the smaller rate."""
    t = table.assign(_m=table["median_updates"].fillna(math.inf))
    best = t.sort_values(["successes", "_m", "learning_rate"], ascending=[False, True, True]).iloc[0]
    return float(best["learning_rate"])


def choose_rates(tuning: pd.DataFrame) -> tuple[dict[str, float], pd.DataFrame]:
    """Each configuration's learning rate (:func:`rate_rule`) and the tuning table with ``chosen``."""
    table = success_table(tuning, by=("label", "learning_rate"))
    rates = {lab: rate_rule(part) for lab, part in table.groupby("label", sort=False)}
    table["chosen"] = [rates[lab] == lr for lab, lr in zip(table["label"], table["learning_rate"])]
    return rates, table


def reach(table: pd.DataFrame, label: str, level: str) -> float:
    """Largest lag at which at least :data:`REACH_SHARE` of ``label``'s seeds succeed at interface
    ``level`` (NaN when at no lag)."""
    part = table[(table["label"] == label) & (table["interface"] == level)]
    ok = part.loc[part["rate"] >= REACH_SHARE, "lag"]
    return float(ok.max()) if len(ok) else math.nan


def reach_table(table: pd.DataFrame, levels) -> pd.DataFrame:
    """Reach per configuration (rows) and interface level (columns), as text for the page."""
    rows = []
    for label in dict.fromkeys(table["label"]):
        row = {"configuration": label}
        for level in levels:
            r = reach(table, label, level)
            row[parse_interface(level).label] = "none" if not np.isfinite(r) else f"{int(r)}"
        rows.append(row)
    return pd.DataFrame(rows)


def logrank_table(runs: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Log-rank tests of updates to success (censored and failed runs censored at their last
    update) of every configuration against ``reference``, per interface level and lag."""
    rows = []
    for (level, lag), part in runs.groupby(["interface", "lag"], sort=False):
        ref = part[part["label"] == reference]
        for label, other in part.groupby("label", sort=False):
            if label == reference or not len(ref):
                continue
            p = V.logrank_p(other["updates"], other["success"], ref["updates"], ref["success"])
            rows.append({"interface": level, "lag": int(lag), "configuration": label, "against": reference,
                         "successes": f"{int(other['success'].sum())} of {len(other)}",
                         "reference successes": f"{int(ref['success'].sum())} of {len(ref)}", "log-rank p": p})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the chapter's numbers


def results(params: dict, ceiling: dict | None = None, long_budget_reader=None, rerun_sample: bool = True) -> dict:
    """Every number, table and run of the chapter, from its parameters (cached runs load at once);
    with ``long_budget_reader`` (a function of the parameters and the target, as
    :func:`.long_budget.reader` makes one), ``long``: the long-budget answer read from the
    shipped reference records (it never trains); with ``rerun_sample``, ``rerun``: the re-run
    sample's table (:func:`rerun`; a page that shows it asks for it, others need not re-train).

    Keys: ``ceiling``, ``target_acc``, ``rates`` and ``tuning_table`` (the fair race), the run
    tables ``tuning``/``lag``/``ablation``/``memo``/``lr``/``width``, ``table`` (success per point),
    ``reach``, ``drive``, ``budget``, ``numbers`` and ``verdicts`` (:mod:`.relu_claims`), and
    ``collapse``: the long-lag clipping comparison (:func:`.collapse.study`).
    """
    p = _pick(params)
    if not p["seeds"]:
        raise ExperimentError("seeds must hold at least one seed")
    ceiling = ceiling or encoder_ceiling(p["ceiling_epochs"])
    target = target_of(p, ceiling)
    out = {"params": p, "ceiling": ceiling, "target_acc": target}
    configs, labels, levels = tuning_grid(p, target)
    out["tuning"] = run(configs, labels, p["tuning_seeds"], "relu: learning rates", levels)
    out["rates"], out["tuning_table"] = choose_rates(out["tuning"])
    configs, labels, levels = ablation_grid(p, target, out["rates"])  # one lag: before the long lag sweep
    out["ablation"] = run(configs, labels, p["ablation_seeds"], "relu: interface ablation", levels)
    out["lr"] = run(*lr_grid(p, target), p["seeds"], "relu: learning rate")  # short runs: before the long lags
    out["width"] = run(*width_grid(p, target), p["seeds"], "relu: width")
    out["lag"] = lag_sweep(p, target, out["rates"])
    out["collapse"] = relu_collapse.study(p, out["lag"], collapse_grid(p, target, out["rates"]), run, BASELINE,
                                          steps.stored_steps)
    out["memo"] = run(*memo_grid(p, target), p["seeds"], "relu: memorisation")
    out["table"] = success_table(out["lag"])
    out["reach"] = reach_table(out["table"], p["interfaces"])
    out["logrank"] = logrank_table(out["lag"], role_label("tanh"))
    out["drive"] = drive_table(p, at_lag(base_config(p, 1.0), max(p["lags"])))
    out["budget"] = budget(out["lag"], p)
    if long_budget_reader is not None:
        out["long"] = long_budget_reader(p, target)
    if rerun_sample:
        out["rerun"] = rerun(out, p)
    roles = relu_claims.roles(out["lag"]["label"], {*out["lag"]["label"], *out["lr"]["label"], *out["width"]["label"]})
    out["verdicts"] = relu_claims.claim_verdicts(out["lag"], out["lr"], out["width"], roles, BASELINE,
                                                  out["ablation"])
    from rnnbook.experiments.relu import ladder

    out["ladder"] = ladder.ladder(out, p, roles, BASELINE, relu_claims.claim_verdicts, success_table, reach)
    out["numbers"] = numbers(out)
    return out


def shipped_rows(out: dict, sweeps_=("tuning", "lag", "ablation", "memo", "lr", "width", "collapse")
                 ) -> list[tuple[TrainConfig, dict, str]]:
    """``(config, record, label)`` of every run of ``out``'s ``sweeps_`` whose record is a shipped
    reference record (:func:`rnnbook.experiments.reruns.shipped_rows`)."""
    return reruns.shipped_rows([out[k]["runs"] if k == "collapse" else out[k] for k in sweeps_])


def rerun(out: dict, p: dict) -> pd.DataFrame:
    """Re-run a seeded sample of the shipped runs the chapter read (``rerun_samples`` of them, for
    their first ``rerun_updates`` updates) and compare (:func:`rnnbook.experiments.reruns.table`):
    half of them from the long-budget answer's runs when it has some."""
    seed = int(sum(p["seeds"]) + 7 * len(p["lags"]))  # seeded by the parameters: the same build, the same sample
    long = shipped_rows(out["long"], ("lag", "ablation")) if out.get("long", {}).get("ready") else []
    return reruns.table([("this build's sweeps", shipped_rows(out)), ("the reference protocol", long)],
                        int(p["rerun_samples"]), int(p["rerun_updates"]), seed, STORE)


def budget(runs: pd.DataFrame, p: dict) -> dict:
    """What the lag sweep spent: cap, checks, seeds, runs, censored, sequences seen."""
    return {"max_updates": int(p["max_updates"]), "check_every": int(p["check_every"]),
            "batch_size": int(p["batch_size"]), "n_seeds": len(p["seeds"]), "n_runs": len(runs),
            "n_censored": int((runs["outcome"] == "censored").sum()),
            "n_improving": relu_claims.improving(runs[runs["outcome"] == "censored"]),
            "n_success": int(runs["success"].sum()), "n_diverged": int(runs["diverged"].sum()),
            "max_sequences": int(p["max_updates"]) * int(p["batch_size"]),
            "total_updates": int(runs["updates"].sum())}


def reach_numbers(table: pd.DataFrame, lag: pd.DataFrame, levels) -> dict:
    """Reach per configuration and level (``reach``), the best simple and gated reach per level,
    and the success rate per level over the lag grid, from a success ``table`` and its ``lag`` runs."""
    levels = list(levels)
    labels = list(dict.fromkeys(table["label"]))
    gated = [lab for lab in labels if lab in ("GRU", "LSTM")]
    simple = [lab for lab in labels if lab not in gated]
    n: dict = {"levels": levels, "labels": labels, "gated": gated, "simple": simple,
               "reach": {lab: {s: reach(table, lab, s) for s in levels} for lab in labels}}

    def best(labs, s):
        return max([n["reach"][lab][s] for lab in labs if np.isfinite(n["reach"][lab][s])], default=math.nan)

    n["best_simple_reach"] = {s: best(simple, s) for s in levels}
    n["best_gated_reach"] = {s: best(gated, s) for s in levels}
    n["success_by_level"] = {s: float(lag.loc[lag["interface"] == s, "success"].mean()) for s in levels}
    return n


def numbers(out: dict) -> dict:
    """The plain numbers the prose and the recommendations quote."""
    table, lag, p = out["table"], out["lag"], out["params"]
    n = reach_numbers(table, lag, p["interfaces"])
    n.update({"baseline": BASELINE, "lag_min": int(min(p["lags"])), "lag_max": int(max(p["lags"]))})
    n["cap"] = int(p.get("max_updates", 0))
    n["censored"] = {lab: (int((part["outcome"] == "censored").sum()), len(part))
                     for lab, part in lag.groupby("label", sort=False)}
    tanh_drive = out["drive"][out["drive"]["label"] == role_label("tanh")]  # the only bounded, saturating cell
    drive = tanh_drive.groupby("interface", sort=False)[["saturated_share", "input_to_recurrent", "feature_rms"]].median()
    n["drive"] = {str(s): row.to_dict() for s, row in drive.iterrows()}
    memo = out["memo"]
    n["memo"] = {lab: {"train": float(np.mean([r["check_train_acc"][-1] for r in part["record"]])),
                       "val": float(np.mean([r["check_val_acc"][-1] for r in part["record"]]))}
                 for lab, part in memo.groupby("label", sort=False)}
    for key in ("lr", "width"):
        runs = relu_claims.with_failures(out[key])
        by = ["label", "clip_mode", "learning_rate"] if key == "lr" else ["label", "units"]
        n[f"{key}_fail"] = {k: (int(part["failed"].sum()), len(part), failure_text(part))
                            for k, part in runs.groupby(by, sort=False)}
    n["failures"] = {lab: int(part["failed"].sum()) for lab, part in
                     relu_claims.with_failures(pd.concat([out["lr"][out["lr"]["clip_mode"] == "none"], out["width"]]))
                     .groupby("label", sort=False)}
    return n


# ----------------------------------------------------------------------------- what the page glues


def page_values(out: dict) -> dict:
    """Every value the chapter's prose pastes, by glue key (strings are Markdown)."""
    from rnnbook.experiments.relu.interface import ablation_table

    n, b, p, v = out["numbers"], out["budget"], out["params"], out["verdicts"]
    levels = n["levels"]
    vals = {
        "ceiling": out["ceiling"]["test_acc"], "ceiling_epochs": out["ceiling"]["epochs"],
        "target_fraction": float(p["target_fraction"]), "target_acc": out["target_acc"],
        "config_list": "; ".join(f"**{lab}**" for lab in n["labels"]),
        "n_seeds": b["n_seeds"], "cap": b["max_updates"], "check_every": b["check_every"],
        "batch_used": b["batch_size"], "max_sequences": b["max_sequences"], "n_runs_lag": b["n_runs"],
        "n_censored": b["n_censored"], "n_improving": b["n_improving"], "n_success": b["n_success"],
        "n_diverged_lag": b["n_diverged"], "total_updates": b["total_updates"], "n_val_used": int(p["n_val"]),
        "n_test_used": int(p["n_test"]), "reach_share": REACH_SHARE,
        "lag_list": ", ".join(str(int(x)) for x in p["lags"]),
        "level_list": "; ".join(parse_interface(s).label for s in levels),
        "baseline_label": parse_interface(BASELINE).label,
        "tuning_rates": ", ".join(f"{float(x):g}" for x in p["tuning_learning_rates"]),
        "tuning_seeds": ", ".join(str(int(s)) for s in p["tuning_seeds"]), "tuning_lag": int(p["tuning_lag"]),
        "chosen_rates": "; ".join(f"{lab} {r:g}" for lab, r in out["rates"].items()),
        "saturation": SATURATION, "lag_max": n["lag_max"], "lag_min": n["lag_min"],
        "memo_lag": int(p["memo_lag"]), "memo_n_train": int(p["memo_n_train"]),
        "stability_lag": int(p["stability_lag"]), "stability_cap": int(p["stability_max_updates"]),
        "lr_list": ", ".join(f"{float(x):g}" for x in p["learning_rates"]),
        "clip_used": f"`global_clipnorm={float(p['clip_value']):g}`",
        "width_list": ", ".join(str(int(u)) for u in p["widths"]),
        "width_lr": f"`{float(p['width_learning_rate']):g}`",
        "ablation_lag": int(p["ablation_lag"]), "ablation_n_seeds": len(p["ablation_seeds"]),
        "n_rerun": int((out["rerun"]["reproduced"] != "n/a").sum()), "n_shipped": len(shipped_rows(out)),
        "rule_text": V.RULE_TEXT, "alpha": V.ALPHA, "improving_margin": V.IMPROVING_MARGIN,
        "improving_checks": V.IMPROVING_CHECKS,
    }
    for tag, level in (("base", BASELINE), ("he", "he")):
        d = n["drive"].get(level, {})
        vals[f"drive_sat_{tag}"] = 100 * d.get("saturated_share", math.nan)
        vals[f"drive_ratio_{tag}"] = d.get("input_to_recurrent", math.nan)
        vals[f"drive_rms_{tag}"] = d.get("feature_rms", math.nan)
        vals[f"success_{tag}"] = n["success_by_level"].get(level, math.nan)
    for key, verdict in v.items():
        vals[f"verdict_{key}"] = V.markdown(verdict)
        vals[f"word_{key}"] = verdict.word
    memo = n["memo"]
    for lab, tag in ((f"fixed set of {int(p['memo_n_train'])}", "fixed"), ("fresh sequences", "fresh")):
        vals[f"memo_train_{tag}"] = memo.get(lab, {}).get("train", math.nan)
        vals[f"memo_val_{tag}"] = memo.get(lab, {}).get("val", math.nan)
    vals["lr_fail_text"] = "; ".join(
        f"{lab} at {lr:g}, {'no clipping' if mode == 'none' else 'clipped'}: {k} of {m} ({why})"
        for (lab, mode, lr), (k, m, why) in n["lr_fail"].items())
    vals["width_fail_text"] = "; ".join(f"{lab} at {u} units: {k} of {m} ({why})"
                                        for (lab, u), (k, m, why) in n["width_fail"].items())
    abl = ablation_table(out["ablation"])
    vals["ablation_text"] = "; ".join(f"{r['interface']}: {r['successes']}" for _, r in abl.iterrows()) \
        if "successes" in abl else ""
    shown = collapse_answer(out)
    vals.update(relu_collapse.page_values(shown["study"]))
    vals.update({"collapse_cap": shown["cap"], "collapse_source": shown["source"]})
    return vals


def collapse_answer(out: dict) -> dict:
    """The long-lag clipping comparison the page shows and the clipping answer uses: the
    reference protocol's (``out["long"]``) once all its runs are recorded, else this build's own.
    Keys: ``study`` (:func:`.collapse.study`), ``cap``, ``source`` (a sentence for the page)."""
    long = out.get("long") or {}
    if "collapse" in long:
        return {"study": long["collapse"], "cap": int(long["params"]["max_updates"]),
                "source": "The comparison below is the reference protocol's, read from the shipped runs."}
    waits = (" The reference protocol's comparison is not recorded yet, so this is the build's own."
             if long.get("ready") else "")
    return {"study": out["collapse"], "cap": int(out["params"]["max_updates"]),
            "source": f"The comparison below is this build's own lag sweep's.{waits}"}


def collapse_figure(out: dict) -> dict:
    """``fig-collapse`` (``figure``), its data and the data of ``tbl-collapse-rates`` (:mod:`.collapse`),
    of :func:`collapse_answer`'s comparison."""
    study = collapse_answer(out)["study"]
    runs = study["runs"]
    chance = float((runs if len(runs) else out["lag"])["chance"].mean())
    return relu_collapse.figure_data(study, chance, out["target_acc"])


def figure_data(out: dict) -> dict:
    """The tidy data behind each figure and table of the chapter, by its key (one row per plotted
    point or per run), for the page's "Data" downloads."""
    from rnnbook.experiments.relu.interface import ablation_table

    run_cols = ["label", "interface", "lag", "seed", "learning_rate", "outcome", "updates", "diverged",
                "test_acc_last_good"]
    stab = [relu_claims.with_failures(out[k]).assign(sweep=name) for k, name in (("lr", "learning rate"),
                                                                                 ("width", "width"))]
    stab_cols = ["sweep", "label", "learning_rate", "clip_mode", "clip_threshold", "units", "seed", "outcome",
                 "updates", "diverged", "failure"]
    return {"tbl-interface-drive": out["drive"], "fig-interface-scale": out["table"], "tbl-reach": out["table"],
            "tbl-learning-rates": out["tuning_table"], "tbl-interface-ablation": ablation_table(out["ablation"]),
            "fig-time-to-success": km_curves(out["lag"]), "tbl-logrank": out["logrank"],
            "fig-updates-to-success": out["lag"][run_cols], "fig-memorisation": memo_curves(out["memo"]),
            "fig-lr-stability": pd.concat(stab)[stab_cols]}


def all_runs(out: dict) -> pd.DataFrame:
    """Every run of the chapter, one row each, with the sweep it belongs to."""
    return pd.concat([out[k].assign(sweep=k) for k in ("tuning", "lag", "ablation", "memo", "lr", "width")]
                     + [out["collapse"]["runs"].assign(sweep="collapse")], ignore_index=True)
