"""Sharded drift check on 200k prompts: one process vs Prefect + DaskTaskRunner on a local 2-worker cluster.

    python benchmarks/scaleout/bench.py [--n 200000] [--reference 20000] [--shard-size 10000]

Both runs execute the same shard functions (driftkeel.ops.sharded) with a fresh embedding cache each:
phase 1 embeds every shard into the SQLite cache (the cached-embeddings path the drift stage reads),
phase 2 runs one drift test per shard (mean-embedding shift over the shard + MMD permutation test on a
600-row subsample vs a 600-row reference sample, 800 permutations so that a shard can reach
alpha / n_shards), Bonferroni across shards. A third run maps the same functions with distributed's
Client.map (no Prefect) on the same kind of cluster, to separate Dask's cost from Prefect's; a last step
times no-op tasks both ways (Prefect's cost per task). All three engines take their plan (shards, reference
sample, permutation count) from sharded.plan_drift; `same_result` compares only the deterministic fields
(sharded.result_differences), never timings or cache hit counts. See README.md for the results.
Embeddings: the hashing embedder (MiniLM encodes ~200 prompts/s on these 2 cores: 200k would take
~17 min per run). Writes results.json beside this file and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

OLD = ["pasta", "sourdough", "a trip to Lisbon", "a hike", "piano scales", "tomato plants", "a budget",
       "a marathon", "a cough", "a job interview", "a garden shed", "a bike repair"]
NEW = ["a crypto wallet", "validator rewards", "a smart contract", "an NFT drop"]
ADVERBS = ["today", "quickly", "safely", "on a budget", "for beginners", "this weekend"]


def prompts(n: int, seed: int, drift_from: float | None = None) -> list[str]:
    """n prompts; from position drift_from * n on, half of them are on new topics."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    start = n if drift_from is None else int(drift_from * n)
    for i in range(n):
        topics = OLD + (NEW * 3 if i >= start else [])  # 12 old + 12 new entries: half new
        t, a = topics[rng.integers(len(topics))], ADVERBS[rng.integers(len(ADVERBS))]
        out.append(f"What is the best way to handle {t} {a}? (ticket {rng.integers(10**6)})")
    return out


def start_server(home: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start", "--host",
                             "127.0.0.1", "--port", str(port), "--no-ui"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise TimeoutError("prefect server did not start")


def plain_dask(reference, current, cache, workers, kw, address: str | None = None) -> dict:
    """The same shard functions and the same plan (`sharded.plan_drift`) on the same kind of cluster through
    distributed's Client.map, no Prefect: separates Dask's own cost from Prefect's per-task orchestration
    cost. `address`: use that running cluster instead of starting a local one."""
    from contextlib import ExitStack

    from distributed import Client, LocalCluster

    from driftkeel.ops import sharded

    plan = sharded.plan_drift(reference, len(current), shard_size=kw["shard_size"], max_window=kw["max_window"],
                              n_permutations=kw["n_permutations"], alpha=kw["alpha"], seed=kw["seed"])
    bounds, ref = plan["bounds"], plan["reference"]
    t = time.perf_counter()
    with ExitStack() as stack:
        if address is None:
            address = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                       dashboard_address=None))
        client = stack.enter_context(Client(address))
        t0 = time.perf_counter()
        counts = client.gather(client.map(sharded.embed_shard, [ref] + [current[s:e] for s, e in bounds],
                                          backend=kw["backend"], cache_path=str(cache), pure=False))
        t1 = time.perf_counter()
        res = client.gather(client.map(sharded.drift_shard, list(range(len(bounds))),
                                       [current[s:e] for s, e in bounds], reference=ref, backend=kw["backend"],
                                       cache_path=str(cache), max_window=kw["max_window"],
                                       n_permutations=plan["n_permutations"], seed=kw["seed"], pure=False))
        t2 = time.perf_counter()
    out = sharded.combine_drift(res, kw["alpha"])
    out["embedding"] = {"computed": sum(c["computed"] for c in counts), "cached": sum(c["cached"] for c in counts)}
    out["seconds"] = {"embed": round(t1 - t0, 3), "drift": round(t2 - t1, 3)}
    out["wall_s"] = round(time.perf_counter() - t, 1)
    return out


def _noop(i: int) -> int:
    return i


def per_task_overhead(workers: int, n_tasks: int) -> dict:
    """Seconds per trivial task: Prefect tasks on the DaskTaskRunner vs distributed's Client.map on the same
    kind of local cluster (cluster start-up excluded from both; Prefect's first 2 tasks per worker, which
    pay the worker's Prefect start-up, timed apart): what orchestration costs per task."""
    from distributed import Client, LocalCluster
    from prefect import flow, task

    from flows.scaleout import on_dask

    noop_task = task(_noop, name="noop", cache_policy=None)

    @flow(name="scaleout-noop")
    def noop_flow(n: int) -> tuple[float, float]:
        t0 = time.perf_counter()
        [f.result() for f in noop_task.map(list(range(2 * workers)))]  # first tasks on fresh workers
        t1 = time.perf_counter()
        [f.result() for f in noop_task.map(list(range(n)))]
        return t1 - t0, time.perf_counter() - t1

    warmup_s, prefect_s = on_dask(noop_flow, n_workers=workers)(n_tasks)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.gather(client.map(_noop, list(range(workers)), pure=False))  # workers up
        t0 = time.perf_counter()
        client.gather(client.map(_noop, list(range(n_tasks)), pure=False))
        dask_s = time.perf_counter() - t0
    return {"n_tasks": n_tasks, "prefect_first_tasks_s": round(warmup_s, 2),
            "prefect_s_per_task": round(prefect_s / n_tasks, 4),
            "plain_dask_s_per_task": round(dask_s / n_tasks, 4)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--reference", type=int, default=20_000)
    ap.add_argument("--shard-size", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="driftkeel-scaleout-"))
    home = work / "prefect"
    os.environ.update({"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                       "PREFECT_LOGGING_LEVEL": "WARNING"})
    server, url = start_server(home)
    os.environ["PREFECT_API_URL"] = url
    try:
        from driftkeel.ops import sharded
        from flows.scaleout import on_dask, sharded_drift

        reference = prompts(args.reference, 0)
        current = prompts(args.n, 1, drift_from=0.8)
        kw = dict(shard_size=args.shard_size, backend="hashing", max_window=600, n_permutations=200, alpha=0.05,
                  seed=0)
        load_before = os.getloadavg()
        t = time.perf_counter()
        serial = sharded.drift_check_serial(reference, current, cache_path=work / "serial.sqlite", **kw)
        serial_wall = time.perf_counter() - t

        files = []
        for name, texts in (("reference", reference), ("current", current)):
            files.append(work / f"{name}.jsonl")
            files[-1].write_text("".join(json.dumps({"prompt": x}) + "\n" for x in texts))
        t = time.perf_counter()
        dask = on_dask(sharded_drift, n_workers=args.workers)(str(files[0]), str(files[1]),
                                                              cache_path=str(work / "dask.sqlite"), **kw)
        dask_wall = time.perf_counter() - t
        plain = plain_dask(reference, current, work / "plain.sqlite", args.workers, kw)
        load_after = os.getloadavg()
        overhead = per_task_overhead(args.workers, 2 * serial["n_shards"] + 1)
    finally:
        server.kill()
        server.wait()
    # deterministic fields only (per-shard statistics, p-values, decisions); timings and cache hit counts
    # legitimately differ between engines
    diff = {"prefect_dask_vs_single": sharded.result_differences(serial, dask),
            "plain_dask_vs_single": sharded.result_differences(serial, plain)}
    same = not any(diff.values())
    res = {
        "setup": {"n_current": args.n, "n_reference": args.reference, "shard_size": args.shard_size,
                  "n_shards": serial["n_shards"], "embedding": "hashing (384-d, signed feature hashing)",
                  "test": "per shard: mean-embedding shift (all rows) + MMD permutation test, 600 vs 600 rows, "
                          f"{sharded.permutations_for(200, 0.05, serial['n_shards'])} permutations (enough for "
                          "Bonferroni over the shards); Bonferroni over shards",
                  "dask": f"prefect-dask DaskTaskRunner, LocalCluster {args.workers} worker processes x 1 thread",
                  "machine": f"{platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}",
                  "load_average_1m_before_after": [round(load_before[0], 2), round(load_after[0], 2)]},
        "single_process": {"wall_s": round(serial_wall, 1), **serial["seconds"]},
        "dask_2_workers": {"wall_s": round(dask_wall, 1), **dask["seconds"],
                           "overhead_s": round(dask_wall - sum(dask["seconds"].values()), 1)},
        "plain_dask_2_workers_no_prefect": {"wall_s": plain["wall_s"], **plain["seconds"]},
        "speedup": {"wall": round(serial_wall / dask_wall, 2),
                    "embed": round(serial["seconds"]["embed"] / dask["seconds"]["embed"], 2),
                    "drift": round(serial["seconds"]["drift"] / dask["seconds"]["drift"], 2)},
        "speedup_plain_dask": {"wall": round(serial_wall / plain["wall_s"], 2),
                               "embed": round(serial["seconds"]["embed"] / plain["seconds"]["embed"], 2),
                               "drift": round(serial["seconds"]["drift"] / plain["seconds"]["drift"], 2)},
        "same_result": same,
        "differences": diff,
        "per_task_overhead_noop": overhead,
        "result": {k: serial[k] for k in ("alarm", "n_shards_alarmed", "min_p_value", "alpha_per_shard")},
    }
    (HERE / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    print(f"{'':16}{'wall s':>9}{'embed s':>9}{'drift s':>9}")
    for name in ("single_process", "dask_2_workers"):  # prefect + DaskTaskRunner
        r = res[name]
        print(f"{name:16}{r['wall_s']:>9}{r['embed']:>9}{r['drift']:>9}")
    print(f"{'plain dask':16}{plain['wall_s']:>9}{plain['seconds']['embed']:>9}{plain['seconds']['drift']:>9}")
    print(f"{'speedup (prefect+dask vs single)':16}{res['speedup']['wall']:>9}{res['speedup']['embed']:>9}"
          f"{res['speedup']['drift']:>9}")
    print(f"same per-shard results: {same}; alarm: {serial['alarm']} "
          f"({serial['n_shards_alarmed']}/{serial['n_shards']} shards); load avg {res['setup']['load_average_1m_before_after']}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
