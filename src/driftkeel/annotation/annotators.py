"""Annotator calibration: golden-set accuracy, agreement with consensus, and a vote weight.

- ``golden_accuracy``: share of the annotator's judgements on golden comparisons equal to the gold
  label (NaN with no golden judgements).
- ``agreement_with_consensus``: share of the annotator's judgements on *non-golden* comparisons with
  at least two judgements that equal the consensus label (the annotator's own vote is part of that
  consensus: an inclusive estimate, biased upwards a little for everyone; NaN when none).
- ``weight``: an accuracy estimate turned into a vote weight. The estimate shrinks golden accuracy
  towards the agreement (``(correct + m * agreement) / (n_golden + m)``, ``m = weight_prior_strength``;
  the agreement falls back to the pool's mean agreement, then to 1 when nothing is known), and the
  weight is its margin over chance, ``clip((K * acc - 1) / (K - 1), 0, 1)`` with ``K = 3`` labels:
  1 for a perfect annotator, 0 for one no better than a uniform random guesser (a spammer).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from driftkeel.data.schemas import LABELS

ANNOTATOR_COLUMNS = ["annotator_id", "n_judgements", "n_golden", "golden_correct", "golden_accuracy",
                     "n_agreement", "agreement_with_consensus", "accuracy_estimate", "weight",
                     "first_batch", "last_batch"]


def annotator_table(judgements: pd.DataFrame, consensus: pd.DataFrame, gold: Mapping[str, str],
                    prior_strength: float = 2.0) -> pd.DataFrame:
    """One row per annotator (ANNOTATOR_COLUMNS), sorted by annotator_id."""
    k = len(LABELS)
    j = judgements[["annotator_id", "comparison_id", "label", "batch"]].copy()
    j["gold"] = j["comparison_id"].map(dict(gold))
    cons = consensus.set_index("comparison_id")
    j["consensus"] = j["comparison_id"].map(cons["label"])
    j["n_comp"] = j["comparison_id"].map(cons["n_judgements"])
    golden = j[j["gold"].notna()]
    eligible = j[j["gold"].isna() & (j["n_comp"] >= 2)]

    g = j.groupby("annotator_id")
    out = pd.DataFrame({"n_judgements": g.size(), "first_batch": g["batch"].min(), "last_batch": g["batch"].max()})
    out["n_golden"] = golden.groupby("annotator_id").size().reindex(out.index, fill_value=0)
    out["golden_correct"] = ((golden["label"] == golden["gold"]).groupby(golden["annotator_id"]).sum()
                             .reindex(out.index, fill_value=0))
    out["golden_accuracy"] = out["golden_correct"] / out["n_golden"].replace(0, np.nan)
    out["n_agreement"] = eligible.groupby("annotator_id").size().reindex(out.index, fill_value=0)
    agree_hits = ((eligible["label"] == eligible["consensus"]).groupby(eligible["annotator_id"]).sum()
                  .reindex(out.index, fill_value=0))
    out["agreement_with_consensus"] = agree_hits / out["n_agreement"].replace(0, np.nan)

    pool = out["agreement_with_consensus"].mean()
    prior = out["agreement_with_consensus"].fillna(1.0 if np.isnan(pool) else pool)
    out["accuracy_estimate"] = (out["golden_correct"] + prior_strength * prior) / (out["n_golden"] + prior_strength)
    out["weight"] = ((k * out["accuracy_estimate"] - 1) / (k - 1)).clip(0.0, 1.0)
    out = out.reset_index().rename(columns={"index": "annotator_id"})
    int_cols = ["n_judgements", "n_golden", "golden_correct", "n_agreement", "first_batch", "last_batch"]
    out[int_cols] = out[int_cols].astype("int64")
    return out[ANNOTATOR_COLUMNS].sort_values("annotator_id").reset_index(drop=True)
