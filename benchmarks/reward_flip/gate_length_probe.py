"""Probe (not a shipped option): would a better gate plus an explicit length feature meet issue 10's target?

    python benchmarks/reward_flip/gate_length_probe.py      # ~10 min on 2 cores; writes gate_length_probe.json

Same data, split and tiny default as bench.py (seed 0). Trains `A_only` (HH) and `plain` (AlpacaEval)
reward ensembles (3 members), scores every pair, then, with scikit-learn on top of those scores:
- "longer wins" on the full (untruncated) character length;
- per domain, a logistic combination of [A_only score diff, plain score diff, log-length diff] fitted on
  that domain's calibration pairs (10% of its training groups; no intercept, symmetric);
- a gate: logistic regression on the MiniLM embeddings of the training prompts (A vs B), and the
  held-out accuracy when each test pair is scored by the combination of the domain its gate picks
  (A -> A_only; B -> plain + length), next to oracle routing (the true domain).
"""
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench as B_  # noqa: E402  (sets the offline env and sys.path like the benchmark)

from sklearn.linear_model import LogisticRegression  # noqa: E402


def main() -> dict:
    import torch

    from driftkeel.config import CommonParams, RewardParams, TinyModelParams
    from driftkeel.embeddings import Embedder
    from driftkeel.training import models as M
    from driftkeel.training.ensemble import RewardEnsemble
    from driftkeel.training.reward import train_reward

    t_all = time.perf_counter()
    seed = 0
    rng = np.random.default_rng(seed)
    data = B_.shared_data()
    a_rows, _ = B_.load(data / "pairs" / "hh_harmless_dev.jsonl.gz")
    b_rows, _ = B_.load(data / "pairs" / "alpaca_eval_gpt4_dev.jsonl.gz")
    a_train, a_test = B_.split(a_rows, seed, 0.25)
    b_train, b_test = B_.split(b_rows, seed, 0.25)
    b_train, b_test = B_.sample(b_train, 1500, rng), B_.sample(b_test, 800, rng)
    a_train = B_.sample(a_train, 0, rng)
    a_train, a_cal = B_.split(a_train, seed + 1, 0.1)
    b_train, b_cal = B_.split(b_train, seed + 1, 0.1)
    sets = {"trainA": [B_.pair(r, "replay") for r in a_train], "trainB": [B_.pair(r, "new") for r in b_train],
            "calA": [B_.pair(r, "replay") for r in a_cal], "calB": [B_.pair(r, "new") for r in b_cal],
            "testA": [B_.pair(r, "") for r in a_test], "testB": [B_.pair(r, "") for r in b_test]}
    tiny = TinyModelParams(vocab_size=4096, n_positions=max(256, 48 + 256 + 16))
    common = CommonParams(seed=seed, tiny_model=tiny, max_prompt_tokens=48, max_response_tokens=256)
    base = RewardParams(epochs=3, learning_rate=5e-4, batch_size=16, ensemble_size=3)
    work = Path(tempfile.mkdtemp(prefix="gate_length_probe_"))
    texts = [p[k] for p in sets["trainA"] + sets["trainB"] for k in ("prompt", "chosen", "rejected")]
    tok = M.train_tokenizer(texts, tiny.vocab_size)
    torch.manual_seed(seed)
    init = str(M.save_model(M.build_tiny_causal_lm(tok, tiny), tok, work / "init"))
    diffs, seconds = {}, {}
    for name, train, cal in (("A_only", sets["trainA"], sets["calA"]), ("plain", sets["trainB"], sets["calB"])):
        t0 = time.perf_counter()
        res = train_reward(train, cal, init, work / name, common, base)
        seconds[name] = time.perf_counter() - t0
        ens = RewardEnsemble(res["member_dirs"])
        for k, ps in sets.items():
            n, pr = len(ps), [p["prompt"] for p in ps]
            z = ens.standardised(pr + pr, [p["chosen"] for p in ps] + [p["rejected"] for p in ps]).mean(axis=0)
            diffs[name, k] = z[:n] - z[n:]

    def X(k):
        ps = sets[k]
        dlen = np.log1p([len(p["chosen"]) for p in ps]) - np.log1p([len(p["rejected"]) for p in ps])
        return np.c_[diffs["A_only", k], diffs["plain", k], dlen]

    def acc(d):
        return float(np.mean(d > 0) + 0.5 * np.mean(d == 0))

    def fit(k, cols):
        Xf = X(k)[:, cols]
        Xf = np.r_[Xf, -Xf]
        y = np.r_[np.ones(len(Xf) // 2), np.zeros(len(Xf) // 2)]
        w = np.zeros(3)
        w[cols] = LogisticRegression(fit_intercept=False).fit(Xf, y).coef_[0]
        return w

    single = {d: {"A_only": acc(X("test" + d)[:, 0]), "plain": acc(X("test" + d)[:, 1]),
                  "longer_wins": acc(X("test" + d)[:, 2])} for d in "AB"}
    combos = {d: {name: acc(X("test" + d) @ fit("cal" + d, cols)) for name, cols in
                  (("A_only+plain+len", [0, 1, 2]), ("own+len", [0 if d == "A" else 1, 2]), ("A_only+plain", [0, 1]))}
              for d in "AB"}
    emb = Embedder.for_project(work)
    e = {k: emb.encode([p["prompt"] for p in sets[k]]) for k in ("trainA", "trainB", "testA", "testB")}
    gate = LogisticRegression(C=1.0, max_iter=1000).fit(np.r_[e["trainA"], e["trainB"]],
                                                        np.r_[np.zeros(len(e["trainA"])), np.ones(len(e["trainB"]))])
    w_a, w_b = np.array([1.0, 0.0, 0.0]), fit("calB", [1, 2])
    gated, gate_acc, oracle = {}, {}, {}
    for d in "AB":
        pick_b = gate.predict_proba(e["test" + d])[:, 1] > 0.5
        Xt = X("test" + d)
        gated[d] = acc(np.where(pick_b, Xt @ w_b, Xt @ w_a))
        gate_acc[d] = float(np.mean(pick_b == (d == "B")))
        oracle[d] = acc(Xt @ (w_a if d == "A" else w_b))
    out = {"command": "python benchmarks/reward_flip/gate_length_probe.py",
           "n": {k: len(v) for k, v in sets.items()}, "train_seconds": seconds,
           "single_signals": single, "per_domain_combinations_fit_on_calibration": combos,
           "gate_accuracy_minilm_logreg": gate_acc, "oracle_routed": oracle, "gate_routed": gated,
           "weights_B_plain_len": w_b[1:].tolist(),
           "meets_target_oracle": bool(oracle["A"] >= 0.62 and oracle["B"] >= 0.76),
           "meets_target_gated": bool(gated["A"] >= 0.62 and gated["B"] >= 0.76),
           "total_seconds": time.perf_counter() - t_all}
    (HERE / "gate_length_probe.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("single_signals", "gate_accuracy_minilm_logreg", "oracle_routed",
                                          "gate_routed")}, indent=1))
    return out


if __name__ == "__main__":
    main()
