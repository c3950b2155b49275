"""Pure evaluation logic: pairwise accuracy, per-slice tables, policy reward summaries, the gate."""
import math

import numpy as np
import pytest

from driftkeel.evaluation.evaluate import policy_metrics, reward_model_metrics
from driftkeel.evaluation.gate import gate
from driftkeel.evaluation.metrics import (accuracy_by_slice, pair_outcomes, pairwise_accuracy,
                                          reward_summary)


def test_pair_outcomes_wins_ties_losses_and_nan():
    out = pair_outcomes([2.0, 1.0, 0.0, float("nan")], [1.0, 1.0, 3.0, 0.0])
    assert out.tolist() == [1.0, 0.5, 0.0, 0.0]


def test_pairwise_accuracy_exact_and_empty():
    assert pairwise_accuracy([3, 2, 1, 0], [0, 2, 2, 1]) == 0.375  # (1 + 0.5 + 0 + 0) / 4
    assert math.isnan(pairwise_accuracy([], []))
    with pytest.raises(ValueError, match="same length"):
        pairwise_accuracy([1, 2], [1])


def test_accuracy_by_slice():
    got = accuracy_by_slice([1, 1, 0, 0, 5], [0, 0, 1, 1, 5], ["pre", "pre", "post", "post", "post"])
    assert got == {"post": {"accuracy": 1 / 6, "n": 3}, "pre": {"accuracy": 1.0, "n": 2}}
    with pytest.raises(ValueError, match="slice labels"):
        accuracy_by_slice([1], [0], ["pre", "post"])


def test_reward_model_metrics_flat_names_and_table():
    metrics, table = reward_model_metrics([1, 1, 0, 2], [0, 2, 1, 1], ["pre", "pre", "post", "post"])
    assert metrics == {"reward_accuracy": 0.5, "n_eval_pairs": 4, "reward_accuracy_post": 0.5,
                       "n_eval_pairs_post": 2, "reward_accuracy_pre": 0.5, "n_eval_pairs_pre": 2}
    assert table.to_dict("records") == [{"slice": "all", "accuracy": 0.5, "n": 4},
                                        {"slice": "post", "accuracy": 0.5, "n": 2},
                                        {"slice": "pre", "accuracy": 0.5, "n": 2}]


def test_policy_metrics_and_reward_summary():
    m = policy_metrics("challenger", [1.0, 3.0, -1.0, 1.0], ["pre", "pre", "post", "post"])
    assert m == {"challenger_mean_reward": 1.0, "challenger_reward_std": math.sqrt(2.0),
                 "challenger_mean_reward_post": 0.0, "challenger_mean_reward_pre": 2.0}
    s = reward_summary([])
    assert s["n"] == 0 and math.isnan(s["mean"])


def M(acc, challenger, baseline):
    return {"reward_accuracy": acc, "challenger_mean_reward": challenger,
            "baseline_mean_reward": baseline}


def test_gate_passes_when_both_checks_pass():
    v = gate(M(0.75, 0.5, 0.55), min_reward_accuracy=0.7, max_policy_reward_drop=0.1)
    assert v.passed and v.reasons == []
    assert [c.name for c in v.checks] == ["reward_accuracy", "policy_reward_drop"]
    assert v.checks[1].value == pytest.approx(0.05)
    d = v.to_dict()
    assert d["passed"] is True and d["metrics"] == M(0.75, 0.5, 0.55)
    assert d["checks"][0] == {"name": "reward_accuracy", "value": 0.75, "threshold": 0.7,
                              "passed": True,
                              "reason": "reward_accuracy 0.7500 >= min_reward_accuracy 0.7000"}


def test_gate_thresholds_are_inclusive():
    v = gate(M(0.7, 0.5, 1.0), min_reward_accuracy=0.7, max_policy_reward_drop=0.5)
    assert v.passed, v.reasons


def test_gate_fails_on_low_accuracy():
    v = gate(M(0.69, 1.0, 1.0), 0.7, 0.1)
    assert not v.passed
    assert v.reasons == ["reward_accuracy 0.6900 < min_reward_accuracy 0.7000"]


def test_gate_fails_on_policy_reward_drop():
    v = gate(M(0.9, 0.25, 0.5), 0.7, 0.1)
    assert not v.passed
    assert v.reasons == ["policy reward drop 0.2500 (baseline 0.5000 - challenger 0.2500) > "
                         "max_policy_reward_drop 0.1000"]
    # a better challenger never fails the reward check
    assert gate(M(0.9, 5.0, 0.5), 0.7, 0.0).passed


def test_gate_fails_both_and_on_missing_or_nan_metrics():
    v = gate(M(0.1, -3.0, 0.0), 0.7, 0.1)
    assert not v.passed and len(v.reasons) == 2
    v = gate({"reward_accuracy": float("nan")}, 0.0, 100.0)
    assert not v.passed
    assert v.reasons[0] == "reward_accuracy is missing or not a number (nan)"
    assert v.reasons[1].startswith("policy mean rewards missing or not numbers")
    assert not gate(M(True, 1.0, 1.0), 0.0, 1.0).passed  # a bool is not a metric
    assert not gate(M(0.9, np.inf, 1.0), 0.0, 1.0).passed
