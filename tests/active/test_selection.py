"""Acquisition, the surrogate Bradley-Terry model and budgeted selection."""
import numpy as np
import pandas as pd
import pytest

from driftkeel.active import BradleyTerrySurrogate, acquire, clean_pool, least_confidence, rank, select
from driftkeel.config import SelectParams
from driftkeel.embeddings import HASHING, Embedder


def test_least_confidence_values_and_ranking():
    p = np.array([0.9, 0.52, 0.1, 0.45, 0.5, 0.99])
    u = least_confidence(p)
    assert u == pytest.approx([0.2, 0.96, 0.2, 0.9, 1.0, 0.02])
    unc, order = acquire(p, "least_confidence", seed=0)
    assert list(order[:3]) == [4, 1, 3]          # the known most uncertain pairs, in order
    assert set(order[3:5]) == {0, 2} and order[5] == 5


def test_random_strategy_is_seeded_and_ties_are_not_positional():
    _, o1 = acquire(np.full(50, 0.7), "random", seed=1)
    _, o2 = acquire(np.full(50, 0.7), "random", seed=1)
    assert list(o1) == list(o2) and sorted(o1) == list(range(50))
    assert list(rank(np.zeros(20), seed=3)) != list(range(20))
    with pytest.raises(ValueError):
        acquire(np.zeros(3), "coin_toss", seed=0)


def test_surrogate_is_antisymmetric_and_learns():
    rng = np.random.default_rng(0)
    w = rng.normal(size=16)
    X = rng.normal(size=(300, 16))
    y = (X @ w > 0).astype(int)
    m = BradleyTerrySurrogate(seed=0).fit(X, y)
    p = m.predict_proba(X[:20])
    assert np.allclose(p + m.predict_proba(-X[:20]), 1.0)
    assert np.mean((m.predict_proba(X) > 0.5) == y) > 0.9
    ens = BradleyTerrySurrogate(n_members=3, seed=0).fit(X, y, np.full(300, 0.8))
    assert ens.member_proba(X[:5]).shape == (3, 5)


def _consensus(n=80, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        good = f"Simmer the garlic and onion in butter, then stir {i}."
        bad = "I am not sure, it depends on many things."
        a_good = bool(rng.random() < 0.5)
        rows.append({"comparison_id": f"c{i}", "batch": i // 40, "prompt_id": f"p{i}", "prompt": f"How to cook dish {i}?",
                     "response_a": good if a_good else bad, "response_b": bad if a_good else good,
                     "label": "a" if a_good else "b", "confidence": 1.0})
    rows.append({**rows[0], "comparison_id": "tie", "label": "tie"})
    return pd.DataFrame(rows)


def _pool():
    clear = [{"pair_id": f"clear{i}", "prompt_id": f"q{i}", "prompt": f"How to cook dish {100 + i}?",
              "response_a": f"Simmer the garlic and onion in butter, then stir {100 + i}.",
              "response_b": "I am not sure, it depends on many things.", "batch": 9, "policy_version": "v"}
             for i in range(20)]
    unsure = [{"pair_id": f"unsure{i}", "prompt_id": f"u{i}", "prompt": f"How to cook dish {200 + i}?",
               "response_a": f"Simmer the garlic and onion in butter, then stir {200 + i}.",
               "response_b": f"Simmer the garlic and onion in butter, then stir {300 + i}.", "batch": 9,
               "policy_version": "v"} for i in range(5)]
    bad = [{"pair_id": "same", "prompt": "x?", "response_a": "same text", "response_b": "same text"},
           {"pair_id": "nofield", "prompt": "x?", "response_a": "a"},
           {"pair_id": "clear0", "prompt": "dup", "response_a": "a", "response_b": "b"},
           "not a dict"]
    return clear + unsure + bad


@pytest.fixture()
def embedder(tmp_path):
    return Embedder(cache_path=tmp_path / "emb.sqlite", backend=HASHING)


def test_select_picks_the_uncertain_pairs_and_counts_bad_rows(embedder):
    sel = select(_pool(), _consensus(), SelectParams(k=5, strategy="least_confidence", n_members=1, calibrate=False),
                 embedder, seed=0)
    assert {q["pair_id"] for q in sel.queue} == {f"unsure{i}" for i in range(5)}
    assert all(q["uncertainty"] > 0.8 for q in sel.queue)
    default = select(_pool(), _consensus(), SelectParams(k=5), embedder, seed=0)   # bald + kcenter, 5 members
    assert {q["pair_id"] for q in default.queue} == {f"unsure{i}" for i in range(5)}
    assert len(sel.quarantine) == 4 and {q["reason"] for q in sel.quarantine} == {
        "identical_responses", "missing_fields", "duplicate_pair_id", "not_an_object"}
    m = sel.metrics
    assert m["n_skipped_identical_responses"] == 1 and m["n_skipped_missing_fields"] == 1
    assert m["n_skipped_duplicate_pair_id"] == 1 and m["n_skipped_not_an_object"] == 1
    assert m["n_pool_usable"] == 25 and m["k_selected"] == 5
    assert set(sel.queue[0]) >= {"pair_id", "prompt", "response_a", "response_b", "p_a", "uncertainty", "reason"}
    assert len(sel.scores) == 25 and sel.scores["selected"].sum() == 5


def test_k_larger_than_pool_takes_all_and_says_so(embedder):
    sel = select(_pool(), _consensus(), SelectParams(k=1000), embedder, seed=0)
    assert len(sel.queue) == 25 and sel.metrics["k_capped"] == 1
    assert any("exceeds" in n for n in sel.notes)


def test_empty_pool_and_no_labels(embedder):
    empty = select([], _consensus(), SelectParams(k=5), embedder, seed=0)
    assert empty.queue == [] and any("empty" in n for n in empty.notes)
    nolabels = select(_pool(), None, SelectParams(k=5), embedder, seed=0)
    assert len(nolabels.queue) == 5 and nolabels.metrics["strategy_random_fallback"] == 1


def test_random_strategy_is_seeded(embedder):
    a = select(_pool(), _consensus(), SelectParams(k=5, strategy="random"), embedder, seed=4)
    b = select(_pool(), _consensus(), SelectParams(k=5, strategy="random"), embedder, seed=4)
    assert [q["pair_id"] for q in a.queue] == [q["pair_id"] for q in b.queue]


def test_clean_pool_counts():
    rows, counts = clean_pool(_pool())
    assert len(rows) == 25 and counts["identical_responses"] == 1


def test_drift_prior_changes_the_queue_and_says_why(embedder):
    """Equal uncertainty everywhere: the pairs of the flagged new cluster go first, with the reason."""
    cons = _consensus()
    legal = [{"pair_id": f"legal{i}", "prompt_id": f"l{i}", "prompt": f"How do I file an employment dispute {i}?",
              "response_a": f"Simmer the garlic and onion in butter, then stir {400 + i}.",
              "response_b": f"Simmer the garlic and onion in butter, then stir {500 + i}.", "batch": 9,
              "policy_version": "v"} for i in range(5)]
    report = {"reference_batches": [0, 1], "clusters": {"new_clusters": [
        {"examples": ["How do I file an employment dispute?"], "p_value": 1e-6}], "grew": []}}
    pool = _pool()[20:25] + legal   # 5 unsure cooking pairs + 5 unsure legal pairs
    params = SelectParams(k=5, strategy="least_confidence", n_members=1, calibrate=False, diversity="none")
    on = select(pool, cons, params, embedder, seed=0, drift_report=report)
    assert {q["pair_id"] for q in on.queue} == {f"legal{i}" for i in range(5)}
    assert all("drift prior x2" in q["reason"] and q["drift_region"] == "new" for q in on.queue)
    assert on.metrics["n_selected_drift_boosted"] == 5
    off = select(pool, cons, params.model_copy(update={"drift_prior": False}), embedder, seed=0,
                 drift_report=report)
    assert off.metrics["n_selected_drift_boosted"] == 0 and any("drift prior off" in n for n in off.notes)


def test_queue_has_no_near_duplicates(embedder):
    twin = [{"pair_id": f"twin{i}", "prompt_id": "t", "prompt": "How to cook dish 777?",
             "response_a": "Simmer the garlic and onion in butter, then stir 777.",
             "response_b": "Simmer the garlic and onion in butter, then stir 778.", "batch": 9,
             "policy_version": "v"} for i in range(4)]                 # four copies of one question
    swapped = [{**twin[0], "pair_id": "swapped", "response_a": twin[0]["response_b"],
                "response_b": twin[0]["response_a"]}]
    sel = select(_pool()[:25] + twin + swapped, _consensus(), SelectParams(k=8, n_members=3), embedder, seed=0)
    ids = [q["pair_id"] for q in sel.queue]
    assert sum(i.startswith("twin") or i == "swapped" for i in ids) <= 1
    assert sel.metrics["n_near_duplicates_skipped"] >= 4


def test_pairs_labelled_before_are_not_queued_again(embedder):
    """After `driftkeel labels import` a pool pair is a consensus row (comparison_id = pair_id): the next
    selection must not spend budget on it. It is skipped and counted (not quarantined)."""
    cons = _consensus()
    labelled = pd.DataFrame([{**cons.iloc[1].to_dict(), "comparison_id": f"unsure{i}", "batch": 9} for i in range(3)])
    sel = select(_pool(), pd.concat([cons, labelled], ignore_index=True),
                 SelectParams(k=5, strategy="least_confidence", n_members=1, calibrate=False), embedder, seed=0)
    queued = {q["pair_id"] for q in sel.queue}
    assert not queued & {"unsure0", "unsure1", "unsure2"} and {"unsure3", "unsure4"} <= queued
    m = sel.metrics
    assert m["n_skipped_already_labelled"] == 3 and m["n_pool_usable"] == 22 and len(sel.quarantine) == 4
    assert m["n_pool_rows"] == m["n_pool_usable"] + m["n_quarantined"] + m["n_skipped_already_labelled"]
    assert any("labelled before" in n for n in sel.notes)


def test_pool_quarantine_gives_the_file_line(tmp_path, embedder):
    """Blank and invalid-JSON lines are dropped by the reader; the quarantine must still point at the row's
    line in the file, not at its position among the parsed rows."""
    import json

    from driftkeel.active import read_pool

    good = [json.dumps({"pair_id": f"g{i}", "prompt": f"q {i}?", "response_a": f"yes {i}", "response_b": "no"})
            for i in range(3)]
    same = json.dumps({"pair_id": "same", "prompt": "x?", "response_a": "t", "response_b": "t"})
    path = tmp_path / "pool.jsonl"
    path.write_text("\n".join([good[0], "", "{broken", good[1], same, good[2]]) + "\n", encoding="utf-8")
    rows, n_bad, lines = read_pool(path, with_lines=True)
    assert n_bad == 1 and lines == [1, 4, 5, 6]
    sel = select(rows, _consensus(), SelectParams(k=2), embedder, seed=0, lines=lines)
    assert [(q["line"], q["reason"]) for q in sel.quarantine] == [(5, "identical_responses")]


def test_one_member_bald_takes_the_drift_prior_order_and_reasons_are_named_right(embedder):
    """With one member every BALD score is 0: the note says the drift prior orders the pairs, so it must
    (boosted pairs first among the tied scores); margin reasons print the score under its real name."""
    from driftkeel.active.selection import choose

    prior = np.array([1.0, 2.0, 1.0, 2.0, 1.0, 2.0])
    _, order, batch = choose(np.zeros(6), None, prior, 3, "none", SelectParams(), seed=0)
    assert set(order[:3].tolist()) == {1, 3, 5} and set(batch.chosen.tolist()) == {1, 3, 5}
    # untied scores keep their order whatever the prior ties
    _, order2, _ = choose(np.array([0.1, 0.5, 0.3, 0.2, 0.9, 0.4]), None, np.ones(6), 6, "none", SelectParams(), 0)
    assert order2.tolist() == [4, 1, 5, 2, 3, 0]
    sel = select(_pool(), _consensus(), SelectParams(k=2, strategy="margin", drift_prior=False), embedder, seed=0)
    for q in sel.queue:
        assert q["reason"].startswith(f"margin: 1-|2p-1|={q['uncertainty']:.3f}, BT margin |2p-1|="
                                      f"{abs(2 * q['p_a'] - 1):.3f}")


def test_drift_prior_note_says_why_it_was_not_applied(embedder):
    assert "drift prior off (the pool is empty)" in " ".join(select([], _consensus(), SelectParams(k=5), embedder).notes)
    fallback = select(_pool(), None, SelectParams(k=5), embedder, seed=0)
    assert "drift prior off (not applied to the fallback to random selection)" in " ".join(fallback.notes)
    rnd = select(_pool(), _consensus(), SelectParams(k=5, strategy="random"), embedder, seed=0)
    assert "drift prior off (not applied to random selection)" in " ".join(rnd.notes)
    off = select(_pool(), _consensus(), SelectParams(k=5, drift_prior=False), embedder, seed=0)
    assert "drift prior off (select.drift_prior: false)" in " ".join(off.notes)


def test_pool_fields_of_the_wrong_type_are_quarantined_as_such():
    rows = [{"pair_id": 17, "prompt": "x?", "response_a": "a", "response_b": "b"},
            {"pair_id": "w1", "prompt": "x?", "response_a": "a", "response_b": "b", "batch": "2026-w07"},
            {"pair_id": "ok1", "prompt": "x?", "response_a": "a", "response_b": "b", "batch": "7"},
            {"pair_id": "ok2", "prompt": "x?", "response_a": "a", "response_b": "b", "batch": 7.0},
            {"pair_id": "", "prompt": "x?", "response_a": "a", "response_b": "b"}]
    q: list = []
    kept, counts = clean_pool(rows, q)
    assert [r["pair_id"] for r in kept] == ["ok1", "ok2"]
    assert [(x["line"], x["reason"]) for x in q] == [(1, "field_not_text"), (2, "batch_not_an_integer"),
                                                   (5, "missing_fields")]
    assert q[0]["row"]["_not_text"] == ["pair_id"] and q[2]["row"]["_missing"] == ["pair_id"]
    assert len(kept) + sum(v for k, v in counts.items() if k != "missing_optional_fields") == len(rows)
