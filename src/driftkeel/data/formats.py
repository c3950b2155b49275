"""Loaders for user data in four documented formats, each with a Great Expectations suite and a quarantine.

Formats (docs/real-data.md has examples):

- ``hh``          JSONL(.gz) of HH-RLHF dialogues ``{"chosen", "rejected"}`` (split into prompt / replies)
                  with optional ``id`` (as in ``pairs``: default ``<file>-<line>``, a number is read as text);
- ``pairs``       JSONL(.gz) of ``{"prompt", "chosen", "rejected"}`` with optional ``id``, ``domain``,
                  ``group`` (the prompt's identity: splits are by group, never by row), ``batch`` (int),
                  ``timestamp`` (ISO 8601) and ``split`` (``train`` | ``eval``);
- ``prompts``     JSONL(.gz) of ``{"id", "text"}`` with optional ``timestamp`` and ``category``;
- ``annotations`` a folder with ``labels.csv`` (``item_id, worker_id, label``), optional ``gold.csv``
                  (``item_id, gold``) and ``items.csv`` (``item_id`` + text columns).

Every non-blank line (CSV: data row, of labels.csv, gold.csv and items.csv) is one row in; a UTF-8 byte
order mark before the first line is not part of it; a line ends at LF, CRLF or a lone CR. A file that cannot be read at all (a truncated or
corrupt .gz) raises ValueError naming the file. A row is quarantined, with every reason it has, when
it cannot be read (``invalid_utf8``, ``malformed_json``, ``not_a_json_object``, ``not_text:<field>``,
``duplicate_key:<field>``, ``invalid_unicode:<field>`` (a lone surrogate escape),
``missing_column:<c>`` for a CSV header without a required column, ``csv_extra_values`` for a CSV row
longer than its header, ``unsplittable_dialogue``), when
it fails an expectation of its format's GX suite (reason ``<expectation type>:<column>``, as in the
stream's suite: missing or empty text, unknown label, duplicate id, forbidden characters in an id), or a
cross-row rule (``identical_responses``, ``group_in_both_splits``: a group whose rows say both ``train``
and ``eval`` -- the first used row naming a split decides, rows without a split follow it (in
driftkeel.data.prepare) --, ``worker_single_judgement``: a worker who judged only one item in the file,
whose reliability cannot be estimated; gold.csv: ``unknown_gold_item``, ``duplicate_gold_item``;
items.csv: a missing / empty item_id (the not-null / regex reasons), ``unknown_item`` (no used judgement),
``duplicate_item``: a second row for an item).
Duplicates (ids; an item judged twice by a worker; gold / items rows of one item): a row is a duplicate
only of an earlier row that is used, so the first occurrence that is otherwise valid is kept (a bad first
copy does not take the id): the duplicate check runs after the row's other reasons are known, in one
file-order pass with ``group_in_both_splits`` (annotations: after ``worker_single_judgement``, which
counts a worker's distinct items).
Asserted: ``rows_in == rows_used + rows_quarantined``.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import os
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from driftkeel.config import SOURCE_NAME_MAX
from driftkeel.data.loaders import split_dialogue
from driftkeel.validation.suite import BAD_ID_CHARS, CONTROL_CHARS, MAX_ID_CHARS, NOT_BLANK, reason_of

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

ISO_8601 = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?$"
RAW_MAX_CHARS = 500
_SURROGATE = re.compile("[\udc80-\udcff]")     # a byte that was not UTF-8 (decoded with surrogateescape)
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # "\\ud800" escapes in JSON: valid JSON, not encodable text
_NOT_JSONL = (".parquet", ".pq", ".csv", ".tsv", ".xlsx", ".xls", ".zip", ".arrow", ".feather", ".pkl",
              ".pickle", ".npy", ".npz", ".h5", ".hdf5", ".avro", ".orc")
PAIR_FIELDS = ("id", "prompt", "chosen", "rejected", "domain", "group", "batch", "timestamp", "split")
PROMPT_FIELDS = ("id", "text", "timestamp", "category")
LABEL_FIELDS = ("item_id", "worker_id", "label")
GOLD_FIELDS = ("item_id", "gold")
SPLITS = ("train", "eval")

MESSAGES = {
    "invalid_utf8": "the line is not UTF-8 text",
    "malformed_json": "the line is not one complete JSON value",
    "not_a_json_object": "the line is JSON but not an object",
    "not_text": "this field must be a string",
    "not_int": "this field must be an integer",
    "duplicate_key": "this field is given twice in the JSON object (which one is meant?)",
    "invalid_unicode": "this field holds a lone surrogate escape (e.g. \\ud800): not encodable text",
    "missing_column": "the CSV header lacks this required column (wrong columns)",
    "csv_extra_values": "the CSV row has more values than the header has columns (an unquoted comma?)",
    "duplicate_gold_item": "an earlier gold.csv row already gives this item's gold label (the first is kept)",
    "duplicate_item": "an earlier items.csv row already gives this item's text (the first is kept)",
    "unknown_item": "items.csv row for an item that has no used judgement (none, or all quarantined)",
    "unsplittable_dialogue": "chosen/rejected are not two dialogues sharing every turn but the last "
                             "'\\n\\nAssistant:' turn (which must end the dialogue: no Human turn after it)",
    "identical_responses": "chosen and rejected are the same text (up to leading/trailing whitespace)",
    "timestamp_not_an_instant": "timestamp in ISO 8601 form but no point in time (e.g. month 13)",
    "group_in_both_splits": "this group (prompt) also has rows in the other split (the first row's split wins)",
    "worker_single_judgement": "this worker has only one judgement in the file (no reliability estimate)",
    "unknown_gold_item": "gold label for an item that has no used judgement (none, or all quarantined)",
    "expect_column_values_to_not_be_null": "this field is missing or null (wrong columns?)",
    "expect_column_values_to_match_regex": "this field is empty/blank or not in the expected format",
    "expect_column_values_to_not_match_regex": "forbidden characters (control characters; in ids also "
                                               "whitespace, / \\ or a leading .)",
    "expect_column_value_lengths_to_be_between": "this field is too long",
    "expect_column_values_to_be_unique": "duplicate id: an earlier used row has it (the first valid row is kept)",
    "expect_compound_columns_to_be_unique": "this worker already judged this item in an earlier used row "
                                            "(the first valid row is kept)",
    "expect_column_values_to_be_in_set": "value not allowed (unknown label or split)",
    "expect_column_values_to_be_dateutil_parseable": "not a real date and time",
}


def explain(reason: str) -> str:
    kind, _, column = reason.partition(":")
    text = MESSAGES.get(kind, kind)
    return f"{column}: {text}" if column else text


@dataclass
class FormatResult:
    """Rows of one source that passed (``rows``: dicts) and the quarantine (one record per bad row)."""
    format: str
    source_file: str
    rows: list[dict] = field(default_factory=list)
    quarantine: list[dict] = field(default_factory=list)
    rows_in: int = 0
    gold: dict[str, str] = field(default_factory=dict)      # annotations: item_id -> raw gold label
    items: dict[str, str] = field(default_factory=dict)     # annotations: item_id -> text (items.csv)
    labels: list[str] = field(default_factory=list)         # annotations: the two labels (a, b)
    extra: dict = field(default_factory=dict)               # other accounting (gold rows ...)

    @property
    def rows_used(self) -> int:
        return len(self.rows) + self.extra.get("gold_rows_used", 0) + self.extra.get("items_rows_used", 0)

    def check(self) -> None:
        if self.rows_in != self.rows_used + len(self.quarantine):   # survives python -O
            raise AssertionError(f"{self.source_file}: rows_in {self.rows_in} != used {self.rows_used} "
                                 f"+ quarantined {len(self.quarantine)}")

    def counts(self) -> dict:
        reasons = Counter(r for q in self.quarantine for r in q["reasons"])
        return {"format": self.format, "source_file": self.source_file, "rows_in": self.rows_in,
                "rows_used": self.rows_used, "rows_quarantined": len(self.quarantine),
                "reasons": dict(sorted(reasons.items())), **self.extra}


@dataclass
class _Row:
    line_no: int
    raw: str
    record: dict | None = None
    reasons: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- reading
def _open_bytes(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _read_jsonl(path: Path, fields: tuple[str, ...], limit: int | None, ints: tuple[str, ...] = ()) -> list[_Row]:
    """The rows of a JSONL(.gz) file; a file that cannot be read (e.g. a truncated .gz) is a ValueError."""
    try:
        return _read_jsonl_rows(path, fields, limit, ints)
    except EOFError:
        raise ValueError(f"{path}: the gzip data ends early (a truncated or partly downloaded file?)") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path}: not valid gzip data: {exc} (corrupt, bytes after the end of the gzip "
                         "data, or not gzip at all)") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _check_file_type(path: Path, fmt: str) -> None:
    """JSON Lines only: a table or archive file would be "read" line by line as bytes, giving counts
    that mean nothing. Refused by name (.parquet, .csv, ...) or by its first bytes (Parquet, zip)."""
    name = path.name.lower()
    if name.endswith(_NOT_JSONL):
        raise ValueError(f"{path}: the {fmt} format reads JSON Lines (.jsonl or .jsonl.gz), not "
                         f"{name[name.rfind('.'):]} files: convert it (e.g. pandas.read_parquet(...).to_json(..., "
                         "orient='records', lines=True))")
    if path.is_file():
        with path.open("rb") as fh:
            head = fh.read(4)
        if head in (b"PAR1", b"PK\x03\x04"):
            raise ValueError(f"{path}: a {'Parquet' if head == b'PAR1' else 'zip'} file, not JSON Lines: the "
                             f"{fmt} format reads .jsonl or .jsonl.gz")


def _read_jsonl_rows(path: Path, fields: tuple[str, ...], limit: int | None, ints: tuple[str, ...]) -> list[_Row]:
    from driftkeel.validation.reader import _object_hook, split_lines   # the stream reader's duplicate-key hook

    rows: list[_Row] = []
    with _open_bytes(path) as fh:
        for line_no, raw in split_lines(fh):   # CRLF, LF or a lone CR ends a line; a BOM is not part of it
            if not raw.strip():
                continue
            if limit is not None and len(rows) >= limit:
                break
            row = _Row(line_no, raw[:RAW_MAX_CHARS].decode("utf-8", "replace"))
            rows.append(row)
            try:
                obj = json.loads(raw.decode("utf-8"), object_pairs_hook=_object_hook)
            except UnicodeDecodeError:
                row.reasons.append("invalid_utf8")
                continue
            except (ValueError, RecursionError):     # JSONDecodeError, or nesting past the recursion limit
                row.reasons.append("malformed_json")
                continue
            if not isinstance(obj, dict):
                row.reasons.append("not_a_json_object")
                continue
            row.reasons += [f"duplicate_key:{k}" for k in getattr(obj, "duplicates", ()) if k in fields]
            rec = {}
            for f in fields:
                v = obj.get(f)
                if f in ints:
                    if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                        row.reasons.append(f"not_int:{f}")
                        v = None
                elif isinstance(v, (int, float)) and not isinstance(v, bool) and f in ("id", "group"):
                    if isinstance(v, float) and not math.isfinite(v):
                        row.reasons.append(f"not_text:{f}")   # NaN / Infinity / 1e400: no id
                        v = None
                    else:
                        v = str(v)                  # numeric ids are fine as text
                elif v is not None and not isinstance(v, str):
                    row.reasons.append(f"not_text:{f}")
                    v = None
                elif isinstance(v, str) and _LONE_SURROGATE.search(v):
                    row.reasons.append(f"invalid_unicode:{f}")   # "\\ud800" in the JSON: no text
                    v = None
                rec[f] = v
            rec["_obj"] = obj
            row.record = rec
    return rows


def _csv_records(reader):
    """(physical line number where the record starts, values) for every record of a csv.reader (a
    quoted field may span several lines, so record numbers are not line numbers)."""
    start = 1
    for values in reader:
        yield start, values
        start = reader.line_num + 1


def _read_csv(path: Path, required: tuple[str, ...], limit: int | None) -> tuple[list[_Row], list[str]]:
    # bytes that are not UTF-8 become lone surrogates (surrogateescape): the rows holding them are
    # quarantined as invalid_utf8 instead of being read with replacement characters
    text = path.read_bytes().decode("utf-8-sig", "surrogateescape")
    # newline="": the csv module sees the line ends itself (CRLF, LF, a lone CR; line breaks inside
    # quoted fields kept); no field-size limit of its own (a long item text is a text, not an error)
    csv.field_size_limit(2**31 - 1)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        yield_rows = list(_csv_records(reader))
    except csv.Error as exc:
        raise ValueError(f"{path}: not readable as CSV after line {reader.line_num}: {exc}") from None
    header = [h.strip() for h in yield_rows[0][1]] if yield_rows else []
    missing = [c for c in required if c not in header]
    rows: list[_Row] = []
    for line_no, values in yield_rows[1:]:
        if not any(v.strip() for v in values):
            continue
        if limit is not None and len(rows) >= limit:
            break
        bad_bytes = any(_SURROGATE.search(v) for v in values)
        if bad_bytes:       # flagged; the values themselves get U+FFFD so nothing downstream sees surrogates
            values = [v.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for v in values]
        row = _Row(line_no, ",".join(values)[:RAW_MAX_CHARS])
        row.record = {c: (values[header.index(c)] if c in header and header.index(c) < len(values) else None)
                      for c in header}
        for c in required:
            row.record.setdefault(c, None)
        row.reasons += [f"missing_column:{c}" for c in missing]
        if bad_bytes:
            row.reasons.append("invalid_utf8")
        if len(values) > len(header):
            row.reasons.append("csv_extra_values")      # e.g. an unquoted comma inside a field
        rows.append(row)
    return rows, missing


# ----------------------------------------------------------------------------- GX
def run_expectations(frame: pd.DataFrame, expectations: list, name: str) -> dict[str, list]:
    """Run GX 1.x expectations on `frame` (ephemeral context); reason -> index labels of failing rows."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    if frame.empty:
        return {}
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_def = (ctx.data_sources.add_pandas(name).add_dataframe_asset("rows")
                 .add_batch_definition_whole_dataframe("all"))
    suite = ctx.suites.add(gx.ExpectationSuite(name=f"driftkeel_{name}", expectations=expectations))
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch_def, suite=suite))
    res = vd.run(batch_parameters={"dataframe": frame}, result_format="COMPLETE")
    out: dict[str, list] = {}
    for r in res.results:
        cfg = r.expectation_config
        reason = reason_of(cfg.type, cfg.kwargs.get("column") or cfg.kwargs.get("column_list"))
        info = r.exception_info or {}
        if info.get("raised_exception"):
            raise RuntimeError(f"GX expectation {reason} raised: {info.get('exception_message')}")
        out[reason] = list(r.result.get("unexpected_index_list") or [])
    return out


def _apply(rows: list[_Row], frame_rows: list[_Row], frame: pd.DataFrame, unexpected: dict[str, list],
           unique_keys: dict[str, str | list]) -> dict[str, set]:
    """Add GX reasons to rows, except the uniqueness ones: those are returned (reason -> positions in
    `frame_rows` of the rows sharing a key) for :func:`_mark_duplicates`, once every other reason is known."""
    deferred: dict[str, set] = {}
    for reason, idx in unexpected.items():
        if reason in unique_keys:
            deferred[reason] = set(idx)
            continue
        for i in idx:
            if reason.startswith("expect_column_values_to_not_be_null:"):
                col = reason.split(":", 1)[1]
                if any(r.endswith(":" + col) and r.startswith(("not_text", "not_int", "missing_column",
                                                               "invalid_unicode"))
                       for r in frame_rows[i].reasons) or (
                        col == "prompt" and "unsplittable_dialogue" in frame_rows[i].reasons) or (
                        col == "prompt" and frame_rows[i].record.get("_hh")
                        and frame_rows[i].record.get("prompt") is None):
                    continue     # hh has no prompt field: its prompt comes from chosen / rejected
            frame_rows[i].reasons.append(reason)
    return deferred


def _mark_duplicates(frame_rows: list[_Row], shared: set, reason: str, key: tuple[str, ...], then=None) -> None:
    """Duplicates in file order: a row (of the GX-flagged `shared`) is a duplicate only of an earlier row
    that is used, so the first occurrence that is otherwise valid is kept. `then(row)` adds the cross-row
    reasons that must also see only earlier used rows (it runs on rows with no reason so far)."""
    used: set = set()
    for i, r in enumerate(frame_rows):
        k = tuple(r.record.get(c) for c in key)
        if i in shared and k in used:
            r.reasons.append(reason)
        if then is not None and not r.reasons:
            then(r)
        if not r.reasons:
            used.add(k)


# a row id becomes "<source name>:<id>#<n>" (comparison and judgement ids, at most MAX_ID_CHARS long);
# ids that would not fit are quarantined here, where the row is read, not later in validate
USER_ID_MAX = MAX_ID_CHARS - SOURCE_NAME_MAX - 8


def _text_expectations(required: list[str], texts: list[str], ids: list[str], max_id: int = USER_ID_MAX) -> list:
    import great_expectations.expectations as gxe

    ex = [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in required]
    ex += [gxe.ExpectColumnValuesToMatchRegex(column=c, regex=NOT_BLANK) for c in [*ids, *texts]]
    ex += [gxe.ExpectColumnValuesToNotMatchRegex(column=c, regex=CONTROL_CHARS) for c in texts]
    ex += [gxe.ExpectColumnValuesToNotMatchRegex(column=c, regex=BAD_ID_CHARS) for c in ids]
    ex += [gxe.ExpectColumnValueLengthsToBeBetween(column=c, max_value=max_id) for c in ids]
    return ex


def _sort_rows(res: FormatResult, rows: list[_Row], source_file: str, keep) -> int:
    """Each row with a reason -> a quarantine record of `res` (naming `source_file`); each other row ->
    `keep(row)`. Returns the number kept."""
    kept = 0
    for r in rows:
        if r.reasons:
            res.quarantine.append({"format": res.format, "source_file": source_file, "line_no": r.line_no,
                                   "reasons": list(r.reasons), "message": "; ".join(map(explain, r.reasons)),
                                   "raw": r.raw})
        else:
            kept += 1
            keep(r)
    return kept


def _finish(res: FormatResult, rows: list[_Row], build) -> FormatResult:
    res.rows_in = len(rows)
    _sort_rows(res, rows, res.source_file, lambda r: res.rows.append(build(r.record)))
    res.check()
    return res


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


# ----------------------------------------------------------------------------- pairs and hh
def _pairs_checks(path: Path, fmt: str, rows: list[_Row]) -> FormatResult:
    import great_expectations.expectations as gxe

    stem = path.name.split(".")[0]
    for r in rows:
        rec = r.record
        if rec is None:
            continue
        if rec.get("id") is None and "id" not in rec["_obj"]:
            rec["id"] = f"{stem}-{r.line_no:06d}"          # no id field: the line number is the id
        if (rec.get("group") is None or not str(rec["group"]).strip()) and isinstance(rec.get("prompt"), str):
            rec["group"] = _digest(rec["prompt"])          # no (or a blank) group: the prompt text is the group
        rec["_line_no"] = r.line_no
    obj_rows = [r for r in rows if r.record is not None]
    cols = ["id", "prompt", "chosen", "rejected", "group", "split", "timestamp"]
    frame = pd.DataFrame({c: pd.Series([r.record.get(c) for r in obj_rows], dtype="object") for c in cols})
    ex = _text_expectations(["id", "prompt", "chosen", "rejected"], ["prompt", "chosen", "rejected"], ["id"])
    ex += [gxe.ExpectColumnValuesToBeUnique(column="id"),
           gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
           gxe.ExpectColumnValuesToMatchRegex(column="timestamp", regex=ISO_8601)]
    unexpected = run_expectations(frame, ex, fmt)
    unique = reason_of("expect_column_values_to_be_unique", "id")
    shared = _apply(rows, obj_rows, frame, unexpected, {unique: "id"})
    for r in obj_rows:
        rec = r.record
        c, j = rec.get("chosen"), rec.get("rejected")
        if isinstance(c, str) and isinstance(j, str) and c.strip() == j.strip():
            r.reasons.append("identical_responses")
        ts = rec.get("timestamp")
        if ts is not None and not r.reasons and _parse_ts(ts) is None:
            r.reasons.append("timestamp_not_an_instant")
    first_split: dict[str, str] = {}

    def split_of_group(r: _Row) -> None:    # the first used row naming a split decides its group's split
        rec = r.record
        if rec.get("split") in SPLITS and rec.get("group") is not None:
            if first_split.setdefault(rec["group"], rec["split"]) != rec["split"]:
                r.reasons.append("group_in_both_splits")
    _mark_duplicates(obj_rows, shared.get(unique, set()), unique, ("id",), then=split_of_group)

    def build(rec: dict) -> dict:
        return {"id": rec["id"], "prompt": rec["prompt"], "chosen": rec["chosen"], "rejected": rec["rejected"],
                "domain": rec.get("domain") or stem, "group": rec["group"], "batch": rec.get("batch"),
                "timestamp": rec.get("timestamp"), "split": rec.get("split"), "line_no": rec["_line_no"]}
    return _finish(FormatResult(fmt, str(path)), rows, build)


def _parse_ts(text: str):
    from datetime import datetime, timezone

    if not re.match(ISO_8601, text):
        return None
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        return None
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts


def load_pairs(path: str | Path, limit: int | None = None) -> FormatResult:
    """Preference pairs ``{"prompt","chosen","rejected"}`` (+ optional id, domain, group, batch, timestamp, split)."""
    path = Path(path)
    _check_file_type(path, "pairs")
    return _pairs_checks(path, "pairs", _read_jsonl(path, PAIR_FIELDS, limit, ints=("batch",)))


def load_hh(path: str | Path, limit: int | None = None) -> FormatResult:
    """HH-RLHF dialogues ``{"chosen","rejected"}`` (+ optional id) -> pairs (prompt ends with "\\n\\nAssistant:")."""
    path = Path(path)
    _check_file_type(path, "hh")
    rows = _read_jsonl(path, ("id", "chosen", "rejected"), limit)
    for r in rows:
        rec = r.record
        if rec is not None:
            rec["_hh"] = True
        if rec is None or rec["chosen"] is None or rec["rejected"] is None:
            continue
        try:
            prompt, chosen, rejected = split_dialogue(rec["chosen"], rec["rejected"])
            if "\n\nHuman:" in chosen or "\n\nHuman:" in rejected:
                raise ValueError("a Human turn after the last Assistant turn")
        except ValueError:
            r.reasons.append("unsplittable_dialogue")
            prompt, chosen, rejected = None, rec["chosen"], rec["rejected"]
        rec.update(prompt=prompt, chosen=chosen, rejected=rejected)
    return _pairs_checks(path, "hh", rows)


# ----------------------------------------------------------------------------- prompts
def load_prompts(path: str | Path, limit: int | None = None) -> FormatResult:
    """A prompt stream ``{"id","text"}`` (+ optional timestamp, category)."""
    import great_expectations.expectations as gxe

    path = Path(path)
    _check_file_type(path, "prompts")
    rows = _read_jsonl(path, PROMPT_FIELDS, limit)
    obj_rows = [r for r in rows if r.record is not None]
    frame = pd.DataFrame({c: pd.Series([r.record.get(c) for r in obj_rows], dtype="object")
                          for c in PROMPT_FIELDS})
    ex = _text_expectations(["id", "text"], ["text"], ["id"])
    ex += [gxe.ExpectColumnValuesToBeUnique(column="id"),
           gxe.ExpectColumnValuesToMatchRegex(column="timestamp", regex=ISO_8601)]
    unexpected = run_expectations(frame, ex, "prompts")
    unique = reason_of("expect_column_values_to_be_unique", "id")
    shared = _apply(rows, obj_rows, frame, unexpected, {unique: "id"})
    for r in obj_rows:
        ts = r.record.get("timestamp")
        if ts is not None and not r.reasons and _parse_ts(ts) is None:
            r.reasons.append("timestamp_not_an_instant")
    _mark_duplicates(obj_rows, shared.get(unique, set()), unique, ("id",))
    stem = path.name.split(".")[0]
    return _finish(FormatResult("prompts", str(path)), rows,
                   lambda rec: {"id": rec["id"], "text": rec["text"], "timestamp": rec.get("timestamp"),
                                "category": rec.get("category") or stem})


# ----------------------------------------------------------------------------- annotations
def load_annotations(folder: str | Path, labels: list[str] | None = None, limit: int | None = None) -> FormatResult:
    """Multi-annotator judgements: labels.csv (+ gold.csv, items.csv). `labels`: the two allowed labels
    in a / b order (default: the sorted distinct gold labels, else those of labels.csv when two)."""
    import great_expectations.expectations as gxe

    folder = Path(folder)
    if not folder.is_dir():
        hint = f" (its folder is {folder.parent})" if folder.name in ("labels.csv", "gold.csv", "items.csv") else ""
        raise ValueError(f"{folder}: the annotations format reads a folder holding labels.csv (+ gold.csv, "
                         f"items.csv), not a file{hint}")
    if not (folder / "labels.csv").is_file():
        raise ValueError(f"{folder}: no labels.csv in this folder (columns item_id, worker_id, label)")
    res = FormatResult("annotations", str(folder / "labels.csv"))
    gold_rows, gold_missing = ([], [])
    if (folder / "gold.csv").exists():
        gold_rows, gold_missing = _read_csv(folder / "gold.csv", GOLD_FIELDS, None)
    rows, missing = _read_csv(folder / "labels.csv", LABEL_FIELDS, limit)
    if labels is None:
        labels = _infer_labels(folder, rows, missing, gold_rows)
    if len(labels) != 2:
        raise ValueError(f"{folder}: `labels` must name exactly two labels (a, b), got {labels}")
    res.labels = list(labels)
    frame = pd.DataFrame({c: pd.Series([r.record.get(c) for r in rows], dtype="object") for c in LABEL_FIELDS})
    ex = _text_expectations(list(LABEL_FIELDS), [], ["item_id"])
    ex += _text_expectations([], [], ["worker_id"], max_id=MAX_ID_CHARS)     # annotator ids as they are
    ex += [gxe.ExpectColumnValuesToBeInSet(column="label", value_set=list(labels)),
           gxe.ExpectCompoundColumnsToBeUnique(column_list=["item_id", "worker_id"])]
    unexpected = run_expectations(frame, ex, "annotations") if not missing else {}
    once = reason_of("expect_compound_columns_to_be_unique", ["item_id", "worker_id"])
    shared = _apply(rows, rows, frame, unexpected, {once: ["item_id", "worker_id"]})
    # a worker's items, then duplicates: a worker who judged one item (even twice) has no reliability
    # estimate, and a worker who judged two items keeps a first valid judgement of each
    per_worker = Counter(w for _, w in {(r.record["item_id"], r.record["worker_id"]) for r in rows if not r.reasons})
    for r in rows:
        if not r.reasons and per_worker[r.record["worker_id"]] < 2:
            r.reasons.append("worker_single_judgement")
    _mark_duplicates(rows, shared.get(once, set()), once, ("item_id", "worker_id"))
    _finish(res, rows, lambda rec: {"item_id": rec["item_id"], "worker_id": rec["worker_id"], "label": rec["label"]})

    # gold.csv: its own rows in / used / quarantined (an unknown gold label or item is a quarantine row)
    judged = {r["item_id"] for r in res.rows}
    for r in gold_rows:
        rec = r.record
        if not r.reasons and rec.get("gold") not in labels:
            r.reasons.append("expect_column_values_to_be_in_set:gold")
        if not r.reasons and rec.get("item_id") not in judged:
            r.reasons.append("unknown_gold_item")
        if not r.reasons and rec["item_id"] in res.gold:
            r.reasons.append("duplicate_gold_item")
        if not r.reasons:
            res.gold[rec["item_id"]] = rec["gold"]       # checked row by row: a later duplicate sees it
    g_used = _sort_rows(res, gold_rows, str(folder / "gold.csv"), lambda r: None)
    g_quarantined = len(gold_rows) - g_used
    res.rows_in += len(gold_rows)
    res.extra = {"gold_rows_in": len(gold_rows), "gold_rows_used": g_used, "gold_rows_quarantined": g_quarantined}
    res.check()

    # items.csv: its own rows in / used / quarantined, like gold.csv (the first valid row of an item is kept)
    item_rows = _read_csv(folder / "items.csv", ("item_id",), None)[0] if (folder / "items.csv").exists() else []
    for r in item_rows:
        item = r.record.get("item_id")
        if not r.reasons and item is None:
            r.reasons.append("expect_column_values_to_not_be_null:item_id")
        elif not r.reasons and not re.search(NOT_BLANK, item):
            r.reasons.append("expect_column_values_to_match_regex:item_id")
        if not r.reasons and item not in judged:
            r.reasons.append("unknown_item")
        if not r.reasons and item in res.items:
            r.reasons.append("duplicate_item")
        if not r.reasons:                                # checked row by row: a later duplicate sees it
            res.items[item] = "\n".join(f"{k}: {v}" for k, v in r.record.items()
                                         if k != "item_id" and v and v.strip())
    i_used = _sort_rows(res, item_rows, str(folder / "items.csv"), lambda r: None)
    i_quarantined = len(item_rows) - i_used
    res.rows_in += len(item_rows)
    res.extra |= {"items_rows_in": len(item_rows), "items_rows_used": i_used, "items_rows_quarantined": i_quarantined}
    res.check()
    return res


def _infer_labels(folder: Path, rows: list[_Row], missing: list[str], gold_rows: list[_Row]) -> list[str]:
    """The two labels (a, b order: sorted) when the source does not set `labels`: the distinct labels of
    labels.csv and gold.csv together. When there are more, the two most frequent are the labels if
    every other one is a stray (at most a quarter as frequent as the rarer of the two, e.g. a typo):
    its rows are quarantined as unknown labels. Otherwise (e.g. a third real label) it is an error."""
    if missing:
        raise ValueError(f"{folder / 'labels.csv'}: the header lacks {missing} (the columns are item_id, "
                         "worker_id, label; spaces around a name are ignored)")
    counts = Counter(r.record["label"] for r in rows if r.record.get("label"))
    counts.update(r.record["gold"] for r in gold_rows if r.record.get("gold"))
    if len(counts) == 2:
        return sorted(counts)
    top = counts.most_common()
    if len(top) > 2 and top[2][1] * 4 <= top[1][1]:
        return sorted(k for k, _ in top[:2])      # stray labels: quarantined as unknown labels
    raise ValueError(f"{folder}: cannot infer two labels from labels.csv and gold.csv (found, with counts: "
                     f"{top[:10]}); set `labels: [<a>, <b>]` for this source")


LOADERS = {"hh": load_hh, "pairs": load_pairs, "prompts": load_prompts}
