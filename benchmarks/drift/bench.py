"""Drift-detection benchmark: driftkeel vs Evidently 0.7.23 vs a plain MMD test, same windows, one run.

    bash benchmarks/drift/run.sh                 # sets up Evidently's virtualenv, then runs this
    bash benchmarks/drift/run.sh --quick         # 10 windows per cell, to try it out
    bash benchmarks/drift/run.sh --ev-windows 15 --ev-streams 3   # what produced results.json (README.md)

Cells (each: many pairs of windows drawn with known truth; every method sees exactly the same ones):
- real text (MiniLM embeddings of pool.py's pools), 200 / 500 / 1000 prompts per window:
  alpaca_none (Alpaca vs Alpaca), gsm8k_<p> / hh_<p> (p% of the current window replaced by GSM8K
  questions / HH-RLHF harmless prompts), creative_new (reference without Alpaca's creative_writing
  category, current with 10% of it), creative_natural (same reference, current = plain Alpaca, about
  3.9% creative), hh_none (HH vs HH, a random split), hh_alpaca_25 (HH vs HH with 25% Alpaca);
- simulator (simulated.py), 100 / 500 / 2000 comparisons per window: none, covariate_<eps>, output,
  concept, label. driftkeel runs its whole check (prompts, responses, labels, reward model, concept);
  the peers see the prompt embeddings, and in `none` and `output` also the response embeddings
  (methods suffixed `@responses`), the only inputs they have a test for.
- stream: a reference of 500 Alpaca prompts, then 30 windows of 500: 10 without drift, then the HH
  share grows by 2 points per window; detection delay = windows from the onset to the first alarm.
- speed: one 10k-vs-10k check of Alpaca prompts, embeddings cached (SQLite), driftkeel's full prompt
  check (permutation test, clusters, topics) vs Evidently's embedding-drift methods (method call only).

Methods: `driftkeel` (the defaults of params.yaml `drift:`), `mmd_perm` (RBF MMD, median heuristic,
500 permutations, alpha 0.05: the plain peer), Evidently's embedding-drift methods and text-content
drift (see peer_evidently.py). Every method runs single-threaded (OMP/BLAS threads = 1).
Results: results.json beside this file (per cell and method: alarm rate, windows, mean seconds), the
per-cell results under work/cells/ (a rerun reuses them; delete work/ to start over) and a table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import pool  # noqa: E402
import simulated  # noqa: E402

from driftkeel.config import DriftParams  # noqa: E402
from driftkeel.drift.twosample import two_sample_test  # noqa: E402
from driftkeel.drift.window import check_windows, window_from_rows, window_status  # noqa: E402
from driftkeel.embeddings import HASHING, MINILM, Embedder  # noqa: E402

WORK = HERE / "work"
EV_PY = HERE / ".venv-evidently" / "bin" / "python"
EV_EMB = ["model_default", "distance", "distance_bootstrap", "mmd"]
# ratio (`ratio()`: share of drifted components > 0.2) and mmd_bootstrap (`mmd(bootstrap=True)`, which
# compares with the 5% quantile of its bootstrap) alarmed on every no-drift window tried (10 of 10 at
# 200 prompts): they run on the no-drift cells only, where they show their false-alarm rate
EV_NULL_ONLY = ["mmd_bootstrap", "ratio"]
REAL_SIZES, SIM_SIZES = (200, 500, 1000), (100, 500, 2000)
MIXES = (5, 10, 25, 50)
ALPHA = 0.05
TEXT_CELLS = ("alpaca_none", "gsm8k_10", "hh_10")   # Evidently's text drift costs ~20 s per window


class DictEmbedder:
    """An Embedder stand-in serving precomputed vectors by text (the benchmark never re-embeds)."""

    def __init__(self, texts, vecs, backend):
        self.vec = {t: v for t, v in zip(texts, vecs)}
        self.backend, self.dim = backend, vecs.shape[1]
        self.cache = None

    def encode(self, texts):
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.vec[t] for t in texts])


# ----------------------------------------------------------------------------- data
def load_real() -> dict:
    P = pool.load_pools()
    texts, vecs, groups = [], [], {}
    seen = set()
    for name, p in P.items():
        for t, v, c in zip(p["text"], p["emb"], p["category"]):
            if t in seen:          # windows of distinct prompts (Alpaca repeats a few instructions)
                continue
            seen.add(t)
            key = {"alpaca": "creative" if c == "creative_writing" else "general"}.get(name, name)
            groups.setdefault(key, []).append(len(texts))
            texts.append(t)
            vecs.append(v)
    return {"texts": texts, "emb": round16(np.asarray(vecs, dtype=np.float32)),
            "groups": {k: np.asarray(v) for k, v in groups.items()}}


def round16(x: np.ndarray) -> np.ndarray:
    """Embeddings rounded through float16 (about 1e-4 per coordinate, re-normalised): the form in which
    they travel to the GPU machine's CPUs (device.py), so that every machine sees identical inputs."""
    x = np.asarray(x, dtype=np.float16).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)


def real_window(R: dict, scenario: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    g = R["groups"]
    alpaca = np.concatenate([g["general"], g["creative"]])

    def draw(src, k, exclude=()):
        src = np.setdiff1d(src, np.asarray(list(exclude), dtype=int)) if len(exclude) else src
        return rng.choice(src, size=k, replace=False)

    if scenario == "alpaca_none":
        both = draw(alpaca, 2 * n)
        return both[:n], both[n:]
    if scenario in ("creative_new", "creative_natural"):
        ref = draw(g["general"], n)
        if scenario == "creative_natural":
            return ref, draw(alpaca, n, ref)
        k = int(round(0.10 * n))
        return ref, np.concatenate([draw(g["general"], n - k, ref), draw(g["creative"], k)])
    if scenario == "hh_none":
        both = draw(g["hh"], 2 * n)
        return both[:n], both[n:]
    if scenario == "hh_alpaca_25":
        k = int(round(0.25 * n))
        both = draw(g["hh"], 2 * n - k)
        return both[:n], np.concatenate([both[n:], draw(alpaca, k)])
    src, pct = scenario.split("_")
    k = int(round(int(pct) / 100 * n))
    both = draw(alpaca, 2 * n - k)
    return both[:n], np.concatenate([both[n:], draw(g[src], k)])


NULL_FACTOR = 3      # no-drift cells get 3x the windows: their false-alarm rate is the tightest target


def real_cells(R, windows: int = 50) -> list[tuple[str, str, int, str | None, int]]:
    """(name, scenario, n, truth, windows) of every real-text cell."""
    out = []
    for scenario, drift in real_scenarios():
        for n in REAL_SIZES:
            if scenario.startswith("hh_") and 2 * n > len(R["groups"]["hh"]):
                continue          # 1,762 HH prompts: no two disjoint windows of 1000
            if n == 1000 and scenario == "creative_natural":
                continue          # compute budget: its n=500 cell already shows the trend
            out.append((f"real_{scenario}_{n}", scenario, n, "prompt" if drift else None,
                        windows if drift else NULL_FACTOR * windows))
    return out


def sim_cells(sim_windows_arg: int) -> list[tuple[str, str, int, str | None, int]]:
    """(name, scenario, n, truth, windows) of every simulator cell (half the windows at 2000 rows)."""
    def w(sc, n):
        base = sim_windows_arg if n < 2000 else max(sim_windows_arg // 2, 5)
        return base * (NULL_FACTOR if sc == "none" else 1)

    return [(f"sim_{sc}_{n}", sc, n, simulated.TRUTH[sc], w(sc, n)) for sc in simulated.SCENARIOS for n in SIM_SIZES]


def real_scenarios() -> list[tuple[str, bool]]:
    out = [("alpaca_none", False)]
    out += [(f"{src}_{p}", True) for src in ("gsm8k", "hh") for p in MIXES]
    out += [("creative_new", True), ("creative_natural", True), ("hh_none", False), ("hh_alpaca_25", True)]
    return out


# ----------------------------------------------------------------------------- methods
def ours_real(R, emb, ri, ci, params, seed):
    ref = window_from_rows([{"prompt": R["texts"][i]} for i in ri])
    cur = window_from_rows([{"prompt": R["texts"][i]} for i in ci])
    t0 = time.perf_counter()
    tests, _ = check_windows(ref, cur, params, emb, seed=seed)
    secs = time.perf_counter() - t0
    p = tests[0]
    return {"alarm": window_status(tests) == "alarm", "p_value": p["p_value"], "seconds": secs,
            "signals": sorted({t["signal"] for t in tests if t["alarm"]}),
            "strongest": p["details"].get("strongest_statistic"), "auc": p["details"].get("classifier_auc")}


def ours_sim(ref_df, cur_df, params, emb, hash_emb, seed):
    t0 = time.perf_counter()
    tests, _ = check_windows(window_from_rows(ref_df), window_from_rows(cur_df), params, emb,
                             pair_embedder=hash_emb, output_embedder=hash_emb, seed=seed)
    secs = time.perf_counter() - t0
    return {"alarm": window_status(tests) == "alarm", "seconds": secs,
            "signals": sorted({t["signal"] for t in tests if t["alarm"]}),
            "tests": sorted({t["test"] for t in tests if t["alarm"]})}


def mmd_peer(E_ref, E_cur, seed):
    """The plain peer: unbiased MMD^2, RBF kernel at the median heuristic, 500 permutations, p <= 0.05
    (driftkeel's permutation engine with that single statistic: the same test as
    driftkeel.drift.stats.mmd_permutation_test, with one matrix product per permutation batch)."""
    t0 = time.perf_counter()
    r = two_sample_test(E_ref, E_cur, n_permutations=500, seed=seed, statistics=("mmd",), bandwidths=(1.0,))
    return {"alarm": r.p_value <= ALPHA, "p_value": r.p_value, "seconds": time.perf_counter() - t0}


def evidently(tag: str, emb: np.ndarray, pairs: list[tuple[np.ndarray, np.ndarray]], methods: list[str],
              texts: list[str] | None = None, fast_auc: bool = True) -> dict:
    """Run Evidently's methods in its own virtualenv on the windows `pairs` (indices into emb).

    fast_auc: Evidently's bootstraps call sklearn's roc_auc_score 100-1000 times per window; the run
    replaces it by the identical Mann-Whitney formula (checked, see peer_evidently.py). Alarm rates are
    unchanged; only the speed comparison (run_speed, fast_auc=False) times Evidently as shipped."""
    if not EV_PY.exists():
        return {}
    width = max(max(len(a), len(b)) for a, b in pairs)

    def pad(ix):
        return np.concatenate([ix, -np.ones(width - len(ix), dtype=int)])

    task = WORK / "tasks" / f"{tag}.npz"
    task.parent.mkdir(parents=True, exist_ok=True)
    np.savez(task, emb=emb.astype(np.float32), ref_idx=np.stack([pad(a) for a, _ in pairs]),
             cur_idx=np.stack([pad(b) for _, b in pairs]))
    tpath = task.with_suffix(".texts.json")
    if texts is not None:
        tpath.write_text(json.dumps(texts))
    elif tpath.exists():
        tpath.unlink()
    out = task.with_suffix(".out.json")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "EV_FAST_AUC": "1" if fast_auc else "0"}
    subprocess.run([str(EV_PY), str(HERE / "peer_evidently.py"), str(task), str(out), ",".join(methods)],
                   check=True, env=env)
    res = json.loads(out.read_text())
    for p in (task, tpath, out):
        if p.exists():
            p.unlink()
    return {f"evidently_{k}": [{**r, "alarm": r["drift"]} for r in v] for k, v in res.items()}


def paired(ours: list[dict], peer: list[dict]) -> dict | None:
    """driftkeel vs a peer on the same windows (the first min(len) of each cell): windows where only one
    of them alarmed, and the exact two-sided sign-test p-value of that split (McNemar's exact test)."""
    k = min(len(ours), len(peer))
    if not k:
        return None
    a = np.array([bool(r["alarm"]) for r in ours[:k]])
    b = np.array([bool(r["alarm"]) for r in peer[:k]])
    only_ours, only_peer = int((a & ~b).sum()), int((~a & b).sum())
    from scipy.stats import binomtest

    n = only_ours + only_peer
    p = 1.0 if n == 0 else float(binomtest(only_ours, n, 0.5).pvalue)
    return {"windows": k, "only_driftkeel": only_ours, "only_peer": only_peer, "sign_test_p": p}


def summarise(runs: list[dict]) -> dict:
    a = np.array([bool(r["alarm"]) for r in runs])
    s = np.array([r["seconds"] for r in runs], dtype=float)
    return {"alarm_rate": float(a.mean()) if len(a) else None, "n_windows": int(len(a)),
            "mean_seconds": float(s.mean()) if len(s) else None}


# ----------------------------------------------------------------------------- cells
def real_pairs(R, scenario, n, W, seed):
    rng = np.random.default_rng([seed, n, zlib.crc32(scenario.encode())])
    return [real_window(R, scenario, n, rng) for _ in range(W)]


def run_real_cell(R, emb, params, scenario, n, W, text_windows, seed, parts=("ours", "mmd", "evidently"),
                  ev_windows=None) -> dict:
    pairs = real_pairs(R, scenario, n, W, seed)
    res: dict[str, list] = {}
    if "ours" in parts:
        res["driftkeel"] = [ours_real(R, emb, ri, ci, params, seed + w) for w, (ri, ci) in enumerate(pairs)]
    if "mmd" in parts:
        res["mmd_perm"] = [mmd_peer(R["emb"][ri], R["emb"][ci], seed + w) for w, (ri, ci) in enumerate(pairs)]
    if "evidently" not in parts:
        return res
    pairs = pairs[: ev_windows or W]
    used = np.unique(np.concatenate([np.concatenate(p) for p in pairs]))
    remap = {int(i): j for j, i in enumerate(used)}
    local = [(np.array([remap[int(i)] for i in a]), np.array([remap[int(i)] for i in b])) for a, b in pairs]
    res.update(evidently(f"real_{scenario}_{n}", R["emb"][used], local,
                         EV_EMB + (EV_NULL_ONLY if scenario.endswith("none") else [])))
    if text_windows and n == 500 and scenario in TEXT_CELLS:
        res.update(evidently(f"real_{scenario}_{n}_text", R["emb"][used], local[:text_windows], ["text"],
                             texts=[R["texts"][i] for i in used]))
    return res


def sim_windows(S, scenario, n, W, seed):
    rng = np.random.default_rng([seed, n, simulated.SCENARIOS.index(scenario)])
    for _ in range(W):
        yield simulated.draw_window(S["pools"], scenario, n, rng, S["annotators"])


def run_sim_cell(S, emb, hash_emb, params, scenario, n, W, seed, parts=("ours", "mmd", "evidently"),
                 ev_windows=None) -> dict:
    res: dict[str, list] = {}
    with_resp = scenario in ("none", "output")
    peer_pairs, resp_pairs, rows_p, rows_r = [], [], [], []
    for w, (ref_df, cur_df) in enumerate(sim_windows(S, scenario, n, W, seed)):
        if "ours" in parts:
            res.setdefault("driftkeel", []).append(ours_sim(ref_df, cur_df, params, emb, hash_emb, seed + w))
        Pr, Pc = emb.encode(ref_df["prompt"].tolist()), emb.encode(cur_df["prompt"].tolist())
        Rr, Rc = (emb.encode(ref_df["response_a"].tolist()), emb.encode(cur_df["response_a"].tolist())) \
            if with_resp else (None, None)
        if "mmd" in parts:
            res.setdefault("mmd_perm", []).append(mmd_peer(Pr, Pc, seed + w))
            if with_resp:
                res.setdefault("mmd_perm@responses", []).append(mmd_peer(Rr, Rc, seed + w))
        if "evidently" in parts and w < (ev_windows or W):
            base = sum(len(x) for x in rows_p)
            rows_p += [Pr, Pc]
            peer_pairs.append((np.arange(base, base + len(Pr)), np.arange(base + len(Pr), base + len(Pr) + len(Pc))))
            if with_resp:
                base = sum(len(x) for x in rows_r)
                rows_r += [Rr, Rc]
                resp_pairs.append((np.arange(base, base + len(Rr)),
                                   np.arange(base + len(Rr), base + len(Rr) + len(Rc))))
    if "evidently" not in parts:
        return res
    res.update(evidently(f"sim_{scenario}_{n}", np.vstack(rows_p), peer_pairs,
                         EV_EMB + (EV_NULL_ONLY if scenario == "none" else [])))
    if with_resp:
        ev = evidently(f"sim_{scenario}_{n}_resp", np.vstack(rows_r), resp_pairs, EV_EMB)
        res.update({f"{k}@responses": v for k, v in ev.items()})
    return res


STREAM = {"n": 500, "onset": 10, "windows": 30, "hh_step": 0.02}


def stream_windows(R, s: int, seed: int):
    """Stream s: (reference indices, [window indices]); window t >= onset has 2 (t - onset + 1)% HH prompts."""
    g = R["groups"]
    alpaca = np.concatenate([g["general"], g["creative"]])
    n, onset = STREAM["n"], STREAM["onset"]
    rng = np.random.default_rng([seed, 777, s])
    ref = rng.choice(alpaca, n, replace=False)
    rest = np.setdiff1d(alpaca, ref)
    wins = []
    for t in range(STREAM["windows"]):
        k = 0 if t < onset else int(round(STREAM["hh_step"] * (t - onset + 1) * n))
        wins.append(np.concatenate([rng.choice(rest, n - k, replace=False), rng.choice(g["hh"], k, replace=False)]))
    return ref, wins


def run_stream(R, emb, params, n_streams, seed, parts=("ours", "mmd", "evidently"), ev_streams=None) -> dict:
    """Detection delay: alarms per method, stream and window (see stream_windows)."""
    alarms: dict[str, list] = {}
    for s in range(n_streams):
        ref, wins = stream_windows(R, s, seed)
        if "ours" in parts:
            alarms.setdefault("driftkeel", []).append(
                [bool(ours_real(R, emb, ref, cur, params, seed + 31 * s + t)["alarm"]) for t, cur in enumerate(wins)])
        if "mmd" in parts:
            alarms.setdefault("mmd_perm", []).append(
                [bool(mmd_peer(R["emb"][ref], R["emb"][cur], seed + 31 * s + t)["alarm"]) for t, cur in enumerate(wins)])
        if "evidently" in parts and s < (ev_streams or n_streams):
            used = np.unique(np.concatenate([ref, *wins]))
            remap = {int(i): j for j, i in enumerate(used)}
            loc = np.array([remap[int(i)] for i in ref])
            ev = evidently(f"stream_{s}", R["emb"][used], [(loc, np.array([remap[int(i)] for i in c])) for c in wins],
                           EV_EMB)
            for k, v in ev.items():
                alarms.setdefault(k, []).append([bool(r["drift"]) for r in v])
    return {"alarms": alarms}


def stream_summary(raw: dict) -> dict:
    onset, out = STREAM["onset"], {}
    for k, runs in raw["alarms"].items():
        delays, fa = [], []
        for a in runs:
            a = np.array(a, dtype=bool)
            post = np.flatnonzero(a[onset:])
            fa.append(int(a[:onset].sum()))
            delays.append(int(post[0]) if len(post) else None)
        d = [x for x in delays if x is not None]
        out[k] = {"streams": len(runs), "detected": len(d),
                  "median_delay_windows": float(np.median(d)) if d else None,
                  "mean_delay_windows": float(np.mean(d)) if d else None,
                  "hh_share_at_median_detection": STREAM["hh_step"] * (float(np.median(d)) + 1) if d else None,
                  "false_alarm_rate_before_onset": float(np.sum(fa) / (onset * len(runs))) if runs else None}
    return out


def run_speed(R, params, repeats: int = 3) -> dict:
    """10k vs 10k Alpaca prompts, embeddings from the SQLite cache (the real Embedder). Wall and process
    CPU seconds of driftkeel's check (defaults, and a fast configuration) and of Evidently's methods
    (the method call on in-memory DataFrames, no Report; Evidently as shipped, no fast AUC)."""
    g = R["groups"]
    alpaca = np.concatenate([g["general"], g["creative"]])
    rng = np.random.default_rng(2026)
    idx = rng.choice(alpaca, min(20000, len(alpaca)), replace=False)
    ri, ci = idx[: len(idx) // 2], idx[len(idx) // 2:]
    emb = Embedder(cache_path=pool.CACHE)
    ref = window_from_rows([{"prompt": R["texts"][i]} for i in ri])
    cur = window_from_rows([{"prompt": R["texts"][i]} for i in ci])
    fast = params.model_copy(update={"max_window": 500, "n_permutations": 200, "topics": 0})
    check_windows(window_from_rows([{"prompt": R["texts"][i]} for i in ri[:200]]),
                  window_from_rows([{"prompt": R["texts"][i]} for i in ci[:200]]), params, emb)   # warm-up
    out: dict = {"n_reference": int(len(ri)), "n_current": int(len(ci)), "repeats": repeats,
                 "fast_configuration": {"max_window": 500, "n_permutations": 200, "topics": 0}}
    for label, p in (("driftkeel", params), ("driftkeel_fast", fast)):
        wall, cpu = [], []
        for r in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            tests, _ = check_windows(ref, cur, p, emb, seed=r)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        out[label] = {"wall_s": wall, "cpu_s": cpu, "median_wall_s": float(np.median(wall)),
                      "median_cpu_s": float(np.median(cpu)),
                      "rows_in_permutation_test": [tests[0]["details"].get("n_reference_used"),
                                                   tests[0]["details"].get("n_current_used")]}
    ev: dict = {}
    for r in range(repeats):
        one = evidently(f"speed_{r}", R["emb"][idx], [(np.arange(len(ri)), np.arange(len(ri), len(idx)))],
                        ["model_default", "distance_bootstrap", "mmd", "ratio"], fast_auc=False)
        for k, v in one.items():
            ev.setdefault(k, {"wall_s": [], "cpu_s": []})
            ev[k]["wall_s"].append(v[0]["seconds"])
            ev[k]["cpu_s"].append(v[0].get("cpu_seconds"))
    for k, v in ev.items():
        v["median_wall_s"] = float(np.median(v["wall_s"]))
        v["median_cpu_s"] = float(np.median([c for c in v["cpu_s"] if c is not None])) if v["cpu_s"] else None
    out["evidently"] = ev
    out["what_is_timed"] = ("driftkeel: check_windows on the two windows of rows (embeddings read from the SQLite "
                            "cache; the permutation test, cluster report and LDA topics on a seeded sample of "
                            "max_window prompts per side); Evidently: the drift-method call on in-memory "
                            "DataFrames of the same (float16-rounded) embeddings, no Report")
    return out


# ----------------------------------------------------------------------------- table
def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    from scipy.stats import beta

    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


METHODS = ["driftkeel", "mmd_perm"] + [f"evidently_{m}" for m in EV_EMB + EV_NULL_ONLY] + ["evidently_text"]
SHORT = {"driftkeel": "dk", "mmd_perm": "mmd", "evidently_model_default": "ev.model", "evidently_distance": "ev.dist",
         "evidently_distance_bootstrap": "ev.distB", "evidently_mmd": "ev.mmd", "evidently_mmd_bootstrap": "ev.mmdB",
         "evidently_ratio": "ev.ratio", "evidently_text": "ev.text"}


def table(results: dict, markdown: bool = False) -> str:
    """Alarm rate per cell and method (false-alarm rate on no-drift cells, power otherwise); the number
    of windows per method is in results.json (Evidently: the first --ev-windows windows of each cell)."""
    lines = []
    cols = ["cell", "truth", "W"] + [SHORT[m] for m in METHODS] + ["dk 95% CI", "dk s/win"]
    if markdown:
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    else:
        lines += [f"{'cell':28s} {'truth':8s} {'W':>4s} " + " ".join(f"{c:>8s}" for c in cols[3:])]
    for name, c in results["cells"].items():
        dk = c["methods"]["driftkeel"]
        k = int(round(dk["alarm_rate"] * dk["n_windows"]))
        lo, hi = clopper_pearson(k, dk["n_windows"])
        vals = []
        for m in METHODS:
            v = c["methods"].get(m)
            vals.append("" if v is None else f"{v['alarm_rate']:.2f}")
        row = [name, str(c["truth"] or "none"), str(dk["n_windows"])] + vals + [f"{lo:.2f}-{hi:.2f}",
                                                                                 f"{dk['mean_seconds']:.2f}"]
        lines.append("| " + " | ".join(row) + " |" if markdown else
                     f"{row[0]:28s} {row[1]:8s} {row[2]:>4s} " + " ".join(f"{x:>8s}" for x in row[3:]))
        resp = {k_: v for k_, v in c["methods"].items() if k_.endswith("@responses")}
        if resp:
            vals = [""] + [("" if resp.get(f"{m}@responses") is None else f"{resp[f'{m}@responses']['alarm_rate']:.2f}")
                           for m in METHODS[1:]]
            row = ["  peers on responses", "", ""] + vals + ["", ""]
            lines.append("| " + " | ".join(row) + " |" if markdown else
                         f"{row[0]:28s} {row[1]:8s} {row[2]:>4s} " + " ".join(f"{x:>8s}" for x in row[3:]))
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=50, help="window pairs per real cell")
    ap.add_argument("--sim-windows", type=int, default=30,
                    help="window pairs per simulator cell (half of it at 2000 comparisons per window)")
    ap.add_argument("--text-windows", type=int, default=10,
                    help="windows of the TEXT_CELLS at n=500 for Evidently's text drift (about 20 s per window)")
    ap.add_argument("--streams", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="10 windows per cell, 5 text windows, 3 streams")
    ap.add_argument("--only", nargs="*", default=None, help="cell name prefixes to run (e.g. real_hh_10 sim_none)")
    ap.add_argument("--skip", nargs="*", default=[], help="parts to skip: real sim stream speed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rerun-ours", action="store_true", help="recompute driftkeel in existing cells, keep the peers")
    ap.add_argument("--parts", nargs="*", default=["ours", "mmd", "evidently"], help="ours mmd evidently")
    ap.add_argument("--rerun-speed", action="store_true", help="time the 10k-vs-10k check again")
    ap.add_argument("--ev-streams", type=int, default=None, help="Evidently on the first N streams only")
    ap.add_argument("--ev-windows", type=int, default=None,
                    help="Evidently on the first N windows of each cell only (default: all)")
    args = ap.parse_args(argv)
    if args.quick:
        args.windows, args.sim_windows, args.text_windows, args.streams = 10, 10, 5, 3
    params = DriftParams()          # the defaults of params.yaml `drift:` (its values are the model's defaults)
    cell_dir = WORK / "cells"
    cell_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    R = load_real()
    emb = DictEmbedder(R["texts"], R["emb"], MINILM)
    results = {"params": params.model_dump(), "alpha": params.alpha, "cells": {}, "evidently": "0.7.23",
               "windows": {"real": args.windows, "sim": args.sim_windows, "text": args.text_windows,
                           "null_factor": NULL_FACTOR, "evidently_per_cell": args.ev_windows or "all",
                           "evidently_streams": args.ev_streams or args.streams, "streams": args.streams}}

    def want(name):
        return args.only is None or any(name.startswith(p) for p in args.only)

    def run_cell(name, truth, fn, W):
        """fn(parts) -> raw results, parts among ("ours", "mmd", "evidently"). A cell file of the same W is
        completed with the parts it lacks; --rerun-ours recomputes driftkeel's entries (the windows are
        seeded, so the peers' stay valid); --parts limits what a run computes."""
        path = cell_dir / f"{name}.json"
        data = json.loads(path.read_text()) if path.exists() else None
        if data is not None and data.get("W") != W:
            data = None
        raw = (data or {}).get("raw", {})
        have = {"ours": "driftkeel" in raw, "mmd": "mmd_perm" in raw,
                "evidently": any(k.startswith("evidently_") for k in raw) or not EV_PY.exists()}
        parts = tuple(p for p in args.parts if not have[p] or (p == "ours" and args.rerun_ours))
        if not parts:
            return data
        t0 = time.time()
        new = fn(parts)
        data = {"W": W, "truth": truth, "raw": {**raw, **new}, "wall_s": time.time() - t0}
        path.write_text(json.dumps(data, default=str))
        print(f"[bench] {name} ({'+'.join(parts)}): {time.time() - t0:.0f}s", flush=True)
        return data

    if "real" not in args.skip:
        for name, scenario, n, truth, W in real_cells(R, args.windows):
            if not want(name):
                continue
            d = run_cell(name, truth,
                         lambda parts: run_real_cell(R, emb, params, scenario, n, W,
                                                     args.text_windows, args.seed, parts, args.ev_windows), W)
            results["cells"][name] = {"truth": d["truth"], "n": n, "family": "real",
                                      "methods": {k: summarise(v) for k, v in d["raw"].items()},
                                      "paired_vs_mmd_perm": paired(d["raw"].get("driftkeel", []),
                                                                   d["raw"].get("mmd_perm", []))}
    if "sim" not in args.skip:
        S = {"pools": simulated.make_pools(), "annotators": simulated.annotator_pools()}
        sim_emb = pool.embedder()
        texts = simulated.pool_texts(S["pools"])
        texts = list(dict.fromkeys(texts))
        vecs = round16(sim_emb.encode(texts))
        s_emb = DictEmbedder(texts, vecs, MINILM)
        from driftkeel.active.surrogate import pair_text

        h_texts = texts + [pair_text(p, r) for df in S["pools"].values() for p, ra, rb in
                           zip(df["prompt"], df["response_a"], df["response_b"]) for r in (ra, rb)]
        h_texts = list(dict.fromkeys(h_texts))
        h_vecs = Embedder(cache_path=pool.CACHE, backend=HASHING).encode(h_texts)
        h_emb = DictEmbedder(h_texts, h_vecs, HASHING)
        for name, scenario, n, truth, W in sim_cells(args.sim_windows):
            if not want(name):
                continue
            d = run_cell(name, truth,
                         lambda parts: run_sim_cell(S, s_emb, h_emb, params, scenario, n, W, args.seed, parts,
                                                    args.ev_windows), W)
            cell = {"truth": d["truth"], "n": n, "family": "sim",
                    "methods": {k: summarise(v) for k, v in d["raw"].items()}}
            ours = d["raw"].get("driftkeel", [])
            cell["paired_vs_mmd_perm"] = paired(ours, d["raw"].get(
                "mmd_perm@responses" if scenario == "output" else "mmd_perm", []))
            if d["truth"] and ours:
                hits = [r for r in ours if r["alarm"]]
                cell["attributed"] = (float(np.mean([d["truth"] in r["signals"] for r in hits])) if hits else None)
            cell["driftkeel_signals"] = pd.Series([s_ for r in ours for s_ in r["signals"]]).value_counts().to_dict()
            results["cells"][name] = cell
    if "stream" not in args.skip and want("stream"):
        path = cell_dir / "stream.json"
        raw = json.loads(path.read_text()) if path.exists() else {"alarms": {}}
        have = {"ours": "driftkeel" in raw["alarms"], "mmd": "mmd_perm" in raw["alarms"],
                "evidently": any(k.startswith("evidently_") for k in raw["alarms"]) or not EV_PY.exists()}
        parts = tuple(p for p in args.parts if not have[p] or (p == "ours" and args.rerun_ours))
        if parts:
            t0 = time.time()
            new = run_stream(R, emb, params, args.streams, args.seed, parts, args.ev_streams)
            raw["alarms"].update(new["alarms"])
            path.write_text(json.dumps(raw))
            print(f"[bench] stream ({'+'.join(parts)}): {time.time() - t0:.0f}s", flush=True)
        results["stream"] = stream_summary(raw)
        results["stream_setup"] = STREAM
    if "speed" not in args.skip and want("speed"):
        path = cell_dir / "speed.json"          # cached like the cells (--rerun-speed to time it again)
        if path.exists() and not args.rerun_speed:
            results["speed"] = json.loads(path.read_text())
        else:
            results["speed"] = run_speed(R, params)
            path.write_text(json.dumps(results["speed"], default=str))
    results["wall_s"] = time.time() - t_start
    results["targets"] = targets(results)
    out = HERE / "results.json" if args.only is None and not args.quick else WORK / "results_partial.json"
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out.parent / (out.stem + "_table.md")).write_text(table(results, markdown=True) + "\n")
    print(table(results))
    print(json.dumps(results["targets"], indent=2))
    if "stream" in results:
        print(json.dumps(results["stream"], indent=2))
    if "speed" in results:
        print(json.dumps(results["targets"].get("speed"), indent=2))
    print(f"wrote {out}")


def targets(results: dict) -> dict:
    """The issue's targets, checked on this run."""
    cells = results["cells"]
    far = {k: c["methods"]["driftkeel"]["alarm_rate"] for k, c in cells.items() if not c["truth"]}
    power, vs_peer = {}, {}
    for k, c in cells.items():
        if not c["truth"]:
            continue
        ours = c["methods"]["driftkeel"]["alarm_rate"]
        power[k] = ours
        n = c["n"]
        if c["family"] == "sim":
            null = f"sim_none_{n}"
        else:
            null = f"real_hh_none_{n}" if k.startswith("real_hh_alpaca") else f"real_alpaca_none_{n}"
        peers = {}
        for m, v in c["methods"].items():
            if m == "driftkeel" or (c["truth"] == "output") != m.endswith("@responses"):
                continue
            base = cells.get(null, {}).get("methods", {}).get(m)
            calibrated = base is not None and base["alarm_rate"] <= 0.05
            peers[m] = {"power": v["alarm_rate"], "far_same_n": None if base is None else base["alarm_rate"],
                        "calibrated": calibrated}
        best_cal = max([p["power"] for p in peers.values() if p["calibrated"]], default=None)
        best_any = max([p["power"] for p in peers.values()], default=None)
        vs_peer[k] = {"driftkeel": ours, "best_calibrated_peer": best_cal, "best_peer_any": best_any,
                      "best_calibrated_peer_name": max([m for m, p in peers.items() if p["calibrated"]],
                                                       key=lambda m: peers[m]["power"], default=None),
                      "meets_best_calibrated": best_cal is None or ours >= best_cal,
                      "paired_vs_mmd_perm": c.get("paired_vs_mmd_perm")}
    cov500 = {k: v for k, v in power.items() if k.endswith("_500") and (k.startswith("sim_covariate") or
                                                                         k.startswith("real_"))}
    far_ci, k_all, n_all = {}, 0, 0
    for k, c in cells.items():
        if c["truth"]:
            continue
        dk = c["methods"]["driftkeel"]
        kk = int(round(dk["alarm_rate"] * dk["n_windows"]))
        far_ci[k] = {"alarms": kk, "windows": dk["n_windows"], "ci95": clopper_pearson(kk, dk["n_windows"])}
        k_all, n_all = k_all + kk, n_all + dk["n_windows"]
    out = {"false_alarm_rate": far, "false_alarm_ok": all(v <= 0.05 for v in far.values()),
           "false_alarm_ci95": far_ci,
           "false_alarm_pooled": {"alarms": k_all, "windows": n_all, "rate": k_all / n_all if n_all else None,
                                  "ci95": clopper_pearson(k_all, n_all) if n_all else None},
           "power": power, "vs_peers": vs_peer, "covariate_power_at_500": cov500,
           "ten_percent_mix_at_500": {k: power[k] for k in ("real_gsm8k_10_500", "real_hh_10_500") if k in power}}
    if "speed" in results:
        sp = results["speed"]
        ev = sp["evidently"].get("evidently_model_default", {})
        out["speed"] = {"driftkeel_cpu_s": sp["driftkeel"]["median_cpu_s"], "driftkeel_wall_s": sp["driftkeel"]["median_wall_s"],
                        "driftkeel_fast_cpu_s": sp["driftkeel_fast"]["median_cpu_s"],
                        "evidently_model_default_cpu_s": ev.get("median_cpu_s"),
                        "evidently_model_default_wall_s": ev.get("median_wall_s"),
                        "speedup_cpu": (ev["median_cpu_s"] / sp["driftkeel"]["median_cpu_s"]) if ev.get("median_cpu_s") else None,
                        "speedup_cpu_fast": (ev["median_cpu_s"] / sp["driftkeel_fast"]["median_cpu_s"])
                        if ev.get("median_cpu_s") else None,
                        "speedup_vs_each_method_cpu": {k: v["median_cpu_s"] / sp["driftkeel"]["median_cpu_s"]
                                                       for k, v in sp["evidently"].items() if v.get("median_cpu_s")}}
    return out


if __name__ == "__main__":
    main()
