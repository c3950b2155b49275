"""Dawid–Skene EM with golden anchors and a hierarchical (pooled) prior on annotator confusions.

Model (Dawid & Skene 1979): each item ``i`` has a hidden true class ``z_i ~ Categorical(pi)``; annotator
``w`` reports class ``l`` with probability ``theta_w[z_i, l]`` (its *confusion matrix*; for pairwise
preferences the off-diagonal asymmetry ``theta_w[b, a] - theta_w[a, b]`` is the annotator's position
bias). Judgements are independent given ``z``.

Differences from textbook DS, each a small, standard change:

- **MAP, not ML, with a hierarchical (pooled) prior.** Row ``k`` of each confusion has a Dirichlet
  prior ``Dir(s_k * pool[k])`` centred on the pool's average confusion. An annotator with few
  judgements is pulled towards the pool instead of getting a 0/1 confusion from three labels; one with
  many judgements is barely affected. Both the centre and the strength are **empirical Bayes**,
  re-estimated in every M-step: ``pool`` is the pooled confusion of all annotators, and ``s_k`` (in
  pseudo-judgements) maximises the marginal likelihood of the annotators' expected confusion counts
  under that prior, ``sum_w log DirMult(counts[w, k] | s_k pool[k])`` (type-II maximum likelihood,
  :func:`eb_prior_strength`). So the data say how different the annotators are: a pool whose
  annotators disagree with the consensus no more than binomial noise explains gets a large ``s_k``
  (every annotator ~ the pool: close to a vote corrected for the pool's bias, instead of weights fitted
  to noise), a pool with spammers or very uneven workers a small one (per-annotator confusions, as in
  textbook DS). One Dirichlet is unimodal: for a pool of good workers plus spammers ``s_k`` is a
  compromise, so a spammer with only a few dozen judgements is still pulled part of the way to the
  pool. ``empirical_bayes=False`` gives a fixed ``s = prior_strength``.
- **Golden anchors.** Items with a known class (gold, or a settled expert label) have their posterior
  clamped to that class in every E-step, so they calibrate the confusions directly.
- **Only classes someone reports.** A class that no judgement and no anchor uses gets prior 0
  (e.g. ``tie`` on data without tie votes): otherwise an unobserved class, whose confusion row is
  only the prior, would "explain" split votes as a near-uniform coin flip.
- **Judgement weights.** Each judgement's likelihood may be tempered by ``r_j`` in [0, 1]
  (``theta ** r_j``), used for suspiciously fast work; ``r_j = 1`` is plain DS.

Initialisation: (weighted) vote shares, gold clamped. Stops when no posterior moves more than ``tol``.
All steps are vectorised with ``np.bincount``: about 30 ms per iteration per million judgements × K.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln


@dataclass
class DawidSkeneFit:
    posterior: np.ndarray       # items x K: P(true class | all judgements)
    confusion: np.ndarray       # workers x K x K: P(reported l | true k), rows sum to 1
    pool_confusion: np.ndarray  # K x K: the pool's average confusion (the prior's centre)
    class_prior: np.ndarray     # K
    n_iter: int
    converged: bool
    log_lik: np.ndarray         # judgements x K: r_j * log theta[w_j, k, l_j] (each judgement's evidence)
    prior_strength: np.ndarray | None = None  # K: s_k, pseudo-judgements per confusion row (last M-step)


def _per_item(index: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Sum rows of `values` (m x K) into n bins by `index`."""
    return np.stack([np.bincount(index, weights=values[:, k], minlength=n) for k in range(values.shape[1])],
                    axis=1)


def vote_shares(item: np.ndarray, label: np.ndarray, n_items: int, n_classes: int,
                weight: np.ndarray | None = None) -> np.ndarray:
    """Per item: the (weighted) share of each class among its judgements; uniform with no votes."""
    w = np.ones(len(item)) if weight is None else np.asarray(weight, dtype=float)
    onehot = np.zeros((len(item), n_classes))
    onehot[np.arange(len(item)), label] = w
    votes = _per_item(item, onehot, n_items)
    total = votes.sum(axis=1, keepdims=True)
    return np.where(total > 0, votes / np.where(total > 0, total, 1.0), 1.0 / n_classes)


# candidate prior strengths (pseudo-judgements per confusion row), log-spaced, 22% apart: from a quarter
# of a judgement (about textbook ML DS) to 10^4 (every annotator = the pool, for any realistic
# per-annotator count); the marginal likelihood is smooth in log s, so a grid this fine loses nothing
STRENGTH_GRID = np.exp(np.linspace(np.log(0.25), np.log(1e4), 53))


def eb_prior_strength(counts: np.ndarray, pool: np.ndarray, grid: np.ndarray = STRENGTH_GRID,
                      fallback: float = 2.0) -> np.ndarray:
    """Per true class ``k``: the ``s`` in `grid` maximising ``sum_w log DirMult(counts[w, k] | s * pool[k])``.

    `counts`: workers x K(true) x K(reported) (expected) confusion counts; `pool`: K x K, rows sum to 1.
    The Dirichlet-multinomial log marginal likelihood of one row ``c`` (total ``n``) is, up to a term
    free of ``s``, ``lgamma(s) - lgamma(n + s) + sum_l [lgamma(c_l + s p_l) - lgamma(s p_l)]``
    (fractional counts are fine). A row on which fewer than two annotators have any evidence says
    nothing about the spread between annotators: it keeps `fallback`.
    """
    counts = np.asarray(counts, dtype=float)
    n = counts.sum(axis=2)                                                  # W x K
    out = np.full(counts.shape[1], float(fallback))
    rows = np.flatnonzero((n > 1e-9).sum(axis=0) >= 2)
    if not len(rows):
        return out
    c, p, nr = counts[:, rows], pool[rows], n[:, rows]                      # W x R x K, R x K, W x R
    s = grid[:, None, None]
    ll = (gammaln(s) - gammaln(nr[None] + s)).sum(axis=1)                   # G x R
    a = grid[:, None, None] * p[None]                                       # G x R x K
    ll += (gammaln(c[None] + a[:, None]) - gammaln(a)[:, None]).sum(axis=(1, 3))
    out[rows] = grid[np.argmax(ll, axis=0)]
    return out


def _clamp(post: np.ndarray, gold: np.ndarray | None) -> np.ndarray:
    if gold is None:
        return post
    known = gold >= 0
    if known.any():
        post[known] = 0.0
        post[np.flatnonzero(known), gold[known]] = 1.0
    return post


def fit_dawid_skene(item, worker, label, *, n_items: int, n_workers: int, n_classes: int,
                    gold: np.ndarray | None = None, judgement_weight: np.ndarray | None = None,
                    latent: np.ndarray | None = None, prior_strength: float = 2.0, class_pseudocount: float = 1.0,
                    empirical_bayes: bool = True, max_iter: int = 100, tol: float = 1e-6) -> DawidSkeneFit:
    """Fit DS by EM. `item`, `worker`, `label`: integer arrays (one entry per judgement, 0-based).

    `gold`: per item, the known class or -1. `judgement_weight`: r_j in [0, 1] (default 1).
    `latent`: bool mask of the classes a true label may take (default: those some judgement reports);
    classes named by an anchor are always included. Reported labels may be any of the K classes.
    `empirical_bayes`: estimate the prior strength ``s_k`` of each confusion row by marginal likelihood
    in every M-step (:func:`eb_prior_strength`); `prior_strength` is then only the fallback for a row
    that fewer than two annotators have evidence on. ``False``: ``s_k = prior_strength`` for every row.
    """
    item = np.asarray(item, dtype=np.int64)
    worker = np.asarray(worker, dtype=np.int64)
    label = np.asarray(label, dtype=np.int64)
    if not (len(item) == len(worker) == len(label)):
        raise ValueError("item, worker and label must have the same length")
    if len(item) and (label.min() < 0 or label.max() >= n_classes):
        raise ValueError(f"labels must be in 0..{n_classes - 1}")
    K, W = n_classes, n_workers
    r = np.ones(len(item)) if judgement_weight is None else np.clip(np.asarray(judgement_weight, float), 0, 1)
    if gold is not None:
        gold = np.asarray(gold, dtype=np.int64)
        if len(gold) != n_items:
            raise ValueError("gold must have one entry per item (-1 when unknown)")
    # a class that no judgement reports and no anchor names cannot be inferred: its prior is 0
    active = np.zeros(K)
    if latent is None:
        active[np.unique(label)] = 1.0
    else:
        active[np.asarray(latent, dtype=bool)] = 1.0
    if gold is not None:
        active[np.unique(gold[gold >= 0])] = 1.0
    post = _clamp(vote_shares(item, label, n_items, K, r), gold)
    wl = worker * K + label
    weighted = judgement_weight is not None
    postT = np.ascontiguousarray(post.T)                                   # K x items (fast gathers)
    converged, it = False, 0
    for it in range(1, max_iter + 1):
        # M-step: expected counts per (worker, true k, reported l), pooled prior, class prior
        rp = np.take(postT, item, axis=1)                                   # K(true) x judgements
        if weighted:
            rp *= r
        counts = np.stack([np.bincount(wl, weights=rp[k], minlength=W * K).reshape(W, K)
                           for k in range(K)], axis=1)                      # W x K(true) x K(reported)
        pool = counts.sum(axis=0) + 1e-2
        pool /= pool.sum(axis=1, keepdims=True)
        strength = (eb_prior_strength(counts, pool, fallback=prior_strength) if empirical_bayes
                    else np.full(K, float(prior_strength)))
        sk = strength[None, :, None]
        theta = (counts + sk * pool) / (counts.sum(axis=2, keepdims=True) + sk)
        prior = (postT.sum(axis=1) + class_pseudocount) * active
        prior /= prior.sum()
        # E-step: log theta as K(true) x (worker * K + reported), gathered per judgement
        log_theta = np.ascontiguousarray(np.log(theta).transpose(1, 0, 2).reshape(K, W * K))
        ll = np.take(log_theta, wl, axis=1)                                 # K x judgements
        if weighted:
            ll *= r
        logp = np.stack([np.bincount(item, weights=ll[k], minlength=n_items) for k in range(K)])
        with np.errstate(divide="ignore"):
            logp += np.log(prior)[:, None]                                  # -inf: a class nobody reports
        logp -= logp.max(axis=0, keepdims=True)
        new = np.exp(logp)
        new /= new.sum(axis=0, keepdims=True)
        new = _clamp(new.T, gold).T
        delta = float(np.abs(new - postT).max()) if new.size else 0.0
        postT = np.ascontiguousarray(new)
        if delta < tol:
            converged = True
            break
    post = postT.T.copy()
    log_lik = ll.T.copy()
    return DawidSkeneFit(posterior=post, confusion=theta, pool_confusion=pool, class_prior=prior,
                         n_iter=it, converged=converged, log_lik=log_lik,
                         prior_strength=strength)


def calibrate(fit: DawidSkeneFit, item, worker, label, *, n_items: int, gold: np.ndarray | None = None,
              grid: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """(T, calibrated posterior): temperature scaling of the posterior, fitted without any gold.

    DS treats judgements as independent given the true class, so on close pairs, where every annotator
    is near a coin flip, its posterior is far too sure. The temperature ``T >= 1`` is chosen to
    maximise the likelihood of *held-out judgements*: each judgement ``j`` on a non-anchored item with
    at least two judgements is predicted from the others, ``P(l_j) = sum_k softmax_k((log pi_k +
    S_i(k) - ll_j(k)) / T) * theta_w[k, l_j]``, with ``S_i`` the item's summed evidence. The calibrated
    posterior is ``softmax((log pi + S_i) / T)``: the same ranking and labels, honest probabilities.
    Anchored items keep their one-hot posterior.
    """
    item = np.asarray(item, dtype=np.int64)
    ll = fit.log_lik
    K = ll.shape[1]
    active = fit.class_prior > 0
    with np.errstate(divide="ignore"):
        lp = np.where(active, np.log(np.where(active, fit.class_prior, 1.0)), -np.inf)
    S = np.stack([np.bincount(item, weights=ll[:, k], minlength=n_items) for k in range(K)], axis=1)
    n_per = np.bincount(item, minlength=n_items)
    anchored = np.zeros(n_items, dtype=bool) if gold is None else np.asarray(gold) >= 0
    use = (n_per[item] >= 2) & ~anchored[item]
    grid = np.exp(np.linspace(0.0, np.log(20.0), 41)) if grid is None else np.asarray(grid, dtype=float)
    T = 1.0
    if use.any():
        theta_l = fit.confusion[np.asarray(worker)[use], :, np.asarray(label)[use]][:, active]   # m x K'
        base = (lp[active] + S[item[use]][:, active] - ll[use][:, active])
        nll = []
        for t in grid:
            z = base / t
            z -= z.max(axis=1, keepdims=True)
            w = np.exp(z)
            p = (w * theta_l).sum(axis=1) / w.sum(axis=1)
            nll.append(-np.log(np.clip(p, 1e-300, None)).sum())
        T = float(grid[int(np.argmin(nll))])
    z = (lp + S) / T
    z -= z.max(axis=1, keepdims=True)
    post = np.exp(z)
    post /= post.sum(axis=1, keepdims=True)
    post[anchored] = fit.posterior[anchored]
    return T, post
