"""The chapter "Recommendations": verdicts, headline and advice follow the numbers of the relu and
clipping chapters; checked on hand-made numbers whose answer is known."""
import math

import pytest

from rnnbook.experiments import clipping, recommendations as reco, relu


def relu_result(verdicts, reach_as_is=math.nan, reach_small=20.0, success=(0.2, 0.8)):
    scales = [1.0, 0.1]
    return {"verdicts": verdicts,
            "numbers": {"scales": scales, "scale_max": 1.0, "scale_min": 0.1,
                        "success_by_scale": dict(zip(scales, success)),
                        "best_simple_reach": {1.0: reach_as_is, 0.1: reach_small},
                        "best_gated_reach": {1.0: 10.0, 0.1: 5.0}, "tanh_reach": {1.0: math.nan, 0.1: 20.0},
                        "relu_reach": {1.0: math.nan, 0.1: 10.0}},
            "budget": {"max_updates": 400, "n_seeds": 4, "n_runs": 240, "n_censored": 100},
            "ceiling": {"test_acc": 0.97}, "target_acc": 0.87}


ALL = {"relu_short": ("supported", "a"), "relu_memory": ("contradicted", "b"), "relu_unstable": ("supported", "c"),
       "gated": ("not decided at this budget", "d"), "irnn": ("contradicted", "e"), "interface": ("supported", "f")}


def test_claim_verdicts_take_each_claim_from_its_chapter():
    clip = {"claim_clip": "supported", "claim_clip_why": "rescued", "claim_band": "not decided at this budget",
            "claim_band_why": "censored"}
    v = reco.claim_verdicts(ALL, clip)
    assert list(v) == list(reco.CLAIMS)
    assert v["clip"] == ("supported", "rescued") and v["band"][0] == "not decided at this budget"
    assert v["relu_memory"] == ("contradicted", "b")


def test_headline_follows_the_verdicts():
    r = relu_result(ALL)
    v = reco.claim_verdicts(ALL, {"claim_clip": "contradicted", "claim_band": "supported"})
    text = reco.headline(r, v)
    assert text.startswith("Scale the CNN features down")
    assert "x 0.1" in text and "no lag of the grid" in text and "lags up to 20 frames" in text
    assert "remembered no further than tanh" in text and "did not prevent" in text
    v2 = dict(v, interface=("contradicted", ""), relu_memory=("supported", ""), clip=("supported", ""))
    text2 = reco.headline(r, v2)
    assert "Scale" not in text2 and "remembered further than tanh" in text2.lower() and "kept SGD" in text2


def test_advice_branches():
    a = reco.advice(relu_result(ALL), {"advice_clip_mode": "use global", "advice_threshold": "1x"})
    assert "Keep tanh" in a["advice_activation"] and "20 frames" in a["advice_lag"]
    assert a["advice_clip_mode"] == "use global" and "Rescaling" not in a["advice_interface"]
    none = reco.advice(relu_result(dict(ALL, relu_memory=("supported", "")), reach_small=math.nan), {})
    assert "GRU or LSTM" in none["advice_lag"] and "worth a try" in none["advice_activation"]


def test_best_scale_prefers_the_higher_success_rate():
    assert reco.best_scale(relu_result(ALL, success=(0.2, 0.8))) == 0.1
    assert reco.best_scale(relu_result(ALL, success=(0.9, 0.8))) == 1.0


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
    values = assert_chapter_glue(nb, doc, ["fig-reco-map"])
    for key in reco.CLAIMS:
        assert f"claim_{key}" in values and f"front_claim_{key}" in values
    assert "front_headline" in values
