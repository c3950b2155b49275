"""The promotion gate: may the challenger become champion?

Two checks, thresholds from `params.yaml` (`evaluate:`):
- the new reward model ranks held-out pairs well enough: `reward_accuracy >= min_reward_accuracy`;
- the new policy is not worse than the baseline (current champion, or the SFT model when there is none)
  under the NEW reward model by more than `max_policy_reward_drop`:
  `baseline_mean_reward - challenger_mean_reward <= max_policy_reward_drop`.
A metric that is missing or not a finite number fails its check (never passes by accident).
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


def gate(metrics: dict, min_reward_accuracy: float, max_policy_reward_drop: float) -> Verdict:
    """Apply both checks to `metrics` (keys: reward_accuracy, challenger_mean_reward,
    baseline_mean_reward). `reasons` lists the failed checks' explanations (empty when passed)."""
    checks = [
        check_reward_accuracy(metrics.get("reward_accuracy"), min_reward_accuracy),
        check_policy_reward(metrics.get("challenger_mean_reward"), metrics.get("baseline_mean_reward"),
                            max_policy_reward_drop),
    ]
    passed = all(c.passed for c in checks)
    return Verdict(passed=passed, reasons=[c.reason for c in checks if not c.passed],
                   metrics=dict(metrics), checks=checks)
