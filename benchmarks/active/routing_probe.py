"""Probe (not a driftkeel option): does routing by prompt between the old and the retrained reward model
keep the pre-drift accuracy that replay alone loses?

    .venv/bin/python benchmarks/active/routing_probe.py      # about 5 minutes; writes routing_probe.json

Same data, surrogate and training sets as bench.py's forgetting section (all pool labels bought, replay
share f of old labels). The gate is a logistic regression on MiniLM prompt embeddings that tells the
old window's prompts from the pool's (prompts only: no preference label is used); a pair is scored
p(new | prompt) x P_retrained + (1 - p) x P_old, with P_old the model fitted on the old labels alone.
Seeds 0, 1, 2: on HH each seed draws other prompt-group splits (hh_data(seed)); on the simulator (one
fixed stream) they draw other replay samples. Rows are means over the seeds, with the per-seed values.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench as B  # noqa: E402

from driftkeel.embeddings import HASHING, Embedder  # noqa: E402


def probe(d: dict, minilm: Embedder, seed: int = 0, replays=(0.0, 0.1, 0.3)) -> dict:
    from sklearn.linear_model import LogisticRegression

    B.C_REG["C"] = B.choose_C(d["X_old"], d["y_old"])
    E_old, E_pool = minilm.encode(d["old_prompts"]), minilm.encode(d["pool_prompts"])
    gate = LogisticRegression(C=1.0, max_iter=2000).fit(np.vstack([E_old, E_pool]),
                                                         np.r_[np.zeros(len(E_old)), np.ones(len(E_pool))])
    sets = [k for k in ("pre", "pre_current_concept", "post") if f"X_{k}" in d]
    p_new = {k: gate.predict_proba(minilm.encode(d[f"{k}_prompts"]))[:, 1] for k in sets}
    old = B.fit(d["X_old"], d["y_old"], seed)
    out = {"C": B.C_REG["C"], "gate_routes_to_old_model_on_pre": float(np.mean(p_new["pre"] < 0.5)),
           "gate_routes_to_new_model_on_post": float(np.mean(p_new["post"] >= 0.5)),
           "before": {k: B.accuracy(old, d[f"X_{k}"]) for k in sets}, "rows": []}
    allb = np.arange(len(d["y_pool"]))
    for f in replays:
        new = B.fit(*B.train_set(d, allb, f, seed), seed)
        row = {"replay": f}
        for k in sets:
            X = d[f"X_{k}"]
            routed = p_new[k] * new.predict_proba(X) + (1 - p_new[k]) * old.predict_proba(X)
            row[f"plain_{k}"] = B.accuracy(new, X)
            row[f"routed_{k}"] = float(np.mean(routed > 0.5))
        out["rows"].append(row)
    return out


def summarise(runs: list[dict]) -> dict:
    """Mean over seeds of every number, with the per-seed values beside it."""
    out = {"seeds": len(runs), "per_seed": runs}
    keys = [k for k in runs[0] if isinstance(runs[0][k], float)]
    out.update({k: float(np.mean([r[k] for r in runs])) for k in keys})
    out["before"] = {k: float(np.mean([r["before"][k] for r in runs])) for k in runs[0]["before"]}
    out["rows"] = []
    for i, row in enumerate(runs[0]["rows"]):
        out["rows"].append({k: (row[k] if k == "replay" else float(np.mean([r["rows"][i][k] for r in runs])))
                            for k in row})
    # drops in points below the old-labels-only model, per seed (the pre-drift target: <= 1 point)
    for i, row in enumerate(out["rows"]):
        for k in [k for k in runs[0]["before"] if k != "post"]:
            for m in ("plain", "routed"):
                row[f"{m}_{k}_drop_points_per_seed"] = [100 * (r["before"][k] - r["rows"][i][f"{m}_{k}"]) for r in runs]
    return out


def main(seeds=(0, 1, 2)) -> None:
    emb = Embedder(cache_path=B.ROOT / ".cache" / "embeddings.sqlite", backend=HASHING)
    minilm = Embedder(cache_path=B.ROOT / ".cache" / "embeddings.sqlite")
    res = {}
    for name in ("simulator", "hh"):
        runs = []
        for seed in seeds:
            d = B.simulator_data(emb) if name == "simulator" else B.hh_data(emb, seed=seed)
            runs.append(probe(d, minilm, seed))
        res[name] = r = summarise(runs)
        print(f"\n[{name}] {len(seeds)} seeds; gate routes {r['gate_routes_to_old_model_on_pre']:.2f} of pre prompts "
              f"to the old model, {r['gate_routes_to_new_model_on_post']:.2f} of post prompts to the new one")
        print("before (old labels only): " + ", ".join(f"{k} {v:.3f}" for k, v in r["before"].items()))
        for row in r["rows"]:
            print(f"replay {row['replay']:.1f}: " + "; ".join(
                f"{k}: plain {row['plain_' + k]:.3f} routed {row['routed_' + k]:.3f}" for k in r["before"]))
            for k in [k for k in r["before"] if k != "post"]:
                print(f"    {k} drop per seed (points): plain "
                      + " ".join(f"{v:.1f}" for v in row[f"plain_{k}_drop_points_per_seed"]) + "; routed "
                      + " ".join(f"{v:.1f}" for v in row[f"routed_{k}_drop_points_per_seed"]))
    (HERE / "routing_probe.json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
