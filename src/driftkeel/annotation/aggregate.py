"""aggregate: clean judgements -> consensus, annotator calibration and health, agreement, routing.

:func:`aggregate_judgements` is pure (frames in, frames out):

1. *Hygiene*: a second judgement of the same comparison by the same annotator is ignored (first in
   time kept; counted as ``n_duplicate_judgements_ignored``; validation should quarantine these).
   A judgement faster than ``fast_response_ratio`` x the median response time is *fast*: it enters the
   consensus with weight ``fast_judgement_weight``.
2. *Consensus* by ``method``: ``dawid_skene`` (EM over annotator confusions, golden and unanimous
   expert comparisons as anchors, :mod:`.dawid_skene`), ``weighted`` (annotator weights from a
   majority calibration as votes) or ``majority``; ties explicit (:mod:`.consensus`).
3. *Annotators* (:mod:`.annotators`) calibrated against that consensus (its posterior for DS), with
   temporal consistency (:mod:`.repeats`) and quality-drop flags over time (:mod:`.health`).
4. *Agreement per batch*: AGREEMENT_COLUMNS (Krippendorff's alpha, Fleiss' kappa, golden accuracy;
   the drift stage's input) and LABEL_DRIFT_COLUMNS (the same with bootstrap intervals, the model's expected judgement accuracy, flips of re-annotated pairs,
   review counts, and ``agreement_drop``: the batch's alpha interval lies entirely below the pooled
   alpha of the first ``reference_batches`` batches, and alpha is lower by ``agreement_drop_min`` or
   more of it (relative); both thresholds were set on the demo simulator, not on the shared data): the label-drift signal for the drift stage.
5. *Routing* (:mod:`.routing`): hard pairs, the review queue, training weights, the audit trail.

Accounting (asserted): ``n_comparisons == n_golden_comparisons + n_auto_accepted + n_review``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

import numpy as np
import pandas as pd

from driftkeel.annotation.agreement import (bootstrap_agreement, count_matrix, fleiss_kappa,
                                            krippendorff_alpha_nominal)
from driftkeel.annotation.annotators import annotator_table, flags, one_hot
from driftkeel.annotation.consensus import EXTRA_COLUMNS, LABEL_INDEX, consensus, ds_consensus, expert_anchors
from driftkeel.annotation.health import annotator_timeseries, quality_drops
from driftkeel.annotation.repeats import flip_rates, preference_flips, temporal_consistency
from driftkeel.annotation.routing import audit_trail, hard_pairs, review_queue, training_weights
from driftkeel.data.schemas import CONSENSUS_COLUMNS, LABELS, sort_in_time

if TYPE_CHECKING:
    from driftkeel.config import AggregateParams

AGREEMENT_COLUMNS = ["batch", "krippendorff_alpha", "fleiss_kappa", "n_comparisons", "mean_golden_accuracy"]
LABEL_DRIFT_COLUMNS = [*AGREEMENT_COLUMNS, "alpha_ci_low", "alpha_ci_high", "kappa_ci_low", "kappa_ci_high",
                       "n_judgements", "expected_judgement_accuracy", "mean_confidence", "n_review", "n_hard",
                       "n_reannotated", "n_flips", "flip_rate", "agreement_drop"]
CONSENSUS_OUT_COLUMNS = [*CONSENSUS_COLUMNS, *EXTRA_COLUMNS, "hard", "review"]


@dataclass
class AggregationResult:
    consensus: pd.DataFrame         # CONSENSUS_COLUMNS (the contract with drift/mix), one row per comparison
    annotators: pd.DataFrame        # annotators.ANNOTATOR_COLUMNS
    review_queue: list[dict]        # queued comparisons with reasons, lowest confidence first
    agreement: pd.DataFrame         # AGREEMENT_COLUMNS, one row per batch (the contract with drift)
    metrics: dict[str, float]       # flat scalars
    details: pd.DataFrame           # CONSENSUS_OUT_COLUMNS: the consensus with probabilities, counts, flags
    label_drift: pd.DataFrame       # LABEL_DRIFT_COLUMNS, one row per batch
    timeseries: pd.DataFrame        # health.TIMESERIES_COLUMNS
    flips: pd.DataFrame             # repeats.FLIP_COLUMNS
    training: pd.DataFrame          # routing.TRAINING_COLUMNS
    audit: pd.DataFrame             # routing.AUDIT_COLUMNS


def agreement_stats(judgements: pd.DataFrame, gold: Mapping[str, str]) -> dict[str, float]:
    """Krippendorff's alpha, Fleiss' kappa and golden accuracy of a set of judgements."""
    counts = count_matrix(judgements["comparison_id"], judgements["label"], LABELS)
    g = judgements["comparison_id"].map(dict(gold))
    on_gold = g.notna()
    acc = float((judgements.loc[on_gold, "label"] == g[on_gold]).mean()) if on_gold.any() else float("nan")
    return {"krippendorff_alpha": krippendorff_alpha_nominal(counts), "fleiss_kappa": fleiss_kappa(counts),
            "n_comparisons": int(counts.shape[0]), "mean_golden_accuracy": acc}


def drop_duplicate_judgements(judgements: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep the first (in time) judgement of each (annotator, comparison); return (frame, n dropped)."""
    if not judgements.duplicated(["annotator_id", "comparison_id"]).any():
        return judgements, 0
    order = sort_in_time(judgements, ["timestamp", "judgement_id"])
    dup = order.duplicated(["annotator_id", "comparison_id"], keep="first")
    if not dup.any():
        return judgements, 0
    return judgements.drop(index=order.index[dup.to_numpy()]), int(dup.sum())


def fast_judgements(judgements: pd.DataFrame, ratio: float) -> pd.Series:
    rt = judgements["response_time_s"].astype(float)
    threshold = ratio * float(rt.median()) if rt.notna().any() else 0.0
    return (rt < threshold).fillna(False)


def _per_batch(judgements, cons, gold, correct, flips, params, seed) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    flips = flip_rates(flips, sorted(cons["batch"].unique()))
    rows = []
    for b, part in judgements.groupby("batch", sort=True):
        counts = count_matrix(part["comparison_id"], part["label"], LABELS)
        c = cons[cons["batch"] == b]
        rows.append({"batch": int(b), **agreement_stats(part, gold),
                     **bootstrap_agreement(counts, n_boot=params.bootstrap_samples, level=params.ci_level, rng=rng),
                     "n_judgements": int(len(part)),
                     "expected_judgement_accuracy": float(correct.loc[part.index].mean()),
                     "mean_confidence": float(c["confidence"].mean()) if len(c) else float("nan"),
                     "n_review": int(c["review"].sum()), "n_hard": int(c["hard"].sum())})
    out = pd.DataFrame(rows)
    out = out.join(flips, on="batch")
    out[["n_reannotated", "n_flips"]] = out[["n_reannotated", "n_flips"]].fillna(0).astype("int64")
    ref = judgements[judgements["batch"].isin(sorted(judgements["batch"].unique())[:params.reference_batches])]
    ref_alpha = agreement_stats(ref, gold)["krippendorff_alpha"]
    out["agreement_drop"] = ((out["alpha_ci_high"] < ref_alpha)
                             & (ref_alpha - out["krippendorff_alpha"] >= params.agreement_drop_min * abs(ref_alpha))
                             ).fillna(False).astype(bool)
    out.loc[out["batch"].isin(ref["batch"].unique()), "agreement_drop"] = False
    return out[LABEL_DRIFT_COLUMNS]


def aggregate_judgements(judgements: pd.DataFrame, gold: Mapping[str, str], params: "AggregateParams",
                         *, seed: int = 0) -> AggregationResult:
    """Aggregate clean judgements (validate's clean frame) with gold labels ``comparison_id -> label``."""
    t0 = time.perf_counter()
    gold = dict(gold)
    if judgements.empty:
        raise ValueError("no clean judgements to aggregate (see outputs/validate/quarantine.jsonl)")
    judgements, n_dup = drop_duplicate_judgements(judgements)
    fast = fast_judgements(judgements, params.fast_response_ratio)
    jw = pd.Series(np.where(fast, params.fast_judgement_weight, 1.0), index=judgements.index)
    experts = list(params.expert_annotators)
    settled = expert_anchors(judgements, experts)
    calib = dict(prior_strength=params.weight_prior_strength, experts=experts, expert_labels=settled,
                 fast=fast, fast_judgement_weight=params.fast_judgement_weight, ci_level=params.ci_level)

    evidence, ds_info, used_weights = None, {}, None
    if params.method == "dawid_skene":
        res = ds_consensus(judgements, gold, prior_strength=params.ds_prior_strength,
                           empirical_bayes=params.ds_empirical_bayes, judgement_weight=jw,
                           pseudocount=params.confidence_pseudocount,
                           experts=experts, max_iter=params.ds_max_iter, tol=params.ds_tol)
        cons = res.consensus
        posterior = pd.DataFrame(res.posterior, index=res.comparisons, columns=list(LABELS))
        evidence = res.fit.log_lik
        ds_info = {"ds_n_iter": res.fit.n_iter, "ds_converged": float(res.fit.converged),
                   "ds_temperature": res.temperature,
                   **{f"ds_class_prior_{lab}": float(p) for lab, p in zip(LABELS, res.fit.class_prior)}}
    else:
        # fast judgements count fast_judgement_weight in every method (module docstring), majority too
        cons = consensus(judgements, gold, pseudocount=params.confidence_pseudocount,
                         judgement_weight=jw if params.method == "majority" else None)
        if params.method == "weighted":
            first = annotator_table(judgements, cons, gold, **calib)
            used_weights = pd.Series(first["weight"].to_numpy(), index=first["annotator_id"])
            cons = consensus(judgements, gold, pseudocount=params.confidence_pseudocount,
                             weights=used_weights.to_dict(), judgement_weight=jw)
        posterior = one_hot(cons)

    annotators = annotator_table(judgements, cons, gold, posterior=posterior, **calib)
    weights = pd.Series(annotators["weight"].to_numpy(), index=annotators["annotator_id"])
    used_weights = weights if used_weights is None else used_weights

    # per-judgement expected correctness (gold one-hot), annotator health over time
    P = posterior.reindex(judgements["comparison_id"]).to_numpy(dtype=float, copy=True)
    lab_idx = judgements["label"].map(LABEL_INDEX).to_numpy(dtype=np.int64)
    g = judgements["comparison_id"].map(gold)
    correct = pd.Series(P[np.arange(len(judgements)), lab_idx], index=judgements.index)
    correct[g.notna()] = (judgements["label"] == g)[g.notna()].astype(float)
    timeseries = annotator_timeseries(judgements, correct, cons, fast)
    drops = quality_drops(timeseries, min_drop=params.quality_drop_min, alpha=params.quality_drop_alpha)
    tc = temporal_consistency(judgements, cons)
    annotators = annotators.set_index("annotator_id")
    annotators["quality_drop"] = drops.set_index("annotator_id")["quality_drop"].reindex(annotators.index).fillna(False)
    annotators["quality_drop_batch"] = drops.set_index("annotator_id")["quality_drop_batch"].reindex(annotators.index).fillna(-1).astype("int64")
    annotators["n_repeats"] = tc["n_repeats"].reindex(annotators.index).fillna(0).astype("int64")
    annotators["temporal_consistency"] = tc["temporal_consistency"].reindex(annotators.index)
    annotators = annotators.reset_index()
    annotators["flags"] = flags(annotators)

    # routing: hard pairs, review queue, training weights, audit
    cons["hard"] = hard_pairs(judgements, cons, weights, jw, params.hard_margin).reindex(cons["comparison_id"]).to_numpy()
    queue = review_queue(cons, params.review_confidence_threshold, params.min_judgements)
    cons["review"] = cons["comparison_id"].isin({q["comparison_id"] for q in queue})
    cons = cons[CONSENSUS_OUT_COLUMNS].reset_index(drop=True)
    training = training_weights(cons, params.max_margin)
    audit = audit_trail(judgements, cons, method=params.method, annotator_weight=used_weights,
                        judgement_weight=jw, fast=fast, evidence=evidence)
    flips = preference_flips(cons)
    label_drift = _per_batch(judgements, cons, gold, correct, flips, params, seed)
    agreement = label_drift[AGREEMENT_COLUMNS].copy()
    overall = agreement_stats(judgements, gold)

    n = len(cons)
    n_gold, n_review = int(cons["is_golden"].sum()), len(queue)
    n_auto = int((~cons["is_golden"] & ~cons["review"]).sum())
    if n != n_gold + n_auto + n_review:  # survives python -O
        raise AssertionError(f"aggregate: accounting broken: {n} != {n_gold} + {n_auto} + {n_review}")
    ok = agreement["krippendorff_alpha"].notna()
    slope = np.polyfit(agreement.loc[ok, "batch"], agreement.loc[ok, "krippendorff_alpha"], 1)[0] \
        if ok.sum() >= 2 else float("nan")
    metrics: dict[str, float] = {
        "krippendorff_alpha": overall["krippendorff_alpha"], "fleiss_kappa": overall["fleiss_kappa"],
        "mean_golden_accuracy": overall["mean_golden_accuracy"],
        "n_comparisons": n, "n_judgements": int(len(judgements)), "n_annotators": int(len(annotators)),
        "n_golden_comparisons": n_gold, "n_auto_accepted": n_auto,
        "n_expert_settled": int((cons["anchor"] == "expert").sum()),
        "n_review": n_review, "review_fraction": n_review / n,
        "n_hard": int(cons["hard"].sum()), "hard_fraction": float(cons["hard"].mean()),
        "n_ties": int((cons["label"] == "tie").sum()), "n_even_splits": int(cons["even_split"].sum()),
        "mean_confidence": float(cons["confidence"].mean()), "mean_agreement": float(cons["agreement"].mean()),
        "expected_judgement_accuracy": float(correct.mean()),
        "mean_annotator_weight": float(annotators["weight"].mean()),
        "n_annotators_zero_weight": int((annotators["weight"] <= 0).sum()),
        "n_annotators_low_weight": int(annotators["flags"].str.contains("low_weight").sum()),
        "n_annotators_fast": int(annotators["flags"].str.contains("fast").sum()),
        "n_annotators_quality_drop": int(annotators["quality_drop"].sum()),
        "n_fast_judgements": int(fast.sum()), "n_duplicate_judgements_ignored": n_dup,
        "n_reannotated": int(len(flips)), "n_flips": int(flips["flipped"].sum()),
        "flip_rate": float(flips["flipped"].mean()) if len(flips) else float("nan"),
        "min_batch_krippendorff_alpha": float(np.nanmin(agreement["krippendorff_alpha"]))
        if agreement["krippendorff_alpha"].notna().any() else float("nan"),
        "krippendorff_alpha_trend": float(slope),
        "n_batches_agreement_drop": int(label_drift["agreement_drop"].sum()),
        **ds_info,
    }
    metrics.update({f"label_share_{lab}": float((cons["label"] == lab).mean()) for lab in LABELS})
    metrics["aggregate_seconds"] = time.perf_counter() - t0
    return AggregationResult(consensus=cons[list(CONSENSUS_COLUMNS)].copy(), annotators=annotators,
                             review_queue=queue, agreement=agreement, metrics=metrics, details=cons,
                             label_drift=label_drift, timeseries=timeseries, flips=flips, training=training,
                             audit=audit)
