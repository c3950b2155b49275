"""The expert-review log (annotation/review_log.py): append-only, stable ids, exact events."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from driftkeel.annotation import aggregate_judgements, review_log
from driftkeel.config import AggregateParams, DataParams
from driftkeel.data.simulator import simulate


def _q(*cids, conf=0.5):
    return [{"comparison_id": c, "batch": 0, "confidence": conf, "reasons": ["low_confidence"]} for c in cids]


def test_events_on_hand_made_queues(tmp_path):
    path = tmp_path / "review_log.jsonl"
    assert review_log.append(path, _q("c1", "c2"), 1, at="t1") == {
        "review_log_events": 2, "review_log_new_events": 2, "review_open": 2}
    first = path.read_text()
    # the same queue again: nothing appended, file unchanged
    assert review_log.append(path, _q("c1", "c2"), 1, at="t2")["review_log_new_events"] == 0
    assert path.read_text() == first
    # c1 leaves, c3 arrives; then c1 comes back: a second review of c1 with its own id
    queue = _q("c2", "c3")
    review_log.append(path, queue, 2, at="t3")
    assert [r["review_id"] for r in queue] == ["rv-c2-1", "rv-c3-1"]
    queue = _q("c1", "c2", "c3")
    review_log.append(path, queue, 3, at="t4")
    assert [r["review_id"] for r in queue] == ["rv-c1-2", "rv-c2-1", "rv-c3-1"]
    text = path.read_text()
    assert text.startswith(first)  # append-only: earlier lines untouched
    events = [json.loads(x) for x in text.splitlines()]
    assert [(e["event_id"], e["review_id"], e["event"], e["data_batches"]) for e in events] == [
        (0, "rv-c1-1", "queued", 1), (1, "rv-c2-1", "queued", 1),
        (2, "rv-c1-1", "cleared", 2), (3, "rv-c3-1", "queued", 2),
        (4, "rv-c1-2", "queued", 3)]
    assert set(review_log.open_reviews(events)) == {"c1", "c2", "c3"}


def test_a_log_that_is_not_ours_is_refused(tmp_path):
    path = tmp_path / "review_log.jsonl"
    path.write_text('{"event_id": 0, "review_id": "rv-x-1", "event": "queued", "comparison_id": "x"}\n'
                    '{"event_id": 5, "review_id": "rv-y-1", "event": "queued", "comparison_id": "y"}\n')
    with pytest.raises(ValueError, match="line 2 is not a review-log event"):
        review_log.append(path, [], 1)


def test_growing_stream_keeps_the_earlier_log_as_a_prefix(tmp_path):
    """Aggregating 3 batches, then 5: the log after the first run is a prefix of the log after the
    second, and every comparison queued now has exactly one open review."""
    sim = simulate(DataParams(seed=2, n_batches=5, comparisons_per_batch=80, judgements_per_comparison=3,
                              n_annotators=10, spammer_fraction=0.2, n_sft_demos=10, pool_size=10,
                              n_eval_pairs=10, n_eval_prompts=4))
    j = pd.DataFrame([r for rows in sim.stream.values() for r in rows])
    gold = {g["comparison_id"]: g["gold_label"] for g in sim.golden}
    path = tmp_path / "review_log.jsonl"
    res3 = aggregate_judgements(j[j["batch"] < 3], gold, AggregateParams())
    review_log.append(path, res3.review_queue, 3)
    before = path.read_text()
    res5 = aggregate_judgements(j, gold, AggregateParams())
    counts = review_log.append(path, res5.review_queue, 5)
    after = path.read_text()
    assert before and after.startswith(before) and len(after) > len(before)
    events = review_log.read_log(path)
    opened = review_log.open_reviews(events)
    assert set(opened) == {r["comparison_id"] for r in res5.review_queue}
    assert all(r["review_id"] == opened[r["comparison_id"]]["review_id"] for r in res5.review_queue)
    assert counts["review_open"] == len(res5.review_queue) and counts["review_log_events"] == len(events)
