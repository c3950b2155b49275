"""Two-sample statistics used by the drift detectors.

- :func:`mmd_permutation_test`: kernel two-sample test (Gretton et al. 2012). RBF kernel
  k(x, y) = exp(-||x - y||^2 / (2 sigma^2)) with sigma^2 = median of the pairwise squared distances
  of the pooled sample (median heuristic; zero distances from duplicates are ignored). Statistic:
  the unbiased MMD^2 estimate. p-value = (1 + #{permuted MMD^2 >= observed}) / (1 + B), which is a
  valid (slightly conservative) p-value for any B. All permutations reuse one pooled kernel matrix.
- :func:`js_divergence`: Jensen-Shannon divergence of two histograms, in nats by default
  (identical -> 0, disjoint supports -> ln 2; pass base=2 for bits, where disjoint -> 1).
- :func:`wasserstein` / :func:`ks_test`: 1-D statistics on scalar features (e.g. response length).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sstats

_BLOCK = 2048


def _single_threaded():
    from driftkeel.drift.twosample import single_threaded

    return single_threaded()


@dataclass
class MMDResult:
    mmd2: float
    p_value: float
    bandwidth: float          # sigma of the RBF kernel
    n_x: int
    n_y: int
    n_permutations: int
    null_mean: float
    null_std: float

    def to_dict(self) -> dict:
        return asdict(self)


def pairwise_sq_dists(X: np.ndarray, Y: np.ndarray | None = None, dtype=np.float64) -> np.ndarray:
    """Squared Euclidean distances, computed in row blocks single-threaded (see STACK.md pitfall).
    dtype=np.float32 halves the cost (sentence embeddings are float32 to begin with)."""
    X = np.asarray(X, dtype=dtype)
    Y = X if Y is None else np.asarray(Y, dtype=dtype)
    xx = np.einsum("ij,ij->i", X, X)
    yy = np.einsum("ij,ij->i", Y, Y)
    out = np.empty((X.shape[0], Y.shape[0]), dtype=dtype)
    with _single_threaded():
        for s in range(0, X.shape[0], _BLOCK):
            e = min(s + _BLOCK, X.shape[0])
            out[s:e] = xx[s:e, None] + yy[None, :] - 2.0 * (X[s:e] @ Y.T)
    np.maximum(out, 0.0, out=out)
    return out


def median_heuristic(sq_dists: np.ndarray, symmetric: bool = False) -> float:
    """sigma with sigma^2 = median of the positive off-diagonal squared distances (0.0 if none).

    The full symmetric matrix holds each off-diagonal value twice, which leaves the median unchanged
    (zeros: the diagonal and duplicated points, are left out). symmetric=True (a square matrix of one
    sample's distances) reads the upper triangle only: the same median from half the values."""
    if symmetric:
        sq_dists = sq_dists[np.triu_indices(sq_dists.shape[0], 1)]
    d = sq_dists[sq_dists > 1e-12]
    if d.size == 0:
        return 0.0
    return float(np.sqrt(np.median(d)))


def _mmd2_from_indicators(Kz: np.ndarray, A: np.ndarray, n: int, m: int) -> np.ndarray:
    """Unbiased MMD^2 for each row of the 0/1 indicator matrix A (1 = sample X); Kz has a zero diagonal."""
    B = 1.0 - A
    with _single_threaded():
        KA = A @ Kz
        KB = B @ Kz
    sxx = np.einsum("ij,ij->i", KA, A)
    syy = np.einsum("ij,ij->i", KB, B)
    sxy = np.einsum("ij,ij->i", KA, B)
    return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2.0 * sxy / (n * m)


def mmd2_unbiased(X: np.ndarray, Y: np.ndarray, bandwidth: float) -> float:
    """Unbiased MMD^2 of X and Y under an RBF kernel of the given sigma."""
    Z = np.vstack([X, Y])
    K = np.exp(-pairwise_sq_dists(Z) / (2.0 * bandwidth ** 2))
    np.fill_diagonal(K, 0.0)
    a = np.zeros((1, Z.shape[0]))
    a[0, :len(X)] = 1.0
    return float(_mmd2_from_indicators(K, a, len(X), len(Y))[0])


def mmd_permutation_test(X: np.ndarray, Y: np.ndarray, n_permutations: int = 300, seed: int = 0,
                         bandwidth: float | None = None, chunk: int = 64) -> MMDResult:
    """Permutation test of H0: X and Y come from the same distribution.

    Raises ValueError when either sample has fewer than 2 rows or all pooled points coincide
    (the median heuristic is undefined); callers map that to "insufficient data".
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    if Y.ndim == 1:
        Y = Y[:, None]
    n, m = X.shape[0], Y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"MMD needs at least 2 points per sample (got {n} and {m})")
    Z = np.vstack([X, Y])
    D = pairwise_sq_dists(Z)
    sigma = bandwidth if bandwidth is not None else median_heuristic(D)
    if not sigma or not np.isfinite(sigma):
        raise ValueError("all pooled points are identical: no bandwidth (degenerate sample)")
    K = np.exp(-D / (2.0 * sigma ** 2))
    np.fill_diagonal(K, 0.0)
    N = n + m
    observed = np.zeros((1, N))
    observed[0, :n] = 1.0
    mmd2 = float(_mmd2_from_indicators(K, observed, n, m)[0])
    rng = np.random.default_rng(seed)
    null = np.empty(n_permutations)
    for s in range(0, n_permutations, chunk):
        e = min(s + chunk, n_permutations)
        A = np.zeros((e - s, N))
        for r in range(e - s):
            A[r, rng.permutation(N)[:n]] = 1.0
        null[s:e] = _mmd2_from_indicators(K, A, n, m)
    # tolerance so that ties with the observed value (e.g. identical samples) count as >=
    exceed = int(np.sum(null >= mmd2 - 1e-12 * max(1.0, abs(mmd2))))
    p = (1.0 + exceed) / (1.0 + n_permutations)
    return MMDResult(mmd2=mmd2, p_value=float(p), bandwidth=float(sigma), n_x=n, n_y=m,
                     n_permutations=int(n_permutations), null_mean=float(null.mean()) if n_permutations else 0.0,
                     null_std=float(null.std()) if n_permutations else 0.0)


# ---------------------------------------------------------------- histograms and 1-D statistics
def shared_bins(x: np.ndarray, y: np.ndarray, n_bins: int = 30) -> np.ndarray:
    """Common bin edges covering both samples (equal width)."""
    both = np.concatenate([np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()])
    both = both[np.isfinite(both)]
    if both.size == 0:
        return np.array([0.0, 1.0])
    lo, hi = float(both.min()), float(both.max())
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, n_bins + 1)


def histogram(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts, _ = np.histogram(np.asarray(x, dtype=float), bins=edges)
    return counts.astype(float)


def js_divergence(p, q, base: float | None = None) -> float:
    """Jensen-Shannon divergence of two (unnormalised) histograms; nats unless `base` is given."""
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    if p.shape != q.shape:
        raise ValueError(f"histograms differ in shape: {p.shape} vs {q.shape}")
    if (p < 0).any() or (q < 0).any():
        raise ValueError("histograms must be non-negative")
    if p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("empty histogram")
    p = p / p.sum()
    q = q / q.sum()
    mix = 0.5 * (p + q)

    def kl(a, b):
        mask = a > 0
        return float(np.sum(a[mask] * np.log(a[mask] / b[mask])))

    js = 0.5 * kl(p, mix) + 0.5 * kl(q, mix)
    if base is not None:
        js /= np.log(base)
    return max(js, 0.0)


def js_divergence_samples(x, y, n_bins: int = 30, base: float | None = None) -> float:
    edges = shared_bins(x, y, n_bins)
    return js_divergence(histogram(x, edges), histogram(y, edges), base=base)


def wasserstein(x, y) -> float:
    return float(sstats.wasserstein_distance(np.asarray(x, dtype=float), np.asarray(y, dtype=float)))


def ks_test(x, y) -> tuple[float, float]:
    """Two-sided two-sample Kolmogorov-Smirnov test: (statistic, p-value)."""
    res = sstats.ks_2samp(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    return float(res.statistic), float(res.pvalue)


def kl_divergence(p, q, smoothing: float = 0.5) -> float:
    """KL(p || q) in nats of two count histograms, with `smoothing` pseudo-counts added to every bin
    (so that a bin empty in q gives a large but finite value)."""
    p = np.asarray(p, dtype=float) + smoothing
    q = np.asarray(q, dtype=float) + smoothing
    if p.shape != q.shape:
        raise ValueError(f"histograms differ in shape: {p.shape} vs {q.shape}")
    p, q = p / p.sum(), q / q.sum()
    return float(max(np.sum(p * np.log(p / q)), 0.0))


def divergences(ref, cur, n_bins: int = 30) -> dict:
    """Effect sizes of a 1-D shift: JS (nats), KL(current || reference) (nats, smoothed), Wasserstein,
    on shared equal-width bins."""
    ref = np.asarray(ref, dtype=float)
    cur = np.asarray(cur, dtype=float)
    edges = shared_bins(ref, cur, n_bins)
    hr, hc = histogram(ref, edges), histogram(cur, edges)
    return {"js_nats": js_divergence(hr, hc) if hr.sum() and hc.sum() else None,
            "kl_current_reference_nats": kl_divergence(hc, hr) if hr.sum() and hc.sum() else None,
            "wasserstein": wasserstein(ref, cur) if len(ref) and len(cur) else None}
