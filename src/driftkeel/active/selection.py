"""Budgeted selection of unlabeled pool pairs for annotation (the labelling queue).

1. Clean the pool: rows missing a required field or with identical responses are skipped (counted by
   reason); repeated pair_ids keep the first row.
2. Fit the surrogate Bradley-Terry reward (active/surrogate.py) on the aggregated consensus: non-tie
   labels, weighted by confidence. Its held-out accuracy (20% of prompts, grouped by prompt_id) is
   reported, then it is refitted on all labels.
3. Score every pool pair (P(a preferred)), rank by the acquisition strategy, take the top k.
   k larger than the pool takes the whole pool (and says so). Without labels to fit the surrogate,
   the strategy falls back to `random` (and says so).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from driftkeel.active.acquisition import acquire
from driftkeel.active.surrogate import BradleyTerrySurrogate, pair_features
from driftkeel.config import SelectParams
from driftkeel.embeddings import Embedder

REQUIRED = ("pair_id", "prompt", "response_a", "response_b")
OPTIONAL = ("prompt_id", "batch", "policy_version")
HOLDOUT = 0.2


@dataclass
class Selection:
    queue: list[dict]
    scores: pd.DataFrame
    metrics: dict
    notes: list[str] = field(default_factory=list)


def read_pool(path) -> tuple[list, int]:
    """Lenient JSONL reader for the pool: (parsed lines, number of lines that are not valid JSON)."""
    import json
    from pathlib import Path

    rows, bad = [], 0
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    bad += 1
    return rows, bad


def clean_pool(rows: list) -> tuple[list[dict], dict]:
    """Valid pool rows and the count of skipped rows per reason."""
    counts = {"not_an_object": 0, "missing_fields": 0, "identical_responses": 0, "duplicate_pair_id": 0,
              "missing_optional_fields": 0}
    seen, out = set(), []
    for r in rows:
        if not isinstance(r, dict):
            counts["not_an_object"] += 1
            continue
        if any(not isinstance(r.get(k), str) or not r.get(k).strip() for k in REQUIRED):
            counts["missing_fields"] += 1
            continue
        if r["response_a"].strip() == r["response_b"].strip():
            counts["identical_responses"] += 1
            continue
        if r["pair_id"] in seen:
            counts["duplicate_pair_id"] += 1
            continue
        if any(r.get(k) is None for k in OPTIONAL):
            counts["missing_optional_fields"] += 1
        seen.add(r["pair_id"])
        out.append(r)
    return out, counts


def _labels(consensus: pd.DataFrame | None) -> pd.DataFrame:
    if consensus is None or not len(consensus) or "label" not in consensus.columns:
        return pd.DataFrame(columns=["prompt_id", "prompt", "response_a", "response_b", "label", "confidence"])
    lab = consensus[consensus["label"].isin(["a", "b"])]
    lab = lab.dropna(subset=["prompt", "response_a", "response_b"]).reset_index(drop=True)
    return lab


def fit_surrogate(consensus: pd.DataFrame | None, embedder: Embedder, n_members: int, seed: int,
                  min_labels: int = 10) -> tuple[BradleyTerrySurrogate | None, dict]:
    """Fit on consensus labels; returns (model or None, info with held-out accuracy)."""
    lab = _labels(consensus)
    info = {"n_labels": int(len(lab)), "heldout_accuracy": None, "n_heldout": 0}
    if len(lab) < min_labels or lab["label"].nunique() < 2:
        info["problem"] = f"too few non-tie consensus labels to fit the surrogate ({len(lab)})"
        return None, info
    X = pair_features(embedder, lab["prompt"].astype(str).tolist(), lab["response_a"].astype(str).tolist(),
                      lab["response_b"].astype(str).tolist())
    y = (lab["label"] == "a").to_numpy().astype(int)
    w = (lab["confidence"].fillna(1.0).to_numpy(dtype=float) if "confidence" in lab.columns
         else np.ones(len(lab)))
    groups = (lab["prompt_id"] if "prompt_id" in lab.columns else lab["prompt"]).astype(str)
    uniq = np.array(sorted(groups.unique()))
    held = set(np.random.default_rng(seed).permutation(uniq)[: int(round(HOLDOUT * len(uniq)))])
    te = groups.isin(held).to_numpy()
    if te.any() and (~te).any() and len(set(y[~te].tolist())) == 2:
        m = BradleyTerrySurrogate(seed=seed).fit(X[~te], y[~te], w[~te])
        info["heldout_accuracy"] = float(np.mean((m.predict_proba(X[te]) >= 0.5).astype(int) == y[te]))
        info["n_heldout"] = int(te.sum())
    model = BradleyTerrySurrogate(n_members=n_members, seed=seed).fit(X, y, w)
    return model, info


def select(pool_rows: list, consensus: pd.DataFrame | None, params: SelectParams, embedder: Embedder,
           seed: int = 0) -> Selection:
    pool, skipped = clean_pool(pool_rows)
    notes: list[str] = []
    for reason, n in skipped.items():
        if n:
            notes.append(f"{n} pool row(s): {reason.replace('_', ' ')}"
                         + (" (kept)" if reason == "missing_optional_fields" else " (skipped)"))
    strategy = params.strategy
    model, info = fit_surrogate(consensus, embedder, params.n_members, seed) if pool else (None, {"n_labels": 0})
    if pool and model is None:
        notes.append(f"{info.get('problem', 'no surrogate')}: falling back to random selection")
        strategy = "random"
    if pool and model is not None:
        X = pair_features(embedder, [r["prompt"] for r in pool], [r["response_a"] for r in pool],
                          [r["response_b"] for r in pool])
        members = model.member_proba(X)
        p_a, spread = members.mean(axis=0), members.std(axis=0)
    else:
        p_a, spread = np.full(len(pool), 0.5), np.zeros(len(pool))
    uncertainty, order = acquire(p_a, strategy, seed)
    k = min(params.k, len(pool))
    if params.k > len(pool):
        notes.append(f"k={params.k} exceeds the {len(pool)} usable pool pairs: selecting all of them")
    if not pool:
        notes.append("the pool is empty (or no row is usable): the queue is empty")
    rank_of = np.empty(len(pool), dtype=int)
    rank_of[order] = np.arange(len(pool))
    queue = []
    for r, i in enumerate(order[:k]):
        row = pool[i]
        reason = (f"least_confidence: P(a preferred)={p_a[i]:.3f}, uncertainty {uncertainty[i]:.3f}, "
                  f"rank {r + 1} of {len(pool)}" if strategy == "least_confidence"
                  else f"random: seeded draw {r + 1} of {len(pool)} (seed {seed})")
        queue.append({"pair_id": row["pair_id"], "prompt_id": row.get("prompt_id"), "prompt": row["prompt"],
                      "response_a": row["response_a"], "response_b": row["response_b"],
                      "batch": row.get("batch"), "policy_version": row.get("policy_version"),
                      "p_a": float(p_a[i]), "uncertainty": float(uncertainty[i]),
                      "member_std": float(spread[i]), "rank": r + 1, "reason": reason})
    scores = pd.DataFrame({"rank": rank_of + 1, "pair_id": [r["pair_id"] for r in pool], "p_a": p_a,
                           "uncertainty": uncertainty, "selected": rank_of < k}).sort_values("rank")
    sel_u = uncertainty[order[:k]] if k else np.zeros(0)
    metrics = {
        "n_pool_rows": len(pool_rows), "n_pool_usable": len(pool),
        **{f"n_skipped_{k_}": v for k_, v in skipped.items()},
        "k_requested": params.k, "k_selected": k, "k_capped": int(params.k > len(pool)),
        "strategy_random_fallback": int(strategy != params.strategy),
        "surrogate_n_labels": info.get("n_labels", 0), "surrogate_heldout_accuracy": info.get("heldout_accuracy"),
        "mean_uncertainty_selected": float(sel_u.mean()) if k else None,
        "mean_uncertainty_pool": float(uncertainty.mean()) if len(pool) else None,
        "mean_abs_margin_selected": float(np.mean(np.abs(p_a[order[:k]] - 0.5))) if k else None,
    }
    return Selection(queue=queue, scores=scores, metrics=metrics, notes=notes)
