"""Alias history for registered models (MLflow keeps none: an alias move overwrites silently).

Each alias move is one event stored as its own registered-model tag
`driftkeel.alias_event.<unix-ns>.<random>` whose value is the event as JSON. One tag per event makes
the history append-only with no read-modify-write (two writers cannot lose each other's events), and
the key sorts in time order. An event:

    {"alias": "champion", "action": "promote" | "rollback" | "assign",
     "from_version": 3 | null, "to_version": 4, "user": "...", "reason": "...",
     "at": "2026-11-27T03:24:01.123456+00:00", "context": {...run id, git commit, data version...}}

The replay functions below are pure (events in, versions out) and decide what "previous champion"
means for a rollback.
"""
from __future__ import annotations

import getpass
import json
import os
import time
import uuid
from datetime import datetime, timezone

EVENT_TAG_PREFIX = "driftkeel.alias_event."
ACTIONS = ("promote", "rollback", "assign")


def current_user() -> str:
    """Who acts: DRIFTKEEL_USER, else the OS user, else 'unknown'."""
    env = os.environ.get("DRIFTKEEL_USER")
    if env:
        return env
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (some containers)
        return "unknown"


def make_event(alias: str, action: str, from_version, to_version, user: str, reason: str,
               context: dict | None = None, at: datetime | None = None) -> dict:
    if action not in ACTIONS:
        raise ValueError(f"unknown alias action {action!r}; known: {ACTIONS}")
    if not reason or not str(reason).strip():
        raise ValueError("an alias move needs a reason (it is kept in the history)")
    at = at or datetime.now(timezone.utc)
    return {"alias": alias, "action": action,
            "from_version": None if from_version is None else int(from_version),
            "to_version": int(to_version), "user": user or current_user(), "reason": str(reason),
            "at": at.isoformat(), "context": dict(context or {})}


def event_tag_key() -> str:
    return f"{EVENT_TAG_PREFIX}{time.time_ns():020d}.{uuid.uuid4().hex[:8]}"


def record_event(client, model_name: str, event: dict) -> str:
    """Append `event` to the history of `model_name`; returns the tag key."""
    key = event_tag_key()
    client.set_registered_model_tag(model_name, key, json.dumps(event, sort_keys=True))
    return key


def events_from_tags(tags: dict) -> list[dict]:
    """The history in time order from a registered model's tags (unparseable entries are skipped)."""
    out = []
    for key in sorted(k for k in tags if k.startswith(EVENT_TAG_PREFIX)):
        try:
            event = json.loads(tags[key])
        except (TypeError, json.JSONDecodeError):
            continue
        if isinstance(event, dict):
            out.append(event)
    return out


def read_history(client, model_name: str, alias: str | None = None) -> list[dict]:
    """All alias events of `model_name` (optionally of one alias), oldest first; [] if no such model."""
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(model_name).tags
    except MlflowException:
        return []
    events = events_from_tags(tags)
    return [e for e in events if alias is None or e.get("alias") == alias]


def champion_lineage(events: list[dict], alias: str = "champion") -> list[int]:
    """Replay `alias` events into a stack of versions: a promotion pushes its version, a rollback to a
    version on the stack pops back down to it (a rollback to a version not on the stack pushes it).
    The top is the version the history says holds the alias."""
    stack: list[int] = []
    for e in events:
        if e.get("alias") != alias:
            continue
        v = int(e["to_version"])
        if e.get("action") == "rollback" and v in stack:
            last = len(stack) - 1 - stack[::-1].index(v)
            del stack[last + 1:]
        elif not stack or stack[-1] != v:
            stack.append(v)
    return stack


def previous_version(events: list[dict], current: int | None, alias: str = "champion",
                     existing: set[int] | None = None) -> int | None:
    """The version a rollback of `alias` returns to: the one below `current` in the lineage (or the
    lineage top when `current` was set outside driftkeel and is not in it, or is None: the alias
    was removed, e.g. with its deleted version); None if there is none. `existing`: the versions
    that still exist; deleted ones are skipped (the next one down is the target)."""
    stack = champion_lineage(events, alias)
    if current is not None and int(current) in stack:
        last = len(stack) - 1 - stack[::-1].index(int(current))
        stack = stack[:last]
    if existing is not None:
        stack = [v for v in stack if v in existing]
    return stack[-1] if stack else None
