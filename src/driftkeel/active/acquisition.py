"""Acquisition scores for active learning on preference pairs (higher = more worth labelling)."""
from __future__ import annotations

import numpy as np

STRATEGIES = ("least_confidence", "random")


def least_confidence(p_a: np.ndarray) -> np.ndarray:
    """1 - 2|p - 0.5|: 1 for a coin flip (p = 0.5), 0 for a certain prediction (p in {0, 1})."""
    p = np.asarray(p_a, dtype=float)
    return 1.0 - 2.0 * np.abs(p - 0.5)


def random_scores(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(n)


def rank(scores: np.ndarray, seed: int) -> np.ndarray:
    """Indices by descending score; exact ties broken by a seeded random order (not by position)."""
    scores = np.asarray(scores, dtype=float)
    tiebreak = np.random.default_rng(seed).random(len(scores))
    return np.lexsort((tiebreak, -scores))


def acquire(p_a: np.ndarray, strategy: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (uncertainty per pair, order of pairs to label) for `strategy`."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown acquisition strategy {strategy!r}; known: {STRATEGIES}")
    uncertainty = least_confidence(p_a)
    scores = uncertainty if strategy == "least_confidence" else random_scores(len(uncertainty), seed)
    return uncertainty, rank(scores, seed)
