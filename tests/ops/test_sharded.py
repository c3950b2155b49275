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


def test_every_engine_gets_one_plan_and_each_shard_records_its_permutation_count():
    reference = [f"how to cook pasta number {i}" for i in range(300)]
    current = [f"how to cook pasta number {i}" for i in range(300, 520)]
    plan = sharded.plan_drift(reference, len(current), shard_size=100, max_window=120, n_permutations=50,
                              alpha=0.05, seed=2)
    assert plan["bounds"] == [(0, 100), (100, 200), (200, 220)]
    assert plan["reference"] == sharded.reference_sample(reference, 120, 2) and len(plan["reference"]) == 120
    assert plan["n_permutations"] == sharded.permutations_for(50, 0.05, 3) == 120
    out = sharded.drift_check_serial(reference, current, shard_size=100, max_window=120, n_permutations=50,
                                     alpha=0.05, seed=2)
    assert [s["n_permutations"] for s in out["shards"]] == [120, 120, 120]


def test_result_differences_sees_an_engine_that_skipped_the_bonferroni_permutation_count():
    """The bug behind benchmarks/scaleout results.json "same_result": false: one engine (the plain Dask
    run) tested each shard with the requested 200 permutations instead of the 800 the plan raises it to
    for Bonferroni over 20 shards; its p-values differ (and could never reach alpha / n_shards)."""
    reference = [f"how to cook pasta number {i}" for i in range(200)]
    current = [f"how to cook pasta number {i}" for i in range(200, 300)] + \
        [f"wallet seed phrase recovery step {i}" for i in range(100)]
    kw = dict(shard_size=100, max_window=100, alpha=0.05, seed=0)
    serial = sharded.drift_check_serial(reference, current, n_permutations=20, **kw)
    plan = sharded.plan_drift(reference, len(current), n_permutations=20, **kw)
    assert plan["n_permutations"] == 80
    same = sharded.combine_drift(
        [sharded.drift_shard(i, current[s:e], plan["reference"], max_window=100, n_permutations=80, seed=0)
         for i, (s, e) in enumerate(plan["bounds"])], 0.05)
    assert sharded.result_differences(serial, same) == []
    assert same["shards"] == serial["shards"]
    skipped = sharded.combine_drift(
        [sharded.drift_shard(i, current[s:e], plan["reference"], max_window=100, n_permutations=20, seed=0)
         for i, (s, e) in enumerate(plan["bounds"])], 0.05)
    diff = sharded.result_differences(serial, skipped)
    assert "shard 0: n_permutations" in diff and "shard 1: p_value" in diff and "min_p_value" in diff
    assert serial["alarm"] and not skipped["alarm"]  # 1/21 > 0.025: the skipped count cannot alarm
    # timings and cache counts are not compared
    assert sharded.result_differences(serial, {**serial, "seconds": {"embed": 9.0}, "embedding": {}}) == []
