"""validate_stream on the bad-input fixture (tests/data/bad/, see its README): exact routing of every line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from driftkeel.config import ValidateParams
from driftkeel.data.schemas import JUDGEMENT_COLUMNS, stream_files
from driftkeel.validation import CLEAN_COLUMNS, read_annotators, read_golden, validate_stream

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
F0, F1 = "stream/batch_000.jsonl", "stream/batch_001.jsonl"
F2, F3 = "stream/batch_002.jsonl", "stream/batch_003.jsonl"
X = "expect_column_values_to_"

EXPECTED_QUARANTINE = {
    (F0, 5): ["malformed_json"],
    (F0, 6): ["not_a_json_object"],
    (F0, 7): ["not_a_json_object"],
    (F0, 8): [f"{X}not_be_null:label"],
    (F0, 9): [f"{X}be_in_set:label"],
    (F0, 10): ["expect_column_value_lengths_to_be_between:prompt", f"{X}match_regex:prompt"],
    (F0, 11): [f"{X}match_regex:prompt"],
    (F0, 12): [f"{X}be_unique:judgement_id"],
    (F0, 13): ["invalid_utf8"],
    (F0, 14): [f"{X}be_in_set:annotator_id"],
    (F0, 15): ["coerce_type:batch", "non_finite:response_time_s"],
    (F0, 16): [f"{X}be_between:response_time_s", f"{X}match_regex:timestamp",
               f"{X}be_dateutil_parseable:timestamp"],
    (F0, 17): [f"{X}be_in_set:comparison_id"],
    (F0, 19): [f"{X}be_between:batch"],
    (F0, 20): [f"{X}be_dateutil_parseable:timestamp"],
    (F0, 21): ["expect_column_value_lengths_to_be_between:response_a"],
    (F0, 22): ["coerce_type:is_golden"],
    (F0, 23): ["coerce_type:batch"],
    (F0, 24): [f"{X}not_be_null:judgement_id"],
    (F0, 25): [f"{X}be_unique:judgement_id", f"{X}be_in_set:label"],
    (F0, 26): [f"{X}be_unique:judgement_id"],
    (F1, 3): [f"{X}be_unique:judgement_id"],
    (F2, 2): ["expect_compound_columns_to_be_unique:comparison_id/annotator_id"],
    (F2, 3): ["comparison_mismatch"],
    (F2, 4): [f"{X}not_be_in_set:comparison_id"],
    (F2, 5): ["timestamp_in_future"],
    (F2, 6): ["timestamp_out_of_order"],
    (F2, 7): [f"{X}not_match_regex:prompt"],
    (F2, 8): [f"{X}not_match_regex:judgement_id", f"{X}not_match_regex:comparison_id"],
    (F2, 9): [f"{X}not_match_regex:comparison_id"],
    (F2, 10): ["invalid_unicode:prompt"],
    (F2, 11): ["duplicate_key:label"],
    (F2, 12): [f"{X}not_match_regex:timestamp"],
    (F2, 13): ["expect_column_value_lengths_to_be_between:prompt"],
    (F2, 15): [f"{X}be_in_set:label"],       # c44's first clean row (line 16) comes after it: no mismatch
    (F2, 17): ["comparison_mismatch"],
    (F2, 18): [f"{X}not_match_regex:policy_version"],
    (F2, 19): ["expect_column_value_lengths_to_be_between:prompt_id"],
    (F3, 1): [f"{X}be_in_set:label"],
    (F3, 2): ["malformed_json"],
}


@pytest.fixture(scope="module")
def result():
    return validate_stream(stream_files(BAD), read_golden(BAD / "golden.jsonl"),
                           read_annotators(BAD / "annotators.jsonl"), ValidateParams(), relative_to=BAD)


def test_counts_and_invariant(result):
    m = result.metrics
    assert (m["rows_in"], m["rows_clean"], m["rows_quarantined"], m["rows_blank"]) == (49, 9, 40, 2)
    assert m["rows_in"] == m["rows_clean"] + m["rows_quarantined"]
    assert m["rows_extra_fields"] == 1 and m["n_files"] == 4
    assert m["files_fully_quarantined"] == 1


def test_every_quarantined_row_and_its_reasons(result):
    got = {(q["source_file"], q["line_no"]): q["reasons"] for q in result.quarantine}
    assert got == EXPECTED_QUARANTINE


def test_clean_rows_are_exactly_the_valid_ones(result):
    clean = result.clean
    assert list(clean.columns) == CLEAN_COLUMNS
    assert list(zip(clean["source_file"], clean["line_no"], clean["judgement_id"])) == [
        (F0, 1, "j1"), (F0, 2, "j2"), (F0, 18, "12345"), (F0, 27, "j16"), (F1, 1, "j20"), (F1, 2, "j21"),
        (F2, 1, "j30"), (F2, 14, "j43"), (F2, 16, "j45")]
    row = clean.iloc[2]  # coerced from strings and ints
    assert (row["batch"], row["response_time_s"], row["is_golden"]) == (0, 12.5, False)
    assert str(clean["batch"].dtype) == "int64" and str(clean["is_golden"].dtype) == "bool"
    assert str(clean["response_time_s"].dtype) == "float64"
    assert clean["is_golden"].tolist() == [True] + [False] * 8
    assert set(JUDGEMENT_COLUMNS) <= set(clean.columns)


def test_reason_counts_in_metrics(result):
    m = result.metrics
    assert m["quarantine_expect_column_values_to_be_unique:judgement_id"] == 4
    assert m["quarantine_expect_column_values_to_be_in_set:label"] == 4
    assert m["quarantine_expect_column_values_to_match_regex:prompt"] == 2
    assert m["quarantine_expect_column_values_to_be_dateutil_parseable:timestamp"] == 2
    assert m["quarantine_coerce_type:batch"] == 2
    assert (m["quarantine_invalid_utf8"], m["quarantine_malformed_json"], m["quarantine_not_a_json_object"]) == (1, 2, 2)
    assert m["quarantine_comparison_mismatch"] == 2 and m["quarantine_timestamp_in_future"] == 1
    assert m["quarantine_expect_compound_columns_to_be_unique:comparison_id/annotator_id"] == 1
    # stable keys: reasons that did not occur are reported as 0
    assert m["quarantine_expect_column_value_lengths_to_be_between:response_b"] == 0
    assert m["quarantine_coerce_type:prompt"] == 0
    # a field whose coercion failed is not also reported as null
    assert m["quarantine_expect_column_values_to_not_be_null:batch"] == 0


def test_quarantine_records(result):
    by_line = {(q["source_file"], q["line_no"]): q for q in result.quarantine}
    assert by_line[(F0, 21)]["judgement_id"] == "j13" and len(by_line[(F0, 21)]["raw"]) == 500
    assert by_line[(F0, 13)]["judgement_id"] is None and "\\xe9" in by_line[(F0, 13)]["raw"]
    assert by_line[(F0, 5)]["raw"] == '{"judgement_id": "j-bad", "label": '
    assert by_line[(F0, 24)]["judgement_id"] is None
    json.dumps(result.quarantine)  # serialisable as is


def test_batches_table(result):
    assert result.batches.to_dict("records") == [
        {"batch": 0, "rows_in": 25, "rows_clean": 4, "rows_quarantined": 21},
        {"batch": 1, "rows_in": 3, "rows_clean": 2, "rows_quarantined": 1},
        {"batch": 2, "rows_in": 19, "rows_clean": 3, "rows_quarantined": 16},
        {"batch": 3, "rows_in": 2, "rows_clean": 0, "rows_quarantined": 2}]
    assert result.warnings[0] == "stream/batch_003.jsonl: all 2 rows quarantined"


def test_suite_is_real_gx_and_saved_as_json(result):
    types = [e["type"] for e in result.suite["expectations"]]
    assert "expect_column_values_to_be_unique" in types and "expect_table_columns_to_match_set" in types
    golden = [e for e in result.suite["expectations"]
              if e["type"] == "expect_column_values_to_be_in_set" and e["kwargs"]["column"] == "comparison_id"][0]
    assert golden["kwargs"]["value_set"] == ["c1", "c5"] and golden["kwargs"]["row_condition"]["column"]["name"] == "is_golden"
    json.dumps(result.suite)
    failed = {e["reason"] for e in result.expectations if not e["success"]}
    assert "expect_column_values_to_be_in_set:annotator_id" in failed


def test_params_change_the_suite():
    strict = ValidateParams(max_response_time_s=5)
    res = validate_stream(stream_files(BAD)[1:2], ["c1"], ["ann-1", "ann-2", "ann-3"], strict)
    assert res.metrics["rows_clean"] == 0
    assert res.metrics["quarantine_expect_column_values_to_be_between:response_time_s"] == 3


def test_no_files_and_unreadable_only(tmp_path):
    res = validate_stream([], [], [], ValidateParams())
    assert (res.metrics["rows_in"], len(res.clean), len(res.batches)) == (0, 0, 0)
    f = tmp_path / "batch_004.jsonl"
    f.write_bytes(b"garbage\n\n\xff\xfe\n")
    res = validate_stream([f], [], [], ValidateParams())
    assert [q["reasons"] for q in res.quarantine] == [["malformed_json"], ["invalid_utf8"]]
    assert res.batches.to_dict("records") == [{"batch": 4, "rows_in": 2, "rows_clean": 0, "rows_quarantined": 2}]
    assert res.metrics["rows_blank"] == 1


def test_a_later_file_never_changes_an_earlier_quarantine_record(tmp_path):
    """The first clean judgement of a comparison defines its content for the rows after it. A row of an
    earlier file, already quarantined (unknown annotator), gained comparison_mismatch when a later file
    brought the first clean row: quarantine.jsonl is meant to be append-only."""
    from datetime import datetime, timezone

    def rec(k, ann, ts, response_a):
        return json.dumps({"judgement_id": f"j{k}", "comparison_id": "c1", "batch": 0, "timestamp": ts,
                           "prompt_id": "p1", "prompt": "prompt text", "response_a": response_a,
                           "response_b": "B", "policy_version": "v1", "annotator_id": ann, "label": "a",
                           "response_time_s": 5.0, "is_golden": False}) + "\n"
    f0, f1 = tmp_path / "batch_000.jsonl", tmp_path / "batch_001.jsonl"
    f0.write_text(rec(1, "stranger", "2026-01-01T00:00:00Z", "X"))
    f1.write_text(rec(2, "x", "2026-01-02T00:00:00Z", "Y") + rec(3, "y", "2026-01-02T00:00:01Z", "Z"))
    now = datetime(2026, 6, 1, tzinfo=timezone.utc)
    first = validate_stream([f0], {}, {"x", "y"}, ValidateParams(), now=now)
    both = validate_stream([f0, f1], {}, {"x", "y"}, ValidateParams(), now=now)
    assert [q["reasons"] for q in both.quarantine][:1] == [q["reasons"] for q in first.quarantine]
    assert [q["quarantine_id"] for q in both.quarantine][:1] == [q["quarantine_id"] for q in first.quarantine]
    assert "comparison_mismatch" in both.quarantine[1]["reasons"]       # j3 differs from the clean j2 before it
