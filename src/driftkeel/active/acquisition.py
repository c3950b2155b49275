"""Acquisition scores for active learning on preference pairs (higher = more worth labelling).

All scores are functions of the reward-model ensemble's Bradley-Terry probabilities
P_m(a preferred over b), one row per member m (a single model is a 1-row matrix):

- `random`            a seeded uniform draw (the baseline);
- `least_confidence`  1 - 2|p - 0.5| on the members' mean p (for two outcomes margin and least
                      confidence rank identically, so `margin` is the same score);
- `entropy`           binary entropy H(p) of the mean, in bits;
- `variance`          variance of p over the members (ensemble disagreement; 0 for one member);
- `bald`              H(mean p) - mean_m H(p_m): the mutual information between the label and the
                      ensemble member (Houlsby et al. 2011), in bits; 0 when all members agree.
"""
from __future__ import annotations

import numpy as np

STRATEGIES = ("least_confidence", "margin", "entropy", "variance", "bald", "random")


def _as_members(p) -> np.ndarray:
    P = np.asarray(p, dtype=float)
    return P[None, :] if P.ndim == 1 else P


def least_confidence(p_a: np.ndarray) -> np.ndarray:
    """1 - 2|p - 0.5|: 1 for a coin flip (p = 0.5), 0 for a certain prediction (p in {0, 1})."""
    p = np.asarray(p_a, dtype=float)
    return 1.0 - 2.0 * np.abs(p - 0.5)


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """H(p) in bits (0 at p in {0, 1}, 1 at p = 0.5)."""
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def ensemble_variance(members: np.ndarray) -> np.ndarray:
    return _as_members(members).var(axis=0)


def bald(members: np.ndarray) -> np.ndarray:
    P = _as_members(members)
    return np.maximum(binary_entropy(P.mean(axis=0)) - binary_entropy(P).mean(axis=0), 0.0)


def random_scores(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(n)


def scores(members: np.ndarray, strategy: str, seed: int = 0) -> np.ndarray:
    """Acquisition score per pair for `strategy` from the (n_members, n) matrix of P(a preferred)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown acquisition strategy {strategy!r}; known: {STRATEGIES}")
    P = _as_members(members)
    if strategy == "random":
        return random_scores(P.shape[1], seed)
    if strategy in ("least_confidence", "margin"):
        return least_confidence(P.mean(axis=0))
    if strategy == "entropy":
        return binary_entropy(P.mean(axis=0))
    if strategy == "variance":
        return ensemble_variance(P)
    return bald(P)


def rank(scores: np.ndarray, seed: int) -> np.ndarray:
    """Indices by descending score; exact ties broken by a seeded random order (not by position)."""
    scores = np.asarray(scores, dtype=float)
    tiebreak = np.random.default_rng(seed).random(len(scores))
    return np.lexsort((tiebreak, -scores))


def acquire(p_a: np.ndarray, strategy: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(score per pair, order of pairs to label) for `strategy`; `p_a` is a vector (one model) or an
    (n_members, n) matrix."""
    s = scores(p_a, strategy, seed)
    return s, rank(s, seed)
