"""Annotator health over time: a per-annotator, per-batch series and a flag for quality that dropped.

Series (TIMESERIES_COLUMNS, one row per annotator and batch with judgements): ``n_judgements``,
``accuracy_estimate`` (mean of ``P_i(label_j)`` over that batch's judgements: expected share correct
under the consensus model, gold one-hot), ``n_golden``/``golden_accuracy``, ``agreement_with_consensus``
(non-golden comparisons with >= 2 judgements), ``median_response_time_s`` and ``fast_share``.

Quality drop: for an annotator active in batches ``b_1 < ... < b_T``, every split ``b_t`` (t >= 2) compares
the expected-correct counts before and from ``b_t`` on with a one-sided two-proportion z-test. The
annotator is flagged when some split has a drop of at least ``min_drop`` in accuracy, at least
``min_n`` judgements on each side, and ``z >= z_(alpha / (T - 1))`` (Bonferroni over the splits);
``quality_drop_batch`` is the split with the largest z among those.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

TIMESERIES_COLUMNS = ["annotator_id", "batch", "n_judgements", "accuracy_estimate", "n_golden", "golden_accuracy",
                      "agreement_with_consensus", "median_response_time_s", "fast_share"]
DROP_COLUMNS = ["annotator_id", "quality_drop", "quality_drop_batch", "accuracy_before", "accuracy_after", "drop_z"]


def annotator_timeseries(judgements: pd.DataFrame, correct: pd.Series, consensus: pd.DataFrame,
                         fast: pd.Series | None = None) -> pd.DataFrame:
    """TIMESERIES_COLUMNS. `correct`: P_i(label_j) per judgement (index aligned with `judgements`)."""
    cons = consensus.set_index("comparison_id")
    j = judgements[["annotator_id", "batch", "comparison_id", "label", "response_time_s"]].copy()
    j["correct"] = correct.reindex(j.index).astype(float)
    j["fast"] = False if fast is None else fast.reindex(j.index).fillna(False).astype(bool)
    golden = j["comparison_id"].map(cons["is_golden"]).fillna(False).astype(bool)
    cons_label = j["comparison_id"].map(cons["label"])
    eligible = ~golden & (j["comparison_id"].map(cons["n_judgements"]) >= 2)
    j["g_n"] = golden.astype(int)
    j["g_ok"] = (golden & (j["label"] == cons_label)).astype(int)      # golden consensus = gold label
    j["e_n"] = eligible.astype(int)
    j["e_ok"] = (eligible & (j["label"] == cons_label)).astype(int)
    g = j.groupby(["annotator_id", "batch"], sort=True)
    out = pd.DataFrame({"n_judgements": g.size(), "accuracy_estimate": g["correct"].mean(),
                        "n_golden": g["g_n"].sum()})
    out["golden_accuracy"] = g["g_ok"].sum() / out["n_golden"].replace(0, np.nan)
    out["agreement_with_consensus"] = g["e_ok"].sum() / g["e_n"].sum().replace(0, np.nan)
    out["median_response_time_s"] = g["response_time_s"].median()
    out["fast_share"] = g["fast"].mean()
    out = out.reset_index()
    out[["batch", "n_judgements", "n_golden"]] = out[["batch", "n_judgements", "n_golden"]].astype("int64")
    return out[TIMESERIES_COLUMNS]


def quality_drops(timeseries: pd.DataFrame, *, min_drop: float = 0.15, alpha: float = 0.01,
                  min_n: int = 10) -> pd.DataFrame:
    """DROP_COLUMNS, one row per annotator (see module docstring)."""
    rows = []
    for ann, ts in timeseries.groupby("annotator_id", sort=True):
        ts = ts.sort_values("batch")
        n = ts["n_judgements"].to_numpy(dtype=float)
        c = (ts["accuracy_estimate"] * ts["n_judgements"]).to_numpy(dtype=float)
        best = (False, -1, np.nan, np.nan, np.nan)
        T = len(ts)
        if T >= 2:
            z_crit = stats.norm.isf(alpha / (T - 1))
            cn, cc = np.cumsum(n), np.cumsum(c)
            for t in range(1, T):
                n1, c1 = cn[t - 1], cc[t - 1]
                n2, c2 = cn[-1] - n1, cc[-1] - c1
                if n1 < min_n or n2 < min_n:
                    continue
                p1, p2, p = c1 / n1, c2 / n2, (c1 + c2) / (n1 + n2)
                se = np.sqrt(max(p * (1 - p), 1e-12) * (1 / n1 + 1 / n2))
                z = (p1 - p2) / se
                if p1 - p2 >= min_drop and z >= z_crit and (not best[0] or z > best[4]):
                    best = (True, int(ts["batch"].iloc[t]), p1, p2, z)
        rows.append((ann, *best))
    out = pd.DataFrame(rows, columns=DROP_COLUMNS)
    out["quality_drop"] = out["quality_drop"].astype(bool)
    out["quality_drop_batch"] = out["quality_drop_batch"].astype("int64")
    return out
