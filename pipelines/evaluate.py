"""Evaluate stage: reward-model accuracy per slice, policy reward against the champion (or the SFT
model when there is none) under the new reward model, and the promotion gate.

    python -m pipelines.evaluate

Reads `common`, `evaluate` and `register.policy_model_name` (the registered policy whose champion is
the baseline). Writes outputs/evaluate/{verdict.json, metrics.json, samples.jsonl, plots/}.
"""
from __future__ import annotations

from pipelines._stage import stage

import pandas as pd

from driftkeel.config import parse_section, read_params
from driftkeel.evaluation.evaluate import run_evaluation
from driftkeel.io import write_csv, write_json, write_jsonl
from driftkeel.registry.tracking import stage_run


def main() -> dict:
    st = stage("evaluate")
    register = parse_section("register", read_params(st.root / "params.yaml").get("register"))
    models = st.outputs
    with stage_run("evaluate", st.root, st.common, st.params) as sr:
        result = run_evaluation(
            params=st.params, reward_dir=models / "reward" / "model",
            challenger_dir=models / "ppo" / "model", sft_dir=models / "sft" / "model",
            pairs_path=st.data / "eval" / "pairs.jsonl", prompts_path=st.data / "eval" / "prompts.jsonl",
            policy_model_name=register.policy_model_name,
            max_new_tokens=st.common.max_response_tokens, seed=st.common.seed)
        out = st.out
        write_csv(out / "plots" / "slices.csv", result.slice_table)
        write_csv(out / "plots" / "policy_reward.csv", pd.DataFrame(
            [{"prompt_id": s["prompt_id"], "slice": s["slice"], "baseline_reward": s["baseline_reward"],
              "challenger_reward": s["challenger_reward"]} for s in result.samples]))
        write_jsonl(out / "samples.jsonl", result.samples)
        write_json(out / "metrics.json", result.metrics)
        write_json(out / "verdict.json", result.verdict)
        sr.log_metrics(result.metrics)
        for path in ("verdict.json", "samples.jsonl", "plots"):
            sr.log_artifact(out / path, "plots" if path == "plots" else None)
    verdict = result.verdict
    print(f"evaluate: gate {'PASSED' if verdict['passed'] else 'FAILED'} "
          f"(baseline: {verdict['baseline']['source']}); reward_accuracy "
          f"{result.metrics['reward_accuracy']:.3f}, policy reward challenger "
          f"{result.metrics['challenger_mean_reward']:.3f} vs baseline "
          f"{result.metrics['baseline_mean_reward']:.3f}")
    for reason in verdict["reasons"]:
        print(f"  - {reason}")
    return verdict


if __name__ == "__main__":
    main()
