"""Aggregation on real crowd labels with expert gold: RTE (Snow et al. 2008), 800 items x 10 AMT labels.

Data: ../shared/data/annotation/rte (read in place, never copied). Labels 0/1 are mapped to a/b.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftkeel.annotation import annotator_table, consensus

RTE = Path(__file__).resolve().parents[3] / "shared" / "data" / "annotation" / "rte"
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
