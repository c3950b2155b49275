"""The expert-review log: an append-only history of the review queue, with stable ids.

`review_queue.jsonl` is the queue *now*; it is recomputed by every aggregate run, because the
consensus (Dawid-Skene posteriors) moves when new judgements arrive. `review_log.jsonl` keeps every
change of that queue and is only ever appended to (a DVC `persist` output, so `dvc repro` keeps it):

- ``queued``  a comparison entered the queue (with its reasons and confidence at that time);
- ``cleared`` it left the queue: new judgements or a better-calibrated consensus made it confident.

Each queue entry has a ``review_id`` = ``rv-<comparison_id>-<n>`` (the n-th time that comparison was
queued), the same in the queue file and in every event about it; each event has ``event_id``, its
position in the log. Lines already in the log are never rewritten, and a run whose queue did not
change appends nothing. The log is rewritten whole through a temp file + rename (old lines + new ones),
so a kill leaves either the old or the new log, never a torn line.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from driftkeel.io import read_jsonl, write_jsonl

LOG_FIELDS = ["event_id", "review_id", "comparison_id", "event", "reasons", "confidence", "batch",
              "data_batches", "at"]


def read_log(path: str | Path) -> list[dict]:
    """The log's events (empty when the file does not exist yet)."""
    path = Path(path)
    if not path.exists():
        return []
    events = read_jsonl(path)
    for i, ev in enumerate(events):
        if ev.get("event_id") != i or ev.get("event") not in ("queued", "cleared") or not ev.get("review_id"):
            raise ValueError(f"{path}: line {i + 1} is not a review-log event written by driftkeel: {ev!r:.200}. "
                             "The log is append-only; restore it from git/DVC or move it away to start a new one.")
    return events


def open_reviews(events: Iterable[dict]) -> dict[str, dict]:
    """comparison_id -> the `queued` event of its open review (queued and not cleared since)."""
    open_: dict[str, dict] = {}
    for ev in events:
        if ev["event"] == "queued":
            open_[ev["comparison_id"]] = ev
        else:
            open_.pop(ev["comparison_id"], None)
    return open_


def update(events: list[dict], queue: list[dict], data_batches: int, at: str | None = None) -> list[dict]:
    """The events that bring the log in line with `queue` (new ones only; `events` is not modified).

    Also sets ``review_id`` on every queue row (its open review's id)."""
    at = at or datetime.now(timezone.utc).isoformat(timespec="seconds")
    open_ = open_reviews(events)
    times_queued: dict[str, int] = {}
    for ev in events:
        if ev["event"] == "queued":
            times_queued[ev["comparison_id"]] = times_queued.get(ev["comparison_id"], 0) + 1
    new: list[dict] = []

    def add(**fields) -> dict:
        ev = {"event_id": len(events) + len(new), **fields, "data_batches": int(data_batches), "at": at}
        new.append({k: ev.get(k) for k in LOG_FIELDS})
        return ev

    in_queue = {row["comparison_id"] for row in queue}
    for cid in sorted(set(open_) - in_queue):
        add(review_id=open_[cid]["review_id"], comparison_id=cid, event="cleared", reasons=[], confidence=None,
            batch=open_[cid]["batch"])
    for row in queue:
        cid = row["comparison_id"]
        if cid in open_:
            row["review_id"] = open_[cid]["review_id"]
            continue
        n = times_queued.get(cid, 0) + 1
        times_queued[cid] = n
        review_id = f"rv-{cid}-{n}"
        row["review_id"] = review_id
        add(review_id=review_id, comparison_id=cid, event="queued", reasons=list(row.get("reasons", [])),
            confidence=row.get("confidence"), batch=row.get("batch"))
    return new


def append(path: str | Path, queue: list[dict], data_batches: int, at: str | None = None) -> dict:
    """Read the log at `path`, append the events for `queue`, write it back atomically; counts."""
    events = read_log(path)
    new = update(events, queue, data_batches, at)
    if new or not Path(path).exists():
        write_jsonl(path, [*events, *new])
    return {"review_log_events": len(events) + len(new), "review_log_new_events": len(new),
            "review_open": len(queue)}
