"""The promotion gate: may the challenger become champion?

Checks, thresholds from `params.yaml` (`evaluate:`), all on the same fixed eval sets:
- `reward_accuracy >= min_reward_accuracy`: the new reward model ranks held-out pairs well enough;
- `baseline_mean_reward - challenger_mean_reward <= max_policy_reward_drop`: the new policy is not
  worse than the baseline (champion, or the SFT model when there is none) under the NEW reward model;
- `policy_win_rate >= min_policy_win_rate`: share of prompts where the challenger's response beats the
  baseline's under the new reward model (ties half);
- `reward_accuracy_drop_new <= max_reward_accuracy_drop`: champion reward model's accuracy minus the
  challenger's on the new (post-drift) slice;
- `forgetting <= max_forgetting`: the same on the old (pre-drift) slice;
- `reward_accuracy_topic_gap <= max_topic_gap`: best minus worst topic accuracy (bias/fairness gap);
- `true_win_rate >= min_true_win_rate`: win rate under the simulator's true utility (ORACLE: only when
  the data is the simulator's; never available in production).
A threshold set to null only reports its metric. A champion comparison without a champion reward
model, or the oracle check without simulator data, is *skipped* (passes, says why). Otherwise a metric
that is missing or not a finite number fails its check (never passes by accident).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Check:
    name: str
    value: float | None
    threshold: float
    passed: bool
    reason: str
    skipped: bool = False


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: list[str]
    metrics: dict
    checks: list[Check] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "reasons": list(self.reasons), "metrics": dict(self.metrics),
                "checks": [asdict(c) for c in self.checks]}


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_reward_accuracy(accuracy, min_reward_accuracy: float) -> Check:
    if not _finite(accuracy):
        return Check("reward_accuracy", None, min_reward_accuracy, False,
                     f"reward_accuracy is missing or not a number ({accuracy!r})")
    ok = accuracy >= min_reward_accuracy
    rel = ">=" if ok else "<"
    return Check("reward_accuracy", float(accuracy), min_reward_accuracy, ok,
                 f"reward_accuracy {accuracy:.4f} {rel} min_reward_accuracy {min_reward_accuracy:.4f}")


def check_policy_reward(challenger_mean, baseline_mean, max_policy_reward_drop: float) -> Check:
    if not (_finite(challenger_mean) and _finite(baseline_mean)):
        return Check("policy_reward_drop", None, max_policy_reward_drop, False,
                     f"policy mean rewards missing or not numbers (challenger={challenger_mean!r}, "
                     f"baseline={baseline_mean!r})")
    drop = float(baseline_mean) - float(challenger_mean)
    ok = drop <= max_policy_reward_drop
    rel = "<=" if ok else ">"
    return Check("policy_reward_drop", drop, max_policy_reward_drop, ok,
                 f"policy reward drop {drop:.4f} (baseline {baseline_mean:.4f} - challenger "
                 f"{challenger_mean:.4f}) {rel} max_policy_reward_drop {max_policy_reward_drop:.4f}")


def check_bound(name: str, value, threshold: float, *, upper: bool, label: str, param: str,
                skip: str | None = None) -> Check:
    """`value <= threshold` (upper) or `value >= threshold`; `skip` = why the check does not apply."""
    if skip is not None:
        return Check(name, None, threshold, True, f"{label}: skipped ({skip})", skipped=True)
    if not _finite(value):
        return Check(name, None, threshold, False, f"{label} is missing or not a number ({value!r})")
    ok = value <= threshold if upper else value >= threshold
    rel = ("<=" if ok else ">") if upper else (">=" if ok else "<")
    return Check(name, float(value), threshold, ok, f"{label} {value:.4f} {rel} {param} {threshold:.4f}")


# name, metric key, upper bound?, flag metric that must be 1 for the check to apply, and why not
OPTIONAL_CHECKS = [
    ("policy_win_rate", "policy_win_rate", False, None, None),
    ("reward_accuracy_drop", "reward_accuracy_drop_new", True, "has_champion_reward",
     "no champion reward model to compare with"),
    ("forgetting", "forgetting", True, "has_champion_reward", "no champion reward model to compare with"),
    ("topic_gap", "reward_accuracy_topic_gap", True, None, None),
    ("true_win_rate", "true_win_rate", False, "oracle_available",
     "not simulator data: no true utility (oracle)"),
]
THRESHOLD_PARAM = {"policy_win_rate": "min_policy_win_rate", "reward_accuracy_drop": "max_reward_accuracy_drop",
                   "forgetting": "max_forgetting", "topic_gap": "max_topic_gap",
                   "true_win_rate": "min_true_win_rate"}


def gate(metrics: dict, min_reward_accuracy: float, max_policy_reward_drop: float,
         **thresholds: float | None) -> Verdict:
    """Apply the checks to `metrics`. The two first checks always run; the others run when their
    threshold (keyword named as in params, e.g. `min_policy_win_rate=0.5`) is given and not None.
    `reasons` lists the failed checks' explanations (empty when passed)."""
    checks = [
        check_reward_accuracy(metrics.get("reward_accuracy"), min_reward_accuracy),
        check_policy_reward(metrics.get("challenger_mean_reward"), metrics.get("baseline_mean_reward"),
                            max_policy_reward_drop),
    ]
    unknown = set(thresholds) - set(THRESHOLD_PARAM.values())
    if unknown:
        raise TypeError(f"gate: unknown threshold(s) {sorted(unknown)}")
    for name, key, upper, needs, why in OPTIONAL_CHECKS:
        threshold = thresholds.get(THRESHOLD_PARAM[name])
        if threshold is None:
            continue
        skip = why if needs is not None and metrics.get(needs) != 1 else None
        checks.append(check_bound(name, metrics.get(key), float(threshold), upper=upper, label=key,
                                  param=THRESHOLD_PARAM[name], skip=skip))
    passed = all(c.passed for c in checks)
    return Verdict(passed=passed, reasons=[c.reason for c in checks if not c.passed],
                   metrics=dict(metrics), checks=checks)


def gate_from_params(metrics: dict, params) -> Verdict:
    """:func:`gate` with every threshold from an `EvaluateParams`."""
    return gate(metrics, params.min_reward_accuracy, params.max_policy_reward_drop,
                **{p: getattr(params, p) for p in THRESHOLD_PARAM.values()})
