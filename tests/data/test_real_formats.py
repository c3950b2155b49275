"""Real-data configuration: the four user formats (loaders, GX suites, quarantine), `prepare` into the
canonical data/ layout, and the validate / aggregate stages (and, marked slow, the whole `dvc repro`)
on slices of the shared files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from shared_data import shared_path

from driftkeel.config import DataParams, load_all, parse_section
from driftkeel.data.formats import explain, load_annotations, load_hh, load_pairs, load_prompts
from driftkeel.data.prepare import build, prepare

REPO = Path(__file__).resolve().parents[2]
SHARED = shared_path()
BAD = Path(__file__).resolve().parent / "bad" / "real"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data not found at {SHARED}")
NULL, REGEX, UNIQUE, IN_SET = ("expect_column_values_to_not_be_null", "expect_column_values_to_match_regex",
                               "expect_column_values_to_be_unique", "expect_column_values_to_be_in_set")


def _reasons(res) -> dict[int, list[str]]:
    return {q["line_no"]: q["reasons"] for q in res.quarantine if q["source_file"] == res.source_file}


# ----------------------------------------------------------------------------- shared files
@needs_shared
def test_loaders_on_shared_slices():
    hh = load_pairs(SHARED / "pairs" / "hh_harmless_dev.jsonl.gz", limit=200)
    ae = load_pairs(SHARED / "pairs" / "alpaca_eval_gpt4_dev.jsonl.gz", limit=150)
    pr = load_prompts(SHARED / "prompts" / "gsm8k_train.jsonl.gz", limit=120)
    for res, n in ((hh, 200), (ae, 150), (pr, 120)):
        assert (res.rows_in, res.rows_used, len(res.quarantine)) == (n, n, 0)
    assert hh.rows[0]["id"] == "hh-00001" and hh.rows[0]["prompt"].endswith("\n\nAssistant:")
    assert {r["domain"] for r in ae.rows} == {"B_alpaca_eval"}
    dialogues = load_hh(SHARED / "hh_harmless_sample.jsonl")
    assert (dialogues.rows_in, dialogues.rows_used) == (300, 299)
    assert _reasons(dialogues) == {87: [f"{REGEX}:chosen"]}            # an empty final Assistant turn
    rte = load_annotations(SHARED / "annotation" / "rte", labels=["1", "0"], limit=500)
    c = rte.counts()
    # 500 labels + 800 gold rows + 800 items.csv rows, each used or quarantined
    assert (c["rows_in"], c["rows_used"], c["rows_quarantined"]) == (500 + 800 + 800,
                                                                     500 + 800 + 800 - c["rows_quarantined"],
                                                                     c["rows_quarantined"])
    # a 500-row slice: gold of items without a judgement in the slice is quarantined, never dropped
    assert set(c["reasons"]) <= {"unknown_gold_item", "worker_single_judgement", "unknown_item"}
    assert c["gold_rows_used"] == len({r["item_id"] for r in rte.rows} & set(rte.gold))
    temp = load_annotations(SHARED / "annotation" / "temp")
    assert temp.labels == ["after", "before"] and temp.counts()["rows_quarantined"] == 0
    assert (temp.rows_in, len(temp.rows), len(temp.gold)) == (4620 + 462 + 462, 4620, 462)


# ----------------------------------------------------------------------------- bad input per format
def test_bad_pairs():
    res = load_pairs(BAD / "pairs.jsonl")
    assert (res.rows_in, res.rows_used, len(res.quarantine)) == (12, 2, 10)
    assert [r["id"] for r in res.rows] == ["p1", "p6"]
    assert _reasons(res) == {
        2: [f"{NULL}:prompt", f"{NULL}:chosen", f"{NULL}:rejected"],      # wrong columns
        3: [f"{REGEX}:chosen"],                                            # empty text
        4: [f"{UNIQUE}:id"],                                               # duplicate id (first kept)
        5: ["identical_responses"],
        7: ["group_in_both_splits"],                                       # a prompt in both splits
        8: [f"{IN_SET}:split"],
        9: ["malformed_json"], 10: ["not_a_json_object"], 11: ["not_text:prompt"],
        13: [f"{REGEX}:timestamp"],
    }
    q = res.quarantine[0]
    assert q["message"].startswith("prompt: this field is missing or null (wrong columns?)") and q["raw"]
    assert all(explain(r) for qq in res.quarantine for r in qq["reasons"])


def test_bad_hh_dialogues():
    res = load_hh(BAD / "hh.jsonl")
    assert (res.rows_in, res.rows_used) == (6, 1)
    assert _reasons(res) == {2: ["unsplittable_dialogue"], 3: [f"{REGEX}:chosen"], 4: ["unsplittable_dialogue"],
                             5: [f"{NULL}:chosen", f"{NULL}:rejected"], 6: ["not_a_json_object"]}   # hh has no prompt field
    assert res.rows[0]["prompt"] == "\n\nHuman: Hi\n\nAssistant:" and res.rows[0]["chosen"] == "Hello there."


def test_bad_prompts():
    res = load_prompts(BAD / "prompts.jsonl")
    assert (res.rows_in, res.rows_used) == (6, 1)
    assert _reasons(res) == {2: [f"{UNIQUE}:id"], 3: [f"{REGEX}:text"], 4: [f"{REGEX}:timestamp"],
                             5: [f"{NULL}:id", f"{NULL}:text"],
                             6: ["expect_column_values_to_not_match_regex:id"]}


def test_bad_annotations():
    res = load_annotations(BAD / "annotations", labels=["yes", "no"])
    c = res.counts()
    assert (c["rows_in"], c["rows_used"], c["rows_quarantined"]) == (18, 9, 9)
    labels = {q["line_no"]: q["reasons"] for q in res.quarantine if q["source_file"].endswith("labels.csv")}
    gold = {q["line_no"]: q["reasons"] for q in res.quarantine if q["source_file"].endswith("gold.csv")}
    assert labels == {6: [f"{IN_SET}:label"],                                       # unknown label "maybe"
                      8: ["expect_compound_columns_to_be_unique:item_id/worker_id"],  # w1 judged i2 twice
                      9: ["worker_single_judgement"],                                # w9: one judgement
                      11: [f"{IN_SET}:label"],                                       # empty label
                      12: ["csv_extra_values"],                                      # 4 values, 3 columns
                      13: ["invalid_utf8"]}                                          # a byte that is not UTF-8
    assert gold == {3: [f"{IN_SET}:gold"], 4: ["unknown_gold_item"],
                    5: ["duplicate_gold_item"]}                                      # i1's gold given twice
    assert "w\ufffd4" in next(q["raw"] for q in res.quarantine if q["line_no"] == 13)
    assert res.gold == {"i1": "yes"} and res.items["i1"] == "text: Is the sky blue?"
    wrong = load_annotations(BAD / "annotations_wrong_columns", labels=["yes", "no"])
    assert (wrong.rows_in, wrong.rows_used) == (2, 0)
    assert wrong.quarantine[0]["reasons"] == ["missing_column:item_id", "missing_column:worker_id",
                                              "missing_column:label"]
    with pytest.raises(ValueError, match="exactly two labels"):
        load_annotations(BAD / "annotations", labels=["yes", "no", "maybe"])


# ----------------------------------------------------------------------------- config
def test_default_params_keep_the_simulator():
    params = load_all(REPO / "params.yaml")["data"]
    assert params.source == "simulator" and params.files.sources == []
    assert DataParams().source == "simulator"


def test_two_sources_of_one_name_are_refused():
    two = [{"format": "pairs", "path": "a/pairs.jsonl"}, {"format": "hh", "path": "b/pairs.jsonl.gz"}]
    with pytest.raises(ValueError, match=r"share the name \['pairs'\]"):
        DataParams(source="files", files={"sources": two})
    two[1]["name"] = "later"
    assert [s.name for s in DataParams(source="files", files={"sources": two}).files.sources] == [None, "later"]


@needs_shared
def test_params_real_parses_and_points_at_shared_files():
    params = load_all(REPO / "params-real.yaml")
    assert params["data"].source == "files" and params["aggregate"].min_judgements == 1
    prefix = "../shared/data/"
    for src in params["data"].files.sources:
        assert src.path.startswith(prefix), src.path       # beside the checkout, as docs/real-data.md says
        if (REPO / src.path).exists():
            continue
        # a clone elsewhere (CI, the clean-clone check): the same file under the shared data found for tests
        assert shared_path(*src.path[len(prefix):].split("/")).exists(), src.path


# ----------------------------------------------------------------------------- prepare + stages
def _files_params(tmp: Path, **files) -> dict:
    base = {"batch_size": 60, "eval_fraction": 0.15, "pool_fraction": 0.1, "n_sft_demos": 80, "n_eval_prompts": 16,
            "sources": [
                {"format": "pairs", "path": str(SHARED / "pairs" / "hh_harmless_dev.jsonl.gz"), "name": "hh",
                 "limit": 150},
                {"format": "pairs", "path": str(SHARED / "pairs" / "alpaca_eval_gpt4_dev.jsonl.gz"), "name": "ae",
                 "limit": 150},
                {"format": "annotations", "path": str(SHARED / "annotation" / "temp"), "limit": 300},
                {"format": "prompts", "path": str(SHARED / "prompts" / "gsm8k_train.jsonl.gz"), "limit": 40}]}
    base.update(files)
    return {"source": "files", "seed": 7, "files": base}


@needs_shared
def test_prepare_accounting_and_split_by_group(tmp_path):
    p = parse_section("data", _files_params(tmp_path))
    built = build(p, tmp_path)
    hh, ae = built["report"][0], built["report"][1]
    n_pairs = hh["rows_used"] + ae["rows_used"]
    pair_judgements = [j for b in built["stream"] for j in b if j["annotator_id"] in ("hh", "ae")]
    assert len(pair_judgements) + len(built["pool"]) + len(built["eval_pairs"]) == n_pairs == 300
    assert {j["label"] for j in pair_judgements} == {"a", "b"}                   # seeded orientation
    train_prompts = {j["prompt"] for j in pair_judgements} | {r["prompt"] for r in built["pool"]}
    assert not train_prompts & {r["prompt"] for r in built["eval_pairs"]}        # split by group
    assert {r["slice"] for r in built["eval_pairs"]} == {"pre", "post"}
    temp = built["report"][2]
    temp_judgements = [j for b in built["stream"] for j in b if j["comparison_id"].startswith("temp:")]
    assert len(temp_judgements) == temp["rows_used"] - temp["gold_rows_used"] - temp["items_rows_used"] == 294   # 6 single-judgement workers in the slice
    assert built["golden"] and all(g["gold_label"] in ("a", "b") for g in built["golden"])
    assert len(built["eval_prompts"]) == 16
    assert build(p, tmp_path)["stream"] == built["stream"]                        # deterministic


@needs_shared
def test_prepare_then_validate_and_aggregate(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"] = _files_params(tmp_path)
    params["aggregate"]["min_judgements"] = 1
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "DRIFTKEEL_ROOT": str(root), "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "driftkeel.data.prepare_cli", "--root", str(root)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "data written" in out.stdout and "annotations" in out.stdout
    summary = json.loads((root / "data" / "prepare_report.json").read_text())
    assert sorted((root / "data" / "quarantine").iterdir())
    again = subprocess.run([sys.executable, "-m", "driftkeel.data.prepare_cli", "--root", str(root)], env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "data unchanged" in again.stdout
    for stage in ("validate", "aggregate"):
        res = subprocess.run([sys.executable, "-m", f"pipelines.{stage}"], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=600)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    m = json.loads((root / "outputs" / "validate" / "metrics.json").read_text())
    assert m["rows_in"] == summary["n_judgements"] and m["rows_quarantined"] == 0
    agg = json.loads((root / "outputs" / "aggregate" / "metrics.json").read_text())
    assert agg["n_golden_comparisons"] == summary["n_golden"] > 0


def test_prepare_refuses_an_empty_stream(tmp_path):
    p = parse_section("data", {"source": "files", "files": {"sources": [
        {"format": "pairs", "path": str(BAD / "pairs.jsonl"), "limit": 1, "name": "x"}], "eval_fraction": 0.0,
        "pool_fraction": 0.0}})
    state, summary = prepare(p, tmp_path, tmp_path / "data")
    assert state == "written" and summary["n_judgements"] == 1
    bad = parse_section("data", {"source": "files", "files": {"sources": [
        {"format": "prompts", "path": str(BAD / "prompts.jsonl")}]}})
    with pytest.raises(ValueError, match="stream would be empty"):
        prepare(bad, tmp_path, tmp_path / "data2")


def test_prepare_data_simulator_is_demo_data(tmp_path):
    """`prepare-data` with the default `data.source: simulator` writes exactly what demo-data writes."""
    import typer
    from typer.testing import CliRunner

    from driftkeel.data.prepare_cli import prepare_data_command
    from driftkeel.data.simulator import materialise
    from driftkeel.io import tree_digest

    small = {"n_batches": 2, "comparisons_per_batch": 10, "n_annotators": 4, "new_topics_from_batch": 1,
             "concept_drift_batch": 1, "pool_change_batch": 1, "n_sft_demos": 10, "pool_size": 10,
             "n_eval_pairs": 10, "n_eval_prompts": 4}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": small}))
    app = typer.Typer()
    app.command()(prepare_data_command)
    res = CliRunner().invoke(app, ["--root", str(tmp_path)])
    assert res.exit_code == 0 and "demo data written" in res.output
    materialise(parse_section("data", small), tmp_path / "ref")
    assert tree_digest(tmp_path / "data") == tree_digest(tmp_path / "ref")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"data": {"source": "spreadsheet"}}))
    bad = CliRunner().invoke(app, ["--root", str(tmp_path), "--params", str(tmp_path / "bad.yaml")])
    assert bad.exit_code == 2 and "data.source" in bad.output
