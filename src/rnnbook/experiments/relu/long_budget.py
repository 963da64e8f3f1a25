"""The long-budget answer of the relu chapter: the reference protocol's runs (``presets/reference.yaml``:
caps of 3,000 updates, lags 5 to 160, 6 to 10 seeds) read from the shipped records as far as
they are computed. It never trains: a run that is not recorded is *not computed yet*, and the
page says how far the computation has come.

What is read, in the order the reference computation runs it (:func:`rnnbook.experiments.relu.results`):

* the tuning runs, which choose each configuration's learning rate (all of them, or nothing
  else is read: the other runs' configurations depend on the rates);
* the interface ablation, if all its runs are recorded (else they are counted);
* the stability sweeps (learning rate and width), if all their runs are recorded (else counted);
* the lag sweep, lag by lag, with its ladder and top-ups, up to the first lag with a run not
  recorded (a *complete* lag holds every run the sweep would make there); the runs recorded at
  that first incomplete lag are counted, not used;
* once the lag sweep is complete, the long-lag clipping comparison (:mod:`.collapse`), if all its
  runs are recorded (else the runs of the arm under way are counted).

Each rung of the budget ladder (:mod:`.ladder`) decides the lag-sweep claims again from the
same runs. The claim about stability reads "not computed yet" until the stability sweeps are
recorded (their own cap, ``stability_max_updates``, is below the ladder's rungs).

Example:
    >>> points_text([0, 4, 6], 6)
    '0 → 4 → 6 of 6 [0.61, 1.00]'
"""
from __future__ import annotations

import pandas as pd

from rnnbook import collapse, steps, sweeps
from rnnbook.experiments import relu
from rnnbook.experiments.common import join_and, wilson_interval
from rnnbook.experiments.relu import claims as relu_claims, collapse as relu_collapse, ladder
from rnnbook.verdicts import Verdict

#: The word a claim's cell reads when the runs that decide it are not recorded yet.
NOT_COMPUTED = "not computed yet"
#: The reason such a claim's cell gives.
WHY_NOT_COMPUTED = "The runs that decide it are not recorded yet."
#: Claims decided by the stability sweeps, not by the lag sweep or the ablation.
STABILITY_CLAIMS = ("relu_unstable",)
#: Claims decided at the lags beyond the shortest: not computed while only one lag is complete.
LONGER_LAG_CLAIMS = ("relu_memory", "gated")


class _Missing(Exception):
    """A grid whose runs are not all recorded (``desc``: the sweep's name)."""

    def __init__(self, lag: int, found: int, planned: int, desc: str = ""):
        super().__init__(lag)
        self.lag, self.found, self.planned, self.desc = lag, found, planned, desc


def _count(configs, seeds) -> tuple[int, int]:
    """``(recorded, planned)`` runs of a grid."""
    runs = sweeps.with_seeds(configs, seeds)
    return sum(relu._cached_record(c) is not None for c in runs), len(runs)


def _recorded(configs, labels, seeds, desc, interfaces=None) -> pd.DataFrame:
    """:func:`relu.run` when every run of the grid is recorded; else :class:`_Missing` (nothing trains)."""
    found, planned = _count(configs, seeds)
    if found < planned:
        raise _Missing(int(configs[0].lag), found, planned, desc)
    return relu.run(configs, labels, seeds, desc, interfaces)


def read(params: dict, target_acc: float) -> dict:
    """The reference protocol's recorded runs (``params``: the chapter's parameters with the
    reference preset applied). Keys: ``params``, ``rates`` (None until the tuning is recorded),
    ``lag`` (the complete lags' runs), ``ablation`` (empty until complete), ``lr`` and ``width``
    (the stability sweeps, empty until both are complete), ``coverage``."""
    p = relu._pick(params)
    empty = pd.DataFrame(columns=["label", "interface", "lag", "success", "outcome", "updates", "diverged", "record"])
    out = {"params": p, "target_acc": target_acc, "rates": None, "lag": empty, "ablation": empty,
           "lr": empty, "width": empty,
           "coverage": {"tuning": False, "lags_done": [], "lag_next": None, "next_found": 0, "next_planned": 0,
                        "ablation": False, "ablation_found": 0, "ablation_planned": 0,
                        "stability": False, "stability_found": 0, "stability_planned": 0,
                        "collapse": False, "collapse_found": 0, "collapse_planned": 0, "collapse_arm": ""}}
    cov = out["coverage"]
    try:
        configs, labels, levels = relu.tuning_grid(p, target_acc)
        out["rates"] = relu.choose_rates(_recorded(configs, labels, p["tuning_seeds"],
                                                   "relu reference: learning rates", levels))[0]
    except _Missing:
        return out
    cov["tuning"] = True
    done: list[pd.DataFrame] = []

    def runner(configs, labels, seeds, desc, interfaces=None):
        runs = _recorded(configs, labels, seeds, desc, interfaces)
        done.append(runs)
        return runs

    try:
        relu.lag_sweep(p, target_acc, out["rates"], runner)
    except _Missing as missing:  # the lag's runs read before (its first seeds, when top-ups are missing) count too
        before = sum(len(d) for d in done if len(d) and int(d["lag"].iloc[0]) == missing.lag)
        cov["lag_next"], cov["next_found"], cov["next_planned"] = missing.lag, before + missing.found, before + missing.planned
        done = [d for d in done if len(d) and int(d["lag"].iloc[0]) < missing.lag]
    if done:
        out["lag"] = pd.concat(done, ignore_index=True)
    cov["lags_done"] = sorted({int(x) for x in out["lag"]["lag"]})
    try:
        configs, labels, levels = relu.ablation_grid(p, target_acc, out["rates"])
        out["ablation"] = _recorded(configs, labels, p["ablation_seeds"], "relu reference: ablation", levels)
        cov["ablation"] = True
    except _Missing as missing:
        cov["ablation_found"], cov["ablation_planned"] = missing.found, missing.planned
    grids = {"lr": relu.lr_grid(p, target_acc), "width": relu.width_grid(p, target_acc)}
    counts = [_count(configs, p["seeds"]) for configs, _ in grids.values()]
    cov["stability_found"], cov["stability_planned"] = (sum(c[i] for c in counts) for i in (0, 1))
    if cov["stability_found"] == cov["stability_planned"]:
        for key, (configs, labels) in grids.items():
            out[key] = relu.run(configs, labels, p["seeds"], f"relu reference: {key} sweep")
        cov["stability"] = True
    if cov["lag_next"] is None and len(out["lag"]):  # the long lags are known once every ladder has ended
        try:
            out["collapse"] = relu_collapse.study(p, out["lag"], relu.collapse_grid(p, target_acc, out["rates"]),
                                                  _recorded, relu.BASELINE, steps.stored_steps)
            cov["collapse"] = True
        except _Missing as missing:
            cov["collapse_found"], cov["collapse_planned"] = missing.found, missing.planned
            cov["collapse_arm"] = ("clipped" if "global_clipnorm" in missing.desc else "step control"
                                   if "control" in missing.desc else "unclipped")
    return out


def results(params: dict, target_acc: float) -> dict:
    """:func:`read` plus, when some lag is complete, the success ``table``, the budget ``ladder``
    (claims and reach at every rung) and ``points`` (successes per point at every rung)."""
    out = read(params, target_acc)
    out["ready"] = bool(len(out["lag"]))
    if not out["ready"]:
        return out
    p, lag = out["params"], out["lag"]
    out["table"] = relu.success_table(lag)
    nothing = lag.iloc[0:0]
    runs = {"lag": lag, "lr": out["lr"] if len(out["lr"]) else nothing,
            "width": out["width"] if len(out["width"]) else nothing, "ablation": out["ablation"]}
    present = {*lag["label"], *runs["lr"]["label"], *runs["width"]["label"]}  # the width sweep's TF1 cell too
    out["ladder"] = ladder.ladder(runs, p, relu_claims.roles(lag["label"], present), relu.BASELINE,
                                  relu_claims.claim_verdicts, relu.success_table, relu.reach)
    pending = out["ladder"]["verdicts"]["claim"].isin(
        (() if out["coverage"]["stability"] else STABILITY_CLAIMS)
        + (LONGER_LAG_CLAIMS if len(out["coverage"]["lags_done"]) < 2 else ()))
    out["ladder"]["verdicts"].loc[pending, ["verdict", "p", "why", "test"]] = [NOT_COMPUTED, float("nan"),
                                                                             WHY_NOT_COMPUTED, ""]
    out["points"] = points_table(lag, ladder.rungs(p))
    return out


def answer(view: dict) -> dict | None:
    """The long-budget answer at its top cap, as the recommendations and the front page use it
    (None while no lag is complete): ``cap``; ``caps`` (claim -> the cap of the runs deciding it:
    the stability sweeps have their own); ``verdicts`` (claim -> :class:`~rnnbook.verdicts.Verdict`,
    the word :data:`NOT_COMPUTED` where the runs that decide it are not recorded); the reach
    numbers of :func:`rnnbook.experiments.relu.reach_numbers`; ``table`` and ``lag`` (the complete
    lags' runs); ``budget`` (:func:`rnnbook.experiments.relu.budget` of those runs); ``lags_done``;
    ``complete`` (every lag ladder has ended, so no reach is cut short by the computation)."""
    if view is None or not view.get("ready"):
        return None
    p, v = view["params"], view["ladder"]["verdicts"]
    cap = int(v["cap"].max())
    top = v[v["cap"] == cap]
    verdicts = {row.claim: Verdict(row.verdict, row.why, row.test, float(row.p)) for row in top.itertuples()}
    cov = view["coverage"]
    caps = {k: min(cap, int(p["stability_max_updates"])) if k in STABILITY_CLAIMS else cap for k in verdicts}
    return {"cap": cap, "caps": caps, "verdicts": verdicts, "table": view["table"], "lag": view["lag"],
            "budget": relu.budget(view["lag"], p), "lags_done": list(cov["lags_done"]),
            "complete": cov["lag_next"] is None, "top_up_seeds": len(p["top_up_seeds"]),
            **relu.reach_numbers(view["table"], view["lag"], p["interfaces"])}


def reader(reference_preset: dict):
    """``read(params, target)``: :func:`results` under ``reference_preset`` (the ``reference``
    preset's values over the chapter's parameters), for :func:`rnnbook.experiments.relu.results`."""
    return lambda params, target_acc: results({**params, **reference_preset}, target_acc)


def points_text(successes: list[int], seeds: int) -> str:
    """One point's successes at each rung, lowest cap first, and the Wilson 95 % interval of the
    share at the top cap: ``"0 → 4 → 6 of 6 [0.61, 1.00]"``."""
    _, lo, hi = wilson_interval(int(successes[-1]), int(seeds))
    return " → ".join(str(int(k)) for k in successes) + f" of {int(seeds)} [{abs(lo):.2f}, {hi:.2f}]"


def points_table(lag: pd.DataFrame, caps: list[int]) -> pd.DataFrame:
    """``tbl-reference-points``: one row per configuration and interface level, one column per
    lag, each cell the successes at every cap of ``caps`` (:func:`points_text`)."""
    at = {cap: ladder.runs_at_cap(lag, cap) for cap in caps}
    rows = []
    for (label, level), part in lag.groupby(["label", "interface"], sort=False):
        row = {"configuration": label, "interface": relu.parse_interface(level).label}
        for lag_, runs in part.groupby("lag", sort=True):
            idx = runs.index
            row[f"lag {int(lag_)}"] = points_text([int(at[c].loc[idx, "success"].sum()) for c in caps], len(runs))
        rows.append(row)
    table = pd.DataFrame(rows)
    lag_cols = sorted((c for c in table.columns if c.startswith("lag ")), key=lambda c: int(c.split()[1]))
    return table[["configuration", "interface", *lag_cols]].fillna("ladder stopped")


def coverage_text(out: dict, lags_planned) -> str:
    """One Markdown sentence: how far the reference computation has come."""
    cov, planned = out["coverage"], [int(x) for x in lags_planned]
    if not cov["tuning"]:
        return "The reference computation has not recorded its tuning runs yet, so nothing of it can be read."
    done = cov["lags_done"]
    stopped = cov["lag_next"] is None
    if stopped and done:
        lag_part = (f"its lag sweep is complete ({_lags(done)}"
                    + (f"; every ladder stopped before {_lags([x for x in planned if x > max(done)][:1])}"
                       if max(done) < max(planned) else "") + ")")
    else:
        lag_part = (f"its lag sweep is complete at {_lags(done)}" if done else "no lag of its sweep is complete")
        later = [x for x in planned if x > cov["lag_next"]]
        lag_part += (f"; at lag {cov['lag_next']}, {cov['next_found']} of the {cov['next_planned']} runs are recorded"
                     + (f" and {_lags(later)} {'are' if len(later) > 1 else 'is'} not computed yet" if later else ""))
    abl = ("its interface ablation is recorded" if cov["ablation"] else
           f"of its interface ablation, {cov['ablation_found']} of the {cov['ablation_planned']} runs are recorded"
           if cov["ablation_found"] else "its interface ablation is not computed yet")
    stab = ("its stability sweeps are recorded" if cov["stability"] else
            f"of its stability sweeps, {cov['stability_found']} of the {cov['stability_planned']} runs are recorded"
            if cov["stability_found"] else "its stability sweeps are not computed yet")
    clip = ("its long-lag clipping comparison is recorded" if cov["collapse"] else
            f"of its long-lag clipping comparison, {cov['collapse_found']} of the {cov['collapse_planned']} "
            f"{cov['collapse_arm']} runs are recorded" if cov["collapse_planned"] else
            "its long-lag clipping comparison waits for the lag sweep")
    done_all = stopped and cov["ablation"] and cov["stability"] and cov["collapse"]
    return f"The reference computation is {'complete' if done_all else 'not complete'}: " \
           f"{lag_part}; {abl}; {stab}; {clip}."


def _lags(xs) -> str:
    """``"lag 5"``, ``"lags 5 and 10"``, ``"lags 5, 10 and 20"``."""
    xs = [str(int(x)) for x in xs]
    return f"lags {join_and(xs)}" if len(xs) > 1 else f"lag {xs[0]}"


def provenance(out: dict) -> dict:
    """What the page says about the records read: runs, run-hours, commits, dates, CPU."""
    records = [r for frame in (out["lag"], out["ablation"]) for r in frame["record"]]
    prov = [r.get("provenance") or {} for r in records]
    return {"runs": len(records), "hours": sum(float(x.get("wall_time") or 0.0) for x in prov) / 3600,
            "commits": sorted({str(x.get("commit", "?"))[:7] for x in prov}),
            "dates": sorted({str(x.get("date", "?")) for x in prov}), "cpus": sorted({str(x.get("cpu", "?")) for x in prov})}


def page(view: dict, own: dict) -> dict:
    """What the chapter's long-budget section shows: ``values`` (glue keys), ``ladder`` (the
    reference's budget ladder when some lag of it is complete, else this build's own runs'),
    ``points`` (``tbl-reference-points``) and ``source`` (``"reference"`` or ``"build"``)."""
    p = view["params"]
    shown = view["ladder"] if view["ready"] else own["ladder"]
    prov = provenance(view)
    if view["ready"]:
        points = view["points"]
        source = (f"They are read from {prov['runs']} shipped runs ({prov['hours']:.1f} run-hours on "
                  f"{', '.join(prov['cpus'])}, commit {', '.join(prov['commits'])}, {', '.join(prov['dates'])}).")
    else:
        points = pd.DataFrame([{"configuration": "none", "interface": "n/a",
                                "lags": "no reference run is recorded for these parameters"}])
        source = ("No reference run is recorded for this build's parameters, so the ladder below reads this "
                  "build's own runs.")
    caps = list(dict.fromkeys(int(c) for c in shown["reach"]["cap"])) if len(shown["reach"]) else []
    read_runs = [r for frame in (view["lag"], view["ablation"]) for r in frame["record"]]
    values = {
        "ref_cap": int(p["max_updates"]), "ref_check_every": int(p["check_every"]),
        "ref_stability_cap": int(p["stability_max_updates"]),
        "ref_lags": ", ".join(str(int(x)) for x in p["lags"]),
        "ref_seeds": len(p["seeds"]), "ref_top_up": len(p["top_up_seeds"]),
        "ref_coverage": coverage_text(view, p["lags"]), "ref_source": source,
        "ladder_source": "the reference runs" if view["ready"] else "this build's own runs",
        "budget_rungs": ", ".join(f"{c:,}" for c in caps) or "none",
        "moved_claims": "; ".join(relu_claims.CLAIMS[k] for k in shown["moved"]) or "none",
        "ref_collapses": f"{sum(collapse.collapse(r).collapsed for r in read_runs)} of {len(read_runs)}",
        "ref_tuning_lag": int(p["tuning_lag"]),
        "ref_tuning_rates": ", ".join(f"{float(r):g}" for r in p["tuning_learning_rates"]),
        "ref_chosen_rates": ("; ".join(f"{lab} {float(r):g}" for lab, r in view["rates"].items())
                             if view.get("rates") else "not recorded yet"),
        "ref_rate_edges": rate_edges(view.get("rates") or {}, p["tuning_learning_rates"]),
    }
    return {"values": values, "ladder": shown, "points": points, "source": "reference" if view["ready"] else "build"}


def rate_edges(rates: dict, grid) -> str:
    """A sentence naming the configurations whose chosen rate (``rates``: label -> rate) lies at
    an end of the tuning ``grid``, where a rate beyond the grid might have done better.

    Example:
        >>> rate_edges({"GRU": 0.0003, "LSTM": 0.001}, [0.0003, 0.001, 0.003])
        'At the smallest rate of the grid: GRU; a rate beyond the grid was not tried for them.'
    """
    grid = sorted(float(r) for r in grid)
    if not rates:
        return "No tuning run is recorded yet."
    if len(grid) < 2:
        return "The grid has one rate, so no other rate was tried."
    ends = {"smallest": [lab for lab, r in rates.items() if float(r) == grid[0]],
            "largest": [lab for lab, r in rates.items() if float(r) == grid[-1]]}
    found = [(end, labs) for end, labs in ends.items() if labs]
    if not found:
        return "Every chosen rate lies inside the grid."
    text = "; ".join(f"at the {end} rate of the grid: {', '.join(labs)}" for end, labs in found)
    return text[0].upper() + text[1:] + "; a rate beyond the grid was not tried for them."


#: What :func:`front_values` writes, each as ``long_<key>``.
FRONT_KEYS = ("coverage", "cap", "verdicts", "reach")


def front_values(view: dict | None) -> dict[str, str]:
    """Plain sentences for the front page (``long_*``; the recommendations chapter glues them as
    ``front_long_*``): how far the reference computation has come, every claim's verdict at the
    top cap, and each configuration's reach there (``view`` None: a build that did not read it)."""
    if view is None:
        return {f"long_{k}": "not read by this build" for k in FRONT_KEYS}
    cap = f"{int(view['params']['max_updates']):,}"
    if not view.get("ready"):
        none = "no reference run is recorded for these parameters"
        return {"long_coverage": coverage_text(view, view["params"]["lags"]), "long_cap": cap,
                "long_verdicts": none, "long_reach": none}
    top = max(int(c) for c in view["ladder"]["verdicts"]["cap"])
    at_top = view["ladder"]["verdicts"][view["ladder"]["verdicts"]["cap"] == top]
    reach = view["ladder"]["reach"][view["ladder"]["reach"]["cap"] == top]
    levels = []
    for level, part in reach.groupby("interface", sort=False):
        cells = [f"{lab} {'none' if r != r else int(r)}" for lab, r in zip(part["label"], part["reach"])]
        levels.append(f"{relu.parse_interface(level).label}: {', '.join(cells)}")
    return {"long_coverage": coverage_text(view, view["params"]["lags"]), "long_cap": cap,
            "long_verdicts": "; ".join(f"{relu_claims.CLAIMS[k]}: {w}" for k, w in zip(at_top["claim"], at_top["verdict"])),
            "long_reach": "; ".join(levels)}
