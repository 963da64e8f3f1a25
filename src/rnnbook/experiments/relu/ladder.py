"""The budget ladder of the relu chapter: every claim's verdict and every configuration's reach
read at lower caps from the same runs (:func:`rnnbook.reference.at_cap`), so a reader sees
whether the answer moves with the budget.

A run trained to the top cap gives its outcome at each lower cap: a success by cap ``c`` when a
check at or before ``c`` met the target, censored at ``c`` otherwise. The lag ladder is not
replayed: at a lower cap every run of the sweep is read, including lags the ladder would not
have reached at that cap (more evidence, never less).

Example:
    >>> rungs({"budget_caps": [200, 1000, 3000], "max_updates": 1000})
    [200, 1000]
"""
from __future__ import annotations

import pandas as pd

from rnnbook import reference


def rungs(p: dict) -> list[int]:
    """The caps of the ladder: ``budget_caps`` at or below the sweep's cap, and the cap itself."""
    top = int(p["max_updates"])
    return sorted({int(c) for c in p["budget_caps"] if int(c) <= top} | {top})


def runs_at_cap(runs: pd.DataFrame, cap: int) -> pd.DataFrame:
    """``runs`` (one row per run with its ``record``) as they would have ended with ``cap`` updates."""
    if runs.empty:
        return runs
    records = [reference.at_cap(r, cap) if r.get("check_updates") is not None else r for r in runs["record"]]
    out = runs.copy()
    out["record"] = records
    out["outcome"] = [r.get("outcome", "failed") for r in records]
    out["success"] = out["outcome"] == "success"
    out["censored"] = out["outcome"] == "censored"
    out["diverged"] = out["outcome"] == "diverged"
    out["updates"] = [int(r.get("updates") or 0) for r in records]
    return out


def ladder(out: dict, p: dict, roles: dict, baseline: str, decide, success_table, reach) -> dict:
    """Per rung: the claims' verdicts (``verdicts``: claim x cap table) and the reach of every
    configuration at every interface level (``reach``: one row per configuration, level and cap).
    ``decide``, ``success_table`` and ``reach`` are the chapter's own rules."""
    rows, reach_rows = [], []
    for cap in rungs(p):
        lag = runs_at_cap(out["lag"], cap)
        v = decide(lag, runs_at_cap(out["lr"], cap), runs_at_cap(out["width"], cap), roles, baseline,
                   runs_at_cap(out["ablation"], cap))
        for key, verdict in v.items():
            rows.append({"claim": key, "cap": cap, "verdict": verdict.word, "p": verdict.p, "why": verdict.why,
                         "test": verdict.test})
        table = success_table(lag)
        for (label, level), _ in table.groupby(["label", "interface"], sort=False):
            reach_rows.append({"label": label, "interface": level, "cap": cap, "reach": reach(table, label, level),
                               "successes": int(lag[(lag["label"] == label) & (lag["interface"] == level)]["success"].sum())})
    verdicts = pd.DataFrame(rows)
    return {"verdicts": verdicts, "reach": pd.DataFrame(reach_rows),
            "moved": sorted({c for c, part in verdicts.groupby("claim") if part["verdict"].nunique() > 1})}


def verdict_table(verdicts: pd.DataFrame, claims: dict) -> pd.DataFrame:
    """``tbl-verdict-by-budget``: one row per claim, one column per cap, the verdict in each cell,
    and the rule's reason at the top cap (the evidence behind the last column)."""
    wide = verdicts.pivot(index="claim", columns="cap", values="verdict")
    wide = wide.reindex([k for k in claims if k in wide.index])
    top = verdicts[verdicts["cap"] == verdicts["cap"].max()].set_index("claim")
    wide.columns = [f"cap {int(c):,} updates" for c in wide.columns]
    wide.insert(0, "claim", [claims[k] for k in wide.index])
    if "why" in top:
        wide["why, at the top cap"] = [top["why"].get(k, "") for k in wide.index]
    return wide.reset_index(drop=True)


def fig_reach_by_budget(reach: pd.DataFrame, level_label, baseline: str):
    """``fig-reach-by-budget``: each configuration's reach (log lag) against the cap, one panel per
    interface level; a configuration with no lag reached sits on the bottom line ("none"). The
    lines are offset by a few per cent of a decade each, so equal reaches do not hide each other."""
    import matplotlib.pyplot as plt
    import numpy as np

    from rnnbook import plots

    plots.set_style()
    levels = list(dict.fromkeys(reach["interface"]))
    labels = list(dict.fromkeys(reach["label"]))
    fig, axes = plt.subplots(1, len(levels), figsize=(3.4 * len(levels) + 1.8, 3.6), sharey=True, squeeze=False)
    finite = sorted({float(x) for x in reach["reach"] if np.isfinite(x)})
    floor = (finite[0] / 2) if finite else 1.0
    for ax, level in zip(axes[0], levels):
        part = reach[reach["interface"] == level]
        for label, d in part.groupby("label", sort=False):
            style = plots.config_style(label)
            dodge = 1.06 ** (labels.index(label) - (len(labels) - 1) / 2)
            ax.plot(d["cap"], d["reach"].fillna(floor) * dodge, marker=style["marker"], color=style["color"],
                    label=label, lw=1.4)
        ax.set_xscale("log")
        ax.set_yscale("log")
        caps = sorted(part["cap"].unique())
        ax.set_xticks(caps)
        ax.set_xticklabels([f"{int(c):,}" for c in caps])
        ax.set_yticks([floor, *finite])
        ax.set_yticklabels(["none", *[f"{int(x)}" for x in finite]])
        ax.minorticks_off()
        ax.set_ylim(floor / 1.4, (finite[-1] if finite else floor) * 1.4)
        ax.axhline(floor, ls=":", lw=0.8, color="0.5")
        ax.set_title(level_label(level), fontsize=9)
        ax.set_xlabel("cap (updates)")
    axes[0][0].set_ylabel("reach (largest lag learned)")
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig
