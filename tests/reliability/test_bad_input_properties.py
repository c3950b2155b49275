"""Property-based: hypothesis writes malformed stream batches; validate never crashes, accounts for
every row, gives every quarantined row explained reasons, and lets only contract-abiding rows through.

Each example is a set of 1-3 stream files mixing valid judgements with generated faults: broken
JSON, non-objects, wrong types, missing / extra / doubled fields, NaN and inf, empty and 1 MB strings,
invalid UTF-8, lone surrogates, control characters, ids with paths or spaces, duplicate ids, the
same annotator twice on one comparison, a comparison whose content changes, labels and annotators
outside their sets, golden flags that contradict golden.jsonl, timestamps in the future, before the
previous file, or not dates, random bytes; with BOMs, CRLF, blank lines, files that are 100% bad.

Checked for every example:
- no exception; ``rows_in`` equals an independent count of non-blank lines and
  ``rows_in == rows_clean + rows_quarantined``;
- every quarantined row has at least one reason, each reason has an explanation (``explain``);
  quarantine ids are unique; the records serialise as UTF-8 JSON and the clean frame as parquet;
- a fault whose reason is known (e.g. label outside the set) is quarantined with that reason, and a
  valid judgement is clean;
- every clean row satisfies the contract, re-checked here without Great Expectations.

Bounded: ``DRIFTKEEL_PBT_EXAMPLES`` examples (default 30) within ``DRIFTKEEL_PBT_BUDGET_S`` seconds
(default 60; the examples after the budget return at once). The number of examples and generated lines
tried is printed (and in pytest's terminal summary).
"""
from __future__ import annotations

import json
import math
import os
import time
from datetime import datetime, timedelta, timezone

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftkeel.config import ValidateParams
from driftkeel.data.schemas import JUDGEMENT_COLUMNS, LABELS
from driftkeel.io import write_jsonl, write_parquet
from driftkeel.validation import validate_stream
from driftkeel.validation.reader import read_rows
from driftkeel.validation.validate import COMPARISON_CONTENT, explain, parse_timestamp
from summary_lines import report

EXAMPLES = int(os.environ.get("DRIFTKEEL_PBT_EXAMPLES", "20"))
BUDGET_S = float(os.environ.get("DRIFTKEEL_PBT_BUDGET_S", "60"))
READER_EXAMPLES = int(os.environ.get("DRIFTKEEL_PBT_READER_EXAMPLES", "300"))

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
START = datetime(2026, 1, 5, tzinfo=timezone.utc)
ANNOTATORS = ["ann-1", "ann-2", "ann-3"]
GOLDEN = {"g1": "a"}
PARAMS = ValidateParams()
MB = "x" * (1 << 20)
X = "expect_column_values_to_"
STR_FIELDS = [c for c, k in JUDGEMENT_COLUMNS.items() if k == "str"]
PATH_IDS = ["judgement_id", "comparison_id", "prompt_id"]   # annotator_id also fails its set
TEXT = ["prompt", "response_a", "response_b", "policy_version"]


def _ts(f: int, minutes: int) -> str:
    return (START + timedelta(days=7 * f, minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dumps(row: dict) -> bytes:
    return json.dumps(row, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


# ------------------------------------------------------------------------------------ faults
# each fault: (row, draw, ctx) -> (line bytes, expected reason or "clean" or None = any non-clean)

def _wrong_type(row, draw, ctx):
    field = draw(st.sampled_from(list(JUDGEMENT_COLUMNS)))
    kind = JUDGEMENT_COLUMNS[field]
    bad = {"str": [[1], {"a": 1}, True, 1.5], "int": ["three", [3], True, 3.5, {"n": 1}],
           "float": ["fast", [1.0], True, {"s": 1}], "bool": ["maybe", 2, [True], 0.5]}[kind]
    row[field] = draw(st.sampled_from(bad))
    return _dumps(row), f"coerce_type:{field}"


def _missing(row, draw, ctx):
    field = draw(st.sampled_from(list(JUDGEMENT_COLUMNS)))
    if draw(st.booleans()):
        del row[field]
    else:
        row[field] = None
    return _dumps(row), f"{X}not_be_null:{field}"


def _extra(row, draw, ctx):
    row[draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in JUDGEMENT_COLUMNS))] = draw(
        st.one_of(st.integers(), st.text(max_size=5), st.none()))
    return _dumps(row), "clean"


def _non_finite(row, draw, ctx):
    field = draw(st.sampled_from(["response_time_s", "batch"]))
    row[field] = draw(st.sampled_from([math.nan, math.inf, -math.inf, "nan", "inf", "-Infinity"]))
    if field == "batch":
        return _dumps(row), "coerce_type:batch"
    return _dumps(row), "non_finite:response_time_s"


def _empty(row, draw, ctx):
    field = draw(st.sampled_from(STR_FIELDS))
    row[field] = draw(st.sampled_from(["", "   ", "\t"])) if field != "response_a" else ""
    expected = {"prompt": f"{X}match_regex:prompt", "label": f"{X}be_in_set:label",
                "annotator_id": f"{X}be_in_set:annotator_id", "timestamp": f"{X}match_regex:timestamp",
                "response_a": "clean", "response_b": "clean"}.get(field, f"{X}match_regex:{field}")
    return _dumps(row), expected


def _huge(row, draw, ctx):
    field = draw(st.sampled_from(["prompt", "response_a", "response_b", "judgement_id", "policy_version"]))
    row[field] = MB
    return _dumps(row), f"expect_column_value_lengths_to_be_between:{field}"


def _invalid_utf8(row, draw, ctx):
    field = draw(st.sampled_from(["prompt", "response_b", "annotator_id"]))
    row[field] = "@@BAD@@"
    bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xe9t\xe9", b"\x80\x81"]))
    return _dumps(row).replace(b"@@BAD@@", bad), "invalid_utf8"


def _surrogate(row, draw, ctx):
    field = draw(st.sampled_from(["prompt", "response_a", "judgement_id"]))
    row[field] = "a\ud800b"
    return json.dumps(row).encode(), f"invalid_unicode:{field}"


def _control(row, draw, ctx):
    field = draw(st.sampled_from([*TEXT, *PATH_IDS, "timestamp"]))
    ch = draw(st.sampled_from(["\x00", "\x1b[31m", "\x07", "\x7f", "\x0b"]))
    row[field] = row[field] + ch if field == "timestamp" else ch + row[field]
    return _dumps(row), f"{X}not_match_regex:{field}"


def _path_id(row, draw, ctx):
    field = draw(st.sampled_from(PATH_IDS))
    row[field] = draw(st.sampled_from(["../../etc/passwd", "a/b", "..", ".hidden", "a b", "a\\b",
                                       "x\u2028y", "tab\there"]))
    return _dumps(row), f"{X}not_match_regex:{field}"


def _duplicate_key(row, draw, ctx):
    field = draw(st.sampled_from(list(JUDGEMENT_COLUMNS)))
    again = json.dumps(field).encode() + b": " + json.dumps(row[field], allow_nan=True).encode()
    return _dumps(row)[:-1] + b", " + again + b"}", f"duplicate_key:{field}"


def _bad_label(row, draw, ctx):
    row["label"] = draw(st.text(max_size=4).filter(lambda s: s not in LABELS and s.strip()
                                                    and s.isprintable()))
    return _dumps(row), f"{X}be_in_set:label"


def _unknown_annotator(row, draw, ctx):
    row["annotator_id"] = "ann-" + draw(st.sampled_from(["999", "x", "0"]))
    return _dumps(row), f"{X}be_in_set:annotator_id"


def _golden_not_listed(row, draw, ctx):
    row["is_golden"] = True
    return _dumps(row), f"{X}be_in_set:comparison_id"


def _golden_not_flagged(row, draw, ctx):
    row["comparison_id"], row["is_golden"] = "g1", False
    return _dumps(row), f"{X}not_be_in_set:comparison_id"


def _future(row, draw, ctx):
    row["timestamp"] = draw(st.sampled_from(["2027-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
                                             "2026-06-01T01:00:00+00:00"]))
    return _dumps(row), "timestamp_in_future"


def _before_previous(row, draw, ctx):
    from driftkeel.validation.validate import parse_timestamp

    row["timestamp"] = draw(st.sampled_from(["2025-01-01T00:00:00Z", "2000-02-29T12:00:00+01:00"]))
    # out of order = earlier than every clean row of the last earlier file with clean rows (its floor);
    # that floor may itself be an earlier "before previous" row that was clean where it stood
    floor = ctx["floor"]
    late = floor is not None and parse_timestamp(row["timestamp"]) < floor
    return _dumps(row), "timestamp_out_of_order" if late else "clean"


def _not_a_date(row, draw, ctx):
    row["timestamp"] = draw(st.sampled_from(["not a time", "2026-02-30T00:00:00Z", "2026-13-01T00:00Z",
                                             "yesterday", "0000-01-01T00:00:00Z", "1e9",
                                             "2026-01-05T00:00:00+25:00"]))
    return _dumps(row), None


def _out_of_range(row, draw, ctx):
    field, value = draw(st.sampled_from([("response_time_s", -1.0), ("response_time_s", 1e9),
                                         ("batch", -3)]))
    row[field] = value
    return _dumps(row), f"{X}be_between:{field}"


def _duplicate_id(row, draw, ctx):
    if not ctx["valid"]:
        return _bad_label(row, draw, ctx)
    row["judgement_id"] = draw(st.sampled_from(ctx["valid"]))["judgement_id"]
    return _dumps(row), f"{X}be_unique:judgement_id"


def _same_annotator_twice(row, draw, ctx):
    if not ctx["valid"]:
        return _bad_label(row, draw, ctx)
    first = draw(st.sampled_from(ctx["valid"]))
    row.update({k: first[k] for k in ("comparison_id", "annotator_id", *COMPARISON_CONTENT)})
    return _dumps(row), "expect_compound_columns_to_be_unique:comparison_id/annotator_id"


def _comparison_mismatch(row, draw, ctx):
    if not ctx["valid"]:
        return _bad_label(row, draw, ctx)
    first = draw(st.sampled_from(ctx["valid"]))
    row["comparison_id"] = first["comparison_id"]
    row["annotator_id"] = draw(st.sampled_from([a for a in ANNOTATORS if a != first["annotator_id"]]))
    row["prompt"] = first["prompt"] + " (edited)"
    return _dumps(row), "comparison_mismatch"


def _truncated(row, draw, ctx):
    text = _dumps(row).decode("utf-8")  # cut between characters, not inside one
    return text[: draw(st.integers(1, len(text) - 1))].encode("utf-8"), "malformed_json"


def _not_object(row, draw, ctx):
    value = draw(st.one_of(st.lists(st.integers(), max_size=3), st.text(max_size=5), st.integers(),
                           st.none(), st.booleans(), st.floats()))
    return json.dumps(value).encode(), "not_a_json_object"


def _random_bytes(row, draw, ctx):
    return draw(st.binary(min_size=1, max_size=200)).replace(b"\n", b"?").replace(b"\r", b"?"), None   # one line


def _random_text(row, draw, ctx):
    return draw(st.text(min_size=1, max_size=200)).replace("\n", " ").replace("\r", " ").encode("utf-8", "surrogatepass"), None


FAULTS = [_wrong_type, _missing, _extra, _non_finite, _empty, _huge, _invalid_utf8, _surrogate, _control,
          _path_id, _duplicate_key, _bad_label, _unknown_annotator, _golden_not_listed, _golden_not_flagged,
          _future, _before_previous, _not_a_date, _out_of_range, _duplicate_id, _same_annotator_twice,
          _comparison_mismatch, _truncated, _not_object, _random_bytes, _random_text]


@st.composite
def batches(draw):
    """(files as bytes, [(file index, line_no, fault name, expected)], n_generated_lines)."""
    files, cases, n_lines = [], [], 0
    ctx = {"valid": [], "earlier_clean_file": False, "floor": None}
    for f in range(draw(st.integers(1, 3))):
        all_bad = draw(st.integers(0, 4)) == 0
        lines: list[bytes] = []
        clean_here = False
        clean_stamps = []
        for i in range(draw(st.integers(1, 14))):
            if draw(st.integers(0, 7)) == 0:
                lines.append(draw(st.sampled_from([b"", b"   ", b" \t "])))
                continue
            row = {"judgement_id": f"j{f}-{i}", "comparison_id": f"c{f}-{i}", "batch": f,
                   "timestamp": _ts(f, draw(st.integers(0, 6 * 24 * 60))), "prompt_id": f"p{f}-{i}",
                   "prompt": draw(st.sampled_from(["How do I bake bread?", "Is water wet?", "Ça va ? 你好"])),
                   "response_a": "Knead it.", "response_b": "Buy it.", "policy_version": "policy-v0",
                   "annotator_id": draw(st.sampled_from(ANNOTATORS)), "label": draw(st.sampled_from(LABELS)),
                   "response_time_s": draw(st.floats(0, 3600, allow_nan=False)), "is_golden": False}
            if all_bad or draw(st.booleans()):
                fault = draw(st.sampled_from(FAULTS))
                line, expected = fault(row, draw, ctx)
                name = fault.__name__.lstrip("_")
            else:
                line, expected, name = _dumps(row), "clean", "valid"
                ctx["valid"].append(row)
            clean_here = clean_here or expected == "clean"
            if expected in ("clean", "comparison_mismatch"):  # the validator sets the floor before it
                from driftkeel.validation.validate import parse_timestamp  # checks comparison content

                stamp = parse_timestamp(row.get("timestamp"))
                if stamp is not None:
                    clean_stamps.append(stamp)
            n_lines += 1
            lines.append(line)
            cases.append((f, len(lines), name, expected))
        # line ends: LF, CRLF, or a lone CR (old Mac files)
        end, bom, final_newline = (draw(st.sampled_from([b"\n", b"\r\n", b"\r"])), draw(st.integers(0, 5)) == 0,
                                   draw(st.booleans()))
        data = end.join(lines) + (end if final_newline else b"")
        files.append((b"\xef\xbb\xbf" if bom else b"") + data)
        ctx["earlier_clean_file"] = ctx["earlier_clean_file"] or clean_here
        if clean_stamps:
            ctx["floor"] = min(clean_stamps)
    return files, cases, n_lines


def _non_blank_lines(data: bytes) -> list[int]:
    """Line numbers that are rows (not blank), counted independently of the reader."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts = parts[:-1]
    # a line ends at CRLF, LF or a lone CR
    pieces = [piece for part in parts for piece in (part[:-1] if part.endswith(b"\r") else part).split(b"\r")]
    out = []
    for n, part in enumerate(pieces, 1):
        try:
            blank = not part.decode("utf-8").strip()
        except UnicodeDecodeError:
            blank = False
        if not blank:
            out.append(n)
    return out


def _check_clean_contract(clean: pd.DataFrame) -> None:
    """Every clean row honours the data contract (re-checked here without Great Expectations)."""
    assert clean["judgement_id"].is_unique
    assert not clean.duplicated(["comparison_id", "annotator_id"]).any()
    for _, r in clean.iterrows():
        assert r["label"] in LABELS and r["annotator_id"] in ANNOTATORS
        assert PARAMS.min_prompt_chars <= len(r["prompt"]) <= PARAMS.max_prompt_chars and r["prompt"].strip()
        assert len(r["response_a"]) <= PARAMS.max_response_chars >= len(r["response_b"])
        for c in STR_FIELDS:
            r[c].encode("utf-8")
            assert not any(ord(ch) < 32 and ch not in "\t\n\r" or ord(ch) == 127 for ch in r[c]), (c, r[c])
        for c in PATH_IDS + ["annotator_id"]:
            assert r[c].strip() == r[c] and "/" not in r[c] and "\\" not in r[c] and not r[c].startswith(".")
        ts = parse_timestamp(r["timestamp"])
        assert ts is not None and ts <= NOW + timedelta(seconds=PARAMS.max_future_skew_s)
        assert math.isfinite(r["response_time_s"]) and 0 <= r["response_time_s"] <= PARAMS.max_response_time_s
        assert r["batch"] >= 0
        assert (r["comparison_id"] in GOLDEN) == bool(r["is_golden"])
    content = clean.groupby("comparison_id")[list(COMPARISON_CONTENT)].nunique()
    assert (content <= 1).all().all()


_STATS = {"examples": 0, "lines": 0, "quarantined": 0, "skipped_over_budget": 0, "faults": set()}
_T0: list[float] = []


@settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example, HealthCheck.function_scoped_fixture])
@given(batches())
def test_validate_survives_generated_bad_batches(tmp_path_factory, example):
    if not _T0:
        _T0.append(time.monotonic())
    if time.monotonic() - _T0[0] > BUDGET_S:
        _STATS["skipped_over_budget"] += 1
        return
    files, cases, n_lines = example
    folder = tmp_path_factory.mktemp("pbt")
    paths = []
    for i, data in enumerate(files):
        paths.append(folder / f"batch_{i:03d}.jsonl")
        paths[-1].write_bytes(data)

    res = validate_stream(paths, GOLDEN, ANNOTATORS, PARAMS, relative_to=folder, now=NOW)

    m = res.metrics
    expected_rows = {(i, n) for i, data in enumerate(files) for n in _non_blank_lines(data)}
    assert m["rows_in"] == len(expected_rows)
    assert m["rows_in"] == m["rows_clean"] + m["rows_quarantined"] == len(res.clean) + len(res.quarantine)
    assert int(res.batches["rows_in"].sum()) == m["rows_in"]
    reasons = {(q["source_file"], q["line_no"]): q["reasons"] for q in res.quarantine}
    assert len({q["quarantine_id"] for q in res.quarantine}) == len(res.quarantine)
    for q in res.quarantine:
        assert q["reasons"], q
        for r in q["reasons"]:
            assert explain(r)
        assert len(q["raw"]) <= 500
    clean_keys = set(zip(res.clean["source_file"], res.clean["line_no"]))
    for f, line_no, name, expected in cases:
        key = (f"batch_{f:03d}.jsonl", line_no)
        if (f, line_no) not in expected_rows:  # a generated line that is blank (random whitespace)
            assert expected is None, (name, expected)
            continue
        if expected == "clean":
            assert key in clean_keys, (name, reasons.get(key))
        elif expected is not None:
            assert expected in reasons.get(key, []), (name, expected, reasons.get(key))
        else:
            assert key not in clean_keys, name
    _check_clean_contract(res.clean)
    # what the stage writes next must not fail either (UTF-8 JSONL, parquet)
    write_jsonl(folder / "out" / "quarantine.jsonl", res.quarantine)
    write_parquet(folder / "out" / "clean.parquet", res.clean)
    assert all(w for w in res.warnings)

    _STATS["examples"] += 1
    _STATS["lines"] += n_lines
    _STATS["quarantined"] += m["rows_quarantined"]
    _STATS["faults"].update(name for *_, name, _e in cases)
    report("test_validate_survives_generated_bad_batches",
           f"{_STATS['examples']} generated batches, {_STATS['lines']} generated lines "
           f"({_STATS['quarantined']} quarantined), {len(_STATS['faults'])} fault kinds seen, "
           f"{_STATS['skipped_over_budget']} examples past the {BUDGET_S:.0f} s budget")


_READER = {"examples": 0, "lines": 0}


@settings(max_examples=READER_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
                          st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
                                       lambda c: st.lists(c, max_size=4) | st.dictionaries(
                                           st.sampled_from([*JUDGEMENT_COLUMNS, "x"]), c, max_size=14),
                                       max_leaves=30).map(lambda v: json.dumps(v).encode())),
                max_size=20))
def test_reader_never_raises_on_arbitrary_bytes(tmp_path_factory, lines):
    """The reading/coercion layer on arbitrary bytes and arbitrary JSON (many more cases: no GX)."""
    f = tmp_path_factory.mktemp("reader") / "batch_000.jsonl"
    data = b"\n".join(line.replace(b"\n", b" ") for line in lines)
    f.write_bytes(data)
    rows, _ = read_rows([f])
    assert [r.line_no for r in rows] == _non_blank_lines(data)
    for r in rows:
        assert (r.record is None) == bool(set(r.reasons) & {"invalid_utf8", "malformed_json", "not_a_json_object"})
        for reason in r.reasons:
            assert explain(reason)
        if r.record is not None:
            for c, kind in JUDGEMENT_COLUMNS.items():
                v = r.record[c]
                assert v is None or isinstance(v, {"str": str, "int": int, "float": float, "bool": bool}[kind])
                if isinstance(v, float):
                    assert math.isfinite(v)
                if isinstance(v, str):
                    v.encode("utf-8")
    _READER["examples"] += 1
    _READER["lines"] += len(lines)
    report("test_reader_never_raises_on_arbitrary_bytes",
           f"{_READER['examples']} generated files, {_READER['lines']} generated lines")
