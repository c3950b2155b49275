"""Stage `validate`: data/stream/batch_*.jsonl -> outputs/validate/ (clean judgements + quarantine).

    python -m pipelines.validate

Writes clean.parquet, quarantine.jsonl, metrics.json, plots/batches.csv, gx_suite.json and
gx_results.json; logs the metrics and those files to MLflow. Exits non-zero (after writing everything)
when more than `validate.max_quarantine_fraction` of the rows are quarantined.
"""
from __future__ import annotations

from pipelines._stage import stage


def main() -> dict:
    from driftkeel.data.schemas import stream_files
    from driftkeel.io import write_csv, write_json, write_jsonl, write_parquet
    from driftkeel.registry.tracking import stage_run
    from driftkeel.validation import read_annotators, read_golden, validate_stream
    from driftkeel.validation.validate import DATA_REJECTED

    st = stage("validate")
    files = stream_files(st.data)
    if not files:
        raise SystemExit(f"validate: no stream files in {st.data / 'stream'} (expected batch_*.jsonl)")
    res = validate_stream(files, read_golden(st.data / "golden.jsonl"),
                          read_annotators(st.data / "annotators.jsonl"), st.params, relative_to=st.root)

    out = st.out
    write_parquet(out / "clean.parquet", res.clean)
    write_jsonl(out / "quarantine.jsonl", res.quarantine)
    write_json(out / "gx_suite.json", res.suite)
    write_json(out / "gx_results.json", res.expectations)
    write_csv(out / "plots" / "batches.csv", res.batches)
    write_json(out / "metrics.json", res.metrics)

    with stage_run("validate", st.root, st.common, st.params) as run:
        run.log_metrics(res.metrics)
        for name in ("quarantine.jsonl", "gx_suite.json", "gx_results.json", "metrics.json", "plots"):
            run.log_artifact(out / name, "plots" if name == "plots" else None)

    m = res.metrics
    print(f"validate: {m['rows_in']} rows in, {m['rows_clean']} clean, {m['rows_quarantined']} quarantined, "
          f"{m['rows_blank']} blank lines skipped -> {out}")
    if not m["rows_in"]:
        raise SystemExit(f"{DATA_REJECTED} the stream files hold no rows (only blank lines: {m['rows_blank']}); "
                         f"nothing to validate in {st.data / 'stream'}")
    share = m["rows_quarantined"] / m["rows_in"]
    if share > st.params.max_quarantine_fraction:
        raise SystemExit(f"{DATA_REJECTED} {share:.1%} of rows quarantined (> validate.max_quarantine_fraction="
                         f"{st.params.max_quarantine_fraction}); see {out / 'quarantine.jsonl'}")
    return m


if __name__ == "__main__":
    main()
