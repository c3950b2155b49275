"""Cluster and topic attribution: which prompts grew or appeared."""
import numpy as np
import pytest
from scipy.sparse import csr_matrix

from driftkeel.drift.clusters import cluster_report, lda_fit, lda_transform, top_words, topic_report

OLD = ["bake bread with yeast", "roast vegetables in the oven", "cook pasta al dente", "brew coffee at home",
       "plan a trip to Rome", "pack a bag for hiking", "book cheap flights", "find a hotel downtown"]
NEW = ["stake crypto tokens on a validator", "secure a crypto wallet seed phrase", "mint an NFT token on chain"]


def _blobs(rng, centers, n_each, scale=0.05):
    return np.vstack([c + rng.normal(size=(n_each, len(c))) * scale for c in centers])


def test_cluster_report_finds_the_new_cluster_with_its_examples():
    rng = np.random.default_rng(0)
    old_c = np.eye(8)[:4] * 3
    ref = _blobs(rng, old_c, 50)
    cur = np.vstack([_blobs(rng, old_c, 40), _blobs(rng, [np.full(8, -2.0)], 40)])
    ref_t = [f"old prompt {i % 4}" for i in range(len(ref))]
    cur_t = [f"old prompt {i % 4}" for i in range(160)] + ["crypto wallet question"] * 40
    r = cluster_report(ref, cur, ref_t, cur_t, seed=0)
    assert r["far_share_current"] == pytest.approx(0.2, abs=0.03)
    assert r["far_p_value"] < 1e-3      # the histogram over reference clusters need not move: the new points are far
    top = r["new_clusters"][0]
    assert top["size"] == 40 and top["p_value"] < 1e-6 and top["examples"] == ["crypto wallet question"]
    assert set(top["top_words"]) == {"crypto", "wallet", "question"}


def test_cluster_report_is_quiet_without_drift_and_says_when_too_small():
    rng = np.random.default_rng(1)
    c = np.eye(6)[:3] * 3
    r = cluster_report(_blobs(rng, c, 60), _blobs(rng, c, 60), seed=1)
    assert r["far_p_value"] > 0.01 and not [n for n in r["new_clusters"] if n["p_value"] < 0.01]
    assert "reason" in cluster_report(np.zeros((3, 2)), np.zeros((10, 2)))


def test_top_words_ranks_over_represented_words():
    fg = ["crypto wallet seed", "crypto token stake", "crypto wallet"]
    bg = ["bread oven", "pasta oven", "coffee beans"]
    assert top_words(fg, bg, n=2) == ["crypto", "wallet"]


def test_lda_recovers_two_disjoint_topics():
    V = 10                  # words 0-4 belong to topic A, 5-9 to topic B
    rng = np.random.default_rng(2)
    rows = []
    for d in range(60):
        words = rng.integers(0, 5, 12) if d % 2 == 0 else rng.integers(5, 10, 12)
        rows.append(np.bincount(words, minlength=V))
    X = csr_matrix(np.array(rows, dtype=float))
    lam = lda_fit(X, 2, seed=0, n_iter=30)
    top = [set(np.argsort(-lam[k])[:5].tolist()) for k in range(2)]
    assert sorted(map(sorted, top)) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    theta = lda_transform(X, lam)
    assert np.allclose(theta.sum(axis=1), 1) and (theta.max(axis=1) > 0.9).mean() > 0.9


def test_topic_report_shows_the_topic_that_grew():
    rng = np.random.default_rng(3)
    ref = [OLD[i] for i in rng.integers(0, len(OLD), 200)]
    cur = [OLD[i] for i in rng.integers(0, len(OLD), 140)] + [NEW[i] for i in rng.integers(0, 3, 60)]
    r = topic_report(ref, cur, n_topics=4, seed=0)
    assert r["current_without_known_words"] == pytest.approx(0.3, abs=0.02)   # crypto words are unknown to it
    assert "reason" in topic_report(ref[:5], cur)
