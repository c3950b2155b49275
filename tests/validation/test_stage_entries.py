"""The stage entries pipelines/validate.py and pipelines/aggregate.py on a tiny project in a temp dir."""
from __future__ import annotations

import json
import os
import runpy
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from driftkeel.data.schemas import CONSENSUS_COLUMNS
from driftkeel.io import read_json, read_jsonl

REPO = Path(__file__).resolve().parents[2]
BAD = REPO / "tests" / "data" / "bad"


def _judgement(b: int, i: int, j: int, ann: str, label: str, golden: bool) -> dict:
    return {"judgement_id": f"j{b}-{i}-{j}", "comparison_id": f"c{b}-{i}", "batch": b,
            "timestamp": f"2026-01-0{b + 1}T00:{i:02d}:0{j}Z", "prompt_id": f"p{b}-{i}",
            "prompt": f"How do I do thing {i}?", "response_a": "Like this.", "response_b": "Like that.",
            "policy_version": "policy-v0", "annotator_id": ann, "label": label, "response_time_s": 20.0,
            "is_golden": golden}


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory):
    """One MLflow store for the module: creating a fresh SQLite store costs seconds."""
    yield f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    import mlflow

    mlflow.set_tracking_uri(None)


@pytest.fixture()
def project(tmp_path, monkeypatch, mlflow_uri, request):
    """A project root with params.yaml and a 2-batch stream (6 comparisons x 3 judgements each)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    # the expectations below are majority vote's (Dawid-Skene has its own tests in tests/annotation)
    params["aggregate"].update(method="majority", review_confidence_threshold=0.5)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    data = tmp_path / "data"
    (data / "stream").mkdir(parents=True)
    anns = ["ann-1", "ann-2", "ann-3"]
    labels = {0: ["a", "a", "a"], 1: ["a", "a", "b"], 2: ["b", "b", "b"], 3: ["a", "b", "tie"],
              4: ["tie", "tie", "a"], 5: ["b", "b", "a"]}
    for b in range(2):
        rows = [_judgement(b, i, j, anns[j], labels[i][j], golden=(i == 0)) for i in labels for j in range(3)]
        (data / "stream" / f"batch_{b:03d}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows) + "\n{broken\n", encoding="utf-8")
    (data / "golden.jsonl").write_text("".join(json.dumps({"comparison_id": f"c{b}-0", "gold_label": "a"}) + "\n"
                                               for b in range(2)), encoding="utf-8")
    (data / "annotators.jsonl").write_text("".join(json.dumps({"annotator_id": a, "first_batch": 0}) + "\n"
                                                   for a in anns), encoding="utf-8")
    monkeypatch.setenv("DRIFTKEEL_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("DRIFTKEEL_RUN_GROUP", request.node.name)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    return tmp_path


def _run(stage: str):
    runpy.run_path(str(REPO / "pipelines" / f"{stage}.py"), run_name="__main__")


def test_validate_then_aggregate_write_their_outputs_and_log_to_mlflow(project):
    _run("validate")
    out = project / "outputs" / "validate"
    m = read_json(out / "metrics.json")
    assert (m["rows_in"], m["rows_clean"], m["rows_quarantined"], m["rows_blank"]) == (38, 36, 2, 2)
    assert [(q["source_file"], q["line_no"], q["reasons"]) for q in read_jsonl(out / "quarantine.jsonl")] == [
        ("data/stream/batch_000.jsonl", 20, ["malformed_json"]), ("data/stream/batch_001.jsonl", 20, ["malformed_json"])]
    assert pd.read_csv(out / "plots" / "batches.csv").to_dict("records") == [
        {"batch": 0, "rows_in": 19, "rows_clean": 18, "rows_quarantined": 1},
        {"batch": 1, "rows_in": 19, "rows_clean": 18, "rows_quarantined": 1}]
    assert len(pd.read_parquet(out / "clean.parquet")) == 36
    assert read_json(out / "gx_suite.json")["name"] == "driftkeel_judgements"

    _run("aggregate")
    agg = project / "outputs" / "aggregate"
    cons = pd.read_parquet(agg / "consensus.parquet")
    assert list(cons.columns) == list(CONSENSUS_COLUMNS) and len(cons) == 12
    assert cons.set_index("comparison_id")["label"].to_dict() == {
        f"c{b}-{i}": lab for b in range(2) for i, lab in enumerate(["a", "a", "b", "tie", "tie", "b"])}
    queue = read_jsonl(agg / "review_queue.jsonl")
    assert sorted(q["comparison_id"] for q in queue) == ["c0-3", "c1-3"]   # the 3-way splits
    agreement = pd.read_csv(agg / "plots" / "agreement.csv")
    assert list(agreement.columns) == ["batch", "krippendorff_alpha", "fleiss_kappa", "n_comparisons",
                                       "mean_golden_accuracy"]
    assert agreement["n_comparisons"].tolist() == [6, 6] and agreement["mean_golden_accuracy"].tolist() == [1.0, 1.0]
    am = read_json(agg / "metrics.json")
    assert am["n_review"] == 2 and am["n_comparisons"] == 12
    assert set(pd.read_csv(agg / "annotators.csv")["annotator_id"]) == {"ann-1", "ann-2", "ann-3"}

    import mlflow

    runs = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`driftkeel.kind` = 'stage' and "
                              f"tags.`driftkeel.pipeline_key` = '{os.environ['DRIFTKEEL_RUN_GROUP']}'")
    assert len(runs) == 2
    by_stage = runs.set_index("tags.driftkeel.stage")
    assert by_stage.loc["validate", "metrics.rows_clean"] == 36
    assert by_stage.loc["aggregate", "metrics.n_comparisons"] == 12
    assert by_stage.loc["validate", "tags.mlflow.parentRunId"] == by_stage.loc["aggregate", "tags.mlflow.parentRunId"]
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(by_stage.loc["validate", "run_id"])}
    assert {"quarantine.jsonl", "gx_suite.json", "metrics.json", "plots"} <= arts


def test_validate_fails_when_too_much_is_quarantined_but_writes_outputs(project):
    shutil.rmtree(project / "data")
    shutil.copytree(BAD, project / "data", ignore=shutil.ignore_patterns("*.py", "*.md"))
    with pytest.raises(SystemExit, match="quarantined"):
        _run("validate")
    m = read_json(project / "outputs" / "validate" / "metrics.json")
    assert (m["rows_in"], m["rows_clean"], m["rows_quarantined"]) == (49, 9, 40)


def test_blank_stream_and_nothing_clean_are_clear_messages(project):
    """Stream files holding only blank lines: 'no rows' (was '100.0% of rows quarantined'); a stream whose
    every row is quarantined, with the limit raised: aggregate says there is nothing clean (was a
    ValueError traceback)."""
    stream = project / "data" / "stream"
    for f in stream.glob("batch_*.jsonl"):
        f.write_text("\n  \n")
    with pytest.raises(SystemExit, match="hold no rows"):
        _run("validate")
    for f in stream.glob("batch_*.jsonl"):
        f.write_text("not json\n")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params.setdefault("validate", {})["max_quarantine_fraction"] = 1.0
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    _run("validate")
    with pytest.raises(SystemExit, match="aggregate: no clean judgements"):
        _run("aggregate")
