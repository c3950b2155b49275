"""Stage `drift`: outputs/aggregate/{consensus.parquet, plots/agreement.csv} -> outputs/drift/.

    python -m pipelines.drift

Compares every batch with the reference batches (prompt MMD, response-length KS, annotator agreement,
surrogate-reward McNemar, length-preference Fisher; Bonferroni at drift.alpha per window) and decides
none | collect-labels | retrain-reward | retrain-all for the latest batch. Writes report.json,
report.html (self-contained), decision.json, metrics.json and plots/history.csv; logs them to MLflow.
Embeddings are cached in .cache/embeddings.sqlite.
"""
from __future__ import annotations

from pipelines._stage import stage


def main() -> dict:
    import pandas as pd

    from driftkeel.drift.monitor import analyse_stream
    from driftkeel.drift.report import write_outputs
    from driftkeel.embeddings import HASHING, MINILM, Embedder
    from driftkeel.registry.tracking import stage_run

    st = stage("drift")
    agg = st.outputs / "aggregate"
    consensus_path, agreement_path = agg / "consensus.parquet", agg / "plots" / "agreement.csv"
    if not consensus_path.exists():
        raise SystemExit(f"drift: {consensus_path} not found (run the aggregate stage first)")
    consensus = pd.read_parquet(consensus_path)
    agreement = pd.read_csv(agreement_path) if agreement_path.exists() else None

    embedder = Embedder.for_project(st.root)
    pair_backend = HASHING if st.params.surrogate_features == "hashing" else MINILM
    pair_embedder = Embedder.for_project(st.root, backend=pair_backend)
    report, plot_data = analyse_stream(consensus, agreement, st.params, embedder, seed=st.common.seed,
                                       pair_embedder=pair_embedder)
    report["inputs"] = {"consensus": str(consensus_path.relative_to(st.root)), "n_comparisons": len(consensus),
                        "agreement": str(agreement_path.relative_to(st.root)) if agreement is not None else None,
                        "embeddings_computed": embedder.n_computed, "embeddings_cached": embedder.n_cached}
    written = write_outputs(st.out, report, plot_data)

    with stage_run("drift", st.root, st.common, st.params) as run:
        run.log_metrics(written["metrics"])
        for p in written["paths"].values():
            run.log_artifact(p, "plots" if p.parent.name == "plots" else None)
        for row in report["history"]:
            run.log_metrics({k: v for k, v in row.items() if k in ("mmd2", "p_value", "output_p_value",
                                                                   "label_p_value", "reward_p_value", "n_alarms")
                             and v is not None}, step=int(row["batch"]))

    d = report["decision"]
    print(f"drift: current batch {report['current_batch']} status={report['status']} "
          f"decision={d['action']} signals={d['signals']} -> {st.out}")
    return written["metrics"]


if __name__ == "__main__":
    main()
