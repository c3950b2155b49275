"""From calibrated test results to one action: none | collect-labels | retrain-reward | retrain-all.

Rules, first match wins (thresholds from `drift.decision` in params.yaml):
1. alarms on >= retrain_all_min_signals distinct signals           -> retrain-all
2. an alarm on the label, reward or concept signal (the preference
   concept or the labels behind the reward model moved)            -> retrain-reward
3. alarms on >= collect_labels_min_signals signals (prompt/output:
   the inputs moved, the labels we have may not cover them)         -> collect-labels
4. otherwise                                                        -> none
Tests with "insufficient data" never count as alarms; the decision lists them so a silent window is
visible.
"""
from __future__ import annotations

from driftkeel.config import DecisionParams

ACTIONS = ("none", "collect-labels", "retrain-reward", "retrain-all")
LEVEL = {a: i for i, a in enumerate(ACTIONS)}
CONCEPT_SIGNALS = {"label", "reward", "concept"}


def decide(tests: list[dict], params: DecisionParams, current_batch: int | None = None) -> dict:
    alarms = [t for t in tests if t.get("alarm")]
    signals = sorted({t["signal"] for t in alarms})
    insufficient = sorted(t["test"] for t in tests if t.get("status") == "insufficient data")
    reasons = [f"{t['signal']} drift: {t['test']} {t['statistic_name']}={t['statistic']:.4g}, "
               f"p={t['p_value']:.3g} <= alpha={t['alpha']:.3g} (Bonferroni over {t['n_tests_in_family']} tests "
               f"at family alpha {t['family_alpha']})" for t in alarms]
    if len(signals) >= params.retrain_all_min_signals:
        action = "retrain-all"
        reasons.append(f"{len(signals)} signals alarmed >= retrain_all_min_signals={params.retrain_all_min_signals}")
    elif CONCEPT_SIGNALS & set(signals):
        action = "retrain-reward"
        reasons.append("label/reward/concept signal alarmed: the reward model's training labels no longer "
                       "match the current stream")
    elif len(signals) >= params.collect_labels_min_signals:
        action = "collect-labels"
        reasons.append(f"{len(signals)} input signal(s) alarmed >= collect_labels_min_signals="
                       f"{params.collect_labels_min_signals}: label the drifted region")
    else:
        action = "none"
        ran = [t for t in tests if t.get("status") in ("ok", "alarm")]
        reasons.append("no test alarmed" if ran else "insufficient data: no test could run")
    if insufficient:
        reasons.append(f"not tested (insufficient data): {', '.join(insufficient)}")
    return {"action": action, "level": LEVEL[action], "signals": signals, "n_alarms": len(alarms),
            "current_batch": current_batch, "reasons": reasons,
            "tests": {t["test"]: {"status": t["status"], "p_value": t.get("p_value"), "alpha": t.get("alpha")}
                      for t in tests}}
