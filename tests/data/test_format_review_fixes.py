"""Review fixes of the user-format loaders and `prepare`: HH ids, a UTF-8 BOM, duplicates of a bad
first row, items.csv accounting, bad .gz files, explicit splits of a group, the eval-prompt cap and
synthetic timestamps (each test failed on the code before its fix)."""
from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from driftkeel.config import parse_section
from driftkeel.data.formats import load_annotations, load_hh, load_pairs, load_prompts
from driftkeel.data.prepare import build, prepare

NULL, REGEX, UNIQUE = ("expect_column_values_to_not_be_null", "expect_column_values_to_match_regex",
                       "expect_column_values_to_be_unique")
COMPOUND = "expect_compound_columns_to_be_unique:item_id/worker_id"
H = "\n\nHuman: hi there\n\nAssistant:"


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _reasons(res) -> dict[int, list[str]]:
    return {q["line_no"]: q["reasons"] for q in res.quarantine if q["source_file"] == res.source_file}


def _data_params(sources: list[dict], **files) -> object:
    f = {"batch_size": 10, "eval_fraction": 0.0, "pool_fraction": 0.0, **files, "sources": sources}
    return parse_section("data", {"source": "files", "seed": 7, "files": f})


def _adds_up(report: list[dict]) -> None:
    for s in report:
        assert s["rows_in"] == s["rows_used"] + s["rows_quarantined"] + s["rows_not_needed"], s


# ----------------------------------------------------------------------------- 1. HH ids
def test_hh_keeps_the_source_id(tmp_path):
    rows = [{"id": f"r{i}", "chosen": H + f" good {i}", "rejected": H + f" bad {i}"} for i in range(3)]
    rows += [{"id": 7, "chosen": H + " good 7", "rejected": H + " bad 7"},
             {"id": ["x"], "chosen": H + " good x", "rejected": H + " bad x"},
             {"chosen": H + " no id", "rejected": H + " other"}]
    res = load_hh(_jsonl(tmp_path / "hh_ids.jsonl", rows))
    assert (res.rows_in, res.rows_used, len(res.quarantine)) == (6, 5, 1)
    assert [r["id"] for r in res.rows] == ["r0", "r1", "r2", "7", "hh_ids-000006"]
    assert _reasons(res) == {5: ["not_text:id"]}


# ----------------------------------------------------------------------------- 2. BOM
def test_a_utf8_bom_does_not_quarantine_the_first_row(tmp_path):
    p = tmp_path / "pairs_bom.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(json.dumps({"prompt": f"q{i}", "chosen": "x", "rejected": "y"})
                                                 .encode() for i in range(3)) + b"\r\n")
    res = load_pairs(p)
    assert (res.rows_in, res.rows_used, res.quarantine) == (3, 3, [])
    g = tmp_path / "prompts_bom.jsonl.gz"
    g.write_bytes(gzip.compress(b"\xef\xbb\xbf" + b"\n".join(json.dumps({"id": i, "text": f"t{i}"}).encode()
                                                             for i in range(3)) + b"\n"))
    res = load_prompts(g)
    assert (res.rows_in, res.rows_used, res.quarantine) == (3, 3, [])
    assert res.rows[0]["id"] == "0"


# ----------------------------------------------------------------------------- 3. duplicates
def test_a_duplicate_of_a_quarantined_row_is_kept(tmp_path):
    rows = [{"id": "a", "prompt": "", "chosen": "x", "rejected": "y"},              # 1 bad: empty prompt
            {"id": "a", "prompt": "good prompt", "chosen": "x", "rejected": "y"},   # 2 the first valid: kept
            {"id": "a", "prompt": "again", "chosen": "x", "rejected": "y"},         # 3 duplicate of 2
            {"id": "b", "prompt": "same", "chosen": "s", "rejected": "s"},          # 4 identical_responses
            {"id": "b", "prompt": "fine", "chosen": "u", "rejected": "v"},          # 5 kept
            {"id": "c", "prompt": "p", "chosen": "u", "rejected": "v", "group": "g", "split": "train"},  # 6 kept
            {"id": "d", "prompt": "p", "chosen": "u", "rejected": "w", "group": "g", "split": "eval"},   # 7 both
            {"id": "d", "prompt": "q", "chosen": "u", "rejected": "v", "group": "h"},                    # 8 kept
            {"id": "a", "prompt": "", "chosen": "x", "rejected": "y"}]              # 9 bad and a duplicate
    res = load_pairs(_jsonl(tmp_path / "dup.jsonl", rows))
    assert [r["prompt"] for r in res.rows] == ["good prompt", "fine", "p", "q"]
    assert _reasons(res) == {1: [f"{REGEX}:prompt"], 3: [f"{UNIQUE}:id"], 4: ["identical_responses"],
                             7: ["group_in_both_splits"], 9: [f"{REGEX}:prompt", f"{UNIQUE}:id"]}
    prompts = load_prompts(_jsonl(tmp_path / "p.jsonl", [{"id": "1", "text": " "}, {"id": "1", "text": "ok"},
                                                         {"id": "1", "text": "again"}]))
    assert [r["text"] for r in prompts.rows] == ["ok"]
    assert _reasons(prompts) == {1: [f"{REGEX}:text"], 3: [f"{UNIQUE}:id"]}
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "labels.csv").write_text("item_id,worker_id,label\ni1,w1,maybe\ni1,w1,x\ni1,w1,y\ni2,w1,y\n"
                                    "i1,w2,y\ni2,w2,x\n")
    res = load_annotations(ann, labels=["x", "y"])
    assert [(r["item_id"], r["worker_id"], r["label"]) for r in res.rows] == [
        ("i1", "w1", "x"), ("i2", "w1", "y"), ("i1", "w2", "y"), ("i2", "w2", "x")]
    assert _reasons(res) == {2: ["expect_column_values_to_be_in_set:label"], 4: [COMPOUND]}


def test_a_worker_whose_judgements_are_one_item_twice_is_single(tmp_path):
    (tmp_path / "labels.csv").write_text("item_id,worker_id,label\ni1,w1,x\ni1,w1,y\ni1,w2,x\ni2,w2,y\n")
    res = load_annotations(tmp_path, labels=["x", "y"])
    # w1 judged one item (twice): no reliability estimate -- neither of its rows is used, so the second
    # is not a duplicate of a used row
    assert _reasons(res) == {2: ["worker_single_judgement"], 3: ["worker_single_judgement"]}
    assert res.rows_used == 2


# ----------------------------------------------------------------------------- 4. items.csv
def test_items_csv_rows_are_accounted_for(tmp_path):
    (tmp_path / "labels.csv").write_text("item_id,worker_id,label\ni1,w1,x\ni2,w1,y\ni1,w2,y\ni2,w2,x\n"
                                         "i3,w1,maybe\n")
    (tmp_path / "items.csv").write_text("item_id,text\ni1,first\ni1,DUPLICATE of first\n,no id row\n"
                                        "i9,unknown item\ni3,judged only with a bad label\ni2,second\n")
    res = load_annotations(tmp_path, labels=["x", "y"])
    c = res.counts()
    assert (c["items_rows_in"], c["items_rows_used"], c["items_rows_quarantined"]) == (6, 2, 4)
    assert (c["rows_in"], c["rows_used"], c["rows_quarantined"]) == (5 + 6, 4 + 2, 1 + 4)
    assert res.items == {"i1": "text: first", "i2": "text: second"}
    items = {q["line_no"]: q["reasons"] for q in res.quarantine if q["source_file"].endswith("items.csv")}
    assert items == {3: ["duplicate_item"], 4: [f"{REGEX}:item_id"], 5: ["unknown_item"], 6: ["unknown_item"]}
    assert all(q["message"] for q in res.quarantine)
    res.check()


# ----------------------------------------------------------------------------- 5. bad .gz
def _gz_files(tmp_path: Path) -> dict[str, Path]:
    rows = [json.dumps({"prompt": f"p{i}", "chosen": "c", "rejected": "r"}) for i in range(200)]
    blob = gzip.compress(("\n".join(rows) + "\n").encode())
    out = {"truncated": tmp_path / "trunc.jsonl.gz", "garbage": tmp_path / "garb.jsonl.gz",
           "not gzip": tmp_path / "plain.jsonl.gz"}
    out["truncated"].write_bytes(blob[: len(blob) // 2])
    out["garbage"].write_bytes(blob + b"GARBAGE")
    out["not gzip"].write_bytes(b'{"prompt": "p", "chosen": "c", "rejected": "r"}\n')
    return out


def test_a_bad_gz_file_is_a_clear_error(tmp_path):
    for what, path in _gz_files(tmp_path).items():
        with pytest.raises(ValueError, match=f"{path.name}: .*gzip") as exc:
            load_pairs(path)
        assert "\n" not in str(exc.value), what


def test_prepare_data_reports_a_bad_gz_file_in_one_line(tmp_path):
    import typer
    from typer.testing import CliRunner

    from driftkeel.data.prepare_cli import prepare_data_command

    app = typer.Typer()
    app.command()(prepare_data_command)
    for what, path in _gz_files(tmp_path).items():
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(
            {"data": {"source": "files", "files": {"sources": [{"format": "pairs", "path": path.name}]}}}))
        res = CliRunner().invoke(app, ["--root", str(tmp_path)])
        lines = res.output.strip().splitlines()
        assert res.exit_code == 2 and len(lines) == 1, (what, res.output)
        assert lines[0].startswith("error: ") and path.name in lines[0] and "Traceback" not in res.output


# ----------------------------------------------------------------------------- 6. explicit split of a group
def test_a_group_with_an_explicit_split_sends_all_its_rows_there(tmp_path):
    rows = []
    for g in range(8):       # eval_fraction 0.0: without the explicit split every group would be train
        rows += [{"id": f"e{g}", "prompt": f"eval prompt {g}", "chosen": "c0", "rejected": "r0", "split": "eval"}]
        rows += [{"id": f"e{g}-{i}", "prompt": f"eval prompt {g}", "chosen": f"c{i}", "rejected": f"r{i}"}
                 for i in range(1, 3)]
    rows += [{"id": f"t{i}", "prompt": "train prompt", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(3)]
    rows += [{"id": "t9", "prompt": "train prompt", "chosen": "c9", "rejected": "r9", "split": "train"}]
    rows += [{"id": f"o{i}", "prompt": f"other {i}", "chosen": "c", "rejected": "r"} for i in range(20)]
    _jsonl(tmp_path / "a.jsonl", rows)
    # a later source: the same eval prompt with an explicit "train" (quarantined), and without a split
    _jsonl(tmp_path / "b.jsonl", [{"id": "x1", "prompt": "eval prompt 0", "chosen": "cx", "rejected": "rx",
                                   "split": "train"},
                                  {"id": "x2", "prompt": "eval prompt 0", "chosen": "cy", "rejected": "ry"},
                                  {"id": "x3", "prompt": "new prompt", "chosen": "cz", "rejected": "rz"}])
    sources = [{"format": "pairs", "path": "a.jsonl"}, {"format": "pairs", "path": "b.jsonl"}]
    for eval_fraction in (0.0, 0.95):
        built = build(_data_params(sources, eval_fraction=eval_fraction), tmp_path)
        evals = {r["prompt"] for r in built["eval_pairs"]}
        trains = {j["prompt"] for b in built["stream"] for j in b} | {r["prompt"] for r in built["pool"]}
        assert not evals & trains
        assert {f"eval prompt {g}" for g in range(8)} <= evals and "train prompt" in trains
        assert sum(r["prompt"] == "eval prompt 0" for r in built["eval_pairs"]) == 4       # 3 from a, x2 from b
        b = built["report"][1]
        assert (b["rows_in"], b["rows_used"], b["rows_quarantined"]) == (3, 2, 1)
        assert b["reasons"] == {"group_in_both_splits": 1}
        assert [q["raw"] for q in built["quarantine"]["pairs"]] and "x1" in built["quarantine"]["pairs"][0]["raw"]
        _adds_up(built["report"])


# ----------------------------------------------------------------------------- 7. eval-prompt cap
def test_prompts_beyond_the_eval_cap_are_counted(tmp_path):
    _jsonl(tmp_path / "pairs.jsonl", [{"prompt": f"q{i}", "chosen": "c", "rejected": "r"} for i in range(20)])
    _jsonl(tmp_path / "prompts.jsonl", [{"id": i, "text": f"prompt {i}"} for i in range(100)])
    _jsonl(tmp_path / "more.jsonl", [{"id": i, "text": f"more {i}"} for i in range(10)] + [{"id": 0, "text": "x"}])
    p = _data_params([{"format": "pairs", "path": "pairs.jsonl"}, {"format": "prompts", "path": "prompts.jsonl"},
                      {"format": "prompts", "path": "more.jsonl"}], n_eval_prompts=64)
    state, summary = prepare(p, tmp_path, tmp_path / "data")
    pr, more = summary["sources"][1], summary["sources"][2]
    assert summary["n_eval_prompts"] == 64 == pr["rows_used"] + more["rows_used"]
    assert pr["rows_not_needed"] + more["rows_not_needed"] == 110 - 64 and more["rows_quarantined"] == 1
    assert summary["sources"][0]["rows_not_needed"] == 0
    _adds_up(summary["sources"])
    report = json.loads((tmp_path / "data" / "prepare_report.json").read_text())
    assert report["sources"] == summary["sources"]


# ----------------------------------------------------------------------------- 8. synthetic timestamps
def _validate(root: Path, now: datetime):
    from driftkeel.data.schemas import stream_files
    from driftkeel.validation import read_annotators, read_golden, validate_stream

    data = root / "data"
    return validate_stream(stream_files(data), read_golden(data / "golden.jsonl"),
                           read_annotators(data / "annotators.jsonl"), parse_section("validate", {}),
                           relative_to=root, now=now)


def _stamps(root: Path) -> list[list[datetime]]:
    from driftkeel.data.schemas import stream_files

    return [[datetime.fromisoformat(json.loads(line)["timestamp"].replace("Z", "+00:00"))
             for line in f.read_text().splitlines()] for f in stream_files(root / "data")]


@pytest.mark.parametrize("now", [datetime(2026, 11, 27, 19, tzinfo=timezone.utc),
                                 datetime(2025, 6, 1, tzinfo=timezone.utc), None])
def test_synthetic_timestamps_are_never_in_the_future_nor_out_of_order(tmp_path, now):
    # no timestamps, then real ones from 2024 (earlier than the synthetic start), then 60 batches without
    _jsonl(tmp_path / "old.jsonl", [{"prompt": f"prompt a{i}", "chosen": "c", "rejected": "r"} for i in range(30)])
    _jsonl(tmp_path / "new.jsonl", [{"prompt": f"prompt b{i}", "chosen": "c", "rejected": "r",
                                     "timestamp": f"2024-03-{i % 28 + 1:02d}T10:00:00Z"} for i in range(30)])
    _jsonl(tmp_path / "big.jsonl", [{"prompt": f"prompt z{i}", "chosen": "c", "rejected": "r"} for i in range(600)])
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "labels.csv").write_text("item_id,worker_id,label\n" + "".join(
        f"i{i},w{w},{'xy'[(i + w) % 2]}\n" for i in range(20) for w in range(2)))
    p = _data_params([{"format": "pairs", "path": "old.jsonl"}, {"format": "pairs", "path": "new.jsonl"},
                      {"format": "pairs", "path": "big.jsonl"}, {"format": "annotations", "path": "ann",
                                                                 "labels": ["x", "y"]}])
    if now is None:     # the real clock, through prepare
        prepare(p, tmp_path, tmp_path / "data")
        now = datetime.now(timezone.utc)
    else:
        from driftkeel.data.prepare import write

        (tmp_path / "data").mkdir()
        write(build(p, tmp_path, now=now), tmp_path / "data")
    stamps = _stamps(tmp_path)
    assert len(stamps) == 3 + 3 + 60 + 2
    assert max(max(b) for b in stamps) <= now
    for b in range(1, len(stamps)):
        assert min(stamps[b]) >= min(stamps[b - 1]), b
    res = _validate(tmp_path, now)
    assert res.metrics["quarantine_timestamp_in_future"] == 0
    assert res.metrics["quarantine_timestamp_out_of_order"] == 0
    assert res.metrics["rows_quarantined"] == 0


def test_synthetic_timestamps_do_not_depend_on_the_day_prepare_runs(tmp_path):
    """60 batches without timestamps: the same data/ in any week (a schedule moved back by whole weeks
    from 'now' changed every week, and DVC would see new data)."""
    _jsonl(tmp_path / "big.jsonl", [{"prompt": f"prompt z{i}", "chosen": "c", "rejected": "r"} for i in range(600)])
    p = _data_params([{"format": "pairs", "path": "big.jsonl"}])
    runs = [build(p, tmp_path, now=datetime(2026, m, d, tzinfo=timezone.utc)) for m, d in ((11, 27), (12, 18))]
    stamps = [[j["timestamp"] for rows in b["stream"] for j in rows] for b in runs]
    assert stamps[0] == stamps[1] and len(set(stamps[0])) > 1
    assert max(stamps[0]) < "2026-05-26"
