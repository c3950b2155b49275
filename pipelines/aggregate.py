"""Stage `aggregate`: outputs/validate/clean.parquet -> outputs/aggregate/ (consensus labels, agreement).

    python -m pipelines.aggregate

Writes consensus.parquet, annotators.csv, review_queue.jsonl, metrics.json and plots/agreement.csv
(per batch: Krippendorff's alpha, Fleiss' kappa, golden accuracy; the drift stage reads it as a
label-drift signal); logs the metrics and those files to MLflow.
"""
from __future__ import annotations

from pipelines._stage import stage


def main() -> dict:
    import pandas as pd

    from driftkeel.annotation import aggregate_judgements
    from driftkeel.io import write_csv, write_json, write_jsonl, write_parquet
    from driftkeel.registry.tracking import stage_run
    from driftkeel.validation import read_golden

    st = stage("aggregate")
    clean_path = st.outputs / "validate" / "clean.parquet"
    if not clean_path.exists():
        raise SystemExit(f"aggregate: {clean_path} not found; run `python pipelines/validate.py` first")
    res = aggregate_judgements(pd.read_parquet(clean_path), read_golden(st.data / "golden.jsonl"), st.params)

    out = st.out
    write_parquet(out / "consensus.parquet", res.consensus)
    write_csv(out / "annotators.csv", res.annotators)
    write_jsonl(out / "review_queue.jsonl", res.review_queue)
    write_csv(out / "plots" / "agreement.csv", res.agreement)
    write_json(out / "metrics.json", res.metrics)

    with stage_run("aggregate", st.root, st.common, st.params) as run:
        run.log_metrics(res.metrics)
        for name in ("annotators.csv", "review_queue.jsonl", "metrics.json", "plots"):
            run.log_artifact(out / name, "plots" if name == "plots" else None)

    m = res.metrics
    print(f"aggregate: {m['n_comparisons']} comparisons, alpha={m['krippendorff_alpha']:.3f}, "
          f"{m['n_review']} to review, {m['n_ties']} ties -> {out}")
    return m


if __name__ == "__main__":
    main()
