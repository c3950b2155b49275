"""aggregate: clean judgements -> consensus labels, agreement, annotator weights, review queue.

:func:`aggregate_judgements` is pure (frames in, frames out). Two passes:

1. majority consensus (:mod:`.consensus`) and annotator calibration (:mod:`.annotators`) against it;
2. with ``method="weighted"``, the consensus is recomputed with the annotator weights as votes
   (annotator statistics stay those of pass 1, so weights do not feed back on themselves).

Review queue: every non-golden comparison with ``confidence < review_confidence_threshold``, with
fewer than ``min_judgements`` judgements, or decided by an even split. Reasons: ``low_confidence``,
``few_judgements``, ``even_split``. Queued comparisons stay in the consensus with their confidence.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

import numpy as np
import pandas as pd

from driftkeel.annotation.agreement import count_matrix, fleiss_kappa, krippendorff_alpha_nominal
from driftkeel.annotation.annotators import annotator_table
from driftkeel.annotation.consensus import consensus
from driftkeel.data.schemas import CONSENSUS_COLUMNS, LABELS

if TYPE_CHECKING:
    from driftkeel.config import AggregateParams

AGREEMENT_COLUMNS = ["batch", "krippendorff_alpha", "fleiss_kappa", "n_comparisons", "mean_golden_accuracy"]


@dataclass
class AggregationResult:
    consensus: pd.DataFrame        # CONSENSUS_COLUMNS, one row per comparison
    annotators: pd.DataFrame       # annotators.ANNOTATOR_COLUMNS
    review_queue: list[dict]       # queued comparisons with reasons, lowest confidence first
    agreement: pd.DataFrame        # AGREEMENT_COLUMNS, one row per batch
    metrics: dict[str, float]      # flat scalars


def agreement_stats(judgements: pd.DataFrame, gold: Mapping[str, str]) -> dict[str, float]:
    """Krippendorff's alpha, Fleiss' kappa and golden accuracy of a set of judgements."""
    counts = count_matrix(judgements["comparison_id"], judgements["label"], LABELS)
    g = judgements["comparison_id"].map(dict(gold))
    on_gold = g.notna()
    acc = float((judgements.loc[on_gold, "label"] == g[on_gold]).mean()) if on_gold.any() else float("nan")
    return {"krippendorff_alpha": krippendorff_alpha_nominal(counts), "fleiss_kappa": fleiss_kappa(counts),
            "n_comparisons": int(counts.shape[0]), "mean_golden_accuracy": acc}


def review_queue(cons: pd.DataFrame, threshold: float, min_judgements: int) -> list[dict]:
    rows = []
    for r in cons[~cons["is_golden"]].itertuples(index=False):
        reasons = []
        if r.confidence < threshold:
            reasons.append("low_confidence")
        if r.n_judgements < min_judgements:
            reasons.append("few_judgements")
        if r.even_split:
            reasons.append("even_split")
        if reasons:
            rows.append({"comparison_id": r.comparison_id, "batch": int(r.batch), "prompt_id": r.prompt_id,
                         "label": r.label, "confidence": float(r.confidence), "agreement": float(r.agreement),
                         "n_judgements": int(r.n_judgements),
                         "votes": {lab: int(getattr(r, f"n_{lab}")) for lab in LABELS},
                         "reasons": reasons, "threshold": threshold, "prompt": r.prompt,
                         "response_a": r.response_a, "response_b": r.response_b})
    rows.sort(key=lambda d: (d["confidence"], d["batch"], d["comparison_id"]))
    return rows


def aggregate_judgements(judgements: pd.DataFrame, gold: Mapping[str, str],
                         params: "AggregateParams") -> AggregationResult:
    """Aggregate clean judgements (validate's clean frame) with gold labels ``comparison_id -> label``."""
    gold = dict(gold)
    if judgements.empty:
        raise ValueError("no clean judgements to aggregate (see outputs/validate/quarantine.jsonl)")
    cons = consensus(judgements, gold, pseudocount=params.confidence_pseudocount)
    annotators = annotator_table(judgements, cons, gold, prior_strength=params.weight_prior_strength)
    if params.method == "weighted":
        weights = dict(zip(annotators["annotator_id"], annotators["weight"]))
        cons = consensus(judgements, gold, pseudocount=params.confidence_pseudocount, weights=weights)
    queue = review_queue(cons, params.review_confidence_threshold, params.min_judgements)

    per_batch = [{"batch": int(b), **agreement_stats(part, gold)}
                 for b, part in judgements.groupby("batch", sort=True)]
    agreement = pd.DataFrame(per_batch, columns=AGREEMENT_COLUMNS)
    overall = agreement_stats(judgements, gold)

    n = len(cons)
    metrics: dict[str, float] = {
        "krippendorff_alpha": overall["krippendorff_alpha"], "fleiss_kappa": overall["fleiss_kappa"],
        "mean_golden_accuracy": overall["mean_golden_accuracy"],
        "n_comparisons": n, "n_judgements": int(len(judgements)), "n_annotators": int(len(annotators)),
        "n_golden_comparisons": int(cons["is_golden"].sum()),
        "n_review": len(queue), "review_fraction": len(queue) / n,
        "n_ties": int((cons["label"] == "tie").sum()), "n_even_splits": int(cons["even_split"].sum()),
        "mean_confidence": float(cons["confidence"].mean()), "mean_agreement": float(cons["agreement"].mean()),
        "mean_annotator_weight": float(annotators["weight"].mean()),
        "n_annotators_zero_weight": int((annotators["weight"] <= 0).sum()),
        "min_batch_krippendorff_alpha": float(np.nanmin(agreement["krippendorff_alpha"]))
        if agreement["krippendorff_alpha"].notna().any() else float("nan"),
    }
    metrics.update({f"label_share_{lab}": float((cons["label"] == lab).mean()) for lab in LABELS})
    return AggregationResult(consensus=cons[list(CONSENSUS_COLUMNS)].reset_index(drop=True),
                             annotators=annotators, review_queue=queue, agreement=agreement,
                             metrics=metrics)
