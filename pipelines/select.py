"""Stage `select`: data/pool/pool.jsonl + outputs/aggregate/consensus.parquet -> outputs/select/.

    python -m pipelines.select

Fits a surrogate Bradley-Terry reward ensemble (`select.n_members`, on `select.surrogate_features`:
hashed bag-of-words or MiniLM) on the consensus labels, calibrates it on held-out labels, scores every
pool pair with `select.strategy` (bald | variance | least_confidence | margin | entropy | random) times
the drift prior (clusters outputs/drift/report.json flagged as new or grown) and queues a batch of
`select.k` (diversity `select.diversity`, no near-duplicates) for annotation, each with its reason.
Writes queue.jsonl (+ the Label Studio and Argilla imports), quarantine.jsonl (pool rows
not used, with the reason), metrics.json, notes.json, plots/uncertainty.csv and plots/label_budget.csv (the
surrogate's held-out accuracy vs labels used: the label-budget curve); logs them to MLflow.
"""
from __future__ import annotations

from pipelines._stage import stage


def main() -> dict:
    import pandas as pd

    from driftkeel.active import read_pool, select, write_exports
    from driftkeel.embeddings import HASHING, MINILM, Embedder
    from driftkeel.io import read_json, write_csv, write_json, write_jsonl
    from driftkeel.registry.tracking import stage_run

    st = stage("select")
    pool_path = st.data / "pool" / "pool.jsonl"
    consensus_path = st.outputs / "aggregate" / "consensus.parquet"
    if not pool_path.exists():
        raise SystemExit(f"select: {pool_path} not found")
    bad_lines: list[dict] = []      # unreadable lines: quarantined with their reason, never just counted
    pool, n_bad, lines = read_pool(pool_path, with_lines=True, bad_lines=bad_lines)
    consensus = pd.read_parquet(consensus_path) if consensus_path.exists() else None
    report_path = st.outputs / "drift" / "report.json"
    report = read_json(report_path) if report_path.exists() else None
    backend = HASHING if st.params.surrogate_features == "hashing" else MINILM
    embedder = Embedder.for_project(st.root, backend=backend)
    sel = select(pool, consensus, st.params, embedder, seed=st.common.seed, drift_report=report, lines=lines)

    quarantine = sorted(bad_lines + sel.quarantine, key=lambda q: q["line"])
    metrics = {**sel.metrics, "n_skipped_invalid_json": n_bad, "n_quarantined": len(quarantine),
               "n_pool_lines": sel.metrics["n_pool_rows"] + n_bad}
    # every non-blank pool line: usable, quarantined (with a reason) or already labelled
    if metrics["n_pool_lines"] != (metrics["n_pool_usable"] + metrics["n_quarantined"]
                                   + metrics.get("n_skipped_already_labelled", 0)):
        raise SystemExit(f"select: pool counts do not add up: {metrics}")
    decision_path = st.outputs / "drift" / "decision.json"
    if decision_path.exists():
        metrics["drift_decision_level"] = read_json(decision_path).get("level")
    out = st.out
    exports = write_exports(out, sel.queue, {"jsonl", "label_studio", "argilla"})
    write_jsonl(out / "quarantine.jsonl", quarantine)
    write_csv(out / "plots" / "uncertainty.csv", sel.scores)
    write_csv(out / "plots" / "label_budget.csv",
              pd.DataFrame(sel.budget_curve, columns=["labels", "heldout_accuracy", "n_heldout",
                                                      "heldout_accuracy_new", "n_heldout_new"]))
    write_json(out / "metrics.json", metrics)
    write_json(out / "notes.json", {"notes": sel.notes + ([f"{n_bad} pool line(s) are not valid UTF-8 JSON "
                                                           "(quarantined)"] if n_bad else []),
                                    "strategy": st.params.strategy})

    with stage_run("select", st.root, st.common, st.params) as run:
        run.log_metrics(metrics)
        for name in (*exports, "quarantine.jsonl", "metrics.json", "notes.json", "plots"):
            run.log_artifact(out / name, "plots" if name == "plots" else None)

    for note in sel.notes:
        print(f"select: {note}")
    print(f"select: {metrics['k_selected']} of {metrics['n_pool_usable']} usable pool pairs queued "
          f"(strategy {st.params.strategy}, surrogate held-out accuracy "
          f"{metrics['surrogate_heldout_accuracy']}) -> {out / 'queue.jsonl'}")
    return metrics


if __name__ == "__main__":
    main()
