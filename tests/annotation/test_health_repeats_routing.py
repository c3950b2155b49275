"""Annotator health over time, re-annotated pairs (flips, temporal consistency), routing, bootstrap CIs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftkeel.annotation.agreement import (bootstrap_agreement, fleiss_kappa, krippendorff_alpha_nominal,
                                            resampled_agreement)
from driftkeel.annotation.health import quality_drops
from driftkeel.annotation.repeats import flip_rates, pair_keys, preference_flips, temporal_consistency
from driftkeel.annotation.routing import hard_pairs, training_weights


def _cons(rows):
    """rows: (comparison, batch, prompt, response_a, response_b, label, confidence)."""
    return pd.DataFrame([{"comparison_id": c, "batch": b, "timestamp": f"2026-01-0{b + 1}T00:00:00Z",
                          "prompt": p, "response_a": ra, "response_b": rb, "label": lab, "confidence": conf}
                         for c, b, p, ra, rb, lab, conf in rows])


def test_pair_keys_ignore_the_order_of_the_responses():
    k = pair_keys(_cons([("c1", 0, "p", "x", "y", "a", 1.0), ("c2", 1, "p", "y", "x", "a", 1.0),
                         ("c3", 1, "q", "x", "y", "a", 1.0)]))
    assert k["pair_key"].iloc[0] == k["pair_key"].iloc[1] != k["pair_key"].iloc[2]
    assert k["swapped"].tolist() == [False, True, False]


def test_preference_flips_in_canonical_orientation():
    cons = _cons([
        ("c1", 0, "p", "x", "y", "a", 0.9),     # prefers x
        ("c2", 1, "p", "y", "x", "a", 0.8),     # shown swapped, prefers y: a flip
        ("c3", 0, "q", "u", "v", "b", 0.9),
        ("c4", 2, "q", "u", "v", "tie", 0.6),   # b -> tie: changed, not a flip
        ("c5", 2, "r", "m", "n", "a", 0.9),     # never re-annotated
        ("c6", 2, "p", "x", "y", "b", 0.7),     # prefers y again after c2: no flip
    ])
    f = preference_flips(cons)
    assert f[["earlier_comparison_id", "later_comparison_id", "earlier_label", "later_label", "flipped", "changed"]
             ].values.tolist() == [["c1", "c2", "a", "b", True, True], ["c3", "c4", "b", "tie", False, True],
                                   ["c2", "c6", "b", "b", False, False]]
    rates = flip_rates(f, [0, 1, 2])
    assert rates["n_reannotated"].tolist() == [0, 1, 2] and rates["n_flips"].tolist() == [0, 1, 0]
    assert np.isnan(rates.loc[0, "flip_rate"]) and rates.loc[1, "flip_rate"] == 1.0 and rates.loc[2, "flip_rate"] == 0.0


def test_temporal_consistency_of_an_annotator():
    cons = _cons([("c1", 0, "p", "x", "y", "a", 1.0), ("c2", 1, "p", "y", "x", "b", 1.0),
                  ("c3", 2, "p", "x", "y", "b", 1.0), ("c4", 0, "q", "u", "v", "a", 1.0)])
    j = pd.DataFrame({"annotator_id": ["w", "w", "w", "w", "v"], "comparison_id": ["c1", "c2", "c3", "c4", "c1"],
                      "timestamp": ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-01", "2026-01-01"],
                      "label": ["a", "b", "b", "a", "a"]})
    tc = temporal_consistency(j, cons)
    # w: c1 'a' (x) -> c2 'b' shown swapped (x again): consistent; -> c3 'b' (y): inconsistent
    assert tc.to_dict("index") == {"w": {"n_repeats": 2, "temporal_consistency": 0.5}}


def test_quality_drop_is_flagged_at_the_right_batch():
    ts = pd.DataFrame([
        *[("tired", b, 40, 1.0) for b in range(3)], *[("tired", b, 40, 0.5) for b in range(3, 6)],
        *[("steady", b, 40, 0.8) for b in range(6)],
        ("newcomer", 5, 40, 0.3),
        *[("small", b, 3, 1.0 if b < 3 else 0.0) for b in range(6)],   # too few judgements to tell
    ], columns=["annotator_id", "batch", "n_judgements", "accuracy_estimate"])
    d = quality_drops(ts, min_drop=0.15, alpha=0.01, min_n=10).set_index("annotator_id")
    assert d["quality_drop"].to_dict() == {"newcomer": False, "small": False, "steady": False, "tired": True}
    assert d.loc["tired", "quality_drop_batch"] == 3
    assert (d.loc["tired", "accuracy_before"], d.loc["tired", "accuracy_after"]) == (1.0, 0.5)
    assert d.loc["steady", "quality_drop_batch"] == -1


def test_bootstrap_agreement_replicates_and_intervals():
    rng = np.random.default_rng(3)
    counts = np.stack([rng.multinomial(4, [0.7, 0.2, 0.1]) for _ in range(200)])
    alpha, kappa = resampled_agreement(counts, np.arange(200)[None, :])   # every unit once = the estimate
    assert alpha[0] == pytest.approx(krippendorff_alpha_nominal(counts), abs=1e-12)
    assert kappa[0] == pytest.approx(fleiss_kappa(counts), abs=1e-12)
    ci = bootstrap_agreement(counts, n_boot=300, level=0.9, rng=1)
    assert ci["alpha_ci_low"] < krippendorff_alpha_nominal(counts) < ci["alpha_ci_high"]
    assert ci["kappa_ci_low"] < fleiss_kappa(counts) < ci["kappa_ci_high"]
    assert ci == bootstrap_agreement(counts, n_boot=300, level=0.9, rng=1)   # seeded
    assert all(np.isnan(v) for v in bootstrap_agreement(counts, n_boot=0).values())
    assert all(np.isnan(v) for v in bootstrap_agreement([[1, 0, 0]], n_boot=10).values())


def test_hard_pairs_from_the_weighted_vote_margin():
    j = pd.DataFrame({"comparison_id": ["c1"] * 3 + ["c2"] * 3 + ["c3"] * 3 + ["c4"] * 2,
                      "annotator_id": ["g", "h", "s"] * 3 + ["g", "h"],
                      "label": ["a", "b", "a", "a", "a", "b", "a", "a", "a", "a", "tie"]})
    cons = pd.DataFrame({"comparison_id": ["c1", "c2", "c3", "c4"], "label": ["a", "a", "a", "a"],
                         "is_golden": [False, False, False, False]})
    w = pd.Series({"g": 1.0, "h": 1.0, "s": 0.0})
    hard = hard_pairs(j, cons, w, pd.Series(1.0, index=j.index), 0.5)
    # c1: a(1) vs b(1), the spammer's a counts 0 -> margin 0; c2: 2 vs 1 trusted -> 1/2 (not < 1/2)
    # c3: unanimous; c4: a(1) tie(1) -> margin 1/2
    assert hard.to_dict() == {"c1": True, "c2": False, "c3": False, "c4": False}


def test_training_weights_and_margins():
    cons = pd.DataFrame({"comparison_id": ["c1", "c2", "c3"], "batch": [0, 0, 1], "label": ["a", "b", "tie"],
                         "confidence": [0.8, 0.99, 0.4], "p_a": [0.8, 0.01, 0.3], "p_b": [0.2, 0.99, 0.3],
                         "p_tie": [0.0, 0.0, 0.4], "n_a": [2, 0, 1], "n_b": [1, 3, 1], "n_tie": [0, 0, 1],
                         "even_split": [False, False, True], "anchor": ["", "", ""], "hard": [True, False, True],
                         "review": [False, False, True], "is_golden": [False, False, False]})
    t = training_weights(cons, max_margin=4.0).set_index("comparison_id")
    assert t["chosen"].to_dict() == {"c1": "a", "c2": "b", "c3": ""}
    assert t["use"].to_dict() == {"c1": "train", "c2": "train", "c3": "skip_tie"}
    assert t.loc["c1", "p_chosen"] == pytest.approx(0.8) and t.loc["c1", "margin"] == pytest.approx(np.log(4))
    assert t.loc["c2", "margin"] == 4.0                      # log(99) capped
    assert t.loc["c3", "margin"] == 0.0 and np.isnan(t.loc["c3", "p_chosen"])
    assert t["weight"].tolist() == [0.8, 0.99, 0.4]
