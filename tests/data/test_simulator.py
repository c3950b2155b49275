import collections
import hashlib
import json

import numpy as np

from driftkeel.config import DataParams
from driftkeel.data import simulator as sim
from driftkeel.data.schemas import JUDGEMENT_COLUMNS, LABELS

SMALL = DataParams(seed=3, n_batches=8, comparisons_per_batch=60, judgements_per_comparison=3,
                   n_annotators=12, spammer_fraction=0.17, golden_fraction=0.1, new_topics_from_batch=4,
                   concept_drift_batch=5, pool_change_batch=6, n_sft_demos=20, pool_size=30,
                   n_eval_pairs=20, n_eval_prompts=8)


def _digest(d):
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path):
    assert sim.materialise(SMALL, tmp_path / "a") == "written"
    assert sim.materialise(SMALL, tmp_path / "b") == "written"
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert sim.materialise(SMALL, tmp_path / "a") == "unchanged"


def test_refuses_to_overwrite_different_raw_data(tmp_path):
    sim.materialise(SMALL, tmp_path / "d")
    other = SMALL.model_copy(update={"seed": 4})
    try:
        sim.materialise(other, tmp_path / "d")
    except FileExistsError as exc:
        assert "--force" in str(exc)
    else:
        raise AssertionError("overwrote raw data")
    assert sim.materialise(other, tmp_path / "d", force=True) == "written"


def test_stream_schema_and_several_annotators_per_comparison():
    data = sim.simulate(SMALL)
    assert len(data.stream) == 8
    for b, rows in data.stream.items():
        assert len(rows) == 60 * 3
        for r in rows:
            assert list(r) == list(JUDGEMENT_COLUMNS)
            assert r["label"] in LABELS and r["batch"] == b
        per_cmp = collections.defaultdict(set)
        for r in rows:
            per_cmp[r["comparison_id"]].add(r["annotator_id"])
        assert all(len(a) == 3 for a in per_cmp.values())
        first_judgements = [r["timestamp"] for r in rows if r["judgement_id"].endswith("-0")]
        assert first_judgements == sorted(first_judgements)  # comparisons arrive in time order
    # batches are time ordered
    firsts = [data.stream[b][0]["timestamp"] for b in range(8)]
    assert firsts == sorted(firsts)


def test_new_topics_appear_only_after_the_drift_point():
    data = sim.simulate(SMALL)
    topics = collections.defaultdict(set)
    for t in data.truth_comparisons:
        topics[t["batch"]].add(t["topic"])
    for b in range(SMALL.new_topics_from_batch):
        assert not topics[b] & set(sim.vocab.NEW_TOPICS)
    assert topics[7] & set(sim.vocab.NEW_TOPICS)
    assert len(sim.vocab.TOPICS) >= 8


def test_true_utility_and_concept_drift():
    p = "How do I cook pasta?"
    helpful = "First simmer and then stir carefully."
    padded = helpful + " " + sim.vocab.FILLER[0]
    unsafe = helpful + " " + sim.vocab.UNSAFE[1]
    assert sim.features(p, helpful)["relevance"] == 2
    assert sim.true_utility(p, padded, "pre") > sim.true_utility(p, helpful, "pre")   # padding liked before
    assert sim.true_utility(p, padded, "post") < sim.true_utility(p, helpful, "post")  # disliked after
    assert sim.true_utility(p, unsafe, "post") < sim.true_utility(p, helpful, "post")
    off_topic = "First itinerary and then passport carefully."
    assert sim.true_utility(p, off_topic) == 0.0


def test_outputs_get_longer_over_policy_versions():
    data = sim.simulate(SMALL)
    mean_words = [np.mean([len(r["response_a"].split()) for r in data.stream[b]]) for b in (0, 7)]
    assert mean_words[1] > mean_words[0] * 1.2


def test_pool_change_adds_noisier_annotators_and_spammers_are_fast():
    data = sim.simulate(SMALL)
    anns = data.truth["annotators"]
    new = [a for a in anns if a["first_batch"] == SMALL.pool_change_batch]
    old = [a for a in anns if a["first_batch"] == 0 and not a["spammer"]]
    assert new and min(a["temperature"] for a in new) > max(a["temperature"] for a in old)
    spam = {a["annotator_id"] for a in anns if a["spammer"]}
    assert spam
    times = collections.defaultdict(list)
    for rows in data.stream.values():
        for r in rows:
            times[r["annotator_id"] in spam].append(r["response_time_s"])
    assert np.median(times[True]) * 3 < np.median(times[False])


def test_golden_items_have_gold_labels_equal_to_truth():
    data = sim.simulate(SMALL)
    truth = {t["comparison_id"]: t["true_label"] for t in data.truth_comparisons}
    assert data.golden
    for g in data.golden:
        assert g["gold_label"] == truth[g["comparison_id"]]
    golden_ids = {g["comparison_id"] for g in data.golden}
    flagged = {r["comparison_id"] for rows in data.stream.values() for r in rows if r["is_golden"]}
    assert flagged == golden_ids


def test_eval_pairs_chosen_is_truly_better_and_slices():
    data = sim.simulate(SMALL)
    for e in data.eval_pairs:
        assert sim.true_utility(e["prompt"], e["chosen"], e["slice"]) > sim.true_utility(e["prompt"], e["rejected"], e["slice"])
    assert {e["slice"] for e in data.eval_pairs} == {"pre", "post"}


def test_ground_truth_is_separate_and_json(tmp_path):
    sim.materialise(SMALL, tmp_path / "d")
    truth = json.loads((tmp_path / "d/ground_truth/truth.json").read_text())
    assert truth["drift_points"]["concept_drift_batch"] == 5
    assert not any("truth" in p.name for p in (tmp_path / "d/stream").iterdir())


def test_a_forced_replace_that_fails_midway_keeps_the_old_raw_data(tmp_path, monkeypatch):
    """`--force` replaces data/ by a swap: if moving the new tree in fails (disk full, a kill), the old
    raw data is still there, whole, and no temp tree is left beside it."""
    import os
    import shutil

    import pytest

    from driftkeel.config import DataParams
    from driftkeel.data import prepare as prep

    d = tmp_path / "d"
    sim.materialise(SMALL, d)
    before = _digest(d)
    real_move, real_replace = shutil.move, os.replace

    def failing(real):
        def f(src, dst, *a, **k):
            if os.path.basename(str(src)).startswith((".demo-data.", ".prepare-data.")):
                raise OSError(28, "No space left on device")
            return real(src, dst, *a, **k)
        return f

    monkeypatch.setattr(shutil, "move", failing(real_move))
    monkeypatch.setattr(os, "replace", failing(real_replace))
    with pytest.raises(OSError, match="No space left"):
        sim.materialise(SMALL.model_copy(update={"seed": 4}), d, force=True)
    assert _digest(d) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    # the same for prepare-data (user files)
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}"}) + "\n"
                           for i in range(30)))
    p = DataParams.model_validate({"source": "files", "files": {"sources": [{"format": "pairs", "path": str(src)}],
                                                                 "eval_fraction": 0.0, "pool_fraction": 0.0}})
    with pytest.raises(OSError, match="No space left"):
        prep.prepare(p, tmp_path, d, force=True)
    assert _digest(d) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "pairs.jsonl"]
