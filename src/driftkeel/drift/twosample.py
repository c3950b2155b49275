"""One permutation test on embeddings, several statistics, one shared set of permutations.

Statistics of the pooled sample Z = [reference; current] and the window labels (larger = more drift):

- ``mmd@c``: unbiased MMD^2 with an RBF kernel of bandwidth c x the median heuristic, for each c in
  `bandwidths` (several bandwidths under one calibration as in MMDAgg, Schrab et al. 2023);
- ``classifier_auc``: a domain classifier. Ridge regression of the window label on the embeddings,
  cross-fitted over `n_folds` folds (each fold scored by a model fitted on the other folds); the
  statistic is the mean held-out AUC (0.5 = cannot tell the windows apart). The ridge solution is
  linear in the labels, so every permutation refits it exactly at the cost of one matrix product;
- ``knn<k>``: share of k-nearest-neighbour links (in the pooled sample) joining two points of the
  same window (Schilling 1986; Henze 1988): a region that only one window populates raises it;
- ``cluster_js``: k-means fitted on the pooled sample (labels unseen, so it is the same under every
  permutation); Jensen-Shannon divergence (nats) of the reference and current cluster histograms.

Calibration. The labels are permuted B times (the same permutations for every statistic). Each
statistic's p-value is (1 + #{permuted >= observed}) / (1 + B) and its calibrated threshold is the
(1 - alpha) quantile of its permutation null. The combined p-value is the permutation p-value of the
smallest per-statistic p-value (min-p, Westfall & Young 1993; ties at the floor broken by the largest
standardised statistic): it is exact at every alpha however correlated the statistics are, so trying
several statistics costs no false alarms.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import ThreadpoolController

_CONTROLLER: ThreadpoolController | None = None


def single_threaded():
    """Context manager limiting BLAS to one thread (numpy's bundled OpenBLAS segfaulted here on large
    multi-threaded products, see STACK.md); the controller is built once (building it costs ~20 ms)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1)

from driftkeel.drift.stats import median_heuristic, pairwise_sq_dists

# chosen on the simulator (benchmarks/drift/README.md): one global kernel statistic, the domain
# classifier, and two local statistics that see a new cluster holding a few percent of a window
DEFAULT_BANDWIDTHS = (1.0,)
DEFAULT_STATISTICS = ("mmd", "classifier_auc", "knn10", "cluster_js")


@dataclass
class TwoSampleResult:
    p_value: float                       # combined (min-p) permutation p-value
    statistics: dict[str, dict]          # name -> statistic, p_value, threshold, null_mean, null_std
    n_reference: int
    n_current: int
    n_permutations: int
    alpha: float
    bandwidth: float                     # the median-heuristic sigma (multipliers apply to it)
    cluster_labels: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=int))
    null_pvalues: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))  # (B+1, J)

    @property
    def strongest(self) -> str:
        return min(self.statistics, key=lambda k: (self.statistics[k]["p_value"], k))

    def to_dict(self) -> dict:
        return {"p_value": self.p_value, "statistics": self.statistics, "n_reference": self.n_reference,
                "n_current": self.n_current, "n_permutations": self.n_permutations, "alpha": self.alpha,
                "bandwidth": self.bandwidth, "strongest": self.strongest}


def permutation_labels(n: int, m: int, n_permutations: int, seed: int) -> np.ndarray:
    """(B + 1, n + m) float32 0/1 matrix: row 0 the observed labels (1 = current), then B permutations."""
    N = n + m
    A = np.zeros((n_permutations + 1, N), dtype=np.float32)
    A[0, n:] = 1.0
    rng = np.random.default_rng(seed)
    for b in range(1, n_permutations + 1):
        A[b, rng.permutation(N)[:m]] = 1.0
    return A


# ----------------------------------------------------------------------------- statistics
def mmd2_rows(K: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Unbiased MMD^2 for each label row of A (1 = current); K has a zero diagonal."""
    m = A.sum(axis=1).astype(np.float64)
    n = A.shape[1] - m
    t = K.sum(axis=1)
    total = float(t.sum())
    with single_threaded():
        KA = A @ K
    q = np.einsum("ij,ij->i", KA, A, dtype=np.float64)     # sum over current pairs
    r = A.astype(np.float64) @ t.astype(np.float64)         # sum over current x all
    s_cur, s_ref, s_cross = q, total - 2.0 * r + q, r - q
    return s_ref / (n * (n - 1)) + s_cur / (m * (m - 1)) - 2.0 * s_cross / (n * m)


def _fold_ids(N: int, n_folds: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(N) % n_folds


def classifier_auc_rows(X: np.ndarray, A: np.ndarray, n_folds: int = 5, seed: int = 0,
                        ridge: float = 1.0) -> np.ndarray:
    """Mean held-out AUC of a cross-fitted ridge domain classifier, for each label row of A.

    For fold k, beta_k = (Xc_T' Xc_T + lam I)^-1 Xc_T' (y_T - mean y_T) with Xc_T the other folds'
    rows centred on their own mean and lam = ridge * trace(Xc_T' Xc_T) / d (shrinkage relative to the
    average eigenvalue, free of units). Scores of fold k's rows rank them; AUC = Mann-Whitney U / (n1 n0)
    per fold, averaged with weights n1 n0.
    """
    with single_threaded():
        return _classifier_auc_rows(np.asarray(X, dtype=np.float64), A, n_folds, seed, ridge)


def _classifier_auc_rows(X: np.ndarray, A: np.ndarray, n_folds: int, seed: int, ridge: float) -> np.ndarray:
    from scipy.linalg import solve as dense_solve

    N, d = X.shape
    folds = _fold_ids(N, n_folds, seed)
    # the fit and the scores are unchanged by a shift of X (every fold centres on its own mean): centring
    # on the pooled mean first keeps the float32 Gram matrices free of cancellation
    X32 = (X - X.mean(axis=0)).astype(np.float32)
    Y = np.ascontiguousarray(A.T, dtype=np.float32)   # (N, B+1)
    XtY = X32.T @ Y                                   # (d, B+1)
    ysum = Y.sum(axis=0, dtype=np.float64)
    G_all, x_all = X32.T @ X32, X32.sum(axis=0, dtype=np.float64)
    U = np.zeros(Y.shape[1])
    W = np.zeros(Y.shape[1])
    for k in range(n_folds):
        te = folds == k
        nt = int(N - te.sum())
        if nt == 0 or nt == N:
            continue
        Xe, yk = X32[te], Y[te]
        xt_sum = x_all - Xe.sum(axis=0, dtype=np.float64)
        mu = xt_sum / nt
        G = (G_all - Xe.T @ Xe) - np.float32(nt) * np.outer(mu, mu).astype(np.float32)   # Xc_T' Xc_T
        lam = ridge * float(np.trace(G)) / d
        G[np.diag_indices(d)] += np.float32(lam)
        ybar = (ysum - yk.sum(axis=0, dtype=np.float64)) / nt             # (B+1,)
        rhs = (XtY - Xe.T @ yk) - np.outer(xt_sum, ybar).astype(np.float32)   # X_T'(y_T - ybar)
        # G + lam I is symmetric positive definite (well conditioned: lam is the mean eigenvalue)
        beta = dense_solve(G, rhs, assume_a="pos", check_finite=False, overwrite_a=True)   # (d, B+1)
        scores_t = np.ascontiguousarray(((Xe - mu.astype(np.float32)) @ beta).T)   # (B+1, n_te)
        # Mann-Whitney U from one sort: the positives' rank sum = sum over sorted positions of
        # (position + 1) x the label at that position
        order = scores_t.argsort(axis=1)
        yk_t = np.ascontiguousarray(yk.T)
        rank_sum = np.take_along_axis(yk_t, order, axis=1) @ np.arange(1, yk.shape[0] + 1, dtype=np.float32)
        n1 = yk.sum(axis=0, dtype=np.float64)
        n0 = yk.shape[0] - n1
        U += rank_sum.astype(np.float64) - n1 * (n1 + 1) / 2.0
        W += n1 * n0
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.where(W > 0, U / np.maximum(W, 1.0), 0.5)
    return auc


def knn_graph(D: np.ndarray, k: int) -> np.ndarray:
    """(N, k) indices of each point's k nearest other points (D is left as it was)."""
    diag = D.diagonal().copy()
    np.fill_diagonal(D, np.inf)
    try:
        k = min(k, D.shape[0] - 1)
        idx = np.argpartition(D, k - 1, axis=1)[:, :k]
    finally:
        np.fill_diagonal(D, diag)
    return idx


def knn_rows(nbrs: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Share of k-nearest-neighbour links that join two points of the same window (Schilling 1986),
    for each label row of A.

    With W the (N x N) link counts (W[i, j] = 1 when j is among i's neighbours) and a a 0/1 row of A,
    same-window links = a'Wa + (1-a)'W(1-a) = N k - k sum(a) - a'(W'1) + 2 a'Wa: one sparse product."""
    from scipy.sparse import csr_matrix

    N, k = nbrs.shape
    W = csr_matrix((np.ones(N * k, dtype=np.float32), nbrs.ravel(), np.arange(0, N * k + 1, k)), shape=(N, N))
    A = np.asarray(A, dtype=np.float32)
    WA = np.asarray(W @ A.T).T                                        # (B+1, N): row b = W a_b
    awa = np.einsum("ij,ij->i", A, WA, dtype=np.float64)
    indeg = np.bincount(nbrs.ravel(), minlength=N).astype(np.float64)
    same = N * k - k * A.sum(axis=1, dtype=np.float64) - A.astype(np.float64) @ indeg + 2.0 * awa
    return same / (N * k)


def n_clusters_for(N: int) -> int:
    """k for the pooled k-means: about sqrt(N / 2), between 2 and 50."""
    return int(min(50, max(2, round(np.sqrt(N / 2.0)))))


def kmeans(Z: np.ndarray, k: int, seed: int, n_iter: int = 25, max_fit: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """(labels of every row of Z, centroids): k-means++ seeding then Lloyd iterations (until no label
    changes, at most n_iter), fitted on at most `max_fit` rows (seeded sample) and applied to all.
    Small and deterministic (numpy only); distances in float32 (embeddings are float32)."""
    Z64 = np.asarray(Z, dtype=np.float64)
    shift = Z64.mean(axis=0)          # k-means is unchanged by a shift; centring keeps float32 distances exact
    Z = (Z64 - shift).astype(np.float32)
    rng = np.random.default_rng(seed)
    fit = Z if len(Z) <= max_fit else Z[rng.choice(len(Z), max_fit, replace=False)]
    k = int(max(1, min(k, len(fit))))
    sq = np.einsum("ij,ij->i", fit, fit, dtype=np.float64)
    with single_threaded():
        centers = [fit[rng.integers(len(fit))]]
        d2 = np.maximum(sq - 2 * (fit @ centers[0]) + float(centers[0] @ centers[0]), 0.0)
        for _ in range(1, k):
            if d2.sum() <= 0:
                break
            c = fit[rng.choice(len(fit), p=d2 / d2.sum())]
            centers.append(c)
            d2 = np.minimum(d2, np.maximum(sq - 2 * (fit @ c) + float(c @ c), 0.0))
        C = np.array(centers, dtype=np.float32)
        lab = None
        for _ in range(n_iter):
            new = np.argmin(np.einsum("ij,ij->i", C, C)[None, :] - 2 * (fit @ C.T), axis=1)
            if lab is not None and np.array_equal(new, lab):
                break
            lab = new
            counts = np.bincount(lab, minlength=len(C)).astype(np.float32)
            onehot = np.zeros((len(fit), len(C)), dtype=np.float32)
            onehot[np.arange(len(fit)), lab] = 1.0
            C = np.where(counts[:, None] > 0, (onehot.T @ fit) / np.maximum(counts, 1)[:, None], C)
        labels = np.argmin(np.einsum("ij,ij->i", C, C)[None, :] - 2 * (Z @ C.T), axis=1)
    return labels, C.astype(np.float64) + shift


def js_rows(counts_a: np.ndarray, counts_b: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (nats) between the histograms of each row of counts_a and counts_b."""
    p = counts_a / np.maximum(counts_a.sum(axis=1, keepdims=True), 1e-300)
    q = counts_b / np.maximum(counts_b.sum(axis=1, keepdims=True), 1e-300)
    mix = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kp = np.where(p > 0, p * np.log(p / mix), 0.0).sum(axis=1)
        kq = np.where(q > 0, q * np.log(q / mix), 0.0).sum(axis=1)
    return np.maximum(0.5 * kp + 0.5 * kq, 0.0)


def cluster_js_rows(labels: np.ndarray, A: np.ndarray) -> np.ndarray:
    k = int(labels.max()) + 1
    L = np.zeros((len(labels), k), dtype=np.float32)
    L[np.arange(len(labels)), labels] = 1.0
    cur = A @ L
    ref = L.sum(axis=0)[None, :] - cur
    return js_rows(ref.astype(np.float64), cur.astype(np.float64))


# ----------------------------------------------------------------------------- calibration
def permutation_pvalues(T: np.ndarray) -> np.ndarray:
    """p-value of every row of T (B+1, J) against all rows: #{rows >= it} / (B+1), per column."""
    B1 = T.shape[0]
    P = np.empty_like(T, dtype=np.float64)
    for j in range(T.shape[1]):
        col = T[:, j]
        tol = 1e-9 * max(1.0, float(np.max(np.abs(col))))
        srt = np.sort(col)
        P[:, j] = (B1 - np.searchsorted(srt, col - tol, side="left")) / B1
    return P


def combined_pvalue(T: np.ndarray, P: np.ndarray) -> float:
    """Permutation p-value of the min-p statistic; ties in min-p (several rows at the floor 1/(B+1),
    one per statistic) are broken by the largest standardised statistic, so the combined p-value keeps
    the resolution 1/(B+1) of a single statistic. Row 0 is the observed labelling."""
    minp = P.min(axis=1)
    null = T[1:] if len(T) > 1 else T
    z = ((T - null.mean(axis=0)) / np.where(null.std(axis=0) > 0, null.std(axis=0), 1.0)).max(axis=1)
    tol = 1e-12
    worse_or_equal = (minp < minp[0] - tol) | ((np.abs(minp - minp[0]) <= tol) & (z >= z[0] - 1e-9))
    return float(np.mean(worse_or_equal))


def two_sample_test(ref: np.ndarray, cur: np.ndarray, *, n_permutations: int = 300, seed: int = 0,
                    alpha: float = 0.05, statistics: tuple[str, ...] = DEFAULT_STATISTICS,
                    bandwidths: tuple[float, ...] = DEFAULT_BANDWIDTHS, n_folds: int = 5,
                    n_clusters: int | None = None) -> TwoSampleResult:
    """Permutation two-sample test of `ref` (n x d) vs `cur` (m x d); see the module docstring.

    Raises ValueError when a window has fewer than 4 rows or every pooled point is identical."""
    X = np.asarray(ref, dtype=np.float64)
    Y = np.asarray(cur, dtype=np.float64)
    X = X[:, None] if X.ndim == 1 else X
    Y = Y[:, None] if Y.ndim == 1 else Y
    n, m = len(X), len(Y)
    if n < 4 or m < 4:
        raise ValueError(f"the two-sample test needs at least 4 rows per window (got {n} and {m})")
    Z = np.vstack([X, Y])
    D = pairwise_sq_dists(Z - Z.mean(axis=0), dtype=np.float32)   # centred: float32 keeps small distances
    sub = np.random.default_rng(seed).choice(len(Z), 1000, replace=False) if len(Z) > 1000 else slice(None)
    sigma = median_heuristic(D[sub][:, sub], symmetric=True)   # a seeded 1000-row block is plenty for a bandwidth
    if not sigma or not np.isfinite(sigma):
        raise ValueError("all pooled points are identical: no bandwidth (degenerate sample)")
    A = permutation_labels(n, m, n_permutations, seed)
    cols: dict[str, np.ndarray] = {}
    labels = np.zeros(0, dtype=int)
    if "mmd" in statistics:
        for c in bandwidths:
            K = D * np.float32(-1.0 / (2.0 * (c * sigma) ** 2))
            np.exp(K, out=K)
            np.fill_diagonal(K, 0.0)
            cols[f"mmd@{c:g}"] = mmd2_rows(K, A)
            del K
    if "classifier_auc" in statistics:
        cols["classifier_auc"] = classifier_auc_rows(Z, A, n_folds=n_folds, seed=seed)
    for st in statistics:
        if st.startswith("knn"):
            kk = int(st[3:] or 10)
            cols[f"knn{kk}"] = knn_rows(knn_graph(D, kk), A)
    if "cluster_js" in statistics:
        labels, _ = kmeans(Z, n_clusters or n_clusters_for(len(Z)), seed)
        cols["cluster_js"] = cluster_js_rows(labels, A)
    names = list(cols)
    T = np.column_stack([cols[k] for k in names])
    P = permutation_pvalues(T)
    combined = combined_pvalue(T, P)
    out = {}
    for j, name in enumerate(names):
        null = T[1:, j]
        out[name] = {"statistic": float(T[0, j]), "p_value": float(P[0, j]),
                     "threshold": float(np.quantile(null, 1 - alpha)) if len(null) else None,
                     "null_mean": float(null.mean()) if len(null) else None,
                     "null_std": float(null.std()) if len(null) else None}
    return TwoSampleResult(p_value=combined, statistics=out, n_reference=n, n_current=m,
                           n_permutations=int(n_permutations), alpha=alpha, bandwidth=float(sigma),
                           cluster_labels=labels, null_pvalues=P)
