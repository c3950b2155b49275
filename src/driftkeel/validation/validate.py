"""validate: stream files -> clean judgements + quarantine, with reasons and counts.

Pipeline of one call to :func:`validate_stream`:

1. read every line robustly and coerce types (:mod:`driftkeel.validation.reader`); blank lines are
   skipped and counted (``rows_blank``), every other line is one row in;
2. run the Great Expectations suite (:mod:`driftkeel.validation.suite`) on the typed frame of all
   JSON-object rows (rows with a failed coercion included, so they collect every other reason too;
   the not-null reason of a field whose coercion failed is not repeated);
3. a row with no reason is clean; every other row is quarantined with all its reasons.

Duplicate ``judgement_id``: the first occurrence (file order, then line order) is kept, later ones are
quarantined with ``expect_column_values_to_be_unique:judgement_id``; the first is kept even when it is
itself quarantined for another reason (the id is still taken).

Invariant (asserted): ``rows_in == rows_clean + rows_quarantined``.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import pandas as pd

from driftkeel.data.schemas import JUDGEMENT_COLUMNS
from driftkeel.validation.reader import LINE_REASONS, RawRow, coerce_reason_names, read_rows
from driftkeel.validation.suite import UNIQUE, expectation_reasons, keep_first_duplicates, run_suite

if TYPE_CHECKING:
    from driftkeel.config import ValidateParams

CLEAN_COLUMNS = [*JUDGEMENT_COLUMNS, "source_file", "line_no"]
_FRAME_DTYPES = {"str": "object", "int": "Int64", "float": "float64", "bool": "boolean"}
_CLEAN_DTYPES = {"str": "str", "int": "int64", "float": "float64", "bool": "bool"}
_BATCH_RE = re.compile(r"batch_(\d+)")


@dataclass
class ValidationResult:
    clean: pd.DataFrame            # CLEAN_COLUMNS, typed
    quarantine: list[dict]         # source_file, line_no, judgement_id, reasons, raw
    metrics: dict[str, int]        # flat counts (see module docstring)
    batches: pd.DataFrame          # batch, rows_in, rows_clean, rows_quarantined (batch of the file)
    suite: dict                    # the GX suite as JSON
    expectations: list[dict]       # per expectation: reason, success, unexpected_count


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


def validate_stream(files: Iterable[str | Path], golden: Iterable[str], annotators: Iterable[str],
                    params: "ValidateParams", *, relative_to: str | Path | None = None) -> ValidationResult:
    """Validate stream files. `golden`: ids of golden comparisons (a gold-label dict works);
    `annotators`: known annotator ids; `relative_to`: record ``source_file`` relative to this folder."""
    files = [Path(f) for f in files]
    names = [_display_name(f, relative_to) for f in files]
    rows, blanks = read_rows(files, names)
    obj_rows: list[RawRow] = [r for r in rows if r.record is not None]
    frame = _typed_frame([r.record for r in obj_rows])

    run = run_suite(frame, params, golden_ids=list(golden), annotator_ids=list(annotators))
    unexpected = dict(run.unexpected)
    unexpected[f"{UNIQUE}:judgement_id"] = keep_first_duplicates(frame, unexpected[f"{UNIQUE}:judgement_id"])
    suite_order = expectation_reasons(params)
    for reason in suite_order:  # reasons of a row in suite order, after the reading/coercion reasons
        kind, column = reason.split(":", 1)
        for i in unexpected.get(reason, []):
            row = obj_rows[i]
            if kind == "expect_column_values_to_not_be_null" and column in row.failed_fields:
                continue  # already quarantined as coerce_type/non_finite for this field
            row.reasons.append(reason)

    clean_pos = [i for i, r in enumerate(obj_rows) if not r.reasons]
    clean = frame.iloc[clean_pos].reset_index(drop=True)
    clean = clean.astype({c: _CLEAN_DTYPES[k] for c, k in JUDGEMENT_COLUMNS.items()})
    clean["source_file"] = pd.Series([obj_rows[i].source_file for i in clean_pos], dtype="str")
    clean["line_no"] = pd.Series([obj_rows[i].line_no for i in clean_pos], dtype="int64")

    quarantine = [{"source_file": r.source_file, "line_no": r.line_no,
                   "judgement_id": (r.record or {}).get("judgement_id"),
                   "reasons": list(r.reasons), "raw": r.raw} for r in rows if r.reasons]

    reason_counts = Counter(reason for r in rows for reason in r.reasons)
    all_reasons = [*LINE_REASONS, *coerce_reason_names(), *suite_order]
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

    return ValidationResult(clean=clean[CLEAN_COLUMNS], quarantine=quarantine, metrics=metrics,
                            batches=batches, suite=run.suite, expectations=run.results)
