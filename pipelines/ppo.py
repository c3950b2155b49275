"""Stage `ppo`: outputs/sft/model + outputs/reward/model + outputs/mix/prompts.jsonl -> outputs/ppo/.

    python -m pipelines.ppo

Optimises the SFT policy against the reward model with TRL's PPOTrainer (frozen reference copy of the
SFT policy, KL penalty `ppo.kl_coef`, value model initialised from the reward model). Writes model/,
metrics.json and plots/reward.csv (per PPO step: score, kl, ...); logs them to MLflow.
"""
from __future__ import annotations

from pipelines._stage import stage


def main() -> dict:
    import pandas as pd

    from driftkeel.io import read_jsonl, write_csv, write_json
    from driftkeel.registry.tracking import stage_run
    from driftkeel.training.ppo import train_ppo

    st = stage("ppo")
    sft_dir, reward_dir = st.outputs / "sft" / "model", st.outputs / "reward" / "model"
    prompts_path = st.outputs / "mix" / "prompts.jsonl"
    for path, producer in ((sft_dir, "sft"), (reward_dir, "reward"), (prompts_path, "mix")):
        if not path.exists():
            raise SystemExit(f"ppo: {path} not found (run the {producer} stage first)")
    prompts = [row["prompt"] for row in read_jsonl(prompts_path)]

    with stage_run("ppo", st.root, st.common, st.params) as run:
        res = train_ppo(sft_dir, reward_dir, prompts, st.out, st.common, st.params)
        write_json(st.out / "metrics.json", res["metrics"])
        write_csv(st.out / "plots" / "reward.csv", pd.DataFrame(res["history"]))
        run.log_metrics(res["metrics"])
        for row in res["history"]:
            run.log_metrics({k: v for k, v in row.items() if k != "step"}, step=row["step"])
        run.log_artifact(st.out / "metrics.json")
        run.log_artifact(st.out / "plots", "plots")

    m = res["metrics"]
    print(f"ppo: {m['episodes']} episodes, score {m['first_score']:.3f} -> {m['last_score']:.3f}, "
          f"kl {m['final_kl']:.3f}, {m['train_seconds']:.0f}s -> {res['model_dir']}")
    return m


if __name__ == "__main__":
    main()
