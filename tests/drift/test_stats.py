"""Exact and statistical properties of the drift statistics."""
import math

import numpy as np
import pytest

from driftkeel.drift.stats import (js_divergence, js_divergence_samples, ks_test, median_heuristic, mmd2_unbiased,
                                   mmd_permutation_test, pairwise_sq_dists, wasserstein)


def test_js_identical_is_zero():
    assert js_divergence([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(0.0, abs=1e-12)


def test_js_disjoint_is_ln2_nats_and_one_bit():
    assert js_divergence([1, 1, 0, 0], [0, 0, 3, 1]) == pytest.approx(math.log(2))
    assert js_divergence([1, 1, 0, 0], [0, 0, 3, 1], base=2) == pytest.approx(1.0)


def test_js_known_value_and_symmetry():
    p, q = [0.5, 0.5], [1.0, 0.0]
    m = [0.75, 0.25]
    expected = 0.5 * (0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)) + 0.5 * math.log(1 / 0.75)
    assert js_divergence(p, q) == pytest.approx(expected)
    assert js_divergence(q, p) == pytest.approx(expected)
    assert m  # documents the mixture used above


def test_js_rejects_bad_histograms():
    with pytest.raises(ValueError):
        js_divergence([0, 0], [1, 1])
    with pytest.raises(ValueError):
        js_divergence([1, 2], [1, 2, 3])


def test_js_samples_on_shared_bins():
    x = np.zeros(50)
    assert js_divergence_samples(x, x) == pytest.approx(0.0)
    assert js_divergence_samples(np.zeros(50), np.ones(50) * 10) == pytest.approx(math.log(2))


def test_wasserstein_and_ks_exact():
    assert wasserstein([0, 0, 0], [3, 3, 3]) == pytest.approx(3.0)
    stat, p = ks_test(np.arange(10), np.arange(10) + 100)
    assert stat == pytest.approx(1.0) and p < 1e-4


def test_pairwise_distances_and_median_heuristic():
    X = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    D = pairwise_sq_dists(X)
    assert D[0, 1] == pytest.approx(25.0) and D[0, 2] == pytest.approx(100.0)
    assert median_heuristic(D) == pytest.approx(5.0)   # sqrt(median of 25, 100, 25)
    assert median_heuristic(np.zeros((3, 3))) == 0.0


def test_mmd2_unbiased_matches_definition():
    rng = np.random.default_rng(0)
    X, Y, s = rng.normal(size=(7, 3)), rng.normal(size=(5, 3)) + 1, 1.3
    k = lambda a, b: math.exp(-np.sum((a - b) ** 2) / (2 * s * s))  # noqa: E731
    xx = sum(k(X[i], X[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(Y[i], Y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    xy = sum(k(x, y) for x in X for y in Y) / (7 * 5)
    assert mmd2_unbiased(X, Y, s) == pytest.approx(xx + yy - 2 * xy)
    assert mmd_permutation_test(X, Y, 19, bandwidth=s).mmd2 == pytest.approx(xx + yy - 2 * xy)


def test_mmd_pvalue_roughly_uniform_under_no_drift():
    ps = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        X, Y = rng.normal(size=(40, 5)), rng.normal(size=(40, 5))
        ps.append(mmd_permutation_test(X, Y, n_permutations=199, seed=seed).p_value)
    ps = np.array(ps)
    assert 0.35 <= ps.mean() <= 0.65
    assert (ps <= 0.05).mean() <= 0.1


def test_mmd_detects_a_clear_shift():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(60, 5)), rng.normal(size=(60, 5)) + 0.7
    res = mmd_permutation_test(X, Y, n_permutations=199, seed=0)
    assert res.p_value == pytest.approx(1 / 200)   # the smallest attainable p-value
    assert res.mmd2 > 10 * res.null_std


def test_mmd_identical_samples_and_degenerate():
    X = np.random.default_rng(2).normal(size=(30, 4))
    assert mmd_permutation_test(X, X.copy(), 99, seed=0).p_value > 0.5
    with pytest.raises(ValueError):
        mmd_permutation_test(np.ones((10, 3)), np.ones((10, 3)), 99)
    with pytest.raises(ValueError):
        mmd_permutation_test(np.ones((1, 3)), np.zeros((10, 3)), 99)


def test_mmd_is_seeded():
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(30, 4)), rng.normal(size=(30, 4))
    assert mmd_permutation_test(X, Y, 99, seed=5).p_value == mmd_permutation_test(X, Y, 99, seed=5).p_value


def test_kl_divergence_known_value_and_smoothing():
    from driftkeel.drift.stats import kl_divergence

    assert kl_divergence([1, 3], [1, 3], smoothing=0) == pytest.approx(0.0)
    p, q = np.array([0.25, 0.75]), np.array([0.5, 0.5])
    assert kl_divergence([1, 3], [2, 2], smoothing=0) == pytest.approx(float(np.sum(p * np.log(p / q))))
    assert np.isfinite(kl_divergence([5, 0], [0, 5]))          # an empty bin stays finite with smoothing


def test_divergences_of_a_shift():
    from driftkeel.drift.stats import divergences

    d = divergences(np.zeros(20), np.full(20, 4.0), n_bins=4)
    assert d["wasserstein"] == pytest.approx(4.0) and d["js_nats"] == pytest.approx(math.log(2))
