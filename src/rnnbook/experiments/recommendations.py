"""The chapter "Recommendations" and the front page's short answer: the verdicts of the usual
answer's claims and the decision guide, read from the numbers of the chapters "When ReLU helps"
(:func:`rnnbook.experiments.relu.results`) and "Gradient clipping"
(:func:`rnnbook.experiments.clipping.results`). Nothing here trains or recomputes a number those
modules give: with the same parameters their runs load from the run cache.

Every verdict comes from the book's one rule (:mod:`rnnbook.verdicts`). Every line of advice
names the verdict it rests on; where that verdict is not "supported" the advice says what is
open instead of recommending, and no advice recommends a configuration that failed in the
book's own runs (:func:`measured_failures`, :func:`safe`).

Example:
    >>> verdict_cell(Verdict("supported", "Why."))
    '**supported**'
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rnnbook import verdicts as V
from rnnbook.experiments import clipping, relu
from rnnbook.experiments.relu import claims as relu_claims, long_budget
from rnnbook.experiments.common import role_label
from rnnbook.experiments.relu.interface import BASELINE, parse_interface
from rnnbook.verdicts import Verdict

#: The chapter reads the relu chapter's runs through it, shipped records included (the dry run counts them).
STORE = relu.STORE

#: The chapter's parameters: those of the two chapters whose numbers it reads.
PARAMS = tuple(dict.fromkeys(relu.PARAMS + clipping.PARAMS))
#: Claims of the usual answer and the literature: key -> the claim as the claims table states it.
CLAIMS = {**relu_claims.CLAIMS,
          "clip": "Gradient clipping keeps exploding gradients in check",
          "band": "Thresholds from half to ten times the average gradient norm can still converge"}
#: A configuration that failed in at least this share of its runs at a setting is never advised there.
FAILURE_SHARE = 0.5


def plan(params: dict) -> list:
    """The runs of the relu and clipping chapters: the ones this chapter loads (and would train,
    were they not cached)."""
    return relu.plan(_pick(params, relu.PARAMS)) + clipping.plan(_pick(params, clipping.PARAMS))


def _pick(params: dict, names) -> dict:
    return {n: params[n] for n in names if n in params}


def results(params: dict, reference_preset: dict | None = None) -> dict:
    """The two chapters' results, the evidence the answer rests on (:func:`evidence`), the claims'
    verdicts, the advice and the headline; ``reference_preset`` as for
    :func:`rnnbook.experiments.relu.results` (the long-budget answer)."""
    reader = long_budget.reader(reference_preset) if reference_preset is not None else None
    r = relu.results(_pick(params, relu.PARAMS), long_budget_reader=reader, rerun_sample=False)  # the relu page re-runs
    c = clipping.results(_pick(params, clipping.PARAMS))
    ev = evidence(r)
    verdicts = claim_verdicts(ev["verdicts"], c, relu.collapse_answer(r)["study"]["verdicts"]["collapse"])
    failures = measured_failures(ev)
    adv = advice(ev, c, verdicts, failures)
    return {"relu": r, "evidence": ev, "clipping": c, "verdicts": verdicts, "failures": failures, "advice": adv,
            "headline": headline(ev, verdicts)}


def evidence(r: dict) -> dict:
    """What the answer rests on, shaped like the relu chapter's results (``verdicts``, ``numbers``,
    ``table``, ``budget``, ``params``, the ``lag``/``lr``/``width`` runs).

    The long-budget answer (the reference runs at their top cap, :func:`.long_budget.answer`)
    decides every claim it has the runs for; the others keep this build's own sweep's verdict.
    Each reason starts with the budget it was measured at, so a reader always sees which. The
    reach, the success per level and the decision map come from the reference runs when some lag
    of them is complete; ``reference_lag`` holds those runs so their failures count too
    (:func:`measured_failures`). ``source`` is ``"reference"`` or ``"build"``, ``complete``
    False while longer lags of the reference are not computed (a reach may grow)."""
    long = long_budget.answer(r.get("long"))
    own = int(r["budget"]["max_updates"])
    verdicts = {}
    for key in relu_claims.CLAIMS:
        lv = long["verdicts"].get(key) if long else None
        if lv is not None and lv.word != long_budget.NOT_COMPUTED:
            verdicts[key] = lv._replace(why=f"At {long['caps'][key]:,} updates (the reference runs): {lv.why}")
        else:
            sv = _as_verdict(r["verdicts"][key])
            pending = "; the reference runs do not decide it yet" if long else ""
            verdicts[key] = sv._replace(why=f"At {own:,} updates (this build's sweep{pending}): {sv.why}")
    ev = {**r, "verdicts": verdicts, "source": "build", "complete": True, "cap": own}
    if long:
        ev.update(source="reference", complete=long["complete"], lags_done=long["lags_done"], cap=long["cap"],
                  table=long["table"], budget=long["budget"], reference_lag=long["lag"],
                  top_up_seeds=long["top_up_seeds"],
                  numbers={**r["numbers"], **{k: long[k] for k in ("reach", "best_simple_reach", "best_gated_reach",
                                                                   "success_by_level")}})
    return ev


def _as_verdict(x) -> Verdict:
    if isinstance(x, Verdict):
        return x
    word, why = (x[0], x[1]) if isinstance(x, (tuple, list)) else (str(x), "")
    return Verdict(str(word).strip("*").strip(), str(why))


def _verdict_from(c: dict, key: str) -> Verdict:
    """A clipping verdict from :func:`clipping.results` (``verdicts[key]`` or ``claim_<key>``)."""
    if isinstance(c.get("verdicts"), dict) and key in c["verdicts"]:
        return _as_verdict(c["verdicts"][key])
    return _as_verdict((c.get(f"claim_{key}", V.NOT_DECIDED), c.get(f"claim_{key}_why", "")))


def claim_verdicts(relu_verdicts: dict, clip: dict, long_lags: Verdict | None = None) -> dict[str, Verdict]:
    """The :class:`~rnnbook.verdicts.Verdict` of every claim of :data:`CLAIMS`; the clipping claim's
    by :func:`clip_verdict` (``long_lags``: the relu chapter's long-lag collapse verdict)."""
    out = {k: _as_verdict(relu_verdicts[k]) for k in relu_claims.CLAIMS}
    out["clip"] = clip_verdict(_verdict_from(clip, "clip"), long_lags)
    out["band"] = _verdict_from(clip, "band")
    return {k: out[k] for k in CLAIMS}


def clip_verdict(short: Verdict, long_lags: Verdict | None) -> Verdict:
    """The clipping claim's verdict: the clipping chapter's (its short-lag SGD setting); when that
    setting did not explode (premise not met) and the relu chapter's long-lag comparison had
    collapses to prevent, that comparison's verdict on collapses, saying where it comes from.

    Example:
        >>> clip_verdict(Verdict(V.PREMISE_NOT_MET, "No explosion."), Verdict(V.SUPPORTED, "Fewer.")).why
        'At the long lags of the relu chapter (Adam; the short-lag setting did not explode): Fewer.'
    """
    short = _as_verdict(short)
    if short.word != V.PREMISE_NOT_MET or long_lags is None or long_lags.word == V.PREMISE_NOT_MET:
        return short
    return Verdict(long_lags.word, "At the long lags of the relu chapter (Adam; the short-lag setting did not "
                   f"explode): {long_lags.why}", long_lags.test, long_lags.p)


def verdict_cell(verdict: Verdict) -> str:
    """The verdict word in bold (the table's middle column)."""
    return f"**{_as_verdict(verdict).word}**"


def claims_table(verdicts: dict) -> pd.DataFrame:
    """One row per claim: the claim, the verdict here, the test with its p-value, and why."""
    rows = []
    for k, v in verdicts.items():
        v = _as_verdict(v)
        test = v.test or "none"
        if np.isfinite(v.p):
            test += f", p = {v.p:.2g}"
        rows.append({"claim": CLAIMS[k], "verdict here": v.word, "rule applied and test": test, "why": v.why})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- measured failures


def measured_failures(r: dict) -> pd.DataFrame:
    """Every setting of the relu chapter's runs (and of the reference runs read, ``reference_lag``,
    when :func:`evidence` gives them) at which a configuration failed (the book's one failure rule)
    in at least :data:`FAILURE_SHARE` of its runs: ``label``, ``interface``, ``units``, ``sweep``,
    failed runs and runs."""
    rows = []
    for key in ("lag", "reference_lag", "lr", "width"):
        if key not in r:
            continue
        runs = relu_claims.with_failures(r[key])
        if "interface" not in runs:
            runs = runs.assign(interface=BASELINE)
        for (label, level, units), part in runs.groupby(["label", "interface", "units"], sort=False):
            k, n = int(part["failed"].sum()), len(part)
            if n and k / n >= FAILURE_SHARE:
                rows.append({"sweep": key, "label": label, "interface": level, "units": int(units),
                             "failed": k, "runs": n})
    return pd.DataFrame(rows, columns=["sweep", "label", "interface", "units", "failed", "runs"])


def safe(label: str, units: int, failures: pd.DataFrame, interface: str | None = None) -> bool:
    """True unless ``label`` with ``units`` hidden units (at ``interface``, if given) failed in the
    book's runs (:func:`measured_failures`)."""
    hit = (failures["label"] == label) & (failures["units"] == int(units))
    if interface is not None:
        hit &= failures["interface"] == interface
    return not bool(hit.any())


# ----------------------------------------------------------------------------- the answer


def best_level(r: dict) -> str:
    """The interface level with the highest success rate over the lag grid (the Keras default on a tie)."""
    rates = r["numbers"]["success_by_level"]
    return max(rates, key=lambda s: (rates[s], s == BASELINE))


def headline(r: dict, verdicts: dict) -> str:
    """The book's short answer (Markdown, a few short sentences): what to do, each part following
    from a verdict; the hedges stay in the claims table."""
    n, v = r["numbers"], {k: _as_verdict(x) for k, x in verdicts.items()}
    parts = []
    if v["relu_memory"].word == V.SUPPORTED and v["relu_unstable"].word != V.SUPPORTED:
        parts.append("ReLU reached longer lags than tanh here: try it, with clipping.")
    else:
        parts.append("Keep tanh: ReLU did not remember measurably further here.")
    reach = n["best_simple_reach"].get(BASELINE, math.nan)
    if v["gated"].word == V.SUPPORTED:
        parts.append(f"Beyond a lag of {int(reach)} frames{_open_above(reach, r)}, use an LSTM or GRU."
                     if np.isfinite(reach)
                     else "Use an LSTM or GRU for memory.")
    else:
        parts.append(f"A simple RNN on Keras-default features remembered {_lags(reach, r)}.")
    if v["interface"].word == V.SUPPORTED:
        parts.append("Check the scale of the CNN features entering the RNN: it changed what learned.")
    if v["clip"].word == V.SUPPORTED:
        parts.append("Clip the global gradient norm.")
    elif v["clip"].word == V.PREMISE_NOT_MET:
        parts.append("No setting here exploded, so clipping's rescue is untested at this budget.")
    elif v["clip"].word == V.NO_DIFFERENCE:
        parts.append("Clipping made no measurable difference here.")
    return " ".join(parts)


def _lags(x: float, ev: dict | None = None) -> str:
    """A reach in words; when ``ev`` (:func:`evidence`) says longer lags are not computed yet and
    the reach is the longest lag computed, says so (it may grow)."""
    if not np.isfinite(x):
        return "at no lag of the grid"
    return f"lags up to {int(x)} frames" + _open_above(x, ev)


def _open_above(x: float, ev: dict | None) -> str:
    """``" (longer lags are not computed yet)"`` when a reach ``x`` may grow with the reference
    computation (:func:`evidence`), else nothing."""
    grows = ev is not None and not ev.get("complete", True) and int(x) >= max(ev.get("lags_done") or [0])
    return " (longer lags are not computed yet)" if grows else ""


def advice(r: dict, clip: dict, verdicts: dict, failures: pd.DataFrame) -> dict:
    """The decision guide's advice (Markdown), each line naming the verdict it rests on."""
    n, v = r["numbers"], {k: _as_verdict(x) for k, x in verdicts.items()}
    units = int(r["params"]["units"])

    def rests(key):
        return f" *(Rests on: {CLAIMS[key].lower()}, **{v[key].word}**.)*"

    a = {}
    if v["interface"].word == V.SUPPORTED:
        best = best_level(r)
        a["advice_interface"] = (f"Measure the RMS of the features entering the recurrent layer and compare with "
                                 f"the levels here; the most successful level was {parse_interface(best).label}."
                                 + rests("interface"))
    else:
        a["advice_interface"] = ("Open: no interface level made a difference the rule could detect; check the "
                                 "input drive anyway." + rests("interface"))
    tanh, relu_l = role_label("tanh"), role_label("relu")
    if v["relu_memory"].word == V.SUPPORTED and safe(relu_l, units, failures, BASELINE):
        a["advice_activation"] = "ReLU (orthogonal) is worth a try, with clipping." + rests("relu_memory")
    elif safe(tanh, units, failures, BASELINE):
        a["advice_activation"] = ("**Keep tanh**, the Keras default, with Keras-default features"
                                  + _failed_elsewhere(tanh, units, failures) + "." + rests("relu_memory"))
    else:
        a["advice_activation"] = ("Open: tanh failed at this width with Keras-default features in the book's runs "
                                  "and ReLU was not shown to reach further." + rests("relu_memory"))
    reach = n["best_simple_reach"].get(BASELINE, math.nan)
    if v["gated"].word == V.SUPPORTED:
        a["advice_lag"] = (f"A simple RNN met the criterion {_lags(reach, r)} with Keras-default features; "
                           "beyond that, use an **LSTM or GRU**." + rests("gated"))
    elif v["gated"].word == V.CONTRADICTED:
        a["advice_lag"] = (f"A simple RNN met the criterion {_lags(reach, r)} with Keras-default features; "
                           "at the points the rule compares, a gated cell did worse than the simple RNN, so the "
                           "book's runs give no reason to expect an LSTM or GRU to remember further on its own "
                           "(the claims table gives the deciding point)." + rests("gated"))
    elif v["gated"].why.startswith(V.DEPENDS):
        a["advice_lag"] = (f"A simple RNN met the criterion {_lags(reach, r)} with Keras-default features. "
                           "Whether an LSTM or GRU reaches further is not decided: a gated cell did better "
                           "than the simple RNN at some points of the grid and worse at others (the claims "
                           "table names them), so try both on your own features." + rests("gated"))
    else:
        a["advice_lag"] = (f"A simple RNN met the criterion {_lags(reach, r)} with Keras-default features; "
                           "whether a gated cell reaches further is open here." + rests("gated"))
    a["advice_clip_mode"] = str(clip.get("advice_clip_mode", "See the clipping chapter.")) + rests("clip")
    a["advice_threshold"] = str(clip.get("advice_threshold", "See the clipping chapter.")) + rests("band")
    return a


def _failed_elsewhere(label: str, units: int, failures: pd.DataFrame) -> str:
    """``" (it failed with He-uniform features)"``: the other interface levels at which ``label``
    with ``units`` units failed (:func:`measured_failures`), or nothing."""
    hit = failures[(failures["label"] == label) & (failures["units"] == int(units)) & (failures["interface"] != BASELINE)]
    levels = list(dict.fromkeys(parse_interface(s).label for s in hit["interface"]))
    return f" (it failed with {' and with '.join(levels)} features)" if levels else ""


#: The decision guide's questions: advice key -> (question, the claim the advice rests on).
GUIDE = {"advice_interface": ("How do I connect the CNN to the RNN?", "interface"),
         "advice_activation": ("tanh or ReLU?", "relu_memory"),
         "advice_lag": ("How long must the network remember?", "gated"),
         "advice_clip_mode": ("Which clipping option?", "clip"),
         "advice_threshold": ("Which threshold?", "band")}


def guide_table(advice_lines: dict, verdicts: dict) -> pd.DataFrame:
    """The decision guide as data: question, advice (Markdown), the claim it rests on and its verdict."""
    return pd.DataFrame([{"question": q, "advice": advice_lines.get(k, ""), "rests on": CLAIMS[c],
                          "verdict": _as_verdict(verdicts[c]).word} for k, (q, c) in GUIDE.items()])


def page_values(res: dict) -> dict:
    """Every value the chapter (and the front page) pastes, by glue key."""
    r, verdicts = res["evidence"], res["verdicts"]
    n = r["numbers"]
    vals = {"headline": res["headline"], "best_level": parse_interface(best_level(r)).label,
            "baseline_label": parse_interface(BASELINE).label, "tanh_label": role_label("tanh"),
            "rule_text": V.RULE_TEXT, "failure_share": FAILURE_SHARE}
    vals.update(long_budget.front_values(r.get("long")))  # the long-budget answer, as far as it is computed
    for k, v in verdicts.items():
        v = _as_verdict(v)
        vals[f"claim_{k}"] = verdict_cell(v)
        vals[f"claim_{k}_why"] = v.why or "See the chapter."
        vals[f"claim_{k}_test"] = (v.test or "none") + (f", p = {v.p:.2g}" if np.isfinite(v.p) else "")
    vals.update(res["advice"])
    words = [_as_verdict(v).word for v in verdicts.values()]
    for word in V.VERDICTS:
        vals["n_" + word.replace(" ", "_")] = sum(w == word for w in words)
    b = r["budget"]
    top_up = int(r.get("top_up_seeds", 0))
    vals.update({"cap": f"{int(b['max_updates']):,}", "n_runs_lag": b["n_runs"],
                 "n_seeds": f"{b['n_seeds']} to {b['n_seeds'] + top_up}" if top_up else str(b["n_seeds"]),
                 "answer_source": _source_text(r, res["relu"]),
                 "n_censored": b["n_censored"], "n_improving": b["n_improving"],
                 "ceiling": r["ceiling"]["test_acc"], "target_acc": r["target_acc"]})
    vals["simple_reach_base"] = relu.lag_text(n["best_simple_reach"].get(BASELINE, math.nan))
    vals["gated_reach_base"] = relu.lag_text(n["best_gated_reach"].get(BASELINE, math.nan))
    vals["failures_text"] = ("; ".join(f"{f['label']} ({parse_interface(f['interface']).label}, {f['units']} units, "
                                       f"{SWEEP_NAMES[f['sweep']]}): {f['failed']} of {f['runs']}"
                                       for _, f in res["failures"].iterrows()) or "none")
    return vals


#: How :func:`page_values` names the sweeps of :func:`measured_failures`.
SWEEP_NAMES = {"lag": "lag sweep", "reference_lag": "reference lag sweep", "lr": "learning-rate sweep",
               "width": "width sweep"}


def _source_text(ev: dict, r: dict) -> str:
    """One sentence: where the verdicts come from (:func:`evidence`)."""
    own = f"{int(r['budget']['max_updates']):,}"
    if ev["source"] != "reference":
        return f"The verdicts come from this build's own sweeps ({own} updates per run at most)."
    lags = ", ".join(str(int(x)) for x in ev["lags_done"])
    return (f"The verdicts come from the reference runs, shipped with the book (at most {ev['cap']:,} updates per "
            f"run; lags {lags} computed{'' if ev['complete'] else ' so far'}); a claim they do not decide yet "
            f"keeps the verdict of this build's {own}-update sweeps, and its reason says so.")


#: The values the front page (``index.md``, not a notebook) pastes as plain text.
FRONT_PAGE = ("headline", "answer_source", "n_seeds", "cap", "n_censored", "n_runs_lag", "simple_reach_base",
              "long_coverage", "long_cap", "long_verdicts", "long_reach",
              *[f"claim_{k}" for k in CLAIMS], *[f"claim_{k}_why" for k in CLAIMS])


def front_page(values: dict) -> dict:
    """``front_<key>`` for every key of :data:`FRONT_PAGE` in ``values`` (from :func:`page_values`)."""
    return {f"front_{k}": values[k] for k in FRONT_PAGE}


def fig_decision_map(table: pd.DataFrame):
    """Heatmaps: success rate per configuration (rows) and lag (columns), one per interface level."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from rnnbook import plots

    plots.set_style()
    levels = list(dict.fromkeys(table["interface"]))
    order = list(dict.fromkeys(table["label"]))
    fig, axes = plt.subplots(1, len(levels), figsize=(3.2 * len(levels) + 2.5, 0.5 * len(order) + 1.8),
                             squeeze=False, sharey=True)
    for i, (ax, s) in enumerate(zip(axes[0], levels)):
        grid = table[table["interface"] == s].pivot_table(index="label", columns="lag", values="rate").reindex(order)
        sns.heatmap(grid, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="mako", ax=ax, cbar=i == len(levels) - 1,
                    cbar_kws={"label": "share of seeds reaching the criterion"})
        ax.set_title(parse_interface(s).label + (" (Keras default)" if s == BASELINE else ""), fontsize=9)
        ax.set_xlabel("time lag (frames)")
        ax.set_ylabel("")
    fig.tight_layout()
    plt.close(fig)
    return fig


def keras_port(units: int, n_features: int | None = None, res: dict | None = None, seed: int = 0) -> dict:
    """The Keras 3 equivalent of ``BasicRNNCell(units, activation=tf.nn.relu)``: the code, its
    initialiser bound, its parameter count, a check against the equations in NumPy, and the code
    the measurements recommend instead (from :func:`results`)."""
    import keras

    from rnnbook import models
    from rnnbook.experiments.common import tf1_cell_status

    n_features = int(models.build_encoder().output_shape[-1]) if n_features is None else int(n_features)
    limit = math.sqrt(6.0 / (n_features + 2 * units))
    init_k = keras.initializers.RandomUniform(-limit, limit, seed=seed)
    init_r = keras.initializers.RandomUniform(-limit, limit, seed=seed + 1)
    layer = keras.layers.SimpleRNN(units, activation="relu", kernel_initializer=init_k,
                                   recurrent_initializer=init_r, return_sequences=True)
    x = np.random.default_rng(seed).normal(size=(2, 5, n_features)).astype(np.float32)
    states = keras.ops.convert_to_numpy(layer(x))
    k, r, b = (keras.ops.convert_to_numpy(w) for w in layer.weights)
    h = np.zeros((2, units), np.float32)
    ref = []
    for t in range(x.shape[1]):
        h = np.maximum(x[:, t] @ k + h @ r + b, 0.0)
        ref.append(h)
    max_diff = float(np.abs(np.stack(ref, 1) - states).max())
    exact = (
        "```python\nimport keras\n\n"
        f"# TF1: tf.nn.rnn_cell.BasicRNNCell({units}, activation=tf.nn.relu)\n"
        f"n_inputs = {n_features}                                  # features per frame from the CNN\n"
        f"limit = (6 / (n_inputs + 2 * {units})) ** 0.5            # TF1's Glorot bound over [input, state]\n"
        "init = keras.initializers.RandomUniform(-limit, limit)\n"
        f"rnn = keras.layers.SimpleRNN({units}, activation=\"relu\",\n"
        "                             kernel_initializer=init, recurrent_initializer=init)\n```"
    )
    lines = ["```python", "import keras", ""]
    if res is not None:
        v, failures = res["verdicts"], res["failures"]
        relu_won = _as_verdict(v["relu_memory"]).word == V.SUPPORTED
        label = role_label("relu") if relu_won else role_label("tanh")
        reach = res["evidence"]["numbers"]["best_simple_reach"].get(BASELINE, math.nan)
        if safe(label, units, failures, BASELINE):
            lines += ([f"rnn = keras.layers.SimpleRNN({units}, activation=\"relu\")   # ReLU remembered further here"]
                      if relu_won else [f"rnn = keras.layers.SimpleRNN({units})   # the defaults: tanh, orthogonal"])
        else:
            widths = sorted({int(u) for u in res["relu"]["width"]["units"]})
            ok = [u for u in widths if safe(label, u, failures, BASELINE)]
            lines += [f"# {label} with {units} units failed in this book's width sweep: measure before using it",
                      *([f"rnn = keras.layers.SimpleRNN({max(ok)})   # the widest that did not fail here"] if ok else [])]
        if _as_verdict(v["gated"]).word == V.SUPPORTED:
            lines += [f"# beyond about {int(reach)} frames a gated cell:" if np.isfinite(reach) else
                      "# no simple RNN met the criterion here: a gated cell", f"# rnn = keras.layers.LSTM({units})"]
    lines += ["", "# clip the global norm; measure the average gradient norm of a stable run first",
              "average_norm = 1.0  # replace with your measurement",
              "optimizer = keras.optimizers.SGD(0.01, momentum=0.9, global_clipnorm=average_norm)", "```"]
    return {"tf1_status": tf1_cell_status(), "exact_code": exact, "recommended_code": "\n".join(lines),
            "limit": limit, "params": int(layer.count_params()), "max_abs_diff": max_diff}
