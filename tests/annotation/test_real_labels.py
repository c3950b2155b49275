"""Aggregation on real crowd labels with expert gold: RTE (Snow et al. 2008), 800 items x 10 AMT labels.

Data: ../shared/data/annotation/rte (read in place, never copied). Labels 0/1 are mapped to a/b.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from shared_data import shared_path

from driftkeel.annotation import annotator_table, consensus, ds_consensus

RTE = shared_path("annotation", "rte")
pytestmark = pytest.mark.skipif(not (RTE / "labels.csv").exists(), reason="shared RTE data not present")
MAP = {"0": "a", "1": "b"}


def _load():
    lab = pd.read_csv(RTE / "labels.csv", dtype=str)
    gold = pd.read_csv(RTE / "gold.csv", dtype=str)
    j = pd.DataFrame({"comparison_id": lab["item_id"], "annotator_id": lab["worker_id"],
                      "label": lab["label"].map(MAP), "batch": 0})
    for col in ("timestamp", "prompt_id", "prompt", "response_a", "response_b", "policy_version"):
        j[col] = "-"
    return j, dict(zip(gold["item_id"], gold["gold"].map(MAP)))


def test_majority_vote_on_rte():
    j, gold = _load()
    c = consensus(j, {}).set_index("comparison_id")
    truth = pd.Series(gold)[c.index]
    ties = c["label"] == "tie"
    assert len(c) == 800 and int(ties.sum()) == 65          # 5-5 splits are ties, not coin flips
    assert (c["label"] == truth).mean() == pytest.approx(685 / 800)
    assert (c.loc[~ties, "label"] == truth[~ties]).mean() > 0.93


def test_annotator_weights_recover_accuracy_under_spam():
    """40% of judgements replaced by uniform random spammers: weights learned on half of the gold
    items must make the weighted vote clearly better than majority on the other half."""
    j, gold = _load()
    rng = np.random.default_rng(0)
    spam = rng.random(len(j)) < 0.4
    j.loc[spam, "annotator_id"] = [f"spam-{k}" for k in rng.integers(0, 20, spam.sum())]
    j.loc[spam, "label"] = np.where(rng.random(spam.sum()) < 0.5, "a", "b")
    items = sorted(gold)
    rng.shuffle(items)
    calib = {i: gold[i] for i in items[:400]}
    held_out = items[400:]

    majority = consensus(j, calib)
    table = annotator_table(j, majority, calib)
    weights = dict(zip(table["annotator_id"], table["weight"]))
    weighted = consensus(j, calib, weights=weights).set_index("comparison_id")
    majority = majority.set_index("comparison_id")
    truth = pd.Series(gold)[held_out]
    acc_mv = (majority.loc[held_out, "label"] == truth).mean()
    acc_w = (weighted.loc[held_out, "label"] == truth).mean()
    assert acc_w > acc_mv + 0.1 and acc_w > 0.85
    is_spam = table["annotator_id"].str.startswith("spam-")
    assert table.loc[is_spam, "weight"].max() < table.loc[~is_spam, "weight"].median()


def test_dawid_skene_on_rte_clean_and_with_spammers():
    """No golden anchors (gold only scores). Clean: DS beats majority (whose 5-5 splits are ties);
    with uniform spammers adding 40% of all judgements it holds where majority falls."""
    j, gold = _load()
    truth = pd.Series(gold)
    clean = ds_consensus(j, {}).consensus.set_index("comparison_id")
    acc_clean = (clean["label"] == truth[clean.index]).mean()
    assert acc_clean >= 0.92 and (clean["label"] != "tie").all()
    rng = np.random.default_rng(1)
    n_spam = int(round(0.4 / 0.6 * len(j)))
    items = j["comparison_id"].unique()
    pairs = {(items[rng.integers(len(items))], f"spam-{rng.integers(20)}") for _ in range(2 * n_spam)}
    pairs = sorted(pairs)[:n_spam]
    spam = pd.DataFrame({"comparison_id": [p[0] for p in pairs], "annotator_id": [p[1] for p in pairs],
                         "label": np.where(rng.random(len(pairs)) < 0.5, "a", "b"), "batch": 0})
    for col in ("timestamp", "prompt_id", "prompt", "response_a", "response_b", "policy_version"):
        spam[col] = "-"
    js = pd.concat([j, spam], ignore_index=True)
    ds = ds_consensus(js, {}).consensus.set_index("comparison_id")
    mv = consensus(js, {}).set_index("comparison_id")
    acc_ds = (ds["label"] == truth[ds.index]).mean()
    acc_mv = (mv["label"] == truth[mv.index]).mean()
    assert acc_ds >= 0.91 and acc_ds > acc_mv + 0.05
