"""Drift prior on a hand-made drift report; queue exports and label re-import."""
import json
from pathlib import Path

import numpy as np
import pytest

from driftkeel.active import drift_prior, flagged_clusters, import_labels, parse_labels, write_exports
from driftkeel.active.export import label_studio_tasks

REF = [f"How do I {v} a {s} for dinner?" for v in ("cook", "bake", "roast", "grill")
       for s in ("pasta", "chicken", "cake", "fish", "soup")]
LEGAL = [f"How do I file a {s} dispute with my employer?" for s in ("contract", "wage", "privacy")]


def _report(p_new=1e-6, p_grew=1e-4):
    return {"reference_batches": [0, 1], "clusters": {
        "new_clusters": [{"examples": LEGAL, "p_value": p_new, "size": 30}],
        "grew": [{"cluster": 3, "examples": ["How do I bake a cake for dinner?", "How do I bake a pie?"],
                  "p_value_grew": p_grew, "change": 0.2}]}}


def test_new_and_grown_clusters_are_boosted():
    prompts = ["How do I file a lease dispute with my landlord?", "How do I cook a pasta for dinner?",
               "How do I bake a cake for dinner?"]
    pr = drift_prior(prompts, REF, _report(), boost=1.0)
    assert pr.region[0] == "new" and pr.weights[0] == 2.0
    assert pr.region[1] == "" and pr.weights[1] == 1.0
    assert pr.region[2] == "grew-3" and pr.weights[2] == 1.5
    assert pr.n_boosted == 2 and pr.note is None


def test_no_report_or_nothing_flagged_gives_flat_prior():
    prompts = ["How do I file a lease dispute?"]
    for rep, why in [(None, "no drift report"), ({"clusters": {"reason": "too few rows"}}, "no cluster analysis"),
                     (_report(p_new=0.5, p_grew=0.5), "no cluster flagged")]:
        pr = drift_prior(prompts, REF, rep)
        assert list(pr.weights) == [1.0] and why in pr.note
    assert flagged_clusters(_report(p_new=0.5)).names == ["grew-3"]
    assert "too few reference prompts" in drift_prior(prompts, REF[:3], _report()).note


def _queue():
    return [{"pair_id": f"pool-{i}", "prompt_id": f"p{i}", "prompt": f"question {i}?", "response_a": f"A{i}",
             "response_b": f"B{i}", "batch": 9, "policy_version": "policy-v4", "p_a": 0.5, "uncertainty": 0.9,
             "acquisition": "bald", "drift_prior": 2.0, "drift_region": "new", "member_std": 0.2, "rank": i + 1,
             "reason": f"bald=0.9 rank {i + 1}"} for i in range(3)]


def test_exports_are_importable_shapes(tmp_path):
    names = write_exports(tmp_path, _queue(), {"jsonl", "label_studio", "argilla"})
    assert set(names) >= {"queue.jsonl", "label_studio_tasks.json", "label_studio_config.xml",
                          "argilla_records.jsonl", "argilla_settings.json"}
    tasks = json.loads((tmp_path / "label_studio_tasks.json").read_text())
    assert isinstance(tasks, list) and tasks[0]["data"]["reason"] == "bald=0.9 rank 1"
    assert {"prompt", "response_a", "response_b", "pair_id"} <= set(tasks[0]["data"])
    cfg = (tmp_path / "label_studio_config.xml").read_text()
    assert "$response_a" in cfg and "<Pairwise" in cfg
    recs = [json.loads(x) for x in (tmp_path / "argilla_records.jsonl").read_text().splitlines()]
    settings = json.loads((tmp_path / "argilla_settings.json").read_text())
    fields = {f["name"] for f in settings["fields"]} | {m["name"] for m in settings["metadata"]}
    assert recs[2]["reason"] and set(recs[0]) - {"id"} <= fields


def test_label_studio_argilla_and_plain_labels_parse():
    ls = [{"data": label_studio_tasks(_queue())[0]["data"], "annotations": [
        {"completed_by": 7, "lead_time": 12.5, "result": [{"from_name": "preference", "value": {"selected": "right"}}]},
        {"completed_by": 8, "was_cancelled": True, "result": []}]}]
    parsed, bad = parse_labels(ls)
    assert parsed == [{"pair_id": "pool-0", "label": "b", "annotator_id": "7", "response_time_s": 12.5}]
    assert bad[0]["reason"] == "annotation cancelled"
    arg = [{"id": "pool-1", "pair_id": "pool-1", "responses": {"preference": [{"value": "a", "user_id": "u1"}]}}]
    assert parse_labels(arg)[0][0]["label"] == "a"
    plain = [{"pair_id": "pool-2", "label": "tie", "annotator_id": "ann-001"}]
    assert parse_labels(plain)[0][0]["annotator_id"] == "ann-001"


def test_import_writes_a_new_batch_and_reports_rejects(tmp_path):
    data = tmp_path / "data"
    (data / "stream").mkdir(parents=True)
    first = data / "stream" / "batch_000.jsonl"
    first.write_text("{}\n")
    (data / "annotators.jsonl").write_text(json.dumps({"annotator_id": "ann-001", "first_batch": 0}) + "\n")
    queue = tmp_path / "queue.jsonl"
    queue.write_text("\n".join(json.dumps(q) for q in _queue()) + "\n")
    labels = tmp_path / "labels.jsonl"
    rows = [{"pair_id": "pool-0", "label": "a", "annotator_id": "ann-001", "response_time_s": 20},
            {"pair_id": "pool-1", "label": "B", "annotator_id": "ann-002"},
            {"pair_id": "pool-0", "label": "b", "annotator_id": "ann-001", "response_time_s": 3},   # repeat
            {"pair_id": "nope", "label": "a", "annotator_id": "ann-001"},
            {"pair_id": "pool-2", "label": "maybe", "annotator_id": "ann-001"},
            {"pair_id": "pool-2", "label": "a"}]
    labels.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    with labels.open("ab") as fh:     # a line that is not UTF-8: rejected with a reason, not a crash
        fh.write(b'{"pair_id": "pool-1", "label": "a", "annotator_id": "caf\xe9"}\n')
        fh.write(b"[" * 100_000 + b"\n")                                # nested past the recursion limit
    out = import_labels(labels, queue, data, default_response_time_s=30.0)
    assert out["written"].endswith("batch_001.jsonl") and out["n_judgements"] == 2
    reasons = sorted(r["reason"] for r in out["rejected"])
    assert reasons == sorted(["repeated judgement of this pair by this annotator", "pair_id not in the labelling queue",
                              "label is not a, b or tie", "no annotator id", "not a JSON object",
                              "not a JSON object", "not a JSON object"])
    assert out["unknown_annotators"] == ["ann-002"] and first.read_text() == "{}\n"
    written = [json.loads(x) for x in (data / "stream" / "batch_001.jsonl").read_text().splitlines()]
    from driftkeel.data.schemas import JUDGEMENT_COLUMNS
    assert all(set(w) == set(JUDGEMENT_COLUMNS) for w in written)
    assert [w["label"] for w in written] == ["a", "b"] and written[1]["response_time_s"] == 30.0
    assert all(w["batch"] == 1 and not w["is_golden"] for w in written)
    # the same file again: its judgements are already in the stream -> rejected, naming the batch, nothing written
    out2 = import_labels(labels, queue, data, default_response_time_s=30.0)
    assert out2["written"] is None and out2["n_judgements"] == 0
    assert sorted(r["reason"] for r in out2["rejected"] if "already imported" in r["reason"]) == \
        ["already imported: this annotator's judgement of this pair is in batch_001.jsonl"] * 3   # incl. the repeat
    assert len(out2["rejected"]) == len(out["rejected"]) + 2
    assert sorted(p.name for p in (data / "stream").iterdir()) == ["batch_000.jsonl", "batch_001.jsonl"]
    # a new label by another annotator is written; without a default response time the label without one
    # is rejected, not invented
    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({"pair_id": "pool-0", "label": "b", "annotator_id": "ann-003", "response_time_s": 9})
                    + "\n" + json.dumps({"pair_id": "pool-2", "label": "a", "annotator_id": "ann-003"}) + "\n")
    out3 = import_labels(more, queue, data)
    assert out3["written"].endswith("batch_002.jsonl") and out3["n_judgements"] == 1
    assert [r["reason"] for r in out3["rejected"]] == ["no response time (pass a default)"]


def test_import_reads_queue_texts_holding_unicode_line_separators(tmp_path):
    """The queue is written with ensure_ascii=False: a raw U+2028 / U+0085 inside a prompt is valid JSON
    and must not split the line (str.splitlines would)."""
    data = tmp_path / "data"
    (data / "stream").mkdir(parents=True)
    q = _queue()
    q[0]["prompt"] = "first line\u2028second line\u0085third"
    queue = tmp_path / "queue.jsonl"
    queue.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in q) + "\n", encoding="utf-8")
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"pair_id": q[0]["pair_id"], "label": "a", "annotator_id": "ann-001",
                                  "response_time_s": 12}) + "\n")
    out = import_labels(labels, queue, data)
    assert out["n_judgements"] == 1
    written = json.loads((data / "stream" / "batch_000.jsonl").read_text(encoding="utf-8").split("\n")[0])
    assert written["prompt"] == q[0]["prompt"]


def test_a_label_studio_annotation_with_two_different_answers_is_rejected_not_read_as_the_first():
    """Label Studio keeps every result of an annotation: two choices ticked (a `Choices` tag with
    choice="multiple") or a pairwise pick plus a contradicting choice is no preference at all; taking
    the first silently turned it into "a"."""
    data = label_studio_tasks(_queue())[0]["data"]
    ls = [{"data": data, "annotations": [
        {"completed_by": 1, "lead_time": 3.0, "result": [{"value": {"choices": ["a", "b"]}}]},
        {"completed_by": 2, "lead_time": 3.0, "result": [{"value": {"selected": "left"}},
                                                         {"value": {"choices": ["b"]}}]},
        {"completed_by": 3, "lead_time": 3.0, "result": [{"value": {"selected": "left"}},
                                                         {"value": {"choices": ["a"]}}]}]}]
    parsed, bad = parse_labels(ls)
    assert parsed == [{"pair_id": "pool-0", "label": "a", "annotator_id": "3", "response_time_s": 3.0}]
    assert len(bad) == 2 and all("more than one answer" in b["reason"] for b in bad), bad
    assert [b["row"]["annotator_id"] for b in bad] == ["1", "2"]


def test_a_response_time_that_is_not_a_number_rejects_that_row_only(tmp_path):
    data = tmp_path / "data"
    (data / "stream").mkdir(parents=True)
    (data / "annotators.jsonl").write_text(json.dumps({"annotator_id": "ann-001", "first_batch": 0}) + "\n")
    queue = tmp_path / "queue.jsonl"
    queue.write_text("\n".join(json.dumps(q) for q in _queue()) + "\n")
    labels = tmp_path / "labels.jsonl"
    rows = [{"pair_id": "pool-0", "label": "a", "annotator_id": "ann-001", "response_time_s": "12.5"},
            {"pair_id": "pool-1", "label": "b", "annotator_id": "ann-001", "response_time_s": "n/a"},
            {"pair_id": "pool-2", "label": "b", "annotator_id": "ann-001", "response_time_s": -3},
            {"pair_id": "pool-2", "label": "a", "annotator_id": "ann-002", "response_time_s": True}]
    labels.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = import_labels(labels, queue, data)
    assert out["n_judgements"] == 1 and len(out["rejected"]) == 3
    assert [r["reason"] for r in out["rejected"]] == [
        "response time 'n/a' is not a number of seconds >= 0", "response time '-3' is not a number of seconds >= 0",
        "response time 'True' is not a number of seconds >= 0"]
    written = [json.loads(x) for x in Path(out["written"]).read_text().splitlines()]
    assert [w["response_time_s"] for w in written] == [12.5]
