"""From calibrated test results to one action: none | collect-labels | retrain-reward | retrain-all.

A cost-benefit policy (numbers in `drift.decision` of params.yaml):

    net(action) = sum over alarmed signals s of loss[s] * coverage[action][s]  -  cost[action]
    net(none)   = 0

The action with the largest net benefit wins; ties go to the cheaper action. A signal alarms when one
of its tests alarmed (each at the alpha stated in its result). The defaults encode: one input signal
(prompt, output or perplexity) -> collect labels in the drifted region; a feedback signal (label,
reward, concept) -> retrain the reward model; two input signals or an input and a feedback signal ->
the larger of the two, two input signals reaching retrain-all. Tests with "insufficient data" never
count as alarms; the reasons list them so that a silent window is visible.
"""
from __future__ import annotations

from driftkeel.config import DecisionParams

ACTIONS = ("none", "collect-labels", "retrain-reward", "retrain-all")
LEVEL = {a: i for i, a in enumerate(ACTIONS)}


def net_benefits(signals: list[str], params: DecisionParams) -> dict[str, float]:
    out = {"none": 0.0}
    for a in ACTIONS[1:]:
        gain = sum(params.loss.get(s, 0.0) * params.coverage.get(a, {}).get(s, 0.0) for s in signals)
        out[a] = gain - params.cost.get(a, 0.0)
    return out


def decide(tests: list[dict], params: DecisionParams, current_batch: int | None = None) -> dict:
    alarms = [t for t in tests if t.get("alarm")]
    signals = sorted({t["signal"] for t in alarms})
    insufficient = sorted(t["test"] for t in tests if t.get("status") == "insufficient data")
    reasons = [f"{t['signal']} drift: {t['test']} {t['statistic_name']}={t['statistic']:.4g}, "
               f"p={t['p_value']:.3g} <= {t['alpha']:.3g} (calibrated false-alarm rate of this test; the whole "
               f"window's is {t['family_alpha']})" for t in alarms]
    net = net_benefits(signals, params)
    # ties: the cheaper action (its configured cost; none costs 0), then the lower level
    action = max(ACTIONS, key=lambda a: (round(net[a], 9), -(params.cost.get(a, 0.0) if a != "none" else 0.0),
                                         -LEVEL[a]))
    if signals:
        reasons.append("cost-benefit: " + ", ".join(f"{a} {net[a]:+.2f}" for a in ACTIONS)
                       + f" (loss of the alarmed signals {', '.join(f'{s}={params.loss.get(s, 0):g}' for s in signals)})"
                       + f" -> {action}")
    else:
        ran = [t for t in tests if t.get("status") in ("ok", "alarm")]
        reasons.append("no test alarmed" if ran else "insufficient data: no test could run")
    if insufficient:
        reasons.append(f"not tested (insufficient data): {', '.join(insufficient)}")
    return {"action": action, "level": LEVEL[action], "signals": signals, "n_alarms": len(alarms),
            "current_batch": current_batch, "reasons": reasons, "net_benefit": net,
            "tests": {t["test"]: {"status": t["status"], "p_value": t.get("p_value"), "alpha": t.get("alpha")}
                      for t in tests}}
