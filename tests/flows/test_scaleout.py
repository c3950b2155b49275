"""Scale-out: the sharded drift check and pool scoring as Prefect tasks on Prefect's DaskTaskRunner
(a real 2-worker Dask cluster reached by address, the real Prefect server) give exactly the one-process
answer. (`on_dask(..., n_workers=2)` without an address starts such a local cluster itself.)"""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from driftkeel.active.surrogate import BradleyTerrySurrogate, pair_features
from driftkeel.embeddings import HASHING, Embedder, EmbeddingCache
from driftkeel.ops import sharded

from flows.scaleout import on_dask, sharded_drift, sharded_scoring

pytestmark = pytest.mark.slow

OLD = ["pasta", "sourdough", "Lisbon", "hiking", "piano", "tomatoes", "budgets", "marathons"]
NEW = ["crypto wallets", "validator rewards", "smart contracts"]


def _jsonl(path, texts):
    path.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts))
    return str(path)


def _prompts(n, topics, seed):
    rng = np.random.default_rng(seed)
    return [f"How do I get better at {topics[rng.integers(len(topics))]} {['today', 'fast', 'safely'][i % 3]} #{i}"
            for i in range(n)]


def _bench_module():
    """benchmarks/scaleout/bench.py under a unique module name (its plain-Dask engine is tested here)."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "scaleout" / "bench.py"
    spec = importlib.util.spec_from_file_location("driftkeel_scaleout_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def cluster():
    """One local 2-worker Dask cluster for both flows; the flows reach it by address, like any cluster."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c.scheduler_address


def test_sharded_drift_and_scoring_on_dask_equal_one_process(prefect_server, cluster, tmp_path):
    reference = _prompts(400, OLD, 0)
    current = _prompts(600, OLD, 1) + _prompts(300, OLD + NEW * 4, 2)  # the last shard(s) drifted
    kw = dict(shard_size=300, backend=HASHING, max_window=200, n_permutations=99, alpha=0.05, seed=3)
    serial = sharded.drift_check_serial(reference, current, cache_path=None, **kw)
    cache = tmp_path / "emb.sqlite"
    ref_file, cur_file = _jsonl(tmp_path / "ref.jsonl", reference), _jsonl(tmp_path / "cur.jsonl", current)
    on = on_dask(sharded_drift, address=cluster)(ref_file, cur_file, cache_path=str(cache), **kw)
    assert on["shards"] == serial["shards"]  # identical per-shard statistics and p-values
    assert sharded.result_differences(serial, on) == []
    # the permutation count was raised for Bonferroni over the 3 shards, on every engine
    assert [s["n_permutations"] for s in on["shards"]] == [sharded.permutations_for(99, 0.05, 3)] * 3 == [120] * 3
    # the benchmark's third engine (distributed's Client.map, no Prefect) gives the same answer too: it
    # once tested with the un-raised count (results.json "same_result": false)
    plain = _bench_module().plain_dask(reference, current, tmp_path / "plain.sqlite", 2, kw, address=cluster)
    assert sharded.result_differences(serial, plain) == []
    assert plain["shards"] == serial["shards"]
    same = ("n_shards", "n", "alpha", "alpha_per_shard", "alarm", "n_shards_alarmed", "min_p_value", "mean_mmd2",
            "mean_shift")
    assert {k: on[k] for k in same} == {k: serial[k] for k in same}
    assert [s["p_value"] <= on["alpha_per_shard"] for s in on["shards"]] == [False, False, True]
    assert on["alarm"] is True
    # the embedding tasks filled the shared cache the drift tasks read from
    ref_sample = sharded.reference_sample(reference, 200, 3)
    assert sum(on["embedding"].values()) == len(set(ref_sample)) + sum(len(set(current[s:s + 300]))
                                                                       for s in (0, 300, 600))
    assert len(EmbeddingCache(cache)) == len(set(ref_sample) | set(current))

    # active-learning scoring of a pool, sharded, vs scoring the whole pool at once
    rng = np.random.default_rng(5)
    prompts = _prompts(700, OLD + NEW, 4)
    a = [f"Start with {p.split()[5]}, step by step." for p in prompts]
    b = ["It depends. " * int(rng.integers(1, 5)) for _ in prompts]
    emb = Embedder(backend=HASHING)
    X = pair_features(emb, prompts[:200], a[:200], b[:200])
    model = BradleyTerrySurrogate(n_members=2, seed=0).fit(X, rng.integers(0, 2, 200))
    coefs = np.vstack([m.coef_[0] for m in model.members])
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"prompt": p, "response_a": x, "response_b": y}) + "\n"
                            for p, x, y in zip(prompts, a, b)))
    top = on_dask(sharded_scoring, address=cluster)(str(pool), coefs.tolist(), k=25, shard_size=150, backend=HASHING)
    p_all = model.predict_proba(pair_features(emb, prompts, a, b))
    u_all = 1 - 2 * np.abs(p_all - 0.5)
    order = np.lexsort((np.arange(len(u_all)), -u_all))[:25]
    assert [i for _, i, _ in top] == order.tolist()
    np.testing.assert_allclose([p for _, _, p in top], p_all[order], rtol=1e-9, atol=1e-12)
