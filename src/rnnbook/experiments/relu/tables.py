"""The relu chapter's tables as the page shows them: formatting only, no statistics."""
from __future__ import annotations

import numpy as np
import pandas as pd

from rnnbook.experiments.common import fmt_ci


def logrank_display(table: pd.DataFrame) -> pd.DataFrame:
    """The log-rank table for the page: p to two significant digits, "n/a" where neither arm succeeded."""
    if "log-rank p" not in table:
        return table
    return table.assign(**{"log-rank p": [("n/a" if not np.isfinite(p) else f"{p:.2g}") for p in table["log-rank p"]]})


def failure_text(part: pd.DataFrame) -> str:
    """The failure reasons of ``part``'s runs with their counts ("none" without any)."""
    counts = part["failure"].dropna().value_counts()
    return ", ".join(f"{int(c)} {r}" for r, c in counts.items()) or "none"


def lag_text(x: float) -> str:
    """A reach as words: "lag 10", or "no lag"."""
    return "no lag" if not np.isfinite(x) else f"lag {int(x)}"


def success_display(table: pd.DataFrame) -> pd.DataFrame:
    """The success table for the data download and the page."""
    t = table.copy()
    t["success rate [95% CI]"] = [fmt_ci(r, lo, hi) for r, lo, hi in zip(t["rate"], t["lo"], t["hi"])]
    return t


def rates_display(tuning_table: pd.DataFrame) -> pd.DataFrame:
    """The learning-rate table for the page: per configuration and rate, successes on the tuning
    seeds, median updates to success, and the rate chosen."""
    t = tuning_table
    return pd.DataFrame({"configuration": t["label"], "Adam learning rate": t["learning_rate"].map(lambda x: f"{x:g}"),
                         "successes": [f"{k} of {n}" for k, n in zip(t["successes"], t["seeds"])],
                         "median updates to success": t["median_updates"].map(
                             lambda x: "n/a" if not np.isfinite(x) else f"{x:.0f}"),
                         "chosen": np.where(t["chosen"], "yes", "")})
