"""Annotation-quality benchmark: driftkeel's aggregate vs crowd-kit and cleanlab, same inputs, one run.

    bash benchmarks/annotation/run.sh            # sets up the peers' virtualenv, then runs this

Steps: build the cells (:mod:`cells`), run driftkeel on each, run the peers in their own
virtualenv (:mod:`peers`), score everything against the truth, write ``results.json`` beside this
file and print the table. Scores (golden anchors excluded from every accuracy):

- ``accuracy``: consensus label == true label, over non-golden items;
- ``skill_spearman``: rank correlation of the method's own annotator score with each annotator's true
  accuracy (share of their judgements equal to the truth);
- ``ece``: expected calibration error (10 bins) of the method's confidence in its label;
- ``drift``: the same label-drift test on every method's consensus: per batch, the share of
  judgements that agree with the consensus, one-sided two-proportion z-test against batches 0-1,
  Bonferroni over the later batches at 5%: first alarm, alarms before the pool change (false);
- ``cpu_s``: process CPU seconds of the fit (driftkeel: the Dawid–Skene estimator alone, and the
  whole stage function with calibration, health, bootstrap intervals, routing and audit).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # every method single-threaded: fair CPU times

import numpy as np
import pandas as pd
from scipy import stats

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import cells  # noqa: E402

from driftkeel.annotation import aggregate_judgements  # noqa: E402
from driftkeel.annotation.consensus import ds_consensus  # noqa: E402
from driftkeel.annotation.aggregate import fast_judgements  # noqa: E402
from driftkeel.config import AggregateParams, DataParams  # noqa: E402

PEERS = ["majority_vote", "dawid_skene", "glad", "mace", "crowdlab"]
PEER_NAMES = {"majority_vote": "crowd-kit MV", "dawid_skene": "crowd-kit DS", "glad": "crowd-kit GLAD",
              "mace": "crowd-kit MACE", "crowdlab": "cleanlab CROWDLAB"}
OURS = ["driftkeel", "driftkeel_weighted"]


def frame_of(cell: Path) -> tuple[pd.DataFrame, dict]:
    """A cell as a clean judgement frame (the aggregate stage's input) plus its golden anchors."""
    j = pd.read_csv(cell / "judgements.csv", dtype={"item": str, "worker": str, "label": str})
    g = pd.read_csv(cell / "gold.csv", dtype=str)
    gold = dict(zip(g["item"], g["label"]))
    f = pd.DataFrame({
        "judgement_id": [f"j{i:07d}" for i in range(len(j))], "comparison_id": j["item"],
        "batch": j["batch"].astype("int64"),
        "timestamp": [f"2026-01-{b + 1:02d}T00:00:00Z" for b in j["batch"]],
        "prompt_id": j["item"], "prompt": "prompt " + j["item"], "response_a": "A " + j["item"],
        "response_b": "B " + j["item"], "policy_version": "-", "annotator_id": j["worker"], "label": j["label"],
        "response_time_s": j["response_time_s"].astype(float), "is_golden": j["item"].isin(list(gold))})
    return f, gold


def run_ours(cell: Path) -> dict:
    j, gold = frame_of(cell)
    report = {}
    for name, method in (("driftkeel", "dawid_skene"), ("driftkeel_weighted", "weighted")):
        params = AggregateParams(method=method)
        t_cpu, t_wall = time.process_time(), time.perf_counter()
        res = aggregate_judgements(j, gold, params)
        cpu, wall = time.process_time() - t_cpu, time.perf_counter() - t_wall
        c = res.details
        pd.DataFrame({"item": c["comparison_id"], "label": c["label"], "confidence": c["confidence"]}).to_csv(
            cell / f"pred_{name}.csv", index=False)
        a = res.annotators
        pd.DataFrame({"worker": a["annotator_id"], "skill": a["accuracy_estimate"]}).to_csv(
            cell / f"skill_{name}.csv", index=False)
        report[name] = {"cpu_s": cpu, "wall_s": wall, "stage_cpu_s": cpu}
        if method == "dawid_skene":
            fast = fast_judgements(j, params.fast_response_ratio)
            jw = pd.Series(np.where(fast, params.fast_judgement_weight, 1.0), index=j.index)
            t_cpu = time.process_time()
            ds_consensus(j, gold, prior_strength=params.ds_prior_strength, judgement_weight=jw,
                         pseudocount=params.confidence_pseudocount,
                         max_iter=params.ds_max_iter, tol=params.ds_tol)
            report[name]["cpu_s"] = time.process_time() - t_cpu     # the estimator alone
            report[name]["native"] = {
                "agreement_drop_batches": res.label_drift.loc[res.label_drift["agreement_drop"], "batch"].tolist(),
                "quality_drop_annotators": a.loc[a["quality_drop"], "annotator_id"].tolist(),
                "quality_drop_batches": a.loc[a["quality_drop"], "quality_drop_batch"].tolist(),
                "low_weight_annotators": a.loc[a["flags"].str.contains("low_weight"), "annotator_id"].tolist(),
                "review_fraction": res.metrics["review_fraction"],
                "review_error_share": None}
            truth = pd.read_csv(cell / "truth.csv", dtype=str).set_index("item")["true_label"]
            wrong = (c["label"] != c["comparison_id"].map(truth)) & ~c["is_golden"]
            if wrong.any():  # share of the consensus errors that the review queue catches
                report[name]["native"]["review_error_share"] = float(c.loc[wrong, "review"].mean())
            hard_rows = c[~c["is_golden"]]
            report[name]["native"]["hard_fraction"] = float(hard_rows["hard"].mean())
            report[name]["native"]["accuracy_on_hard"] = float((hard_rows.loc[hard_rows["hard"], "label"] == hard_rows.loc[hard_rows["hard"], "comparison_id"].map(truth)).mean()) if hard_rows["hard"].any() else None
            report[name]["native"]["accuracy_on_not_hard"] = float((hard_rows.loc[~hard_rows["hard"], "label"] == hard_rows.loc[~hard_rows["hard"], "comparison_id"].map(truth)).mean()) if (~hard_rows["hard"]).any() else None
    return report


def ece(conf: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    conf, correct = np.asarray(conf, float), np.asarray(correct, float)
    ok = np.isfinite(conf)
    conf, correct = conf[ok], correct[ok]
    if not len(conf):
        return float("nan")
    edges = np.minimum((conf * bins).astype(int), bins - 1)
    return float(sum(abs(correct[edges == b].mean() - conf[edges == b].mean()) * (edges == b).mean()
                     for b in range(bins) if (edges == b).any()))


def drift_test(j: pd.DataFrame, labels: pd.Series, n_batches: int, alpha: float = 0.05, ref=(0, 1)) -> dict:
    agree = (j["label"] == j["item"].map(labels)).astype(float)
    by = agree.groupby(j["batch"]).agg(["sum", "count"])
    r = by.loc[list(ref)].sum()
    later = [b for b in range(n_batches) if b not in ref and b in by.index]
    z_crit = stats.norm.isf(alpha / max(len(later), 1))
    alarms = []
    for b in later:
        c1, n1, c2, n2 = r["sum"], r["count"], by.loc[b, "sum"], by.loc[b, "count"]
        p = (c1 + c2) / (n1 + n2)
        z = (c1 / n1 - c2 / n2) / np.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
        if z > z_crit:
            alarms.append(int(b))
    return {"alarms": alarms, "agreement_by_batch": (by["sum"] / by["count"]).round(4).tolist()}


def score(cell: Path, method: str, timing: dict) -> dict:
    pred_path = cell / f"pred_{method}.csv"
    if not pred_path.exists():
        return {"error": timing.get("error", "no predictions")}
    pred = pd.read_csv(pred_path, dtype={"item": str, "label": str}).set_index("item")
    truth = pd.read_csv(cell / "truth.csv", dtype=str).set_index("item")["true_label"]
    gold = set(pd.read_csv(cell / "gold.csv", dtype=str)["item"])
    items = [i for i in truth.index if i not in gold and i in pred.index]
    correct = (pred.loc[items, "label"] == truth[items]).to_numpy()
    out = {"accuracy": float(correct.mean()), "n_scored": len(items), "cpu_s": timing.get("cpu_s"),
           "wall_s": timing.get("wall_s")}
    if "stage_cpu_s" in timing:
        out["stage_cpu_s"] = timing["stage_cpu_s"]
    if "confidence" in pred.columns:
        out["ece"] = ece(pred.loc[items, "confidence"].to_numpy(), correct)
    skill = pd.read_csv(cell / f"skill_{method}.csv", dtype={"worker": str}).set_index("worker")["skill"]
    workers = pd.read_csv(cell / "workers.csv", dtype={"worker": str}).set_index("worker")
    common = workers.index.intersection(skill.index)
    rho = stats.spearmanr(skill[common], workers.loc[common, "true_accuracy"]).statistic if len(common) > 2 else np.nan
    out["skill_spearman"] = float(rho)
    meta = json.loads((cell / "meta.json").read_text())
    if meta.get("n_batches", 1) >= 4:
        j = pd.read_csv(cell / "judgements.csv", dtype={"item": str, "worker": str, "label": str})
        d = drift_test(j, pred["label"], meta["n_batches"])
        change = meta.get("pool_change_batch")
        out["drift_alarms"] = d["alarms"]
        out["drift_false_alarms"] = len([b for b in d["alarms"] if change is None or b < change])
        out["drift_detected"] = None if change is None else any(b >= change for b in d["alarms"])
        out["drift_first_alarm_at_or_after_change"] = (None if change is None else
                                                       min([b for b in d["alarms"] if b >= change], default=None))
    if "native" in timing:
        nat = dict(timing["native"])
        spam = set(workers.index[workers["spammer"]])
        low = set(nat["low_weight_annotators"])
        nat["low_weight_precision"] = len(low & spam) / len(low) if low else None
        nat["low_weight_recall"] = len(low & spam) / len(spam) if spam else None
        degraded = workers.loc[workers["degraded_from"] >= 0, "degraded_from"].to_dict()
        drops = dict(zip(nat["quality_drop_annotators"], nat["quality_drop_batches"]))
        nat["quality_drop_true_positives"] = sorted(w for w in drops if w in degraded)
        nat["quality_drop_false_positives"] = sorted(w for w in drops if w not in degraded)
        nat["quality_drop_missed"] = sorted(w for w in degraded if w not in drops)
        if meta.get("n_batches", 1) >= 4:
            change = meta.get("pool_change_batch")
            ad = nat["agreement_drop_batches"]
            nat["agreement_drop_false_alarms"] = len([b for b in ad if change is None or b < change])
            nat["agreement_drop_first_at_or_after_change"] = (None if change is None else
                                                               min([b for b in ad if b >= change], default=None))
        out["native"] = nat
    return out


def speed_100k(work: Path) -> dict:
    """The whole aggregate stage function on 100k simulator judgements (10 batches x 3334 x 3)."""
    path = work / "speed_100k.parquet"
    if not path.exists():
        from driftkeel.data.simulator import simulate
        sim = simulate(DataParams(seed=400, n_batches=10, comparisons_per_batch=3334, judgements_per_comparison=3,
                                  **cells.SMALL))
        j = pd.DataFrame([r for b in sim.stream.values() for r in b])
        j.to_parquet(path)
        pd.Series({g["comparison_id"]: g["gold_label"] for g in sim.golden}).to_json(work / "speed_100k_gold.json")
    j = pd.read_parquet(path)
    gold = json.loads((work / "speed_100k_gold.json").read_text())
    t_cpu, t_wall = time.process_time(), time.perf_counter()
    res = aggregate_judgements(j, gold, AggregateParams())
    return {"n_judgements": int(len(j)), "wall_s": time.perf_counter() - t_wall, "cpu_s": time.process_time() - t_cpu,
            "ds_n_iter": res.metrics.get("ds_n_iter"), "load_average_1min": os.getloadavg()[0]}


def check_targets(results: dict) -> dict:
    rows = []
    for cell, r in results["cells"].items():
        ours = r["methods"]["driftkeel"]
        peers = {m: r["methods"][m]["accuracy"] for m in PEERS if "accuracy" in r["methods"].get(m, {})}
        best_peer = max(peers, key=peers.get)
        spam = r["meta"].get("spammer_fraction", r["meta"].get("spam_share_of_judgements", 0.0)) or 0.0
        row = {"cell": cell, "ours": ours["accuracy"], "best_peer": best_peer, "best_peer_accuracy": peers[best_peer],
               "vs_best_peer_points": 100 * (ours["accuracy"] - peers[best_peer]),
               "meets_best_peer": ours["accuracy"] >= peers[best_peer] - 1e-12}
        if spam >= 0.2 and "majority_vote" in peers:
            row["vs_majority_points"] = 100 * (ours["accuracy"] - peers["majority_vote"])
            row["meets_majority_plus_3"] = row["vs_majority_points"] >= 3.0
        if cell.startswith(("rte", "temp")) and "cpu_s" in r["methods"].get("dawid_skene", {}):
            row["cpu_ours_s"], row["cpu_ds_s"] = ours["cpu_s"], r["methods"]["dawid_skene"]["cpu_s"]
            row["meets_cpu"] = ours["cpu_s"] <= r["methods"]["dawid_skene"]["cpu_s"]
        rows.append(row)
    s = results.get("speed_100k", {})
    return {"per_cell": rows, "all_cells_meet_best_peer": all(r["meets_best_peer"] for r in rows),
            "all_spam_cells_meet_majority_plus_3": all(r.get("meets_majority_plus_3", True) for r in rows),
            "all_real_cells_meet_cpu": all(r.get("meets_cpu", True) for r in rows),
            "speed_100k_under_10s": (s.get("wall_s") or 1e9) < 10.0}


def table(results: dict) -> str:
    methods = OURS + PEERS
    head = f"{'cell':<16}" + "".join(f"{m[:14]:>15}" for m in methods)
    lines = ["accuracy (non-golden items)", head]
    for cell, r in results["cells"].items():
        lines.append(f"{cell:<16}" + "".join(
            f"{r['methods'].get(m, {}).get('accuracy', float('nan')):>15.4f}" for m in methods))
    lines += ["", "annotator-skill Spearman", head]
    for cell, r in results["cells"].items():
        lines.append(f"{cell:<16}" + "".join(
            f"{r['methods'].get(m, {}).get('skill_spearman', float('nan')):>15.3f}" for m in methods))
    lines += ["", "CPU seconds (driftkeel: estimator / whole stage)", head]
    for cell, r in results["cells"].items():
        cols = []
        for m in methods:
            x = r["methods"].get(m, {})
            cols.append(f"{x.get('cpu_s', float('nan')):.2f}/{x.get('stage_cpu_s'):.2f}" if "stage_cpu_s" in x
                        else f"{x.get('cpu_s') if x.get('cpu_s') is not None else float('nan'):.2f}")
        lines.append(f"{cell:<16}" + "".join(f"{c:>15}" for c in cols))
    lines += ["", "label drift (same test on each consensus): first alarm at/after the change / false alarms", head]
    for cell, r in results["cells"].items():
        if "drift_alarms" not in r["methods"].get("driftkeel", {}):
            continue
        cols = [f"{r['methods'][m].get('drift_first_alarm_at_or_after_change')}/{r['methods'][m].get('drift_false_alarms')}"
                if "drift_alarms" in r["methods"].get(m, {}) else "-" for m in methods]
        lines.append(f"{cell:<16}" + "".join(f"{c:>15}" for c in cols))
    lines += ["", "driftkeel's own signals: agreement_drop (alpha CI) first at/after change / false alarms; "
              "low-weight flags vs spammers (precision/recall); quality-drop flags (true/false/missed)"]
    for cell, r in results["cells"].items():
        nat = r["methods"]["driftkeel"].get("native", {})
        drift = (f"{nat.get('agreement_drop_first_at_or_after_change')}/{nat.get('agreement_drop_false_alarms')}"
                 if "agreement_drop_false_alarms" in nat else "-")
        p, rc = nat.get("low_weight_precision"), nat.get("low_weight_recall")
        lw = f"{p if p is None else round(p, 2)}/{rc if rc is None else round(rc, 2)}"
        qd = (f"{len(nat.get('quality_drop_true_positives', []))}/{len(nat.get('quality_drop_false_positives', []))}"
              f"/{len(nat.get('quality_drop_missed', []))}")
        rv = nat.get("review_fraction")
        lines.append(f"{cell:<16} drift {drift:>8}  low-weight {lw:>11}  quality-drop {qd:>7}  review "
                     f"{rv:.3f} (catches {nat.get('review_error_share') or 0:.2f} of errors)  hard "
                     f"{nat.get('hard_fraction', float('nan')):.2f}")
    t = results["targets"]
    s = results.get("speed_100k", {})
    lines += ["", f"speed: whole stage on {s.get('n_judgements')} judgements: {s.get('wall_s', float('nan')):.2f} s wall, "
              f"{s.get('cpu_s', float('nan')):.2f} s CPU (load average {s.get('load_average_1min', float('nan')):.1f})",
              "targets: " + ", ".join(f"{k}={v}" for k, v in t.items() if k != "per_cell")]
    for row in t["per_cell"]:
        if not row["meets_best_peer"] or not row.get("meets_majority_plus_3", True) or not row.get("meets_cpu", True):
            lines.append(f"  MISSED {row['cell']}: {json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None, help="cell folder (default: a temp folder keyed by cells.py)")
    ap.add_argument("--cells", nargs="*", default=None, help="only these cells")
    ap.add_argument("--peers-python", default=str(HERE / ".venv-peers" / "bin" / "python"))
    ap.add_argument("--skip-peers", action="store_true", help="reuse the peers' predictions already in --work")
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    args = ap.parse_args(argv)
    version = hashlib.sha256((HERE / "cells.py").read_bytes()).hexdigest()[:10]
    work = args.work or Path(os.environ.get("TMPDIR", "/tmp")) / f"driftkeel-annotation-bench-{version}"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    names = cells.build(work, args.cells)
    print(f"[bench] {len(names)} cells in {work}", flush=True)
    ours = {}
    for n in names:
        ours[n] = run_ours(work / n)
        print(f"[bench] {n:>16} driftkeel: {ours[n]['driftkeel']['cpu_s']:.2f} s CPU (stage {ours[n]['driftkeel']['stage_cpu_s']:.2f} s)", flush=True)
    if not args.skip_peers:
        subprocess.run([args.peers_python, str(HERE / "peers.py"), str(work), *names], check=True)
    results = {"generated_by": "bash benchmarks/annotation/run.sh", "peers": {m: PEER_NAMES[m] for m in PEERS},
               "versions": {"crowd-kit": "1.4.2", "cleanlab": "2.9.0"}, "cells": {}}
    for n in names:
        peer_t = json.loads((work / n / "peers.json").read_text()) if (work / n / "peers.json").exists() else {}
        meta = json.loads((work / n / "meta.json").read_text())
        methods = {m: score(work / n, m, ours[n][m]) for m in OURS}
        methods.update({m: score(work / n, m, peer_t.get(m, {})) for m in PEERS})
        results["cells"][n] = {"meta": meta, "methods": methods}
    results["speed_100k"] = speed_100k(work)
    results["targets"] = check_targets(results)
    results["total_seconds"] = time.perf_counter() - t0
    args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(table(results))
    print(f"[bench] results: {args.out}")
    return results


if __name__ == "__main__":
    main()
