"""Evaluate stage: the challenger (this run's reward model and policy) against the champion on the
same fixed eval sets, and the promotion gate.

    python -m pipelines.evaluate

Reward model: accuracy, precision/recall/F1, calibration error, MRR, per slice (pre/post drift, topic),
and against the champion reward model (new-slice drop, forgetting on the pre-drift slice). Policy:
reward and win rate against the champion policy (or the SFT model when there is none) under the new
reward model, and under the simulator's true utility when data/ground_truth/ exists (ORACLE, labelled).
Reads `common`, `evaluate` and `register.{policy,reward}_model_name` (whose champions are the baseline).
Also the reward model's agreement with the human consensus per stream batch (plots/reward_by_batch.csv).
Writes outputs/evaluate/{verdict.json, metrics.json, samples.jsonl, plots/}.
"""
from __future__ import annotations

from pipelines._stage import stage

import pandas as pd

from driftkeel.config import parse_section, read_params
from driftkeel.evaluation.evaluate import accuracy_by_batch, run_evaluation
from driftkeel.io import read_jsonl, write_csv, write_json, write_jsonl
from driftkeel.registry.tracking import stage_run


def main() -> dict:
    from driftkeel.training.reward import ensemble_members

    st = stage("evaluate")
    register = parse_section("register", read_params(st.root / "params.yaml").get("register"))
    models = st.outputs
    with stage_run("evaluate", st.root, st.common, st.params) as sr:
        result = run_evaluation(
            params=st.params, reward_dir=models / "reward" / "model",
            challenger_dir=models / "ppo" / "model", sft_dir=models / "sft" / "model",
            pairs_path=st.data / "eval" / "pairs.jsonl", prompts_path=st.data / "eval" / "prompts.jsonl",
            policy_model_name=register.policy_model_name, reward_model_name=register.reward_model_name,
            reward_members=ensemble_members(models / "reward"), data_dir=st.data,
            max_new_tokens=st.common.max_response_tokens, seed=st.common.seed)
        out = st.out
        write_csv(out / "plots" / "slices.csv", result.slice_table)
        write_csv(out / "plots" / "policy_slices.csv", result.policy_table)
        write_csv(out / "plots" / "policy_reward.csv", pd.DataFrame(
            [{"prompt_id": s["prompt_id"], "slice": s["slice"], "baseline_reward": s["baseline_reward"],
              "challenger_reward": s["challenger_reward"]} for s in result.samples]))
        consensus_path = st.outputs / "aggregate" / "consensus.parquet"
        if consensus_path.exists():  # reward accuracy per stream batch against the human consensus
            train = read_jsonl(st.outputs / "mix" / "train.jsonl") if (st.outputs / "mix" / "train.jsonl").exists() else []
            write_csv(out / "plots" / "reward_by_batch.csv", accuracy_by_batch(
                models / "reward" / "model", pd.read_parquet(consensus_path),
                {int(r["batch"]) for r in train if r.get("batch") is not None}))
        write_jsonl(out / "samples.jsonl", result.samples)
        write_json(out / "metrics.json", result.metrics)
        write_json(out / "verdict.json", result.verdict)
        sr.log_metrics(result.metrics)
        for path in ("verdict.json", "samples.jsonl", "plots"):
            sr.log_artifact(out / path, "plots" if path == "plots" else None)
    verdict, m = result.verdict, result.metrics
    print(f"evaluate: gate {'PASSED' if verdict['passed'] else 'FAILED'} "
          f"(baseline: {verdict['baseline']['source']}); reward_accuracy {m['reward_accuracy']:.3f}, "
          f"policy reward challenger {m['challenger_mean_reward']:.3f} vs baseline "
          f"{m['baseline_mean_reward']:.3f}, win rate {m['policy_win_rate']:.3f}")
    if verdict["oracle"]["available"]:
        print(f"  {verdict['oracle']['label']}: true win rate {m['true_win_rate']:.3f}, true utility "
              f"challenger {m['challenger_true_utility']:.3f} vs baseline {m['baseline_true_utility']:.3f}")
    for check in verdict["checks"]:
        print(f"  [{'pass' if check['passed'] else 'FAIL'}] {check['reason']}")
    return verdict


if __name__ == "__main__":
    main()
