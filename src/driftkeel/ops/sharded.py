"""Shard-wise embedding, drift statistics and active-learning scoring: pure functions, one shard each.

Any engine maps them over shards: a plain loop (one process), or Prefect tasks on Prefect's Dask task
runner (flows/scaleout.py: a local Dask cluster or any cluster by address). Shard results do not depend
on where or in which order they ran (each shard's seed is derived from its index), so the sharded
answer is the same on every engine, provided every engine runs the same plan: `plan_drift` fixes the
shards, the reference sample and the permutation count once, and each shard's result records the
permutation count it used (an engine that tested with another count shows up as a different result,
not as a silently different p-value).

- embedding:  `embed_shard` fills the project's embedding cache (SQLite, `.cache/embeddings.sqlite`)
              and returns counts; later steps read vectors from the cache (the cached-embeddings path).
              On a remote cluster the cache path must be on storage every worker sees.
- drift:      `drift_shard` compares one shard of the current window with the reference window:
              a linear-time mean-embedding shift over the whole shard, and the MMD permutation test
              (the one the drift stage uses) on a seeded subsample of at most `max_window` rows per side.
              `combine_drift` calibrates across shards with Bonferroni (family-wise alpha); the
              permutation count is raised so that a shard can reach alpha / n_shards.
- scoring:    `score_shard` scores a shard of unlabelled pairs with a fitted surrogate reward model's
              weights (least confidence) and keeps its top k; `merge_top_k` gives the global top k.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from driftkeel.embeddings import HASHING, Embedder


def shard_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """[(start, stop), ...] covering range(n) in pieces of at most `size`."""
    if size < 1:
        raise ValueError("shard size must be >= 1")
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _embedder(backend: str, cache_path: str | Path | None) -> Embedder:
    return Embedder(cache_path=cache_path, backend=backend)


# ------------------------------------------------------------------------------------- embedding
def embed_shard(texts: Sequence[str], backend: str = HASHING, cache_path: str | Path | None = None) -> dict:
    """Embed one shard into the cache; returns {"n", "computed", "cached"} (the vectors stay in the cache)."""
    emb = _embedder(backend, cache_path)
    emb.encode(list(texts))
    return {"n": len(texts), "computed": emb.n_computed, "cached": emb.n_cached}


# ----------------------------------------------------------------------------------------- drift
def sample_rows(n: int, k: int, seed: int) -> np.ndarray:
    """All indices if n <= k, else a seeded sorted sample of k of them."""
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def reference_sample(reference: Sequence[str], max_window: int, seed: int) -> list[str]:
    """The reference rows every shard is compared with (a seeded sample of at most `max_window`)."""
    return [reference[i] for i in sample_rows(len(reference), max_window, seed)]


def drift_shard(shard: int, texts: Sequence[str], reference: Sequence[str], *, backend: str = HASHING,
                cache_path: str | Path | None = None, max_window: int = 600, n_permutations: int = 200,
                seed: int = 0) -> dict:
    """Shard `shard` of the current window vs the reference sample (texts; vectors from the cache)."""
    from driftkeel.drift.stats import mmd_permutation_test

    emb = _embedder(backend, cache_path)
    cur = emb.encode(list(texts))
    ref = emb.encode(list(reference))
    s = seed + 7919 * (shard + 1)
    ci, ri = sample_rows(len(cur), max_window, s), sample_rows(len(ref), max_window, s + 1)
    mmd = mmd_permutation_test(ref[ri], cur[ci], n_permutations=n_permutations, seed=s)
    shift = float(np.sum((cur.astype(np.float64).mean(0) - ref.astype(np.float64).mean(0)) ** 2))
    return {"shard": shard, "n": len(texts), "n_tested": int(len(ci)), "n_permutations": int(n_permutations),
            "mean_shift": shift, "mmd2": mmd.mmd2, "p_value": mmd.p_value, "bandwidth": mmd.bandwidth}


def permutations_for(n_permutations: int, alpha: float, n_shards: int) -> int:
    """Enough permutations that a shard can reach p <= alpha / n_shards (else Bonferroni could never
    alarm: the smallest permutation p-value is 1 / (B + 1)); same rule as the drift stage's."""
    return max(int(n_permutations), int(np.ceil(2 * max(n_shards, 1) / alpha)))


def plan_drift(reference: Sequence[str], n_current: int, *, shard_size: int, max_window: int = 600,
               n_permutations: int = 200, alpha: float = 0.05, seed: int = 0) -> dict:
    """What every engine must run identically: the shard bounds over the current window, the reference
    sample every shard is compared with, and the permutation count raised for Bonferroni over the shards
    ({"bounds", "reference", "n_permutations"}). Engines differ only in how they map the shard functions."""
    bounds = shard_bounds(n_current, shard_size)
    return {"bounds": bounds, "reference": reference_sample(reference, max_window, seed),
            "n_permutations": permutations_for(n_permutations, alpha, len(bounds))}


# the fields of a shard's result (and of the combined result) that are a function of the data and the
# plan alone: equal on every engine, bit for bit (timings and cache hit counts are not among them)
SHARD_FIELDS = ("shard", "n", "n_tested", "n_permutations", "mean_shift", "mmd2", "p_value", "bandwidth")
DECISION_FIELDS = ("n_shards", "n", "alpha", "alpha_per_shard", "alarm", "n_shards_alarmed", "min_p_value",
                   "mean_mmd2", "mean_shift")


def result_differences(a: dict, b: dict) -> list[str]:
    """Where two sharded drift results (`combine_drift` outputs) differ in deterministic fields:
    ["alarm", "shard 3: p_value", ...]; [] when the same answer."""
    out = [k for k in DECISION_FIELDS if a.get(k) != b.get(k)]
    sa, sb = a.get("shards", []), b.get("shards", [])
    if len(sa) != len(sb):
        return out + [f"shards: {len(sa)} vs {len(sb)}"]
    for x, y in zip(sa, sb):
        out += [f"shard {x.get('shard')}: {k}" for k in SHARD_FIELDS if x.get(k) != y.get(k)]
    return out


def combine_drift(results: list[dict], alpha: float = 0.05) -> dict:
    """Bonferroni across shards: alarm when any shard's p <= alpha / n_shards."""
    results = sorted(results, key=lambda r: r["shard"])
    m = len(results)
    if m == 0:   # an empty current window: no test, no alarm, every decision field present
        return {"n_shards": 0, "n": 0, "alpha": alpha, "alpha_per_shard": None, "alarm": False,
                "n_shards_alarmed": 0, "min_p_value": None, "mean_mmd2": None, "mean_shift": None,
                "insufficient_data": "the current window holds no prompt", "shards": []}
    per = alpha / m
    p = np.array([r["p_value"] for r in results])
    n = np.array([r["n"] for r in results], dtype=float)
    return {"n_shards": m, "n": int(n.sum()), "alpha": alpha, "alpha_per_shard": per,
            "alarm": bool((p <= per).any()), "n_shards_alarmed": int((p <= per).sum()),
            "min_p_value": float(p.min()),
            "mean_mmd2": float(np.average([r["mmd2"] for r in results], weights=n)),
            "mean_shift": float(np.average([r["mean_shift"] for r in results], weights=n)),
            "shards": results}


# --------------------------------------------------------------------------------------- scoring
def score_shard(shard: int, offset: int, prompts: Sequence[str], responses_a: Sequence[str],
                responses_b: Sequence[str], coefs: np.ndarray, *, k: int, backend: str = HASHING,
                cache_path: str | Path | None = None) -> list[tuple[float, int, float]]:
    """Least-confidence scores of one shard of pairs under a surrogate reward model given by its
    members' weight vectors `coefs` (n_members x dim): the shard's top k as (score, global index, p_a)."""
    from driftkeel.active.acquisition import least_confidence
    from driftkeel.active.surrogate import pair_features

    X = pair_features(_embedder(backend, cache_path), list(prompts), list(responses_a), list(responses_b))
    logits = X.astype(np.float64) @ np.asarray(coefs, dtype=np.float64).T
    p_a = (1.0 / (1.0 + np.exp(-logits))).mean(axis=1)
    u = least_confidence(p_a)
    top = np.lexsort((np.arange(len(u)), -u))[:k]  # ties: lower index first (deterministic)
    return [(float(u[i]), int(offset + i), float(p_a[i])) for i in top]


def merge_top_k(parts: list[list[tuple[float, int, float]]], k: int) -> list[tuple[float, int, float]]:
    """Global top k of the shards' top-k lists (score desc, then index asc)."""
    flat = [x for part in parts for x in part]
    return sorted(flat, key=lambda x: (-x[0], x[1]))[:k]


# ------------------------------------------------------------------------------ single process
def drift_check_serial(reference: Sequence[str], current: Sequence[str], *, shard_size: int,
                       backend: str = HASHING, cache_path: str | Path | None = None, max_window: int = 600,
                       n_permutations: int = 200, alpha: float = 0.05, seed: int = 0) -> dict:
    """The sharded drift check in this process, shard after shard (the engine-free baseline)."""
    import time

    plan = plan_drift(reference, len(current), shard_size=shard_size, max_window=max_window,
                      n_permutations=n_permutations, alpha=alpha, seed=seed)
    bounds, ref, n_permutations = plan["bounds"], plan["reference"], plan["n_permutations"]
    t0 = time.perf_counter()
    counts = [embed_shard(ref, backend, cache_path)]
    counts += [embed_shard(current[s:e], backend, cache_path) for s, e in bounds]
    t1 = time.perf_counter()
    results = [drift_shard(i, current[s:e], ref, backend=backend, cache_path=cache_path,
                           max_window=max_window, n_permutations=n_permutations, seed=seed)
               for i, (s, e) in enumerate(bounds)]
    out = combine_drift(results, alpha)
    out["embedding"] = {"computed": sum(c["computed"] for c in counts), "cached": sum(c["cached"] for c in counts)}
    out["seconds"] = {"embed": round(t1 - t0, 3), "drift": round(time.perf_counter() - t1, 3)}
    return out
