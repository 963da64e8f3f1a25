"""The chapter "Recommendations": verdicts, headline and advice follow the numbers of the relu and
clipping chapters; checked on hand-made numbers whose answer is known."""
import math

import pytest

import pandas as pd

from rnnbook import verdicts as V
from rnnbook.experiments import clipping, recommendations as reco, relu
from rnnbook.experiments.common import role_label
from rnnbook.verdicts import Verdict


TANH, RELU = role_label("tanh"), role_label("relu")


def relu_result(verdicts, reach_base=10.0, width_fail=()):
    """Hand-made relu results: verdicts, reach at the Keras default, and runs of the width sweep
    in which the configurations of ``width_fail`` (label, units) died at every seed."""
    rows = []
    for label in (TANH, RELU):
        for units in (64, 1024):
            dead = (label, units) in width_fail
            rec = {"outcome": "censored" if dead else "success", "check_val_acc": [0.1] if dead else [0.9],
                   "chance": 0.1, "config": {"n_val": 2000, "check_every": 1},
                   "steps": {"max_abs_state": [0.0] if dead else [0.5], "rnn_grad_norm": [1.0]}}
            rows += [{"label": label, "units": units, "record": rec, "interface": "keras"}] * 4
    width = pd.DataFrame(rows)
    empty = width.iloc[:0]
    return {"verdicts": verdicts, "params": {"units": 1024},
            "numbers": {"success_by_level": {"keras": 0.5, "he": 0.2},
                        "best_simple_reach": {"keras": reach_base, "he": math.nan},
                        "best_gated_reach": {"keras": 40.0, "he": 10.0}},
            "lag": empty.assign(clip_mode=[]), "lr": empty.assign(clip_mode=[]), "width": width,
            "budget": {"max_updates": 400, "n_seeds": 4, "n_runs": 240, "n_censored": 100, "n_improving": 3},
            "ceiling": {"test_acc": 0.97}, "target_acc": 0.87}


ALL = {"relu_short": Verdict(V.NO_DIFFERENCE, "a"), "relu_memory": Verdict(V.CONTRADICTED, "b"),
       "relu_unstable": Verdict(V.SUPPORTED, "c"), "gated": Verdict(V.NOT_DECIDED, "d"),
       "irnn": Verdict(V.CONTRADICTED, "e"), "interface": Verdict(V.SUPPORTED, "f")}
CLIP = {"claim_clip": "supported", "claim_clip_why": "rescued", "claim_band": "not decided",
        "claim_band_why": "censored", "advice_clip_mode": "use global", "advice_threshold": "1x"}


def test_claim_verdicts_take_each_claim_from_its_chapter():
    v = reco.claim_verdicts(ALL, CLIP)
    assert list(v) == list(reco.CLAIMS)
    assert v["clip"].word == V.SUPPORTED and v["clip"].why == "rescued" and v["band"].word == V.NOT_DECIDED
    assert v["relu_memory"] == ALL["relu_memory"]
    table = reco.claims_table(v)
    assert list(table.columns) == ["claim", "verdict here", "rule applied and test", "why"]


def test_headline_is_short_and_follows_the_verdicts():
    v = reco.claim_verdicts(ALL, dict(CLIP, claim_clip="premise not met"))
    text = reco.headline(relu_result(ALL), v)
    assert text.startswith("Keep tanh") and "lags up to 10 frames" in text and "untested" in text
    assert len(text.split()) <= 60
    v2 = dict(v, relu_memory=Verdict(V.SUPPORTED, ""), gated=Verdict(V.SUPPORTED, ""),
              clip=Verdict(V.SUPPORTED, ""), relu_unstable=Verdict(V.NO_DIFFERENCE, ""))
    text2 = reco.headline(relu_result(ALL), v2)
    assert "try it" in text2 and "lag of 10 frames, use an LSTM or GRU" in text2 and "Clip the global" in text2
    unstable = dict(v2, relu_unstable=Verdict(V.SUPPORTED, ""))
    assert reco.headline(relu_result(ALL), unstable).startswith("Keep tanh")  # never advise what failed more
    no_rescue = reco.headline(relu_result(ALL), dict(v, clip=Verdict(V.NO_DIFFERENCE, "")))
    assert "Clipping made no measurable difference here." in no_rescue and "untested" not in no_rescue
    assert "Clip" not in reco.headline(relu_result(ALL), dict(v, clip=Verdict(V.NOT_DECIDED, "")))


def test_every_advice_line_names_its_verdict_and_opens_what_is_not_supported():
    v = reco.claim_verdicts(ALL, CLIP)
    r = relu_result(ALL)
    a = reco.advice(r, CLIP, v, reco.measured_failures(r))
    for key, line in a.items():
        assert "Rests on:" in line, key
    assert "Keep tanh" in a["advice_activation"]
    assert "open here" in a["advice_lag"]  # gated not supported: no GRU/LSTM recommendation
    assert "LSTM or GRU" not in a["advice_lag"]


def test_no_advice_recommends_a_measured_failure():
    # tanh with 1,024 units died at every seed of the width sweep: never advised at that width
    r = relu_result(ALL, width_fail=[(TANH, 1024)])
    failures = reco.measured_failures(r)
    assert not reco.safe(TANH, 1024, failures) and reco.safe(TANH, 64, failures)
    v = reco.claim_verdicts(ALL, CLIP)
    a = reco.advice(r, CLIP, v, failures)
    assert "Keep tanh" not in a["advice_activation"] and "failed" in a["advice_activation"]
    res = {"relu": r, "evidence": r, "verdicts": v, "failures": failures}
    code = reco.keras_port(units=1024, n_features=512, res=res)["recommended_code"]
    assert "SimpleRNN(1024)" not in code and "SimpleRNN(64)" in code


@pytest.mark.parametrize("chapter", ["relu", "clipping"])
def test_parameter_defaults_match_the_chapters_whose_runs_are_read(chapter):
    """The recommendations read cached runs: with other defaults they would retrain."""
    from conftest import chapter_defaults

    mine, theirs = chapter_defaults("recommendations"), chapter_defaults(chapter)
    module = {"relu": relu, "clipping": clipping}[chapter]
    for name in module.PARAMS:
        assert mine[name] == theirs[name], name
    assert set(reco.PARAMS) == set(relu.PARAMS) | set(clipping.PARAMS)


@pytest.mark.slow
def test_quick_chapter_glues_the_claims_and_the_front_page(quick_book):
    from conftest import assert_chapter_glue

    doc = "chapters/recommendations"
    nb = quick_book.notebooks([doc])[doc]
    values = assert_chapter_glue(nb, doc, ["fig-reco-map", "tbl-claims"])
    for key in reco.CLAIMS:
        assert f"claim_{key}" in values and f"front_claim_{key}" in values
    assert "front_headline" in values


def test_the_relu_runs_are_read_without_re_running_the_relu_pages_sample(monkeypatch):
    """The relu page re-runs its sample of shipped runs; the recommendations page reads the same
    runs and must not train that sample a second time."""
    asked = {}

    class Stop(Exception):
        pass

    def fake_results(params, ceiling=None, long_budget_reader=None, rerun_sample=True):
        asked["rerun_sample"] = rerun_sample
        raise Stop

    monkeypatch.setattr(relu, "results", fake_results)
    with pytest.raises(Stop):
        reco.results({})
    assert asked == {"rerun_sample": False}


def _long_view(verdicts: dict, complete: bool = False) -> dict:
    """A long-budget answer as :func:`long_budget.results` gives it: lags 5 and 10 complete."""
    table = pd.DataFrame([{"label": TANH, "interface": "keras", "lag": lag, "rate": 1.0} for lag in (5, 10)])
    lag = pd.DataFrame([{"label": TANH, "interface": "keras", "lag": 10, "success": True, "outcome": "success",
                         "updates": 900, "diverged": False, "units": 64, "record": {"outcome": "success"}}])
    rows = [{"claim": k, "cap": cap, "verdict": w, "p": 0.01, "why": f"{k} at {cap}", "test": "Fisher"}
            for k, w in verdicts.items() for cap in (200, 3000)]
    return {"ready": True, "params": {"interfaces": ["keras"], "seeds": [0, 1, 2, 3, 4, 5], "top_up_seeds": [6, 7],
                                      "max_updates": 3000, "check_every": 25, "batch_size": 128,
                                      "stability_max_updates": 500},
            "ladder": {"verdicts": pd.DataFrame(rows)}, "table": table, "lag": lag,
            "coverage": {"lags_done": [5, 10], "lag_next": None if complete else 20}}


def test_the_answer_takes_each_relu_claim_from_the_reference_runs_where_they_decide_it():
    from rnnbook.experiments.relu import long_budget as LB

    long = {k: V.SUPPORTED for k in ALL} | {"relu_unstable": LB.NOT_COMPUTED}
    r = relu_result(ALL) | {"long": _long_view(long)}
    ev = reco.evidence(r)
    assert ev["source"] == "reference" and not ev["complete"]
    assert ev["verdicts"]["relu_memory"].word == V.SUPPORTED
    assert ev["verdicts"]["relu_memory"].why == "At 3,000 updates (the reference runs): relu_memory at 3000"
    # the stability sweeps are not in the reference: the build's own verdict, and its reason says so
    assert ev["verdicts"]["relu_unstable"] == ALL["relu_unstable"]._replace(
        why="At 400 updates (this build's sweep; the reference runs do not decide it yet): c")
    assert ev["numbers"]["best_simple_reach"] == {"keras": 10.0} and ev["budget"]["max_updates"] == 3000
    assert len(ev["reference_lag"]) == 1 and ev["lags_done"] == [5, 10]
    # a reach at the longest computed lag may grow: the headline says so, until the ladders end
    v = reco.claim_verdicts(ev["verdicts"], CLIP)
    assert "Beyond a lag of 10 frames (longer lags are not computed yet), use" in reco.headline(ev, v)
    v = dict(v, gated=Verdict(V.CONTRADICTED, ""))
    assert "lags up to 10 frames (longer lags are not computed yet)." in reco.headline(ev, v)
    done = reco.evidence(relu_result(ALL) | {"long": _long_view(long, complete=True)})
    assert "lags up to 10 frames." in reco.headline(done, v)
    # the stability sweeps, once in the reference, are read at their own cap
    stable = reco.evidence(relu_result(ALL) | {"long": _long_view({k: V.SUPPORTED for k in ALL})})
    assert stable["verdicts"]["relu_unstable"].why.startswith("At 500 updates (the reference runs): ")
    # without the reference runs the build's own sweep answers, and says its budget
    own = reco.evidence(relu_result(ALL))
    assert own["source"] == "build" and own["verdicts"]["gated"].why == "At 400 updates (this build's sweep): d"
    assert reco._source_text(own, own).startswith("The verdicts come from this build's own sweeps")
    assert "keeps the verdict of this build's 400-update sweeps" in reco._source_text(ev, r)


def test_a_contradicted_gated_claim_advises_no_gated_cell():
    r = relu_result(ALL)
    v = reco.claim_verdicts(dict(ALL, gated=Verdict(V.CONTRADICTED, "GRU fell short")), CLIP)
    a = reco.advice(r, CLIP, v, reco.measured_failures(r))
    assert "no reason to expect an LSTM or GRU" in a["advice_lag"] and "**contradicted**" in a["advice_lag"]


def test_a_gated_claim_that_depends_on_the_point_advises_trying_both():
    r = relu_result(ALL)
    why = f"{V.DEPENDS}: gated cell did better at GRU, He-uniform, lag 5; and worse at GRU, Keras default, lag 10."
    v = reco.claim_verdicts(dict(ALL, gated=Verdict(V.NOT_DECIDED, why)), CLIP)
    a = reco.advice(r, CLIP, v, reco.measured_failures(r))
    assert "better than the simple RNN at some points of the grid and worse at others" in a["advice_lag"]
    assert "try both" in a["advice_lag"] and "**not decided**" in a["advice_lag"]


def test_tanh_is_advised_at_the_keras_default_when_it_failed_only_elsewhere():
    r = relu_result(ALL)
    failures = pd.DataFrame([{"sweep": "lag", "label": TANH, "interface": "he", "units": 1024, "failed": 6, "runs": 6}])
    a = reco.advice(r, CLIP, reco.claim_verdicts(ALL, CLIP), failures)
    assert a["advice_activation"].startswith("**Keep tanh**") and "it failed with He-uniform features" in a["advice_activation"]
