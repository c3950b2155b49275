"""Consensus, confidence, review routing and annotator calibration on a hand-made set of judgements."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftkeel.annotation import (AGREEMENT_COLUMNS, ANNOTATOR_COLUMNS, aggregate_judgements, annotator_table,
                                  consensus, count_matrix, fleiss_kappa, krippendorff_alpha_nominal)
from driftkeel.config import AggregateParams
from driftkeel.data.schemas import CONSENSUS_COLUMNS

# comparison -> (batch, [(annotator, label), ...]); c6 is golden with gold label "b"
VOTES = {
    "c1": (0, [("x", "a"), ("y", "a"), ("z", "b")]),       # 2-1 majority
    "c2": (0, [("x", "a"), ("z", "b")]),                   # even split -> tie
    "c3": (0, [("y", "tie"), ("z", "tie"), ("x", "a")]),   # plurality of tie votes
    "c4": (0, [("x", "a"), ("y", "tie")]),                 # even split involving a tie vote
    "c5": (1, [("z", "b")]),                               # one judgement
    "c6": (1, [("x", "a"), ("y", "a"), ("z", "b")]),       # golden: gold label wins
    "c7": (1, [("x", "a"), ("y", "b"), ("z", "tie")]),     # three-way split -> tie
    "c8": (1, [("x", "b"), ("y", "b"), ("z", "b")]),       # unanimous
    "c9": (1, [("x", "a")]),                               # one judgement by a zero-weight annotator
}
GOLD = {"c6": "b"}


def judgements() -> pd.DataFrame:
    rows = []
    for cid, (batch, votes) in VOTES.items():
        for j, (ann, label) in enumerate(votes):
            rows.append({"judgement_id": f"{cid}-{j}", "comparison_id": cid, "batch": batch,
                         "timestamp": f"2026-01-0{batch + 1}T00:0{j}:00Z", "prompt_id": f"p-{cid}",
                         "prompt": f"prompt {cid}", "response_a": "A", "response_b": "B",
                         "policy_version": "policy-v0", "annotator_id": ann, "label": label,
                         "response_time_s": 10.0, "is_golden": cid in GOLD})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def cons():
    return consensus(judgements(), GOLD, pseudocount=0.5).set_index("comparison_id")


def test_majority_and_explicit_ties(cons):
    assert cons["label"].to_dict() == {"c1": "a", "c2": "tie", "c3": "tie", "c4": "tie", "c5": "b",
                                       "c6": "b", "c7": "tie", "c8": "b", "c9": "a"}
    assert cons.loc[cons["even_split"]].index.tolist() == ["c2", "c4", "c7"]


def test_confidence_is_the_smoothed_share(cons):
    expected = {"c1": 2.5 / 4.5, "c2": 0.5 / 3.5, "c3": 2.5 / 4.5, "c4": 1.5 / 3.5, "c5": 1.5 / 2.5,
                "c6": 1.0, "c7": 1.5 / 4.5, "c8": 3.5 / 4.5, "c9": 1.5 / 2.5}
    assert cons["confidence"].to_dict() == pytest.approx(expected, abs=1e-12)
    assert cons["agreement"].to_dict() == pytest.approx(
        {"c1": 2 / 3, "c2": 0.0, "c3": 2 / 3, "c4": 0.5, "c5": 1.0, "c6": 1 / 3, "c7": 1 / 3, "c8": 1.0, "c9": 1.0})
    assert cons["n_judgements"].tolist() == [3, 2, 3, 2, 1, 3, 3, 3, 1]
    assert cons["is_golden"].tolist() == [False] * 5 + [True] + [False] * 3
    assert cons.loc["c1", "batch"] == 0 and cons.loc["c1", "timestamp"] == "2026-01-01T00:00:00Z"


def test_annotator_calibration_exact():
    j = judgements()
    table = annotator_table(j, consensus(j, GOLD), GOLD, prior_strength=2.0).set_index("annotator_id")
    assert list(table.reset_index().columns) == ANNOTATOR_COLUMNS
    assert table["golden_accuracy"].to_dict() == {"x": 0.0, "y": 0.0, "z": 1.0}
    # agreement over non-golden comparisons with >= 2 judgements (c1 c2 c3 c4 c7 c8)
    assert table["agreement_with_consensus"].to_dict() == pytest.approx({"x": 2 / 6, "y": 4 / 5, "z": 3 / 5})
    # accuracy estimate (correct + 2 * agreement) / (n_golden + 2); weight clip((3 acc - 1) / 2, 0, 1)
    assert table["accuracy_estimate"].to_dict() == pytest.approx({"x": 2 / 9, "y": 1.6 / 3, "z": 2.2 / 3})
    assert table["weight"].to_dict() == pytest.approx({"x": 0.0, "y": 0.3, "z": 0.6})
    assert table["n_judgements"].to_dict() == {"x": 8, "y": 6, "z": 7}
    assert (table.loc["x", "first_batch"], table.loc["x", "last_batch"]) == (0, 1)


def test_weighted_votes_use_annotator_weights():
    w = {"x": 0.0, "y": 0.3, "z": 0.6}
    c = consensus(judgements(), GOLD, pseudocount=0.5, weights=w).set_index("comparison_id")
    assert c.loc["c1", "label"] == "b" and c.loc["c1", "confidence"] == pytest.approx(1.1 / 2.4)
    assert c.loc["c2", "label"] == "b" and c.loc["c2", "confidence"] == pytest.approx(1.1 / 2.1)
    assert c.loc["c9", "label"] == "a"           # all-zero weights: falls back to one vote each
    assert c.loc["c6", "label"] == "b" and c.loc["c6", "confidence"] == 1.0
    assert c.loc["c1", "agreement"] == pytest.approx(1 / 3)  # agreement stays the raw share


def test_aggregate_outputs_review_queue_and_metrics():
    j = judgements()
    res = aggregate_judgements(j, GOLD, AggregateParams(review_confidence_threshold=0.5, min_judgements=2))
    assert list(res.consensus.columns) == list(CONSENSUS_COLUMNS) and len(res.consensus) == 9
    queue = [(q["comparison_id"], q["reasons"]) for q in res.review_queue]
    assert queue == [("c2", ["low_confidence", "even_split"]), ("c7", ["low_confidence", "even_split"]),
                     ("c4", ["low_confidence", "even_split"]), ("c5", ["few_judgements"]),
                     ("c9", ["few_judgements"])]
    assert res.review_queue[0]["votes"] == {"a": 1, "b": 1, "tie": 0}
    # queued comparisons stay in the consensus with their confidence
    assert set(res.consensus["comparison_id"]) >= {q["comparison_id"] for q in res.review_queue}
    m = res.metrics
    assert (m["n_comparisons"], m["n_review"], m["n_ties"], m["n_even_splits"], m["n_golden_comparisons"]) == (9, 5, 4, 3, 1)
    assert m["mean_golden_accuracy"] == pytest.approx(1 / 3)
    assert m["krippendorff_alpha"] == pytest.approx(
        krippendorff_alpha_nominal(count_matrix(j["comparison_id"], j["label"], ["a", "b", "tie"])))
    assert m["label_share_tie"] == pytest.approx(4 / 9)


def test_agreement_per_batch_table():
    j = judgements()
    res = aggregate_judgements(j, GOLD, AggregateParams())
    agr = res.agreement
    assert list(agr.columns) == AGREEMENT_COLUMNS and agr["batch"].tolist() == [0, 1]
    assert agr["n_comparisons"].tolist() == [4, 5]
    b0 = j[j["batch"] == 0]
    counts0 = count_matrix(b0["comparison_id"], b0["label"], ["a", "b", "tie"])
    assert agr.loc[0, "krippendorff_alpha"] == pytest.approx(krippendorff_alpha_nominal(counts0))
    assert agr.loc[0, "fleiss_kappa"] == pytest.approx(fleiss_kappa(counts0))
    assert np.isnan(agr.loc[0, "mean_golden_accuracy"]) and agr.loc[1, "mean_golden_accuracy"] == pytest.approx(1 / 3)


def test_bad_inputs_fail_loudly():
    j = judgements()
    j.loc[0, "label"] = "c"
    with pytest.raises(ValueError, match="labels must be in"):
        consensus(j, GOLD)
    with pytest.raises(ValueError, match="no clean judgements"):
        aggregate_judgements(j.iloc[0:0], GOLD, AggregateParams())
