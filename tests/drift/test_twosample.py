"""The shared-permutation two-sample test: each statistic against its definition, calibration, power."""
import math

import numpy as np
import pytest

from driftkeel.drift.stats import js_divergence, mmd2_unbiased, pairwise_sq_dists
from driftkeel.drift.twosample import (classifier_auc_rows, cluster_js_rows, kmeans, knn_graph, knn_rows,
                                       mmd2_rows, permutation_labels, permutation_pvalues, two_sample_test)


def test_permutation_labels_first_row_is_observed_and_rows_keep_sizes():
    A = permutation_labels(3, 2, 5, seed=0)
    assert A.shape == (6, 5) and A[0].tolist() == [0, 0, 0, 1, 1]
    assert (A.sum(axis=1) == 2).all()


def test_mmd2_rows_matches_the_unbiased_definition():
    rng = np.random.default_rng(0)
    X, Y, s = rng.normal(size=(6, 3)), rng.normal(size=(4, 3)) + 1, 1.7
    K = np.exp(-pairwise_sq_dists(np.vstack([X, Y])) / (2 * s * s)).astype(np.float32)
    np.fill_diagonal(K, 0)
    A = permutation_labels(6, 4, 3, seed=1)
    got = mmd2_rows(K, A)
    assert got[0] == pytest.approx(mmd2_unbiased(X, Y, s), rel=1e-5)
    Z = np.vstack([X, Y])
    for b in range(1, 4):      # a permutation = the same statistic on the relabelled sample
        cur = A[b] == 1
        assert got[b] == pytest.approx(mmd2_unbiased(Z[~cur], Z[cur], s), rel=1e-5)


def test_classifier_auc_matches_a_direct_ridge_fit_per_fold():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 5))
    X[20:, 0] += 1.0
    A = permutation_labels(20, 20, 2, seed=0)
    got = classifier_auc_rows(X, A, n_folds=2, seed=3, ridge=0.5)
    folds = np.random.default_rng(3).permutation(40) % 2
    y = A[0].astype(float)
    U = W = 0.0
    for k in range(2):
        tr, te = folds != k, folds == k
        Xt = X[tr] - X[tr].mean(axis=0)
        G = Xt.T @ Xt
        beta = np.linalg.solve(G + 0.5 * np.trace(G) / 5 * np.eye(5), Xt.T @ (y[tr] - y[tr].mean()))
        s = (X[te] - X[tr].mean(axis=0)) @ beta
        n1 = y[te].sum()
        n0 = len(s) - n1
        U += roc_auc_score(y[te], s) * n1 * n0
        W += n1 * n0
    assert got[0] == pytest.approx(U / W)
    sep = np.vstack([np.zeros((10, 2)), np.ones((10, 2)) * 5]) + rng.normal(size=(20, 2)) * 0.01
    assert classifier_auc_rows(sep, permutation_labels(10, 10, 0, 0), n_folds=2)[0] == pytest.approx(1.0)


def test_knn_share_of_same_window_links():
    # two tight pairs far apart: every point's nearest neighbour is its pair mate
    Z = np.array([[0.0], [0.1], [10.0], [10.1]])
    nb = knn_graph(pairwise_sq_dists(Z), 1)
    assert nb[:, 0].tolist() == [1, 0, 3, 2]
    A = np.array([[0, 0, 1, 1], [0, 1, 0, 1]], dtype=np.float32)
    assert knn_rows(nb, A).tolist() == [1.0, 0.0]


def test_knn_rows_equals_counting_the_links_one_by_one():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(60, 3))
    D = pairwise_sq_dists(Z, dtype=np.float32)
    before = D.copy()
    nb = knn_graph(D, 5)
    assert np.array_equal(D, before)                          # knn_graph leaves D as it was
    assert not (nb == np.arange(60)[:, None]).any()           # a point is not its own neighbour
    A = permutation_labels(25, 35, 20, seed=1)
    brute = [np.mean([a[i] == a[j] for i in range(60) for j in nb[i]]) for a in A]
    assert knn_rows(nb, A) == pytest.approx(brute, abs=1e-12)


def test_cluster_js_rows_is_the_js_of_the_two_histograms():
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 0])
    A = np.array([[0, 0, 0, 0, 1, 1, 1, 1]], dtype=np.float32)
    ref, cur = np.bincount(labels[:4], minlength=3), np.bincount(labels[4:], minlength=3)
    assert cluster_js_rows(labels, A)[0] == pytest.approx(js_divergence(ref, cur))
    assert cluster_js_rows(np.array([0, 1, 0, 1]), np.array([[0, 1, 0, 1]], dtype=np.float32))[0] == \
        pytest.approx(math.log(2))


def test_permutation_pvalues_count_ties_as_exceeding():
    T = np.array([[3.0, 1.0], [1.0, 1.0], [2.0, 1.0], [3.0, 0.0]])
    P = permutation_pvalues(T)
    assert P[:, 0].tolist() == [0.5, 1.0, 0.75, 0.5]
    assert P[:, 1].tolist() == [0.75, 0.75, 0.75, 1.0]


def test_kmeans_separates_three_blobs():
    rng = np.random.default_rng(4)
    centers = np.array([[0, 0], [10, 0], [0, 10]])
    Z = np.vstack([c + rng.normal(size=(30, 2)) * 0.3 for c in centers])
    labels, C = kmeans(Z, 3, seed=0)
    assert len(set(labels[:30])) == len(set(labels[30:60])) == len(set(labels[60:])) == 1
    assert len(set(labels.tolist())) == 3
    assert np.allclose(np.sort(C[:, 0]), [0, 0, 10], atol=0.3)
    # far from the origin (float32 distances would lose the blobs without centring): the same answer
    far_labels, far_C = kmeans(Z + 1e5, 3, seed=0)
    assert np.array_equal(far_labels, labels) and np.allclose(far_C, C + 1e5, atol=1e-3)


def test_two_sample_statistics_do_not_move_with_a_shift_of_the_data():
    rng = np.random.default_rng(6)
    X, Y = rng.normal(size=(60, 5)), rng.normal(size=(50, 5)) + 0.4
    a = two_sample_test(X, Y, n_permutations=49, seed=1)
    b = two_sample_test(X + 1e4, Y + 1e4, n_permutations=49, seed=1)
    assert b.p_value == a.p_value
    for name, st in a.statistics.items():
        assert b.statistics[name]["statistic"] == pytest.approx(st["statistic"], rel=1e-3, abs=1e-5), name


def test_pvalues_are_calibrated_under_no_drift():
    ps = []
    for seed in range(30):
        rng = np.random.default_rng(100 + seed)
        ps.append(two_sample_test(rng.normal(size=(40, 4)), rng.normal(size=(40, 4)), n_permutations=99,
                                  seed=seed).p_value)
    ps = np.array(ps)
    assert 0.3 <= ps.mean() <= 0.7 and (ps <= 0.05).mean() <= 0.1


def test_a_small_new_cluster_is_found_and_the_combined_p_respects_min_p():
    rng = np.random.default_rng(5)
    ref = rng.normal(size=(150, 6))
    cur = np.vstack([rng.normal(size=(135, 6)), rng.normal(size=(15, 6)) * 0.2 + 4.0])   # 10% in a new place
    r = two_sample_test(ref, cur, n_permutations=199, seed=0)
    assert r.p_value == pytest.approx(1 / 200)        # the floor 1/(B+1), kept by the tie-break
    assert r.p_value >= min(s["p_value"] for s in r.statistics.values()) - 1e-12
    assert set(r.statistics) == {"mmd@1", "classifier_auc", "knn10", "cluster_js"}
    several = two_sample_test(ref, cur, n_permutations=99, seed=0, bandwidths=(0.5, 1, 2), statistics=("mmd",))
    assert set(several.statistics) == {"mmd@0.5", "mmd@1", "mmd@2"}
    for s in r.statistics.values():
        assert s["threshold"] >= s["null_mean"]


def test_combined_pvalue_breaks_floor_ties_by_the_standardised_statistic():
    from driftkeel.drift.twosample import combined_pvalue

    T = np.array([[5.0, 1.0], [0.0, 9.0], [1.0, 0.0], [0.5, 0.5]])   # row 0 is the max of column 0 only
    P = permutation_pvalues(T)
    assert P[0].min() == P[1].min() == 0.25
    z0 = (5 - 0.5) / np.std([0.0, 1.0, 0.5])
    z1 = (9 - 0.5) / np.std([9.0, 0.0, 0.5])
    assert z1 < z0 and combined_pvalue(T, P) == 0.25


def test_degenerate_inputs_raise():
    with pytest.raises(ValueError):
        two_sample_test(np.ones((10, 3)), np.ones((10, 3)))
    with pytest.raises(ValueError):
        two_sample_test(np.zeros((2, 3)), np.ones((10, 3)))
