"""Annotator calibration: accuracy against gold, consensus and experts, speed, bias, and a vote weight.

Per annotator (one row, ANNOTATOR_COLUMNS):

- ``golden_accuracy``: share of the annotator's golden judgements equal to the gold label (NaN: none).
- ``agreement_with_consensus``: share of judgements on *non-golden* comparisons with at least two
  judgements that equal the consensus label (inclusive of the annotator's own vote; NaN when none).
- ``agreement_with_experts``: share of judgements equal to the expert label on comparisons that
  experts settled (unanimous expert judgements; the experts' own rows excluded; NaN when none).
- ``accuracy_estimate``: expected share of correct judgements under the consensus model,
  ``c = sum_j P_i(label_j)`` over the annotator's judgements (``P_i``: the posterior of comparison
  ``i``; one-hot on golden comparisons, so gold counts fully), shrunk towards the pool's accuracy with
  ``m = prior_strength`` pseudo-judgements: ``(c + m pool) / (n + m)``. ``accuracy_sd``: the sd of the
  Beta(c + m pool, n - c + m (1 - pool)) posterior.
- ``chance_accuracy``: the accuracy of someone with the same label frequencies who ignores the item,
  ``sum_j sum_k P_i(k) q(k)`` / n (``q``: the annotator's own label distribution).
- ``weight``: the annotator's informativeness, a kappa against the estimated truth,
  ``clip((accuracy - chance) / (1 - chance), 0, 1)``, times the speed factor
  ``1 - (1 - fast_judgement_weight) * fast_share``. 1 for a perfect annotator; 0 for one whose labels do
  not depend on the item (a spammer, whatever their label frequencies); ``weight_ci_low/high``: the
  same map applied to the Beta posterior's ``(1 - ci_level) / 2`` quantiles; ``weight_sd`` by the
  delta method.
- ``position_bias``: ``P(says a | true b) - P(says b | true a)`` (soft counts; > 0 favours A).
- ``fast_share``: share of judgements faster than the fast threshold (see :mod:`.aggregate`);
  ``median_response_time_s``.
- ``temporal_consistency``, ``n_repeats``: from :mod:`.repeats` (same pair judged again later).
- ``quality_drop``, ``quality_drop_batch``: from :mod:`.health` (filled in by the aggregate step).
- ``flags``: ``;``-joined among ``low_weight`` (weight_ci_high < 0.25), ``fast`` (fast_share >= 0.5),
  ``position_bias`` (|bias| >= 0.25 on >= 20 judgements), ``quality_drop``.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

from driftkeel.data.schemas import LABELS

ANNOTATOR_COLUMNS = ["annotator_id", "n_judgements", "n_golden", "golden_correct", "golden_accuracy",
                     "n_agreement", "agreement_with_consensus", "accuracy_estimate", "weight",
                     "first_batch", "last_batch",
                     "accuracy_sd", "chance_accuracy", "weight_sd", "weight_ci_low", "weight_ci_high",
                     "n_expert_overlap", "agreement_with_experts", "position_bias",
                     "median_response_time_s", "fast_share", "n_repeats", "temporal_consistency",
                     "quality_drop", "quality_drop_batch", "is_expert", "flags"]
LOW_WEIGHT, FAST_SHARE, BIAS, BIAS_MIN_N = 0.25, 0.5, 0.25, 20


def one_hot(consensus: pd.DataFrame) -> pd.DataFrame:
    """comparison_id x LABELS one-hot of the consensus label (the 'posterior' of a vote rule)."""
    lab = consensus.set_index("comparison_id")["label"]
    return pd.DataFrame({l: (lab == l).astype(float) for l in LABELS}, index=lab.index)


def _kappa(acc, chance):
    with np.errstate(divide="ignore", invalid="ignore"):
        k = (np.asarray(acc, float) - chance) / (1.0 - chance)
    return np.clip(np.nan_to_num(k, nan=0.0), 0.0, 1.0)


def _beta_ppf(q: float, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Beta(a, b) quantile that also takes a = 0 or b = 0 (a point mass at 0 or 1: every judgement of a
    pool with no error is correct, so pool = 1 and b = 0); scipy returns NaN there."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(invalid="ignore"):
        x = stats.beta.ppf(q, np.maximum(a, 1e-300), np.maximum(b, 1e-300))
    return np.where(b <= 0, 1.0, np.where(a <= 0, 0.0, x))


def annotator_table(judgements: pd.DataFrame, consensus: pd.DataFrame, gold: Mapping[str, str], *,
                    posterior: pd.DataFrame | None = None, prior_strength: float = 2.0,
                    experts: Iterable[str] = (), expert_labels: Mapping[str, str] | None = None,
                    fast: pd.Series | None = None, fast_judgement_weight: float = 1.0,
                    ci_level: float = 0.9) -> pd.DataFrame:
    """One row per annotator (ANNOTATOR_COLUMNS), sorted by annotator_id.

    `posterior`: comparison_id x LABELS probabilities of the true label (default: one-hot consensus);
    `fast`: bool per judgement (index aligned with `judgements`), True = suspiciously fast.
    """
    gold = dict(gold)
    experts = set(experts)
    post = one_hot(consensus) if posterior is None else posterior
    cons = consensus.set_index("comparison_id")
    j = judgements[["annotator_id", "comparison_id", "label", "batch"]].copy()
    j["response_time_s"] = judgements["response_time_s"] if "response_time_s" in judgements else np.nan
    j["gold"] = j["comparison_id"].map(gold)
    j["consensus"] = j["comparison_id"].map(cons["label"])
    j["n_comp"] = j["comparison_id"].map(cons["n_judgements"])
    j["fast"] = False if fast is None else fast.reindex(j.index).fillna(False).astype(bool)
    P = post.reindex(j["comparison_id"]).to_numpy(dtype=float, copy=True)  # judgements x K
    gold_rows = j["gold"].notna().to_numpy()
    if gold_rows.any():  # gold counts fully, whatever the posterior says
        P[gold_rows] = 0.0
        P[np.flatnonzero(gold_rows), j.loc[gold_rows, "gold"].map({l: i for i, l in enumerate(LABELS)})] = 1.0
    lab_idx = j["label"].map({l: i for i, l in enumerate(LABELS)}).to_numpy(dtype=np.int64)
    j["correct"] = P[np.arange(len(j)), lab_idx]
    golden = j[j["gold"].notna()]
    eligible = j[j["gold"].isna() & (j["n_comp"] >= 2)]

    g = j.groupby("annotator_id")
    out = pd.DataFrame({"n_judgements": g.size(), "first_batch": g["batch"].min(), "last_batch": g["batch"].max()})
    ix = out.index
    out["n_golden"] = golden.groupby("annotator_id").size().reindex(ix, fill_value=0)
    out["golden_correct"] = ((golden["label"] == golden["gold"]).groupby(golden["annotator_id"]).sum()
                             .reindex(ix, fill_value=0))
    out["golden_accuracy"] = out["golden_correct"] / out["n_golden"].replace(0, np.nan)
    out["n_agreement"] = eligible.groupby("annotator_id").size().reindex(ix, fill_value=0)
    hits = (eligible["label"] == eligible["consensus"]).groupby(eligible["annotator_id"]).sum().reindex(ix, fill_value=0)
    out["agreement_with_consensus"] = hits / out["n_agreement"].replace(0, np.nan)

    # accuracy against the posterior, shrunk to the pool; chance accuracy from own label frequencies
    n = out["n_judgements"].to_numpy(dtype=float)
    c = j.groupby("annotator_id")["correct"].sum().reindex(ix).to_numpy(dtype=float)
    pool = float(c.sum() / n.sum()) if n.sum() else 0.5
    m = float(prior_strength)
    a, b = c + m * pool, (n - c) + m * (1.0 - pool)
    acc = a / (a + b)
    q = (pd.crosstab(j["annotator_id"], j["label"]).reindex(index=ix, columns=list(LABELS), fill_value=0)
         .to_numpy(dtype=float))
    q = q / q.sum(axis=1, keepdims=True)
    qj = q[ix.get_indexer(j["annotator_id"])]                              # judgements x K
    chance_j = (P * qj).sum(axis=1)
    chance = pd.Series(chance_j, index=j.index).groupby(j["annotator_id"]).mean().reindex(ix).to_numpy(float)
    fast_share = j.groupby("annotator_id")["fast"].mean().reindex(ix).to_numpy(dtype=float)
    speed = 1.0 - (1.0 - fast_judgement_weight) * fast_share
    lo_q, hi_q = (1 - ci_level) / 2, 1 - (1 - ci_level) / 2
    out["accuracy_estimate"] = acc
    out["accuracy_sd"] = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    out["chance_accuracy"] = chance
    out["weight"] = _kappa(acc, chance) * speed
    with np.errstate(divide="ignore", invalid="ignore"):
        out["weight_sd"] = np.where(chance < 1, out["accuracy_sd"] / (1 - chance), 0.0) * speed
    out["weight_ci_low"] = _kappa(_beta_ppf(lo_q, a, b), chance) * speed
    out["weight_ci_high"] = _kappa(_beta_ppf(hi_q, a, b), chance) * speed
    # chance ~ 1 (every item's truth and every label of the annotator the same class): the kappa is
    # undefined -- such data cannot tell a perfect annotator from one who ignores the item. Neither
    # informative nor a spammer: the median weight of the annotators whose kappa is defined (1 if none),
    # an interval over [0, 1], no low_weight flag. (It came out 0 and flagged, for perfect annotators.)
    undefined = 1.0 - chance < 1e-9
    if undefined.any():
        known = out["weight"].to_numpy(float)[~undefined]
        neutral = float(np.median(known)) if len(known) else 1.0
        out.loc[undefined, "weight"] = neutral * speed[undefined]
        out.loc[undefined, "weight_sd"] = np.nan
        out.loc[undefined, "weight_ci_low"] = 0.0
        out.loc[undefined, "weight_ci_high"] = speed[undefined]

    # experts: agreement with settled expert labels (the experts' own rows excluded)
    exp = j[j["comparison_id"].isin(list(expert_labels or {})) & ~j["annotator_id"].isin(experts)]
    exp_ok = exp["label"] == exp["comparison_id"].map(expert_labels or {})
    out["n_expert_overlap"] = exp.groupby("annotator_id").size().reindex(ix, fill_value=0)
    out["agreement_with_experts"] = (exp_ok.groupby(exp["annotator_id"]).sum().reindex(ix, fill_value=0)
                                     / out["n_expert_overlap"].replace(0, np.nan))

    # position bias from soft counts: P(says a | true b) - P(says b | true a)
    pa, pb = P[:, 0], P[:, 1]
    says_a, says_b = (lab_idx == 0).astype(float), (lab_idx == 1).astype(float)
    s = pd.DataFrame({"a_given_b": pb * says_a, "true_b": pb, "b_given_a": pa * says_b, "true_a": pa},
                     index=j.index).groupby(j["annotator_id"]).sum().reindex(ix)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["position_bias"] = (s["a_given_b"] / s["true_b"].replace(0, np.nan)
                                - s["b_given_a"] / s["true_a"].replace(0, np.nan))
    out["median_response_time_s"] = g["response_time_s"].median()
    out["fast_share"] = fast_share
    out["n_repeats"] = 0
    out["temporal_consistency"] = np.nan
    out["quality_drop"] = False
    out["quality_drop_batch"] = -1
    out["is_expert"] = ix.isin(list(experts))
    out = out.reset_index().rename(columns={"index": "annotator_id"})
    int_cols = ["n_judgements", "n_golden", "golden_correct", "n_agreement", "first_batch", "last_batch",
                "n_expert_overlap", "n_repeats", "quality_drop_batch"]
    out[int_cols] = out[int_cols].astype("int64")
    out["flags"] = flags(out)
    return out[ANNOTATOR_COLUMNS].sort_values("annotator_id").reset_index(drop=True)


def flags(table: pd.DataFrame) -> pd.Series:
    """``;``-joined flags per annotator row (see module docstring)."""
    rows = []
    for r in table.itertuples(index=False):
        f = []
        if r.weight_ci_high < LOW_WEIGHT:
            f.append("low_weight")
        if r.fast_share >= FAST_SHARE:
            f.append("fast")
        if r.n_judgements >= BIAS_MIN_N and abs(np.nan_to_num(r.position_bias)) >= BIAS:
            f.append("position_bias")
        if r.quality_drop:
            f.append("quality_drop")
        rows.append(";".join(f))
    return pd.Series(rows, index=table.index, dtype="str")
