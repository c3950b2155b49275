"""A reward model through a real preference flip: HH-RLHF harmless (A) -> AlpacaEval (B).

    python benchmarks/reward_flip/bench.py [--model tiny|<HF id or path>] [--n-b 1500] [--out results.json]

On HH harmless the shorter answer is preferred 57% of the time, on AlpacaEval the longer one 75%: the
notion of a good answer flips with the kind of prompt. The scenario (issue 10, part 3):

1. a reward model is trained on A (the champion before the shift);
2. the stream moves to B: the drift stage's prompt test (MiniLM embeddings, the project's permutation
   two-sample test) compares A's training prompts with B's;
3. the reward model is retrained on the new data, five ways, all from the same initial model and on
   the same pairs where they share them:
   - `plain`: the new B pairs only (plain retraining);
   - `replay`: the B pairs plus replayed A pairs making `--replay` (0.3) of the mix, one head
     (what the mix stage does by default);
   - `replay50`: the same with half of the mix replayed A;
   - `routed` / `routed50`: the `replay` / `replay50` mix with `reward.routing` on (key `era`: before /
     after the drift, as the mix stage labels its pairs; training/routing.py): two heads and a gate on
     the prompt in one model.
4. every model is scored on held-out prompts of both domains (split by `group`; no prompt of a
   held-out group is trained on).

Target: A >= 0.62 and B >= 0.76 at the same time, trained in <= 10 minutes on 2 CPU cores.
Writes the JSON (--out) and prints a table. Reads ../shared/data/pairs (never copied).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def shared_data() -> Path:
    for cand in (os.environ.get("DRIFTKEEL_SHARED_DATA"), ROOT.parent / "shared" / "data"):
        if cand and (Path(cand) / "pairs").is_dir():
            return Path(cand)
    raise SystemExit("reward_flip: ../shared/data/pairs not found (set DRIFTKEEL_SHARED_DATA)")


def held_out(group: str, seed: int, frac: float) -> bool:
    h = hashlib.sha256(f"{seed}\0{group}".encode()).hexdigest()
    return int(h[:8], 16) / 0xFFFFFFFF < frac


def load(path: Path) -> tuple[list[dict], dict]:
    from driftkeel.data.formats import load_pairs

    res = load_pairs(path)
    if res.rows_in != len(res.rows) + len(res.quarantine):
        raise SystemExit(f"reward_flip: {path}: counts do not add up")
    return res.rows, {"read": res.rows_in, "used": len(res.rows), "quarantined": len(res.quarantine)}


def split(rows: list[dict], seed: int, frac: float) -> tuple[list[dict], list[dict]]:
    train = [r for r in rows if not held_out(r["group"], seed, frac)]
    test = [r for r in rows if held_out(r["group"], seed, frac)]
    return train, test


def sample(rows: list[dict], n: int, rng) -> list[dict]:
    return rows if n <= 0 or n >= len(rows) else [rows[i] for i in sorted(rng.choice(len(rows), n, replace=False))]


def pair(r: dict, source: str) -> dict:
    """A pair as the mix stage writes it: `source` replay (A, older) / new (B); `era` before / after the
    first drift alarm (the drift stage flags B's first batch: see prompt_drift in the results)."""
    return {"pair_id": str(r["id"]), "prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"],
            "source": source, "era": {"replay": "before", "new": "after"}.get(source, ""),
            "domain": r["domain"], "weight": 1.0}


def with_replay(new: list[dict], old: list[dict], share: float, rng) -> list[dict]:
    """`new` plus replayed `old` pairs making `share` of the mix (shuffled)."""
    n_old = min(len(old), int(round(share / (1 - share) * len(new))))
    mix = new + sample(old, n_old, rng)
    return [mix[i] for i in rng.permutation(len(mix))]


def prompt_drift(a_prompts: list[str], b_prompts: list[str], root: Path, seed: int) -> tuple[dict, dict]:
    """The drift stage's prompt test and cluster analysis (MiniLM embeddings) of A's prompts (reference)
    vs B's (current): (summary, the report's `clusters` section)."""
    from driftkeel.drift.clusters import cluster_report
    from driftkeel.drift.twosample import two_sample_test
    from driftkeel.embeddings import Embedder

    emb = Embedder.for_project(root)
    t0 = time.perf_counter()
    ra, rb = emb.encode(a_prompts), emb.encode(b_prompts)
    res = two_sample_test(ra, rb, n_permutations=300, seed=seed)
    clusters = cluster_report(ra, rb, a_prompts, b_prompts, seed=seed)
    return ({"p_value": float(res.p_value), "drift": bool(res.p_value < 0.05), "n_ref": len(a_prompts),
             "n_cur": len(b_prompts), "n_new_clusters": len(clusters.get("new_clusters") or []),
             "seconds": time.perf_counter() - t0}, clusters)


def label_regions(pairs: list[dict], ref_prompts: list[str], clusters: dict, seed: int) -> None:
    """Each pair's `region` as the mix stage labels it (active/drift_prior.py): "new" when its prompt is
    far from the reference prompts and the drift report flagged a new cluster, "grew-<c>" for a flagged
    grown cluster, else "other". `reward.routing.key: region` routes on it."""
    from driftkeel.active.drift_prior import drift_prior

    prior = drift_prior([p["prompt"] for p in pairs], ref_prompts, {"clusters": clusters}, boost=1.0, seed=seed)
    for p, r in zip(pairs, prior.region):
        p["region"] = r or "other"


def accuracies(ens, pairs: list[dict]) -> tuple[float, list[float]]:
    """(accuracy of the standardised ensemble mean, as RewardEnsemble.pair_stats; each member's), from
    one scoring pass."""
    from driftkeel.evaluation.metrics import pairwise_accuracy

    n, prompts = len(pairs), [p["prompt"] for p in pairs]
    z = ens.standardised(prompts + prompts, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs])
    mean = z.mean(axis=0)
    return pairwise_accuracy(mean[:n], mean[n:]), [float(pairwise_accuracy(row[:n], row[n:])) for row in z]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny", help="tiny (built from common.tiny_model) or an HF id / path")
    ap.add_argument("--n-b", type=int, default=1500, help="AlpacaEval training pairs (0 = all)")
    ap.add_argument("--n-test-b", type=int, default=800, help="held-out AlpacaEval pairs (0 = all)")
    ap.add_argument("--n-a", type=int, default=0, help="HH training pairs (0 = all; a smaller number for a smoke run)")
    ap.add_argument("--replay", type=float, default=0.3)
    ap.add_argument("--test-fraction", type=float, default=0.25, help="share of prompt groups held out")
    ap.add_argument("--max-response-tokens", type=int, default=256,
                    help="AlpacaEval's preference is mostly length: the reward must see the whole answer")
    ap.add_argument("--vocab", type=int, default=4096, help="tiny model: tokenizer vocabulary")
    ap.add_argument("--init", choices=["sft", "random"], default="random",
                    help="tiny model: SFT on the training pairs' chosen answers first (the pipeline's "
                         "reward.init_from: sft), or the random initial model")
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--ensemble", type=int, default=3,
                    help="reward.ensemble_size (params.yaml's default 3): scored by the ensemble mean")
    ap.add_argument("--calib-fraction", type=float, default=0.1,
                    help="share of training prompt groups held out of training for calibration (the mix "
                         "stage's eval split)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--routing-key", default="era", help="era (params.yaml's default) | region | source")
    ap.add_argument("--methods", nargs="*", default=["plain", "replay", "replay50", "routed", "routed50"])
    ap.add_argument("--out", default=str(HERE / "results.json"))
    args = ap.parse_args(argv)

    from driftkeel.config import CommonParams, RewardParams, RoutingParams, TinyModelParams
    from driftkeel.training import models as M
    from driftkeel.training.ensemble import RewardEnsemble
    from driftkeel.training.reward import gate_probabilities, train_reward

    t_all, sft_seconds = time.perf_counter(), 0.0
    rng = np.random.default_rng(args.seed)
    data = shared_data()
    a_rows, a_counts = load(data / "pairs" / "hh_harmless_dev.jsonl.gz")
    b_rows, b_counts = load(data / "pairs" / "alpaca_eval_gpt4_dev.jsonl.gz")
    a_train, a_test = split(a_rows, args.seed, args.test_fraction)
    b_train, b_test = split(b_rows, args.seed, args.test_fraction)
    b_train, b_test = sample(b_train, args.n_b, rng), sample(b_test, args.n_test_b, rng)
    a_train = sample(a_train, args.n_a, rng)
    assert not {r["group"] for r in a_train + b_train} & {r["group"] for r in a_test + b_test}
    a_train, a_cal = split(a_train, args.seed + 1, args.calib_fraction)
    b_train, b_cal = split(b_train, args.seed + 1, args.calib_fraction)
    A = [pair(r, "replay") for r in a_train]
    B = [pair(r, "new") for r in b_train]
    calib = {"A": [pair(r, "replay") for r in a_cal], "B": [pair(r, "new") for r in b_cal]}
    tests = {"A": [pair(r, "") for r in a_test], "B": [pair(r, "") for r in b_test]}

    tiny = TinyModelParams(vocab_size=args.vocab, n_positions=max(256, 48 + args.max_response_tokens + 16))
    common = CommonParams(seed=args.seed, tiny_model=tiny, max_prompt_tokens=48,
                          max_response_tokens=args.max_response_tokens)
    base = RewardParams(epochs=args.epochs, learning_rate=5e-4, batch_size=16, ensemble_size=args.ensemble)
    work = Path(tempfile.mkdtemp(prefix="reward_flip_"))
    if args.model == "tiny":
        texts = [p[k] for p in A + B for k in ("prompt", "chosen", "rejected")]
        tok = M.train_tokenizer(texts, tiny.vocab_size)
        import torch

        torch.manual_seed(args.seed)
        init = str(M.save_model(M.build_tiny_causal_lm(tok, tiny), tok, work / "init"))
        if args.init == "sft":  # as the pipeline: SFT on (prompt, chosen) of the training pairs, 1 epoch
            from driftkeel.config import SftParams
            from driftkeel.training.sft import train_sft

            t0 = time.perf_counter()
            sft = train_sft([{"prompt": p["prompt"], "response": p["chosen"]} for p in A + B], texts,
                            work / "sft", common, SftParams(model_name_or_path=init, epochs=1,
                                                            learning_rate=5e-3, batch_size=32))
            init, sft_seconds = sft["model_dir"], time.perf_counter() - t0
    else:
        init = args.model

    ref_prompts = [p["prompt"] for p in sample(A, 500, rng)]
    drift, clusters = prompt_drift(ref_prompts, [p["prompt"] for p in sample(B, 500, rng)], work, args.seed)
    everything = A + B + calib["A"] + calib["B"]
    label_regions(everything, ref_prompts, clusters, args.seed)
    drift["region_new_share"] = {d: float(np.mean([p["region"] == "new" for p in ps]))
                                 for d, ps in (("A", A), ("B", B))}

    mixes = {"A_only": (A, base),
             "plain": (B, base),
             "replay": (with_replay(B, A, args.replay, np.random.default_rng(args.seed + 1)), base),
             "replay50": (with_replay(B, A, 0.5, np.random.default_rng(args.seed + 1)), base)}
    # reward.routing as params.yaml sets it (key era: before / after the first drift alarm)
    routed = base.model_copy(update={"routing": RoutingParams(enabled=True, key=args.routing_key, min_pairs=50)})
    mixes["routed"] = (mixes["replay"][0], routed)
    mixes["routed50"] = (mixes["replay50"][0], routed)
    rows = {}
    for name in ["A_only", *args.methods]:
        train, params = mixes[name]
        t0 = time.perf_counter()
        # calibration pairs: held-out groups of the domains this model trains on (as the mix stage's eval)
        cal = [p for d in ("A", "B") if any(q["source"] == calib[d][0]["source"] for q in train) for p in calib[d]]
        res = train_reward(train, cal, init, work / name, common, params)
        seconds = time.perf_counter() - t0
        ens = RewardEnsemble(res["member_dirs"])
        scored = {d: accuracies(ens, t) for d, t in tests.items()}
        acc = {d: a for d, (a, _) in scored.items()}
        row = {"acc_A": acc["A"], "acc_B": acc["B"], "train_seconds": seconds, "n_train": len(train),
               "members_acc_A": scored["A"][1], "members_acc_B": scored["B"][1],
               "se_A": float(np.sqrt(acc["A"] * (1 - acc["A"]) / len(tests["A"]))),
               "se_B": float(np.sqrt(acc["B"] * (1 - acc["B"]) / len(tests["B"]))),
               "n_train_A": sum(p["source"] == "replay" for p in train),
               "n_train_B": sum(p["source"] == "new" for p in train),
               "meets_target": bool(acc["A"] >= 0.62 and acc["B"] >= 0.76 and seconds + sft_seconds <= 600)}
        row["routing_heads"] = res["metrics"]["routing_heads"]
        if res["metrics"]["routing_heads"] > 1:
            g = {d: gate_probabilities(res["model_dir"], [p["prompt"] for p in t])
                 for d, t in tests.items()}
            from driftkeel.training.models import load_reward_model
            from driftkeel.training.routing import routing_of

            domains = routing_of(load_reward_model(res["model_dir"])[0])["domains"]
            b_head = domains.index({"era": "after", "region": "new", "source": "new"}[args.routing_key])
            row["routing_domains"] = domains
            # the gate's pick for held-out prompts: B's should go to the "new" head, A's elsewhere
            row["gate_accuracy"] = float(np.mean(np.concatenate([g["A"].argmax(1) != b_head, g["B"].argmax(1) == b_head])))
        rows[name] = row
        print(f"{name:10s} A {acc['A']:.3f}  B {acc['B']:.3f}  {seconds:6.0f}s  n={len(train)}", flush=True)

    out = {
        "command": "python benchmarks/reward_flip/bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": args.model, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "data": {"A": {"file": "pairs/hh_harmless_dev.jsonl.gz", **a_counts, "train": len(A), "test": len(tests["A"])},
                 "B": {"file": "pairs/alpaca_eval_gpt4_dev.jsonl.gz", **b_counts, "train": len(B),
                       "test": len(tests["B"])}},
        "length_preference": {d: float(np.mean([len(p["chosen"]) > len(p["rejected"]) for p in t]))
                              for d, t in tests.items()},
        "prompt_drift": drift, "results": rows, "target": {"acc_A": 0.62, "acc_B": 0.76, "train_seconds": 600},
        "settings": {k: v for k, v in vars(args).items() if k != "out"}, "sft_seconds": sft_seconds,
        "total_seconds": time.perf_counter() - t_all,
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print("\n| method | acc A (HH) | acc B (AlpacaEval) | train s (+SFT) | pairs (A+B) | target |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        print(f"| {name} | {r['acc_A']:.3f} ± {r['se_A']:.3f} | {r['acc_B']:.3f} ± {r['se_B']:.3f} | "
              f"{r['train_seconds']:.0f} (+{sft_seconds:.0f}) | "
              f"{r['n_train_A']}+{r['n_train_B']} | {'met' if r['meets_target'] else 'missed'} |")
    print(f"prompt drift A->B: p = {drift['p_value']:.4f} ({'flagged' if drift['drift'] else 'not flagged'})")
    return out


if __name__ == "__main__":
    main()
