"""Expert-review routing, hard pairs, training weights and the audit trail.

- **Hard pairs**: a non-golden comparison is ``hard`` when its quality-weighted vote margin
  ``|W_a - W_b| / (W_a + W_b + W_tie)`` (annotator weight x judgement weight per vote; raw counts when
  all weights are 0) is below ``hard_margin``, or its consensus is ``tie``: skilled annotators split on
  close pairs (a small utility gap), so a split among trusted votes marks one.
- **Review queue**: every non-golden comparison with ``confidence < threshold`` (``low_confidence``),
  fewer than ``min_judgements`` judgements (``few_judgements``), decided by an even split
  (``even_split``), or whose judgements have no label with more than half of them (``no_majority``,
  e.g. a 1-1-1 or 5-5 split: a model may resolve it confidently, a person should look), lowest
  confidence first. Queued comparisons stay in the consensus (``review`` =
  True) and in the training weights with their confidence: nothing leaves the accounting.
- **Training weights** (TRAINING_COLUMNS, one row per comparison): ``chosen`` = the consensus side
  (empty for ``tie``), ``p_chosen`` = P(chosen) / (P(a) + P(b)), ``weight`` = the consensus confidence,
  ``margin`` = ``clip(log(p_chosen / (1 - p_chosen)), 0, max_margin)`` (a reward-margin in log-odds, as
  a margin column for Bradley–Terry reward training), ``use`` = ``train`` or ``skip_tie``.
- **Audit** (AUDIT_COLUMNS, one row per judgement): the judgement, the annotator weight and judgement
  weight it entered with, its evidence for each label (DS: ``r_j log theta_w[k, label_j]``, whose sum
  plus ``log prior`` is the comparison's log posterior; votes: the vote it cast) and the consensus it
  fed, with the method and the anchor (gold/expert) that overrode it, if any.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from driftkeel.data.schemas import LABELS

TRAINING_COLUMNS = ["comparison_id", "batch", "label", "chosen", "p_chosen", "weight", "margin", "hard",
                    "review", "is_golden", "use", "p_a", "p_b", "p_tie", "n_a", "n_b", "n_tie", "even_split",
                    "anchor"]
AUDIT_COLUMNS = ["judgement_id", "comparison_id", "batch", "annotator_id", "label", "annotator_weight",
                 "judgement_weight", "fast", "evidence_a", "evidence_b", "evidence_tie", "consensus_label",
                 "consensus_confidence", "agrees", "method", "anchor"]


def hard_pairs(judgements: pd.DataFrame, consensus: pd.DataFrame, weights: pd.Series,
               judgement_weight: pd.Series, hard_margin: float) -> pd.Series:
    """Bool per comparison (index comparison_id), see module docstring."""
    w = judgements["annotator_id"].map(weights).fillna(0.0).astype(float) * judgement_weight.reindex(judgements.index)
    frame = pd.DataFrame({"c": judgements["comparison_id"], "l": judgements["label"], "w": w, "one": 1.0})
    wv = frame.pivot_table(index="c", columns="l", values="w", aggfunc="sum", fill_value=0.0)
    cv = frame.pivot_table(index="c", columns="l", values="one", aggfunc="sum", fill_value=0.0)
    wv, cv = (t.reindex(columns=list(LABELS), fill_value=0.0) for t in (wv, cv))
    use = wv.where(wv.sum(axis=1) > 0, cv, axis=0)
    margin = (use["a"] - use["b"]).abs() / use.sum(axis=1)
    cons = consensus.set_index("comparison_id")
    hard = (margin.reindex(cons.index) < hard_margin) | (cons["label"] == "tie")
    return hard & ~cons["is_golden"]


def review_queue(cons: pd.DataFrame, threshold: float, min_judgements: int) -> list[dict]:
    rows = []
    top = cons[[f"n_{lab}" for lab in LABELS]].max(axis=1)
    no_majority = (2 * top <= cons["n_judgements"]) & (cons["n_judgements"] >= 2) & ~cons["even_split"]
    cand = cons[~cons["is_golden"] & ((cons["confidence"] < threshold) | (cons["n_judgements"] < min_judgements)
                                      | cons["even_split"] | no_majority)]
    for r, nm in zip(cand.itertuples(index=False), no_majority[cand.index]):
        reasons = []
        if r.confidence < threshold:
            reasons.append("low_confidence")
        if r.n_judgements < min_judgements:
            reasons.append("few_judgements")
        if r.even_split:
            reasons.append("even_split")
        if nm:
            reasons.append("no_majority")
        if reasons:
            rows.append({"comparison_id": r.comparison_id, "batch": int(r.batch), "prompt_id": r.prompt_id,
                         "label": r.label, "confidence": float(r.confidence), "agreement": float(r.agreement),
                         "n_judgements": int(r.n_judgements),
                         "votes": {lab: int(getattr(r, f"n_{lab}")) for lab in LABELS},
                         "probabilities": {lab: float(getattr(r, f"p_{lab}")) for lab in LABELS},
                         "hard": bool(getattr(r, "hard", False)),
                         "reasons": reasons, "threshold": threshold, "prompt": r.prompt,
                         "response_a": r.response_a, "response_b": r.response_b})
    rows.sort(key=lambda d: (d["confidence"], d["batch"], d["comparison_id"]))
    return rows


def training_weights(cons: pd.DataFrame, max_margin: float) -> pd.DataFrame:
    pa, pb = cons["p_a"].to_numpy(float), cons["p_b"].to_numpy(float)
    lab = cons["label"].to_numpy()
    chosen = np.where(np.isin(lab, ["a", "b"]), lab, "")
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(lab == "a", pa, pb) / (pa + pb)
    p = np.where(chosen == "", np.nan, np.nan_to_num(p, nan=0.5))
    with np.errstate(divide="ignore"):
        margin = np.clip(np.log(np.clip(p, 1e-12, 1)) - np.log(np.clip(1 - p, 1e-12, 1)), 0, max_margin)
    out = pd.DataFrame({"comparison_id": cons["comparison_id"], "batch": cons["batch"], "label": cons["label"],
                        "chosen": pd.Series(chosen, index=cons.index, dtype="str"), "p_chosen": p,
                        "weight": cons["confidence"].astype(float),
                        "margin": np.where(chosen == "", 0.0, margin), "hard": cons["hard"],
                        "review": cons["review"], "is_golden": cons["is_golden"],
                        "use": np.where(chosen == "", "skip_tie", "train")})
    for col in ("p_a", "p_b", "p_tie", "n_a", "n_b", "n_tie", "even_split", "anchor"):
        out[col] = cons[col]
    return out[TRAINING_COLUMNS].reset_index(drop=True)


def audit_trail(judgements: pd.DataFrame, cons: pd.DataFrame, *, method: str, annotator_weight: pd.Series,
                judgement_weight: pd.Series, fast: pd.Series, evidence: np.ndarray | None) -> pd.DataFrame:
    """AUDIT_COLUMNS. `evidence`: judgements x K (DS log-likelihood terms); None: the votes themselves."""
    c = cons.set_index("comparison_id")
    aw = judgements["annotator_id"].map(annotator_weight).astype(float)
    if method == "majority":    # one vote per annotator: the weight the consensus used, not the calibrated one
        aw = pd.Series(1.0, index=judgements.index)
    jw = judgement_weight.reindex(judgements.index).astype(float)
    if evidence is None:
        vote = (aw * jw).fillna(0.0)
        # as consensus(): a comparison whose weighted votes are all zero is decided by one vote each
        total = vote.groupby(judgements["comparison_id"]).transform("sum")
        vote = vote.where(total > 0, 1.0)
        evidence = np.stack([np.where(judgements["label"] == lab, vote, 0.0) for lab in LABELS], axis=1)
    out = pd.DataFrame({
        "judgement_id": judgements["judgement_id"], "comparison_id": judgements["comparison_id"],
        "batch": judgements["batch"].astype("int64"), "annotator_id": judgements["annotator_id"],
        "label": judgements["label"], "annotator_weight": aw, "judgement_weight": jw,
        "fast": fast.reindex(judgements.index).astype(bool),
        "evidence_a": evidence[:, 0], "evidence_b": evidence[:, 1], "evidence_tie": evidence[:, 2],
        "consensus_label": judgements["comparison_id"].map(c["label"]),
        "consensus_confidence": judgements["comparison_id"].map(c["confidence"]).astype(float)})
    out["agrees"] = out["label"] == out["consensus_label"]
    out["method"] = method
    out["anchor"] = judgements["comparison_id"].map(c["anchor"]).fillna("")
    return out[AUDIT_COLUMNS].sort_values(["batch", "comparison_id", "judgement_id"]).reset_index(drop=True)
