"""The chapter "The classic experiments, rerun": the adding problem and the temporal-order task
(:mod:`rnnbook.synthetic`) on the book's engine, side by side with what the papers report.

Every run is a :class:`rnnbook.training.TrainConfig` with ``task="adding"`` or
``task="temporal_order"`` (Pascanu et al.'s variant), trained by :mod:`rnnbook.criterion` on a
fresh seeded batch per update, checked every ``repro_check_every`` updates on ``repro_n_val``
held-out sequences, until under 1 % of them are wrong (Pascanu et al.'s rule; an adding sequence
is wrong when its squared error on the target, the *mean* of the two marked numbers as in their
code, exceeds 0.04), the run diverges, or ``repro_max_updates`` run out (censored). Every arm uses
plain SGD (no momentum) at ``repro_learning_rate``, as Pascanu et al. did; "clipped" arms rescale
the global gradient norm to at most ``repro_clip``.

* **adding**: each of ``repro_adding_configs`` (clipped) at each of ``repro_adding_lens``;
  ``"tanh-normal"`` is Pascanu et al.'s "basic tanh" (input, recurrent and output weights
  N(0, 0.1) with ``repro_input_std`` = 0.1, biases zero), ``"tanh-orthogonal"`` the Keras default;
* **temporal order**: the basic tanh without and with clipping (Pascanu's MSGD and MSGD-C), and
  each of ``repro_order_configs`` (clipped), at each of ``repro_order_lens``.

Verdicts. "This configuration solves the task" (:func:`verdict_solves`) compares this book's
count with the paper's; "one arm does better than another" (clipping, :func:`verdict_compare`)
goes through :func:`rnnbook.verdicts.decide` (Fisher's exact test per T, Holm-adjusted; a loser
censored while still improving demotes; "contradicted" needs a significant difference the other
way), whose word is read as the chapter's by :data:`FROM_DECIDE`. The constant-prediction row
checks the book's own generator (:func:`check_generator`); it reproduces nothing.

Example:
    >>> verdict_solves(5, 5, paper=(5, 5))[0]
    'reproduced'
    >>> verdict_compare([verdicts.Point(0, 3, 0, 3)])[0]
    'no difference detected'
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from rnnbook import sweeps, synthetic, verdicts
from rnnbook.choices import NORMAL_STD
from rnnbook.experiments import reruns
from rnnbook.experiments.common import ExperimentError, fmt_ci, outcomes, parse_rnn_config, wilson_interval
from rnnbook.training import TrainConfig

#: The chapter's parameters, as its ``parameters`` cell names them.
PARAMS = ("repro_seeds", "repro_adding_lens", "repro_adding_configs", "repro_order_lens", "repro_order_configs",
          "repro_units", "repro_batch_size", "repro_learning_rate", "repro_clip", "repro_input_std",
          "repro_max_updates", "repro_check_every", "repro_n_val", "repro_n_test", "rerun_samples", "rerun_updates")
#: The chapter's shipped reference records (:mod:`rnnbook.reference`): ``data/reference/reproductions-*.jsonl.gz``.
STORE = "reproductions"
#: Verdicts of a reproduction row of the summary table ("did this build reproduce the paper's claim").
VERDICTS = ("reproduced", "partly", "no difference detected", "not at this budget", "contradicted", "not verified")
REPRODUCED, PARTLY, NO_DIFFERENCE, NOT_AT_BUDGET, CONTRADICTED, NOT_VERIFIED = VERDICTS
#: A comparison's word (:func:`rnnbook.verdicts.decide`) as a reproduction verdict of the claim "A does better".
FROM_DECIDE = {verdicts.SUPPORTED: REPRODUCED, verdicts.CONTRADICTED: CONTRADICTED,
               verdicts.NO_DIFFERENCE: NO_DIFFERENCE, verdicts.NOT_DECIDED: NOT_AT_BUDGET,
               verdicts.PREMISE_NOT_MET: NOT_AT_BUDGET}
#: The words of the generator check: a check of the book's own code, not a reproduction.
CHECK_WORDS = ("generator check passed", "generator check failed")
#: Task label of the generator check's row.
CHECK_TASK = "adding (check of this book's generator)"
#: Pascanu et al.'s "basic tanh" (every weight N(0, 0.1)): the configuration of their arms.
PASCANU_KEY = "tanh-normal"
#: The temporal-order arms Pascanu et al. compare: (suffix of the label, clipped).
PASCANU_ARMS = (("SGD (MSGD)", False), ("SGD + clipping (MSGD-C)", True))
#: Hochreiter & Schmidhuber (1997), Table 9, task 6a: training sequences to success (mean of 20 trials) ...
HS_SEQUENCES_TO_SUCCESS = 31_390
#: ... and the trials, every one of which solved the task.
HS_TRIALS = 20
#: Pascanu et al. (2013, §4.1.1): the cap of updates per run.
PASCANU_MAX_UPDATES = 5_000_000
#: The always-1 predictor's MSE on the *sum* of the two numbers, as Arjovsky et al. (2016) quote Le et al.
LE_ALWAYS_ONE_MSE = 0.167
#: A run "beats the bar" on the adding problem when its test MSE is this many standard errors of the
#: constant predictor's MSE below that MSE (:func:`bar_threshold`); the generator check's tolerance too.
BAR_MARGIN_SE = 3.0
#: Test sequences the generator check measures the constant predictor on (Pascanu et al.'s evaluation size).
BAR_SEQUENCES = synthetic.SOLVED_EVAL_SEQUENCES


# ----------------------------------------------------------------------------- configurations


def pick(params: dict) -> dict:
    """The chapter's parameters out of ``params`` (a clear error naming what is missing or wrong)."""
    missing = [n for n in PARAMS if n not in params]
    if missing:
        raise ExperimentError(f"reproductions: missing parameter(s) {', '.join(missing)}; it needs {', '.join(PARAMS)}")
    p = {n: params[n] for n in PARAMS}
    for name in ("repro_seeds", "repro_adding_lens", "repro_order_lens", "repro_adding_configs"):
        if len(p[name]) < 1:
            raise ExperimentError(f"reproductions: {name} must hold at least one value")
    for t in p["repro_adding_lens"]:
        if not isinstance(t, int) or t < synthetic.MIN_SEQ_LEN["adding"]:
            raise ExperimentError(f"reproductions: adding length {t!r} must be an integer >= "
                                  f"{synthetic.MIN_SEQ_LEN['adding']}")
    for t in p["repro_order_lens"]:
        if not isinstance(t, int) or t < synthetic.MIN_SEQ_LEN["pascanu2013"]:
            raise ExperimentError(f"reproductions: temporal-order length {t!r} must be an integer >= "
                                  f"{synthetic.MIN_SEQ_LEN['pascanu2013']}")
    for key in [*p["repro_adding_configs"], *p["repro_order_configs"]]:
        parse_rnn_config(key)
    if any(parse_rnn_config(k).key == PASCANU_KEY for k in p["repro_order_configs"]):
        raise ExperimentError(f"reproductions: repro_order_configs need not list {PASCANU_KEY!r}: the temporal-order "
                              "task always trains it, without and with clipping (Pascanu et al.'s arms)")
    return p


def base_config(p: dict, task: str, seq_len: int) -> TrainConfig:
    """SGD (no momentum) clipped at ``repro_clip``, to the 1 %-error criterion (seed 0)."""
    return TrainConfig(task=task, seq_len=int(seq_len), units=p["repro_units"], batch_size=p["repro_batch_size"],
                       optimizer="sgd", momentum=0.0, learning_rate=float(p["repro_learning_rate"]),
                       clip_mode="global_clipnorm", clip_threshold=float(p["repro_clip"]),
                       input_std=float(p["repro_input_std"]), n_val=p["repro_n_val"], n_test=p["repro_n_test"],
                       max_updates=p["repro_max_updates"], check_every=p["repro_check_every"],
                       target_acc=1.0 - synthetic.SOLVED_ERROR_RATE, stream="fresh")


def pascanu_label(clipped: bool) -> str:
    """The label of Pascanu et al.'s temporal-order arm, e.g. ``"tanh + N(0, 0.1), SGD + clipping (MSGD-C)"``."""
    return f"{parse_rnn_config(PASCANU_KEY).label}, {PASCANU_ARMS[1 if clipped else 0][0]}"


def order_label(key: str) -> str:
    """The label of another temporal-order arm (clipped): ``"LSTM, SGD + clipping"``."""
    return f"{parse_rnn_config(key).label}, SGD + clipping"


def adding_grid(p: dict) -> tuple[list[TrainConfig], list[str]]:
    """Configurations and labels of the adding problem (each configuration clipped, every T)."""
    configs, labels = [], []
    for t in p["repro_adding_lens"]:
        for key in p["repro_adding_configs"]:
            spec = parse_rnn_config(key)
            configs.append(spec.apply(base_config(p, "adding", t)))
            labels.append(spec.label)
    return configs, labels


def order_grid(p: dict) -> tuple[list[TrainConfig], list[str]]:
    """Configurations and labels of the temporal-order task: Pascanu's two basic-tanh arms, then the others."""
    configs, labels = [], []
    basic = parse_rnn_config(PASCANU_KEY)
    for t in p["repro_order_lens"]:
        base = base_config(p, "temporal_order", t)
        for _, clipped in PASCANU_ARMS:
            configs.append(basic.apply(base, clip_mode="global_clipnorm" if clipped else "none"))
            labels.append(pascanu_label(clipped))
        for key in p["repro_order_configs"]:
            configs.append(parse_rnn_config(key).apply(base))
            labels.append(order_label(key))
    return configs, labels


def plan(params: dict) -> list[TrainConfig]:
    """Every training run of the chapter (seeds applied), for ``rnnbook build --dry-run``."""
    p = pick(params)
    return sweeps.with_seeds(adding_grid(p)[0] + order_grid(p)[0], p["repro_seeds"])


# ----------------------------------------------------------------------------- verdicts


def k_of_n(k: int, n: int) -> str:
    """``"3 of 4"``."""
    return f"{int(k)} of {int(n)}"


def verdict_solves(successes: int, runs: int, paper: tuple[int, int] | None = None, budget_reached: bool = False,
                   hard_failures: int = 0) -> tuple[str, str]:
    """Verdict on "this configuration solves the task", from this book's ``successes`` of ``runs``
    and the paper's ``(successes, runs)`` (None: the paper's figure could not be checked):

    * not verified without the paper's figure;
    * reproduced when every run succeeded, partly when some did;
    * when none did: contradicted only when the runs had at least the paper's budget
      (``budget_reached``) or most of them failed outright (diverged or dead, ``hard_failures``),
      *and* the paper's count is significantly higher (:func:`rnnbook.verdicts.decide`, the paper
      as arm A); otherwise not at this budget.
    """
    if runs < 1 or not 0 <= successes <= runs:
        raise ExperimentError(f"verdict_solves: need 0 <= successes <= runs, runs >= 1; got {successes}/{runs}")
    tally = f"{k_of_n(successes, runs)} runs reached the criterion"
    if paper is None:
        return NOT_VERIFIED, f"the paper's figure could not be checked; here {tally}"
    if successes == runs:
        return REPRODUCED, tally
    if successes:
        return PARTLY, tally
    if not (budget_reached or hard_failures * 2 > runs):
        return NOT_AT_BUDGET, f"{tally}; every other run was censored before the paper's budget"
    decided = verdicts.decide([verdicts.Point(paper[0], paper[1], 0, runs)], names=("the paper", "this book"))
    how = ", with at least the paper's budget" if budget_reached else f"; {hard_failures} diverged or died"
    word = CONTRADICTED if decided.word == verdicts.SUPPORTED else NOT_AT_BUDGET
    return word, f"{tally}{how}; against the paper: {decided.word}. {decided.why}"


def verdict_compare(points, premise: bool = True, premise_why: str = "",
                    names: tuple[str, str] = ("A", "B")) -> tuple[str, str, verdicts.Verdict]:
    """Verdict on a paper's claim that arm A does better than B, decided by
    :func:`rnnbook.verdicts.decide` at ``points`` (one :class:`rnnbook.verdicts.Point` per T) and
    read as the chapter's word (:data:`FROM_DECIDE`): ``(word, why, the decision)``."""
    decided = verdicts.decide(points, premise, premise_why, names)
    return FROM_DECIDE[decided.word], f"{decided.word}: {decided.why}", decided


def check_generator(measured: float, n: int) -> tuple[str, str]:
    """The generator check: the MSE of predicting the expected target, ``measured`` on ``n``
    sequences, against the value computed from the distribution (within :data:`BAR_MARGIN_SE`
    standard errors). A check of the book's own code, not a reproduction of a paper."""
    if not (math.isfinite(measured) and n >= 1):
        raise ExperimentError(f"check_generator: a finite MSE and n >= 1 needed; got {measured!r}, {n!r}")
    computed, se = synthetic.ADDING_BASELINE_MSE, synthetic.ADDING_BASELINE_SD / math.sqrt(n)
    ok = abs(measured - computed) <= BAR_MARGIN_SE * se
    factor = synthetic.ADDING_SUM_SCALE ** 2
    rounded = "that value rounded" if round(factor * computed, 3) == LE_ALWAYS_ONE_MSE else "a different value"
    return CHECK_WORDS[0 if ok else 1], (
        f"a check of this book's own generator, not a reproduction: predicting {synthetic.ADDING_CONSTANT:g} "
        f"gives MSE {measured:.4f} on {n:,} test sequences, against {computed:.4f} computed from the distribution "
        f"({'within' if ok else 'more than'} {BAR_MARGIN_SE:g} standard errors of {se:.5f}); on the sum scale "
        f"(x {factor:g}) {factor * measured:.4f} against {factor * computed:.4f} computed, and the paper's "
        f"{LE_ALWAYS_ONE_MSE:.3f} is {rounded}")


def bar_threshold(n_test: int) -> float:
    """The test MSE a run must stay below to beat the constant predictor: its MSE minus
    :data:`BAR_MARGIN_SE` standard errors of that MSE on ``n_test`` sequences."""
    return synthetic.ADDING_BASELINE_MSE - BAR_MARGIN_SE * synthetic.ADDING_BASELINE_SD / math.sqrt(n_test)


def min_p(n: int) -> float:
    """The smallest p-value one point of :func:`rnnbook.verdicts.decide` can give with ``n`` runs per
    arm (every run of one arm against none of the other)."""
    return verdicts.fisher_p(n, n, 0, n)


# ----------------------------------------------------------------------------- runs and tables


def _sweep(configs, labels, seeds, desc, cache_dir) -> pd.DataFrame:
    runs = outcomes(sweeps.run_sweep(configs, seeds, cache_dir=cache_dir, desc=f"reproductions: {desc}",
                                     labels=labels, store=STORE))
    rec = runs["record"]
    return runs.assign(test_loss=[r.get("test_loss", math.nan) for r in rec],
                       failure=[verdicts.failure_reason(r) for r in rec],
                       improving=[verdicts.still_improving(r) for r in rec],
                       peak_grad_norm=[peak_grad_norm(r) for r in rec])


def peak_grad_norm(record: dict) -> float:
    """The largest global gradient norm of a run, before clipping: from its per-update log, or from
    its per-check maxima when it is a compact shipped record (:func:`rnnbook.reference.compact`)."""
    return max((record.get("steps") or {}).get("grad_norm") or record.get("check_grad_norm_max") or [math.nan])


def _hard(part: pd.DataFrame) -> int:
    """Runs that failed outright: diverged or dead (:func:`rnnbook.verdicts.failure_reason`)."""
    return int(part["failure"].isin(["diverged", "dead"]).sum())


def curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Long frame of the checks: label, seq_len, seed, update, held-out MSE (or loss) and accuracy."""
    rows = []
    for _, r in runs.iterrows():
        rec = r["record"]
        for u, loss, acc in zip(rec.get("check_updates", []), rec.get("check_val_loss", []),
                                rec.get("check_val_acc", [])):
            rows.append({"label": r["label"], "seq_len": int(r["seq_len"]), "seed": int(r["seed"]),
                         "update": int(u), "val_loss": float(loss), "val_acc": float(acc)})
    return pd.DataFrame(rows, columns=["label", "seq_len", "seed", "update", "val_loss", "val_acc"])


def adding_table(runs: pd.DataFrame, n_test: int) -> pd.DataFrame:
    """Per configuration and T: runs, successes, runs below the bar (:func:`bar_threshold`), the
    median test MSE (and its value on the sum scale), the best, censored runs (and how many were
    still improving), runs that diverged or died."""
    bar, factor = bar_threshold(n_test), synthetic.ADDING_SUM_SCALE ** 2
    rows = []
    for (label, t), part in runs.groupby(["label", "seq_len"], sort=False):
        mse = part["test_loss"].to_numpy(float)
        med = float(np.nanmedian(mse)) if np.isfinite(mse).any() else math.nan
        rows.append({"configuration": label, "T": int(t), "runs": len(part), "successes": int(part["success"].sum()),
                     "below the bar": int(np.sum(mse < bar)), "median test MSE": med,
                     f"median test MSE x {factor:g} (sum scale)": factor * med,
                     "best test MSE": float(np.nanmin(mse)) if np.isfinite(mse).any() else math.nan,
                     "censored": int(part["censored"].sum()), "still improving": int(part["improving"].sum()),
                     "diverged or dead": _hard(part)})
    return pd.DataFrame(rows)


def order_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per arm and T: runs, successes (share with its Wilson 95 % interval), censored, still
    improving, diverged or dead, never above chance."""
    rows = []
    for (label, t), part in runs.groupby(["label", "seq_len"], sort=False):
        k, n = int(part["success"].sum()), len(part)
        share, lo, hi = wilson_interval(k, n)
        rows.append({"arm": label, "T": int(t), "runs": n, "successes": k, "success_rate": share, "ci_lo": lo,
                     "ci_hi": hi, "censored": int(part["censored"].sum()),
                     "still improving": int(part["improving"].sum()), "diverged or dead": _hard(part),
                     "never above chance": int((part["failure"] == "never above chance").sum())})
    return pd.DataFrame(rows)


def points(table: pd.DataFrame, arm_a: str, arm_b: str, column: str = "arm") -> list[verdicts.Point]:
    """One :class:`rnnbook.verdicts.Point` per T holding both arms: successes, runs, still improving."""
    out = []
    for t in sorted(set(table.loc[table[column] == arm_a, "T"]) & set(table.loc[table[column] == arm_b, "T"])):
        a = table[(table[column] == arm_a) & (table["T"] == t)].iloc[0]
        b = table[(table[column] == arm_b) & (table["T"] == t)].iloc[0]
        out.append(verdicts.Point(int(a["successes"]), int(a["runs"]), int(b["successes"]), int(b["runs"]),
                                  int(a.get("still improving", 0)), int(b.get("still improving", 0)),
                                  label=f"T = {int(t)}"))
    return out


def init_comparisons(res: dict) -> dict:
    """Orthogonal (the Keras default) against Pascanu et al.'s N(0, 0.1) for tanh, per task, by
    :func:`rnnbook.verdicts.decide` (None where a task did not train both)."""
    orth, basic = parse_rnn_config("tanh-orthogonal").label, parse_rnn_config(PASCANU_KEY).label
    pairs = {"adding": (res["adding_table"], "configuration", orth, basic),
             "order": (res["order_table"], "arm", order_label("tanh-orthogonal"), pascanu_label(True))}
    out = {}
    for task, (table, column, a, b) in pairs.items():
        pts = points(table, a, b, column)
        out[task] = verdicts.decide(pts, names=("orthogonal", f"N(0, {NORMAL_STD:g})")) if pts else None
    return out


def results(params: dict, cache_dir=sweeps.RUNS_DIR) -> dict:
    """Every run, table and verdict of the chapter, from its parameters (:data:`PARAMS`).

    Keys: ``params`` (picked), ``adding`` / ``order`` (run frames), ``adding_curves``,
    ``adding_table``, ``order_table``, ``bar_measured`` (the constant predictor's MSE on
    :data:`BAR_SEQUENCES` test sequences), ``clip_peak`` (the largest global gradient norm of the
    clipped basic-tanh runs, before clipping), ``summary`` (:func:`summary_table`), ``init``
    (:func:`init_comparisons`), ``budget`` (counts), ``train_seconds``.
    """
    p = pick(params)
    seeds = list(p["repro_seeds"])
    adding = _sweep(*adding_grid(p), seeds, "adding", cache_dir)
    order = _sweep(*order_grid(p), seeds, "temporal order", cache_dir)
    targets = synthetic.SyntheticTask("adding", max(p["repro_adding_lens"])).held_out(0, BAR_SEQUENCES, "test")[1]
    both = pd.concat([adding, order], ignore_index=True)
    clipped = order[order["label"] == pascanu_label(True)]["peak_grad_norm"].to_numpy(float)
    res = {"params": p, "adding": adding, "order": order, "adding_curves": curves(adding),
           "adding_table": adding_table(adding, p["repro_n_test"]), "order_table": order_table(order),
           "bar_measured": synthetic.constant_mse(targets), "bar_threshold": bar_threshold(p["repro_n_test"]),
           "clip_peak": float(np.nanmax(clipped)) if np.isfinite(clipped).any() else math.nan,
           "budget": {"n_runs": len(both), "n_censored": int(both["censored"].sum()),
                      "n_success": int(both["success"].sum()), "n_hard": _hard(both),
                      "n_improving": int(both["improving"].sum()),
                      "updates": int(both["updates"].sum()), "sequences": int(both["sequences_seen"].sum())},
           "train_seconds": float(both["wall_time"].sum())}
    res["summary"] = summary_table(res)
    res["init"] = init_comparisons(res)
    shipped = reruns.shipped_rows([adding, order])
    res["n_shipped"] = len(shipped)
    res["rerun"] = reruns.table([("this build's runs", shipped)], int(p["rerun_samples"]), int(p["rerun_updates"]),
                                sum(seeds) + 7 * len(p["repro_adding_lens"]), STORE)
    return res


def _ours(p: dict) -> str:
    return (f"{p['repro_units']} units, SGD lr {float(p['repro_learning_rate']):g}, global norm clipped at "
            f"{float(p['repro_clip']):g}, batch {p['repro_batch_size']}, input N(0, {float(p['repro_input_std']):g}), "
            f"cap {p['repro_max_updates']:,} updates")


def _count(table: pd.DataFrame, column: str, arm: str, t: int, what: str = "successes") -> int:
    return int(table.loc[(table[column] == arm) & (table["T"] == t), what].sum())


def summary_table(res: dict) -> pd.DataFrame:
    """``tbl-repro-summary``: the generator check, then each paper's claim against this book, with
    a verdict and its reason."""
    p, order, adding = res["params"], res["order_table"], res["adding_table"]
    to_max, add_max = max(p["repro_order_lens"]), max(p["repro_adding_lens"])
    rows = []

    def row(task, source, t_paper, config, paper_setup, paper_result, ours_setup, ours, verdict):
        rows.append({"task": task, "source": source, "T (paper)": t_paper, "T (here)": ours[0],
                     "configuration": config, "paper's setup": paper_setup, "paper's result": paper_result,
                     "this book's setup": ours_setup, "this book's result": ours[1], "verdict": verdict[0],
                     "why": verdict[1]})

    measured, c = res["bar_measured"], synthetic.ADDING_CONSTANT
    row(CHECK_TASK, "this book's generator; the bar of Le et al. 2015 as Arjovsky et al. 2016 quote it", "any",
        f"predict {c:g} always (1 on the sum scale)", "target: the sum of the two marked U[0, 1) numbers; predict 1",
        f"MSE {LE_ALWAYS_ONE_MSE:.3f}", f"target: their mean (Pascanu et al.'s scale); predict {c:g}",
        (add_max, f"MSE {measured:.4f} on {BAR_SEQUENCES:,} test sequences"), check_generator(measured, BAR_SEQUENCES))
    for key in p["repro_adding_configs"]:
        spec = parse_rnn_config(key)
        n, k = (_count(adding, "configuration", spec.label, add_max, w) for w in ("runs", "successes"))
        below = _count(adding, "configuration", spec.label, add_max, "below the bar")
        part = adding[(adding["configuration"] == spec.label) & (adding["T"] == add_max)]
        mse = float(part["median test MSE"].iloc[0]) if len(part) else math.nan
        ours = f"{k_of_n(below, n)} below the bar, {k_of_n(k, n)} under 1 % wrong; median test MSE {mse:.4f}"
        if spec.key == PASCANU_KEY:
            source, setup = ("Pascanu et al. 2013, §4.1 (adding)", "basic tanh: 50 units, every weight N(0, 0.1), "
                             "SGD lr 0.01, clip 1, batch 20; target the mean, wrong when squared error > 0.04")
        else:
            source, setup = "Le, Jaitly & Hinton 2015", "not verified (section 4.1 not read)"
        row("adding", source, "not verified", spec.label, setup, "not verified", _ours(p), (add_max, ours),
            verdict_solves(k, n, paper=None))
    msgd_c, msgd = pascanu_label(True), pascanu_label(False)
    k, n = _count(order, "arm", msgd_c, to_max), _count(order, "arm", msgd_c, to_max, "runs")
    row("temporal order", "Pascanu et al. 2013, §4.1.1 and Fig. 7", "50 to 200 (figure ticks not verified)", msgd_c,
        "50 tanh units, every weight N(0, 0.1) (basic tanh), SGD lr 0.01, clip 1, batch 20, cap 5M updates",
        "success rate in Fig. 7: not verified", _ours(p), (to_max, f"{k_of_n(k, n)} runs solved"),
        verdict_solves(k, n, paper=None))
    peak, clip = res.get("clip_peak", math.nan), float(p["repro_clip"])
    engaged = bool(np.isfinite(peak) and peak > clip)
    why_not = (f"clipping never acted: the clipped arm's global gradient norm stayed at or below the threshold "
               f"{clip:g} (largest {peak:.3g}), so both arms took the same steps")
    word, why, _ = verdict_compare(points(order, msgd_c, msgd), engaged, why_not, ("clipped", "unclipped"))
    clipped, unclipped = ((_count(order, "arm", a, to_max), _count(order, "arm", a, to_max, "runs")) for a in (msgd_c, msgd))
    row("temporal order", "Pascanu et al. 2013, §4.1.1", "50 to 200", "basic tanh, SGD with vs without clipping",
        "as above, MSGD vs MSGD-C", '"as the length of the sequence increases, using clipping becomes more '
        'important to achieve a better success rate"', _ours(p) + "; the unclipped arm without clipping",
        (to_max, f"clipped {k_of_n(*clipped)}, unclipped {k_of_n(*unclipped)}; largest gradient norm of the "
                 f"clipped arm {peak:.3g}"), (word, why))
    lstm = [key for key in p["repro_order_configs"] if parse_rnn_config(key).cell == "lstm"]
    if lstm:
        arm = order_label(lstm[0])
        k, n = _count(order, "arm", arm, to_max), _count(order, "arm", arm, to_max, "runs")
        hard = _count(order, "arm", arm, to_max, "diverged or dead")
        budget = p["repro_max_updates"] * p["repro_batch_size"]
        verdict = verdict_solves(k, n, paper=(HS_TRIALS, HS_TRIALS), budget_reached=budget >= HS_SEQUENCES_TO_SUCCESS,
                                 hard_failures=hard)
        row("temporal order", "Hochreiter & Schmidhuber 1997, task 6a", "100 to 110", "LSTM",
            "2 cell blocks of size 2, online, lr 0.5, 8 symbols", f"solved in every one of {HS_TRIALS} trials; "
            f"{HS_SEQUENCES_TO_SUCCESS:,} sequences to success (mean)", _ours(p) + " (Pascanu's 6 symbols)",
            (to_max, f"{k_of_n(k, n)} runs solved, each seeing at most {budget:,} sequences"), verdict)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- figures


def _close(fig):
    import matplotlib.pyplot as plt

    fig.tight_layout()
    plt.close(fig)
    return fig


def fig_adding(curves_frame: pd.DataFrame, bar: float = synthetic.ADDING_BASELINE_MSE):
    """Held-out MSE against updates, one panel per T, one colour per configuration, one line per seed;
    the constant predictor's MSE (1/24) dashed on every panel."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from rnnbook import plots

    plots.set_style()
    lens = sorted(curves_frame["seq_len"].unique())
    labels = list(dict.fromkeys(curves_frame["label"]))
    palette = dict(zip(labels, sns.color_palette("colorblind", len(labels))))
    fig, axes = plt.subplots(1, len(lens), figsize=(3.6 * len(lens) + 2.2, 3.6), sharey=True, squeeze=False)
    for ax, t in zip(axes[0], lens):
        part = curves_frame[curves_frame["seq_len"] == t]
        for label in labels:
            for seed, d in part[part["label"] == label].groupby("seed"):
                ax.plot(d["update"], d["val_loss"], color=palette[label], lw=1.2, marker="o", ms=3,
                        label=label if seed == part["seed"].min() else "_nolegend_")
        ax.axhline(bar, ls="--", lw=1, color="0.3", label=f"predict {synthetic.ADDING_CONSTANT:g} (MSE {bar:.3f})")
        ax.set_yscale("log")
        ax.set_title(f"T = {t}")
        ax.set_xlabel("updates")
    axes[0][0].set_ylabel("held-out MSE (log scale)")
    handles, names = axes[0][-1].get_legend_handles_labels()
    axes[0][-1].legend(handles, names, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    return _close(fig)


def fig_temporal_order(table: pd.DataFrame):
    """Success rate (Wilson 95 % interval) against T, one line per arm."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from rnnbook import plots

    plots.set_style()
    arms = list(dict.fromkeys(table["arm"]))
    colours = sns.color_palette("colorblind", len(arms))
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    for i, (arm, colour) in enumerate(zip(arms, colours)):
        d = table[table["arm"] == arm].sort_values("T")
        jitter = 1 + 0.03 * (i - (len(arms) - 1) / 2)
        err = [np.clip(d["success_rate"] - d["ci_lo"], 0, None), np.clip(d["ci_hi"] - d["success_rate"], 0, None)]
        ax.errorbar(d["T"] * jitter, d["success_rate"], yerr=err,
                    label=arm, color=colour, marker="os^vDP"[i % 6], capsize=2, lw=1.4, ms=5)
    lens = sorted(table["T"].unique())
    ax.set_xscale("log")
    ax.set_xticks(lens)
    ax.set_xticklabels([str(int(t)) for t in lens])
    ax.minorticks_off()
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("share of runs solved (< 1 % wrong)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    return _close(fig)


# ----------------------------------------------------------------------------- the page's values


def _list(values) -> str:
    return ", ".join(str(int(v)) for v in values)


def init_text(decided: verdicts.Verdict | None, task: str) -> str:
    """Markdown: the decision of orthogonal against N(0, 0.1) for tanh on ``task``."""
    if decided is None:
        return f"the {task} grid does not train both initialisations in this build"
    return verdicts.markdown(decided)


def min_p_text(n: int) -> str:
    """Markdown: whether ``n`` runs per arm can separate two arms at one T at all."""
    p = min_p(n)
    if p < verdicts.ALPHA:
        return (f"below the level {verdicts.ALPHA:g}, so a comparison can be decided at one T only when one arm "
                "succeeds far more often than the other")
    return (f"above the level {verdicts.ALPHA:g}: with {n} runs per arm no single T can show a difference, so "
            "every comparison of this build is undecided or a tie by construction")


def page_values(res: dict) -> dict:
    """Every value the chapter's prose pastes, by glue key (strings are Markdown)."""
    p, b, s = res["params"], res["budget"], res["summary"]
    add, order = res["adding_table"], res["order_table"]
    tally = s.loc[s["task"] != CHECK_TASK, "verdict"].value_counts()
    best = add.loc[add["median test MSE"].idxmin()] if add["median test MSE"].notna().any() else None
    factor, n_seeds = synthetic.ADDING_SUM_SCALE ** 2, len(p["repro_seeds"])
    init = res.get("init") or {}
    return {
        "repro_n_seeds": n_seeds, "repro_adding_lens": _list(p["repro_adding_lens"]),
        "repro_order_lens": _list(p["repro_order_lens"]), "repro_cap": p["repro_max_updates"],
        "repro_check_every": p["repro_check_every"], "repro_batch": p["repro_batch_size"],
        "repro_n_shipped": res["n_shipped"],
        "repro_cap_sequences": p["repro_max_updates"] * p["repro_batch_size"],
        "repro_lr": float(p["repro_learning_rate"]), "repro_clip": float(p["repro_clip"]),
        "repro_units": p["repro_units"], "repro_input_std": float(p["repro_input_std"]),
        "repro_normal_std": NORMAL_STD, "repro_n_val": p["repro_n_val"],
        "repro_n_runs": b["n_runs"], "repro_n_censored": b["n_censored"], "repro_n_success": b["n_success"],
        "repro_n_hard": b["n_hard"], "repro_n_improving": b["n_improving"], "repro_updates": b["updates"],
        "repro_sequences": b["sequences"], "repro_train_minutes": res["train_seconds"] / 60.0,
        "repro_adding_runs": len(res["adding"]), "repro_order_runs": len(res["order"]),
        "repro_adding_censored": int(res["adding"]["censored"].sum()),
        "repro_order_censored": int(res["order"]["censored"].sum()),
        "repro_constant": synthetic.ADDING_CONSTANT, "repro_sum_constant": synthetic.ADDING_CONSTANT * synthetic.ADDING_SUM_SCALE,
        "repro_bar": synthetic.ADDING_BASELINE_MSE, "repro_bar_sum": factor * synthetic.ADDING_BASELINE_MSE,
        "repro_bar_measured": res["bar_measured"], "repro_bar_measured_sum": factor * res["bar_measured"],
        "repro_bar_n": BAR_SEQUENCES, "repro_le_bar": LE_ALWAYS_ONE_MSE, "repro_scale_factor": factor,
        "repro_check_word": str(s.loc[s["task"] == CHECK_TASK, "verdict"].iloc[0]),
        "repro_bar_threshold": res["bar_threshold"], "repro_bar_margin": BAR_MARGIN_SE,
        "repro_below_bar": int(add["below the bar"].sum()),
        "repro_best_adding": (f"{best['configuration']} at T = {int(best['T'])} (median test MSE "
                              f"{best['median test MSE']:.4f})" if best is not None else "none"),
        "repro_wrong_rule": synthetic.ADDING_WRONG_SQUARED_ERROR,
        "repro_wrong_error": math.sqrt(synthetic.ADDING_WRONG_SQUARED_ERROR),
        "repro_wrong_error_sum": synthetic.ADDING_SUM_SCALE * math.sqrt(synthetic.ADDING_WRONG_SQUARED_ERROR),
        "repro_old_error": math.sqrt(synthetic.ADDING_WRONG_SQUARED_ERROR) / synthetic.ADDING_SUM_SCALE,
        "repro_chance_adding": synthetic.ADDING_BASELINE_ACCURACY,
        "repro_solved_rate": 100 * synthetic.SOLVED_ERROR_RATE, "repro_eval_n": synthetic.SOLVED_EVAL_SEQUENCES,
        "repro_n_symbols": len(synthetic.SYMBOLS["pascanu2013"]),
        "repro_chance_order": 1.0 / synthetic.TEMPORAL_ORDER_CLASSES,
        "repro_pascanu_cap": PASCANU_MAX_UPDATES,
        "repro_gap": PASCANU_MAX_UPDATES / p["repro_max_updates"],
        "repro_verdicts": "; ".join(f"{v}: {int(tally.get(v, 0))}" for v in VERDICTS if tally.get(v, 0)) or "none",
        "repro_order_text": order_text(order),
        "repro_init_adding_verdict": init_text(init.get("adding"), "adding"),
        "repro_init_order_verdict": init_text(init.get("order"), "temporal-order"),
        "repro_min_p": min_p(n_seeds), "repro_min_p_text": min_p_text(n_seeds),
        "repro_rule": verdicts.RULE_TEXT,
        # each row's verdict under its own name, for rnnbook diff (rnnbook.book.values)
        **{"repro_verdict_" + re.sub(r"[^a-z0-9]+", "_", f"{t} {c}".lower()).strip("_"): v
           for t, c, v in zip(s["task"], s["configuration"], s["verdict"]) if t != CHECK_TASK},
    }


def order_text(table: pd.DataFrame) -> str:
    """Markdown: each temporal-order arm's success share at the longest T, with its interval."""
    t = table["T"].max()
    part = table[table["T"] == t]
    return "; ".join(f"{arm}: {k_of_n(k, n)} ({fmt_ci(r, lo, hi)})" for arm, k, n, r, lo, hi in
                     zip(part["arm"], part["successes"], part["runs"], part["success_rate"], part["ci_lo"],
                         part["ci_hi"])) + f" (T = {int(t)})"


def all_runs(res: dict) -> pd.DataFrame:
    """Every run of the chapter, one row each, with its ``task``."""
    return pd.concat([res["adding"], res["order"]], ignore_index=True)
