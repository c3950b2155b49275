"""Stage `reward`: outputs/mix/{train,eval}.jsonl + outputs/sft/model -> outputs/reward/.

    python -m pipelines.reward

Trains `reward.ensemble_size` reward models with TRL's RewardTrainer (Bradley-Terry loss weighted by
each pair's `weight`, optional margins from outputs/aggregate/training_weights.parquet), initialised
from the SFT model (`reward.init_from: sft`) or a Hub id / local path; each is temperature-calibrated
on outputs/mix/eval.jsonl. Writes model/ (member 0, the registered one), ensemble/ (members 1.. and
ensemble.json), metrics.json (incl. eval_accuracy, temperature, ensemble_*) and plots/loss.csv; logs
params, metrics and the loss curve to MLflow. Checkpoints in checkpoints/: a killed run resumes.
"""
from __future__ import annotations

from pipelines._stage import stage


def main() -> dict:
    import pandas as pd

    from driftkeel.io import read_jsonl, write_csv, write_json
    from driftkeel.registry.tracking import stage_run
    from driftkeel.training.common import is_main_process
    from driftkeel.training.reward import SFT, read_margins, resolve_init, train_reward

    st = stage("reward")
    mix, sft_dir = st.outputs / "mix", st.outputs / "sft" / "model"
    for path in (mix / "train.jsonl", mix / "eval.jsonl"):
        if not path.exists():
            raise SystemExit(f"reward: {path} not found (run the mix stage first)")
    if st.params.init_from == SFT and not sft_dir.exists():
        raise SystemExit(f"reward: {sft_dir} not found (run the sft stage first)")
    train_pairs, evals = read_jsonl(mix / "train.jsonl"), read_jsonl(mix / "eval.jsonl")
    margins = {}
    if st.params.margin_scale > 0:
        path = st.outputs / "aggregate" / "training_weights.parquet"
        margins = read_margins(path)
        if not margins:
            raise SystemExit(f"reward: reward.margin_scale={st.params.margin_scale} but {path} holds no margins "
                             "(run the aggregate stage, or set reward.margin_scale: 0)")

    def train():
        return train_reward(train_pairs, evals, resolve_init(st.params.init_from, sft_dir), st.out, st.common,
                            st.params, margins=margins)

    if not is_main_process():  # another process of `accelerate launch`: train, the main one writes
        return train()["metrics"]
    with stage_run("reward", st.root, st.common, st.params) as run:
        res = train()
        write_json(st.out / "metrics.json", res["metrics"])
        curve = pd.DataFrame(res["history"], columns=["step", "loss"])
        if res["eval_history"]:
            curve = curve.merge(pd.DataFrame(res["eval_history"]), on="step", how="outer")
        write_csv(st.out / "plots" / "loss.csv", curve.sort_values("step"))
        run.log_metrics(res["metrics"])
        for row in res["history"] + res["eval_history"]:
            run.log_metrics({k: v for k, v in row.items() if k != "step"}, step=row["step"])
        run.log_artifact(st.out / "metrics.json")
        run.log_artifact(st.out / "ensemble" / "ensemble.json")
        run.log_artifact(st.out / "plots", "plots")

    m = res["metrics"]
    print(f"reward: {m['ensemble_size']} member(s), {m['n_train_pairs']} pairs, {m['steps']} steps, eval "
          f"accuracy {m['eval_accuracy']:.3f} (ensemble {m.get('ensemble_eval_accuracy', float('nan')):.3f}), "
          f"T={m['temperature']:.2f}, {m['train_seconds_all_members']:.0f}s -> {res['model_dir']}")
    return m


if __name__ == "__main__":
    main()
