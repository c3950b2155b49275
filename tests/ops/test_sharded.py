"""The shard functions themselves (no engine): bounds, calibration across shards, top-k merging."""
import numpy as np
import pytest

from driftkeel.ops import sharded


def test_shard_bounds_cover_everything_once():
    assert sharded.shard_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert sharded.shard_bounds(0, 4) == []
    with pytest.raises(ValueError):
        sharded.shard_bounds(3, 0)


def test_enough_permutations_for_bonferroni_across_shards():
    assert sharded.permutations_for(200, 0.05, 20) == 800  # 1/(B+1) <= 0.05/20 / 2
    assert sharded.permutations_for(1000, 0.05, 3) == 1000
    assert 1 / (sharded.permutations_for(99, 0.05, 40) + 1) <= 0.05 / 40


def test_combine_drift_is_bonferroni_over_shards():
    res = [{"shard": i, "n": 100, "p_value": p, "mmd2": m, "mean_shift": m}
           for i, (p, m) in enumerate([(0.02, 0.1), (0.5, 0.0), (0.004, 0.3)])]
    out = sharded.combine_drift(list(reversed(res)), alpha=0.05)
    assert out["alpha_per_shard"] == pytest.approx(0.05 / 3)
    assert out["alarm"] and out["n_shards_alarmed"] == 1 and out["min_p_value"] == 0.004  # 0.02 > 0.0167
    assert [r["shard"] for r in out["shards"]] == [0, 1, 2]
    assert out["mean_mmd2"] == pytest.approx(0.4 / 3)
    assert sharded.combine_drift([])["alarm"] is False


def test_drift_shard_is_deterministic_and_sees_a_shift():
    ref = [f"how to cook pasta number {i}" for i in range(80)]
    same = [f"how to cook pasta number {i}" for i in range(80, 160)]
    other = [f"wallet seed phrase recovery step {i}" for i in range(80)]
    a = sharded.drift_shard(0, same, ref, n_permutations=99, seed=1)
    assert a == sharded.drift_shard(0, same, ref, n_permutations=99, seed=1)
    b = sharded.drift_shard(1, other, ref, n_permutations=99, seed=1)
    assert b["p_value"] == pytest.approx(0.01) and b["mean_shift"] > 10 * a["mean_shift"]


def test_merge_top_k_equals_a_global_sort():
    rng = np.random.default_rng(0)
    scores = rng.random(50).round(2)  # ties on purpose
    items = [(float(s), i, 0.5) for i, s in enumerate(scores)]
    parts = [sorted(items[s:s + 7], key=lambda x: (-x[0], x[1]))[:10] for s in range(0, 50, 7)]
    assert sharded.merge_top_k(parts, 10) == sorted(items, key=lambda x: (-x[0], x[1]))[:10]
