"""Second review of the user-format loaders (each test failed on the code before its fix): line ends,
CSV limits and line numbers, lone surrogates, names and ids the validate stage would refuse, label
inference, files that are not JSON Lines, the eval slices by group, HH replies holding a Human turn,
blank groups, duplicate JSON keys, non-finite ids, prompt timestamps that are no instant."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from driftkeel.config import ConfigError, parse_section
from driftkeel.data.formats import load_annotations, load_hh, load_pairs, load_prompts
from driftkeel.data.prepare import build

IN_SET = "expect_column_values_to_be_in_set"
H = "\n\nHuman: hi\n\nAssistant:"


def _pair(i: int, **extra) -> str:
    return json.dumps({"id": f"p{i}", "prompt": f"prompt {i}", "chosen": f"good {i}", "rejected": f"bad {i}", **extra})


def _labels(folder: Path, text: str, newline: str = "\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.csv").write_bytes(text.replace("\n", newline).encode())
    return folder


def _reasons(res) -> dict[int, list[str]]:
    return {q["line_no"]: q["reasons"] for q in res.quarantine if q["source_file"] == res.source_file}


def _params(sources: list[dict], **files):
    f = {"batch_size": 10, "eval_fraction": 0.0, "pool_fraction": 0.0, **files, "sources": sources}
    return parse_section("data", {"source": "files", "seed": 7, "files": f})


LABELS = "".join(f"i{i},w{w},{(i + w) % 2}\n" for i in range(6) for w in range(3))


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
def test_every_line_end_reads_one_row_per_line(tmp_path, end):
    p = tmp_path / "p.jsonl"
    p.write_bytes(end.join(_pair(i) for i in range(3)).encode() + end.encode())
    res = load_pairs(p)
    assert (res.rows_in, len(res.rows)) == (3, 3) and [r["line_no"] for r in res.rows] == [1, 2, 3]
    ann = load_annotations(_labels(tmp_path / f"a{len(end)}{end == chr(13)}", "item_id,worker_id,label\n" + LABELS, end))
    assert (ann.rows_in, ann.rows_used) == (18, 18)


def test_csv_long_fields_and_line_numbers_of_multiline_records(tmp_path):
    folder = _labels(tmp_path / "a", 'item_id,worker_id,label\n' + LABELS + 'i1,w9,"x\ny\nz"\ni2,w9,maybe\n')
    (folder / "items.csv").write_text("item_id,text\ni0," + "long " * 40_000 + "\n")   # 200 000 chars
    res = load_annotations(folder)
    assert res.extra["items_rows_used"] == 1 and len(res.items["i0"]) > 131072
    # the quoted record starts on line 20 and spans 3 lines: the next record is on line 23
    assert {n: r for n, r in _reasons(res).items()} == {20: [f"{IN_SET}:label"], 23: [f"{IN_SET}:label"]}


def test_a_lone_surrogate_escape_is_a_quarantine_row_not_a_crash(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text(_pair(0) + "\n" + _pair(1).replace("good 1", "good \\ud800 1") + "\n")
    res = load_pairs(p)
    assert len(res.rows) == 1 and _reasons(res) == {2: ["invalid_unicode:chosen"]}
    q = tmp_path / "q.jsonl"
    q.write_text('{"id": "a", "text": "ok"}\n{"id": "\\udfff", "text": "x"}\n')
    assert _reasons(load_prompts(q)) == {2: ["invalid_unicode:id"]}


def test_source_names_and_ids_that_validate_would_refuse_fail_early(tmp_path):
    (tmp_path / "my pairs.jsonl").write_text(_pair(0) + "\n")
    with pytest.raises(ConfigError, match="source name 'my pairs'.*set `name`"):
        _params([{"format": "pairs", "path": "my pairs.jsonl"}])
    with pytest.raises(ConfigError, match="longer than 64"):
        _params([{"format": "pairs", "path": "x.jsonl", "name": "n" * 65}])
    p = tmp_path / "p.jsonl"
    p.write_text(_pair(0) + "\n" + json.dumps({"id": "x" * 184, "prompt": "q", "chosen": "a", "rejected": "b"})
                 + "\n" + json.dumps({"id": "y" * 185, "prompt": "q", "chosen": "a", "rejected": "b"}) + "\n")
    assert _reasons(load_pairs(p)) == {3: ["expect_column_value_lengths_to_be_between:id"]}


def test_label_inference_quarantines_a_stray_label_and_names_the_counts_otherwise(tmp_path):
    res = load_annotations(_labels(tmp_path / "a", "item_id, worker_id, label\n" + LABELS + "i5,w7,1 \ni4,w7,0\ni3,w7,1\n"))
    assert res.labels == ["0", "1"] and _reasons(res) == {20: [f"{IN_SET}:label"]}
    tie = LABELS.replace(",0\n", ",A\n").replace(",1\n", ",B\n") + "".join(f"i{i},w5,tie\n" for i in range(6))
    with pytest.raises(ValueError, match=r"\('tie', 6\).*set `labels"):
        load_annotations(_labels(tmp_path / "b", "item_id,worker_id,label\n" + tie))
    with pytest.raises(ValueError, match=r"lacks \['label'\]"):
        load_annotations(_labels(tmp_path / "c", "item_id,worker_id,answer\n" + LABELS))
    # gold for some items only, one label: labels.csv's labels count too
    folder = _labels(tmp_path / "d", "item_id,worker_id,label\n" + LABELS)
    (folder / "gold.csv").write_text("item_id,gold\ni0,1\n")
    assert load_annotations(folder).labels == ["0", "1"]


def test_files_that_are_not_json_lines_or_not_a_folder_are_clear_errors(tmp_path):
    (tmp_path / "p.parquet").write_bytes(b"PAR1" + b"\0" * 20)
    with pytest.raises(ValueError, match="reads JSON Lines"):
        load_pairs(tmp_path / "p.parquet")
    (tmp_path / "p.jsonl").write_bytes(b"PAR1" + b"\0" * 20)
    with pytest.raises(ValueError, match="a Parquet file"):
        load_prompts(tmp_path / "p.jsonl")
    folder = _labels(tmp_path / "a", "item_id,worker_id,label\n" + LABELS)
    with pytest.raises(ValueError, match=r"reads a folder .*\(its folder is"):
        load_annotations(folder / "labels.csv")
    with pytest.raises(ValueError, match="no labels.csv"):
        load_annotations(tmp_path)


def test_one_pair_source_cuts_its_eval_slices_by_group(tmp_path):
    rows = [_pair(i * 10 + k, group=f"g{i}") for i in range(6) for k in range(3)]
    (tmp_path / "p.jsonl").write_text("\n".join(rows) + "\n")
    built = build(_params([{"format": "pairs", "path": "p.jsonl"}], eval_fraction=0.99), tmp_path)
    by_group: dict[str, set] = {}
    for r in built["eval_pairs"]:
        by_group.setdefault(r["pair_id"].split(":p")[1][:-1], set()).add(r["slice"])
    assert len(by_group) == 6 and all(len(s) == 1 for s in by_group.values())
    assert sorted(s.pop() for s in by_group.values()) == ["post"] * 3 + ["pre"] * 3


def test_hh_reply_with_a_human_turn_blank_group_dup_key_nan_id_and_whitespace_twins(tmp_path):
    hh = tmp_path / "hh.jsonl"
    hh.write_text(json.dumps({"chosen": H + " good\n\nHuman: thanks", "rejected": H + " bad"}) + "\n"
                  + json.dumps({"chosen": H + " good", "rejected": H + " bad"}) + "\n"
                  + json.dumps({"rejected": H + " bad"}) + "\n")
    res = load_hh(hh)
    assert _reasons(res) == {1: ["unsplittable_dialogue"], 3: ["expect_column_values_to_not_be_null:chosen"]}
    p = tmp_path / "p.jsonl"
    p.write_text("\n".join([_pair(0, group=""), _pair(1, group="  "),
                            '{"id": "d", "prompt": "q", "chosen": "first", "chosen": "second", "rejected": "r"}',
                            '{"id": NaN, "prompt": "q", "chosen": "a", "rejected": "b"}',
                            '{"id": 1e400, "prompt": "q", "chosen": "a", "rejected": "b"}',
                            '{"id": "w", "prompt": "q", "chosen": "same ", "rejected": "same"}']) + "\n")
    res = load_pairs(p)
    assert [r["group"] for r in res.rows] == [res.rows[0]["group"], res.rows[1]["group"]]
    assert res.rows[0]["group"] != res.rows[1]["group"] and all(len(r["group"]) == 12 for r in res.rows)
    assert _reasons(res) == {3: ["duplicate_key:chosen"], 4: ["not_text:id"], 5: ["not_text:id"],
                             6: ["identical_responses"]}


def test_prompt_timestamps_must_be_real_instants(tmp_path):
    q = tmp_path / "q.jsonl"
    stamps = ["2026-01-01T10:00:00+09:00", "2026-13-01T00:00:00Z", "2026-02-30T00:00", "2026-01-01T24:00:00Z"]
    q.write_text("".join(json.dumps({"id": str(i), "text": f"t{i}", "timestamp": s}) + "\n" for i, s in enumerate(stamps)))
    assert _reasons(load_prompts(q)) == {2: ["timestamp_not_an_instant"], 3: ["timestamp_not_an_instant"],
                                         4: ["timestamp_not_an_instant"]}


def test_pairs_with_some_timestamps_reach_validate_in_time_order(tmp_path):
    """Rows with a timestamp used to stay in file order when some rows had none: the validate stage then
    quarantined the later-stamped-but-earlier-in-file rows as out of order, after prepare said used."""
    from datetime import datetime, timezone

    from driftkeel.data.prepare import write
    from driftkeel.data.schemas import stream_files
    from driftkeel.validation.reference import read_annotators, read_golden
    from driftkeel.validation.validate import validate_stream

    (tmp_path / "p.jsonl").write_text("\n".join([
        _pair(0, timestamp="2026-03-01T00:00:00Z"), _pair(1), _pair(2, timestamp="2026-02-01T00:00:00Z"),
        _pair(3), _pair(4, timestamp="2026-02-15T00:00:00Z")]) + "\n")
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    built = build(_params([{"format": "pairs", "path": "p.jsonl"}], batch_size=1), tmp_path, now=now)
    out = tmp_path / "data"
    write(built, out)
    v = validate_stream(stream_files(out), read_golden(out / "golden.jsonl"), read_annotators(out / "annotators.jsonl"),
                        parse_section("validate", {}), now=now)
    assert (v.metrics["rows_clean"], v.metrics["rows_quarantined"]) == (5, 0), [q["reasons"] for q in v.quarantine]
    order = [b[0]["comparison_id"] for b in built["stream"]]
    assert order == ["p:p2", "p:p1", "p:p4", "p:p3", "p:p0"]
