"""The verdict rules (rnnbook.verdicts): one test per branch, and the planted cases of issue 18
(a dead ReLU network, a tie, a censored still-improving loser, a premise that was not met)."""
from __future__ import annotations

import math

import pytest

from rnnbook import verdicts as V
from rnnbook.verdicts import Point, decide


def _record(outcome="censored", val=(0.1, 0.1), chance=0.1, n_val=2000, check_every=2, states=None, rnn=None,
            **extra):
    steps = {"max_abs_state": list(states or [0.5] * 4), "rnn_grad_norm": list(rnn or [1.0] * 4)}
    return {"outcome": outcome, "check_val_acc": list(val), "chance": chance,
            "config": {"n_val": n_val, "check_every": check_every}, "steps": steps, **extra}


# ----------------------------------------------------------------------------- the rule, branch by branch


def test_supported_needs_a_significant_difference_in_the_claimed_direction():
    v = decide([Point(9, 10, 1, 10)], names=("ReLU", "tanh"))
    assert v.word == V.SUPPORTED and v.p < V.ALPHA and "ReLU 9 of 10" in v.why


def test_contradicted_needs_a_significant_difference_the_other_way():
    assert decide([Point(1, 10, 9, 10)]).word == V.CONTRADICTED


def test_a_tie_is_no_difference_detected_never_contradicted():
    v = decide([Point(3, 4, 3, 4), Point(0, 4, 1, 4)])
    assert v.word == V.NO_DIFFERENCE


def test_a_tie_names_the_point_that_differs_most_not_the_first():
    """All adjusted p values tie at 1: the verdict's counts come from the point with the smallest
    raw p, then the largest difference in shares, not from a 0 of 10 against 0 of 10."""
    v = decide([Point(0, 10, 0, 10, label="flat"), Point(7, 10, 7, 10, label="even"),
                Point(1, 10, 0, 10, label="apart")], counting="collapses")
    assert v.word == V.NO_DIFFERENCE and "1 of 10 against 0 of 10 at apart" in v.why


def test_small_samples_cannot_decide_one_of_one_against_zero_of_one():
    assert decide([Point(1, 1, 0, 1)]).word == V.NO_DIFFERENCE


def test_a_censored_still_improving_loser_demotes_a_difference():
    # the IRNN censored at every seed while still climbing: not "contradicted"
    v = decide([Point(0, 10, 10, 10, improving_a=10)], names=("IRNN", "GRU"))
    assert v.word == V.NOT_DECIDED and "still improving" in v.why


def test_a_censored_still_improving_winner_does_not_demote():
    assert decide([Point(10, 10, 0, 10, improving_a=0, improving_b=0)]).word == V.SUPPORTED


def test_a_tie_with_runs_still_improving_is_not_decided():
    assert decide([Point(2, 4, 2, 4, improving_b=1)]).word == V.NOT_DECIDED


def test_differences_both_ways_are_not_decided():
    v = decide([Point(10, 10, 0, 10, label="lag 3"), Point(0, 10, 10, 10, label="lag 40")])
    assert v.word == V.NOT_DECIDED and "lag 3" in v.why and "lag 40" in v.why


def test_premise_not_met_overrides_the_counts():
    v = decide([Point(12, 12, 0, 12)], premise=False, premise_why="No unclipped run exploded.")
    assert v.word == V.PREMISE_NOT_MET and v.why == "No unclipped run exploded."


def test_no_runs_is_not_decided():
    assert decide([Point(0, 0, 0, 4)]).word == V.NOT_DECIDED


def test_holm_adjustment_guards_many_points():
    # one point at p = 0.029 among six: significant alone, not after Holm
    pts = [Point(4, 4, 0, 4)] + [Point(2, 4, 2, 4)] * 5
    assert decide(pts[:1]).word == V.SUPPORTED
    assert decide(pts).word == V.NO_DIFFERENCE


def test_failure_counts_favour_the_arm_that_fails_more_with_its_own_losers():
    # "ReLU fails more than tanh": a = ReLU failures
    assert decide([Point(10, 12, 4, 12)], counting="failures").word == V.SUPPORTED  # issue 18's count, p = 0.036
    assert decide([Point(8, 12, 4, 12)], counting="failures").word == V.NO_DIFFERENCE  # p = 0.22
    assert decide([Point(2, 12, 12, 12)], counting="failures").word == V.CONTRADICTED


def test_every_word_is_a_verdict():
    for pts in ([Point(9, 10, 1, 10)], [Point(1, 10, 9, 10)], [Point(3, 4, 3, 4)]):
        assert decide(pts).word in V.VERDICTS


# ----------------------------------------------------------------------------- failure, one rule


def test_a_dead_relu_network_fails():
    # every hidden state exactly 0 over the last check interval, loss flat at ln 10: not "stable"
    rec = _record(states=[0.4, 0.0, 0.0], rnn=[0.2, 0.0, 0.0])
    assert V.is_dead(rec) and V.failure_reason(rec) == "dead"


def test_zero_recurrent_gradient_alone_is_dead():
    assert V.failure_reason(_record(states=[0.3, 0.3], rnn=[0.0, 0.0], val=(0.5, 0.6))) == "dead"


def test_a_live_network_above_chance_does_not_fail():
    assert V.failure_reason(_record(val=(0.2, 0.6))) is None


def test_a_run_never_above_chance_fails():
    assert V.failure_reason(_record(val=(0.1, 0.105))) == "never above chance"


def test_divergence_and_raised_runs_fail():
    assert V.failure_reason(_record(outcome="diverged")) == "diverged"
    assert V.failure_reason({"failed": True}) == "diverged"


def test_the_rule_is_the_same_for_every_activation():
    # the failure rule reads no activation: a tanh record with the same numbers fails the same way
    a = _record(states=[0.0, 0.0], config_activation="tanh")
    b = _record(states=[0.0, 0.0], config_activation="relu")
    assert V.failure_reason(a) == V.failure_reason(b) == "dead"


# ----------------------------------------------------------------------------- still improving


@pytest.mark.parametrize("val, expected", [
    ((0.15, 0.29, 0.45, 0.57), True),           # the IRNN of issue 18, climbing at the cap
    ((0.41, 0.6, 0.7, 0.83, 0.80), True),
    ((0.10, 0.11, 0.10, 0.10, 0.10), False),    # flat at chance
    ((0.9, 0.5, 0.4, 0.3, 0.2), False),         # collapsed
])
def test_still_improving(val, expected):
    assert V.still_improving({"outcome": "censored", "check_val_acc": list(val)}) is expected


def test_a_success_is_never_still_improving():
    assert not V.still_improving({"outcome": "success", "check_val_acc": [0.1, 0.5, 0.9]})


def test_holm_and_fisher():
    assert V.holm([0.01, 0.04, 0.03]) == [0.03, 0.06, 0.06]
    assert V.fisher_p(4, 4, 0, 4) == pytest.approx(0.02857, abs=1e-4)
    assert V.fisher_p(0, 0, 1, 2) == 1.0


def test_logrank_separates_fast_from_never():
    p = V.logrank_p([100] * 8, [True] * 8, [1000] * 8, [False] * 8)
    assert p < 0.001
    assert math.isnan(V.logrank_p([10], [False], [10], [False]))


def test_a_compact_record_is_dead_by_its_last_interval():
    rec = {"config": {"check_every": 25}, "check_max_abs_state_max": [0.5, 0.0], "check_rnn_grad_norm_max": [1.0, 0.0]}
    assert V.is_dead(rec)
    assert not V.is_dead(dict(rec, check_max_abs_state_max=[0.5, 0.2], check_rnn_grad_norm_max=[1.0, 0.1]))
