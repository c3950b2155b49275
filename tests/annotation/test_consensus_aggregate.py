"""Consensus, confidence, review routing and annotator calibration on a hand-made set of judgements."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftkeel.annotation import (AGREEMENT_COLUMNS, ANNOTATOR_COLUMNS, aggregate_judgements, annotator_table,
                                  consensus, count_matrix, fleiss_kappa, krippendorff_alpha_nominal)
from driftkeel.annotation.aggregate import CONSENSUS_OUT_COLUMNS, LABEL_DRIFT_COLUMNS
from driftkeel.annotation.routing import AUDIT_COLUMNS, TRAINING_COLUMNS
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
    "c9": (1, [("x", "a")]),                               # one judgement by the least reliable annotator
}
GOLD = {"c6": "b"}
MAJORITY = AggregateParams(method="majority", bootstrap_samples=50)


def judgements(votes=VOTES, gold=GOLD, rt: float = 10.0) -> pd.DataFrame:
    rows = []
    for cid, (batch, vs) in votes.items():
        for j, (ann, label) in enumerate(vs):
            rows.append({"judgement_id": f"{cid}-{j}", "comparison_id": cid, "batch": batch,
                         "timestamp": f"2026-01-0{batch + 1}T00:0{j}:00Z", "prompt_id": f"p-{cid}",
                         "prompt": f"prompt {cid}", "response_a": f"A {cid}", "response_b": f"B {cid}",
                         "policy_version": "policy-v0", "annotator_id": ann, "label": label,
                         "response_time_s": rt, "is_golden": cid in gold})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def cons():
    return consensus(judgements(), GOLD, pseudocount=0.5).set_index("comparison_id")


def test_majority_and_explicit_ties(cons):
    assert cons["label"].to_dict() == {"c1": "a", "c2": "tie", "c3": "tie", "c4": "tie", "c5": "b",
                                       "c6": "b", "c7": "tie", "c8": "b", "c9": "a"}
    assert cons.loc[cons["even_split"]].index.tolist() == ["c2", "c4", "c7"]
    assert cons.loc["c6", "anchor"] == "gold" and (cons.drop(index="c6")["anchor"] == "").all()
    # probabilities: smoothed vote shares; a gold label is certain
    assert cons.loc["c1", ["p_a", "p_b", "p_tie"]].tolist() == pytest.approx([2.5 / 4.5, 1.5 / 4.5, 0.5 / 4.5])
    assert cons.loc["c6", ["p_a", "p_b", "p_tie"]].tolist() == [0.0, 1.0, 0.0]


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
    """Against the majority consensus (one-hot posterior, gold on c6), by hand:
    correct x 3/8, y 4/6, z 5/7 -> pool 12/21 = 4/7; accuracy (c + 2 pool) / (n + 2);
    chance = mean over own judgements of q(consensus label), q = own label frequencies:
    x 1/4, y 1/3, z 3/7; weight = (accuracy - chance) / (1 - chance)."""
    j = judgements()
    table = annotator_table(j, consensus(j, GOLD), GOLD, prior_strength=2.0).set_index("annotator_id")
    assert list(table.reset_index().columns) == ANNOTATOR_COLUMNS
    assert table["golden_accuracy"].to_dict() == {"x": 0.0, "y": 0.0, "z": 1.0}
    # agreement over non-golden comparisons with >= 2 judgements (c1 c2 c3 c4 c7 c8)
    assert table["agreement_with_consensus"].to_dict() == pytest.approx({"x": 2 / 6, "y": 4 / 5, "z": 3 / 5})
    assert table["accuracy_estimate"].to_dict() == pytest.approx({"x": 29 / 70, "y": 9 / 14, "z": 43 / 63})
    assert table["chance_accuracy"].to_dict() == pytest.approx({"x": 1 / 4, "y": 1 / 3, "z": 3 / 7})
    assert table["weight"].to_dict() == pytest.approx({"x": 23 / 105, "y": 13 / 28, "z": 4 / 9})
    assert (table["weight_ci_low"] <= table["weight"]).all() and (table["weight"] <= table["weight_ci_high"]).all()
    assert table["n_judgements"].to_dict() == {"x": 8, "y": 6, "z": 7}
    assert (table.loc["x", "first_batch"], table.loc["x", "last_batch"]) == (0, 1)
    # x says a on c6 (true b) and never b on a true a: position bias +1/2
    assert table.loc["x", "position_bias"] == pytest.approx(0.5)
    assert (table["fast_share"] == 0).all() and (table["median_response_time_s"] == 10.0).all()


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
    res = aggregate_judgements(j, GOLD, MAJORITY.model_copy(update={"review_confidence_threshold": 0.5}))
    assert list(res.consensus.columns) == list(CONSENSUS_COLUMNS) and len(res.consensus) == 9
    assert list(res.details.columns) == CONSENSUS_OUT_COLUMNS
    queue = [(q["comparison_id"], q["reasons"]) for q in res.review_queue]
    assert queue == [("c2", ["low_confidence", "even_split"]), ("c7", ["low_confidence", "even_split"]),
                     ("c4", ["low_confidence", "even_split"]), ("c5", ["few_judgements"]),
                     ("c9", ["few_judgements"])]
    assert res.review_queue[0]["votes"] == {"a": 1, "b": 1, "tie": 0}
    # queued comparisons stay in the consensus, flagged, and the counts add up
    assert res.details.set_index("comparison_id")["review"].to_dict() == {
        c: c in {"c2", "c4", "c5", "c7", "c9"} for c in VOTES}
    m = res.metrics
    assert (m["n_comparisons"], m["n_review"], m["n_ties"], m["n_even_splits"], m["n_golden_comparisons"]) == (9, 5, 4, 3, 1)
    assert m["n_golden_comparisons"] + m["n_auto_accepted"] + m["n_review"] == m["n_comparisons"]
    assert m["mean_golden_accuracy"] == pytest.approx(1 / 3)
    assert m["krippendorff_alpha"] == pytest.approx(
        krippendorff_alpha_nominal(count_matrix(j["comparison_id"], j["label"], ["a", "b", "tie"])))
    assert m["label_share_tie"] == pytest.approx(4 / 9)
    assert list(res.training.columns) == TRAINING_COLUMNS and list(res.audit.columns) == AUDIT_COLUMNS
    assert len(res.audit) == len(j) and res.audit["judgement_id"].is_unique


def test_agreement_per_batch_table():
    j = judgements()
    res = aggregate_judgements(j, GOLD, MAJORITY)
    agr = res.agreement
    assert list(agr.columns) == AGREEMENT_COLUMNS and agr["batch"].tolist() == [0, 1]
    assert agr["n_comparisons"].tolist() == [4, 5]
    b0 = j[j["batch"] == 0]
    counts0 = count_matrix(b0["comparison_id"], b0["label"], ["a", "b", "tie"])
    assert agr.loc[0, "krippendorff_alpha"] == pytest.approx(krippendorff_alpha_nominal(counts0))
    assert agr.loc[0, "fleiss_kappa"] == pytest.approx(fleiss_kappa(counts0))
    assert np.isnan(agr.loc[0, "mean_golden_accuracy"]) and agr.loc[1, "mean_golden_accuracy"] == pytest.approx(1 / 3)
    ld = res.label_drift
    assert list(ld.columns) == LABEL_DRIFT_COLUMNS and ld["n_judgements"].tolist() == [10, 11]
    assert not ld["agreement_drop"].any()          # batch 0 is the reference; batch 1 is too small to tell


def test_dawid_skene_default_on_the_hand_made_set():
    j = judgements()
    res = aggregate_judgements(j, GOLD, AggregateParams(bootstrap_samples=0))
    c = res.details.set_index("comparison_id")
    # strict plurality of tie votes -> tie; gold wins; unanimous b -> b
    assert (c.loc["c3", "label"], c.loc["c6", "label"], c.loc["c8", "label"]) == ("tie", "b", "b")
    assert c.loc["c6", ["p_a", "p_b", "p_tie"]].tolist() == [0.0, 1.0, 0.0] and c.loc["c6", "confidence"] == 1.0
    # no anchor is a tie, so the model's true labels are a/b only
    assert (c.loc[~c["is_golden"], "p_tie"] == 0).all()
    assert np.allclose(c[["p_a", "p_b", "p_tie"]].sum(axis=1), 1.0)
    assert res.metrics["ds_n_iter"] >= 1 and res.metrics["ds_temperature"] >= 1.0


def test_duplicates_fast_judgements_and_experts():
    votes = dict(VOTES)
    votes["c8"] = (1, [("x", "b"), ("y", "b"), ("z", "b"), ("x", "a")])        # x judges c8 twice
    votes["c10"] = (1, [("x", "a"), ("y", "a"), ("expert", "b")])              # the expert settles c10
    j = judgements(votes)
    j.loc[j["annotator_id"] == "z", "response_time_s"] = 0.5                    # z is suspiciously fast
    params = AggregateParams(expert_annotators=["expert"], bootstrap_samples=0)
    res = aggregate_judgements(j, GOLD, params)
    m = res.metrics
    assert m["n_duplicate_judgements_ignored"] == 1 and m["n_judgements"] == len(j) - 1
    assert m["n_fast_judgements"] == 7 and m["n_expert_settled"] == 1
    c = res.details.set_index("comparison_id")
    assert (c.loc["c10", "label"], c.loc["c10", "anchor"], c.loc["c10", "confidence"]) == ("b", "expert", 1.0)
    audit = res.audit.set_index("judgement_id")
    assert "c8-3" not in audit.index and audit.loc["c8-0", "label"] == "b"    # the later duplicate is gone
    assert (audit.loc[audit["annotator_id"] == "z", "judgement_weight"] == 0.5).all()
    assert (audit.loc[audit["annotator_id"] != "z", "judgement_weight"] == 1.0).all()
    ann = res.annotators.set_index("annotator_id")
    assert ann.loc["z", "fast_share"] == 1.0 and "fast" in ann.loc["z", "flags"]
    assert ann.loc["x", "n_expert_overlap"] == 1 and ann.loc["x", "agreement_with_experts"] == 0.0
    assert bool(ann.loc["expert", "is_expert"])


def test_bad_inputs_fail_loudly():
    j = judgements()
    j.loc[0, "label"] = "c"
    with pytest.raises(ValueError, match="labels must be in"):
        consensus(j, GOLD)
    with pytest.raises(ValueError, match="no clean judgements"):
        aggregate_judgements(j.iloc[0:0], GOLD, AggregateParams())


def _rows(spec) -> pd.DataFrame:
    """[(comparison, batch, annotator, label, timestamp or None, pair)] -> judgements."""
    rows = []
    for k, (cid, batch, ann, label, ts, pair) in enumerate(spec):
        rows.append({"judgement_id": f"j{k:03d}", "comparison_id": cid, "batch": batch,
                     "timestamp": ts or f"2026-01-0{batch + 1}T00:{k % 60:02d}:00Z", "prompt_id": f"p-{pair}",
                     "prompt": f"prompt {pair}", "response_a": f"A {pair}", "response_b": f"B {pair}",
                     "policy_version": "policy-v0", "annotator_id": ann, "label": label,
                     "response_time_s": 10.0, "is_golden": False})
    return pd.DataFrame(rows)


def test_dawid_skene_on_a_batch_where_nobody_says_b():
    """A label no judgement reports has no evidence of how annotators judge it; left as a possible truth,
    EM learned 'when the truth is b, everyone says a' and turned unanimous votes into coin flips
    (confidence 0.5, everything sent to review, training margin ~0)."""
    res = aggregate_judgements(_rows([(f"c{i}", 0, a, "a", None, f"c{i}") for i in range(5) for a in "vwxyz"]),
                               {}, AggregateParams(bootstrap_samples=0))
    cons = res.consensus.set_index("comparison_id")
    assert (cons["label"] == "a").all() and (cons["confidence"] > 0.99).all()
    assert res.metrics["n_review"] == 0
    assert (res.training["margin"] > 2.0).all()


def test_perfect_annotators_get_a_point_weight_interval_not_zero():
    """Every judgement equals the consensus: the pooled accuracy is 1, Beta(n + m, 0) is a point mass at 1
    (scipy's quantile is NaN there, which became a [0, 0] interval and a low_weight flag)."""
    spec = [(f"c{i}", 0, a, "ab"[i % 2], None, f"c{i}") for i in range(6) for a in "xyz"]
    for method in ("majority", "weighted"):
        res = aggregate_judgements(_rows(spec), {}, AggregateParams(method=method, bootstrap_samples=0))
        ann = res.annotators.set_index("annotator_id")
        assert ann["weight"].tolist() == [1.0, 1.0, 1.0]
        assert ann["weight_ci_low"].tolist() == [1.0, 1.0, 1.0] and ann["weight_ci_high"].tolist() == [1.0, 1.0, 1.0]
        assert res.metrics["n_annotators_low_weight"] == 0 and not ann["flags"].str.contains("low_weight").any()


def test_annotators_whose_kappa_is_undefined_are_neither_zeroed_nor_flagged():
    """Every truth and every label 'a' (3 of 6 golden): chance accuracy is 1, so (acc - chance) / (1 - chance)
    is undefined -- the data cannot tell a perfect annotator from one who ignores the item. They came out
    weight 0 and flagged low_weight. Now: the median weight of annotators with a defined kappa (1 if none),
    an interval over [0, 1], no flag."""
    spec = [(f"c{i}", 0, a, "a", None, f"c{i}") for i in range(6) for a in "xyz"]
    gold = {f"c{i}": "a" for i in range(3)}
    rows = _rows(spec)
    rows.loc[rows["comparison_id"].isin(gold), "is_golden"] = True
    for method in ("dawid_skene", "majority", "weighted"):
        res = aggregate_judgements(rows, gold, AggregateParams(method=method, bootstrap_samples=0))
        ann = res.annotators.set_index("annotator_id")
        assert ann["weight"].tolist() == [1.0, 1.0, 1.0], method
        assert ann["weight_ci_low"].tolist() == [0.0] * 3 and ann["weight_ci_high"].tolist() == [1.0] * 3
        assert res.metrics["n_annotators_zero_weight"] == 0 and res.metrics["n_annotators_low_weight"] == 0
    # beside annotators with a defined kappa, an undefined one gets their median weight
    spec2 = [(f"d{i}", 0, a, "ab"[i % 2], None, f"d{i}") for i in range(8) for a in "uv"]
    spec2 += [(f"d{i}", 0, "w", "ab"[i % 2] if i < 6 else "ba"[i % 2], None, f"d{i}") for i in range(8)]
    spec2 += [(f"d{i}", 0, "k", "a", None, f"d{i}") for i in range(0, 8, 2)]     # k judges only true-a items
    res = aggregate_judgements(_rows(spec2), {}, AggregateParams(method="majority", bootstrap_samples=0))
    ann = res.annotators.set_index("annotator_id")
    assert ann.loc["k", "weight"] == pytest.approx(float(np.median(ann.loc[["u", "v", "w"], "weight"])))
    assert "low_weight" not in ann.loc["k", "flags"]


def _audit_implies(res, cid):
    ev = res.audit[res.audit["comparison_id"] == cid][["evidence_a", "evidence_b", "evidence_tie"]].sum()
    return ev.idxmax().replace("evidence_", ""), float(ev.sum())


def test_audit_evidence_is_what_decided_the_consensus():
    """majority: fast judgements count fast_judgement_weight in the consensus (as documented), as the audit
    says (the consensus counted them fully: two fast 'b' beat one slow 'a' while the audit summed to 'a').
    weighted: a comparison whose weighted votes are all zero is decided by one vote each; the audit showed
    zero evidence for it."""
    spec = [("c1", 0, "x", "a", None, "c1"), ("c1", 0, "y", "b", None, "c1"), ("c1", 0, "z", "b", None, "c1")]
    spec += [(f"c{i}", 0, a, "a", None, f"c{i}") for i in range(2, 8) for a in "xyz"]
    rows = _rows(spec)
    rows.loc[rows["comparison_id"].eq("c1") & rows["annotator_id"].isin(["y", "z"]), "response_time_s"] = 1.0
    for method in ("majority", "weighted"):
        res = aggregate_judgements(rows, {}, AggregateParams(method=method, bootstrap_samples=0,
                                                             fast_judgement_weight=0.2))
        label = res.consensus.set_index("comparison_id").loc["c1", "label"]
        assert _audit_implies(res, "c1")[0] == label, method
        if method == "majority":
            assert label == "a"                                        # 1 slow vote > 2 x 0.2 fast votes
            assert (res.audit["annotator_weight"] == 1.0).all()      # one vote each, whatever the calibration
    spec = [(f"d{i}", 0, a, "ab"[i % 2], None, f"d{i}") for i in range(12) for a in "xyz"]
    spec += [(f"d{i}", 0, "adv", "ba"[i % 2], None, f"d{i}") for i in range(12)]
    spec += [("solo", 0, "adv", "a", None, "solo")]
    res = aggregate_judgements(_rows(spec), {}, AggregateParams(method="weighted", bootstrap_samples=0))
    assert res.annotators.set_index("annotator_id").loc["adv", "weight"] == 0.0
    assert res.consensus.set_index("comparison_id").loc["solo", "label"] == "a"
    assert _audit_implies(res, "solo") == ("a", 1.0)


def test_time_order_reads_utc_offsets_not_the_strings():
    """cA (batch 0) was judged at 2026-01-02T00:00Z, written with a +09:00 offset, which sorts after cB's
    05:00Z as a string; cB (batch 1) re-annotates the same pair later and flips it. The flip belongs to
    batch 1, and the first judgement of a duplicated (annotator, comparison) is the earlier instant."""
    spec = [("cA", 0, a, "a", "2026-01-02T09:00:00+09:00", "P") for a in "xyz"]
    spec += [("cB", 1, a, "b", "2026-01-02T05:00:00Z", "P") for a in "xyz"]
    spec += [(f"c{i}", b, a, lab, None, f"c{i}") for i, (b, lab) in enumerate([(0, "a"), (0, "b"), (1, "a"), (1, "b")])
             for a in "xyz"]
    res = aggregate_judgements(_rows(spec), {}, MAJORITY)
    flip = res.flips.iloc[0]
    assert len(res.flips) == 1 and bool(flip["flipped"])
    assert (flip["earlier_comparison_id"], flip["later_comparison_id"]) == ("cA", "cB")
    assert (int(flip["earlier_batch"]), int(flip["later_batch"])) == (0, 1)
    assert res.label_drift.set_index("batch")["n_flips"].to_dict() == {0: 0, 1: 1}
    # a duplicate judgement: the one made first in time is kept, whatever its string says
    dup = _rows([("c9", 0, "x", "b", "2026-01-02T09:00:00+09:00", "Q"), ("c9", 0, "x", "a", "2026-01-02T05:00:00Z", "Q"),
                 ("c9", 0, "y", "b", None, "Q")])
    res = aggregate_judgements(dup, {}, MAJORITY)
    assert res.metrics["n_duplicate_judgements_ignored"] == 1
    assert res.audit.query("annotator_id == 'x'")["label"].tolist() == ["b"]
