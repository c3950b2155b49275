"""The Great Expectations suite over the typed judgement frame, and running it.

Each expectation is a real GX 1.x expectation; a row failing it is quarantined with the reason
``<expectation type>:<column>`` (e.g. ``expect_column_values_to_be_in_set:label``; a multi-column
expectation joins its columns with ``/``), taken from the expectation's ``unexpected_index_list``
(``result_format="COMPLETE"``: SUMMARY caps it at 20).
An expectation that raises inside GX (``exception_info``) is an error, never a silent pass.

Besides types, nulls, ranges and sets, the suite guards what later code does with the values:
- ids (``judgement_id``, ``comparison_id``, ``prompt_id``, ``annotator_id``) contain no whitespace,
  control character or path separator, do not start with ``.`` and are at most ``MAX_ID_CHARS`` long,
  so an id can never name a file outside its folder or break a log line;
- ``prompt``, ``response_a``, ``response_b`` and ``policy_version`` hold no control characters other
  than tab, newline and carriage return (terminal escapes, NUL);
- one annotator judges one comparison once (``comparison_id`` + ``annotator_id`` unique; the first
  occurrence is kept, like a duplicate ``judgement_id``);
- a comparison listed in data/golden.jsonl is judged with ``is_golden`` true (and a row flagged golden
  is listed there).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

import pandas as pd

from driftkeel.data.schemas import JUDGEMENT_COLUMNS, LABELS

if TYPE_CHECKING:
    from driftkeel.config import ValidateParams

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

SUITE_NAME = "driftkeel_judgements"
ID_COLUMNS = ("judgement_id", "comparison_id", "prompt_id", "annotator_id", "policy_version")
# ISO 8601 date-time: date, 'T' or space, hh:mm[:ss[.fraction]], optional Z or +-hh[:]mm offset
ISO_8601 = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?$"
NOT_BLANK = r"\S"
# anywhere in an id: C0/C1 control characters, space, DEL, Unicode line/paragraph separators, no-break
# space, / and \ ; or a leading dot. A search (not a full match), so no end anchor is needed: it behaves
# the same in Python's re and in RE2 (pyarrow-backed strings).
BAD_ID_CHARS = "[\\x00-\\x20\\x7f-\\x9f\u00a0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff/\\\\]|^\\."
CONTROL_CHARS = "[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]"   # tab, LF and CR are allowed in text
ANY_CONTROL = "[\\x00-\\x1f\\x7f]"   # none at all in a timestamp (not even a trailing newline)
MAX_ID_CHARS = 256
TEXT_COLUMNS = ("prompt", "response_a", "response_b", "policy_version")
UNIQUE = "expect_column_values_to_be_unique"
COMPOUND_UNIQUE = "expect_compound_columns_to_be_unique"
ANNOTATOR_ONCE = ("comparison_id", "annotator_id")   # one judgement per annotator and comparison


def reason_of(expectation_type: str, column: str | list | tuple | None) -> str:
    if isinstance(column, (list, tuple)):
        column = "/".join(column)
    return f"{expectation_type}:{column}" if column else expectation_type


def _columns_of(e) -> str | list | None:
    return getattr(e, "column", None) or getattr(e, "column_list", None)


def build_expectations(params: "ValidateParams", golden_ids: Iterable[str], annotator_ids: Iterable[str]) -> list:
    """The expectation objects, in the order their reasons are reported."""
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    cols = list(JUDGEMENT_COLUMNS)
    ex: list = [gxe.ExpectTableColumnsToMatchSet(column_set=cols, exact_match=True)]
    ex += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in cols]
    ex += [gxe.ExpectColumnValuesToMatchRegex(column=c, regex=NOT_BLANK) for c in ID_COLUMNS]
    path_ids = [c for c in ID_COLUMNS if c not in TEXT_COLUMNS]
    ex += [gxe.ExpectColumnValuesToNotMatchRegex(column=c, regex=BAD_ID_CHARS) for c in path_ids]
    ex += [gxe.ExpectColumnValueLengthsToBeBetween(column=c, max_value=MAX_ID_CHARS) for c in ID_COLUMNS]
    ex += [gxe.ExpectColumnValuesToNotMatchRegex(column=c, regex=CONTROL_CHARS) for c in TEXT_COLUMNS]
    ex += [gxe.ExpectColumnValuesToNotMatchRegex(column="timestamp", regex=ANY_CONTROL)]
    ex += [
        gxe.ExpectColumnValuesToBeUnique(column="judgement_id"),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=list(ANNOTATOR_ONCE)),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=list(LABELS)),
        gxe.ExpectColumnValueLengthsToBeBetween(column="prompt", min_value=params.min_prompt_chars,
                                                max_value=params.max_prompt_chars),
        gxe.ExpectColumnValuesToMatchRegex(column="prompt", regex=NOT_BLANK),
        gxe.ExpectColumnValueLengthsToBeBetween(column="response_a", max_value=params.max_response_chars),
        gxe.ExpectColumnValueLengthsToBeBetween(column="response_b", max_value=params.max_response_chars),
        gxe.ExpectColumnValuesToBeBetween(column="response_time_s", min_value=0,
                                          max_value=params.max_response_time_s),
        gxe.ExpectColumnValuesToBeBetween(column="batch", min_value=0),
        gxe.ExpectColumnValuesToMatchRegex(column="timestamp", regex=ISO_8601),
        gxe.ExpectColumnValuesToBeDateutilParseable(column="timestamp"),
        gxe.ExpectColumnValuesToBeInSet(column="annotator_id", value_set=sorted(set(annotator_ids))),
        # a row flagged golden must have its gold label in data/golden.jsonl
        gxe.ExpectColumnValuesToBeInSet(column="comparison_id", value_set=sorted(set(golden_ids)),
                                        row_condition=Column("is_golden") == True),  # noqa: E712
        # ... and a comparison in data/golden.jsonl must be judged as golden
        gxe.ExpectColumnValuesToNotBeInSet(column="comparison_id", value_set=sorted(set(golden_ids)),
                                           row_condition=Column("is_golden") == False),  # noqa: E712
    ]
    reasons = [reason_of(e.expectation_type, _columns_of(e)) for e in ex]
    assert len(set(reasons)) == len(reasons), "each (expectation, column) must be unique to name reasons"
    return ex


def expectation_reasons(params: "ValidateParams") -> list[str]:
    """Every row-level reason the suite can report (for stable metric keys)."""
    return [r for r in (reason_of(e.expectation_type, _columns_of(e))
                        for e in build_expectations(params, [], [])) if ":" in r]


@dataclass
class SuiteRun:
    suite: dict                         # the suite as JSON (for inspection)
    results: list[dict]                 # per expectation: reason, success, unexpected_count
    unexpected: dict[str, list]         # reason -> index labels of unexpected rows


def run_suite(frame: pd.DataFrame, params: "ValidateParams", golden_ids: Iterable[str],
              annotator_ids: Iterable[str]) -> SuiteRun:
    """Run the suite on `frame` (typed columns of JUDGEMENT_COLUMNS) in an ephemeral GX context."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_def = (ctx.data_sources.add_pandas("stream").add_dataframe_asset("judgements")
                 .add_batch_definition_whole_dataframe("all"))
    # all expectations at once: add_expectation re-serialises the whole suite on every call (O(n^2))
    suite = ctx.suites.add(gx.ExpectationSuite(name=SUITE_NAME,
                                               expectations=build_expectations(params, golden_ids, annotator_ids)))
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name="validate", data=batch_def, suite=suite))
    res = vd.run(batch_parameters={"dataframe": frame}, result_format="COMPLETE")

    results, unexpected = [], {}
    for r in res.results:
        cfg = r.expectation_config
        columns = cfg.kwargs.get("column") or cfg.kwargs.get("column_list")
        reason = reason_of(cfg.type, columns)
        info = r.exception_info or {}
        if info.get("raised_exception"):
            raise RuntimeError(f"GX expectation {reason} raised: {info.get('exception_message')}")
        if columns is None and not r.success:
            raise RuntimeError(f"GX table expectation {reason} failed: frame schema is wrong")
        idx = list(r.result.get("unexpected_index_list") or [])
        if columns is not None:
            unexpected[reason] = idx
        results.append({"reason": reason, "success": bool(r.success), "unexpected_count": len(idx)})
    return SuiteRun(suite=suite.to_json_dict(), results=results, unexpected=unexpected)


def keep_first_duplicates(frame: pd.DataFrame, flagged: list, column: str | list = "judgement_id") -> list:
    """Of the rows GX flags as not unique, drop the first occurrence of each value (it is kept).
    `column`: one column, or several for a compound key."""
    if not flagged:
        return []
    flagged = sorted(flagged)  # frame order (a RangeIndex in file, line order)
    sub = frame.loc[flagged, column]
    firsts = set(sub[~sub.duplicated(keep="first")].index)
    return [i for i in flagged if i not in firsts]
