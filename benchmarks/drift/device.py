"""driftkeel and the plain MMD peer on a many-core machine (the GPU machine's 16 CPU cores), optional.

    python benchmarks/drift/device.py export                 # here: the inputs -> work/device/
    python3 benchmarks/drift/device.py run OUT_DIR SECONDS   # there: all cells, 16 processes
    python benchmarks/drift/device.py merge DIR              # here: results -> work/cells/*.json

On 2 shared CPU cores the whole benchmark takes hours, so driftkeel and `mmd_perm` can run on another
machine on exactly the same windows: the window index lists are regenerated there from the same seeds
(a hash of every window is compared on merge), the inputs travel as float16 embeddings (bench.round16:
every machine, Evidently's runs included, uses the rounded vectors). Evidently then runs here on the
same windows (`bench.py --parts evidently`). Nothing here is needed for `run.sh`, which computes every
part locally when work/cells/ holds no results.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "src"))
BUNDLE = HERE / "work" / "device"


def _wjson(path: Path, obj) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        json.dump(obj, fh)


def _rjson(path: Path):
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def window_hash(ri, ci) -> str:
    return hashlib.sha1(np.asarray(ri, dtype=np.int64).tobytes() + b"|" + np.asarray(ci, dtype=np.int64).tobytes()
                        ).hexdigest()[:12]


# ----------------------------------------------------------------------------- export (here)
def export(sim_windows: int = 30) -> None:
    import bench
    import simulated

    BUNDLE.mkdir(parents=True, exist_ok=True)
    R = bench.load_real()
    _wjson(BUNDLE / "real_texts.json.gz", R["texts"])
    np.save(BUNDLE / "real_emb.npy", R["emb"].astype(np.float16))
    np.savez(BUNDLE / "real_groups.npz", **R["groups"])
    pools = simulated.make_pools()
    _wjson(BUNDLE / "sim_pools.json.gz", {k: v.to_dict(orient="list") for k, v in pools.items()})
    texts = list(dict.fromkeys(simulated.pool_texts(pools)))
    import pool

    vecs = pool.embedder().encode(texts)
    _wjson(BUNDLE / "sim_texts.json.gz", texts)
    np.save(BUNDLE / "sim_emb.npy", vecs.astype(np.float16))
    hashes = {}
    for name, scenario, n, _, _ in bench.real_cells(R):
        hashes[name] = window_hash(*bench.real_pairs(R, scenario, n, 1, 0)[0])
    for name, scenario, n, _, _ in bench.sim_cells(sim_windows):
        ref, cur = next(bench.sim_windows({"pools": pools, "annotators": simulated.annotator_pools()}, scenario, n, 1, 0))
        hashes[name] = hashlib.sha1(("|".join(ref["item"]) + "#" + "|".join(cur["item"]) + "#" +
                                     "".join(cur["label"])).encode()).hexdigest()[:12]
    json.dump(hashes, open(BUNDLE / "hashes.json", "w"))
    size = sum(p.stat().st_size for p in BUNDLE.rglob("*") if p.is_file())
    print(f"exported {BUNDLE} ({size / 2**20:.1f} MiB)")


# ----------------------------------------------------------------------------- run (there)
G: dict = {}


def _setup(sim_windows: int) -> None:
    import pandas as pd

    import bench
    import simulated
    from driftkeel.active.surrogate import pair_text
    from driftkeel.config import DriftParams
    from driftkeel.embeddings import HASHING, MINILM

    texts = _rjson(BUNDLE / "real_texts.json.gz")
    emb = bench.round16(np.load(BUNDLE / "real_emb.npy").astype(np.float32))
    groups = dict(np.load(BUNDLE / "real_groups.npz"))
    R = {"texts": texts, "emb": emb, "groups": groups}
    pools = {k: pd.DataFrame(v) for k, v in _rjson(BUNDLE / "sim_pools.json.gz").items()}
    S = {"pools": pools, "annotators": simulated.annotator_pools()}
    s_texts = _rjson(BUNDLE / "sim_texts.json.gz")
    s_emb = bench.DictEmbedder(s_texts, bench.round16(np.load(BUNDLE / "sim_emb.npy").astype(np.float32)), MINILM)
    h_texts = s_texts + [pair_text(p, r) for df in pools.values() for p, ra, rb in
                         zip(df["prompt"], df["response_a"], df["response_b"]) for r in (ra, rb)]
    h_texts = list(dict.fromkeys(h_texts))
    G.update({"R": R, "emb": bench.DictEmbedder(texts, emb, MINILM), "S": S, "s_emb": s_emb, "h_texts": h_texts,
              "params": DriftParams(), "sim_windows": sim_windows, "HASHING": HASHING})


def _hash_chunk(texts):
    from driftkeel.embeddings import hashing_embed

    return hashing_embed(texts)


def _job(job):
    import bench

    kind, name, scenario, n, W, lo, hi = job
    t0 = time.time()
    params, out = G["params"], []
    if kind == "real":
        R = G["R"]
        pairs = bench.real_pairs(R, scenario, n, W, 0)
        for w in range(lo, hi):
            ri, ci = pairs[w]
            out.append({"w": w, "hash": window_hash(ri, ci) if w == 0 else None,
                        "driftkeel": bench.ours_real(R, G["emb"], ri, ci, params, w),
                        "mmd_perm": bench.mmd_peer(R["emb"][ri], R["emb"][ci], w)})
    elif kind == "sim":
        with_resp = scenario in ("none", "output")
        for w, (ref_df, cur_df) in enumerate(bench.sim_windows(G["S"], scenario, n, W, 0)):
            if w < lo:
                continue
            if w >= hi:
                break
            e = G["s_emb"]
            row = {"w": w, "driftkeel": bench.ours_sim(ref_df, cur_df, params, e, G["h_emb"], w),
                   "mmd_perm": bench.mmd_peer(e.encode(ref_df["prompt"].tolist()), e.encode(cur_df["prompt"].tolist()), w)}
            if w == 0:
                row["hash"] = hashlib.sha1(("|".join(ref_df["item"]) + "#" + "|".join(cur_df["item"]) + "#" +
                                            "".join(cur_df["label"])).encode()).hexdigest()[:12]
            if with_resp:
                row["mmd_perm@responses"] = bench.mmd_peer(e.encode(ref_df["response_a"].tolist()),
                                                           e.encode(cur_df["response_a"].tolist()), w)
            out.append(row)
    else:                                            # one stream: alarms of every window
        R, s = G["R"], lo
        ref, wins = bench.stream_windows(R, s, 0)
        out.append({"stream": s,
                    "driftkeel": [bool(bench.ours_real(R, G["emb"], ref, c, params, 31 * s + t)["alarm"])
                                  for t, c in enumerate(wins)],
                    "mmd_perm": [bool(bench.mmd_peer(R["emb"][ref], R["emb"][c], 31 * s + t)["alarm"])
                                 for t, c in enumerate(wins)]})
    return {"job": list(job), "rows": out, "seconds": time.time() - t0}


def run(out_dir: str, budget_s: float, workers: int = 16, sim_windows: int = 30, real_windows: int = 50,
        streams: int = 10, chunk: int = 5) -> None:
    import multiprocessing as mp

    import bench

    t_start = time.time()
    _setup(sim_windows)
    with mp.Pool(workers) as p:     # hashing features of the simulator texts, in parallel
        parts = p.map(_hash_chunk, [G["h_texts"][i:i + 2000] for i in range(0, len(G["h_texts"]), 2000)])
    G["h_emb"] = bench.DictEmbedder(G["h_texts"], np.vstack(parts), G["HASHING"])
    print(f"[device] setup {time.time() - t_start:.0f}s", flush=True)
    jobs = []
    for name, scenario, n, _, W in bench.real_cells(G["R"], real_windows):
        jobs += [("real", name, scenario, n, W, lo, min(lo + chunk, W)) for lo in range(0, W, chunk)]
    for name, scenario, n, _, W in bench.sim_cells(sim_windows):
        step = chunk if n < 2000 else 2
        jobs += [("sim", name, scenario, n, W, lo, min(lo + step, W)) for lo in range(0, W, step)]
    jobs += [("stream", "stream", "", 0, 0, s, s + 1) for s in range(streams)]
    cost = {"real": lambda j: j[3] ** 1.3, "sim": lambda j: 4 * j[3] ** 1.2, "stream": lambda j: 30 * 500 ** 1.3}
    # the first 50 (real) / 30 (sim) windows of every cell first, then the streams, then the extra
    # no-drift windows; longest first within each group
    rank = {"stream": 1}
    jobs.sort(key=lambda j: (2 if (j[0] == "real" and j[5] >= real_windows) or (j[0] == "sim" and j[5] >= (
        sim_windows if j[3] < 2000 else sim_windows // 2)) else rank.get(j[0], 0), -cost[j[0]](j) * (j[6] - j[5])))
    results, done_s = [], 0.0
    out = Path(out_dir)

    def dump(final=False):
        tmp = out / "device_results.json.tmp"
        tmp.write_text(json.dumps({"results": results, "n_jobs": len(jobs), "wall_s": time.time() - t_start,
                                   "cpu_s_in_jobs": done_s, "final": final, "workers": workers,
                                   "numpy": np.__version__}, default=str))
        tmp.rename(out / "device_results.json")

    last = time.time()
    with mp.Pool(workers) as p:
        for r in p.imap_unordered(_job, jobs):
            results.append(r)
            done_s += r["seconds"]
            if time.time() - last > 20:
                dump()
                last = time.time()
                print(f"[device] {len(results)}/{len(jobs)} jobs, {time.time() - t_start:.0f}s", flush=True)
            if time.time() - t_start > budget_s:
                print("[device] budget reached", flush=True)
                p.terminate()
                break
    dump(final=len(results) == len(jobs))
    print(f"[device] {len(results)}/{len(jobs)} jobs in {time.time() - t_start:.0f}s", flush=True)


# ----------------------------------------------------------------------------- merge (here)
def merge(src: str) -> None:
    data = json.loads((Path(src) / "device_results.json").read_text())
    hashes = json.load(open(BUNDLE / "hashes.json"))
    cells: dict[str, dict] = {}
    stream: dict[str, list] = {}
    for r in data["results"]:
        kind, name, scenario, n, W, lo, hi = r["job"]
        if kind == "stream":
            stream.setdefault(lo, r["rows"][0])
            continue
        c = cells.setdefault(name, {"W": W, "rows": {}})
        for row in r["rows"]:
            c["rows"][row["w"]] = row
    cell_dir = HERE / "work" / "cells"
    cell_dir.mkdir(parents=True, exist_ok=True)
    import bench  # noqa: F401  (truth of each cell)
    import simulated

    truth = {}
    R_names = None
    for name in cells:
        if name.startswith("sim_"):
            sc = name[4:].rsplit("_", 1)[0]
            truth[name] = simulated.TRUTH[sc]
        else:
            sc = name[5:].rsplit("_", 1)[0]
            truth[name] = None if sc.endswith("none") else "prompt"
    bad, partial = [], []
    for name, c in cells.items():
        rows = [c["rows"][w] for w in sorted(c["rows"])]
        if sorted(c["rows"]) != list(range(len(rows))):
            rows = [c["rows"][w] for w in range(len(rows)) if w in c["rows"]]
        h0 = c["rows"].get(0, {}).get("hash")
        if h0 is not None and h0 != hashes.get(name):
            bad.append(name)
        W = len(rows)
        if W < c["W"]:
            partial.append(f"{name} {W}/{c['W']}")
        raw = {k: [row[k] for row in rows] for k in ("driftkeel", "mmd_perm", "mmd_perm@responses") if k in rows[0]}
        path = cell_dir / f"{name}.json"
        old = json.loads(path.read_text()) if path.exists() else None
        if old is not None:       # Evidently's entries cover the first windows, the same for any W: keep them
            raw = {**{k: v for k, v in old["raw"].items() if k.startswith("evidently_")}, **raw}
        (path).write_text(json.dumps({"W": c["W"] if W == c["W"] else W, "truth": truth[name], "raw": raw,
                                      "computed_on": "device"}, default=str))
    if stream:
        path = cell_dir / "stream.json"
        old = json.loads(path.read_text()) if path.exists() else {"alarms": {}}
        for k in ("driftkeel", "mmd_perm"):
            old["alarms"][k] = [stream[s][k] for s in sorted(stream)]
        path.write_text(json.dumps(old))
    print(f"merged {len(cells)} cells, {len(stream)} streams; window-hash mismatches: {bad or 'none'}; "
          f"partial: {partial or 'none'}")
    if R_names:
        pass


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "export":
        export()
    elif cmd == "run":
        run(sys.argv[2], float(sys.argv[3]), workers=int(os.environ.get("WORKERS", "16")))
    elif cmd == "merge":
        merge(sys.argv[2])
