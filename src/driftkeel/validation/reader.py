"""Robust line-by-line reading of the judgement stream, and type coercion.

Every non-blank line of a stream file is one *row in* (``rows_in``). Blank lines (empty or only
whitespace after decoding) are skipped and counted separately (``rows_blank``); they are not rows.

A line is quarantined before any expectation runs when it cannot be read as a record:

- ``invalid_utf8``       the bytes are not UTF-8 (a UTF-8 byte-order mark on line 1 is tolerated);
- ``malformed_json``     not one JSON value (includes truncated lines, absurdly deep nesting);
- ``not_a_json_object``  valid JSON, but not an object (a list, a string, a number, ``null``).

An object line is then coerced field by field to the types in ``JUDGEMENT_COLUMNS``. A missing field
or an explicit ``null`` becomes a missing value (the expectation suite's not-null checks name it).
A value that cannot be coerced becomes missing too and adds a reason:

- ``coerce_type:<field>``  wrong type (e.g. a list for ``prompt``, ``"abc"`` for ``batch``,
  ``3.5`` for ``batch``, ``true`` for ``response_time_s``);
- ``non_finite:<field>``   NaN or +-inf for a float field (JSON ``NaN``/``Infinity`` or ``"nan"``);
- ``invalid_unicode:<field>``  a string with a lone surrogate (a JSON ``"\\ud800"`` escape): valid JSON,
  but not text that UTF-8, parquet or a tokenizer can hold;
- ``duplicate_key:<field>``  the object names a schema field twice (``{"label": "a", "label": "b"}``):
  parsers disagree on which value wins, so neither is trusted.

Coercions that *are* accepted (documented, lossless): an integer for a string field (``123`` ->
``"123"``); an integral float or a decimal string for ``batch`` (``3.0``/``"3"`` -> 3); a numeric
string for ``response_time_s``; ``0``/``1`` and ``"true"``/``"false"`` for ``is_golden``.
Keys outside the schema are ignored (counted in ``rows_extra_fields``).
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from driftkeel.data.schemas import JUDGEMENT_COLUMNS

RAW_MAX_CHARS = 500
LINE_REASONS = ("invalid_utf8", "malformed_json", "not_a_json_object")
_INT_RE = re.compile(r"[+-]?\d+")
_MAX_INT = 2**62
_BOM = b"\xef\xbb\xbf"


@dataclass
class RawRow:
    """One non-blank line of a stream file, as read and coerced."""

    source_file: str
    line_no: int                      # 1-based line number in the file
    file_index: int                   # position of the file in the input list
    raw: str                          # decoded text (invalid bytes escaped), truncated
    record: dict | None = None        # coerced values by JUDGEMENT_COLUMNS name (None: unreadable)
    reasons: list[str] = field(default_factory=list)
    failed_fields: set[str] = field(default_factory=set)
    extra_fields: bool = False
    line_sha256: str = ""             # sha256 of the line's bytes (line ending and BOM excluded)

    @property
    def row_id(self) -> str:
        """A stable id of this line: the same file, line number and bytes give the same id."""
        h = hashlib.sha256(f"{self.source_file}\0{self.line_no}\0{self.line_sha256}".encode())
        return "q-" + h.hexdigest()[:20]


def _truncate(text: str) -> str:
    return text if len(text) <= RAW_MAX_CHARS else text[:RAW_MAX_CHARS]


# ----------------------------------------------------------------------------- coercion
class _Bad(Exception):
    def __init__(self, kind: str):
        self.kind = kind


def _to_str(v: Any) -> str | None:
    if v is None:
        return v
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a "\\udXXX" escape
            raise _Bad("invalid_unicode") from None
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    raise _Bad("coerce_type")


def _to_int(v: Any) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool):
        raise _Bad("coerce_type")
    if isinstance(v, int):
        out = v
    elif isinstance(v, float):
        if not math.isfinite(v) or not v.is_integer():
            raise _Bad("coerce_type")
        out = int(v)
    elif isinstance(v, str) and _INT_RE.fullmatch(v.strip()):
        out = int(v.strip())
    else:
        raise _Bad("coerce_type")
    if abs(out) >= _MAX_INT:
        raise _Bad("coerce_type")
    return out


def _to_float(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool):
        raise _Bad("coerce_type")
    if isinstance(v, (int, float)):
        try:
            out = float(v)
        except OverflowError:
            raise _Bad("non_finite") from None
    elif isinstance(v, str):
        try:
            out = float(v.strip())
        except ValueError:
            raise _Bad("coerce_type") from None
    else:
        raise _Bad("coerce_type")
    if not math.isfinite(out):
        raise _Bad("non_finite")
    return out


def _to_bool(v: Any) -> bool | None:
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0"):
        return v.strip().lower() in ("true", "1")
    raise _Bad("coerce_type")


_COERCE = {"str": _to_str, "int": _to_int, "float": _to_float, "bool": _to_bool}


def coerce_record(obj: dict) -> tuple[dict, list[str], set[str]]:
    """Coerce one JSON object to the judgement schema: (values, reasons, failed fields)."""
    values: dict = {}
    reasons: list[str] = []
    failed: set[str] = set()
    for name, kind in JUDGEMENT_COLUMNS.items():
        try:
            values[name] = _COERCE[kind](obj.get(name))
        except _Bad as bad:
            values[name] = None
            reasons.append(f"{bad.kind}:{name}")
            failed.add(name)
    return values, reasons, failed


def coerce_reason_names() -> list[str]:
    """Every coercion reason that can occur (for stable metric keys)."""
    out = [f"coerce_type:{name}" for name in JUDGEMENT_COLUMNS]
    out += [f"non_finite:{n}" for n, k in JUDGEMENT_COLUMNS.items() if k == "float"]
    out += [f"invalid_unicode:{n}" for n, k in JUDGEMENT_COLUMNS.items() if k == "str"]
    out += [f"duplicate_key:{name}" for name in JUDGEMENT_COLUMNS]
    return out


class _Object(dict):
    """A decoded JSON object that remembers which of its keys appeared more than once."""

    duplicates: tuple = ()


def _object_hook(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) != len(pairs):
        seen: set = set()
        obj.duplicates = tuple(k for k, _ in pairs if k in seen or seen.add(k))
    return obj


# ----------------------------------------------------------------------------- reading
def split_lines(chunks) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes without the line ending) for the lines of a binary stream (`chunks`: its
    b"\n"-terminated pieces, e.g. an open file). A line ends at "\r\n", "\n" or a lone "\r" (old Mac
    files: read as one line they would be one bad row); a raw CR cannot occur inside a JSON value, so
    no JSON row is cut. A UTF-8 byte order mark before the first line is not part of it."""
    n = 0
    for i, line in enumerate(chunks):
        if i == 0 and line.startswith(_BOM):
            line = line[len(_BOM):]
        if line.endswith(b"\n"):
            line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
        for piece in line.split(b"\r"):
            n += 1
            yield n, piece


def iter_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes without the line ending) for every line of a file (see :func:`split_lines`)."""
    with Path(path).open("rb") as fh:
        yield from split_lines(fh)


def read_json_lines(path: str | Path, bad_lines: list | None = None
                    ) -> tuple[list[tuple[int, Any]], dict[str, int]]:
    """Lenient JSONL reading for files that are not the stream (a drift CLI window, the select pool):
    ([(line number, parsed JSON value)] of every non-blank line that is one JSON value, counts of the
    other non-blank lines by reason: ``invalid_utf8``, ``invalid_json``). Values may be any JSON type;
    the caller decides what a non-object is worth. `bad_lines`: a list that gets {"line", "reason",
    "row"} for each of those other lines (row = its first 500 characters)."""
    values: list[tuple[int, Any]] = []
    bad = {"invalid_utf8": 0, "invalid_json": 0}

    def reject(line_no: int, reason: str, text: str) -> None:
        bad[reason] += 1
        if bad_lines is not None:
            bad_lines.append({"line": line_no, "reason": reason, "row": text[:500]})

    for line_no, data in iter_lines(path):
        if not data.strip():
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            reject(line_no, "invalid_utf8", data.decode("utf-8", "replace"))
            continue
        if not text.strip():
            continue
        try:
            values.append((line_no, json.loads(text)))
        except (ValueError, RecursionError):
            reject(line_no, "invalid_json", text)
    return values, bad


def read_rows(files: Iterable[str | Path], names: list[str] | None = None) -> tuple[list[RawRow], dict[int, int]]:
    """Read every stream file; return the non-blank rows and the blank-line count per file index.
    `names`: the ``source_file`` recorded for each file (default: the path as given)."""
    rows: list[RawRow] = []
    blanks: dict[int, int] = {}
    for fi, path in enumerate(files):
        name = names[fi] if names is not None else str(path)
        blanks[fi] = 0
        for line_no, data in iter_lines(path):
            digest = hashlib.sha256(data).hexdigest()
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raw = _truncate(data.decode("utf-8", errors="backslashreplace"))
                rows.append(RawRow(name, line_no, fi, raw, reasons=["invalid_utf8"], line_sha256=digest))
                continue
            if not text.strip():
                blanks[fi] += 1
                continue
            row = RawRow(name, line_no, fi, _truncate(text), line_sha256=digest)
            rows.append(row)
            try:
                obj = json.loads(text, object_pairs_hook=_object_hook)
            except (ValueError, RecursionError):
                row.reasons.append("malformed_json")
                continue
            if not isinstance(obj, dict):
                row.reasons.append("not_a_json_object")
                continue
            row.record, row.reasons, row.failed_fields = coerce_record(obj)
            row.extra_fields = bool(set(obj) - set(JUDGEMENT_COLUMNS))
            dup = [k for k in JUDGEMENT_COLUMNS if k in getattr(obj, "duplicates", ())]
            row.reasons += [f"duplicate_key:{k}" for k in dup]
            row.failed_fields |= set(dup)
            for k in dup:  # neither value is trusted
                row.record[k] = None
    return rows, blanks
