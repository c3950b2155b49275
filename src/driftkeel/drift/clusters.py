"""Where did the prompts move? Clusters and topics of the reference vs the current window.

:func:`cluster_report` (embeddings):
1. The reference is split at random into halves F (fit) and H (held out). k-means is fitted on F.
   H and the current window are both unseen by the fit, so comparing them is fair (a reference
   point is not closer to the centroids only because it helped to place them).
2. Histograms of H and of the current window over the reference clusters: Jensen-Shannon
   divergence, and a chi-square test of homogeneity on the 2 x k table.
3. "Far" = farther from every reference centroid than the `far_quantile` quantile of H's distances.
   By construction about (1 - far_quantile) of H is far; the current share is compared with H's by a
   one-sided Fisher exact test (the false-alarm rate of this test is its stated alpha).
4. Clusters that grew: per reference cluster, current share vs held-out share, a one-sided binomial
   p-value (Bonferroni over the k clusters), with the current prompts nearest to the centroid.
5. New clusters: the current window's far prompts are clustered (k-means, k up to 5, then clusters
   whose centroids are closer than the far distance are merged); each cluster
   with at least `min_new_cluster` members gets the held-out far points nearest to its centroid as
   its reference count, a one-sided Fisher p-value (Bonferroni over the candidates), example
   prompts and top words. A cluster with a small p-value is a region the reference did not cover.

:func:`topic_report` (text): LDA topics (bag of words, batch variational Bayes in numpy: scikit-learn's
LDA updates one document at a time in Python, seconds per window) fitted on the reference, the
mean topic mix of the reference and the current window, which topics grew, their top words and
example prompts. Descriptive: no test, no alarm.
"""
from __future__ import annotations

import re
from collections import Counter

import numpy as np
from scipy import stats as sstats

from driftkeel.drift.stats import js_divergence
from driftkeel.drift.twosample import kmeans

_WORD = re.compile(r"[a-z][a-z']+")
_STOP = frozenset("""a an the and or but if of to in on at for with by from as is are was were be been being it its
this that these those i you he she we they me my your our their his her them us do does did doing have has had
having not no so than too very can could would should will shall may might must what which who whom whose when
where why how all any both each few more most other some such only own same just also into about over under
again further then once here there out up down off above below between through during before after human
assistant""".split())


def _words(text: str) -> list[str]:
    return [w for w in _WORD.findall(str(text).lower()) if w not in _STOP and len(w) > 2]


def _doc_counts(texts, token_sets: list[set] | None = None) -> Counter:
    return Counter(w for ws in (token_sets if token_sets is not None else (set(_words(t)) for t in texts))
                   for w in ws)


def top_words(texts: list[str] | Counter, background: list[str] | Counter, n: int = 6, n_background: int | None = None,
              n_foreground: int | None = None) -> list[str]:
    """Words most over-represented in `texts` vs `background` (texts, or their document counts with
    `n_background`): smoothed log-odds ratio of document frequencies."""
    fg = texts if isinstance(texts, Counter) else _doc_counts(texts)
    bg = background if isinstance(background, Counter) else _doc_counts(background)
    nb = max(n_background if n_background is not None else len(background), 1)
    nf = max(n_foreground if n_foreground is not None else len(texts), 1)
    score = {w: np.log((c + 0.5) / (nf + 1)) - np.log((bg.get(w, 0) + 0.5) / (nb + 1)) for w, c in fg.items() if c >= 2}
    return [w for w, _ in sorted(score.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def _examples(texts: list[str] | None, idx: np.ndarray, emb: np.ndarray, center: np.ndarray, k: int,
              max_chars: int = 160) -> list[str]:
    if texts is None or len(idx) == 0:
        return []
    d = np.linalg.norm(emb[idx] - center, axis=1)
    out = []
    for i in idx[np.argsort(d, kind="stable")]:
        t = " ".join(str(texts[i]).split())
        t = t if len(t) <= max_chars else t[: max_chars - 1] + "…"
        if t not in out:
            out.append(t)
        if len(out) == k:
            break
    return out


def _nearest(emb: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d2 = np.maximum(np.einsum("ij,ij->i", emb, emb)[:, None] - 2 * emb @ C.T + np.einsum("ij,ij->i", C, C)[None, :], 0)
    lab = d2.argmin(axis=1)
    return lab, np.sqrt(d2[np.arange(len(emb)), lab])


def _merge_close(X: np.ndarray, labels: np.ndarray, C: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Merge clusters whose centroids are closer than `radius` (single linkage), so that k-means
    asked for k pieces does not split one new region into several."""
    k = len(C)
    parent = list(range(k))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(k):
        for j in range(i + 1, k):
            if np.linalg.norm(C[i] - C[j]) < radius:
                parent[find(i)] = find(j)
    roots = sorted({find(i) for i in range(k)})
    remap = {r: n for n, r in enumerate(roots)}
    new = np.array([remap[find(int(l))] for l in labels], dtype=int)
    centers = np.array([X[new == n].mean(axis=0) if (new == n).any() else C[r] for n, r in enumerate(roots)])
    return new, centers


def cluster_report(ref_emb: np.ndarray, cur_emb: np.ndarray, ref_texts: list[str] | None = None,
                   cur_texts: list[str] | None = None, *, n_clusters: int | None = None, seed: int = 0,
                   far_quantile: float = 0.95, n_examples: int = 3, n_listed: int = 5,
                   min_new_cluster: int = 3) -> dict:
    """See the module docstring. Needs at least 8 reference and 4 current rows (else a `reason`)."""
    R = np.asarray(ref_emb, dtype=np.float64)
    Q = np.asarray(cur_emb, dtype=np.float64)
    if len(R) < 8 or len(Q) < 4:
        return {"reason": f"too few rows for the cluster analysis (reference {len(R)}, current {len(Q)})"}
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(R))
    F, H = perm[: len(R) // 2], perm[len(R) // 2:]
    k = n_clusters or int(min(30, max(2, round(np.sqrt(len(F) / 2)))))
    _, C = kmeans(R[F], k, seed)
    k = len(C)
    lab_h, d_h = _nearest(R[H], C)
    lab_q, d_q = _nearest(Q, C)
    cnt_h = np.bincount(lab_h, minlength=k).astype(float)
    cnt_q = np.bincount(lab_q, minlength=k).astype(float)
    js = js_divergence(cnt_h + 1e-12, cnt_q + 1e-12)
    table = np.vstack([cnt_h, cnt_q])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] >= 2:
        chi2, chi_p, _, _ = sstats.chi2_contingency(table)
    else:
        chi2, chi_p = 0.0, 1.0

    tau = float(np.quantile(d_h, far_quantile))
    far_h, far_q = int((d_h > tau).sum()), int((d_q > tau).sum())
    _, far_p = sstats.fisher_exact([[far_q, len(Q) - far_q], [far_h, len(H) - far_h]], alternative="greater")

    share_h, share_q = cnt_h / cnt_h.sum(), cnt_q / cnt_q.sum()
    bg = _doc_counts(ref_texts) if ref_texts else Counter()
    n_bg = len(ref_texts) if ref_texts else 0
    cur_sets = [set(_words(t)) for t in cur_texts] if cur_texts else []

    def words_of(members: np.ndarray) -> list[str]:
        if not (cur_texts and ref_texts and len(members)):
            return []
        return top_words(_doc_counts(None, [cur_sets[i] for i in members]), bg, n_background=n_bg,
                         n_foreground=len(members))

    clusters = []
    for j in range(k):
        p_grow = float(sstats.fisher_exact([[cnt_q[j], len(Q) - cnt_q[j]], [cnt_h[j], len(H) - cnt_h[j]]],
                                           alternative="greater")[1])
        members = np.flatnonzero(lab_q == j)
        clusters.append({"cluster": j, "share_reference": float(share_h[j]), "share_current": float(share_q[j]),
                         "change": float(share_q[j] - share_h[j]), "p_value_grew": min(1.0, p_grow * k),
                         "examples": _examples(cur_texts, members, Q, C[j], n_examples),
                         "top_words": words_of(members)})
    grew = sorted([c for c in clusters if c["change"] > 0], key=lambda c: (c["p_value_grew"], -c["change"]))[:n_listed]
    shrank = sorted([c for c in clusters if c["change"] < 0], key=lambda c: c["change"])[:n_listed]

    new_clusters = []
    far_idx = np.flatnonzero(d_q > tau)
    if len(far_idx) >= min_new_cluster:
        kn = int(min(5, max(1, len(far_idx) // max(min_new_cluster, 1))))
        lab_f, Cf = kmeans(Q[far_idx], kn, seed + 1)
        lab_f, Cf = _merge_close(Q[far_idx], lab_f, Cf, tau)
        far_h_idx = np.flatnonzero(d_h > tau)
        lab_hf = _nearest(R[H][far_h_idx], Cf)[0] if len(far_h_idx) else np.zeros(0, dtype=int)
        for j in range(len(Cf)):
            members = far_idx[lab_f == j]
            if len(members) < min_new_cluster:
                continue
            in_ref = int((lab_hf == j).sum())     # held-out reference far points closest to this centroid
            p_new = float(sstats.fisher_exact([[len(members), len(Q) - len(members)], [in_ref, len(H) - in_ref]],
                                              alternative="greater")[1])
            new_clusters.append({"size": int(len(members)), "share_current": float(len(members) / len(Q)),
                                 "share_reference": in_ref / len(H), "p_value": min(1.0, p_new * len(Cf)),
                                 "examples": _examples(cur_texts, members, Q, Cf[j], n_examples),
                                 "top_words": words_of(members)})
        new_clusters.sort(key=lambda c: (c["p_value"], -c["size"]))
    return {
        "n_clusters": k, "n_reference_fit": int(len(F)), "n_reference_held_out": int(len(H)),
        "n_current": int(len(Q)), "js_divergence_nats": float(js), "chi2": float(chi2), "chi2_p_value": float(chi_p),
        "far_quantile": far_quantile, "far_distance": tau,
        "far_share_reference": far_h / len(H), "far_share_current": far_q / len(Q),
        "far_p_value": float(far_p), "grew": grew, "shrank": shrank, "new_clusters": new_clusters,
    }


def _exp_dirichlet(a: np.ndarray) -> np.ndarray:
    from scipy.special import psi

    return np.exp(psi(a) - psi(a.sum(axis=1, keepdims=True)))


def _lda_e_step(X, expElogbeta: np.ndarray, alpha: float, rng: np.random.Generator, n_inner: int = 20,
                gamma: np.ndarray | None = None):
    """Variational E-step for all documents at once: (gamma, sufficient statistics for beta).
    gamma: the documents' previous variational parameters (a warm start; else a random start)."""
    from scipy.sparse import csr_matrix

    X = csr_matrix(X, dtype=np.float64)
    X.sum_duplicates()
    D, K = X.shape[0], expElogbeta.shape[0]
    rows = np.repeat(np.arange(D), np.diff(X.indptr))
    cols, counts = X.indices, X.data
    eb_cols = expElogbeta[:, cols].T                      # (nnz, K)
    gamma = rng.gamma(100.0, 0.01, size=(D, K)) if gamma is None else gamma
    for _ in range(n_inner):
        eth = _exp_dirichlet(gamma)
        phinorm = np.einsum("ik,ik->i", eth[rows], eb_cols) + 1e-100
        R = csr_matrix((counts / phinorm, cols, X.indptr), shape=X.shape)
        new = alpha + eth * (R @ expElogbeta.T)
        done = np.mean(np.abs(new - gamma)) < 1e-3
        gamma = new
        if done:
            break
    eth = _exp_dirichlet(gamma)
    phinorm = np.einsum("ik,ik->i", eth[rows], eb_cols) + 1e-100
    R = csr_matrix((counts / phinorm, cols, X.indptr), shape=X.shape)
    return gamma, np.asarray((R.T @ eth).T) * expElogbeta


def lda_fit(X, n_topics: int, seed: int = 0, n_iter: int = 10, alpha: float | None = None,
            eta: float | None = None) -> np.ndarray:
    """Batch variational Bayes LDA (Blei et al. 2003; Hoffman et al. 2010), every document updated at
    once with numpy: returns the topic-word parameters lambda (n_topics x vocabulary). Each E-step
    starts from the previous one's document parameters (they change little between passes)."""
    rng = np.random.default_rng(seed)
    alpha = 1.0 / n_topics if alpha is None else alpha
    eta = 1.0 / n_topics if eta is None else eta
    lam = rng.gamma(100.0, 0.01, size=(n_topics, X.shape[1]))
    gamma = None
    for _ in range(n_iter):
        gamma, ss = _lda_e_step(X, _exp_dirichlet(lam), alpha, rng, gamma=gamma)
        lam = eta + ss
    return lam


def lda_transform(X, lam: np.ndarray, seed: int = 0) -> np.ndarray:
    """Topic mix per document (rows sum to 1; a document without known words gets the uniform mix)."""
    K = lam.shape[0]
    gamma, _ = _lda_e_step(X, _exp_dirichlet(lam), 1.0 / K, np.random.default_rng(seed))
    return gamma / gamma.sum(axis=1, keepdims=True)


def topic_report(ref_texts: list[str], cur_texts: list[str], *, n_topics: int = 8, seed: int = 0,
                 max_docs: int = 1000, n_words: int = 6, n_examples: int = 2) -> dict:
    """LDA topics fitted on the reference texts (at most `max_docs` per window, seeded sample)."""
    from sklearn.feature_extraction.text import CountVectorizer

    rng = np.random.default_rng(seed)
    ref = [ref_texts[i] for i in np.sort(rng.permutation(len(ref_texts))[:max_docs])]
    cur = [cur_texts[i] for i in np.sort(rng.permutation(len(cur_texts))[:max_docs])]
    if len(ref) < 20 or len(cur) < 5:
        return {"reason": f"too few texts for LDA topics (reference {len(ref)}, current {len(cur)})"}
    vec = CountVectorizer(tokenizer=_words, lowercase=False, token_pattern=None, min_df=2, max_features=3000)
    try:
        Xr = vec.fit_transform(ref)
    except ValueError:
        return {"reason": "no words shared by at least two reference texts"}
    Xc = vec.transform(cur)
    lam = lda_fit(Xr, n_topics, seed)
    vocab = np.array(vec.get_feature_names_out())
    Tr, Tc = lda_transform(Xr, lam, seed), lda_transform(Xc, lam, seed)
    mr, mc = Tr.mean(axis=0), Tc.mean(axis=0)
    topics = []
    for j in range(n_topics):
        words = vocab[np.argsort(-lam[j], kind="stable")[:n_words]].tolist()
        ex = [" ".join(cur[i].split())[:160] for i in np.argsort(-Tc[:, j])[:n_examples]]
        topics.append({"topic": j, "top_words": words, "share_reference": float(mr[j]),
                       "share_current": float(mc[j]), "change": float(mc[j] - mr[j]), "examples_current": ex})
    topics.sort(key=lambda t: -t["change"])
    empty_cur = float((np.asarray(Xc.sum(axis=1)).ravel() == 0).mean())
    return {"n_topics": n_topics, "js_divergence_nats": js_divergence(mr, mc), "topics": topics,
            "current_without_known_words": empty_cur}
