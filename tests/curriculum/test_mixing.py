"""Replay mixing, the group split and the easy-to-hard order."""
import numpy as np
import pandas as pd
import pytest

from driftkeel.config import MixParams
from driftkeel.curriculum import build_mix, group_split, order_easy_to_hard, replay_size, to_pairs


def _consensus(n_batches=6, per_batch=50, seed=0, prompts_per_batch=20):
    rng = np.random.default_rng(seed)
    rows = []
    for b in range(n_batches):
        for i in range(per_batch):
            pid = f"p{b}-{i % prompts_per_batch}" if i % 5 else f"shared-{i % 3}"   # some prompts recur
            rows.append({"comparison_id": f"c{b}-{i}", "batch": b, "prompt_id": pid, "prompt": f"prompt {pid}",
                         "response_a": f"A {b} {i}", "response_b": f"B {b} {i}",
                         "label": ["a", "b", "tie"][int(rng.choice(3, p=[0.45, 0.45, 0.1]))],
                         "confidence": float(rng.choice([1.0, 2 / 3, 0.5]))})
    return pd.DataFrame(rows)


def test_to_pairs_labels_and_drops():
    df = pd.DataFrame([
        {"comparison_id": "1", "batch": 0, "prompt_id": "p", "prompt": "q", "response_a": "x", "response_b": "y",
         "label": "a", "confidence": 0.9},
        {"comparison_id": "2", "batch": 0, "prompt_id": "p", "prompt": "q", "response_a": "x", "response_b": "y",
         "label": "b", "confidence": 0.6},
        {"comparison_id": "3", "batch": 0, "prompt_id": "p", "prompt": "q", "response_a": "x", "response_b": "y",
         "label": "tie", "confidence": 0.6},
        {"comparison_id": "4", "batch": 0, "prompt_id": "p", "prompt": "q", "response_a": "z", "response_b": "z ",
         "label": "a", "confidence": 0.6},
    ])
    pairs, counts = to_pairs(df)
    assert list(pairs["chosen"]) == ["x", "y"] and list(pairs["rejected"]) == ["y", "x"]
    assert list(pairs["weight"]) == [0.9, 0.6]
    assert counts["n_dropped_ties"] == 1 and counts["n_dropped_identical"] == 1


@pytest.mark.parametrize("n_new,f,expected", [(70, 0.3, 30), (100, 0.5, 100), (10, 0.0, 0), (0, 0.3, 0)])
def test_replay_size(n_new, f, expected):
    assert replay_size(n_new, f) == expected


def test_replay_share_exact_and_new_batches():
    cons = _consensus()
    params = MixParams(new_batches=2, replay_fraction=0.25, eval_fraction=0.0)
    mix = build_mix(cons, params, seed=0)
    m = mix.metrics
    assert m["n_replay"] == replay_size(m["n_new"], 0.25)
    assert m["n_replay"] / (m["n_new"] + m["n_replay"]) == pytest.approx(0.25, abs=0.5 / m["n_mix"])
    assert set(mix.train[mix.train["source"] == "new"]["batch"]) == {4, 5}
    assert set(mix.train[mix.train["source"] == "replay"]["batch"]) <= {0, 1, 2, 3}
    comp = mix.composition.set_index("batch")
    assert comp["n_new"].sum() == m["n_new"] and comp["n_replay"].sum() == m["n_replay"]
    # exact case: 3 new pairs per 1 replay
    exact = pd.concat([_consensus(per_batch=40)], ignore_index=True)
    exact["label"] = "a"
    mx = build_mix(exact, MixParams(new_batches=3, replay_fraction=0.25, eval_fraction=0.0), seed=1)
    assert mx.metrics["n_new"] == 120 and mx.metrics["n_replay"] == 40 and mx.metrics["replay_share"] == 0.25


def test_replay_is_seeded_and_capped():
    cons = _consensus()
    p = MixParams(new_batches=2, replay_fraction=0.3, eval_fraction=0.1)
    a, b = build_mix(cons, p, seed=3), build_mix(cons, p, seed=3)
    assert a.train.equals(b.train) and a.eval.equals(b.eval)
    capped = build_mix(cons, MixParams(new_batches=5, replay_fraction=0.9, eval_fraction=0.0), seed=0)
    assert capped.metrics["n_replay"] == capped.metrics["n_older_available"] and capped.notes


def test_group_split_never_leaks_a_prompt():
    cons = _consensus()
    for seed in range(5):
        mix = build_mix(cons, MixParams(new_batches=3, replay_fraction=0.3, eval_fraction=0.2), seed=seed)
        train_ids = set(cons.set_index("comparison_id").loc[mix.train["pair_id"], "prompt_id"])
        eval_ids = set(cons.set_index("comparison_id").loc[mix.eval["pair_id"], "prompt_id"])
        assert eval_ids and not (train_ids & eval_ids)
        assert mix.metrics["eval_share"] >= 0.2
    g = pd.Series(["x"] * 10)
    assert not group_split(g, 0.5, 0).any()           # one group cannot be split


def test_order_is_easy_to_hard():
    df = pd.DataFrame({"weight": [0.5, 1.0, 0.7, 1.0], "pair_id": list("abcd")})
    out = order_easy_to_hard(df, seed=0)
    assert list(out["weight"]) == [1.0, 1.0, 0.7, 0.5]


def test_prompts_are_distinct_new_prompts():
    cons = _consensus()
    mix = build_mix(cons, MixParams(new_batches=2), seed=0)
    assert mix.prompts["prompt_id"].is_unique
    assert set(mix.prompts["prompt_id"]) == set(cons[cons["batch"] >= 4]["prompt_id"])


def test_empty_and_all_ties():
    cons = _consensus()
    cons["label"] = "tie"
    mix = build_mix(cons, MixParams(), seed=0)
    assert mix.metrics["n_mix"] == 0 and len(mix.train) == 0 and mix.notes


def test_drift_era_splits_at_the_first_alarm_outside_the_reference():
    from driftkeel.curriculum.mixing import first_drift_batch

    hist = [{"batch": 0, "alarm": True, "in_reference": True},      # the reference never counts
            {"batch": 1, "alarm": False}, {"batch": 2, "alarm": False},
            {"batch": 3, "alarm": True}, {"batch": 4, "alarm": False}, {"batch": 5, "alarm": True}]
    report = {"history": hist}
    assert first_drift_batch(report) == 3
    assert first_drift_batch({"history": hist[:3]}) is None and first_drift_batch(None) is None
    cons = _consensus()
    mix = build_mix(cons, MixParams(new_batches=2, replay_fraction=0.5, eval_fraction=0.1), seed=0,
                    drift_report=report)
    both = pd.concat([mix.train, mix.eval])
    assert set(both[both["batch"] >= 3]["era"]) == {"after"} and set(both[both["batch"] < 3]["era"]) == {"before"}
    assert mix.metrics["first_drift_batch"] == 3
    assert mix.metrics["n_after_drift_pairs"] == int((both["era"] == "after").sum()) > 0
    quiet = build_mix(cons, MixParams(new_batches=2, replay_fraction=0.5, eval_fraction=0.1), seed=0)
    assert set(quiet.train["era"]) == {"before"} and quiet.metrics["first_drift_batch"] is None


def test_replay_pool_before_drift_takes_pre_drift_batches_first():
    cons = _consensus(n_batches=8)
    cons["label"] = "a"
    report = {"history": [{"batch": b, "alarm": b >= 3, "in_reference": b < 2} for b in range(8)]}
    p = MixParams(new_batches=2, replay_fraction=0.2, eval_fraction=0.0, replay_pool="before_drift")
    mix = build_mix(cons, p, seed=0, drift_report=report)
    replay = mix.train[mix.train["source"] == "replay"]
    assert len(replay) == replay_size(100, 0.2) == 25 and set(replay["batch"]) <= {0, 1, 2}   # 150 pre-drift
    big = build_mix(cons, p.model_copy(update={"replay_fraction": 0.7}), seed=0, drift_report=report)
    rb = big.train[big.train["source"] == "replay"]["batch"]
    assert len(rb) == replay_size(100, 0.7) == 233 and (rb < 3).sum() == 150 and (rb >= 3).sum() == 83
    # no alarm: like "older"
    flat = build_mix(cons, p, seed=0)
    assert set(flat.train[flat.train["source"] == "replay"]["batch"]) - {0, 1, 2}
