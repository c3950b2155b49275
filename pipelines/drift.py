"""Stage `drift`: outputs/aggregate/{consensus.parquet, plots/agreement.csv} -> outputs/drift/.

    python -m pipelines.drift

Compares every batch with the reference batches: prompts (one permutation test over MMD, a domain
classifier, k-NN links and k-means cluster histograms on MiniLM embeddings, plus the clusters and LDA
topics that grew or appeared), responses (length/token statistics, response embeddings), perplexity
(when drift.perplexity_model is set), labels (agreement, flip rate), the reward model (score, margin,
ensemble disagreement, accuracy on fresh labels, McNemar) and the concept (length preference), all
calibrated together at drift.alpha per window; then decides none | collect-labels | retrain-reward |
retrain-all for the latest batch by the cost-benefit policy of drift.decision. Writes report.json,
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
    flips_path = agg / "flips.csv"
    if not consensus_path.exists():
        raise SystemExit(f"drift: {consensus_path} not found (run the aggregate stage first)")
    consensus = pd.read_parquet(consensus_path)
    agreement = pd.read_csv(agreement_path) if agreement_path.exists() else None
    flips = pd.read_csv(flips_path) if flips_path.exists() else None

    embedder = Embedder.for_project(st.root)
    pair_backend = HASHING if st.params.surrogate_features == "hashing" else MINILM
    pair_embedder = Embedder.for_project(st.root, backend=pair_backend)
    output_embedder = (None if st.params.output_features == "none" else Embedder.for_project(
        st.root, backend=HASHING if st.params.output_features == "hashing" else MINILM))
    if st.params.perplexity_model:
        from driftkeel.drift.perplexity import add_perplexity

        consensus = add_perplexity(consensus, st.root / st.params.perplexity_model, st.params.max_window)
    report, plot_data = analyse_stream(consensus, agreement, st.params, embedder, seed=st.common.seed,
                                       pair_embedder=pair_embedder, output_embedder=output_embedder, flips=flips)
    report["inputs"] = {"consensus": str(consensus_path.relative_to(st.root)), "n_comparisons": len(consensus),
                        "agreement": str(agreement_path.relative_to(st.root)) if agreement is not None else None,
                        "flips": str(flips_path.relative_to(st.root)) if flips is not None else None,
                        "embeddings_computed": embedder.n_computed, "embeddings_cached": embedder.n_cached}
    written = write_outputs(st.out, report, plot_data)

    with stage_run("drift", st.root, st.common, st.params) as run:
        run.log_metrics(written["metrics"])
        for p in written["paths"].values():
            run.log_artifact(p, "plots" if p.parent.name == "plots" else None)
        for row in report["history"]:
            run.log_metrics({k: v for k, v in row.items() if k in ("mmd2", "classifier_auc", "p_value",
                                                                   "output_p_value", "perplexity_p_value",
                                                                   "label_p_value", "reward_p_value",
                                                                   "concept_p_value", "n_alarms")
                             and v is not None}, step=int(row["batch"]))

    d = report["decision"]
    print(f"drift: current batch {report['current_batch']} status={report['status']} "
          f"decision={d['action']} signals={d['signals']} -> {st.out}")
    return written["metrics"]


if __name__ == "__main__":
    main()
