"""Active-learning benchmark: reward-model accuracy after drift vs labels bought, per acquisition function.

    bash benchmarks/active/run.sh           # peers' virtualenv (small-text) once, then this

Datasets (labels are held out and revealed only when "bought"):
- `simulator`: the demo simulator's drifting stream (driftkeel.data.simulator, default `data:` params).
  Old labelled data = batches before the concept drift (true labels); the pool = post-drift stream
  comparisons + the unlabeled pool, labelled by the true post-drift utility; eval = `eval/pairs` slice
  post (current concept) and slice pre (old concept), plus the pre slice re-labelled under the current
  concept (old topics, current concept: forgetting without the concept conflict).
- `hh`: a real shift between two preference domains in /work/shared/data/pairs: old = AlpacaEval
  (GPT-4 judge) pairs, new = HH-RLHF harmless pairs (human labels). Pool and post-drift eval are split
  by prompt group; pre-drift eval = held-out AlpacaEval groups. (The 300-record hh_harmless_sample is
  too small for a curve; hh_harmless_dev of the same release is used.)

The reward model of the curve is the surrogate Bradley-Terry model on hashed features
(driftkeel.active.surrogate; fast, and what the select stage uses; its L2 strength C chosen per dataset
by 3-fold CV on the old labels only), trained as the mix stage mixes:
the labels bought + a replay sample of old labels (`mix.replay_fraction` of the training set).
Acquisition: driftkeel's strategies through the same `choose` the select stage calls (the default =
params.yaml `select:`: BALD on a 5-member bootstrap ensemble x drift prior, k-center batches), and
small-text's PredictionEntropy, BreakingTies and EmbeddingKMeans (a pair = one binary example, its
features = the pair features) run in their own virtualenv (peers.py) on the same arrays.

Also: forgetting (pre-drift accuracy, replay 0 vs the configured replay, all pool labels bought), and
the selection time on a 100k-pair pool (features given, as from the embedding cache).
Writes results.json and curve.png beside this file and prints the tables.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SHARED = Path(os.environ.get("DRIFTKEEL_SHARED_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(ROOT / "src"))

from driftkeel.active.acquisition import scores as acquisition_scores  # noqa: E402
from driftkeel.active.drift_prior import drift_prior  # noqa: E402
from driftkeel.active.selection import choose  # noqa: E402
from driftkeel.active.surrogate import BradleyTerrySurrogate, pair_features  # noqa: E402
from driftkeel.config import load_section  # noqa: E402
from driftkeel.embeddings import HASHING, Embedder, hashing_embed  # noqa: E402

OURS = {  # name -> (strategy, diversity, drift prior)
    "random": ("random", "none", False),
    "least_confidence": ("least_confidence", "none", False),
    "variance": ("variance", "none", False),
    "bald": ("bald", "none", False),
    "bald+kcenter": ("bald", "kcenter", False),
}


# ----------------------------------------------------------------------------- data
def _feat(emb: Embedder, prompts, a, b) -> np.ndarray:
    return pair_features(emb, list(prompts), list(a), list(b)).astype(np.float64)


def _drift_report(old_prompts: list[str], new_prompts: list[str], seed: int) -> dict:
    """The drift stage's cluster analysis (driftkeel.drift.clusters) of old vs pool prompts, on
    hashed prompt embeddings (the stage uses MiniLM; too slow here)."""
    from driftkeel.drift.clusters import cluster_report

    rng = np.random.default_rng(seed)
    o = [old_prompts[i] for i in rng.permutation(len(old_prompts))[:1000]]
    n = [new_prompts[i] for i in rng.permutation(len(new_prompts))[:1000]]
    rep = cluster_report(hashing_embed(o), hashing_embed(n), o, n, seed=seed)
    return {"clusters": rep, "_reference_prompts": o}


def simulator_data(emb: Embedder, seed: int = 0) -> dict:
    from driftkeel.config import DataParams
    from driftkeel.data.simulator import simulate, true_utility

    p = DataParams()
    sim = simulate(p)
    truth = {t["comparison_id"]: t for t in sim.truth_comparisons}
    old, new = [], []
    for b, rows in sim.stream.items():
        seen = set()
        for r in rows:
            if r["comparison_id"] in seen:
                continue
            seen.add(r["comparison_id"])
            t = truth[r["comparison_id"]]
            if t["true_label"] == "tie":
                continue
            (new if b >= p.concept_drift_batch else old).append((r["prompt"], r["response_a"], r["response_b"],
                                                                 int(t["true_label"] == "a")))
    for r in sim.pool:
        ua, ub = true_utility(r["prompt"], r["response_a"]), true_utility(r["prompt"], r["response_b"])
        if ua != ub:
            new.append((r["prompt"], r["response_a"], r["response_b"], int(ua > ub)))
    post = [e for e in sim.eval_pairs if e["slice"] == "post"]
    pre = [e for e in sim.eval_pairs if e["slice"] == "pre"]
    pre_now = []
    for e in pre:   # the old-concept slice re-labelled under the current concept (old topics)
        uc, ur = true_utility(e["prompt"], e["chosen"]), true_utility(e["prompt"], e["rejected"])
        if uc != ur:
            pre_now.append((e["prompt"], e["chosen"], e["rejected"]) if uc > ur else (e["prompt"], e["rejected"], e["chosen"]))

    def ev(rows):
        return _feat(emb, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])

    return {
        "name": "simulator", "old_prompts": [r[0] for r in old], "pool_prompts": [r[0] for r in new],
        "X_old": _feat(emb, *zip(*[r[:3] for r in old])), "y_old": np.array([r[3] for r in old]),
        "X_pool": _feat(emb, *zip(*[r[:3] for r in new])), "y_pool": np.array([r[3] for r in new]),
        "X_post": ev([(e["prompt"], e["chosen"], e["rejected"]) for e in post]),
        "X_pre": ev([(e["prompt"], e["chosen"], e["rejected"]) for e in pre]),
        "X_pre_current_concept": ev(pre_now),
        "pre_prompts": [e["prompt"] for e in pre], "post_prompts": [e["prompt"] for e in post],
        "pre_current_concept_prompts": [r[0] for r in pre_now],
    }


def _read_pairs(name: str) -> list[dict]:
    with gzip.open(SHARED / "pairs" / name, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _group_split(rows: list[dict], frac: float, seed: int) -> tuple[list[dict], list[dict]]:
    groups = sorted({r["group"] for r in rows})
    held = set(np.random.default_rng(seed).permutation(groups)[: int(round(frac * len(groups)))])
    return [r for r in rows if r["group"] not in held], [r for r in rows if r["group"] in held]


def hh_data(emb: Embedder, seed: int = 0, n_old: int = 2500) -> dict:
    hh = _read_pairs("hh_harmless_dev.jsonl.gz")
    alp = _read_pairs("alpaca_eval_gpt4_dev.jsonl.gz")
    rng = np.random.default_rng(seed)
    alp_groups = sorted({r["group"] for r in alp})
    keep = set(rng.permutation(alp_groups)[: max(1, int(len(alp_groups) * (n_old + 500) / len(alp)))])
    alp = [r for r in alp if r["group"] in keep]
    old, pre = _group_split(alp, 500 / max(len(alp), 1), seed)
    pool, post = _group_split(hh, 0.25, seed + 1)

    def oriented(rows, flip_seed):
        flip = np.random.default_rng(flip_seed).random(len(rows)) < 0.5
        a = [r["rejected"] if f else r["chosen"] for r, f in zip(rows, flip)]
        b = [r["chosen"] if f else r["rejected"] for r, f in zip(rows, flip)]
        return _feat(emb, [r["prompt"] for r in rows], a, b), (~flip).astype(int)

    X_old, y_old = oriented(old, seed + 2)
    X_pool, y_pool = oriented(pool, seed + 3)
    cr = lambda rows: _feat(emb, [r["prompt"] for r in rows], [r["chosen"] for r in rows],  # noqa: E731
                            [r["rejected"] for r in rows])
    return {"name": "hh", "old_prompts": [r["prompt"] for r in old], "pool_prompts": [r["prompt"] for r in pool],
            "X_old": X_old, "y_old": y_old, "X_pool": X_pool, "y_pool": y_pool,
            "X_post": cr(post), "X_pre": cr(pre),
            "pre_prompts": [r["prompt"] for r in pre], "post_prompts": [r["prompt"] for r in post]}


# ----------------------------------------------------------------------------- the loop
C_REG = {"C": 10.0}   # the surrogate's L2 strength; set per dataset by choose_C (3-fold CV on the OLD labels)


def fit(X, y, seed, members=1) -> BradleyTerrySurrogate:
    return BradleyTerrySurrogate(C=C_REG["C"], n_members=members, seed=seed).fit(X, y)


def choose_C(X: np.ndarray, y: np.ndarray, seed: int = 0, grid=(0.1, 1.0, 10.0)) -> float:
    """The surrogate's C by 3-fold cross-validated accuracy on the old labels only (known before the
    drift; no pool or eval label is used)."""
    fold = np.random.default_rng(seed).integers(0, 3, len(y))
    best, best_acc = 10.0, -1.0
    for C in grid:
        acc = np.mean([np.mean((BradleyTerrySurrogate(C=C).fit(X[fold != f], y[fold != f]).predict_proba(X[fold == f])
                                > 0.5) == y[fold == f]) for f in range(3)])
        if acc > best_acc + 1e-9:
            best, best_acc = C, acc
    return best


def accuracy(model, X) -> float:     # eval rows are chosen - rejected: correct when P > 0.5
    return float(np.mean(model.predict_proba(X) > 0.5)) if len(X) else float("nan")


def train_set(d: dict, bought: np.ndarray, replay: float, seed: int):
    n = len(bought)
    n_rep = min(int(round(n * replay / (1 - replay))) if replay > 0 else 0, len(d["y_old"]))
    rep = np.random.default_rng([seed, 99, n]).choice(len(d["y_old"]), size=n_rep, replace=False)
    X = np.vstack([d["X_pool"][bought], d["X_old"][rep]])
    y = np.concatenate([d["y_pool"][bought], d["y_old"][rep]])
    return X, y


def budgets_for(n_pool: int) -> list[int]:
    b = [b for b in (10, 25, 50, 75, 100, 150, 200, 300, 400, 600, 800, 1200, 1600) if b < n_pool]
    return b + [n_pool]


def run_ours(d: dict, name: str, strategy: str, diversity: str, use_prior: bool, seed: int, replay: float,
             params, prior_w: np.ndarray, members: int) -> list[dict]:
    n = len(d["y_pool"])
    bought = np.zeros(0, dtype=int)
    model = fit(d["X_old"], d["y_old"], seed)            # before any label is bought: the old model
    acq_model = fit(d["X_old"], d["y_old"], seed, members) if strategy in ("bald", "variance") else model
    out = [{"labels": 0, "post": accuracy(model, d["X_post"])}]
    for b in budgets_for(n):
        need = b - len(bought)
        rest = np.setdiff1d(np.arange(n), bought)
        if need >= len(rest):
            pick = rest
        else:
            P = acq_model.member_proba(d["X_pool"][rest])
            acq = acquisition_scores(P, strategy, seed + len(bought))
            w = prior_w[rest] if use_prior else np.ones(len(rest))
            _, _, batch = choose(acq, d["X_pool"][rest], w, need, diversity, params, seed + len(bought))
            pick = rest[batch.chosen]
        bought = np.concatenate([bought, pick])
        X, y = train_set(d, bought, replay, seed)
        model = fit(X, y, seed)
        acq_model = fit(X, y, seed, members) if strategy in ("bald", "variance") else model
        out.append({"labels": int(len(bought)), "post": accuracy(model, d["X_post"])})
    return out


def labels_to_reach(curve: list[dict], target: float) -> int | None:
    for pt in curve:
        if pt["post"] >= target:
            return pt["labels"]
    return None


def early_area(curves: dict) -> dict:
    """Mean post-drift accuracy over the budgets 10..400 (less sensitive to noise than one crossing)."""
    return {s: float(np.mean([p["post"] for p in c if 10 <= p["labels"] <= 400])) for s, c in curves.items()}


def mean_curve(runs: list[list[dict]]) -> list[dict]:
    out = []
    for i, pt in enumerate(runs[0]):
        vals = [r[i]["post"] for r in runs]
        out.append({"labels": pt["labels"], "post": float(np.mean(vals)), "post_std": float(np.std(vals))})
    return out


def run_peers(d: dict, seeds: list[int], replay: float, work: Path) -> dict:
    py = HERE / ".venv-peers" / "bin" / "python"
    if not py.exists():
        return {"error": f"{py} missing: run benchmarks/active/setup_peers.sh"}
    npz = work / f"{d['name']}.npz"
    np.savez(npz, X_old=d["X_old"], y_old=d["y_old"], X_pool=d["X_pool"], y_pool=d["y_pool"], X_post=d["X_post"],
             budgets=np.array(budgets_for(len(d["y_pool"]))))
    out = work / f"{d['name']}_peers.json"
    cmd = [str(py), str(HERE / "peers.py"), str(npz), str(out), "--replay", str(replay), "--C", str(C_REG["C"]),
           "--seeds", *map(str, seeds)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": r.stderr[-2000:]}
    return json.loads(out.read_text())


def forgetting(d: dict, replay: float, seed: int) -> dict:
    old = fit(d["X_old"], d["y_old"], seed)
    allb = np.arange(len(d["y_pool"]))
    res = {"replay_fraction": replay}
    keys = ["X_pre", "X_post"] + (["X_pre_current_concept"] if "X_pre_current_concept" in d else [])
    res["before"] = {k[2:]: accuracy(old, d[k]) for k in keys}
    for f, tag in ((0.0, "replay_0"), (replay, "replay_configured")):
        m = fit(*train_set(d, allb, f, seed), seed)
        res[tag] = {k[2:]: accuracy(m, d[k]) for k in keys}
        res[f"{tag}_drop_points"] = {k[2:]: 100 * (res["before"][k[2:]] - res[tag][k[2:]]) for k in keys if k != "X_post"}
    res["replay_sweep"] = []   # the trade-off: old-data accuracy vs post-drift accuracy by replay share
    for f in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
        m = fit(*train_set(d, allb, f, seed), seed)
        res["replay_sweep"].append({"replay": f, **{k[2:]: accuracy(m, d[k]) for k in keys}})
    return res


def speed_100k(d: dict, params, seed: int = 0, n: int = 100_000, k: int = 1000) -> dict:
    """Selection over 100k pairs given their features (as from the embedding cache): real pool
    features resampled with a little noise (so no two are identical), prompts resampled."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d["y_pool"]), size=n)
    X = d["X_pool"][idx] + rng.normal(0, 0.02, size=(n, d["X_pool"].shape[1]))
    prompts = [d["pool_prompts"][i] for i in idx]
    model = fit(d["X_old"], d["y_old"], seed, params.n_members)
    t0 = time.perf_counter()
    P = model.member_proba(X)
    t1 = time.perf_counter()
    acq = acquisition_scores(P, params.strategy, seed)
    rep = d["report"]
    prior = drift_prior(prompts, rep["_reference_prompts"], rep, boost=params.drift_boost, alpha=params.drift_alpha)
    t2 = time.perf_counter()
    _, _, batch = choose(acq, X, prior.weights, k, params.diversity, params, seed)
    t3 = time.perf_counter()
    t_embed = time.perf_counter()
    hashing_embed([f"{p}\n{p}" for p in prompts[:500]])
    per_text = (time.perf_counter() - t_embed) / 500
    return {"n_pool": n, "k": k, "strategy": params.strategy, "diversity": params.diversity,
            "seconds_scoring": t1 - t0, "seconds_acquisition_and_prior": t2 - t1, "seconds_batch": t3 - t2,
            "seconds_total": t3 - t0, "target_seconds": 30, "met": (t3 - t0) < 30, "k_selected": len(batch.chosen),
            "uncached_hashing_seconds_per_text": per_text,
            "note": "features given (cached); embedding 100k uncached pairs = 200k texts at the per-text cost above"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--datasets", nargs="+", default=["simulator", "hh"])
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--from-results", action="store_true", help="only redraw curve.png and reprint the tables")
    args = ap.parse_args()
    if args.from_results:
        results = json.loads((HERE / "results.json").read_text(encoding="utf-8"))
        for r in results["datasets"].values():
            r["mean_accuracy_10_to_400"] = early_area(r["curves"])
        (HERE / "results.json").write_text(json.dumps(results, indent=1, default=float) + "\n", encoding="utf-8")
        plot(results, HERE / "curve.png")
        table(results)
        return
    _, params = load_section("select", ROOT / "params.yaml")
    _, mix = load_section("mix", ROOT / "params.yaml")
    replay = mix.replay_fraction
    work = HERE / "work"
    work.mkdir(exist_ok=True)
    emb = Embedder(cache_path=ROOT / ".cache" / "embeddings.sqlite", backend=HASHING)
    strategies = dict(OURS)
    strategies["default"] = (params.strategy, params.diversity, params.drift_prior)
    results = {"params": {"select": params.model_dump(), "replay_fraction": replay, "seeds": args.seeds},
               "reward_model": "surrogate Bradley-Terry on hashed features (driftkeel.active.surrogate), C=10",
               "datasets": {}}
    for name in args.datasets:
        t0 = time.time()
        d = simulator_data(emb) if name == "simulator" else hh_data(emb)
        d["report"] = _drift_report(d["old_prompts"], d["pool_prompts"], 0)
        C_REG["C"] = choose_C(d["X_old"], d["y_old"])
        prior = drift_prior(d["pool_prompts"], d["report"]["_reference_prompts"], d["report"],
                            boost=params.drift_boost, alpha=params.drift_alpha)
        print(f"[{name}] old {len(d['y_old'])}, pool {len(d['y_pool'])}, post eval {len(d['X_post'])}, "
              f"pre eval {len(d['X_pre'])}; surrogate C {C_REG['C']} (CV on old labels); drift prior boosts {prior.n_boosted} pool pairs ({prior.note or 'ok'}); "
              f"data {time.time() - t0:.0f} s", flush=True)
        full = fit(*train_set(d, np.arange(len(d["y_pool"])), replay, 0), 0)
        full_acc = accuracy(full, d["X_post"])
        target = 0.95 * full_acc
        curves, runs = {}, {}
        for sname, (strat, div, use_prior) in strategies.items():
            t1 = time.time()
            runs[sname] = [run_ours(d, sname, strat, div, use_prior, s, replay, params, prior.weights,
                                    params.n_members) for s in args.seeds]
            curves[sname] = mean_curve(runs[sname])
            print(f"[{name}] {sname}: {time.time() - t1:.0f} s", flush=True)
        peers = {} if args.no_peers else run_peers(d, args.seeds, replay, work)
        if "error" in peers:
            print(f"[{name}] peers failed: {peers['error'][-500:]}")
        for pname, pruns in (peers.get("runs") or {}).items():
            runs[pname] = pruns
            curves[pname] = mean_curve(pruns)
        reach = {s: labels_to_reach(c, target) for s, c in curves.items()}
        r_rand, r_def = reach.get("random"), reach.get("default")
        results["datasets"][name] = {
            "n_old": int(len(d["y_old"])), "n_pool": int(len(d["y_pool"])), "n_eval_post": int(len(d["X_post"])),
            "n_eval_pre": int(len(d["X_pre"])), "surrogate_C": C_REG["C"], "full_label_accuracy": full_acc, "target_accuracy_95pct": target,
            "n_drift_boosted": prior.n_boosted, "drift_prior_note": prior.note,
            "curves": curves, "runs": runs, "labels_to_95pct_of_full": reach,
            "default_vs_random": {"default": r_def, "random": r_rand,
                                  "met": (r_def is not None and r_rand is not None and r_def <= 0.5 * r_rand)},
            "peers_error": peers.get("error"),
            "mean_accuracy_10_to_400": early_area(curves),
            "forgetting": forgetting(d, replay, 0),
        }
        if name == "simulator":
            results["speed_100k"] = speed_100k(d, params)
    (HERE / "results.json").write_text(json.dumps(results, indent=1, default=float) + "\n", encoding="utf-8")
    plot(results, HERE / "curve.png")
    table(results)


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = results["datasets"]
    fig, axes = plt.subplots(1, len(ds), figsize=(6.5 * len(ds), 4.5), squeeze=False)
    for ax, (name, r) in zip(axes[0], ds.items()):
        for s, c in r["curves"].items():
            xs = [p["labels"] or 5 for p in c]
            ax.errorbar(xs, [p["post"] for p in c], yerr=[p["post_std"] for p in c], label=s, capsize=2,
                        lw=2.5 if s == "default" else 1.2, ls="-" if not s.startswith("st:") else "--")
        ax.axhline(r["target_accuracy_95pct"], color="grey", ls=":", label="95% of full-label")
        ax.set_xscale("log")
        ax.set_xlabel("labels bought (0 = the old model, plotted at 5)")
        ax.set_ylabel("reward-model accuracy, post-drift eval")
        ax.set_title(f"{name} (mean of {len(results['params']['seeds'])} seeds)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(results: dict) -> None:
    for name, r in results["datasets"].items():
        print(f"\n== {name} (surrogate C={r['surrogate_C']}): full-label accuracy {r['full_label_accuracy']:.3f}, "
              f"target (95%) {r['target_accuracy_95pct']:.3f}")
        budgets = [p["labels"] for p in next(iter(r["curves"].values()))]
        print(f"{'strategy':22s}" + "".join(f"{b:>6d}" for b in budgets) + "  labels->95%")
        for s, c in r["curves"].items():
            print(f"{s:22s}" + "".join(f"{p['post']:6.3f}" for p in c) + f"  {r['labels_to_95pct_of_full'][s]}")
        if "mean_accuracy_10_to_400" in r:
            print("mean accuracy over 10..400 labels: " + ", ".join(
                f"{s} {v:.3f}" for s, v in sorted(r["mean_accuracy_10_to_400"].items(), key=lambda kv: -kv[1])))
        dv = r["default_vs_random"]
        print(f"default needs {dv['default']} labels, random {dv['random']}: target (<= half) "
              f"{'MET' if dv['met'] else 'MISSED'}")
        f = r["forgetting"]
        for k, v in f["replay_configured_drop_points"].items():
            print(f"forgetting on {k}: before {f['before'][k]:.3f}; replay 0 -> {f['replay_0'][k]:.3f} "
                  f"(drop {f['replay_0_drop_points'][k]:+.1f} pts); replay {f['replay_fraction']} -> "
                  f"{f['replay_configured'][k]:.3f} (drop {v:+.1f} pts; target <= 1: {'MET' if v <= 1 else 'MISSED'})")
        print("replay sweep (all pool labels bought): " + "; ".join(
            f"{p['replay']:.1f}: " + ", ".join(f"{k} {v:.3f}" for k, v in p.items() if k != "replay")
            for p in f["replay_sweep"]))
    if "speed_100k" in results:
        sp = results["speed_100k"]
        print(f"\nselection over {sp['n_pool']} pairs (k={sp['k']}, features cached): {sp['seconds_total']:.1f} s "
              f"(scoring {sp['seconds_scoring']:.1f}, acquisition+prior {sp['seconds_acquisition_and_prior']:.1f}, "
              f"batch {sp['seconds_batch']:.1f}); target < 30 s: {'MET' if sp['met'] else 'MISSED'}")


if __name__ == "__main__":
    main()
