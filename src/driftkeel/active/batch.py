"""Budgeted batch selection: the top of the acquisition order, spread out, without near-duplicates.

`select_batch(scores, emb, k, ...)` works on the `candidates` best-scored pairs
(`candidate_factor` x k, at least k) so that it stays fast on large pools (100k pairs: one argsort
plus O(candidates x k x dim)):

- `diversity="none"`: walk down the order, taking each pair unless it is a near-duplicate;
- `diversity="kcenter"`: greedy k-center weighted by score: start with the best pair, then take
  argmax score x distance-to-the-batch (Sener & Savarese 2018 with an acquisition weight);
- `diversity="kmeanspp"`: k-means++ seeding weighted by score: draw with probability proportional to
  score x distance^2 (as BADGE does with gradient embeddings), seeded.

Distances are Euclidean on L2-normalised embeddings, sign-free: sqrt(2 - 2|cos|) (0 = the same pair
in either order, since a pair's feature x and its swap -x are the same question). A pair closer than
`min_distance` to a pair already in the batch is a near-duplicate: never taken, counted. When the
candidates run out before k, the next candidates are considered (so a pool that has k usable pairs
always fills the batch unless they are all near-duplicates of each other, which is reported).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIVERSITY = ("none", "kcenter", "kmeanspp")


@dataclass
class Batch:
    chosen: np.ndarray          # indices into the pool, in the order they were taken
    n_near_duplicates: int      # candidates skipped because a chosen pair was closer than min_distance
    n_candidates: int


def _normalise(emb: np.ndarray) -> np.ndarray:
    X = np.asarray(emb, dtype=np.float32)
    n = np.linalg.norm(X, axis=1, keepdims=True)
    n[n == 0] = 1.0
    return X / n


def select_batch(scores: np.ndarray, emb: np.ndarray | None, k: int, *, diversity: str = "none",
                 min_distance: float = 0.05, candidate_factor: int = 4, seed: int = 0,
                 order: np.ndarray | None = None) -> Batch:
    """Indices of at most k pairs (see the module docstring). `order` (best first) defaults to the
    descending score with seeded tie-breaks."""
    if diversity not in DIVERSITY:
        raise ValueError(f"unknown diversity {diversity!r}; known: {DIVERSITY}")
    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    k = int(min(k, n))
    if k <= 0:
        return Batch(np.zeros(0, dtype=int), 0, 0)
    if order is None:
        from driftkeel.active.acquisition import rank
        order = rank(s, seed)
    if emb is None:                    # no embeddings: plain top-k
        return Batch(np.asarray(order[:k], dtype=int), 0, k)
    X = _normalise(emb)
    m = int(min(n, max(k, candidate_factor * k)))
    chosen: list[int] = []
    n_dup = 0
    start = 0
    while len(chosen) < k and start < n:
        cand = np.asarray(order[start:start + m], dtype=int)
        start += m
        got, dup = _pick(s[cand], X[cand], X[chosen] if chosen else None, k - len(chosen), diversity,
                         min_distance, np.random.default_rng([seed, start]))
        chosen += cand[got].tolist()
        n_dup += dup
        m = max(m, k)
    return Batch(np.asarray(chosen, dtype=int), n_dup, int(min(start, n)))


def _pick(s: np.ndarray, X: np.ndarray, prior: np.ndarray | None, k: int, diversity: str,
          min_distance: float, rng: np.random.Generator) -> tuple[list[int], int]:
    """Greedy picks among candidates (positions into X), given pairs already in the batch."""
    m = len(s)
    d = np.full(m, np.inf)
    if prior is not None and len(prior):
        d = np.sqrt(np.maximum(2.0 - 2.0 * np.abs(X @ prior.T).max(axis=1), 0.0)).astype(np.float64)
    alive = d >= min_distance
    n_dup = int((~alive).sum())
    w = np.maximum(s, 0.0) + 1e-12      # scores are non-negative acquisition values
    out: list[int] = []
    pos = 0                              # for diversity="none": the next candidate in order
    while len(out) < k and alive.any():
        if diversity == "none":
            while not alive[pos]:
                pos += 1
            i = pos
        elif not out and prior is None:
            i = int(np.flatnonzero(alive)[0])          # the best-scored candidate starts the batch
        elif diversity == "kcenter":
            val = np.where(alive, w * np.minimum(d, 1.5), -np.inf)
            i = int(np.argmax(val))
        else:                                          # kmeanspp
            val = np.where(alive, w * np.minimum(d, 1.5) ** 2, 0.0)
            tot = val.sum()
            i = int(rng.choice(m, p=val / tot)) if tot > 0 else int(np.flatnonzero(alive)[0])
        out.append(i)
        alive[i] = False
        di = np.sqrt(np.maximum(2.0 - 2.0 * np.abs(X @ X[i]), 0.0))
        d = np.minimum(d, di)
        dup = alive & (d < min_distance)
        n_dup += int(dup.sum())
        alive &= ~dup
    return out, n_dup
