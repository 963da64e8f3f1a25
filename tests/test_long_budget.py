"""The relu chapter's long-budget answer (rnnbook.experiments.relu.long_budget): it reads the
reference protocol's runs as far as they are recorded, never trains, says how far the
computation has come, and falls back to the build's own runs when nothing is recorded."""
from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest

from rnnbook import reference, steps, sweeps
from rnnbook.book.parameters_cell import declared_parameters
from rnnbook.experiments import relu
from rnnbook.experiments.relu import long_budget as LB

from conftest import ROOT

CAPS = [50, 100]


def _params(**changes) -> dict:
    p = declared_parameters(ROOT / "chapters" / "relu.md")
    p.update(rnn_configs=["tanh-orthogonal", "relu-orthogonal"], lags=[5, 10, 20], interfaces=["keras", "he"],
             seeds=[0, 1], top_up_seeds=[2], tuning_learning_rates=[0.001], tuning_seeds=[100],
             ablation_interfaces=["keras", "he"], ablation_seeds=[0, 1], ablation_lag=10,
             max_updates=100, check_every=25, budget_caps=CAPS)
    p.update(changes)
    return p


def _record(success_at: int | None) -> dict:
    checks = [25, 50, 75, 100]
    val = [0.95 if success_at is not None and u >= success_at else 0.1 for u in checks]
    return {"outcome": "success" if success_at else "censored", "updates": success_at or 100,
            "check_updates": checks, "check_val_acc": val, "config": {"target_acc": 0.9}, "chance": 0.1,
            "check_grad_norm_median": [1.0] * 4, "check_grad_norm_max": [2.0] * 4,
            "provenance": {"commit": "abc1234def", "wall_time": 36.0, "cpu": "test CPU", "date": "2026-12-05"}}


def _outcome(config) -> int | None:
    """The fake store's rule: tanh succeeds at update 75 everywhere; ReLU at 25 at lag 5, never beyond."""
    if config.activation == "tanh":
        return 75
    return 25 if config.lag == 5 else None


@pytest.fixture
def store(monkeypatch, tmp_path):
    """A fake store holding the runs whose config ``recorded(config)`` accepts; training raises;
    step measurements are planted (every update of norm 1) and kept in ``tmp_path``."""
    state = {"recorded": lambda c: True, "measured": []}
    monkeypatch.setenv(reference.STORE_ENV, str(tmp_path))
    monkeypatch.setenv(reference.MODE_ENV, "write")  # as the reference computation measures them
    monkeypatch.setattr(steps, "measure_steps", lambda c: state["measured"].append(c) or
                        {"update_norm": [1.0, 1.0], "clip_share": [0.5, 0.5]})

    def cached(config):
        return _record(_outcome(config)) if state["recorded"](config) else None

    def fake_run(configs, labels, seeds, desc, interfaces=None):
        rows = []
        for c, lab, key in zip(configs, labels, interfaces or ["keras"] * len(configs)):
            for s in seeds:
                rec = _record(_outcome(dataclasses.replace(c, seed=int(s))))
                rows.append({"label": lab, "interface": key, "lag": c.lag, "seed": int(s), "units": c.units,
                             "cell": c.cell, "wall_time": 1.0,
                             "clip_mode": c.clip_mode, "learning_rate": c.learning_rate, "outcome": rec["outcome"],
                             "success": rec["outcome"] == "success", "updates": rec["updates"],
                             "diverged": False, "record": rec})
        return pd.DataFrame(rows)

    def no_training(*a, **k):
        raise AssertionError("the long-budget answer trained a run")

    monkeypatch.setattr(relu, "_cached_record", cached)
    monkeypatch.setattr(relu, "run", fake_run)
    monkeypatch.setattr(sweeps, "train", no_training)
    monkeypatch.setattr(sweeps, "run_sweep", no_training)
    return state


def test_it_reads_complete_lags_and_counts_the_first_incomplete_one(store):
    store["recorded"] = lambda c: c.lag != 20 or c.seed == 0
    out = LB.results(_params(), 0.9)
    cov = out["coverage"]
    assert out["ready"] and cov["tuning"] and cov["lags_done"] == [5, 10]
    # ReLU's ladders stopped at lag 10 (no success), so lag 20 plans tanh's two levels x 2 seeds
    assert (cov["lag_next"], cov["next_found"], cov["next_planned"]) == (20, 2, 4)
    assert set(out["lag"]["lag"]) == {5, 10}
    assert LB.NOT_COMPUTED not in set(out["ladder"]["verdicts"].query("claim == 'relu_memory'")["verdict"])
    store["recorded"] = lambda c: c.lag != 20 or c.seed == 0
    v = LB.results(_params(lags=[5, 20, 40]), 0.9)["ladder"]["verdicts"]  # one lag complete: nothing beyond the shortest yet
    assert set(v.loc[v["claim"].isin(["relu_memory", "gated"]), "verdict"]) == {LB.NOT_COMPUTED}
    text = LB.coverage_text(out, [5, 10, 20])
    assert "not complete" in text and "complete at lags 5 and 10" in text and "2 of the 4 runs" in text


def test_missing_top_ups_count_with_the_first_seeds_of_their_lag(store, monkeypatch):
    # ReLU succeeds with seed 0 only: its lag-5 points are mixed, and their top-up (seed 2) is not recorded
    monkeypatch.setitem(globals(), "_outcome", lambda c: 75 if c.activation == "tanh" or c.seed == 0 else None)
    store["recorded"] = lambda c: c.seed != 2
    cov = LB.read(_params(), 0.9)["coverage"]
    assert cov["lag_next"] == 5 and (cov["next_found"], cov["next_planned"]) == (8, 10)


def test_the_points_table_shows_successes_at_every_cap(store):
    out = LB.results(_params(), 0.9)
    row = out["points"].set_index(["configuration", "interface"]).loc[("tanh + orthogonal", "Keras default (Glorot)")]
    assert row["lag 5"] == "0 → 2 of 2 [0.34, 1.00]"  # success at update 75: censored at cap 50, a success by 100
    relu_row = out["points"].set_index(["configuration", "interface"]).loc[("ReLU + orthogonal", "He-uniform")]
    assert relu_row["lag 5"] == "2 → 2 of 2 [0.34, 1.00]" and relu_row["lag 20"] == "ladder stopped"


def test_a_complete_computation_says_so_and_decides_the_claims_at_every_cap(store):
    out = LB.results(_params(seeds=[0, 1, 2, 3, 4, 5], top_up_seeds=[6]), 0.9)
    assert out["coverage"]["lag_next"] is None and out["coverage"]["ablation"]
    assert LB.coverage_text(out, [5, 10, 20]).startswith("The reference computation is complete")
    v = out["ladder"]["verdicts"]
    assert sorted(v["cap"].unique()) == CAPS
    # the stability sweeps are recorded too: their claim is decided (by the same rule as the chapter's)
    assert out["coverage"]["stability"] and LB.NOT_COMPUTED not in set(v.loc[v["claim"] == "relu_unstable", "verdict"])
    assert len(out["lr"]) and len(out["width"])
    # both of the claim's points: the unclipped learning-rate sweep and the width sweep (its TF1 cell)
    assert set(v.loc[v["claim"] == "relu_unstable", "test"]) == {"Fisher's exact test, Holm-adjusted over 2 points"}
    # at lag 5 ReLU leads 6 to 0 by cap 50 and the two tie by cap 100: the short-lag claim moves
    short = v[v["claim"] == "relu_short"].set_index("cap")["verdict"]
    assert short[50] != short[100] and "relu_short" in out["ladder"]["moved"]


def test_without_the_tuning_runs_nothing_is_read_and_the_page_falls_back(store):
    store["recorded"] = lambda c: c.seed not in (100,)
    out = LB.results(_params(), 0.9)
    assert not out["ready"] and not out["coverage"]["tuning"]
    own = {"ladder": {"verdicts": pd.DataFrame(columns=["claim", "cap", "verdict", "p"]),
                      "reach": pd.DataFrame({"cap": [200]}), "moved": []}}
    shown = LB.page(out, own)
    assert shown["source"] == "build" and shown["ladder"] is own["ladder"]
    assert shown["values"]["budget_rungs"] == "200"
    assert "tuning runs" in shown["values"]["ref_coverage"]
    assert "no reference run" in shown["points"].iloc[0]["lags"]


def test_a_missing_ablation_leaves_the_lag_sweep_read(store):
    store["recorded"] = lambda c: c.lag != 40
    out = LB.read(_params(ablation_lag=40), 0.9)
    assert out["coverage"]["lags_done"] == [5, 10, 20] and not out["coverage"]["ablation"]
    assert "ablation is not computed yet" in LB.coverage_text(out, [5, 10, 20])
    store["recorded"] = lambda c: c.lag != 40 or c.seed == 0
    out = LB.read(_params(ablation_lag=40), 0.9)
    assert "of its interface ablation, 2 of the 4 runs are recorded" in LB.coverage_text(out, [5, 10, 20])


def test_the_page_names_the_records_it_read(store):
    shown = LB.page(LB.results(_params(), 0.9), {})
    assert shown["source"] == "reference"
    assert "test CPU" in shown["values"]["ref_source"] and "abc1234" in shown["values"]["ref_source"]
    assert shown["values"]["ladder_source"] == "the reference runs"


def test_lag_phrases():
    assert LB._lags([5]) == "lag 5" and LB._lags([5, 10]) == "lags 5 and 10"
    assert LB._lags([5, 10, 20]) == "lags 5, 10 and 20"


@pytest.mark.parametrize("own, expected", [(["own run"], [2, 2]), ([], [0, 4])])
def test_half_the_rerun_sample_comes_from_the_long_budget_runs(monkeypatch, own, expected):
    from rnnbook import reference

    calls = []
    monkeypatch.setattr(relu, "shipped_rows", lambda out, sweeps_=None: ["long run"] if sweeps_ else own)

    def fake_sample(rows, k, updates, seed, trainer, store=""):
        calls.append(k)
        return pd.DataFrame({"configuration": [rows[0]] * k if k else []})

    monkeypatch.setattr(reference, "rerun_sample", fake_sample)
    table = relu.rerun({"long": {"ready": True}}, {"seeds": [0], "lags": [5], "rerun_samples": 4, "rerun_updates": 50})
    assert calls == [n for n in expected if n]
    assert list(table["evidence"]) == ["this build's sweeps"] * expected[0] + ["the reference protocol"] * expected[1]


def test_the_front_page_sentences_name_the_top_cap_verdicts_and_reach(store):
    out = LB.results(_params(), 0.9)
    front = LB.front_values(out)
    assert front["long_cap"] == "100" and "complete" in front["long_coverage"]
    assert "The CNN-to-RNN interface decides whether a configuration learns: " in front["long_verdicts"]
    # tanh learned every lag; ReLU only lag 5 (its ladder stopped at 10)
    assert "tanh + orthogonal 20" in front["long_reach"] and "ReLU + orthogonal 5" in front["long_reach"]
    store["recorded"] = lambda c: False
    empty = LB.front_values(LB.results(_params(), 0.9))
    assert empty["long_cap"] == "100" and empty["long_reach"].startswith("no reference run")
    unread = LB.front_values(None)  # a build that did not read the reference records
    assert set(unread) == {f"long_{k}" for k in LB.FRONT_KEYS} and set(unread.values()) == {"not read by this build"}


def test_fig_reach_by_budget_draws_a_line_per_configuration_and_labels_none():
    from rnnbook.experiments.relu import ladder

    reach = pd.DataFrame([{"label": lab, "interface": lvl, "cap": cap, "reach": r}
                          for lvl in ("keras", "he") for cap in (200, 1000)
                          for lab, r in (("tanh + orthogonal", 5.0), ("GRU", float("nan") if cap == 200 else 5.0))])
    fig = ladder.fig_reach_by_budget(reach, str, "keras")
    assert len(fig.axes) == 2
    fig.canvas.draw()
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["none", "5"]
    for ax in fig.axes:
        assert len([ln for ln in ax.get_lines() if ln.get_marker() not in (None, "None", "")]) == 2
        ys = [tuple(ln.get_ydata()) for ln in ax.get_lines()[:2]]
        assert ys[0] != ys[1]  # equal reaches are offset, not hidden


def test_the_rerun_table_drops_the_lag_of_tasks_without_one(monkeypatch):
    from rnnbook import reference
    from rnnbook.experiments import reruns

    monkeypatch.setattr(reference, "rerun_sample", lambda rows, k, updates, seed, trainer, store="": pd.DataFrame(
        {"configuration": ["a"] * k, "T": [40] * k, "lag": [None] * k}))
    assert list(reruns.table([("runs", ["x"])], 2, 50, 0, "s").columns) == ["configuration", "T", "evidence"]
    monkeypatch.setattr(reference, "rerun_sample", lambda rows, k, updates, seed, trainer, store="": pd.DataFrame(
        {"configuration": ["a"] * k, "T": [11] * k, "lag": [10] * k}))
    assert "lag" in reruns.table([("runs", ["x"])], 2, 50, 0, "s").columns


def test_the_verdict_table_gives_the_top_caps_reason(store):
    from rnnbook.experiments.relu import claims as relu_claims, ladder

    store["recorded"] = lambda c: c.optimizer != "sgd"  # the stability sweeps not recorded
    out = LB.results(_params(), 0.9)
    table = ladder.verdict_table(out["ladder"]["verdicts"], relu_claims.CLAIMS)
    assert list(table.columns) == ["claim", "cap 50 updates", "cap 100 updates", "why, at the top cap"]
    row = table.set_index("claim").loc[relu_claims.CLAIMS["relu_unstable"]]
    assert row["cap 100 updates"] == LB.NOT_COMPUTED and row["why, at the top cap"] == LB.WHY_NOT_COMPUTED


def test_the_page_counts_collapses_among_the_runs_read(store):
    out = LB.results(_params(), 0.9)
    first = out["lag"]["record"].iloc[0]
    first.update(check_val_acc=[0.95, 0.95, 0.1, 0.1], check_grad_norm_max=[1.0, 1.0, 50.0, 1.0],
                 config={"target_acc": 0.99, "n_val": 2000})  # learned, then lost it
    n = len(out["lag"]) + len(out["ablation"])
    assert LB.page(out, {})["values"]["ref_collapses"] == f"1 of {n}"


def test_the_stability_claim_waits_for_every_stability_run(store):
    store["recorded"] = lambda c: not (c.optimizer == "sgd" and c.learning_rate == 1.0 and c.seed == 1)
    out = LB.results(_params(seeds=[0, 1, 2, 3, 4, 5], top_up_seeds=[6]), 0.9)
    cov = out["coverage"]
    assert not cov["stability"] and cov["stability_planned"] - cov["stability_found"] == 4  # 2 configs x 2 modes
    v = out["ladder"]["verdicts"]
    assert set(v.loc[v["claim"] == "relu_unstable", "verdict"]) == {LB.NOT_COMPUTED}
    assert math.isnan(v.loc[v["claim"] == "relu_unstable", "p"].iloc[0])
    text = LB.coverage_text(out, [5, 10, 20])
    assert "not complete" in text and f"of its stability sweeps, {cov['stability_found']} of the" in text


def test_the_long_lag_clipping_comparison_is_read_once_the_lag_sweep_is_complete(store):
    from rnnbook.experiments.relu import collapse as relu_collapse

    p = _params(seeds=[0, 1, 2, 3, 4, 5], top_up_seeds=[6], collapse_seeds=[0, 1, 2], collapse_lag_count=2)
    store["recorded"] = lambda c: c.clip_mode == "none"  # the clipped arm is not computed yet
    out = LB.read(p, 0.9)
    cov = out["coverage"]
    assert "collapse" not in out and not cov["collapse"]
    # tanh learned lags 10 and 20; ReLU ran at 10 (its ladder stopped there): 3 configurations x 3 seeds
    assert (cov["collapse_arm"], cov["collapse_found"], cov["collapse_planned"]) == ("clipped", 0, 9)
    assert "of its long-lag clipping comparison, 0 of the 9 clipped runs are recorded" in LB.coverage_text(out, p["lags"])
    store["recorded"] = lambda c: True
    out = LB.read(p, 0.9)
    assert out["coverage"]["collapse"] and LB.coverage_text(out, p["lags"]).startswith("The reference computation is complete")
    study = out["collapse"]
    assert study["points"] == [(10, ["tanh + orthogonal", "ReLU + orthogonal"]), (20, ["tanh + orthogonal"])]
    # both arms' steps, measured once per configuration and seed and kept beside the records
    assert list(study["steps"]["matched"]) == [True] * 3 and len(store["measured"]) == 3 * 2 * 2
    LB.read(p, 0.9)
    assert len(store["measured"]) == 3 * 2 * 2
    assert set(study["runs"]["arm"]) == set(relu_collapse.COMPARED) and len(study["runs"]) == 18  # steps matched: no control
    # the page shows the reference's comparison, and says so; without it, the build's own
    shown = relu.collapse_answer({"long": out, "collapse": "own", "params": {"max_updates": 50}})
    assert shown["study"] is study and shown["cap"] == 100 and "reference protocol's" in shown["source"]
    store["recorded"] = lambda c: c.lag != 20
    partial = LB.results(p, 0.9)
    assert "collapse" not in partial and "waits for the lag sweep" in LB.coverage_text(partial, p["lags"])
    own = relu.collapse_answer({"long": partial, "collapse": "own", "params": {"max_updates": 50}})
    assert own["study"] == "own" and own["cap"] == 50 and "not recorded yet" in own["source"]


def test_rate_edges_names_rates_at_an_end_of_the_grid():
    grid = [0.0003, 0.001, 0.003]
    assert LB.rate_edges({"a": 0.001}, grid) == "Every chosen rate lies inside the grid."
    text = LB.rate_edges({"a": 0.0003, "b": 0.003, "c": 0.001}, grid)
    assert text.startswith("At the smallest rate of the grid: a; at the largest rate of the grid: b;")
    assert LB.rate_edges({}, grid) == "No tuning run is recorded yet."
    assert LB.rate_edges({"a": 0.001}, [0.001]) == "The grid has one rate, so no other rate was tried."
