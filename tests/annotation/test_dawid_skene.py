"""Dawid–Skene EM, its calibration and the DS consensus on small hand-made cases with known answers."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from driftkeel.annotation import aggregate_judgements, annotator_table, ds_consensus, fit_dawid_skene
from driftkeel.annotation.consensus import consensus, decide_posterior
from driftkeel.annotation.dawid_skene import STRENGTH_GRID, eb_prior_strength
from driftkeel.config import AggregateParams

P = AggregateParams(bootstrap_samples=0)


def frame(rows) -> pd.DataFrame:
    """rows: (comparison, annotator, label[, batch])."""
    out = []
    for i, r in enumerate(rows):
        cid, ann, lab = r[:3]
        batch = r[3] if len(r) > 3 else 0
        out.append({"judgement_id": f"j{i:05d}", "comparison_id": cid, "batch": batch,
                    "timestamp": f"2026-01-01T00:00:{i % 60:02d}Z", "prompt_id": cid, "prompt": f"p {cid}",
                    "response_a": f"A {cid}", "response_b": f"B {cid}", "policy_version": "v0",
                    "annotator_id": ann, "label": lab, "response_time_s": 20.0, "is_golden": False})
    return pd.DataFrame(out)


def truth(n: int) -> dict[str, str]:
    return {f"c{i:03d}": "ab"[i % 2] for i in range(n)}


def test_one_em_iteration_by_hand():
    """Two items, two workers, classes {0, 1}; item 0: both say 0; item 1: w0 says 0, w1 says 1.
    Init posterior = vote shares: (1, 0) and (1/2, 1/2). M-step expected counts (true x reported):
    w0 [[1.5, 0], [0.5, 0]], w1 [[1, 0.5], [0, 0.5]]; pool = (sum + 0.01) row-normalised;
    theta = (counts + s pool) / (row count + s) with a fixed s = 2; prior = (post sums + 1) / 4 = (2.5, 1.5) / 4."""
    fit = fit_dawid_skene([0, 0, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1], n_items=2, n_workers=2, n_classes=2,
                          prior_strength=2.0, empirical_bayes=False, max_iter=1)
    pool = np.array([[2.51, 0.51], [0.51, 0.51]])
    pool /= pool.sum(axis=1, keepdims=True)
    c0 = np.array([[1.5, 0.0], [0.5, 0.0]])
    c1 = np.array([[1.0, 0.5], [0.0, 0.5]])
    t0 = (c0 + 2 * pool) / (c0.sum(axis=1, keepdims=True) + 2)
    t1 = (c1 + 2 * pool) / (c1.sum(axis=1, keepdims=True) + 2)
    assert fit.confusion[0] == pytest.approx(t0) and fit.confusion[1] == pytest.approx(t1)
    prior = np.array([2.5, 1.5]) / 4
    assert fit.class_prior == pytest.approx(prior)
    post1 = prior * t0[:, 0] * t1[:, 1]                     # item 1: w0 said 0, w1 said 1
    assert fit.posterior[1] == pytest.approx(post1 / post1.sum())
    post0 = prior * t0[:, 0] * t1[:, 0]
    assert fit.posterior[0] == pytest.approx(post0 / post0.sum())
    assert fit.log_lik[3] == pytest.approx(np.log(t1[:, 1]))  # each judgement's evidence per class


def test_golden_anchors_are_clamped_and_unreported_classes_get_no_mass():
    fit = fit_dawid_skene([0, 0, 1, 1], [0, 1, 0, 1], [0, 1, 0, 1], n_items=2, n_workers=2, n_classes=3,
                          gold=np.array([1, -1]))
    assert fit.posterior[0].tolist() == [0.0, 1.0, 0.0]
    assert fit.posterior[1, 2] == 0.0 and fit.class_prior[2] == 0.0   # nobody reports class 2


def test_anchors_let_ds_overrule_a_contrarian_majority():
    """Two contrarians always report the opposite of the truth, one honest annotator; gold on half the
    items. Majority vote is wrong on every other item; DS learns the contrarians' flipped confusion."""
    t = truth(40)
    flip = {"a": "b", "b": "a"}
    rows = [(c, "honest", lab) for c, lab in t.items()]
    rows += [(c, w, flip[lab]) for c, lab in t.items() for w in ("contra1", "contra2")]
    j = frame(rows)
    gold = {c: lab for i, (c, lab) in enumerate(t.items()) if i < 20}
    rest = [c for c in t if c not in gold]
    mv = consensus(j, gold).set_index("comparison_id")
    ds = ds_consensus(j, gold).consensus.set_index("comparison_id")
    assert (mv.loc[rest, "label"] != pd.Series(t)[rest]).all()
    assert (ds.loc[rest, "label"] == pd.Series(t)[rest]).all()
    conf = ds_consensus(j, gold).fit.confusion        # annotators sorted: contra1, contra2, honest
    assert conf[0, 0, 1] > 0.9 and conf[2, 0, 0] > 0.9


def test_a_known_spammer_gets_weight_near_zero():
    """Three perfect annotators and two spammers on 120 items (truth alternating a/b): one spammer always
    says 'a', the other's labels are balanced on both classes (independent of the truth). Both are
    uninformative: weight = kappa against the estimated truth, shrunk by 2 pseudo-judgements."""
    t = truth(120)
    rows = [(c, w, lab) for c, lab in t.items() for w in ("g1", "g2", "g3")]
    rows += [(c, "always_a", "a") for c in t]
    rows += [(c, "random", "a" if (i // 2) % 2 == 0 else "b") for i, c in enumerate(t)]
    res = aggregate_judgements(frame(rows), {}, P)
    w = res.annotators.set_index("annotator_id")
    assert (res.details.set_index("comparison_id")["label"] == pd.Series(t)).all()
    # pool accuracy = (3 x 120 + 60 + 60) / 600 = 0.8; spammer accuracy (60 + 1.6) / 122; chance 1/2
    assert w.loc["always_a", "weight"] == pytest.approx((61.6 / 122 - 0.5) / 0.5, abs=1e-3)
    assert w.loc["random", "weight"] == pytest.approx((61.6 / 122 - 0.5) / 0.5, abs=1e-3)
    assert w.loc["always_a", "weight"] < 0.02 and w.loc["random", "weight"] < 0.02
    assert w.loc["g1", "weight"] == pytest.approx((121.6 / 122 - 0.5) / 0.5, abs=1e-3)
    assert w.loc["always_a", "weight_ci_low"] == 0.0
    assert {"always_a", "random"} == set(w.index[w["flags"].str.contains("low_weight")])


def test_decide_posterior_rules():
    post = np.array([[0.7, 0.3, 0.0], [0.5, 0.5, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0], [0.1, 0.2, 0.7]])
    post = np.vstack([post, [[0.6, 0.4, 0.0]]])
    counts = pd.DataFrame([[2, 1, 0], [1, 1, 0], [0, 2, 1], [1, 0, 2], [0, 0, 1], [1, 1, 2]],
                          columns=["a", "b", "tie"], index=[f"c{i}" for i in range(6)])
    label, conf, even = decide_posterior(post, counts, pseudocount=0.5)
    # even split; more than half say tie; P(tie) >= 1/2; 2 of 4 say tie is a plurality, not a majority
    assert label.tolist() == ["a", "tie", "b", "tie", "tie", "a"]
    assert even.tolist() == [False, True, False, False, False, False]
    assert conf.tolist() == pytest.approx([0.7, 0.5 / 3.5, 0.8, 2.5 / 4.5, 0.7, 0.6])


def test_ds_consensus_posteriors_and_audit_evidence_agree():
    """The audit's per-judgement evidence sums (plus the log class prior) to the MAP log posterior."""
    rng = np.random.default_rng(0)
    t = truth(200)
    rows = []
    for c, lab in t.items():
        for w, acc in (("w1", 0.9), ("w2", 0.8), ("w3", 0.7), ("w4", 0.6)):
            rows.append((c, w, lab if rng.random() < acc else {"a": "b", "b": "a"}[lab]))
    j = frame(rows)
    res = ds_consensus(j, {})
    ev = pd.DataFrame(res.fit.log_lik, index=j["comparison_id"]).groupby(level=0).sum().loc[res.comparisons]
    with np.errstate(divide="ignore"):
        logp = ev.to_numpy() + np.log(res.fit.class_prior)
    p = np.exp(logp - logp.max(axis=1, keepdims=True))
    assert p / p.sum(axis=1, keepdims=True) == pytest.approx(res.fit.posterior, abs=1e-9)
    assert res.temperature >= 1.0
    cons = res.consensus.set_index("comparison_id")
    acc = (cons["label"] == pd.Series(t)).mean()
    assert acc >= (consensus(j, {}).set_index("comparison_id")["label"] == pd.Series(t)).mean()
    # weights rank the annotators as their realised accuracies do
    table = annotator_table(j, res.consensus, {}, posterior=pd.DataFrame(
        res.posterior, index=res.comparisons, columns=["a", "b", "tie"])).set_index("annotator_id")
    realised = (j["label"] == j["comparison_id"].map(t)).groupby(j["annotator_id"]).mean()
    assert table["weight"].rank().to_dict() == realised.rank().to_dict()


def test_eb_prior_strength_by_hand():
    """Three rows of a 3-annotator, 2-class confusion count array (true k x reported l per annotator):
    row 0: every annotator [3, 1], exactly the pool's (3/4, 1/4): no spread beyond multinomial noise, so
    the marginal likelihood grows with s (largest s of the grid: everyone = the pool); row 1: [4, 0],
    [0, 4] and nothing, pool (1/2, 1/2): as different as annotators can be (smallest s: per-annotator
    confusions); row 2: one annotator only, no information about the spread: the fallback."""
    counts = np.array([[[3, 1], [4, 0], [2, 1]],
                       [[3, 1], [0, 4], [0, 0]],
                       [[3, 1], [0, 0], [0, 0]]], dtype=float)
    pool = np.array([[0.75, 0.25], [0.5, 0.5], [2 / 3, 1 / 3]])
    s = eb_prior_strength(counts, pool, fallback=2.0)
    assert s.tolist() == [STRENGTH_GRID[-1], STRENGTH_GRID[0], 2.0]


def test_eb_prior_strength_maximises_the_dirichlet_multinomial_likelihood():
    """An intermediate spread: the grid point it picks is the maximiser of the marginal likelihood
    written out term by term, sum_w lgamma(s) - lgamma(n_w + s) + sum_l lgamma(c_wl + s p_l) - lgamma(s p_l)."""
    rows = [[8, 2], [5, 5], [9, 1], [6, 4], [10, 0], [4, 6]]
    counts = np.array(rows, dtype=float)[:, None, :]
    p = counts.sum(axis=(0, 1)) / counts.sum()
    def loglik(s):
        return sum(math.lgamma(s) - math.lgamma(sum(c) + s)
                   + sum(math.lgamma(cl + s * pl) - math.lgamma(s * pl) for cl, pl in zip(c, p)) for c in rows)
    best = max(STRENGTH_GRID, key=loglik)
    got = eb_prior_strength(counts, p[None, :])[0]
    assert got == best and STRENGTH_GRID[0] < got < STRENGTH_GRID[-1]


def test_an_annotator_with_two_judgements_is_shrunk_to_a_homogeneous_pool():
    """Five annotators of the same skill (each wrong on every fifth item, never two on one item: every
    item is a 4-1 vote) and a newcomer with two judgements, both against the truth. The pool's spread is
    no more than noise, so the estimated strength is the grid's top and the newcomer's confusion is the
    pool's (about 0.78 correct); a fixed s = 2 would make it a coin flip (0.53) from two labels."""
    t = truth(40)
    flip = {"a": "b", "b": "a"}
    rows = [(c, f"w{w}", flip[lab] if i % 5 == w else lab) for i, (c, lab) in enumerate(t.items()) for w in range(5)]
    rows += [("c000", "newbie", "b"), ("c001", "newbie", "a")]
    j = frame(rows)
    eb = ds_consensus(j, {})
    assert eb.annotators[0] == "newbie"
    assert eb.fit.prior_strength[:2].tolist() == [STRENGTH_GRID[-1]] * 2
    assert eb.fit.confusion[0, :2, :2] == pytest.approx(eb.fit.pool_confusion[:2, :2], abs=2e-3)
    assert eb.fit.confusion[0, 0, 0] == pytest.approx(0.78, abs=0.01)
    fixed = ds_consensus(j, {}, empirical_bayes=False)
    assert fixed.fit.prior_strength.tolist() == [2.0, 2.0, 2.0]
    assert fixed.fit.confusion[0, 0, 0] == pytest.approx(0.53, abs=0.01)
    for res in (eb, fixed):
        assert (res.consensus.set_index("comparison_id")["label"] == pd.Series(t)).all()


def test_spammers_keep_chance_confusions_under_the_estimated_prior():
    """Three perfect annotators and two spammers (always 'a'; balanced, independent of the truth) on 120
    items: a pool this uneven gets a weak prior (s < 1 pseudo-judgement), so the spammers are not pulled
    towards the perfect majority: their judgements carry almost no evidence (|log-likelihood ratio| <
    0.01) while a perfect annotator's carry more than 6 nats, and every consensus label is right."""
    t = truth(120)
    rows = [(c, w, lab) for c, lab in t.items() for w in ("g1", "g2", "g3")]
    rows += [(c, "always_a", "a") for c in t]
    rows += [(c, "random", "a" if (i // 2) % 2 == 0 else "b") for i, c in enumerate(t)]
    res = ds_consensus(frame(rows), {})
    assert res.annotators.tolist() == ["always_a", "g1", "g2", "g3", "random"]
    assert (res.fit.prior_strength[:2] < 1.0).all()
    llr = np.abs(np.log(res.fit.confusion[:, 0, :2]) - np.log(res.fit.confusion[:, 1, :2]))   # per reported a, b
    assert llr[0, 0] < 0.01 and (llr[4] < 0.01).all()
    assert (llr[1:4] > 6).all()
    assert (res.consensus.set_index("comparison_id")["label"] == pd.Series(t)).all()
