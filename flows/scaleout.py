"""Scale-out on Dask through Prefect's Dask task runner (prefect-dask): sharded embedding, drift
statistics and active-learning scoring. No scheduler of our own: Prefect maps one task per shard and
Dask runs them, on a local cluster (`ops.dask.n_workers` processes) or on any cluster by address.

    python flows/scaleout.py REFERENCE.jsonl CURRENT.jsonl [--out DIR] [--address tcp://host:8786]

(JSONL with a `prompt` or `text` field per line.) Writes DIR/sharded_drift.json. Shard size, workers
and address come from params.yaml `ops.dask` unless given. The shard functions are in
driftkeel.ops.sharded; their results do not depend on the engine (same answer as one process).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.logging import get_run_logger

from driftkeel.ops import sharded

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def dask_params(root: str | Path):
    from driftkeel.config import parse_section, read_params

    path = Path(root) / "params.yaml"
    raw = read_params(path) if path.exists() else {}
    return parse_section("ops", raw.get("ops")).dask


def dask_task_runner(address: str | None = None, n_workers: int = 2, threads_per_worker: int = 1):
    """Prefect's DaskTaskRunner: a running cluster by address, else a local cluster of processes."""
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": n_workers, "threads_per_worker": threads_per_worker,
                                          "processes": True, "dashboard_address": None})


@task(task_run_name="embed shard {shard}", cache_policy=NO_CACHE)
def embed_task(shard: int, texts: list[str], backend: str, cache_path: str | None) -> dict:
    return {"shard": shard, **sharded.embed_shard(texts, backend, cache_path)}


@task(task_run_name="drift shard {shard}", cache_policy=NO_CACHE)
def drift_task(shard: int, texts: list[str], reference: list[str], backend: str, cache_path: str | None,
               max_window: int, n_permutations: int, seed: int) -> dict:
    return sharded.drift_shard(shard, texts, reference, backend=backend, cache_path=cache_path,
                               max_window=max_window, n_permutations=n_permutations, seed=seed)


@task(task_run_name="score shard {shard}", cache_policy=NO_CACHE)
def score_task(shard: int, offset: int, prompts: list[str], responses_a: list[str], responses_b: list[str],
               coefs: list, k: int, backend: str, cache_path: str | None) -> list:
    return sharded.score_shard(shard, offset, prompts, responses_a, responses_b, np.asarray(coefs), k=k,
                               backend=backend, cache_path=cache_path)


@flow(name="driftkeel-sharded-drift", log_prints=True)
def sharded_drift(reference_path: str, current_path: str, shard_size: int = 5000, backend: str = "hashing",
                  cache_path: str | None = None, max_window: int = 600, n_permutations: int = 200,
                  alpha: float = 0.05, seed: int = 0) -> dict:
    """Embed every shard (filling the cache), then one drift test per shard, Bonferroni across shards.
    The windows are JSONL files of prompts (`prompt` or `text` per line); the flow's parameters stay small
    (Prefect caps a flow run's parameters at 512 kB), the texts travel to the workers with the tasks."""
    logger = get_run_logger()
    reference, current = read_texts(Path(reference_path)), read_texts(Path(current_path))
    plan = sharded.plan_drift(reference, len(current), shard_size=shard_size, max_window=max_window,
                              n_permutations=n_permutations, alpha=alpha, seed=seed)
    bounds, ref, n_permutations = plan["bounds"], plan["reference"], plan["n_permutations"]
    chunks = [current[s:e] for s, e in bounds]
    logger.info("%d current prompts in %d shards of <= %d; reference sample %d", len(current), len(bounds),
                shard_size, len(ref))
    t0 = time.perf_counter()
    embedded = embed_task.map([-1] + list(range(len(bounds))), [ref] + chunks, unmapped(backend),
                              unmapped(cache_path))
    wait(embedded)
    embed_counts = [f.result() for f in embedded]
    t1 = time.perf_counter()
    tested = drift_task.map(list(range(len(bounds))), chunks, unmapped(ref), unmapped(backend),
                            unmapped(cache_path), unmapped(max_window), unmapped(n_permutations), unmapped(seed))
    out = sharded.combine_drift([f.result() for f in tested], alpha)
    out["embedding"] = {"computed": sum(c["computed"] for c in embed_counts),
                        "cached": sum(c["cached"] for c in embed_counts)}
    out["seconds"] = {"embed": round(t1 - t0, 3), "drift": round(time.perf_counter() - t1, 3)}
    logger.info("sharded drift: alarm=%s (%d of %d shards at alpha %s per shard)", out["alarm"],
                out["n_shards_alarmed"], out["n_shards"],
                "-" if out["alpha_per_shard"] is None else f"{out['alpha_per_shard']:.3g}")
    return out


@flow(name="driftkeel-sharded-scoring", log_prints=True)
def sharded_scoring(pool_path: str, coefs: list, k: int = 100, shard_size: int = 5000, backend: str = "hashing",
                    cache_path: str | None = None) -> list:
    """Least-confidence top k of a pool of pairs (JSONL: prompt, response_a, response_b per line; the pool
    format of data/pool/), one scoring task per shard, merged: [(score, line index, p_a), ...]."""
    prompts, responses_a, responses_b = read_pool(Path(pool_path))
    bounds = sharded.shard_bounds(len(prompts), shard_size)
    parts = score_task.map(list(range(len(bounds))), [s for s, _ in bounds],
                           [prompts[s:e] for s, e in bounds], [responses_a[s:e] for s, e in bounds],
                           [responses_b[s:e] for s, e in bounds], unmapped(coefs), unmapped(k),
                           unmapped(backend), unmapped(cache_path))
    return sharded.merge_top_k([f.result() for f in parts], k)


def on_dask(flow_fn, address: str | None = None, n_workers: int = 2, threads_per_worker: int = 1):
    """`flow_fn` with Prefect's DaskTaskRunner (local cluster or `address`)."""
    return flow_fn.with_options(task_runner=dask_task_runner(address, n_workers, threads_per_worker))


def read_objects(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) per non-blank line of a JSONL file. Lines end at "\n" only (U+2028, U+0085
    may stand raw inside a JSON string); a line that is not a JSON object raises ValueError naming
    path:line (every line is used, none skipped silently)."""
    out = []
    for i, line in enumerate(path.read_bytes().split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"{path}:{i}: not valid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path}:{i}: not a JSON object")
        out.append((i, obj))
    return out


def read_texts(path: Path) -> list[str]:
    """The `prompt` of every line (its `text` where `prompt` is missing or not a string)."""
    out = []
    for i, obj in read_objects(path):
        text = obj.get("prompt") if isinstance(obj.get("prompt"), str) else obj.get("text")
        if not isinstance(text, str):
            raise ValueError(f"{path}:{i}: no string 'prompt' or 'text'")
        out.append(text)
    return out


def read_pool(path: Path) -> tuple[list[str], list[str], list[str]]:
    """prompts, responses_a, responses_b of a pool JSONL (every field a string)."""
    cols: tuple[list[str], list[str], list[str]] = ([], [], [])
    for i, obj in read_objects(path):
        for col, name in zip(cols, ("prompt", "response_a", "response_b")):
            if not isinstance(obj.get(name), str):
                raise ValueError(f"{path}:{i}: '{name}' is missing or not a string")
            col.append(obj[name])
    return cols


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="sharded drift check on Dask (Prefect DaskTaskRunner)")
    ap.add_argument("reference", type=Path)
    ap.add_argument("current", type=Path)
    ap.add_argument("--out", type=Path, default=Path("sharded-drift"))
    ap.add_argument("--root", type=Path, default=PROJECT_ROOT, help="project holding params.yaml (ops.dask)")
    ap.add_argument("--address", default=None, help="a running Dask scheduler (default: ops.dask.address)")
    ap.add_argument("--backend", default="all-MiniLM-L6-v2", help="embedding backend (or 'hashing')")
    args = ap.parse_args(argv)
    dp = dask_params(args.root)
    from driftkeel.embeddings import default_cache_path

    result = on_dask(sharded_drift, args.address or dp.address, dp.n_workers, dp.threads_per_worker)(
        str(args.reference.resolve()), str(args.current.resolve()), shard_size=dp.shard_size,
        backend=args.backend, cache_path=str(default_cache_path(args.root)))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sharded_drift.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "shards"}, indent=2))


if __name__ == "__main__":
    main()
