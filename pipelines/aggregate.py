"""Stage `aggregate`: outputs/validate/clean.parquet -> outputs/aggregate/ (consensus, calibration, routing).

    python -m pipelines.aggregate

Writes (see src/driftkeel/annotation/aggregate.py for every column):
- consensus.parquet          one row per comparison, CONSENSUS_COLUMNS (read by drift and mix)
- training_weights.parquet   per comparison: chosen side, P(chosen), weight, margin, hard, review flags
- annotators.csv             per annotator: accuracy, weight with interval, bias, speed, flags
- review_queue.jsonl         comparisons for expert review now, with their reasons and review_id
- review_log.jsonl           append-only history of the queue (queued / cleared events; DVC persist out)
- audit.parquet              per judgement: the weights and evidence it entered the consensus with
- flips.csv                  re-annotated pairs and whether their consensus reversed
- metrics.json               flat scalars (also logged to MLflow)
- plots/agreement.csv        per batch: Krippendorff's alpha, Fleiss' kappa, golden accuracy (read by drift)
- plots/label_drift.csv      per batch: the same with bootstrap intervals, flips, agreement_drop
- plots/annotator_timeseries.csv  per annotator and batch: accuracy, agreement, speed
"""
from __future__ import annotations

from pipelines._stage import stage


def main() -> dict:
    import pandas as pd

    from driftkeel.annotation import aggregate_judgements, review_log
    from driftkeel.io import write_csv, write_json, write_jsonl, write_parquet
    from driftkeel.registry.tracking import stage_run
    from driftkeel.validation import read_golden

    st = stage("aggregate")
    clean_path = st.outputs / "validate" / "clean.parquet"
    if not clean_path.exists():
        raise SystemExit(f"aggregate: {clean_path} not found; run `python -m pipelines.validate` first")
    try:
        res = aggregate_judgements(pd.read_parquet(clean_path), read_golden(st.data / "golden.jsonl"), st.params,
                                   seed=st.common.seed)
    except ValueError as exc:   # e.g. no clean judgements: a message, not a traceback
        raise SystemExit(f"aggregate: {exc}") from None

    out = st.out
    clean_batches = int(pd.read_parquet(clean_path, columns=["batch"])["batch"].nunique())
    res.metrics.update(review_log.append(out / "review_log.jsonl", res.review_queue, clean_batches))
    write_parquet(out / "consensus.parquet", res.consensus)
    write_parquet(out / "training_weights.parquet", res.training)
    write_csv(out / "annotators.csv", res.annotators)
    write_jsonl(out / "review_queue.jsonl", res.review_queue)
    write_parquet(out / "audit.parquet", res.audit)
    write_csv(out / "flips.csv", res.flips)
    write_csv(out / "plots" / "agreement.csv", res.agreement)
    write_csv(out / "plots" / "label_drift.csv", res.label_drift)
    write_csv(out / "plots" / "annotator_timeseries.csv", res.timeseries)
    write_json(out / "metrics.json", res.metrics)

    with stage_run("aggregate", st.root, st.common, st.params) as run:
        run.log_metrics(res.metrics)
        for name in ("annotators.csv", "review_queue.jsonl", "flips.csv", "metrics.json", "plots"):
            run.log_artifact(out / name, "plots" if name == "plots" else None)

    m = res.metrics
    print(f"aggregate ({st.params.method}): {m['n_comparisons']} comparisons, alpha={m['krippendorff_alpha']:.3f}, "
          f"{m['n_review']} to review, {m['n_hard']} hard, {m['n_annotators_low_weight']} low-weight annotators, "
          f"{m['aggregate_seconds']:.1f} s -> {out}")
    return m


if __name__ == "__main__":
    main()
