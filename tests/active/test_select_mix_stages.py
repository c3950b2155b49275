"""The stage entries pipelines/select.py and pipelines/mix.py on a tiny project in a temp dir."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from driftkeel.io import read_json, read_jsonl

REPO = Path(__file__).resolve().parents[2]
TOPICS = ["cook pasta", "bake bread", "roast chicken", "grill fish", "make soup", "fry rice"]


@pytest.fixture()
def project(tmp_path, monkeypatch):
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["select"].update(k=12)
    params["mix"].update(new_batches=2, synthetic=True, synthetic_min_confidence=0.9)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    rng = np.random.default_rng(0)
    rows = []
    for b in range(4):
        for i in range(40):
            t = TOPICS[i % 6]
            good, bad = f"Careful steps to {t}: plan, check, then {b}-{i}.", "No idea, it depends."
            a_good = bool(rng.random() < 0.5)
            rows.append({"comparison_id": f"c{b}-{i}", "batch": b, "timestamp": "2026-01-05T00:00:00Z",
                         "prompt_id": f"p{b}-{i}", "prompt": f"How do I {t} {b}-{i}?",
                         "response_a": good if a_good else bad, "response_b": bad if a_good else good,
                         "policy_version": "policy-v0", "is_golden": False, "label": "a" if a_good else "b",
                         "confidence": 0.9, "n_judgements": 3, "agreement": 1.0})
    agg = tmp_path / "outputs" / "aggregate"
    agg.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(agg / "consensus.parquet")
    pool = [{"pair_id": f"pool-{i}", "prompt_id": f"q{i}", "prompt": f"How do I {TOPICS[i % 6]} {i}?",
             "response_a": f"Careful steps to {TOPICS[i % 6]}: plan, check, then {i}.",
             "response_b": (f"Careful steps to {TOPICS[(i + 1) % 6]}: plan, then {i}." if i % 2
                            else "No idea, it depends."), "batch": 4,
             "policy_version": "policy-v1"} for i in range(60)]
    lines = [json.dumps(r) for r in pool]
    lines += [json.dumps({"pair_id": "same", "prompt": "x?", "response_a": "t", "response_b": "t"}),
              json.dumps({"pair_id": "nofield", "prompt": "x?"}), "{broken",
              '{"pair_id": "surrogate", "prompt": "bad \\ud800 text", "response_a": "x", "response_b": "y"}']
    (tmp_path / "data" / "pool").mkdir(parents=True)
    (tmp_path / "data" / "pool" / "pool.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with (tmp_path / "data" / "pool" / "pool.jsonl").open("ab") as fh:     # not UTF-8: counted, not a crash
        fh.write(b'{"pair_id": "latin", "prompt": "caf\xe9?", "response_a": "x", "response_b": "y"}\n')
    monkeypatch.setenv("DRIFTKEEL_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    yield tmp_path
    import mlflow

    mlflow.set_tracking_uri(None)


def test_select_then_mix_write_their_outputs(project):
    m = importlib.import_module("pipelines.select").main()
    out = project / "outputs" / "select"
    queue = read_jsonl(out / "queue.jsonl")
    assert len(queue) == 12 and m["k_selected"] == 12 and all(q["reason"] for q in queue)
    assert m["n_skipped_identical_responses"] == 1 and m["n_skipped_missing_fields"] == 1
    # every pool line is queued-or-usable, quarantined with a reason (unreadable lines too), or labelled
    assert m["n_skipped_invalid_json"] == 2 and m["n_skipped_invalid_unicode"] == 1 and m["n_quarantined"] == 5
    assert m["n_pool_lines"] == 65 == m["n_pool_usable"] + m["n_quarantined"]
    quarantined = read_jsonl(out / "quarantine.jsonl")
    assert sorted((q["line"], q["reason"]) for q in quarantined) == [
        (61, "identical_responses"), (62, "missing_fields"), (63, "invalid_json"), (64, "invalid_unicode"),
        (65, "invalid_utf8")]
    assert len(json.loads((out / "label_studio_tasks.json").read_text())) == 12
    assert len(read_jsonl(out / "argilla_records.jsonl")) == 12
    notes = read_json(out / "notes.json")["notes"]
    assert any("no drift report" in n for n in notes)          # no drift stage here: flat prior, said so

    mm = importlib.import_module("pipelines.mix").main()
    mix = project / "outputs" / "mix"
    train, evl = read_jsonl(mix / "train.jsonl"), read_jsonl(mix / "eval.jsonl")
    assert set(train[0]) == {"pair_id", "prompt", "chosen", "rejected", "weight", "batch", "source", "region", "era"}
    assert mm["n_synthetic"] > 0 and all(r["source"] != "synthetic" for r in evl)
    queued = {q["pair_id"] for q in queue}
    assert not {r["pair_id"].split(":", 1)[1] for r in train if r["source"] == "synthetic"} & queued
    from datasets import load_from_disk

    ds = load_from_disk(str(mix / "hf"))
    assert ds["train"].num_rows == len(train) and "difficulty" in ds["train"].column_names
    manifest = read_json(mix / "manifest.json")
    assert manifest["replay"]["from"] == "mix.replay_fraction" and manifest["synthetic"]["n_synthetic"] == mm["n_synthetic"]


def test_mix_with_hf_datasets_off_still_writes_its_declared_hf_out(project):
    """dvc.yaml declares outputs/mix/hf, so with mix.hf_datasets false the folder must still exist (a
    missing declared out fails `dvc repro`); it holds only a note, never the datasets of an earlier run."""
    importlib.import_module("pipelines.mix").main()
    hf = project / "outputs" / "mix" / "hf"
    assert (hf / "dataset_dict.json").exists()
    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    params["mix"]["hf_datasets"] = False
    (project / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    importlib.import_module("pipelines.mix").main()
    assert [p.name for p in hf.iterdir()] == ["NOT_SAVED.txt"]
    assert "mix.hf_datasets is false" in (hf / "NOT_SAVED.txt").read_text(encoding="utf-8")
    assert read_json(project / "outputs" / "mix" / "manifest.json")["hf_datasets"] is None
    assert read_jsonl(project / "outputs" / "mix" / "train.jsonl")
