"""Pure evaluation logic: pairwise accuracy, per-slice tables, policy reward summaries, the gate."""
import math

import numpy as np
import pytest

from driftkeel.evaluation.evaluate import policy_metrics, reward_model_metrics
from driftkeel.evaluation.gate import gate, gate_from_params
from driftkeel.evaluation.metrics import (accuracy_by_slice, classification_metrics,
                                          expected_calibration_error, fit_temperature, mean_reciprocal_rank,
                                          orientation, pair_outcomes, pairwise_accuracy, preference_nll,
                                          preference_probability, reward_summary, slice_gap, win_rate)


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
                              "passed": True, "skipped": False,
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


# ------------------------------------------------------------------- calibration and ranking


def test_fit_temperature_recovers_the_generating_temperature():
    rng = np.random.default_rng(0)
    d = rng.normal(0, 3, size=20000)  # score differences of random pairs
    true_t = 2.0
    p = 1 / (1 + np.exp(-d / true_t))
    chosen_first = rng.random(d.size) < p  # the label drawn from the true model
    diffs = np.where(chosen_first, d, -d)  # chosen-minus-rejected
    assert fit_temperature(diffs) == pytest.approx(true_t, rel=0.05)
    assert fit_temperature([]) == 1.0 and fit_temperature([0.0, 0.0]) == 1.0
    assert fit_temperature([5.0] * 10) == pytest.approx(0.1, rel=1e-3)  # separable: the lower bound


def test_preference_probability_and_nll():
    assert preference_probability([0.0])[0] == 0.5
    assert preference_probability([2.0], 2.0)[0] == pytest.approx(1 / (1 + math.exp(-1)))
    assert preference_probability([-1000.0])[0] == 0.0  # no overflow
    assert preference_nll([0.0, 0.0]) == pytest.approx(math.log(2))


def test_expected_calibration_error_exact():
    # confidences 0.9 (right), 0.9 (right), 0.6 (wrong: p < 0.5), 0.5 (tie, counts half)
    p = [0.9, 0.9, 0.4, 0.5]
    # bins of width 0.1 on [0.5, 1]: {0.5}: acc 0.5 conf 0.5; {0.6}: acc 0 conf 0.6; {0.9, 0.9}: acc 1 conf 0.9
    want = 0.25 * 0 + 0.25 * 0.6 + 0.5 * 0.1
    assert expected_calibration_error(p, n_bins=5) == pytest.approx(want)
    assert expected_calibration_error([0.5, 0.5]) == 0.0
    assert math.isnan(expected_calibration_error([]))


def test_classification_metrics_use_a_fixed_orientation():
    ids = [f"p{i}" for i in range(8)]
    a_first = orientation(ids)
    assert orientation(ids).tolist() == a_first.tolist() and 0 < a_first.sum() < 8
    perfect = classification_metrics([1.0] * 8, [0.0] * 8, ids)
    assert perfect == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    wrong = classification_metrics([0.0] * 8, [1.0] * 8, ids)
    assert wrong["recall"] == 0.0 and wrong["f1"] == 0.0
    # one error on an A-first pair: recall drops, precision stays
    chosen = [0.0 if (i == int(np.flatnonzero(a_first)[0])) else 1.0 for i in range(8)]
    m = classification_metrics(chosen, [0.5] * 8, ids)
    tp = a_first.sum() - 1
    assert m["precision"] == 1.0 and m["recall"] == pytest.approx(tp / a_first.sum())
    assert m["f1"] == pytest.approx(2 * tp / (2 * tp + 1))


def test_mean_reciprocal_rank_exact():
    groups = [([3.0, 2.0, 1.0], [1, 0, 0]),      # best ranked first: 1
              ([1.0, 2.0, 3.0], [5, 1, 0]),      # best ranked third: 1/3
              ([1.0, 1.0, 0.0], [2, 0, 0]),      # tie with another: pessimistic rank 2
              ([1.0], [1])]                       # one response: not a ranking, skipped
    assert mean_reciprocal_rank(groups) == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    assert math.isnan(mean_reciprocal_rank([]))
    # a NaN model score ranks last (it crashed with ZeroDivisionError: no score is >= NaN)
    assert mean_reciprocal_rank([([float("nan"), 0.1, 0.2], [1.0, 0.0, 0.5])]) == pytest.approx(1 / 3)


def test_win_rate_and_slice_gap():
    assert win_rate([1, 2, 3], [0, 2, 4]) == 0.5
    per = {"a": {"accuracy": 0.9, "n": 30}, "b": {"accuracy": 0.6, "n": 25}, "c": {"accuracy": 0.1, "n": 3}}
    assert slice_gap(per, min_n=20) == {"gap": pytest.approx(0.3), "worst": "b", "best": "a", "n_slices": 2}
    assert math.isnan(slice_gap(per, min_n=26)["gap"])


def test_reward_and_policy_reports():
    import pandas as pd

    from driftkeel.evaluation.reports import policy_report, reward_report

    pairs = pd.DataFrame({"pair_id": ["a", "b", "c", "d"], "prompt": ["x", "x", "y", "z"],
                          "chosen": ["r1", "r1", "s1", "t1"], "rejected": ["r2", "r3", "s2", "t2"],
                          "slice": ["pre", "pre", "post", "post"], "topic": ["t", "t", "t", "u"]})
    m, table, details = reward_report([2.0, 2.0, 0.0, 1.0], [1.0, 3.0, 1.0, 0.0], pairs, temperature=1.0,
                                      n_bins=10, min_slice_pairs=1)
    assert m["reward_accuracy"] == 0.5 and m["reward_accuracy_pre"] == 0.5 and m["reward_accuracy_post"] == 0.5
    assert m["reward_accuracy_topic_gap"] == pytest.approx(1.0 - 1 / 3)
    assert details == {"worst_topic": "t", "best_topic": "u", "n_topics_in_gap": 2}
    assert table["slice"].tolist() == ["all", "post", "pre", "topic=t", "topic=u"]
    # prompt x ranks r1, r2, r3 (wins - losses: r1 +2, r2 -1, r3 -1): r3 scores highest -> rank 2 of r1
    assert m["n_mrr_groups"] == 1 and m["reward_mrr"] == 0.5
    prompts = pd.DataFrame({"slice": ["pre", "pre", "post"], "topic": ["t", "u", "u"]})
    pm, ptable = policy_report([1.0, 0.0, 2.0], [0.0, 0.0, 3.0], prompts, min_slice=1)
    assert pm == {"policy_win_rate": 0.5, "policy_win_rate_post": 0.0, "policy_win_rate_pre": 0.75,
                  "policy_win_rate_topic_gap": 0.75}
    assert ptable.loc[0, "challenger_reward"] == 1.0


def test_gate_optional_checks_skip_report_and_fail():
    base = {**M(0.9, 1.0, 1.0), "policy_win_rate": 0.45, "forgetting": 0.02, "reward_accuracy_drop_new": 0.2,
            "reward_accuracy_topic_gap": 0.1, "true_win_rate": 0.7}
    v = gate(base, 0.7, 0.1, min_policy_win_rate=0.5, max_forgetting=0.1, max_reward_accuracy_drop=0.05,
             max_topic_gap=0.3, min_true_win_rate=0.5)
    by = {c.name: c for c in v.checks}
    assert by["reward_accuracy_drop"].skipped and by["forgetting"].skipped and by["true_win_rate"].skipped
    assert v.reasons == ["policy_win_rate 0.4500 < min_policy_win_rate 0.5000"]
    flagged = {**base, "has_champion_reward": 1, "oracle_available": 1}
    v = gate(flagged, 0.7, 0.1, min_policy_win_rate=0.4, max_forgetting=0.1, max_reward_accuracy_drop=0.05,
             max_topic_gap=0.3, min_true_win_rate=0.5)
    assert v.reasons == ["reward_accuracy_drop_new 0.2000 > max_reward_accuracy_drop 0.0500"]
    assert [c.name for c in v.checks] == ["reward_accuracy", "policy_reward_drop", "policy_win_rate",
                                          "reward_accuracy_drop", "forgetting", "topic_gap", "true_win_rate"]
    v = gate({**flagged, "forgetting": float("nan")}, 0.7, 0.1, max_forgetting=0.1)
    assert v.reasons == ["forgetting is missing or not a number (nan)"]
    assert len(gate(flagged, 0.7, 0.1).checks) == 2  # no optional threshold: the two original checks
    with pytest.raises(TypeError, match="unknown threshold"):
        gate(flagged, 0.7, 0.1, max_everything=1.0)


def test_gate_from_params_uses_every_threshold():
    from driftkeel.config import EvaluateParams

    v = gate_from_params({**M(0.9, 1.0, 1.0), "policy_win_rate": 0.6, "reward_accuracy_topic_gap": 0.1},
                         EvaluateParams())
    assert v.passed and {c.name for c in v.checks if c.skipped} == {"reward_accuracy_drop", "forgetting",
                                                                    "true_win_rate"}
