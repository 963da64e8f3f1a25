"""The book's verdict rules, written once: how runs become "supported", "contradicted", "no
difference detected", "not decided" or "premise not met".

Every trained claim compares two arms (A, the side the claim favours, against B) on counts of
runs (successes, or failures), at one point or at several points of a grid:

1. **Premise.** A claim that needs a premise (an "exploding" setting must explode) whose premise
   was not met is **premise not met**, whatever the runs show.
2. **Test.** At each point, Fisher's exact test (two-sided) of A's count against B's. With
   several points the p-values are Holm-adjusted, so a grid of many points cannot find a
   difference by chance more often than a single point. A point *differs* when its adjusted
   p-value is below :data:`ALPHA`. A claim about *time* to the criterion puts a log-rank test of
   updates to success (:func:`logrank_p`, its direction :func:`logrank_favours`) in Fisher's place;
   everything else is the same.
3. **Direction.** Points that differ in the claimed direction and none the other way:
   candidate **supported**; the other way only: candidate **contradicted**; both ways:
   **not decided** (it depends on the point).
4. **Censoring demotes.** A candidate verdict whose losing arm has runs that hit the cap while
   still improving (:func:`still_improving`) at a deciding point is **not decided at this
   budget**: the cap cut the loser short.
5. **Ties.** No point differs: **not decided** if any run at any point hit the
   cap while still improving, else **no difference detected**.

Failure is one rule for every activation (:func:`failure_reason`): a run fails when it
diverged (NaN/Inf, non-finite weights, loss blow-up), when it is **dead** (hidden state
identically zero, or zero recurrent gradient, over the last checks: a ReLU network whose units
all died never learns again), or when it never beat chance.

Example:
    >>> decide([Point(a=8, n_a=10, b=1, n_b=10)]).word
    'supported'
    >>> decide([Point(a=1, n_a=10, b=8, n_b=10)]).word
    'contradicted'
    >>> decide([Point(a=3, n_a=4, b=3, n_b=4)]).word
    'no difference detected'
    >>> decide([Point(a=0, n_a=4, b=0, n_b=4, improving_a=4)]).word
    'not decided'
    >>> decide([Point(a=4, n_a=4, b=0, n_b=4)], premise=False).word
    'premise not met'
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple, Sequence

import numpy as np

#: Significance level of every verdict's test.
ALPHA = 0.05
SUPPORTED = "supported"
CONTRADICTED = "contradicted"
NO_DIFFERENCE = "no difference detected"
NOT_DECIDED = "not decided"
PREMISE_NOT_MET = "premise not met"
#: How the reason of a "not decided" verdict starts when points differ both ways.
DEPENDS = "It depends on the point"
#: Every verdict word, in the order the claims table sorts them.
VERDICTS = (SUPPORTED, CONTRADICTED, NO_DIFFERENCE, NOT_DECIDED, PREMISE_NOT_MET)
#: A censored run is *still improving* when the best validation accuracy of its last
#: :data:`IMPROVING_CHECKS` checks beats the best before them by at least this much.
IMPROVING_MARGIN = 0.02
IMPROVING_CHECKS = 3
#: A run *explodes* (:func:`exploded`) when it diverges or when some update's gradient norm is at
#: least this many times the median norm of the updates before it (:func:`spike_ratio`), counted
#: from update :data:`SPIKE_WARMUP` on.
SPIKE_FACTOR = 10.0
SPIKE_WARMUP = 5
#: The failure reasons of :func:`failure_reason`.
FAILURES = ("diverged", "dead", "never above chance")
#: The rule as the chapters print it (one sentence per step of the module docstring).
RULE_TEXT = (
    "Each claim compares the arm it favours (A) with the other (B) on counts of runs, with Fisher's exact "
    f"test (two-sided) at every point, Holm-adjusted over the points, at level {ALPHA:g}. A difference in "
    "the claimed direction at some point and none the other way is *supported*; the other way only, "
    "*contradicted*; both ways, *not decided*. A difference is demoted to *not decided* "
    "when the losing arm has runs that hit the cap while still improving (the cap cut the loser short). "
    "No difference at any point is *no difference detected*, or *not decided* when runs hit "
    "the cap while still improving. A claim whose premise was not met (an exploding setting that did not "
    "explode) is *premise not met*."
)


class Verdict(NamedTuple):
    """A verdict: its ``word`` (one of :data:`VERDICTS`), the reason in Markdown, the test that
    decided it, its p-value (Holm-adjusted, the smallest over the points; NaN without a test)."""

    word: str
    why: str
    test: str = ""
    p: float = math.nan


@dataclasses.dataclass(frozen=True)
class Point:
    """One point of a comparison: arm A's count ``a`` of ``n_a`` runs against B's ``b`` of ``n_b``
    (successes, or failures when the claim is about failing), the runs of each arm censored while
    still improving, and a label for the reason text."""

    a: int
    n_a: int
    b: int
    n_b: int
    improving_a: int = 0
    improving_b: int = 0
    label: str = ""
    #: A point another test decides (a log-rank test of updates to success, :func:`logrank_p`):
    #: its raw p-value (NaN counts as 1) and the arm it favours (+1 A, -1 B, 0 neither:
    #: :func:`logrank_favours`). None: Fisher's exact test of the counts, the direction theirs.
    p: float | None = dataclasses.field(default=None, repr=False)
    favours: int | None = dataclasses.field(default=None, repr=False)
    #: The arms' names at this point when they differ from point to point (the interface claim:
    #: each level against the Keras default); None: the claim's ``names`` (:func:`decide`).
    names: tuple[str, str] | None = dataclasses.field(default=None, repr=False)


# ----------------------------------------------------------------------------- tests


def fisher_p(a: int, n_a: int, b: int, n_b: int) -> float:
    """Two-sided Fisher exact test of ``a`` of ``n_a`` against ``b`` of ``n_b`` (1.0 without runs).

    Example:
        >>> round(fisher_p(4, 4, 0, 4), 4)
        0.0286
    """
    if min(n_a, n_b) <= 0:
        return 1.0
    from scipy import stats

    return float(stats.fisher_exact([[a, n_a - a], [b, n_b - b]]).pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input's order.

    Example:
        >>> holm([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    p = np.asarray(pvalues, float)
    order = np.argsort(p)
    adjusted, running = np.empty_like(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return [round(float(x), 12) for x in adjusted]


def logrank_p(durations_a, events_a, durations_b, events_b) -> float:
    """Log-rank test (lifelines) of two samples of updates to success with censoring (``events``
    True for a success, False for a censored or failed run); NaN without an event."""
    if not (np.any(events_a) or np.any(events_b)):
        return math.nan
    import warnings

    from lifelines.statistics import logrank_test

    with warnings.catch_warnings():  # lifelines' own pandas deprecation notices
        warnings.simplefilter("ignore")
        result = logrank_test(np.asarray(durations_a, float), np.asarray(durations_b, float),
                              event_observed_A=np.asarray(events_a, bool),
                              event_observed_B=np.asarray(events_b, bool))
    return float(result.p_value)


def logrank_favours(durations_a, events_a, durations_b, events_b) -> int:
    """The arm a log-rank test of two samples of updates to success favours: +1 when A's successes
    came sooner than the test expects under no difference (observed minus expected successes of A,
    summed over the distinct success times, positive), -1 when later, 0 when neither or without
    a success.

    Example:
        >>> logrank_favours([100, 200, 300], [True, True, True], [300, 400, 400], [True, False, False])
        1
    """
    d_a, e_a = np.asarray(durations_a, float), np.asarray(events_a, bool)
    d_b, e_b = np.asarray(durations_b, float), np.asarray(events_b, bool)
    observed_minus_expected = 0.0
    for t in np.unique(np.concatenate([d_a[e_a], d_b[e_b]])):
        at_risk_a, at_risk = float((d_a >= t).sum()), float((d_a >= t).sum() + (d_b >= t).sum())
        events_a_t = float((d_a[e_a] == t).sum())
        observed_minus_expected += events_a_t - (events_a_t + float((d_b[e_b] == t).sum())) * at_risk_a / at_risk
    return int(np.sign(round(observed_minus_expected, 9)))


# ----------------------------------------------------------------------------- runs


def still_improving(record: dict, margin: float = IMPROVING_MARGIN, checks: int = IMPROVING_CHECKS) -> bool:
    """True for a censored run whose best validation accuracy over its last ``checks`` checks beats
    its best before them by at least ``margin`` and, when the record says what chance is, beats
    chance by three standard errors (:func:`above_chance`): a run cut short by the cap, not one
    that stalled or wanders at chance.

    Example:
        >>> still_improving({"outcome": "censored", "check_val_acc": [0.15, 0.29, 0.45, 0.57]})
        True
        >>> still_improving({"outcome": "censored", "check_val_acc": [0.10, 0.11, 0.10, 0.10]})
        False
        >>> still_improving({"outcome": "censored", "chance": 0.1, "config": {"n_val": 2000},
        ...                  "check_val_acc": [0.09, 0.10, 0.10, 0.09, 0.10, 0.10, 0.12]})  # noise at chance
        False
    """
    acc = [float(v) for v in record.get("check_val_acc") or [] if np.isfinite(v)]
    if record.get("outcome") != "censored" or len(acc) < 2:
        return False
    if "chance" in record and not above_chance(dict(record, check_val_acc=acc[-checks:])):
        return False  # noise at chance is not progress: the recent checks must beat chance
    if len(acc) <= checks:
        return acc[-1] - acc[0] >= margin
    return max(acc[-checks:]) - max(acc[:-checks]) >= margin


def is_dead(record: dict) -> bool:
    """True when, over the run's last check interval, every hidden state was exactly 0 or the
    recurrent layer's gradient was exactly 0 at every update (a network that cannot learn again).

    Example:
        >>> is_dead({"config": {"check_every": 2},
        ...          "steps": {"max_abs_state": [0.3, 0.0, 0.0], "rnn_grad_norm": [1.0, 0.0, 0.0]}})
        True
    """
    steps = record.get("steps") or {}
    window = max(int((record.get("config") or {}).get("check_every") or 1), 1)
    for key in ("max_abs_state", "rnn_grad_norm"):
        tail = np.asarray((steps.get(key) or [])[-window:], float)
        if not tail.size:  # a compact record (rnnbook.reference): the last interval's maximum
            tail = np.asarray((record.get(f"check_{key}_max") or [])[-1:], float)
        if tail.size and np.all(tail == 0.0):
            return True
    return False


def chance_bar(chance, n, z: float = 3.0):
    """Accuracy a guessing classifier exceeds with probability about 0.1 % on ``n`` sequences:
    chance plus ``z`` binomial standard errors (elementwise for arrays).

    Example:
        >>> round(chance_bar(0.1, 100), 3)
        0.19
    """
    bar = np.asarray(chance, float) + z * np.sqrt(np.asarray(chance, float) * (1.0 - np.asarray(chance, float))
                                                  / np.maximum(np.asarray(n, float), 1.0))
    return float(bar) if bar.ndim == 0 else bar


def above_chance(record: dict, z: float = 3.0) -> bool:
    """True when some validation check beat :func:`chance_bar` on the validation set (``chance``
    and ``config.n_val`` of the record)."""
    chance, n = float(record.get("chance", math.nan)), float((record.get("config") or {}).get("n_val") or 1)
    bar = chance_bar(chance, n, z)
    return any(float(v) > bar for v in record.get("check_val_acc") or [])


def failure_reason(record: dict) -> str | None:
    """The run's failure (one of :data:`FAILURES`) or None: the same rule for every activation.
    A run that raised (``failed`` set by the sweep) counts as diverged."""
    if record.get("failed") or record.get("diverged") or record.get("outcome") == "diverged":
        return "diverged"
    if is_dead(record):
        return "dead"
    if record.get("outcome") != "success" and not above_chance(record):
        return "never above chance"
    return None


def spike_ratio(norms, warmup: int = SPIKE_WARMUP) -> float:
    """The run's largest gradient-norm spike: the largest ratio of an update's global gradient norm
    to the median of the norms of the updates before it, from update ``warmup`` on (so at least
    ``warmup`` norms make the median). Against the median *before* the update, a run whose
    gradient collapses (a dead ReLU network) does not count its first updates as a spike; a
    gradient that rises tenfold and stays up (a network leaving a plateau of its loss) does count.
    Inf at a non-finite norm; NaN for a run too short to measure.

    Example:
        >>> spike_ratio([1.0, 1.2, 0.8, 1.0, 0.9, 1.1, 12.0, 1.0])
        12.0
        >>> round(spike_ratio([1.0, 0.9, 0.8, 0.1, 0.05, 0.01, 0.01]), 3)  # a collapse is no spike
        0.022
    """
    import heapq

    low, high, best = [], [], math.nan  # max-heap (negated) and min-heap of the norms so far
    for i, g in enumerate(float(x) for x in norms):
        if not math.isfinite(g):
            return math.inf
        if i >= warmup:
            median = -low[0] if len(low) > len(high) else (high[0] - low[0]) / 2
            ratio = g / median if median > 0 else (math.inf if g > 0 else 1.0)
            best = ratio if not best >= ratio else best
        heapq.heappush(low, -g)
        heapq.heappush(high, -heapq.heappop(low))
        if len(high) > len(low):
            heapq.heappush(low, -heapq.heappop(high))
    return best


def exploded(record: dict, factor: float = SPIKE_FACTOR) -> bool:
    """True when the run diverged (:func:`failure_reason`) or its gradient norm spiked to at least
    ``factor`` times the median before it (:func:`spike_ratio` of ``steps.grad_norm``).

    Example:
        >>> exploded({"outcome": "censored", "steps": {"grad_norm": [1.0] * 6 + [10.0]}})
        True
    """
    if record.get("failed") or record.get("diverged") or record.get("outcome") == "diverged":
        return True
    return spike_ratio((record.get("steps") or {}).get("grad_norm") or []) >= factor


# ----------------------------------------------------------------------------- the rule


def _counts(pt: Point) -> str:
    where = f" at {pt.label}" if pt.label else ""
    return f"{pt.a} of {pt.n_a} against {pt.b} of {pt.n_b}{where}"


def _raw_p(pt: Point) -> float:
    if pt.p is None:
        return fisher_p(pt.a, pt.n_a, pt.b, pt.n_b)
    return float(pt.p) if math.isfinite(pt.p) else 1.0


def _favours(pt: Point) -> int:
    if pt.favours is not None:
        return int(np.sign(pt.favours))
    return int(np.sign(pt.a / pt.n_a - pt.b / pt.n_b))


def decide(points: Sequence[Point], premise: bool = True, premise_why: str = "",
           names: tuple[str, str] = ("A", "B"), counting: str = "successes",
           test_name: str = "Fisher's exact test") -> Verdict:
    """The verdict of a claim that arm A (``names[0]``) does better than B on ``counting`` at
    ``points`` (see the module docstring). Any ``counting`` other than ``"successes"`` (such as
    ``"failures"`` or ``"collapses"``) counts something bad and flips what "better" means: a
    claim that A fails *more* passes its counts as ``a``, and more is the claimed direction.
    Points that carry their own p-value (:class:`Point` ``p``, from the test ``test_name``) are
    decided by it, in the direction they give (``favours``), with the same Holm adjustment,
    level, censoring and tie rules."""
    a_name, b_name = names
    if not premise:
        return Verdict(PREMISE_NOT_MET, premise_why or "The claim's premise was not met.", "premise check")
    points = [pt for pt in points if pt.n_a > 0 and pt.n_b > 0]
    if not points:
        return Verdict(NOT_DECIDED, "No point has runs of both arms.")
    raw = [_raw_p(pt) for pt in points]
    adj = holm(raw) if len(points) > 1 else raw
    test = test_name + (f", Holm-adjusted over {len(points)} points" if len(points) > 1 else "")
    for_a = [i for i, pt in enumerate(points) if adj[i] < ALPHA and _favours(pt) > 0]
    for_b = [i for i, pt in enumerate(points) if adj[i] < ALPHA and _favours(pt) < 0]
    # the point that speaks for the verdict: the smallest adjusted p; among ties, the smallest raw p,
    # then the largest difference in shares (not a 0 of 10 against 0 of 10 when another point differs)
    best = min(range(len(points)), key=lambda i: (adj[i], raw[i], -abs(points[i].a / points[i].n_a
                                                                     - points[i].b / points[i].n_b)))
    p, deciding = float(adj[best]), points[best]
    p_name = "Holm-adjusted p" if len(points) > 1 else "p"
    da, db = deciding.names or names
    counts = f"{da} {_counts(deciding)} ({db}; {counting})"
    if for_a and for_b:
        return Verdict(NOT_DECIDED, f"{DEPENDS}: {a_name} did better at "
                       f"{'; '.join(points[i].label or str(i) for i in for_a)}; and worse at "
                       f"{'; '.join(points[i].label or str(i) for i in for_b)}.", test, p)
    if for_a or for_b:
        winner_is_a = bool(for_a)
        # with failures counted, the arm with the higher count is the one doing worse
        claimed = winner_is_a
        loser_improving = sum((pt.improving_b if winner_is_a != (counting != "successes") else pt.improving_a)
                              for pt in (points[i] for i in (for_a or for_b)))
        if loser_improving:
            return Verdict(NOT_DECIDED, f"{counts}, {p_name} = {p:.2g}; but {loser_improving} of the losing arm's runs "
                           "hit the cap while still improving, so the cap may have cut them short.", test, p)
        return Verdict(SUPPORTED if claimed else CONTRADICTED, f"{counts}, {p_name} = {p:.2g}.", test, p)
    improving = sum(pt.improving_a + pt.improving_b for pt in points)
    if improving:
        return Verdict(NOT_DECIDED, f"No point differs (smallest {p_name} = {p:.2g}: {counts}), and "
                       f"{improving} {'run' if improving == 1 else 'runs'} hit the cap while still improving.", test, p)
    return Verdict(NO_DIFFERENCE, f"No point differs: smallest {p_name} = {p:.2g} ({counts}).", test, p)


def markdown(verdict: Verdict) -> str:
    """``"**supported**. why"``: a verdict as the pages print it."""
    return f"**{verdict.word}**. {verdict.why}"
