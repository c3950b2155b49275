"""Alias history: event records and the champion lineage that rollback replays (pure, exact)."""
from datetime import datetime, timezone

import pytest

from driftkeel.registry.history import (champion_lineage, events_from_tags, make_event,
                                        previous_version)


def ev(action, to, frm=None, alias="champion"):
    return make_event(alias, action, frm, to, "alice", f"{action} to {to}")


def test_make_event_records_who_when_why_from_to():
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    e = make_event("champion", "promote", "3", 4, "bob", "gate passed", {"run_id": "r1"}, at=at)
    assert e == {"alias": "champion", "action": "promote", "from_version": 3, "to_version": 4,
                 "user": "bob", "reason": "gate passed", "at": "2026-01-02T03:04:05+00:00",
                 "context": {"run_id": "r1"}}


def test_make_event_refuses_empty_reason_and_unknown_action():
    with pytest.raises(ValueError, match="reason"):
        make_event("champion", "promote", None, 1, "bob", "  ")
    with pytest.raises(ValueError, match="unknown alias action"):
        make_event("champion", "delete", None, 1, "bob", "x")


def test_events_from_tags_sorted_by_key_and_skips_foreign_or_broken_tags():
    tags = {"driftkeel.alias_event.00000000000000000002.bb": '{"to_version": 2}',
            "driftkeel.alias_event.00000000000000000001.aa": '{"to_version": 1}',
            "driftkeel.alias_event.00000000000000000003.cc": "not json",
            "other": '{"to_version": 9}'}
    assert [e["to_version"] for e in events_from_tags(tags)] == [1, 2]


def test_lineage_promotions_push_and_rollbacks_pop():
    events = [ev("promote", 1), ev("promote", 2, 1), ev("promote", 3, 2), ev("rollback", 2, 3)]
    assert champion_lineage(events) == [1, 2]
    assert previous_version(events, current=2) == 1
    # a second rollback goes further back, not forward to the version just rolled away from
    events.append(ev("rollback", 1, 2))
    assert champion_lineage(events) == [1]
    assert previous_version(events, current=1) is None


def test_lineage_ignores_other_aliases_and_repeated_promotions():
    events = [ev("promote", 1), ev("assign", 2, alias="challenger"), ev("promote", 1),
              ev("promote", 3, 1)]
    assert champion_lineage(events) == [1, 3]
    assert previous_version(events, current=3) == 1


def test_rollback_to_a_version_outside_the_lineage_pushes_it():
    events = [ev("promote", 1), ev("promote", 4, 1), ev("rollback", 2, 4)]
    assert champion_lineage(events) == [1, 4, 2]
    assert previous_version(events, current=2) == 4


def test_previous_when_champion_was_moved_outside_driftkeel():
    events = [ev("promote", 1), ev("promote", 2, 1)]
    # someone pointed champion at v7 in the MLflow UI: the last recorded champion is the way back
    assert previous_version(events, current=7) == 2
    assert previous_version([], current=None) is None
