"""Acquisition functions, batch selection and calibration on hand-made cases with known answers."""
import numpy as np
import pytest

from driftkeel.active import bald, binary_entropy, ensemble_variance, least_confidence, scores, select_batch
from driftkeel.active.surrogate import expected_calibration_error, fit_temperature


def test_binary_entropy_known_values():
    assert binary_entropy(np.array([0.5, 0.0, 1.0, 0.25])) == pytest.approx([1.0, 0.0, 0.0, 0.811278], abs=1e-6)


def test_bald_and_variance_known_values():
    # two members; pair 0: they disagree (0.9 vs 0.1); pair 1: both say 0.5; pair 2: both say 0.8
    P = np.array([[0.9, 0.5, 0.8], [0.1, 0.5, 0.8]])
    assert bald(P) == pytest.approx([1.0 - 0.468996, 0.0, 0.0], abs=1e-6)
    assert ensemble_variance(P) == pytest.approx([0.16, 0.0, 0.0])
    assert least_confidence(P.mean(axis=0)) == pytest.approx([1.0, 1.0, 0.4])
    # members at 0 and 1: maximal mutual information (1 bit)
    assert bald(np.array([[0.0], [1.0]])) == pytest.approx([1.0], abs=1e-6)


def test_strategies_rank_as_expected():
    P = np.array([[0.9, 0.5, 0.8, 0.6], [0.1, 0.5, 0.8, 0.4]])
    assert np.argmax(scores(P, "bald")) == 0            # only disagreement counts
    assert np.argmax(scores(P, "variance")) == 0
    assert set(np.argsort(-scores(P, "least_confidence"))[:3]) == {0, 1, 3}   # mean 0.5 for all three
    assert scores(P, "margin") == pytest.approx(scores(P, "least_confidence"))
    assert np.argmin(scores(P, "entropy")) == 2
    r1, r2 = scores(P, "random", seed=5), scores(P, "random", seed=5)
    assert np.array_equal(r1, r2)
    assert scores(np.array([0.5, 0.9]), "bald") == pytest.approx([0.0, 0.0])   # one member: no disagreement
    with pytest.raises(ValueError, match="unknown acquisition strategy"):
        scores(P, "coin_toss")


def _two_clusters():
    rng = np.random.default_rng(0)
    A = np.array([1.0, 0, 0, 0]) + rng.normal(0, 0.01, size=(10, 4))
    B = np.array([0, 1.0, 0, 0]) + rng.normal(0, 0.01, size=(10, 4))
    X = np.vstack([A, B])
    s = np.concatenate([np.linspace(1.0, 0.9, 10), np.linspace(0.8, 0.7, 10)])   # A scores higher
    return X, s


def test_diversity_spreads_the_batch_and_none_takes_the_top():
    X, s = _two_clusters()
    top = select_batch(s, X, 4, diversity="none", min_distance=0.0)
    assert set(top.chosen) == {0, 1, 2, 3}
    kc = select_batch(s, X, 4, diversity="kcenter", min_distance=0.0, candidate_factor=5)
    assert kc.chosen[0] == 0 and any(i >= 10 for i in kc.chosen)      # reaches cluster B
    k1 = select_batch(s, X, 4, diversity="kmeanspp", min_distance=0.0, candidate_factor=5, seed=3)
    k2 = select_batch(s, X, 4, diversity="kmeanspp", min_distance=0.0, candidate_factor=5, seed=3)
    assert list(k1.chosen) == list(k2.chosen) and len(set(k1.chosen)) == 4


def test_no_near_duplicates_in_a_batch_even_swapped():
    x = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    s = np.array([1.0, 0.99, 0.98, 0.5, 0.4])
    b = select_batch(s, x, 3, diversity="none", min_distance=0.05)
    assert list(b.chosen) == [0, 3, 4]            # 1 is a copy of 0, 2 the same pair with a and b swapped
    assert b.n_near_duplicates == 2
    short = select_batch(s[:3], x[:3], 3, diversity="kcenter", min_distance=0.05)
    assert list(short.chosen) == [0] and short.n_near_duplicates == 2


def test_batch_edge_cases():
    assert len(select_batch(np.zeros(0), np.zeros((0, 3)), 5).chosen) == 0
    b = select_batch(np.array([0.2, 0.9, 0.5]), np.eye(3), 10)
    assert list(b.chosen) == [1, 2, 0]            # k larger than the pool: all of it, best first
    with pytest.raises(ValueError, match="unknown diversity"):
        select_batch(np.ones(2), np.eye(2), 1, diversity="coreset")


def test_temperature_recovers_overconfidence():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, size=20000)
    y = (rng.random(20000) < 1 / (1 + np.exp(-z))).astype(int)
    t = fit_temperature(2.0 * z[None, :], y)      # logits twice too large -> T = 2
    assert t == pytest.approx(2.0, rel=0.1)
    assert expected_calibration_error(1 / (1 + np.exp(-z)), y) < 0.02
    assert expected_calibration_error(np.array([1.0, 1.0]), np.array([0, 0])) == pytest.approx(1.0)


def test_label_budget_curve_on_a_separable_problem():
    import numpy as np

    from driftkeel.active.selection import budget_curve

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 8))
    y = (X[:, 0] > 0).astype(int)                        # the preference depends on feature 0 only
    held = np.zeros(400, dtype=bool)
    held[:100] = True
    new = np.zeros(400, dtype=bool)
    new[:50] = True
    rows = budget_curve(X, y, np.ones(400), held, new, seed=0)
    labels = [r["labels"] for r in rows]
    assert labels == sorted(set(labels)) and labels[0] == 15 and labels[-1] == 300
    assert all(r["n_heldout"] == 100 and r["n_heldout_new"] == 50 for r in rows)
    assert rows[-1]["heldout_accuracy"] >= 0.9 and rows[-1]["heldout_accuracy_new"] >= 0.85
    assert budget_curve(X, y, np.ones(400), held, None, seed=0)[0]["heldout_accuracy_new"] is None
