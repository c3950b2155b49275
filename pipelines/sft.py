"""Stage `sft`: data/sft/demos.jsonl (+ outputs/mix/train.jsonl as tokenizer text) -> outputs/sft/.

    python -m pipelines.sft

Fine-tunes the policy on the demonstrations with TRL's SFTTrainer. `sft.model_name_or_path: tiny`
builds a small GPT-2 from `common.tiny_model` with a BPE tokenizer trained on the demos and the mix
text; a Hub id or a local path is fine-tuned as is (`sft.lora` for LoRA adapters). Writes model/
(safetensors + tokenizer), metrics.json and plots/loss.csv; logs params, metrics and the loss curve to
MLflow. Checkpoints in checkpoints/: a killed run resumes. Several GPUs:
`accelerate launch --config_file configs/accelerate/ddp.yaml -m pipelines.sft` (docs/training.md).
"""
from __future__ import annotations

from pipelines._stage import stage


def main() -> dict:
    import pandas as pd

    from driftkeel.io import read_jsonl, write_csv, write_json
    from driftkeel.registry.tracking import stage_run
    from driftkeel.training.common import is_main_process
    from driftkeel.training.sft import train_sft

    st = stage("sft")
    demos_path, mix_path = st.data / "sft" / "demos.jsonl", st.outputs / "mix" / "train.jsonl"
    if not demos_path.exists():
        raise SystemExit(f"sft: {demos_path} not found (run `driftkeel demo-data` or add demonstrations)")
    demos = read_jsonl(demos_path)
    mix = read_jsonl(mix_path) if mix_path.exists() else []
    texts = [t for row in mix for t in (row["prompt"], row["chosen"], row["rejected"])]

    if not is_main_process():  # another process of `accelerate launch`: train, the main one writes
        return train_sft(demos, texts, st.out, st.common, st.params)["metrics"]
    with stage_run("sft", st.root, st.common, st.params) as run:
        res = train_sft(demos, texts, st.out, st.common, st.params)
        write_json(st.out / "metrics.json", res["metrics"])
        write_csv(st.out / "plots" / "loss.csv", pd.DataFrame(res["history"], columns=["step", "loss"]))
        run.log_metrics(res["metrics"])
        for row in res["history"]:
            run.log_metrics({"loss": row["loss"]}, step=row["step"])
        run.log_artifact(st.out / "metrics.json")
        run.log_artifact(st.out / "plots", "plots")

    m = res["metrics"]
    print(f"sft: {m['n_examples']} demos, {m['steps']} steps, loss {m['final_loss']:.3f}, "
          f"{m['train_seconds']:.0f}s -> {res['model_dir']}")
    return m


if __name__ == "__main__":
    main()
