"""Pure metrics on reward scores (numbers in, numbers out; no models here).

A pair counts as correct when the reward model scores `chosen` above `rejected`; an exact tie counts
as half (a constant reward model then scores 0.5, chance level, instead of 0).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pair_outcomes(chosen_scores: Sequence[float], rejected_scores: Sequence[float]) -> np.ndarray:
    """1.0 where chosen > rejected, 0.5 on a tie, 0.0 otherwise (NaN scores count as wrong)."""
    chosen = np.asarray(chosen_scores, dtype=float)
    rejected = np.asarray(rejected_scores, dtype=float)
    if chosen.shape != rejected.shape or chosen.ndim != 1:
        raise ValueError(f"chosen and rejected scores must be 1-D and the same length, got "
                         f"{chosen.shape} and {rejected.shape}")
    return np.where(chosen > rejected, 1.0, np.where(chosen == rejected, 0.5, 0.0))


def pairwise_accuracy(chosen_scores: Sequence[float], rejected_scores: Sequence[float]) -> float:
    """Share of pairs ranked correctly (ties half); NaN when there are no pairs."""
    outcomes = pair_outcomes(chosen_scores, rejected_scores)
    return float(outcomes.mean()) if outcomes.size else float("nan")


def accuracy_by_slice(chosen_scores: Sequence[float], rejected_scores: Sequence[float],
                      slices: Sequence[str]) -> dict[str, dict]:
    """{slice: {"accuracy": float, "n": int}} for every slice label present, in sorted order."""
    outcomes = pair_outcomes(chosen_scores, rejected_scores)
    labels = np.asarray(slices, dtype=object)
    if labels.shape != outcomes.shape:
        raise ValueError(f"{len(labels)} slice labels for {len(outcomes)} pairs")
    out = {}
    for name in sorted(set(labels.tolist())):
        mask = labels == name
        out[str(name)] = {"accuracy": float(outcomes[mask].mean()), "n": int(mask.sum())}
    return out


def reward_summary(scores: Sequence[float]) -> dict[str, float]:
    """Mean, standard deviation and count of policy rewards (NaN mean/std when empty)."""
    arr = np.asarray(scores, dtype=float)
    if arr.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(arr.mean()), "std": float(arr.std()), "n": int(arr.size)}
