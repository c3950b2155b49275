"""Detectors, calibration and the decision rule."""
import numpy as np
import pytest

from driftkeel.config import DecisionParams
from driftkeel.drift import detectors as det
from driftkeel.drift.decision import decide


def _emb(rng, n, shift=0.0):
    return rng.normal(size=(n, 8)) + shift


def test_prompt_drift_insufficient_cases():
    rng = np.random.default_rng(0)
    kw = dict(min_window=30, max_window=100, n_permutations=99, seed=0)
    assert det.prompt_drift(_emb(rng, 10), _emb(rng, 50), **kw)["status"] == det.INSUFFICIENT
    assert det.prompt_drift(np.zeros((0, 8)), _emb(rng, 50), **kw)["status"] == det.INSUFFICIENT
    same = np.ones((40, 8))
    r = det.prompt_drift(same, same.copy(), **kw)
    assert r["status"] == det.INSUFFICIENT and "identical" in r["reason"]
    det.calibrate([r], 0.05)
    assert r["alarm"] is False


def test_prompt_drift_subsamples_large_windows():
    rng = np.random.default_rng(1)
    r = det.prompt_drift(_emb(rng, 300), _emb(rng, 80), min_window=30, max_window=100, n_permutations=99, seed=0)
    assert r["details"]["n_reference_used"] == 100 and r["details"]["n_current_used"] == 80
    assert r["n_reference"] == 300


def test_output_drift_detects_longer_responses():
    rng = np.random.default_rng(2)
    r = det.output_drift(rng.poisson(20, 200), rng.poisson(30, 200), min_window=30)
    assert r["p_value"] < 1e-6 and r["details"]["wasserstein_words"] == pytest.approx(10, abs=1.5)
    flat = det.output_drift(np.full(50, 7), np.full(50, 7), min_window=30)
    assert flat["status"] == det.INSUFFICIENT


def test_label_drift_one_sided_and_veto():
    ref = np.array([1.0] * 70 + [2 / 3] * 30)
    worse = np.array([1.0] * 40 + [2 / 3] * 60)
    better = np.array([1.0] * 95 + [2 / 3] * 5)
    assert det.label_drift(ref, worse, min_window=30)["p_value"] < 0.001
    assert det.label_drift(ref, better, min_window=30)["p_value"] > 0.5
    vetoed = det.label_drift(ref, worse, min_window=30, ref_alpha=[0.5, 0.6], cur_alpha=0.55)
    det.calibrate([vetoed], 0.05)
    assert vetoed["alarm"] is False and "vetoed" in vetoed["reason"]
    kept = det.label_drift(ref, worse, min_window=30, ref_alpha=[0.5, 0.6], cur_alpha=0.3)
    det.calibrate([kept], 0.05)
    assert kept["alarm"] is True


def _pairs(rng, n, w):
    X = rng.normal(size=(n, 6))
    y = (X @ w + rng.logistic(size=n) * 0.3 > 0).astype(int)
    return X, y


def test_reward_drift_flags_a_flipped_concept_not_a_stable_one():
    rng = np.random.default_rng(3)
    w = np.array([2.0, -1.0, 0.5, 0, 0, 0])
    Xr, yr = _pairs(rng, 200, w)
    Xs, ys = _pairs(rng, 200, w)
    flipped = w * np.array([-1, 1, 1, 1, 1, 1])
    Xc, yc = _pairs(rng, 200, flipped)
    groups = np.array([f"g{i // 2}" for i in range(200)])
    stable = det.reward_drift(Xr, yr, None, Xs, ys, None, groups, min_window=30, seed=0)
    moved = det.reward_drift(Xr, yr, None, Xc, yc, None, groups, min_window=30, seed=0)
    assert stable["p_value"] > 0.05
    assert moved["p_value"] < 1e-6
    assert moved["details"]["accuracy_current_model"] > moved["details"]["accuracy_reference_model"] + 0.2
    small = det.reward_drift(Xr[:10], yr[:10], None, Xc, yc, None, groups, min_window=30, seed=0)
    assert small["status"] == det.INSUFFICIENT


def test_length_preference_flags_a_flip_in_verbosity_preference():
    rng = np.random.default_rng(4)
    ref = np.where(rng.random(300) < 0.8, 5, -5)        # longer answer chosen 80% of the time
    same = np.where(rng.random(300) < 0.8, 7, -7)
    flipped = np.where(rng.random(300) < 0.55, 5, -5)
    assert det.length_preference_drift(ref, same, min_window=30)["p_value"] > 0.05
    r = det.length_preference_drift(ref, flipped, min_window=30)
    assert r["p_value"] < 1e-4 and r["statistic"] == pytest.approx(-0.25, abs=0.08)
    zeros = det.length_preference_drift(np.zeros(100), flipped, min_window=30)   # equal lengths are left out
    assert zeros["status"] == det.INSUFFICIENT


def test_calibrate_bonferroni_over_tests_that_ran():
    tests = [det.result("a", "prompt", p_value=0.02), det.result("b", "output", p_value=0.004),
             det.insufficient("c", "label", "too small")]
    det.calibrate(tests, 0.05)
    assert tests[0]["alpha"] == pytest.approx(0.025) and tests[0]["alarm"] is True
    assert tests[1]["alarm"] is True and tests[2]["alarm"] is False and tests[2]["alpha"] is None
    assert all(t["n_tests_in_family"] == 2 for t in tests)
    three = [det.result(s, s, p_value=0.02) for s in ("prompt", "output", "label")]
    det.calibrate(three, 0.05)
    assert not any(t["alarm"] for t in three)   # 0.02 > 0.05 / 3


def test_effective_permutations_can_reach_the_corrected_alpha():
    b = det.effective_permutations(100, 0.01, 4)
    assert 1 / (b + 1) <= 0.01 / 4


def _t(signal, alarm):
    r = det.result(f"{signal}_test", signal, p_value=0.001 if alarm else 0.9, statistic=1.0, statistic_name="s")
    return r


@pytest.mark.parametrize("alarms,action", [
    ((), "none"), (("prompt",), "collect-labels"), (("output",), "collect-labels"),
    (("label",), "retrain-reward"), (("reward",), "retrain-reward"),
    (("prompt", "output"), "retrain-all"), (("prompt", "reward"), "retrain-all"),
])
def test_decision_rules(alarms, action):
    tests = [_t(s, s in alarms) for s in det.SIGNALS]
    det.calibrate(tests, 0.05)
    d = decide(tests, DecisionParams(retrain_all_min_signals=2, collect_labels_min_signals=1))
    assert d["action"] == action and d["n_alarms"] == len(alarms) and d["reasons"]


def test_decision_on_insufficient_data_is_none_with_reason():
    tests = [det.insufficient("prompt_mmd", "prompt", "tiny")]
    det.calibrate(tests, 0.05)
    d = decide(tests, DecisionParams())
    assert d["action"] == "none" and any("insufficient" in r for r in d["reasons"])
