"""Difficulty of a preference pair, and the order in which a curriculum presents pairs.

Per pair (chosen over rejected):
- `confidence`: the consensus probability of the label (aggregate stage), in [0.5, 1] for a real vote;
- `p_chosen`: the surrogate Bradley-Terry reward's P(chosen preferred), CROSS-FITTED (each pair is
  scored by a model fitted on the other prompt groups, `n_folds` folds), so a pair's own label does
  not make it look easy; NaN without features;
- `close`: |p_chosen - 0.5| < close_margin (the reward model can hardly tell the two apart);
- `difficulty` = mean of (1 - (2 confidence - 1)) and (1 - p_chosen), in [0, 1]: 0 = a unanimous,
  clear-cut pair; 1 = annotators split and the reward model prefers the rejected response.

Orders: `easy_to_hard` (ascending difficulty), `pacing` (phases of growing difficulty: phase j holds
the j-th difficulty quantile; rows are shuffled within a phase, so a trainer reading the file in
order sees easy pairs first but no strict sort), `shuffle` (seeded). Ties are broken by a seeded order.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def cross_fitted_p_chosen(X: np.ndarray, groups: pd.Series, seed: int, n_folds: int = 2) -> np.ndarray:
    """P(chosen preferred) per row from a surrogate fitted on the other folds (by group)."""
    from driftkeel.active.surrogate import BradleyTerrySurrogate

    n = len(X)
    out = np.full(n, np.nan)
    uniq = np.array(sorted(groups.astype(str).unique()))
    if n < 4 or len(uniq) < n_folds:
        return out
    fold_of = dict(zip(np.random.default_rng(seed).permutation(uniq), np.arange(len(uniq)) % n_folds))
    fold = groups.astype(str).map(fold_of).to_numpy()
    # orientation: the features are chosen - rejected, so y = 1 everywhere; the surrogate fits both
    # orientations of every pair, which gives it the two classes it needs
    for f in range(n_folds):
        tr, te = fold != f, fold == f
        if tr.sum() < 2 or not te.any():
            continue
        m = BradleyTerrySurrogate(seed=seed).fit(X[tr], np.ones(int(tr.sum()), dtype=int))
        out[te] = m.predict_proba(X[te])
    return out


def difficulty(confidence: np.ndarray, p_chosen: np.ndarray, close_margin: float) -> tuple[np.ndarray, np.ndarray]:
    """(difficulty in [0, 1], close flag); a NaN p_chosen leaves difficulty to the confidence alone."""
    c = np.clip(np.asarray(confidence, dtype=float), 0.0, 1.0)
    p = np.asarray(p_chosen, dtype=float)
    from_votes = 1.0 - np.clip(2.0 * c - 1.0, 0.0, 1.0)
    from_model = 1.0 - p
    d = np.where(np.isnan(p), from_votes, 0.5 * (from_votes + from_model))
    close = np.where(np.isnan(p), False, np.abs(p - 0.5) < close_margin)
    return d, close


def order_rows(df: pd.DataFrame, mode: str, seed: int, phases: int = 3) -> pd.DataFrame:
    """Rows of `df` (with a `difficulty` column) in curriculum order; adds `phase` (0 = easiest)."""
    rng = np.random.default_rng(seed)
    n = len(df)
    tiebreak = rng.random(n)
    d = df["difficulty"].to_numpy(dtype=float) if n else np.zeros(0)
    if n:
        ranks = np.empty(n, dtype=int)
        ranks[np.lexsort((tiebreak, d))] = np.arange(n)   # equal difficulty: the seeded order, not position
        phase = np.minimum((ranks * phases) // max(n, 1), phases - 1)
    else:
        phase = np.zeros(0, dtype=int)
    if mode == "easy_to_hard":
        idx = np.lexsort((tiebreak, d))
    elif mode == "pacing":
        idx = np.lexsort((tiebreak, phase))
    elif mode == "shuffle":
        idx = rng.permutation(n)
    else:
        raise ValueError(f"unknown curriculum order {mode!r}; known: easy_to_hard, pacing, shuffle")
    return df.assign(phase=phase).iloc[idx].reset_index(drop=True)
