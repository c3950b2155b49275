"""Drift detection: statistics, detectors, calibration, decision, report."""
from driftkeel.drift.decision import ACTIONS, decide
from driftkeel.drift.stats import (js_divergence, js_divergence_samples, kl_divergence, ks_test, mmd2_unbiased,
                                   mmd_permutation_test, wasserstein)
from driftkeel.drift.twosample import two_sample_test

__all__ = ["ACTIONS", "decide", "js_divergence", "js_divergence_samples", "kl_divergence", "ks_test", "mmd2_unbiased",
           "mmd_permutation_test", "two_sample_test", "wasserstein"]
