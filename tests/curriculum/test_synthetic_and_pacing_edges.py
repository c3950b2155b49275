"""Synthetic feedback and pacing on small hand-made cases: weights on the human pairs' scale, no
synthetic pair on an eval prompt, every synthetic pair in the composition, seeded pacing ties."""
import pandas as pd
import pytest

from driftkeel.config import MixParams
from driftkeel.curriculum import build_mix
from driftkeel.curriculum.difficulty import order_rows
from driftkeel.embeddings import HASHING, Embedder

from test_curriculum import NEW, OLD, _consensus  # the same hand-made stream (tests/curriculum)

GOOD = "Careful steps to {}: plan, check, then {}."
BAD = "No idea, it depends."


REPORT = {"reference_batches": [0, 1], "clusters": {"new_clusters": [
    {"examples": [f"How do I {t}?" for t in NEW], "p_value": 1e-9}], "grew": []}}
PARAMS = MixParams(new_batches=2, replay_fraction=0.25, eval_fraction=0.1, synthetic=True,
                   synthetic_min_confidence=0.9, synthetic_max_share=0.2, synthetic_weight=0.5)


@pytest.fixture(scope="module")
def emb(tmp_path_factory):
    return Embedder(cache_path=tmp_path_factory.mktemp("emb") / "e.sqlite", backend=HASHING)


def _pool(n=60, batch=5, with_ids=True):
    return [{"pair_id": f"pool-{i}", **({"prompt_id": f"q{i}"} if with_ids else {}),
             "prompt": f"How do I {OLD[i % 8]} {100 + i}?", "response_a": GOOD.format(OLD[i % 8], 100 + i),
             "response_b": BAD, "batch": batch} for i in range(n)]


def test_synthetic_weight_is_on_the_human_scale_when_a_cluster_is_boosted(emb):
    # new_cluster_weight 3: human weights are divided by 3 outside the flagged cluster; a synthetic pair
    # (weight 0.5 x confidence) must not end up above a confidence-1 human pair there (it was 0.50 vs 0.33)
    p = PARAMS.model_copy(update={"new_cluster_weight": 3.0})
    mix = build_mix(_consensus(), p, seed=0, embedder=emb, drift_report=REPORT, pool=_pool())
    tr = mix.train
    syn = tr[tr["source"] == "synthetic"]
    assert len(syn) > 0
    other = tr[(tr["region"] == "other") & (tr["source"] != "synthetic")]
    top_other = other["weight"].max()
    assert top_other == pytest.approx(1.0 / 3.0)
    assert (syn["weight"] <= 0.5 * top_other + 1e-12).all()
    assert (syn["weight"] >= 0.5 * 0.9 * top_other - 1e-12).all()   # x confidence >= min_confidence


def test_no_synthetic_pair_on_an_eval_prompt_even_without_prompt_ids(emb):
    cons = _consensus()
    base = build_mix(cons, PARAMS.model_copy(update={"synthetic": False}), seed=0, embedder=emb)
    ev = base.eval[["prompt_id", "prompt"]].drop_duplicates()
    assert len(ev) > 0
    # pool pairs on exactly the eval prompts, without the optional prompt_id
    pool = [{"pair_id": f"pool-{j}", "prompt": pr, "response_a": GOOD.format(pr[9:-1], j), "response_b": BAD,
             "batch": 5} for j, pr in enumerate(ev["prompt"])]
    mix = build_mix(cons, PARAMS, seed=0, embedder=emb, pool=pool)
    syn = mix.train[mix.train["source"] == "synthetic"]
    assert not set(syn["prompt"]) & set(mix.eval["prompt"])
    assert mix.info["synthetic"]["n_excluded_eval_prompt"] == len(pool)
    assert len(syn) == 0


def test_every_synthetic_pair_is_in_the_composition_and_the_replay_dilution_is_said(emb):
    # pool pairs from a batch the consensus does not hold (7) and from none (-1)
    pool = _pool(30, batch=7) + [dict(r, pair_id=f"nb-{i}", batch=None, prompt_id=f"nb{i}",
                                      prompt=r["prompt"].replace("?", " now?"))
                                 for i, r in enumerate(_pool(30))]
    mix = build_mix(_consensus(), PARAMS, seed=0, embedder=emb, pool=pool)
    n_syn = mix.metrics["n_synthetic"]
    assert n_syn > 0
    comp = mix.composition
    assert int(comp["n_synthetic"].sum()) == n_syn == int((mix.train["source"] == "synthetic").sum())
    assert comp["batch"].is_monotonic_increasing
    share = mix.metrics["replay_share_train"]
    assert share < mix.metrics["replay_share"]
    assert any(f"train replay share {share:.3f}" in n for n in mix.notes)


def test_pool_rows_with_a_non_integer_batch_do_not_crash_the_mix(emb):
    pool = _pool(20) + [dict(r, pair_id=f"w-{i}", batch="2026-w07") for i, r in enumerate(_pool(20))]
    mix = build_mix(_consensus(), PARAMS, seed=0, embedder=emb, pool=pool)
    assert not mix.train["pair_id"].str.startswith("synthetic:w-").any()


def test_pacing_ties_are_split_by_the_seed_not_by_position():
    df = pd.DataFrame({"id": [f"n{i}" for i in range(6)] + [f"r{i}" for i in range(6)], "difficulty": 0.5})
    first_phase = set()
    for seed in range(6):
        out = order_rows(df, "pacing", seed, phases=2)
        ph = dict(zip(out["id"], out["phase"]))
        assert sorted(ph.values()) == [0] * 6 + [1] * 6
        first_phase.add(frozenset(k for k, v in ph.items() if v == 0))
    assert len(first_phase) > 1                     # the seed decides, and not always the first six rows
    assert frozenset(f"n{i}" for i in range(6)) != first_phase or len(first_phase) > 1
