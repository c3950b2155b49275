"""Consensus label per comparison from its judgements.

Rule (``method="majority"``; ``"weighted"`` uses each annotator's weight as its vote instead of 1):

- the label with the most votes wins;
- ties are explicit: when the top vote is shared by two or more labels (an even split, e.g. one
  ``a`` and one ``b``), the consensus is ``tie``; a plurality of ``tie`` votes is also ``tie``;
- a golden comparison (its id in data/golden.jsonl) takes its gold label, confidence 1.

``confidence`` is the smoothed share of the consensus label, ``(v_label + s) / (V + K s)`` with
``s = confidence_pseudocount`` per label and ``K = 3`` labels (a Dirichlet-smoothed vote share, in
[0, 1]; it shrinks small vote counts towards 1/K: one vote is never certainty). An even split gives
``tie`` with a low confidence (the tie label itself got few or no votes), so it lands in review.
``agreement`` is the raw share of judgements equal to the consensus label.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from driftkeel.data.schemas import CONSENSUS_COLUMNS, LABELS

_FIRST = ["batch", "timestamp", "prompt_id", "prompt", "response_a", "response_b", "policy_version"]


def vote_table(judgements: pd.DataFrame, weights: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Per comparison: votes per label (counts, or summed annotator weights when `weights`)."""
    if weights is None:
        w = pd.Series(1.0, index=judgements.index)
    else:
        w = judgements["annotator_id"].map(weights).fillna(0.0).astype(float)
    votes = (pd.DataFrame({"comparison_id": judgements["comparison_id"], "label": judgements["label"], "w": w})
             .pivot_table(index="comparison_id", columns="label", values="w", aggfunc="sum", fill_value=0.0))
    return votes.reindex(columns=list(LABELS), fill_value=0.0).astype(float)


def decide(votes: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(label, even_split) per row of a votes table: the top label, or 'tie' if the top is shared."""
    v = votes[list(LABELS)].to_numpy(dtype=float)
    top = v.max(axis=1, keepdims=True)
    n_top = np.isclose(v, top, rtol=1e-12, atol=1e-12).sum(axis=1)
    even_split = (n_top > 1) & (top[:, 0] > 0)
    labels = np.array(LABELS, dtype=object)[v.argmax(axis=1)]
    labels = np.where(n_top > 1, "tie", labels)
    return pd.Series(labels, index=votes.index, dtype="str"), pd.Series(even_split, index=votes.index)


def _pick(values: np.ndarray, labels: pd.Series) -> np.ndarray:
    """values[i, column of labels[i]] for a (rows x LABELS) array."""
    col = labels.map({lab: j for j, lab in enumerate(LABELS)}).to_numpy(dtype=np.int64)
    return values[np.arange(len(col)), col]


def smoothed_share(votes: pd.DataFrame, labels: pd.Series, pseudocount: float) -> pd.Series:
    v = votes[list(LABELS)].to_numpy(dtype=float)
    picked = _pick(v, labels)
    total = v.sum(axis=1)
    conf = (picked + pseudocount) / (total + len(LABELS) * pseudocount)
    return pd.Series(np.clip(conf, 0.0, 1.0), index=votes.index)


def consensus(judgements: pd.DataFrame, gold: Mapping[str, str], *, pseudocount: float = 0.5,
              weights: Mapping[str, float] | None = None) -> pd.DataFrame:
    """CONSENSUS_COLUMNS (+ n_a, n_b, n_tie, even_split) per comparison, sorted by batch, comparison.

    `weights`: annotator -> vote weight (``None``: one vote each). A comparison whose weighted votes
    are all zero falls back to one vote each.
    """
    unknown = set(judgements["label"].dropna()) - set(LABELS)
    if unknown or judgements["label"].isna().any():
        raise ValueError(f"labels must be in {LABELS} (run validate first); found {sorted(map(str, unknown))}")
    counts = vote_table(judgements)
    votes = counts.copy()
    if weights is not None:
        weighted = vote_table(judgements, weights)
        usable = weighted.sum(axis=1) > 0
        votes.loc[usable] = weighted.loc[usable]
    label, even_split = decide(votes)
    conf = smoothed_share(votes, label, pseudocount)

    is_gold = pd.Series(votes.index.isin(list(gold)), index=votes.index)
    gold_label = pd.Series([gold.get(c) for c in votes.index], index=votes.index, dtype="object")
    label = label.where(~is_gold, gold_label).astype("str")
    conf = conf.where(~is_gold, 1.0)
    even_split = even_split & ~is_gold

    n = counts.sum(axis=1)
    agree = _pick(counts[list(LABELS)].to_numpy(dtype=float), label) / n.to_numpy(dtype=float)

    meta = (judgements.sort_values(["batch", "timestamp", "comparison_id"], kind="stable")
            .groupby("comparison_id", sort=False)[_FIRST].first())
    out = meta.reindex(votes.index)
    out["batch"] = judgements.groupby("comparison_id")["batch"].min().reindex(votes.index)
    out["timestamp"] = judgements.groupby("comparison_id")["timestamp"].min().reindex(votes.index)
    out["is_golden"] = is_gold
    out["label"] = label
    out["confidence"] = conf.astype(float)
    out["n_judgements"] = n.astype("int64")
    out["agreement"] = agree.astype(float)
    for lab in LABELS:
        out[f"n_{lab}"] = counts[lab].astype("int64")
    out["even_split"] = even_split.astype(bool)
    out = out.reset_index().rename(columns={"index": "comparison_id"})
    out = out.sort_values(["batch", "comparison_id"], kind="stable").reset_index(drop=True)
    types = {c: ("str" if t == "str" else "int64" if t == "int" else "float64" if t == "float" else "bool")
             for c, t in CONSENSUS_COLUMNS.items()}
    return out.astype(types)
