"""Detectors, calibration and the cost-benefit decision."""
import numpy as np
import pytest

from driftkeel.config import DecisionParams
from driftkeel.drift import detectors as det
from driftkeel.drift import feedback as fb
from driftkeel.drift.calibration import calibrate, effective_permutations
from driftkeel.drift.decision import decide, net_benefits

KW = dict(min_window=30, max_window=100, n_permutations=99, seed=0)


def _emb(rng, n, shift=0.0):
    return rng.normal(size=(n, 8)) + shift


def test_prompt_drift_insufficient_cases():
    rng = np.random.default_rng(0)
    assert det.prompt_drift(_emb(rng, 10), _emb(rng, 50), **KW)["status"] == det.INSUFFICIENT
    assert det.prompt_drift(np.zeros((0, 8)), _emb(rng, 50), **KW)["status"] == det.INSUFFICIENT
    same = np.ones((40, 8))
    r = det.prompt_drift(same, same.copy(), **KW)
    assert r["status"] == det.INSUFFICIENT and "identical" in r["reason"]
    one = det.prompt_drift(_emb(rng, 40), same, **KW)          # a current window of one repeated prompt
    assert one["status"] == det.INSUFFICIENT and "current window are identical" in one["reason"]
    calibrate([r, one], 0.05)
    assert r["alarm"] is False and one["alarm"] is False


def test_prompt_drift_subsamples_and_reports_every_statistic():
    rng = np.random.default_rng(1)
    r = det.prompt_drift(_emb(rng, 300), _emb(rng, 80, 0.8), **KW)
    assert r["details"]["n_reference_used"] == 100 and r["details"]["n_current_used"] == 80
    assert r["n_reference"] == 300 and r["p_value"] <= 0.02
    assert set(r["details"]["statistics"]) == {"mmd@1", "classifier_auc", "knn10", "cluster_js"}
    assert r["details"]["classifier_auc"] > 0.7 and "clusters" in r["details"]


def test_output_text_drift_on_lengths_and_on_texts():
    rng = np.random.default_rng(2)
    r = det.output_text_drift(rng.poisson(20, 200), rng.poisson(30, 200), min_window=30)
    assert r["p_value"] < 1e-6 and r["details"]["wasserstein_words"] == pytest.approx(10, abs=1.5)
    assert det.output_text_drift(np.full(50, 7), np.full(50, 7), min_window=30)["status"] == det.INSUFFICIENT
    short = ["ok fine"] * 20 + ["fine thanks a lot"] * 20
    wordy = ["Comprehensively considered, the methodology notwithstanding complications"] * 40
    t = det.output_text_drift(short, wordy, min_window=30)
    assert t["p_value"] < 1e-6 and t["details"]["strongest_statistic"] in ("words", "chars_per_word")
    assert set(t["details"]["per_statistic"]) == {"words", "chars_per_word", "distinct_word_share"}


def test_response_stats_exact():
    s = det.response_stats(["a bb a", ""])
    assert s["words"].tolist() == [3, 0] and s["chars_per_word"][0] == pytest.approx(4 / 3)
    assert s["distinct_word_share"][0] == pytest.approx(2 / 3)


def test_output_embedding_drift_reports_projections():
    rng = np.random.default_rng(3)
    r = det.output_embedding_drift(_emb(rng, 60), _emb(rng, 60, 1.0), min_window=30, max_window=100,
                                   n_permutations=99, seed=0)
    assert r["p_value"] == pytest.approx(1 / 100)
    assert set(r["details"]["projections"]) == {"pc1", "pc2", "pc3"}
    assert r["details"]["projections"]["pc1"]["js_nats"] > 0.2


def test_perplexity_drift_on_log_perplexity():
    rng = np.random.default_rng(4)
    ref = np.exp(rng.normal(3, 0.3, 200))
    r = det.perplexity_drift(ref, ref * 2, min_window=30)
    assert r["p_value"] < 1e-6 and r["details"]["median_ratio"] == pytest.approx(2.0)
    assert det.perplexity_drift(ref, [np.nan] * 50, min_window=30)["status"] == det.INSUFFICIENT


def test_label_drift_one_sided_and_veto():
    ref = np.array([1.0] * 70 + [2 / 3] * 30)
    worse = np.array([1.0] * 40 + [2 / 3] * 60)
    better = np.array([1.0] * 95 + [2 / 3] * 5)
    assert fb.label_drift(ref, worse, min_window=30)["p_value"] < 0.001
    assert fb.label_drift(ref, better, min_window=30)["p_value"] > 0.5
    vetoed = fb.label_drift(ref, worse, min_window=30, ref_alpha=[0.5, 0.6], cur_alpha=0.55)
    calibrate([vetoed], 0.05)
    assert vetoed["alarm"] is False and "vetoed" in vetoed["reason"]
    kept = fb.label_drift(ref, worse, min_window=30, ref_alpha=[0.5, 0.6], cur_alpha=0.3)
    calibrate([kept], 0.05)
    assert kept["alarm"] is True


def test_flip_rate_exact_fisher():
    from scipy.stats import fisher_exact

    r = fb.flip_rate_drift(5, 100, 20, 100, min_window=30)
    assert r["p_value"] == pytest.approx(fisher_exact([[20, 80], [5, 95]], alternative="greater")[1])
    assert r["statistic"] == pytest.approx(0.15)
    assert fb.flip_rate_drift(5, 10, 20, 100, min_window=30)["status"] == det.INSUFFICIENT


def _pairs(rng, n, w):
    X = rng.normal(size=(n, 6))
    y = (X @ w + rng.logistic(size=n) * 0.3 > 0).astype(int)
    return X, y


def test_reward_mcnemar_flags_a_flipped_concept_not_a_stable_one():
    rng = np.random.default_rng(3)
    w = np.array([2.0, -1.0, 0.5, 0, 0, 0])
    Xr, yr = _pairs(rng, 200, w)
    Xs, ys = _pairs(rng, 200, w)
    Xc, yc = _pairs(rng, 200, w * np.array([-1, 1, 1, 1, 1, 1]))
    groups = np.array([f"g{i // 2}" for i in range(200)])
    stable = fb.reward_drift(Xr, yr, None, Xs, ys, None, groups, min_window=30, seed=0)
    moved = fb.reward_drift(Xr, yr, None, Xc, yc, None, groups, min_window=30, seed=0)
    assert stable["p_value"] > 0.05 and moved["p_value"] < 1e-6
    assert moved["details"]["accuracy_current_model"] > moved["details"]["accuracy_reference_model"] + 0.2
    assert fb.reward_drift(Xr[:10], yr[:10], None, Xc, yc, None, groups, min_window=30, seed=0)["status"] == \
        det.INSUFFICIENT


def test_reward_score_margin_disagreement_and_accuracy():
    from scipy.stats import fisher_exact, ks_2samp

    rng = np.random.default_rng(5)
    a, b = rng.normal(0, 1, 300), rng.normal(0.5, 1, 300)
    r = fb.reward_score_drift(a, b, min_window=30)
    assert r["p_value"] == pytest.approx(ks_2samp(a, b).pvalue) and r["signal"] == "reward"
    assert r["details"]["mean_current"] - r["details"]["mean_reference"] == pytest.approx(b.mean() - a.mean())
    m = fb.reward_score_drift(a, b, min_window=30, test="reward_margin_ks", what="margins")
    assert m["test"] == "reward_margin_ks"
    d = fb.reward_disagreement_drift(np.full(100, 0.1) + rng.random(100) * 0.01, np.full(100, 0.3), min_window=30)
    assert d["p_value"] < 1e-6 and d["statistic"] > 2.5
    acc = fb.reward_accuracy_drift([True] * 80 + [False] * 20, [True] * 60 + [False] * 40, min_window=30)
    assert acc["p_value"] == pytest.approx(fisher_exact([[80, 20], [60, 40]], alternative="greater")[1])
    assert acc["statistic"] == pytest.approx(0.2)


def test_length_preference_flags_a_flip_in_verbosity_preference():
    rng = np.random.default_rng(4)
    ref = np.where(rng.random(300) < 0.8, 5, -5)        # longer answer chosen 80% of the time
    same = np.where(rng.random(300) < 0.8, 7, -7)
    flipped = np.where(rng.random(300) < 0.55, 5, -5)
    assert fb.length_preference_drift(ref, same, min_window=30)["p_value"] > 0.05
    r = fb.length_preference_drift(ref, flipped, min_window=30)
    assert r["p_value"] < 1e-4 and r["statistic"] == pytest.approx(-0.25, abs=0.08)
    assert fb.length_preference_drift(np.zeros(100), flipped, min_window=30)["status"] == det.INSUFFICIENT


def test_calibrate_splits_alpha_over_signals_then_tests():
    tests = [det.result("p", "prompt", p_value=0.02), det.result("o1", "output", p_value=0.012),
             det.result("o2", "output", p_value=0.2), det.insufficient("l", "label", "too small")]
    calibrate(tests, 0.05)
    assert tests[0]["alpha"] == pytest.approx(0.025) and tests[0]["alarm"] is True
    assert tests[1]["alpha"] == pytest.approx(0.0125) and tests[1]["alarm"] is True
    assert tests[2]["alarm"] is False and tests[3]["alarm"] is False and tests[3]["alpha"] is None
    assert all(t["n_signals_in_family"] == 2 and t["n_tests_in_family"] == 3 for t in tests)
    three = [det.result(s, s, p_value=0.02) for s in ("prompt", "output", "label")]
    calibrate(three, 0.05)
    assert not any(t["alarm"] for t in three)   # 0.02 > 0.05 / 3


def test_effective_permutations_can_reach_the_corrected_alpha():
    b = effective_permutations(100, 0.01, 4)
    assert 1 / (b + 1) <= 0.01 / 4


def _t(signal, alarm):
    return det.result(f"{signal}_test", signal, p_value=0.0001 if alarm else 0.9, statistic=1.0, statistic_name="s")


@pytest.mark.parametrize("alarms,action", [
    ((), "none"), (("prompt",), "collect-labels"), (("output",), "collect-labels"),
    (("perplexity",), "collect-labels"), (("label",), "retrain-reward"), (("reward",), "retrain-reward"),
    (("concept",), "retrain-reward"), (("prompt", "output"), "retrain-all"), (("prompt", "reward"), "retrain-reward"),
    (("prompt", "output", "reward"), "retrain-all"),
])
def test_decision_cost_benefit(alarms, action):
    tests = [_t(s, s in alarms) for s in det.SIGNALS]
    calibrate(tests, 0.05)
    d = decide(tests, DecisionParams())
    assert d["action"] == action and d["n_alarms"] == len(alarms) and d["reasons"]
    assert d["signals"] == sorted(alarms)


def test_net_benefits_exact_and_configurable():
    p = DecisionParams()
    assert net_benefits(["prompt"], p) == {"none": 0.0, "collect-labels": 2.0, "retrain-reward": 0.0,
                                           "retrain-all": 0.0}
    cheap = DecisionParams(cost={"collect-labels": 1.0, "retrain-reward": 3.0, "retrain-all": 0.5})
    tests = [_t("prompt", True)]
    calibrate(tests, 0.05)
    assert decide(tests, cheap)["action"] == "retrain-all"
    with pytest.raises(Exception):
        DecisionParams(loss={"weather": 1.0})


def test_decision_ties_go_to_the_cheaper_action():
    """collect-labels and retrain-reward both net +1.0 here; retrain-reward costs 1, collect-labels 3:
    the cheaper one wins (the tie used to go to the lower level whatever the costs)."""
    p = DecisionParams(loss={"label": 4.0}, cost={"collect-labels": 3.0, "retrain-reward": 1.0, "retrain-all": 6.0},
                       coverage={"collect-labels": {"label": 1.0}, "retrain-reward": {"label": 0.5},
                                 "retrain-all": {"label": 1.0}})
    tests = [_t("label", True)]
    calibrate(tests, 0.05)
    d = decide(tests, p)
    assert d["net_benefit"]["collect-labels"] == d["net_benefit"]["retrain-reward"] == 1.0
    assert d["action"] == "retrain-reward"


def test_decision_on_insufficient_data_is_none_with_reason():
    tests = [det.insufficient("prompt_embedding", "prompt", "tiny")]
    calibrate(tests, 0.05)
    d = decide(tests, DecisionParams())
    assert d["action"] == "none" and any("insufficient" in r for r in d["reasons"])


def test_window_rows_without_a_prompt_id_are_identified_by_their_text():
    """With a prompt_id column present, rows lacking an id used to get the id "nan" and were merged
    into one prompt, silently shrinking the window."""
    from driftkeel.drift.window import window_from_rows

    rows = [{"prompt": "first", "prompt_id": "p0"}] + [{"prompt": f"question {i}"} for i in range(50)]
    rows += [{"prompt": "question 3", "prompt_id": ""}, {"prompt": "again", "prompt_id": "p0"}]
    w = window_from_rows(rows)
    assert w.n_rows == 53 and w.prompts[0] == "first" and len(w.prompts) == 51   # p0 once, question 3 once
    assert window_from_rows([{"prompt": f"question {i}"} for i in range(50)]).prompts == [f"question {i}" for i in range(50)]
