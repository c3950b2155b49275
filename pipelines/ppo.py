"""Stage `ppo` (policy optimisation): outputs/sft/model + outputs/reward/{model,ensemble} +
outputs/mix/{prompts,train,eval}.jsonl -> outputs/ppo/.

    python -m pipelines.ppo

`rl.algorithm` picks the algorithm (params `ppo` + `rl`):
- ppo (default): TRL's PPOTrainer against the conservative reward of the reward ensemble (mean -
  rl.reward_lambda x std), KL penalty `ppo.kl_coef` towards the frozen SFT policy;
- rloo / grpo: TRL's RLOOTrainer / GRPOTrainer with the same conservative reward as reward function;
- dpo: TRL's DPOTrainer on the curated pairs (outputs/mix/train.jsonl), no reward model in the loop.
Writes model/ (the policy evaluate and register read), metrics.json and plots/reward.csv (per step:
score, kl, ... or loss for DPO); logs them to MLflow. Checkpoints in checkpoints/: a killed run resumes.
"""
from __future__ import annotations

from pipelines._stage import stage


def main() -> dict:
    import pandas as pd

    from driftkeel.config import parse_section, read_params
    from driftkeel.io import read_jsonl, write_csv, write_json
    from driftkeel.registry.tracking import stage_run
    from driftkeel.training.common import is_main_process
    from driftkeel.training.reward import ensemble_members

    st = stage("ppo")
    rl = parse_section("rl", read_params(st.root / "params.yaml").get("rl"))
    sft_dir, reward_out = st.outputs / "sft" / "model", st.outputs / "reward"
    mix = st.outputs / "mix"
    needed = [(sft_dir, "sft")] + ([(mix / "train.jsonl", "mix")] if rl.algorithm == "dpo" else
                                   [(reward_out / "model", "reward"), (mix / "prompts.jsonl", "mix")])
    for path, producer in needed:
        if not path.exists():
            raise SystemExit(f"ppo: {path} not found (run the {producer} stage first)")

    def train() -> dict:
        if rl.algorithm == "dpo":
            from driftkeel.training.dpo import train_dpo

            evals = read_jsonl(mix / "eval.jsonl") if (mix / "eval.jsonl").exists() else []
            return train_dpo(sft_dir, read_jsonl(mix / "train.jsonl"), evals, st.out, st.common, rl)
        prompts = [row["prompt"] for row in read_jsonl(mix / "prompts.jsonl")]
        members = ensemble_members(reward_out)
        if rl.algorithm == "ppo":
            from driftkeel.training.ppo import train_ppo

            return train_ppo(sft_dir, members, prompts, st.out, st.common, st.params, rl)
        from driftkeel.training.online import train_online

        return train_online(sft_dir, members, prompts, st.out, st.common, st.params, rl)

    if not is_main_process():  # another process of `accelerate launch`: train, the main one writes
        return train()["metrics"]
    with stage_run("ppo", st.root, st.common, st.params) as run:
        run.log_params({f"rl.{k}": v for k, v in rl.model_dump().items() if not isinstance(v, dict)})
        res = train()
        metrics = {**res["metrics"], "algorithm_" + rl.algorithm: 1}
        write_json(st.out / "metrics.json", metrics)
        write_csv(st.out / "plots" / "reward.csv", pd.DataFrame(res["history"]))
        run.log_metrics(metrics)
        for row in res["history"]:
            run.log_metrics({k: v for k, v in row.items() if k != "step"}, step=row["step"])
        run.log_artifact(st.out / "metrics.json")
        run.log_artifact(st.out / "plots", "plots")

    m = res["metrics"]
    if rl.algorithm == "dpo":
        print(f"ppo (dpo): {m['n_train_pairs']} pairs, {m['steps']} steps, loss {m['train_loss']:.3f}, "
              f"{m['train_seconds']:.0f}s -> {res['model_dir']}")
    else:
        print(f"ppo ({rl.algorithm}): {m['episodes']} episodes, score {m['first_score']:.3f} -> "
              f"{m['last_score']:.3f}, kl {m['final_kl']:.3f}, {m['n_reward_members']} reward member(s), "
              f"{m['train_seconds']:.0f}s -> {res['model_dir']}")
    return m


if __name__ == "__main__":
    main()
