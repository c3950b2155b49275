"""Reference files the stream is checked against: data/golden.jsonl and data/annotators.jsonl.

These are small, curated files; a bad line in them is an error (raised with file:line), not a row to
quarantine, because every stream row would otherwise be judged against a wrong reference.
"""
from __future__ import annotations

from pathlib import Path

from driftkeel.data.schemas import LABELS
from driftkeel.io import read_jsonl


def read_golden(path: str | Path) -> dict[str, str]:
    """``comparison_id -> gold_label`` from data/golden.jsonl."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: golden file not found (see driftkeel.data.schemas)")
    gold: dict[str, str] = {}
    for i, row in enumerate(read_jsonl(path), 1):
        cid, label = (row.get("comparison_id"), row.get("gold_label")) if isinstance(row, dict) else (None, None)
        if not isinstance(cid, str) or not cid or label not in LABELS:
            raise ValueError(f"{path}: record {i}: need comparison_id (str) and gold_label in {LABELS}")
        if cid in gold and gold[cid] != label:
            raise ValueError(f"{path}: record {i}: conflicting gold labels for {cid!r}")
        gold[cid] = label
    return gold


def read_annotators(path: str | Path) -> set[str]:
    """Known annotator ids from data/annotators.jsonl."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: annotators file not found (see driftkeel.data.schemas)")
    ids: set[str] = set()
    for i, row in enumerate(read_jsonl(path), 1):
        aid = row.get("annotator_id") if isinstance(row, dict) else None
        if not isinstance(aid, str) or not aid:
            raise ValueError(f"{path}: record {i}: need annotator_id (str)")
        ids.add(aid)
    return ids
