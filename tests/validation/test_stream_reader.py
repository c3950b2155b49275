"""Line reading and type coercion (no Great Expectations involved)."""
from __future__ import annotations

import json

import pytest

from driftkeel.validation.reader import RAW_MAX_CHARS, coerce_record, read_rows
from driftkeel.validation.reference import read_annotators, read_golden


@pytest.mark.parametrize("field,value,expected", [
    ("judgement_id", "j1", "j1"), ("judgement_id", 7, "7"), ("judgement_id", None, None),
    ("batch", 3, 3), ("batch", 3.0, 3), ("batch", " 3 ", 3), ("batch", "-2", -2),
    ("response_time_s", 2, 2.0), ("response_time_s", "1.5", 1.5),
    ("is_golden", True, True), ("is_golden", 1, True), ("is_golden", "false", False),
])
def test_accepted_coercions(field, value, expected):
    values, reasons, failed = coerce_record({field: value})
    assert values[field] == expected and type(values[field]) is type(expected)
    assert not [r for r in reasons if r.endswith(":" + field)] and field not in failed


@pytest.mark.parametrize("field,value,reason", [
    ("judgement_id", 1.5, "coerce_type"), ("judgement_id", True, "coerce_type"), ("prompt", ["x"], "coerce_type"),
    ("prompt", {"a": 1}, "coerce_type"), ("batch", 3.5, "coerce_type"), ("batch", "three", "coerce_type"),
    ("batch", True, "coerce_type"), ("batch", float("nan"), "coerce_type"), ("batch", 10**30, "coerce_type"),
    ("response_time_s", float("nan"), "non_finite"), ("response_time_s", float("inf"), "non_finite"),
    ("response_time_s", "inf", "non_finite"), ("response_time_s", 10**400, "non_finite"),
    ("response_time_s", "fast", "coerce_type"), ("response_time_s", False, "coerce_type"),
    ("is_golden", 2, "coerce_type"), ("is_golden", "yes", "coerce_type"), ("label", 1.0, "coerce_type"),
])
def test_rejected_coercions(field, value, reason):
    values, reasons, failed = coerce_record({field: value})
    assert values[field] is None and f"{reason}:{field}" in reasons and failed == {field}


def test_read_rows_line_numbers_blank_lines_and_raw(tmp_path):
    f = tmp_path / "batch_000.jsonl"
    long = json.dumps({"prompt": "x" * 2000})
    f.write_bytes(b"\xef\xbb\xbf{\"a\": 1}\r\n\r\n  \n[1]\n" + long.encode() + b"\n{bad\n\x80\x81\nnull")
    rows, blanks = read_rows([f], ["name.jsonl"])
    assert blanks == {0: 2}
    assert [(r.line_no, r.reasons) for r in rows] == [
        (1, []), (4, ["not_a_json_object"]), (5, []), (6, ["malformed_json"]), (7, ["invalid_utf8"]),
        (8, ["not_a_json_object"])]
    assert rows[0].record is not None and rows[0].extra_fields and rows[0].raw == '{"a": 1}'
    assert len(rows[2].raw) == RAW_MAX_CHARS and rows[2].record["prompt"] == "x" * 2000
    assert rows[3].raw == "{bad" and rows[4].raw == "\\x80\\x81"
    assert {r.source_file for r in rows} == {"name.jsonl"}


def test_deeply_nested_json_is_malformed_not_a_crash(tmp_path):
    f = tmp_path / "batch_000.jsonl"
    f.write_text("[" * 100000 + "]" * 100000 + "\n", encoding="utf-8")
    rows, _ = read_rows([f])
    assert rows[0].reasons in (["malformed_json"], ["not_a_json_object"])


def test_reference_files(tmp_path):
    g = tmp_path / "golden.jsonl"
    g.write_text('{"comparison_id": "c1", "gold_label": "a"}\n\n{"comparison_id": "c2", "gold_label": "tie"}\n')
    assert read_golden(g) == {"c1": "a", "c2": "tie"}
    g.write_text('{"comparison_id": "c1", "gold_label": "maybe"}\n')
    with pytest.raises(ValueError, match="record 1"):
        read_golden(g)
    a = tmp_path / "annotators.jsonl"
    a.write_text('{"annotator_id": "ann-1", "first_batch": 0}\n{"annotator_id": "ann-2"}\n')
    assert read_annotators(a) == {"ann-1", "ann-2"}
    with pytest.raises(FileNotFoundError):
        read_annotators(tmp_path / "missing.jsonl")
