"""The chapter "Recommendations" and the front page's short answer: the verdicts of the usual
answer's claims and the decision guide, read from the numbers of the chapters "When ReLU helps"
(:func:`rnnbook.experiments.relu.results`) and "Gradient clipping"
(:func:`rnnbook.experiments.clipping.results`). Nothing here trains or recomputes a number those
modules give: with the same parameters their runs load from the run cache.

Decision words: a claim is **supported** when the chapter's decision rule decides for it,
**contradicted** when it decides against it, and **not decided at this budget** otherwise
(ties, censored runs, or a grid that lacks the configuration).

Example:
    >>> verdict_cell(("supported", "Why."))
    '**supported**'
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rnnbook.experiments import clipping, relu
from rnnbook.experiments.common import role_label

#: The chapter's parameters: those of the two chapters whose numbers it reads.
PARAMS = tuple(dict.fromkeys(relu.PARAMS + clipping.PARAMS))
#: Claims of the usual answer and the literature: key -> (claim, where its verdict comes from).
CLAIMS = {
    "relu_short": "For short sequences ReLU is fine.",
    "relu_memory": "ReLU helps against vanishing gradients, so it reaches longer lags than tanh.",
    "relu_unstable": "ReLU does not help against exploding gradients and can make them worse.",
    "gated": "LSTM and GRU handle long lags better than a simple RNN.",
    "irnn": "The IRNN (ReLU, identity initialisation) trains about as well as a gated cell.",
    "clip": "Gradient clipping keeps exploding gradients in check.",
    "band": "Thresholds from half to ten times the average gradient norm can still converge.",
    "interface": "(This book) The scale of the CNN features entering the RNN decides whether it learns to remember.",
}


def plan(params: dict) -> list:
    """The runs of the relu and clipping chapters: the ones this chapter loads (and would train,
    were they not cached)."""
    return relu.plan(_pick(params, relu.PARAMS)) + clipping.plan(_pick(params, clipping.PARAMS))


def _pick(params: dict, names) -> dict:
    return {n: params[n] for n in names if n in params}


def results(params: dict) -> dict:
    """The two chapters' results, the claims' verdicts, the advice and the headline."""
    r = relu.results(_pick(params, relu.PARAMS))
    c = clipping.results(_pick(params, clipping.PARAMS))
    verdicts = claim_verdicts(r["verdicts"], c)
    return {"relu": r, "clipping": c, "verdicts": verdicts, "advice": advice(r, c),
            "headline": headline(r, verdicts)}


def _verdict_from(c: dict, key: str) -> tuple[str, str]:
    """A clipping verdict ``(word, why)`` from :func:`clipping.results`'s ``claim_<key>`` keys."""
    word = str(c.get(f"claim_{key}", "not decided at this budget")).strip("*").strip()
    return word, str(c.get(f"claim_{key}_why", ""))


def claim_verdicts(relu_verdicts: dict, clip: dict) -> dict:
    """Verdict ``(word, why)`` of every claim of :data:`CLAIMS`."""
    out = {k: relu_verdicts[k] for k in ("relu_short", "relu_memory", "relu_unstable", "gated", "irnn",
                                         "interface")}
    out["clip"] = _verdict_from(clip, "clip")
    out["band"] = _verdict_from(clip, "band")
    return {k: out[k] for k in CLAIMS}


def verdict_cell(verdict: tuple[str, str]) -> str:
    """The verdict word in bold (the table's middle column)."""
    return f"**{verdict[0]}**"


def claims_table(verdicts: dict) -> pd.DataFrame:
    """One row per claim: the claim, the verdict here and why."""
    return pd.DataFrame([{"claim": CLAIMS[k], "verdict here": v[0], "why": v[1]} for k, v in verdicts.items()])


def best_scale(r: dict) -> float:
    """The interface level with the highest success rate over the lag grid."""
    rates = r["numbers"]["success_by_scale"]
    return max(rates, key=lambda s: (rates[s], -s))


def headline(r: dict, verdicts: dict) -> str:
    """The book's short answer in one sentence, from the verdicts (Markdown)."""
    n = r["numbers"]
    s_best, s_as_is = best_scale(r), n["scale_max"]
    reach_best = n["best_simple_reach"][s_best]
    parts = []
    if verdicts["interface"][0] == "supported":
        parts.append(f"scale the CNN features down before the recurrent layer (here x {s_best:g}): with the "
                     f"features as they are, simple RNNs remembered across "
                     f"{_lags(n['best_simple_reach'][s_as_is])}, scaled across {_lags(reach_best)}")
    memory = verdicts["relu_memory"][0]
    parts.append({"supported": "ReLU then remembered further than tanh",
                  "contradicted": "ReLU then remembered no further than tanh, so keep the default tanh",
                  }.get(memory, "whether ReLU remembers further than tanh was not decided at this budget"))
    gated = verdicts["gated"][0]
    text = {"supported": "a gated cell (GRU) reached further still",
            "contradicted": "a gated cell (GRU) did not reach further"}.get(
        gated, "gated cells did not reach clearly further at this budget")
    g_as_is, g_best = n["best_gated_reach"][s_as_is], n["best_gated_reach"][s_best]
    if np.nan_to_num(g_as_is, nan=-1) > np.nan_to_num(g_best, nan=-1):
        text += f" (the GRU, unlike the simple RNNs, reached furthest with the features as they are: {_lags(g_as_is)})"
    parts.append(text)
    clip = verdicts["clip"][0]
    parts.append({"supported": "and clipping the global gradient norm kept SGD from blowing up",
                  "contradicted": "and clipping did not prevent the blow-ups here"}.get(
        clip, "and clipping's effect was not decided at this budget"))
    text = "; ".join(parts) + "."
    return text[0].upper() + text[1:]


def _lags(x: float) -> str:
    return "no lag of the grid" if not np.isfinite(x) else f"lags up to {int(x)} frames"


def advice(r: dict, clip: dict) -> dict:
    """The decision guide's advice (Markdown), each line from the measured numbers."""
    n, v = r["numbers"], r["verdicts"]
    s_best = best_scale(r)
    a = {}
    a["advice_interface"] = (f"Put a fixed scale (here x {s_best:g}) or a normalisation with a small gain "
                             "between the CNN and the recurrent layer, and check at initialisation that few "
                             "tanh pre-activations exceed 2 in magnitude." if v["interface"][0] == "supported"
                             else "The feature scale made no clear difference here; check the input drive anyway.")
    a["advice_activation"] = {"supported": "ReLU is worth a try: it remembered further here; clip it.",
                              "contradicted": "**Keep tanh**, the default: ReLU remembered no further here.",
                              }.get(v["relu_memory"][0], "tanh or ReLU: not decided by these runs; keep the "
                                                         "default unless your own runs say otherwise.")
    reach = n["best_simple_reach"][s_best]
    a["advice_lag"] = (f"Up to about **{int(reach)} frames** a simple RNN met the criterion here (with the "
                       "scaled features); beyond that, use a **GRU or LSTM**." if np.isfinite(reach) else
                       "No simple RNN met the criterion at any lag here: start with a **GRU or LSTM**.")
    a["advice_clip_mode"] = str(clip.get("advice_clip_mode", "See the clipping chapter."))
    a["advice_threshold"] = str(clip.get("advice_threshold", "See the clipping chapter."))
    return a


def page_values(res: dict) -> dict:
    """Every value the chapter (and the front page) pastes, by glue key."""
    r, verdicts = res["relu"], res["verdicts"]
    n = r["numbers"]
    vals = {"headline": res["headline"], "best_scale": best_scale(r), "scale_as_is": n["scale_max"],
            "tanh_label": role_label("tanh")}
    for k, v in verdicts.items():
        vals[f"claim_{k}"] = verdict_cell(v)
        vals[f"claim_{k}_why"] = v[1] or "See the chapter."
    vals.update(res["advice"])
    vals["n_supported"] = sum(v[0] == "supported" for v in verdicts.values())
    vals["n_contradicted"] = sum(v[0] == "contradicted" for v in verdicts.values())
    vals["n_undecided"] = sum(v[0] not in ("supported", "contradicted") for v in verdicts.values())
    b = r["budget"]
    vals.update({"cap": b["max_updates"], "n_seeds": b["n_seeds"], "n_runs_lag": b["n_runs"],
                 "n_censored": b["n_censored"], "ceiling": r["ceiling"]["test_acc"], "target_acc": r["target_acc"]})
    for s, tag in ((n["scale_max"], "as_is"), (best_scale(r), "best")):
        vals[f"simple_reach_{tag}"] = relu._lag(n["best_simple_reach"][s])
        vals[f"gated_reach_{tag}"] = relu._lag(n["best_gated_reach"][s])
        vals[f"tanh_reach_{tag}"] = relu._lag(n["tanh_reach"][s])
        vals[f"relu_reach_{tag}"] = relu._lag(n["relu_reach"][s])
    return vals


#: The values the front page (``index.md``, not a notebook) pastes as plain text.
FRONT_PAGE = ("headline", "n_seeds", "cap", "n_censored", "n_runs_lag", "best_scale", "simple_reach_as_is",
              "simple_reach_best", *[f"claim_{k}" for k in CLAIMS], *[f"claim_{k}_why" for k in CLAIMS])


def front_page(values: dict) -> dict:
    """``front_<key>`` for every key of :data:`FRONT_PAGE` in ``values`` (from :func:`page_values`)."""
    return {f"front_{k}": values[k] for k in FRONT_PAGE}


def fig_decision_map(table: pd.DataFrame):
    """Heatmaps: success rate per configuration (rows) and lag (columns), one per interface level."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from rnnbook import plots

    plots.set_style()
    scales = sorted(table["feature_scale"].unique(), reverse=True)
    order = list(dict.fromkeys(table["label"]))
    fig, axes = plt.subplots(1, len(scales), figsize=(3.2 * len(scales) + 2.5, 0.5 * len(order) + 1.8),
                             squeeze=False, sharey=True)
    for i, (ax, s) in enumerate(zip(axes[0], scales)):
        grid = table[table["feature_scale"] == s].pivot_table(index="label", columns="lag", values="rate").reindex(order)
        sns.heatmap(grid, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="mako", ax=ax, cbar=i == len(scales) - 1,
                    cbar_kws={"label": "share of seeds reaching the criterion"})
        ax.set_title(f"features x {s:g}")
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
        s_best = best_scale(res["relu"])
        relu_won = res["verdicts"]["relu_memory"][0] == "supported"
        reach = res["relu"]["numbers"]["best_simple_reach"][s_best]
        lines += [f"features = keras.layers.Rescaling({s_best:g})(cnn_features)   # the interface: see the ReLU chapter"]
        lines += ([f"rnn = keras.layers.SimpleRNN({units}, activation=\"relu\")   # ReLU remembered further here"]
                  if relu_won else [f"rnn = keras.layers.SimpleRNN({units})   # the defaults: tanh, orthogonal"])
        lines += [f"# beyond about {int(reach)} frames a gated cell:" if np.isfinite(reach) else
                  "# no simple RNN met the criterion here: a gated cell", f"# rnn = keras.layers.GRU({units})"]
    lines += ["", "# clip the global norm; measure the average gradient norm of a stable run first",
              "average_norm = 1.0  # replace with your measurement",
              "optimizer = keras.optimizers.SGD(0.01, momentum=0.9, global_clipnorm=average_norm)", "```"]
    return {"tf1_status": tf1_cell_status(), "exact_code": exact, "recommended_code": "\n".join(lines),
            "limit": limit, "params": int(layer.count_params()), "max_abs_diff": max_diff}
