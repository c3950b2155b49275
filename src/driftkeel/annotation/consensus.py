"""Consensus label per comparison from its judgements: majority, annotator-weighted vote, Dawid–Skene.

Vote rules (``majority``; ``weighted`` uses each annotator's weight as its vote instead of 1):

- the label with the most votes wins;
- ties are explicit: when the top vote is shared by two or more labels (an even split, e.g. one
  ``a`` and one ``b``), the consensus is ``tie``; a plurality of ``tie`` votes is also ``tie``;
- a golden comparison (its id in data/golden.jsonl) takes its gold label, confidence 1.

``confidence`` of a vote is the smoothed share of the consensus label, ``(v_label + s) / (V + K s)``
with ``s = confidence_pseudocount`` per label and ``K = 3`` labels (a Dirichlet-smoothed vote share:
one vote is never certainty). An even split gives ``tie`` with a low confidence, so it lands in review.

``dawid_skene`` (:func:`ds_consensus`): from the posterior of the Dawid–Skene model (:mod:`.dawid_skene`,
golden and settled expert comparisons as anchors) over the true labels ``a``/``b`` (``tie`` too only
when an anchor is a tie: modelled as a class, ``tie`` soaks up every close pair, on which skilled
annotators split much as on true ties, and a close pair still has a preferred side; on the simulator
that cost 2-10 points of accuracy). Tie votes still count: they are the annotator's confusion
column ``tie``. Label (:func:`decide_posterior`): ``tie`` when more than half of the judgements say tie, or
when P(a) = P(b) (within 1e-9: an even split the model cannot break, ``even_split``), else the
likelier of ``a``/``b``; ``confidence`` is its *calibrated* posterior (temperature fitted on held-out
judgements, :func:`driftkeel.annotation.dawid_skene.calibrate`; the labels are the MAP fit's).

Every rule also returns ``p_a, p_b, p_tie`` (the vote shares or posteriors), ``n_a, n_b, n_tie``
(raw counts), ``even_split`` and ``anchor`` (``gold``, ``expert`` or empty).
``agreement`` is always the raw share of judgements equal to the consensus label.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from driftkeel.annotation.dawid_skene import DawidSkeneFit, calibrate, fit_dawid_skene
from driftkeel.data.schemas import CONSENSUS_COLUMNS, LABELS, sort_in_time

_FIRST = ["batch", "timestamp", "prompt_id", "prompt", "response_a", "response_b", "policy_version"]
LABEL_INDEX = {lab: i for i, lab in enumerate(LABELS)}
EXTRA_COLUMNS = ["p_a", "p_b", "p_tie", "n_a", "n_b", "n_tie", "even_split", "anchor"]


def check_labels(judgements: pd.DataFrame) -> None:
    unknown = set(pd.unique(judgements["label"].dropna()).tolist()) - set(LABELS)
    if unknown or judgements["label"].isna().any():
        raise ValueError(f"labels must be in {LABELS} (run validate first); found {sorted(map(str, unknown))}")


def vote_table(judgements: pd.DataFrame, weights: Mapping[str, float] | None = None,
               judgement_weight: pd.Series | None = None) -> pd.DataFrame:
    """Per comparison (sorted ids): votes per label (counts, or summed annotator x judgement weights)."""
    w = np.ones(len(judgements))
    if weights is not None:
        w = judgements["annotator_id"].map(weights).fillna(0.0).to_numpy(dtype=float)
    if judgement_weight is not None:
        w = w * judgement_weight.reindex(judgements.index).fillna(1.0).to_numpy(dtype=float)
    codes, comps = pd.factorize(judgements["comparison_id"], sort=True)
    lab = judgements["label"].map(LABEL_INDEX).to_numpy(dtype=np.int64)
    K = len(LABELS)
    votes = np.bincount(codes * K + lab, weights=w, minlength=len(comps) * K).reshape(-1, K)
    return pd.DataFrame(votes, index=pd.Index(comps, name="comparison_id"), columns=list(LABELS))


def decide(votes: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(label, even_split) per row of a votes table: the top label, or 'tie' if the top is shared."""
    v = votes[list(LABELS)].to_numpy(dtype=float)
    top = v.max(axis=1, keepdims=True)
    n_top = np.isclose(v, top, rtol=1e-9, atol=1e-12).sum(axis=1)
    even_split = (n_top > 1) & (top[:, 0] > 0)
    labels = np.array(LABELS, dtype=object)[v.argmax(axis=1)]
    labels = np.where(n_top > 1, "tie", labels)
    return pd.Series(labels, index=votes.index, dtype="str"), pd.Series(even_split, index=votes.index)


def _pick(values: np.ndarray, labels: pd.Series) -> np.ndarray:
    """values[i, column of labels[i]] for a (rows x LABELS) array."""
    col = labels.map(LABEL_INDEX).to_numpy(dtype=np.int64)
    return values[np.arange(len(col)), col]


def smoothed_share(votes: pd.DataFrame, labels: pd.Series, pseudocount: float) -> pd.Series:
    v = votes[list(LABELS)].to_numpy(dtype=float)
    picked = _pick(v, labels)
    total = v.sum(axis=1)
    conf = (picked + pseudocount) / (total + len(LABELS) * pseudocount)
    return pd.Series(np.clip(conf, 0.0, 1.0), index=votes.index)


def _frame(judgements: pd.DataFrame, gold: Mapping[str, str], counts: pd.DataFrame, label: pd.Series,
           conf: pd.Series, even_split: pd.Series, probs: np.ndarray, anchors: Mapping[str, str]) -> pd.DataFrame:
    """The consensus frame: CONSENSUS_COLUMNS + EXTRA_COLUMNS, sorted by batch, comparison_id."""
    idx = counts.index
    is_gold = pd.Series(idx.isin(list(gold)), index=idx)
    gold_label = pd.Series(gold, dtype="object").reindex(idx) if gold else pd.Series(None, index=idx, dtype="object")
    label = label.where(~is_gold, gold_label).astype("str")
    conf = conf.where(~is_gold, 1.0)
    even_split = even_split & ~is_gold
    n = counts.sum(axis=1)
    agree = _pick(counts[list(LABELS)].to_numpy(dtype=float), label) / n.to_numpy(dtype=float)

    first = (sort_in_time(judgements[["comparison_id", *_FIRST]], ["batch", "timestamp", "comparison_id"])
             .drop_duplicates("comparison_id", keep="first"))
    out = first.set_index("comparison_id")[_FIRST].reindex(idx)  # earliest judgement: batch, time, content
    out["is_golden"] = is_gold
    out["label"] = label
    out["confidence"] = conf.astype(float)
    out["n_judgements"] = n.astype("int64")
    out["agreement"] = agree.astype(float)
    probs = np.array(probs, dtype=float, copy=True)
    gold_rows = np.flatnonzero(is_gold.to_numpy())
    if len(gold_rows):  # a gold label is certain
        probs[gold_rows] = 0.0
        probs[gold_rows, label.iloc[gold_rows].map(LABEL_INDEX).to_numpy(dtype=np.int64)] = 1.0
    for j, lab in enumerate(LABELS):
        out[f"p_{lab}"] = probs[:, j]
    for lab in LABELS:
        out[f"n_{lab}"] = counts[lab].astype("int64")
    out["even_split"] = even_split.astype(bool)
    out["anchor"] = (pd.Series(anchors, dtype="object").reindex(idx) if anchors else pd.Series(None, index=idx, dtype="object")).fillna("").astype("str")
    out = out.reset_index().rename(columns={"index": "comparison_id"})
    out = out.sort_values(["batch", "comparison_id"], kind="stable").reset_index(drop=True)
    types = {c: ("str" if t == "str" else "int64" if t == "int" else "float64" if t == "float" else "bool")
             for c, t in CONSENSUS_COLUMNS.items()}
    return out.astype(types)


def consensus(judgements: pd.DataFrame, gold: Mapping[str, str], *, pseudocount: float = 0.5,
              weights: Mapping[str, float] | None = None,
              judgement_weight: pd.Series | None = None) -> pd.DataFrame:
    """Vote consensus: CONSENSUS_COLUMNS + EXTRA_COLUMNS per comparison, sorted by batch, comparison.

    `weights`: annotator -> vote weight (``None``: one vote each); `judgement_weight`: a factor per
    judgement (index aligned with `judgements`). A comparison whose weighted votes are all zero falls
    back to one vote each.
    """
    check_labels(judgements)
    counts = vote_table(judgements)
    votes = counts.copy()
    if weights is not None or judgement_weight is not None:
        weighted = vote_table(judgements, weights, judgement_weight)
        usable = weighted.sum(axis=1) > 0
        votes.loc[usable] = weighted.loc[usable]
    label, even_split = decide(votes)
    conf = smoothed_share(votes, label, pseudocount)
    v = votes.to_numpy(dtype=float)
    probs = (v + pseudocount) / (v.sum(axis=1, keepdims=True) + len(LABELS) * pseudocount)
    anchors = dict.fromkeys(counts.index[counts.index.isin(list(gold))], "gold")
    return _frame(judgements, gold, counts, label, conf, even_split, probs, anchors)


def decide_posterior(post: np.ndarray, counts: pd.DataFrame, pseudocount: float = 0.5
                     ) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(label, confidence, even_split) from posteriors over LABELS = (a, b, tie) and the raw votes.

    ``tie`` when more than half of the judgements say tie, when P(tie) >= 1/2 (only possible if
    ``tie`` is a latent class, i.e. some anchor is a tie), or when P(a) = P(b) (an even split the model
    cannot break: ``even_split``); otherwise the likelier of ``a`` and ``b``. Confidence: the posterior
    of the label; for a ``tie`` that the model does not carry, the smoothed share of tie votes.
    """
    pa, pb, pt = post[:, 0], post[:, 1], post[:, 2]
    v = counts[list(LABELS)].to_numpy(dtype=float)
    plural_tie = 2 * v[:, 2] > v.sum(axis=1)                     # more than half the judgements say tie
    even = np.isclose(pa, pb, rtol=1e-9, atol=1e-12) & (pt < 0.5) & ~plural_tie
    is_tie = plural_tie | (pt >= 0.5) | even
    label = np.where(is_tie, "tie", np.where(pa > pb, "a", "b"))
    tie_share = (v[:, 2] + pseudocount) / (v.sum(axis=1) + len(LABELS) * pseudocount)
    conf = np.where(is_tie, np.where(pt >= 0.5, pt, np.maximum(pt, tie_share)), np.maximum(pa, pb))
    idx = counts.index
    return (pd.Series(label, index=idx, dtype="str"), pd.Series(conf, index=idx, dtype=float),
            pd.Series(even, index=idx))


@dataclass
class DSResult:
    consensus: pd.DataFrame         # as consensus()
    fit: DawidSkeneFit
    comparisons: pd.Index           # row order of fit.posterior
    annotators: pd.Index            # row order of fit.confusion
    judgement_rows: np.ndarray      # fit.log_lik row j <-> judgements.iloc[judgement_rows[j]] (= arange)
    temperature: float              # calibration temperature (dawid_skene.calibrate)
    posterior: np.ndarray           # calibrated posterior, rows = comparisons


def expert_anchors(judgements: pd.DataFrame, experts) -> dict[str, str]:
    """comparison_id -> label where every expert judgement of that comparison gives the same label."""
    experts = set(experts or ())
    if not experts:
        return {}
    ex = judgements[judgements["annotator_id"].isin(experts)]
    labels = ex.groupby("comparison_id")["label"].agg(lambda s: s.iloc[0] if s.nunique() == 1 else None)
    return {c: lab for c, lab in labels.items() if lab is not None}


def _latent(label_idx: np.ndarray) -> np.ndarray:
    """True labels DS may infer: a and/or b, those that some judgement reports (an anchor adds its own
    class in the fit). A class nobody reports has no evidence of how annotators judge it: left latent,
    EM can learn 'when the truth is b, everyone says a' and turn unanimous votes into coin flips. With
    only ties reported, both a and b stay possible."""
    reported = np.isin(np.array([LABELS.index("a"), LABELS.index("b")]), label_idx)
    return np.array([*(reported if reported.any() else [True, True]), False])


def ds_consensus(judgements: pd.DataFrame, gold: Mapping[str, str], *, prior_strength: float = 2.0,
                 empirical_bayes: bool = True, pseudocount: float = 0.5,
                 judgement_weight: pd.Series | None = None, experts=(), max_iter: int = 100,
                 tol: float = 1e-6) -> DSResult:
    """Dawid–Skene consensus with golden (and unanimous expert) comparisons as anchors.

    The confusions' pooled prior has its strength estimated from the data (``empirical_bayes``, see
    :func:`driftkeel.annotation.dawid_skene.fit_dawid_skene`); `prior_strength` is the fixed strength
    when ``empirical_bayes=False`` and otherwise only the fallback for a row with too little evidence.
    """
    check_labels(judgements)
    counts = vote_table(judgements)
    comps = counts.index
    annotators = pd.Index(sorted(judgements["annotator_id"].unique()))
    item = comps.get_indexer(judgements["comparison_id"])
    worker = annotators.get_indexer(judgements["annotator_id"])
    label_idx = judgements["label"].map(LABEL_INDEX).to_numpy(dtype=np.int64)
    anchors = {c: "expert" for c in expert_anchors(judgements, experts)}
    anchors.update(dict.fromkeys(comps[comps.isin(list(gold))], "gold"))
    known = {**expert_anchors(judgements, experts), **gold}
    gold_idx = (pd.Series(known, dtype="object").reindex(comps).map(LABEL_INDEX).fillna(-1).to_numpy(dtype=np.int64)
                if known else np.full(len(comps), -1, dtype=np.int64))
    r = None if judgement_weight is None else judgement_weight.reindex(judgements.index).fillna(1.0).to_numpy(float)
    # true labels: a or b (a tie vote is evidence of a close pair, not of a true tie); tie only if an
    # anchor says so
    fit = fit_dawid_skene(item, worker, label_idx, n_items=len(comps), n_workers=len(annotators),
                          n_classes=len(LABELS), gold=gold_idx, judgement_weight=r,
                          latent=_latent(label_idx), prior_strength=prior_strength,
                          empirical_bayes=empirical_bayes, max_iter=max_iter, tol=tol)
    label, _, even_split = decide_posterior(fit.posterior, counts, pseudocount)   # labels: the MAP fit
    temperature, calibrated = calibrate(fit, item, worker, label_idx, n_items=len(comps), gold=gold_idx)
    _, conf, _ = decide_posterior(calibrated, counts, pseudocount)                 # confidence: calibrated
    # an expert anchor is a settled label: it wins like gold does (gold wins over experts)
    expert_only = {c: lab for c, lab in known.items() if anchors.get(c) == "expert"}
    if expert_only:
        ex = pd.Series(expert_only)
        label.loc[ex.index] = ex
        conf.loc[ex.index] = 1.0
        even_split.loc[ex.index] = False
    cons = _frame(judgements, gold, counts, label, conf, even_split, calibrated, anchors)
    return DSResult(consensus=cons, fit=fit, comparisons=comps, annotators=annotators,
                    judgement_rows=np.arange(len(judgements)), temperature=temperature, posterior=calibrated)
