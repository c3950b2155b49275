"""Stage `mix`: outputs/aggregate/consensus.parquet -> outputs/mix/ (curriculum training mix with replay).

    python -m pipelines.mix

New pairs of the last `mix.new_batches` batches + a seeded replay of older ones (`mix.replay_fraction`
of the mix, or from the drift level with `mix.replay_from_drift`), `mix.eval_fraction` held out by
prompt_id, per-pair difficulty (confidence, cross-fitted surrogate reward, close flag), pairs of new
clusters of the drift report up-weighted (`mix.new_cluster_weight`), train in curriculum order
(`mix.order`), optional synthetic pairs (`mix.synthetic`, train only). Writes train.jsonl, eval.jsonl,
prompts.jsonl (distinct prompts of the new batches, for PPO), hf/ (the same train / eval with the
curriculum columns, `datasets` save_to_disk), manifest.json, metrics.json, plots/composition.csv and
plots/curriculum.csv; logs them to MLflow.
"""
from __future__ import annotations

from pipelines._stage import stage


def _save_hf(path, train, evl) -> None:
    from datasets import Dataset, DatasetDict, disable_progress_bars

    from driftkeel.io import atomic_dir

    disable_progress_bars()

    def clean(df):
        df = df.reset_index(drop=True).copy()
        for c in df.columns:
            if df[c].dtype == object:
                df[c] = df[c].astype(str)
        return Dataset.from_pandas(df, preserve_index=False)

    with atomic_dir(path) as tmp:
        DatasetDict({"train": clean(train), "eval": clean(evl)}).save_to_disk(str(tmp))


HF_OFF_NOTE = ("mix.hf_datasets is false in params.yaml: the mix was not saved as HF datasets. The same rows are in\n"
               "../train.jsonl and ../eval.jsonl; set mix.hf_datasets: true to get datasets.load_from_disk here.\n")


def _hf_off_note(path) -> None:
    """hf/ is a declared DVC out, so with the datasets off it still exists: it holds only this note
    (never a stale dataset from an earlier run with the option on)."""
    from driftkeel.io import atomic_dir

    with atomic_dir(path) as tmp:
        (tmp / "NOT_SAVED.txt").write_text(HF_OFF_NOTE, encoding="utf-8")


def main() -> dict:
    import hashlib

    import pandas as pd

    from driftkeel.active import read_pool
    from driftkeel.curriculum import PAIR_FIELDS, build_mix
    from driftkeel.embeddings import HASHING, Embedder
    from driftkeel.io import read_json, read_jsonl, write_csv, write_json, write_jsonl
    from driftkeel.registry.tracking import stage_run

    st = stage("mix")
    consensus_path = st.outputs / "aggregate" / "consensus.parquet"
    if not consensus_path.exists():
        raise SystemExit(f"mix: {consensus_path} not found (run the aggregate stage first)")
    report_path, decision_path = st.outputs / "drift" / "report.json", st.outputs / "drift" / "decision.json"
    report = read_json(report_path) if report_path.exists() else None
    level = read_json(decision_path).get("level") if decision_path.exists() else None
    queue = st.outputs / "select" / "queue.jsonl"
    queued = {r.get("pair_id") for r in read_jsonl(queue)} if queue.exists() else set()
    pool_path = st.data / "pool" / "pool.jsonl"
    pool, n_pool_unreadable = (read_pool(pool_path) if st.params.synthetic and pool_path.exists() else (None, 0))
    embedder = Embedder.for_project(st.root, backend=HASHING)
    mix = build_mix(pd.read_parquet(consensus_path), st.params, seed=st.common.seed, embedder=embedder,
                    drift_report=report, drift_level=level, pool=pool, queued=queued)

    out = st.out
    files = {"train.jsonl": mix.train[PAIR_FIELDS], "eval.jsonl": mix.eval[PAIR_FIELDS],
             "prompts.jsonl": mix.prompts[["prompt_id", "prompt"]]}
    for name, df in files.items():
        write_jsonl(out / name, df.to_dict("records"))
    if st.params.hf_datasets:
        _save_hf(out / "hf", mix.train, mix.eval)
    else:
        _hf_off_note(out / "hf")
    write_csv(out / "plots" / "composition.csv", mix.composition)
    cur = (mix.train.groupby(["phase", "source"]).agg(n=("pair_id", "size"), mean_difficulty=("difficulty", "mean"),
                                                      n_close=("close", "sum"), mean_weight=("weight", "mean"))
           .reset_index() if len(mix.train) else pd.DataFrame(columns=["phase", "source", "n", "mean_difficulty"]))
    write_csv(out / "plots" / "curriculum.csv", cur)
    if pool is not None:  # the select stage quarantines these lines with their reasons (same pool file)
        mix.metrics["synthetic_pool_unreadable_lines"] = n_pool_unreadable
    write_json(out / "metrics.json", mix.metrics)
    manifest = {
        "params": st.params.model_dump(), "seed": st.common.seed,
        "inputs": {"consensus": str(consensus_path.relative_to(st.root)),
                   "consensus_sha256": hashlib.sha256(consensus_path.read_bytes()).hexdigest(),
                   "drift_report": str(report_path.relative_to(st.root)) if report else None,
                   "drift_level": level},
        "files": {name: {"rows": int(len(df)), "sha256": hashlib.sha256((out / name).read_bytes()).hexdigest()}
                  for name, df in files.items()},
        "hf_datasets": "hf/ (datasets.load_from_disk: train / eval with difficulty, close, phase, region, "
                       "source, p_chosen)" if st.params.hf_datasets else None,
        "order": f"train: {mix.info['order']} by difficulty (curriculum/difficulty.py), seeded tie-break; "
                 "eval: by pair_id",
        "replay": {"fraction": mix.info["replay_fraction"], "from": mix.info["replay_fraction_from"]},
        "synthetic": mix.info["synthetic"],
        "split": "eval by prompt_id groups (no prompt in both train and eval); synthetic pairs never in eval",
        "labelling_queue": {"path": str(queue.relative_to(st.root)), "note": "unlabelled; not mixed in",
                            "rows": len(queued)} if queue.exists() else None,
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
    print(f"mix: {m['n_new']} new + {m['n_replay']} replay + {m['n_synthetic']} synthetic -> {m['n_train']} train / "
          f"{m['n_eval']} eval, {m['n_prompts_new']} PPO prompts -> {out}")
    return m


if __name__ == "__main__":
    main()
