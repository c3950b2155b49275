"""Difficulty, curriculum order, replay share from drift, cluster weights, synthetic feedback, HF datasets."""
import numpy as np
import pandas as pd
import pytest

from driftkeel.config import MixParams
from driftkeel.curriculum import build_mix, difficulty, order_rows, replay_share
from driftkeel.embeddings import HASHING, Embedder


def test_difficulty_known_values():
    d, close = difficulty(np.array([1.0, 0.5, 1.0, 0.75, 0.9]), np.array([1.0, 0.0, 0.5, np.nan, 0.65]), 0.2)
    assert d == pytest.approx([0.0, 1.0, 0.25, 0.5, 0.275])
    assert list(close) == [False, False, True, False, True]


def test_orders():
    df = pd.DataFrame({"pair_id": list("abcdef"), "difficulty": [0.9, 0.1, 0.5, 0.3, 0.7, 0.0]})
    e2h = order_rows(df, "easy_to_hard", seed=0, phases=3)
    assert list(e2h["pair_id"]) == list("fbdcea")
    assert list(e2h["phase"]) == [0, 0, 1, 1, 2, 2]
    pac = order_rows(df, "pacing", seed=0, phases=3)
    assert list(pac["phase"]) == [0, 0, 1, 1, 2, 2] and set(pac["pair_id"][:2]) == {"f", "b"}
    sh1, sh2 = order_rows(df, "shuffle", seed=4), order_rows(df, "shuffle", seed=4)
    assert list(sh1["pair_id"]) == list(sh2["pair_id"]) and sorted(sh1["pair_id"]) == list("abcdef")
    with pytest.raises(ValueError):
        order_rows(df, "hard_first", seed=0)


def test_replay_share_from_drift_level():
    p = MixParams(replay_fraction=0.3, replay_from_drift=True, replay_by_level={0: 0.1, 2: 0.25, 3: 0.4})
    assert replay_share(p, 3)[0] == 0.4 and replay_share(p, 2)[0] == 0.25
    assert replay_share(p, 1)[0] == 0.1            # the highest listed level not above 1
    assert replay_share(p, None)[0] == 0.3         # no decision: the configured share
    assert replay_share(MixParams(replay_fraction=0.3), 3)[0] == 0.3
    with pytest.raises(ValueError, match="replay shares"):
        MixParams(replay_by_level={0: 1.5})


OLD = ["cook pasta", "bake bread", "roast chicken", "grill fish", "make soup", "fry rice", "boil eggs", "steam buns"]
NEW = ["file an employment dispute", "draft a lease contract", "register a privacy complaint"]


def _consensus(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for b in range(6):
        for i in range(40):
            topic = NEW[i % 3] if b >= 4 and i % 2 else OLD[i % 8]
            good, bad = f"Careful steps to {topic}: plan, check, then {i}.", "No idea, it depends."
            a_good = bool(rng.random() < 0.5)
            rows.append({"comparison_id": f"c{b}-{i}", "batch": b, "prompt_id": f"p{b}-{i}",
                         "prompt": f"How do I {topic} {i}?", "response_a": good if a_good else bad,
                         "response_b": bad if a_good else good, "label": "a" if a_good else "b",
                         "confidence": float(rng.choice([1.0, 0.8, 0.6]))})
    return pd.DataFrame(rows)


def _report():
    return {"reference_batches": [0, 1], "clusters": {"new_clusters": [
        {"examples": [f"How do I {t}?" for t in NEW], "p_value": 1e-9}], "grew": []}}


@pytest.fixture()
def embedder(tmp_path):
    return Embedder(cache_path=tmp_path / "emb.sqlite", backend=HASHING)


def test_mix_difficulty_and_new_cluster_weights(embedder):
    cons = _consensus()
    p = MixParams(new_batches=2, replay_fraction=0.25, eval_fraction=0.1, new_cluster_weight=3.0)
    mix = build_mix(cons, p, seed=0, embedder=embedder, drift_report=_report())
    tr = mix.train
    assert {"difficulty", "close", "phase", "region", "p_chosen"} <= set(tr.columns)
    assert tr["p_chosen"].notna().all() and tr["difficulty"].is_monotonic_increasing
    new = tr[tr["region"] == "new"]
    is_new_topic = tr["prompt"].str.contains("dispute|lease|privacy")
    assert (tr[is_new_topic]["region"] == "new").all()       # every new-topic prompt is in the new region
    # by the drift stage's rule about far_quantile (5%) of old prompts also count as far
    assert is_new_topic[tr["region"] == "new"].mean() >= 0.9
    # weight = confidence x factor / max factor: new-cluster pairs keep 3x the weight of others
    conf = cons.set_index("comparison_id")["confidence"]
    ratio_new = (new["weight"] / conf.loc[new["pair_id"]].to_numpy()).round(6).unique()
    other = tr[tr["region"] == "other"]
    ratio_other = (other["weight"] / conf.loc[other["pair_id"]].to_numpy()).round(6).unique()
    assert list(ratio_new) == [1.0] and list(ratio_other) == [pytest.approx(1 / 3, abs=1e-6)]
    assert mix.metrics["n_new_cluster_pairs"] == int((mix.train["region"] == "new").sum()
                                                     + (mix.eval["region"] == "new").sum())
    flat = build_mix(cons, p, seed=0, embedder=embedder, drift_report=None)
    assert (flat.train["region"] == "other").all() and any("no drift report" in n for n in flat.notes)


def test_synthetic_pairs_are_marked_train_only_and_capped(embedder):
    cons = _consensus()
    pool = [{"pair_id": f"pool-{i}", "prompt_id": f"q{i}", "prompt": f"How do I {OLD[i % 8]} {100 + i}?",
             "response_a": f"Careful steps to {OLD[i % 8]}: plan, check, then {100 + i}.",
             "response_b": "No idea, it depends.", "batch": 5} for i in range(60)]
    pool.append({"pair_id": "same", "prompt": "x?", "response_a": "t", "response_b": "t"})
    p = MixParams(new_batches=2, replay_fraction=0.25, eval_fraction=0.1, synthetic=True,
                  synthetic_min_confidence=0.9, synthetic_max_share=0.2, synthetic_weight=0.5)
    mix = build_mix(cons, p, seed=0, embedder=embedder, pool=pool, queued={"pool-0"})
    syn = mix.train[mix.train["source"] == "synthetic"]
    assert len(syn) > 0 and (mix.eval["source"] != "synthetic").all()
    assert syn["pair_id"].str.startswith("synthetic:").all() and "synthetic:pool-0" not in set(syn["pair_id"])
    assert (syn["chosen"].str.startswith("Careful")).all()          # the ensemble picked the right side
    assert (syn["weight"] <= 0.5).all()
    assert len(syn) <= int(np.floor((mix.metrics["n_train"] - len(syn)) * 0.2 / 0.8))
    assert mix.metrics["n_synthetic"] == len(syn)
    off = build_mix(cons, MixParams(new_batches=2), seed=0, embedder=embedder, pool=pool)
    assert (off.train["source"] != "synthetic").all()


def test_hf_datasets_roundtrip(tmp_path, embedder):
    from datasets import load_from_disk

    from pipelines.mix import _save_hf

    mix = build_mix(_consensus(), MixParams(new_batches=2), seed=0, embedder=embedder)
    _save_hf(tmp_path / "hf", mix.train, mix.eval)
    ds = load_from_disk(str(tmp_path / "hf"))
    assert ds["train"].num_rows == len(mix.train) and ds["eval"].num_rows == len(mix.eval)
    assert {"chosen", "rejected", "weight", "difficulty", "source"} <= set(ds["train"].column_names)
    assert ds["train"]["pair_id"] == mix.train["pair_id"].tolist()     # the curriculum order is kept
