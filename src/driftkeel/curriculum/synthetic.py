"""Synthetic feedback: pool pairs labelled by the surrogate reward ensemble where it is confident.

An ensemble of `n_members` bootstrap Bradley-Terry surrogates is fitted on the human-labelled train
pairs (features chosen - rejected). A pool pair becomes a synthetic pair when EVERY member gives the
same side a probability of at least `min_confidence`; the most confident are kept, at most
`max_share` of the train mix. They carry `source="synthetic"`, weight = `weight` x the members' mean
probability, and are only ever added to the train split (never to eval, whose labels stay human).
Pairs already queued for human labelling are not labelled synthetically.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def synthetic_pairs(train_X: np.ndarray, pool: list[dict], pool_X: np.ndarray, *, n_train: int,
                    min_confidence: float, max_share: float, weight: float, seed: int, n_members: int = 5,
                    exclude: set | None = None) -> tuple[pd.DataFrame, dict]:
    from driftkeel.active.surrogate import BradleyTerrySurrogate

    cols = ["pair_id", "prompt_id", "prompt", "chosen", "rejected", "weight", "batch"]
    info = {"n_pool_candidates": len(pool), "n_synthetic_confident": 0, "n_synthetic": 0}
    cap = int(np.floor(n_train * max_share / (1.0 - max_share))) if max_share > 0 else 0
    if not len(pool) or len(train_X) < 10 or cap == 0:
        info["reason"] = "no pool, too few train pairs or synthetic_max_share 0"
        return pd.DataFrame(columns=cols), info
    ens = BradleyTerrySurrogate(n_members=n_members, seed=seed).fit(train_X, np.ones(len(train_X), dtype=int))
    P = ens.member_proba(pool_X)
    lo, hi = P.min(axis=0), P.max(axis=0)
    a_side = lo >= min_confidence
    b_side = hi <= 1.0 - min_confidence
    excl = np.array([r["pair_id"] in (exclude or set()) for r in pool])
    ok = (a_side | b_side) & ~excl
    info["n_synthetic_confident"] = int(ok.sum())
    info["n_excluded_queued"] = int(((a_side | b_side) & excl).sum())
    conf = np.where(a_side, P.mean(axis=0), 1.0 - P.mean(axis=0))
    idx = np.flatnonzero(ok)
    idx = idx[np.lexsort((np.random.default_rng(seed).random(len(idx)), -conf[idx]))][:cap]
    rows = [{"pair_id": f"synthetic:{pool[i]['pair_id']}", "prompt_id": str(pool[i].get("prompt_id") or pool[i]["prompt"]),
             "prompt": pool[i]["prompt"],
             "chosen": pool[i]["response_a"] if a_side[i] else pool[i]["response_b"],
             "rejected": pool[i]["response_b"] if a_side[i] else pool[i]["response_a"],
             "weight": float(weight * conf[i]), "batch": int(pool[i]["batch"]) if pool[i].get("batch") is not None else -1} for i in idx]
    info["n_synthetic"] = len(rows)
    info["synthetic_cap"] = cap
    return pd.DataFrame(rows, columns=cols), info
