"""Stage `mix`: outputs/aggregate/consensus.parquet -> outputs/mix/ (training mix with replay).

    python -m pipelines.mix

New pairs of the last `mix.new_batches` batches + a seeded replay of older ones (`mix.replay_fraction`
of the mix), `mix.eval_fraction` held out by prompt_id, train ordered easy-to-hard by confidence.
Writes train.jsonl, eval.jsonl, prompts.jsonl (distinct prompts of the new batches, for PPO),
manifest.json, metrics.json and plots/composition.csv; logs them to MLflow.
"""
from __future__ import annotations

from pipelines._stage import stage


def main() -> dict:
    import hashlib

    import pandas as pd

    from driftkeel.curriculum import PAIR_FIELDS, build_mix
    from driftkeel.io import write_csv, write_json, write_jsonl
    from driftkeel.registry.tracking import stage_run

    st = stage("mix")
    consensus_path = st.outputs / "aggregate" / "consensus.parquet"
    if not consensus_path.exists():
        raise SystemExit(f"mix: {consensus_path} not found (run the aggregate stage first)")
    mix = build_mix(pd.read_parquet(consensus_path), st.params, seed=st.common.seed)

    out = st.out
    files = {"train.jsonl": mix.train[PAIR_FIELDS], "eval.jsonl": mix.eval[PAIR_FIELDS],
             "prompts.jsonl": mix.prompts[["prompt_id", "prompt"]]}
    for name, df in files.items():
        write_jsonl(out / name, df.to_dict("records"))
    write_csv(out / "plots" / "composition.csv", mix.composition)
    write_json(out / "metrics.json", mix.metrics)
    queue = st.outputs / "select" / "queue.jsonl"
    manifest = {
        "params": st.params.model_dump(), "seed": st.common.seed,
        "inputs": {"consensus": str(consensus_path.relative_to(st.root)),
                   "consensus_sha256": hashlib.sha256(consensus_path.read_bytes()).hexdigest()},
        "files": {name: {"rows": int(len(df)), "sha256": hashlib.sha256((out / name).read_bytes()).hexdigest()}
                  for name, df in files.items()},
        "order": "train: descending confidence (easy to hard), seeded tie-break; eval: by pair_id",
        "split": "eval by prompt_id groups (no prompt in both train and eval)",
        "labelling_queue": {"path": str(queue.relative_to(st.root)), "note": "unlabelled; not mixed in",
                            "rows": sum(1 for _ in queue.open(encoding="utf-8"))} if queue.exists() else None,
        "metrics": mix.metrics, "notes": mix.notes,
    }
    write_json(out / "manifest.json", manifest)

    with stage_run("mix", st.root, st.common, st.params) as run:
        run.log_metrics(mix.metrics)
        for name in ("manifest.json", "metrics.json", "plots"):
            run.log_artifact(out / name, "plots" if name == "plots" else None)

    for note in mix.notes:
        print(f"mix: {note}")
    m = mix.metrics
    print(f"mix: {m['n_new']} new + {m['n_replay']} replay -> {m['n_train']} train / {m['n_eval']} eval, "
          f"{m['n_prompts_new']} PPO prompts -> {out}")
    return m


if __name__ == "__main__":
    main()
