"""Drift detection: statistics, detectors, decision, report."""
from driftkeel.drift.decision import ACTIONS, decide
from driftkeel.drift.stats import (js_divergence, js_divergence_samples, ks_test, mmd2_unbiased,
                                   mmd_permutation_test, wasserstein)

__all__ = ["ACTIONS", "decide", "js_divergence", "js_divergence_samples", "ks_test", "mmd2_unbiased",
           "mmd_permutation_test", "wasserstein"]
