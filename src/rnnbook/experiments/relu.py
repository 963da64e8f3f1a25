"""The chapter "When ReLU helps": memory across lags on the criterion protocol, the
CNN-to-RNN interface as a factor, memorisation, and stability against learning rate and width.

Every trained run follows :mod:`rnnbook.criterion`: fresh sequences for every batch, a
validation check every ``check_every`` updates, success at ``target_fraction`` of the encoder's
ceiling, a cap of ``max_updates`` (a run that hits it is *censored*), and one failure rule for
every activation. :func:`results` computes every number of the chapter; the recommendations
chapter reads them from there and never recomputes them.

Decision rules (the chapter's text states them):

* a configuration *succeeds* at a point (lag, interface level) in the share of seeds that
  reached the criterion; the share carries a Wilson 95 % interval;
* **reach** of a configuration = the largest lag at which at least :data:`REACH_SHARE` of its
  seeds succeed (and every shorter lag of the grid too is not required);
* A is **better** than B at a point when A's Wilson interval lies entirely above B's; A is
  better overall when it is better at one point or more and worse at none; **ties** when
  neither is better anywhere; **mixed** otherwise.

Example:
    >>> further(5.0, 2.0)
    'further than'
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from rnnbook import sweeps
from rnnbook.experiments.common import (above_chance_ever, outcomes, chance_bar, failed, ExperimentError, encoder_ceiling, fmt_ci, parse_rnn_config,
                                        role_label, specs, wilson_interval)
from rnnbook.experiments.interface import SATURATION, drive_display, drive_table, input_drive  # noqa: F401
from rnnbook.experiments.relu_figures import (  # noqa: F401 - the chapter's figures
    _scales, fig_interface_scale, fig_memorisation, fig_stability, fig_updates_to_success, memo_curves)
from rnnbook.training import TrainConfig

#: Reach: the largest lag at which at least this share of a configuration's seeds succeed.
REACH_SHARE = 0.75
#: How :func:`compare_points`'s verdicts read in a sentence ("A beat B").
COMPARED = {"better": "beat", "worse": "lost to", "ties": "tied with", "mixed": "was mixed against",
            "not compared": "was not compared with"}
#: Names of the chapter's parameters (its ``parameters`` cell).
PARAMS = ("seeds", "rnn_configs", "lags", "feature_scales", "max_updates", "check_every", "target_fraction",
          "units", "batch_size", "learning_rate", "n_val", "n_test", "memo_lag", "memo_n_train",
          "learning_rates", "clip_value", "stability_lag", "stability_scale", "stability_max_updates", "widths",
          "width_learning_rate", "ceiling_epochs")


def _pick(params: dict) -> dict:
    missing = [n for n in PARAMS if n not in params]
    if missing:
        raise ExperimentError(f"missing parameter(s) {', '.join(missing)} of the relu chapter")
    return {n: params[n] for n in PARAMS}


# ----------------------------------------------------------------------------- grids


def base_config(p: dict, target_acc: float) -> TrainConfig:
    """The chapter's protocol: recall, Adam, fresh sequences, criterion with a cap."""
    return TrainConfig(task="recall", n_train=64, n_val=int(p["n_val"]), n_test=int(p["n_test"]),
                       units=int(p["units"]), batch_size=int(p["batch_size"]), optimizer="adam",
                       learning_rate=float(p["learning_rate"]), max_updates=int(p["max_updates"]),
                       check_every=int(p["check_every"]), target_acc=float(target_acc), stream="fresh")


def at_lag(config: TrainConfig, lag: int) -> TrainConfig:
    """``config`` recalling the first frame of ``T = lag + 1`` frames."""
    if int(lag) < 1:
        raise ExperimentError(f"lag={lag} must be >= 1")
    return dataclasses.replace(config, seq_len=int(lag) + 1, lag=int(lag))


def lag_grid(p: dict, target_acc: float) -> tuple[list[TrainConfig], list[str]]:
    """Configuration x interface level x lag, and the legend label of each."""
    base = base_config(p, target_acc)
    configs, labels = [], []
    for spec in specs(p["rnn_configs"]):
        for scale in p["feature_scales"]:
            for lag in p["lags"]:
                configs.append(at_lag(spec.apply(base, feature_scale=float(scale)), lag))
                labels.append(spec.label)
    return configs, labels


def memo_grid(p: dict, target_acc: float, key: str = "tanh-orthogonal") -> tuple[list[TrainConfig], list[str]]:
    """One configuration at ``memo_lag`` on a fixed training set and on fresh sequences; never
    stopped early (target 1.0), so both curves run to the cap."""
    base = at_lag(parse_rnn_config(key).apply(base_config(p, 1.0), feature_scale=float(p["stability_scale"])),
                  p["memo_lag"])
    fixed = dataclasses.replace(base, stream="fixed", n_train=int(p["memo_n_train"]))
    return [fixed, base], [f"fixed set of {int(p['memo_n_train'])}", "fresh sequences"]


def lr_grid(p: dict, target_acc: float, keys=("tanh-orthogonal", "relu-orthogonal")):
    """SGD (momentum 0.9) at every learning rate, without and with ``global_clipnorm``."""
    base = at_lag(dataclasses.replace(base_config(p, target_acc), optimizer="sgd",
                                      max_updates=int(p["stability_max_updates"]),
                                      feature_scale=float(p["stability_scale"])), p["stability_lag"])
    configs, labels = [], []
    for spec in specs(keys):
        for mode in ("none", "global_clipnorm"):
            for lr in p["learning_rates"]:
                configs.append(spec.apply(base, learning_rate=float(lr), clip_mode=mode,
                                          clip_threshold=float(p["clip_value"]) if mode != "none" else 1.0))
                labels.append(spec.label)
    return configs, labels


def width_grid(p: dict, target_acc: float, keys=("tanh-orthogonal", "relu-glorot_uniform")):
    """Adam at ``width_learning_rate`` for every number of units."""
    base = at_lag(dataclasses.replace(base_config(p, target_acc), learning_rate=float(p["width_learning_rate"]),
                                      max_updates=int(p["stability_max_updates"]),
                                      feature_scale=float(p["stability_scale"])), p["stability_lag"])
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
    else :data:`PLANNING_TARGET`."""
    p = _pick(params)
    if target_acc is None:
        ceiling = encoder_ceiling(p["ceiling_epochs"], compute=False)
        target_acc = PLANNING_TARGET if ceiling is None else target_of(p, ceiling)
    grids = [lag_grid(p, target_acc), memo_grid(p, target_acc), lr_grid(p, target_acc), width_grid(p, target_acc)]
    return sweeps.with_seeds([c for configs, _ in grids for c in configs], p["seeds"])


# ----------------------------------------------------------------------------- runs and statistics


def run(configs, labels, seeds, desc) -> pd.DataFrame:
    """Run (or load) a grid; one row per run with ``outcome``, ``success`` and ``updates``."""
    runs = outcomes(sweeps.run_sweep(configs, seeds, desc=desc, labels=labels))
    runs["accuracy"] = sweeps.accuracy_with_divergence(runs, "chance")
    return runs






def success_table(runs: pd.DataFrame, by=("label", "feature_scale", "lag")) -> pd.DataFrame:
    """Per point: seeds, successes, censored and diverged runs, success rate with its Wilson interval,
    median updates to success."""
    rows = []
    for keys, part in runs.groupby(list(by), sort=False):
        k, n = int(part["success"].sum()), len(part)
        rate, lo, hi = wilson_interval(k, n)
        done = part.loc[part["success"], "updates"]
        rows.append({**dict(zip(by, keys)), "seeds": n, "successes": k,
                     "censored": int((part["outcome"] == "censored").sum()),
                     "diverged_runs": int(part["diverged"].sum()), "rate": rate, "lo": lo, "hi": hi,
                     "median_updates": float(done.median()) if len(done) else math.nan})
    return pd.DataFrame(rows)


def reach(table: pd.DataFrame, label: str, scale: float) -> float:
    """Largest lag at which at least :data:`REACH_SHARE` of ``label``'s seeds succeed at ``scale``
    (NaN when at no lag)."""
    part = table[(table["label"] == label) & (table["feature_scale"] == scale)]
    ok = part.loc[part["rate"] >= REACH_SHARE, "lag"]
    return float(ok.max()) if len(ok) else math.nan


def reach_table(table: pd.DataFrame) -> pd.DataFrame:
    """Reach per configuration (rows) and interface level (columns), as text for the page."""
    labels = list(dict.fromkeys(table["label"]))
    scales = sorted(table["feature_scale"].unique(), reverse=True)
    rows = []
    for label in labels:
        row = {"configuration": label}
        for s in scales:
            r = reach(table, label, s)
            row[f"features x {s:g}"] = "none" if not np.isfinite(r) else f"{int(r)}"
        rows.append(row)
    return pd.DataFrame(rows)


def compare_points(table: pd.DataFrame, a: str, b: str) -> str:
    """'better', 'worse', 'ties' or 'mixed': ``a`` against ``b`` over every shared point, a point
    counting when one Wilson interval lies entirely above the other."""
    ta, tb = (table[table["label"] == x].set_index(["feature_scale", "lag"]) for x in (a, b))
    shared = ta.index.intersection(tb.index)
    if not len(shared):
        return "not compared"
    wins = int(sum(ta.loc[i, "lo"] > tb.loc[i, "hi"] for i in shared))
    losses = int(sum(tb.loc[i, "lo"] > ta.loc[i, "hi"] for i in shared))
    if wins and not losses:
        return "better"
    if losses and not wins:
        return "worse"
    return "ties" if not (wins or losses) else "mixed"


def scale_effects(table: pd.DataFrame) -> list[str]:
    """Where the interface level clearly changed a configuration's success rate: one phrase per
    configuration and lag whose best and worst levels have Wilson intervals apart."""
    found = []
    for (label, lag), part in table.groupby(["label", "lag"], sort=False):
        best, worst = part.loc[part["rate"].idxmax()], part.loc[part["rate"].idxmin()]
        if best["lo"] > worst["hi"]:
            found.append(f"{label} at lag {int(lag)} (x {best['feature_scale']:g}: {int(best['successes'])} of "
                         f"{int(best['seeds'])}; x {worst['feature_scale']:g}: {int(worst['successes'])} of "
                         f"{int(worst['seeds'])})")
    return found


def further(a: float, b: float) -> str:
    """'further than', 'as far as' or 'less far than' (NaN = no lag reached)."""
    a, b = np.nan_to_num(a, nan=-1.0), np.nan_to_num(b, nan=-1.0)
    return "further than" if a > b else ("as far as" if a == b else "less far than")


# ----------------------------------------------------------------------------- the chapter's numbers


def results(params: dict, ceiling: dict | None = None) -> dict:
    """Every number, table and run of the chapter, from its parameters (cached runs load at once).

    Keys: ``ceiling`` (the encoder's per-image test accuracy), ``target_acc``, ``lag``/``memo``/``lr``/
    ``width`` (run tables), ``table`` (success per point), ``reach``, ``drive``, ``budget`` and
    ``verdicts`` (see :func:`verdicts`).
    """
    p = _pick(params)
    if not p["seeds"]:
        raise ExperimentError("seeds must hold at least one seed")
    ceiling = ceiling or encoder_ceiling(p["ceiling_epochs"])
    target = target_of(p, ceiling)
    out = {"params": p, "ceiling": ceiling, "target_acc": target}
    out["lag"] = run(*lag_grid(p, target), p["seeds"], "relu: lags x interface")
    out["memo"] = run(*memo_grid(p, target), p["seeds"], "relu: memorisation")
    out["lr"] = run(*lr_grid(p, target), p["seeds"], "relu: learning rate")
    out["width"] = run(*width_grid(p, target), p["seeds"], "relu: width")
    out["table"] = success_table(out["lag"])
    out["reach"] = reach_table(out["table"])
    out["drive"] = drive_table(p, at_lag(base_config(p, 1.0), max(p["lags"])))
    out["budget"] = budget(out["lag"], p)
    out["numbers"] = numbers(out)
    out["verdicts"] = verdicts(out["numbers"])
    return out


def budget(runs: pd.DataFrame, p: dict) -> dict:
    """What the lag sweep spent: cap, checks, seeds, runs, censored, sequences seen."""
    return {"max_updates": int(p["max_updates"]), "check_every": int(p["check_every"]),
            "batch_size": int(p["batch_size"]), "n_seeds": len(p["seeds"]), "n_runs": len(runs),
            "n_censored": int((runs["outcome"] == "censored").sum()),
            "n_success": int(runs["success"].sum()), "n_diverged": int(runs["diverged"].sum()),
            "max_sequences": int(p["max_updates"]) * int(p["batch_size"]),
            "total_updates": int(runs["updates"].sum())}


def numbers(out: dict) -> dict:
    """The plain numbers the prose and the recommendations quote."""
    table, lag, p = out["table"], out["lag"], out["params"]
    scales = _scales(table)
    labels = list(dict.fromkeys(table["label"]))
    tanh, irnn = role_label("tanh"), role_label("irnn")
    gated = [lab for lab in labels if lab in ("GRU", "LSTM")]
    simple = [lab for lab in labels if lab not in gated]
    n: dict = {"scales": scales, "scale_max": scales[0], "scale_min": scales[-1],
               "lag_min": int(min(p["lags"])), "lag_max": int(max(p["lags"])), "labels": labels}
    n["reach"] = {lab: {s: reach(table, lab, s) for s in scales} for lab in labels}
    best_reach = {s: max([n["reach"][lab][s] for lab in simple if np.isfinite(n["reach"][lab][s])],
                         default=math.nan) for s in scales}
    n["best_simple_reach"] = best_reach
    n["best_gated_reach"] = {s: max([n["reach"][lab][s] for lab in gated if np.isfinite(n["reach"][lab][s])],
                                    default=math.nan) for s in scales}
    n["relu_labels"] = [lab for lab in simple if lab.startswith("ReLU")]
    n["relu_reach"] = {s: max([n["reach"][lab][s] for lab in n["relu_labels"] if np.isfinite(n["reach"][lab][s])],
                              default=math.nan) for s in scales}
    n["tanh_reach"] = {s: n["reach"].get(tanh, {}).get(s, math.nan) for s in scales}
    n["compare"] = {lab: compare_points(table, lab, tanh) for lab in labels if lab != tanh and tanh in labels}
    short = table[table["lag"] == n["lag_min"]]
    n["short_compare"] = {lab: compare_points(short, lab, tanh) for lab in n["relu_labels"] if tanh in labels}
    n["irnn_vs_gated"] = compare_points(table, irnn, gated[0]) if irnn in labels and gated else "not compared"
    n["success_by_scale"] = {s: float(lag.loc[lag["feature_scale"] == s, "success"].mean()) for s in scales}
    n["cap"] = int(p.get("max_updates", 0))
    n["censored"] = {lab: (int((part["outcome"] == "censored").sum()), len(part))
                     for lab, part in lag.groupby("label", sort=False)}
    n["scale_effects"] = scale_effects(table)
    n["n_points_succeeding"] = int((table["successes"] > 0).sum())
    tanh_drive = out["drive"][out["drive"]["label"] == role_label("tanh")]  # the only bounded, saturating cell
    drive = tanh_drive.groupby("feature_scale")[["saturated_share", "input_to_recurrent", "feature_rms"]].median()
    n["drive"] = {float(s): row.to_dict() for s, row in drive.iterrows()}
    memo = out["memo"]
    n["memo"] = {lab: {"train": float(np.mean([r["check_train_acc"][-1] for r in part["record"]])),
                       "val": float(np.mean([r["check_val_acc"][-1] for r in part["record"]]))}
                 for lab, part in memo.groupby("label", sort=False)}
    lr = out["lr"].assign(failed=failed(out["lr"]))
    n["lr_fail"] = {(lab, mode): (int(part["failed"].sum()), len(part))
                    for (lab, mode), part in lr.groupby(["label", "clip_mode"], sort=False)}
    n["lr_diverged"] = {(lab, mode): int(part["diverged"].sum())
                        for (lab, mode), part in lr.groupby(["label", "clip_mode"], sort=False)}
    n["lr_success"] = {(lab, mode): int(part["success"].sum())
                       for (lab, mode), part in lr.groupby(["label", "clip_mode"], sort=False)}
    width = out["width"].assign(failed=failed(out["width"]))
    n["width_fail"] = {(lab, int(u)): (int(part["failed"].sum()), len(part))
                       for (lab, u), part in width.groupby(["label", "units"], sort=False)}
    n["width_state"] = {(lab, int(u)): float(part["max_abs_state"].median())
                        for (lab, u), part in width.groupby(["label", "units"], sort=False)}
    return n


def verdicts(n: dict) -> dict:
    """Verdicts on the usual answer's claims from :func:`numbers`: each ``"supported"``,
    ``"contradicted"`` or ``"not decided at this budget"`` with a Markdown reason."""
    v = {}
    scales, tanh = n["scales"], role_label("tanh")
    # 1. ReLU trains about as well as tanh at short lags
    short = list(n["short_compare"].values())
    if not short:
        v["relu_short"] = ("not decided at this budget", "The grid lacks tanh or every ReLU configuration.")
    elif all(c in ("ties", "better") for c in short):
        v["relu_short"] = ("supported", f"At lag {n['lag_min']} no ReLU configuration was worse than tanh at any "
                           "interface level.")
    elif all(c == "worse" for c in short):
        v["relu_short"] = ("contradicted", f"At lag {n['lag_min']} every ReLU configuration was worse than tanh.")
    else:
        v["relu_short"] = ("not decided at this budget", f"At lag {n['lag_min']} the ReLU configurations "
                           "differed: " + ", ".join(f"{k} {COMPARED[c]} tanh" for k, c in n["short_compare"].items()) + ".")
    # 2. ReLU remembers further than tanh (no vanishing gradient)
    words = {s: further(n["relu_reach"][s], n["tanh_reach"][s]) for s in scales}
    reached = [s for s in scales if np.isfinite(n["relu_reach"][s]) or np.isfinite(n["tanh_reach"][s])]
    text = "; ".join(f"features x {s:g}: best ReLU {_lag(n['relu_reach'][s])}, tanh {_lag(n['tanh_reach'][s])}"
                     for s in scales)
    if not reached:
        v["relu_memory"] = ("not decided at this budget", f"Neither reached any lag ({text}).")
    elif all(words[s] == "further than" for s in reached):
        v["relu_memory"] = ("supported", f"ReLU reached further at every level where either learned ({text}).")
    elif all(words[s] != "further than" for s in reached):
        v["relu_memory"] = ("contradicted", f"ReLU reached no further than tanh at any level ({text}).")
    else:
        v["relu_memory"] = ("not decided at this budget", f"It depends on the interface ({text}).")
    # 3. gated cells reach further than simple RNNs
    g, s_ = n["best_gated_reach"], n["best_simple_reach"]
    gw = {s: further(g[s], s_[s]) for s in scales}
    gtext = "; ".join(f"features x {s:g}: gated {_lag(g[s])}, simple {_lag(s_[s])}" for s in scales)
    if all(w == "further than" for w in gw.values()):
        v["gated"] = ("supported", f"The gated cell reached further at every interface level ({gtext}).")
    elif all(w == "less far than" for w in gw.values()):
        v["gated"] = ("contradicted", f"A simple RNN reached further at every level ({gtext}).")
    else:
        v["gated"] = ("not decided at this budget", f"Not at every interface level ({gtext}).")
    # 4. the IRNN matches a gated cell (Le et al. 2015)
    c = n["irnn_vs_gated"]
    v["irnn"] = {"ties": ("supported", "The IRNN's success rates tie with the gated cell's at every point."),
                 "better": ("supported", "The IRNN beat the gated cell at some point and lost at none."),
                 "worse": ("contradicted", "The gated cell beat the IRNN at some point and lost at none."),
                 "mixed": ("not decided at this budget", "Each beat the other somewhere."),
                 }.get(c, ("not decided at this budget", "The grid lacks the IRNN or a gated cell."))
    # 5. ReLU makes exploding gradients worse: unclipped SGD runs that diverged (NaN/Inf or loss
    #    blow-up), with the failures of the symmetric rule (diverged or never above chance) beside
    relu_l = next((lab for (lab, mode) in n["lr_fail"] if lab.startswith("ReLU")), None)
    if relu_l is None or (tanh, "none") not in n["lr_fail"]:
        v["relu_unstable"] = ("not decided at this budget", "The learning-rate sweep lacks tanh or ReLU.")
    else:
        dr, dt = n["lr_diverged"][(relu_l, "none")], n["lr_diverged"][(tanh, "none")]
        (kr, nr), (kt, nt) = n["lr_fail"][(relu_l, "none")], n["lr_fail"][(tanh, "none")]
        why = (f"Unclipped SGD runs that diverged: {relu_l} {dr} of {nr}, tanh {dt} of {nt}; runs that failed "
               f"(diverged or never above chance): {relu_l} {kr}, tanh {kt}.")
        v["relu_unstable"] = (("supported", why) if dr > dt else ("contradicted", why) if dr < dt
                              else ("not decided at this budget", why))
    # 6. the interface scale decides whether a configuration learns to remember
    effects = n["scale_effects"]
    if len(scales) < 2:
        v["interface"] = ("not decided at this budget", "Only one interface level.")
    elif effects:
        v["interface"] = ("supported", "The feature scale changed the success rate clearly (Wilson intervals "
                          "apart) for " + "; ".join(effects) + ".")
    elif n["n_points_succeeding"]:
        v["interface"] = ("contradicted", "No configuration's success rate changed clearly with the feature scale.")
    else:
        v["interface"] = ("not decided at this budget", "Nothing reached the criterion.")
    for key, labels in (("relu_memory", [tanh, *n["relu_labels"]]), ("gated", labels_of(n, gated=True)),
                        ("irnn", [role_label("irnn"), *labels_of(n, gated=True)])):
        word, why = v[key]
        v[key] = (word, why + budget_note(n, labels))
    return v


def labels_of(n: dict, gated: bool) -> list[str]:
    """The gated (or simple) configurations of the grid."""
    return [lab for lab in n["labels"] if (lab in ("GRU", "LSTM")) == gated]


def budget_note(n: dict, labels) -> str:
    """" Within the cap of N updates (censored runs: A k of m; ...)." for the configurations present."""
    parts = [f"{lab} {k} of {m}" for lab in labels if lab in n.get("censored", {})
             for k, m in [n["censored"][lab]]]
    if not parts:
        return ""
    return f" Within the cap of {n['cap']} updates per run (censored runs: {'; '.join(parts)})."


def _lag(x: float) -> str:
    return "no lag" if not np.isfinite(x) else f"lag {int(x)}"


def verdict_md(verdict: tuple[str, str]) -> str:
    """``("supported", why)`` -> ``"**supported**. why"``."""
    word, why = verdict
    return f"**{word}**. {why}"


def success_display(table: pd.DataFrame) -> pd.DataFrame:
    """The success table for the data download and the page."""
    t = table.copy()
    t["success rate [95% CI]"] = [fmt_ci(r, lo, hi) for r, lo, hi in zip(t["rate"], t["lo"], t["hi"])]
    return t


# ----------------------------------------------------------------------------- what the page glues


def page_values(out: dict) -> dict:
    """Every value the chapter's prose pastes, by glue key (strings are Markdown)."""
    n, b, p, v = out["numbers"], out["budget"], out["params"], out["verdicts"]
    scales = n["scales"]
    vals = {
        "ceiling": out["ceiling"]["test_acc"], "ceiling_epochs": out["ceiling"]["epochs"],
        "target_fraction": float(p["target_fraction"]), "target_acc": out["target_acc"],
        "config_list": "; ".join(f"**{lab}**" for lab in n["labels"]),
        "n_seeds": b["n_seeds"], "cap": b["max_updates"], "check_every": b["check_every"],
        "batch_used": b["batch_size"], "max_sequences": b["max_sequences"], "n_runs_lag": b["n_runs"],
        "n_censored": b["n_censored"], "n_success": b["n_success"], "n_diverged_lag": b["n_diverged"],
        "total_updates": b["total_updates"], "n_val_used": int(p["n_val"]), "n_test_used": int(p["n_test"]),
        "lr_used": f"`{float(p['learning_rate']):g}`", "reach_share": REACH_SHARE,
        "lag_list": ", ".join(str(int(x)) for x in p["lags"]),
        "scale_list": ", ".join(f"{s:g}" for s in scales), "scale_max": scales[0], "scale_min": scales[-1],
        "saturation": SATURATION, "lag_max": n["lag_max"], "lag_min": n["lag_min"],
        "memo_lag": int(p["memo_lag"]), "memo_n_train": int(p["memo_n_train"]),
        "stability_lag": int(p["stability_lag"]), "stability_scale": float(p["stability_scale"]),
        "stability_cap": int(p["stability_max_updates"]),
        "lr_list": ", ".join(f"{float(x):g}" for x in p["learning_rates"]),
        "clip_used": f"`global_clipnorm={float(p['clip_value']):g}`",
        "width_list": ", ".join(str(int(u)) for u in p["widths"]),
        "width_lr": f"`{float(p['width_learning_rate']):g}`",
    }
    for i, s in enumerate((scales[0], scales[-1])):
        tag = ("big", "small")[i]
        d = n["drive"].get(float(s), {})
        vals[f"drive_sat_{tag}"] = 100 * d.get("saturated_share", math.nan)
        vals[f"drive_ratio_{tag}"] = d.get("input_to_recurrent", math.nan)
        vals[f"drive_rms_{tag}"] = d.get("feature_rms", math.nan)
        vals[f"success_{tag}"] = n["success_by_scale"][s]
    for key, verdict in v.items():
        vals[f"verdict_{key}"] = verdict_md(verdict)
        vals[f"word_{key}"] = verdict[0]
    memo = n["memo"]
    for lab, tag in ((f"fixed set of {int(p['memo_n_train'])}", "fixed"), ("fresh sequences", "fresh")):
        vals[f"memo_train_{tag}"] = memo.get(lab, {}).get("train", math.nan)
        vals[f"memo_val_{tag}"] = memo.get(lab, {}).get("val", math.nan)
    vals["lr_fail_text"] = "; ".join(f"{lab}, {'no clipping' if mode == 'none' else 'clipped'}: {k} of {m}"
                                     for (lab, mode), (k, m) in n["lr_fail"].items())
    vals["width_fail_text"] = "; ".join(f"{lab} at {u} units: {k} of {m}"
                                        for (lab, u), (k, m) in n["width_fail"].items())
    return vals


def figure_data(out: dict) -> dict:
    """The tidy data behind each figure and table of the chapter, by its key (one row per plotted
    point or per run), for the page's "Data" downloads."""
    run_cols = ["label", "feature_scale", "lag", "seed", "outcome", "updates", "diverged", "test_acc_last_good"]
    stab_cols = ["label", "learning_rate", "clip_mode", "clip_threshold", "units", "seed", "outcome", "updates",
                 "diverged", "ever_above_chance"]
    return {"tbl-interface-drive": out["drive"], "fig-interface-scale": out["table"], "tbl-reach": out["table"],
            "fig-updates-to-success": out["lag"][run_cols], "fig-memorisation": memo_curves(out["memo"]),
            "fig-lr-stability": pd.concat([out["lr"].assign(sweep="learning rate"),
                                           out["width"].assign(sweep="width")])[["sweep", *stab_cols]]}


def all_runs(out: dict) -> pd.DataFrame:
    """Every run of the chapter, one row each, with the sweep it belongs to."""
    return pd.concat([out[k].assign(sweep=k) for k in ("lag", "memo", "lr", "width")], ignore_index=True)
