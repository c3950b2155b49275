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


# ------------------------------------------------------------------------------ calibration


def preference_probability(score_diffs: Sequence[float], temperature: float = 1.0) -> np.ndarray:
    """Bradley-Terry probability that the first response is preferred: sigmoid(diff / temperature)."""
    d = np.asarray(score_diffs, dtype=float) / float(temperature)
    return 0.5 * (1.0 + np.tanh(0.5 * d))  # = 1 / (1 + exp(-d)), without overflow


def preference_nll(score_diffs: Sequence[float], temperature: float = 1.0) -> float:
    """Mean -log P(chosen > rejected) of chosen-minus-rejected score differences."""
    d = np.asarray(score_diffs, dtype=float) / float(temperature)
    return float(np.mean(np.logaddexp(0.0, -d))) if d.size else float("nan")


def fit_temperature(score_diffs: Sequence[float], lo: float = 0.1, hi: float = 20.0) -> float:
    """Temperature T minimising the held-out NLL of sigmoid(diff / T) (chosen-minus-rejected diffs).

    Scaling by one positive T keeps every ranking (accuracy unchanged) and fixes over/under-confidence.
    Bounded: a perfectly separated set would otherwise drive T to 0. Golden-section search on log T.
    1.0 when there is nothing to fit."""
    d = np.asarray(score_diffs, dtype=float)
    d = d[np.isfinite(d)]
    if d.size == 0 or not np.any(d):
        return 1.0
    a, b = np.log(lo), np.log(hi)
    g = (np.sqrt(5.0) - 1.0) / 2.0
    c, e = b - g * (b - a), a + g * (b - a)
    fc, fe = preference_nll(d, np.exp(c)), preference_nll(d, np.exp(e))
    for _ in range(80):
        if fc < fe:
            b, e, fe = e, c, fc
            c = b - g * (b - a)
            fc = preference_nll(d, np.exp(c))
        else:
            a, c, fc = c, e, fe
            e = a + g * (b - a)
            fe = preference_nll(d, np.exp(e))
    return float(np.exp((a + b) / 2.0))


def expected_calibration_error(p_chosen: Sequence[float], n_bins: int = 10) -> float:
    """Top-label ECE of pairwise probabilities P(chosen > rejected) (orientation-free).

    Each pair's confidence is max(p, 1 - p) and it is right when p > 0.5 (a tie p = 0.5 counts half);
    ECE = sum over equal-width confidence bins on [0.5, 1] of (bin share) x |accuracy - confidence|."""
    p = np.asarray(p_chosen, dtype=float)
    if p.size == 0:
        return float("nan")
    conf = np.maximum(p, 1.0 - p)
    right = np.where(p > 0.5, 1.0, np.where(p == 0.5, 0.5, 0.0))
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for k in range(n_bins):
        m = idx == k
        if m.any():
            ece += m.mean() * abs(right[m].mean() - conf[m].mean())
    return float(ece)


# --------------------------------------------------------------- classification view of pairs


def orientation(pair_ids: Sequence[str]) -> np.ndarray:
    """A fixed, seed-free presentation order per pair: True = chosen shown as response A.

    Pairs are stored chosen-first, which makes precision/recall of "A is preferred" meaningless; this
    shows each pair in the order given by a hash of its id, so every model is scored on the same view."""
    import hashlib

    return np.array([hashlib.sha256(str(i).encode()).digest()[0] % 2 == 0 for i in pair_ids], dtype=bool)


def classification_metrics(chosen_scores: Sequence[float], rejected_scores: Sequence[float],
                           pair_ids: Sequence[str]) -> dict[str, float]:
    """Precision, recall and F1 of the class "response A is preferred" under :func:`orientation`
    (a tie predicts B). Accuracy equals :func:`pairwise_accuracy` up to ties."""
    c, r = np.asarray(chosen_scores, dtype=float), np.asarray(rejected_scores, dtype=float)
    a_first = orientation(pair_ids)
    score_a, score_b = np.where(a_first, c, r), np.where(a_first, r, c)
    pred, truth = score_a > score_b, a_first
    tp = float(np.sum(pred & truth))
    fp = float(np.sum(pred & ~truth))
    fn = float(np.sum(~pred & truth))
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return {"precision": precision, "recall": recall, "f1": f1}


# --------------------------------------------------------------------- ranking and policies


def mean_reciprocal_rank(groups: Sequence[tuple[Sequence[float], Sequence[float]]]) -> float:
    """MRR of the truly best response when several responses per prompt are ranked by a model.

    `groups`: (model_scores, true_utilities) per prompt, >= 2 responses each. The rank of the best
    response (highest true utility; the best-ranked of tied best ones) counts model-score ties
    pessimistically; a model score that is not finite ranks last (a NaN score counts as wrong, as in
    the accuracy metrics). NaN when there are no groups."""
    rr = []
    for scores, truth in groups:
        s, t = np.asarray(scores, dtype=float), np.asarray(truth, dtype=float)
        if s.size < 2 or s.shape != t.shape:
            continue
        best = np.flatnonzero(t == t.max())
        rank = min(int(np.sum(s >= s[i])) if np.isfinite(s[i]) else s.size for i in best)
        rr.append(1.0 / rank)
    return float(np.mean(rr)) if rr else float("nan")


def win_rate(challenger: Sequence[float], baseline: Sequence[float]) -> float:
    """Share of prompts where the challenger's response scores higher (ties half); NaN when empty."""
    return pairwise_accuracy(challenger, baseline)


def slice_gap(per_slice: dict[str, dict], key: str = "accuracy", min_n: int = 1) -> dict:
    """Largest minus smallest `key` over slices with at least `min_n` items: {gap, worst, best, n}."""
    rows = {k: v for k, v in per_slice.items() if v.get("n", 0) >= min_n and np.isfinite(v.get(key, np.nan))}
    if len(rows) < 2:
        return {"gap": float("nan"), "worst": None, "best": None, "n_slices": len(rows)}
    worst = min(rows, key=lambda k: rows[k][key])
    best = max(rows, key=lambda k: rows[k][key])
    return {"gap": float(rows[best][key] - rows[worst][key]), "worst": worst, "best": best,
            "n_slices": len(rows)}
