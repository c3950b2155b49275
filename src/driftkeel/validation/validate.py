"""validate: stream files -> clean judgements + quarantine, with reasons and counts.

Pipeline of one call to :func:`validate_stream`:

1. read every line robustly and coerce types (:mod:`driftkeel.validation.reader`); blank lines are
   skipped and counted (``rows_blank``), every other line is one row in;
2. run the Great Expectations suite (:mod:`driftkeel.validation.suite`) on the typed frame of all
   JSON-object rows (rows with a failed coercion included, so they collect every other reason too;
   the not-null reason of a field whose coercion failed is not repeated);
3. checks that GX has no expectation for, in this order:
   ``timestamp_not_an_instant`` (passes the format checks, but Python cannot place it in time, e.g. an
   offset of +25:00), ``timestamp_in_future`` (later than now + ``validate.max_future_skew_s``),
   ``timestamp_out_of_order`` (earlier than every clean row of the previous stream file: it cannot
   belong to this time window; rows out of order *within* a file are normal and kept),
   ``comparison_mismatch`` (a judgement whose prompt_id / prompt / responses differ from those of the
   first clean judgement of the same ``comparison_id``, for the rows after that one);
4. a row with no reason is clean; every other row is quarantined with all its reasons.

Duplicate ``judgement_id`` (and a second judgement of one comparison by one annotator): the first
occurrence (file order, then line order) is kept, later ones are quarantined with
``expect_column_values_to_be_unique:judgement_id`` (``expect_compound_columns_to_be_unique:
comparison_id/annotator_id``); the first is kept even when it is itself quarantined for another
reason (the id is still taken).

Every rule lets earlier rows decide about later ones, never the reverse: appending a new stream file
never changes where an earlier row goes, so quarantine.jsonl only grows (append-only) and each record
keeps its ``quarantine_id`` (a hash of file, line number and the line's bytes). The one exception is
``timestamp_in_future``: such a row becomes valid once its time has come.

Every reason has a one-line explanation (:func:`explain`). Invariant (asserted):
``rows_in == rows_clean + rows_quarantined``.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import pandas as pd

from driftkeel.data.schemas import JUDGEMENT_COLUMNS
from driftkeel.validation.reader import LINE_REASONS, RawRow, coerce_reason_names, read_rows
from driftkeel.validation.suite import (
    ANNOTATOR_ONCE,
    COMPOUND_UNIQUE,
    UNIQUE,
    expectation_reasons,
    keep_first_duplicates,
    reason_of,
    run_suite,
)

if TYPE_CHECKING:
    from driftkeel.config import ValidateParams

CLEAN_COLUMNS = [*JUDGEMENT_COLUMNS, "source_file", "line_no"]
_FRAME_DTYPES = {"str": "object", "int": "Int64", "float": "float64", "bool": "boolean"}
_CLEAN_DTYPES = {"str": "str", "int": "int64", "float": "float64", "bool": "bool"}
_BATCH_RE = re.compile(r"batch_(\d+)")
FUTURE, OUT_OF_ORDER, MISMATCH = "timestamp_in_future", "timestamp_out_of_order", "comparison_mismatch"
NOT_AN_INSTANT = "timestamp_not_an_instant"
CROSS_ROW_REASONS = (NOT_AN_INSTANT, FUTURE, OUT_OF_ORDER, MISMATCH)
COMPARISON_CONTENT = ("prompt_id", "prompt", "response_a", "response_b")
_COMPOUND = reason_of(COMPOUND_UNIQUE, ANNOTATOR_ONCE)

# what each reason means, by its prefix (the part before ':'); the column follows the ':'
_REASON_TEXT = {
    "invalid_utf8": "the line is not UTF-8 text",
    "malformed_json": "the line is not one complete JSON value",
    "not_a_json_object": "the line is JSON but not an object",
    "coerce_type": "wrong type for this field",
    "non_finite": "NaN or infinity for this number",
    "invalid_unicode": "a lone surrogate (\\udXXX) in this string",
    "duplicate_key": "this field is named twice in the object",
    "expect_column_values_to_not_be_null": "this field is missing or null",
    "expect_column_values_to_match_regex": "this field is blank or not in the expected format",
    "expect_column_values_to_not_match_regex": "forbidden characters in this field (control "
                                               "characters; in ids also whitespace, / \\ or a leading .)",
    "expect_column_value_lengths_to_be_between": "this field is too short or too long",
    "expect_column_values_to_be_unique": "this id was already used by an earlier row (the first is kept)",
    COMPOUND_UNIQUE: "this annotator already judged this comparison in an earlier row (the first is kept)",
    "expect_column_values_to_be_in_set": "value not allowed (unknown label or annotator, or flagged "
                                         "golden but not in golden.jsonl)",
    "expect_column_values_to_not_be_in_set": "comparison is in golden.jsonl but the row says is_golden=false",
    "expect_column_values_to_be_between": "number out of range",
    "expect_column_values_to_be_dateutil_parseable": "not a real date and time",
    NOT_AN_INSTANT: "timestamp passes the format checks but is no point in time (e.g. a UTC offset of 24 h or more)",
    FUTURE: "timestamp later than now (+ validate.max_future_skew_s)",
    OUT_OF_ORDER: "timestamp earlier than every clean row of the previous stream file",
    MISMATCH: "prompt or responses differ from the first judgement of the same comparison_id",
}

# how the validate stage's exit message starts when it judged the DATA bad (too many rows quarantined,
# no rows): the monitoring flow rejects new batches only then, never for an infrastructure failure
# (busy lock, timeout, tracking-store pre-flight, a crash)
DATA_REJECTED = "validate: data rejected:"


def explain(reason: str) -> str:
    """One line saying what a quarantine reason means (raises KeyError for an unknown reason)."""
    kind, _, column = reason.partition(":")
    text = _REASON_TEXT[kind]
    return f"{column}: {text}" if column else text


@dataclass
class ValidationResult:
    clean: pd.DataFrame            # CLEAN_COLUMNS, typed
    quarantine: list[dict]         # quarantine_id, source_file, line_no, judgement_id, reasons, raw
    metrics: dict[str, int]        # flat counts (see module docstring)
    batches: pd.DataFrame          # batch, rows_in, rows_clean, rows_quarantined (batch of the file)
    suite: dict                    # the GX suite as JSON
    expectations: list[dict]       # per expectation: reason, success, unexpected_count
    warnings: list[str] = field(default_factory=list)  # human-readable, e.g. a file with no clean row


def _typed_frame(records: list[dict]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([r[c] for r in records], dtype=_FRAME_DTYPES[k])
                         for c, k in JUDGEMENT_COLUMNS.items()})


def file_batch(path: str | Path, fallback: int) -> int:
    """The batch number in a stream file name (``batch_003.jsonl`` -> 3), else `fallback`."""
    m = _BATCH_RE.search(Path(path).name)
    return int(m.group(1)) if m else fallback


def _display_name(path: Path, relative_to: str | Path | None) -> str:
    if relative_to is not None and path.resolve().is_relative_to(Path(relative_to).resolve()):
        return path.resolve().relative_to(Path(relative_to).resolve()).as_posix()
    return str(path)


def parse_timestamp(text: str | None) -> datetime | None:
    """An ISO 8601 timestamp as an aware datetime (no offset = UTC), or None if it does not parse."""
    if not isinstance(text, str):
        return None
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts


def _cross_row_checks(obj_rows: list[RawRow], frame: pd.DataFrame, params: "ValidateParams",
                      now: datetime) -> None:
    """timestamp_in_future, timestamp_out_of_order, comparison_mismatch (see the module docstring)."""
    limit = now + timedelta(seconds=params.max_future_skew_s)
    stamps = [parse_timestamp(r.record["timestamp"]) for r in obj_rows]
    for row, ts in zip(obj_rows, stamps):
        if ts is None and row.record["timestamp"] is not None and not any(
                r.endswith(":timestamp") for r in row.reasons):
            row.reasons.append(NOT_AN_INSTANT)
        if ts is not None and ts > limit:
            row.reasons.append(FUTURE)
    # out of order: earlier than every clean row of the previous file that has clean rows
    by_file: dict[int, list[int]] = {}
    for i, row in enumerate(obj_rows):
        by_file.setdefault(row.file_index, []).append(i)
    floor = None
    for fi in sorted(by_file):
        for i in by_file[fi]:
            if floor is not None and stamps[i] is not None and stamps[i] < floor:
                obj_rows[i].reasons.append(OUT_OF_ORDER)
        clean = [stamps[i] for i in by_file[fi] if not obj_rows[i].reasons and stamps[i] is not None]
        if clean:
            floor = min(clean)
    # comparison mismatch: the first clean judgement of a comparison defines its content, for the rows
    # AFTER it (file, then line order): a later file never changes an earlier row's quarantine record
    reference: dict[str, tuple[int, tuple]] = {}
    for i, row in enumerate(obj_rows):
        if not row.reasons:
            reference.setdefault(row.record["comparison_id"],
                                 (i, tuple(row.record[c] for c in COMPARISON_CONTENT)))
    for i, row in enumerate(obj_rows):
        ref = reference.get(row.record["comparison_id"])
        if ref is not None and i > ref[0] and tuple(row.record[c] for c in COMPARISON_CONTENT) != ref[1]:
            row.reasons.append(MISMATCH)


def validate_stream(files: Iterable[str | Path], golden: Iterable[str], annotators: Iterable[str],
                    params: "ValidateParams", *, relative_to: str | Path | None = None,
                    now: datetime | None = None) -> ValidationResult:
    """Validate stream files. `golden`: ids of golden comparisons (a gold-label dict works);
    `annotators`: known annotator ids; `relative_to`: record ``source_file`` relative to this folder;
    `now`: the present for ``timestamp_in_future`` (default: the clock)."""
    files = [Path(f) for f in files]
    names = [_display_name(f, relative_to) for f in files]
    rows, blanks = read_rows(files, names)
    obj_rows: list[RawRow] = [r for r in rows if r.record is not None]
    frame = _typed_frame([r.record for r in obj_rows])

    run = run_suite(frame, params, golden_ids=list(golden), annotator_ids=list(annotators))
    unexpected = dict(run.unexpected)
    unexpected[f"{UNIQUE}:judgement_id"] = keep_first_duplicates(frame, unexpected[f"{UNIQUE}:judgement_id"])
    unexpected[_COMPOUND] = keep_first_duplicates(frame, unexpected[_COMPOUND], list(ANNOTATOR_ONCE))
    suite_order = expectation_reasons(params)
    for reason in suite_order:  # reasons of a row in suite order, after the reading/coercion reasons
        kind, column = reason.split(":", 1)
        for i in unexpected.get(reason, []):
            row = obj_rows[i]
            if kind == "expect_column_values_to_not_be_null" and column in row.failed_fields:
                continue  # already quarantined as coerce_type/non_finite for this field
            row.reasons.append(reason)
    _cross_row_checks(obj_rows, frame, params, now or datetime.now(timezone.utc))

    clean_pos = [i for i, r in enumerate(obj_rows) if not r.reasons]
    clean = frame.iloc[clean_pos].reset_index(drop=True)
    clean = clean.astype({c: _CLEAN_DTYPES[k] for c, k in JUDGEMENT_COLUMNS.items()})
    clean["source_file"] = pd.Series([obj_rows[i].source_file for i in clean_pos], dtype="str")
    clean["line_no"] = pd.Series([obj_rows[i].line_no for i in clean_pos], dtype="int64")

    quarantine = [{"quarantine_id": r.row_id, "source_file": r.source_file, "line_no": r.line_no,
                   "judgement_id": (r.record or {}).get("judgement_id"),
                   "reasons": list(r.reasons), "raw": r.raw} for r in rows if r.reasons]

    reason_counts = Counter(reason for r in rows for reason in r.reasons)
    all_reasons = [*LINE_REASONS, *coerce_reason_names(), *suite_order, *CROSS_ROW_REASONS]
    metrics = {"rows_in": len(rows), "rows_clean": len(clean), "rows_quarantined": len(quarantine),
               "rows_blank": sum(blanks.values()), "rows_extra_fields": sum(r.extra_fields for r in rows),
               "n_files": len(files),
               "gx_expectations": len(run.results),
               "gx_failed_expectations": sum(not e["success"] for e in run.results)}
    metrics.update({f"quarantine_{reason}": int(reason_counts.get(reason, 0))
                    for reason in dict.fromkeys([*all_reasons, *sorted(reason_counts)])})
    if metrics["rows_in"] != metrics["rows_clean"] + metrics["rows_quarantined"]:  # survives python -O
        raise AssertionError(f"validate: rows_in != rows_clean + rows_quarantined: {metrics}")

    per_file = [{"batch": file_batch(f, i), "rows_in": 0, "rows_clean": 0, "rows_quarantined": 0}
                for i, f in enumerate(files)]
    for r in rows:
        per_file[r.file_index]["rows_in"] += 1
        per_file[r.file_index]["rows_quarantined" if r.reasons else "rows_clean"] += 1
    batches = pd.DataFrame(per_file, columns=["batch", "rows_in", "rows_clean", "rows_quarantined"])
    batches = batches.groupby("batch", as_index=False).sum().astype("int64")
    warnings = [f"{names[i]}: all {p['rows_in']} rows quarantined" for i, p in enumerate(per_file)
                if p["rows_in"] and not p["rows_clean"]]
    metrics["files_fully_quarantined"] = len(warnings)
    top = reason_counts.most_common(3)
    if top and warnings:
        warnings.append("most frequent reasons: " + "; ".join(f"{n} x {explain(r)}" for r, n in top))

    return ValidationResult(clean=clean[CLEAN_COLUMNS], quarantine=quarantine, metrics=metrics,
                            batches=batches, suite=run.suite, expectations=run.results, warnings=warnings)
