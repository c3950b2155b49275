"""Inter-annotator agreement: Krippendorff's alpha (nominal) and Fleiss' kappa.

Both work from a *count matrix*: one row per unit (comparison), one column per category (label),
entry = how many judgements of that unit gave that label. Units may have different numbers of
judgements (missing data, varying numbers of coders).

Krippendorff's alpha, nominal (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability"),
exact: units with fewer than two values are not pairable and are dropped; the coincidence matrix is
``o_ck = sum_u n_uc (n_uk - [c == k]) / (m_u - 1)``, ``n_c = sum_k o_ck``, ``n = sum_c n_c`` and
``alpha = 1 - (n - 1) * (n - sum_c o_cc) / (n**2 - sum_c n_c**2)``. With no variation at all
(every value the same) the expected disagreement is 0 and alpha is undefined: NaN.

Fleiss' kappa (Fleiss 1971), generalised to a varying number of raters per unit: units with fewer
than two ratings are dropped; ``P_i = sum_j n_ij (n_ij - 1) / (n_i (n_i - 1))``, ``P_bar = mean P_i``,
``p_j = sum_i n_ij / sum_i n_i``, ``P_e = sum_j p_j**2``, ``kappa = (P_bar - P_e) / (1 - P_e)``.
With a constant number of raters this is exactly Fleiss' kappa. NaN when ``P_e == 1``.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd


def count_matrix(units: pd.Series | Sequence, values: pd.Series | Sequence,
                 categories: Sequence | None = None) -> pd.DataFrame:
    """Units x categories counts from parallel sequences of (unit, value); missing values dropped."""
    units, values = pd.Series(units).reset_index(drop=True), pd.Series(values).reset_index(drop=True)
    keep = units.notna() & values.notna()
    units, values = units[keep], values[keep]
    cats = list(categories) if categories is not None else sorted(pd.unique(values).tolist())
    if units.empty:
        return pd.DataFrame(np.zeros((0, len(cats)), dtype=np.int64), columns=cats)
    col = pd.Index(cats).get_indexer(values)
    if (col < 0).any():
        unknown = sorted({str(v) for v in values[col < 0]})
        raise ValueError(f"values outside categories {cats}: {unknown}")
    codes, uniques = pd.factorize(units, sort=True)
    counts = np.bincount(codes * len(cats) + col, minlength=len(uniques) * len(cats)).reshape(-1, len(cats))
    return pd.DataFrame(counts.astype(np.int64), index=pd.Index(uniques), columns=cats)


def reliability_to_counts(data: Iterable[Sequence], missing=None) -> np.ndarray:
    """Coders x units reliability data (Krippendorff's layout, `missing` for no value) -> counts."""
    rows = [list(r) for r in data]
    n_units = max((len(r) for r in rows), default=0)
    values = sorted({v for r in rows for v in r if v is not missing and v == v})
    index = {v: j for j, v in enumerate(values)}
    counts = np.zeros((n_units, len(values)), dtype=np.int64)
    for r in rows:
        for u, v in enumerate(r):
            if v is not missing and v == v:
                counts[u, index[v]] += 1
    return counts


def krippendorff_alpha_nominal(counts) -> float:
    """Krippendorff's alpha for nominal data from a units x categories count matrix."""
    n_uc = np.asarray(counts, dtype=float)
    if n_uc.ndim != 2:
        raise ValueError("counts must be 2-D (units x categories)")
    m_u = n_uc.sum(axis=1)
    n_uc, m_u = n_uc[m_u >= 2], m_u[m_u >= 2]
    if n_uc.size == 0:
        return float("nan")
    o_cc = (n_uc * (n_uc - 1) / (m_u - 1)[:, None]).sum(axis=0)
    n_c = n_uc.sum(axis=0)
    n = n_c.sum()
    expected = n * n - (n_c * n_c).sum()
    if expected <= 0:
        return float("nan")
    return float(1.0 - (n - 1) * (n - o_cc.sum()) / expected)


def fleiss_kappa(counts) -> float:
    """Fleiss' kappa from a subjects x categories count matrix (varying raters allowed)."""
    n_ij = np.asarray(counts, dtype=float)
    if n_ij.ndim != 2:
        raise ValueError("counts must be 2-D (subjects x categories)")
    n_i = n_ij.sum(axis=1)
    n_ij, n_i = n_ij[n_i >= 2], n_i[n_i >= 2]
    if n_ij.size == 0:
        return float("nan")
    p_i = (n_ij * (n_ij - 1)).sum(axis=1) / (n_i * (n_i - 1))
    p_j = n_ij.sum(axis=0) / n_i.sum()
    p_e = float((p_j * p_j).sum())
    if p_e >= 1.0:
        return float("nan")
    return float((p_i.mean() - p_e) / (1.0 - p_e))


def resampled_agreement(counts, samples) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, kappa) per row of `samples` (replicates x draws of unit indices, with repetition).

    With one row holding every unit once this is exactly (:func:`krippendorff_alpha_nominal`,
    :func:`fleiss_kappa`); units with fewer than two values must already be dropped.
    """
    n_uc = np.asarray(counts, dtype=float)
    idx = np.atleast_2d(np.asarray(samples, dtype=np.int64))
    m = n_uc.sum(axis=1)
    d = (n_uc * (n_uc - 1)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = m[idx].sum(axis=1)
        N_c = np.stack([n_uc[:, c][idx].sum(axis=1) for c in range(n_uc.shape[1])], axis=1)
        expected = n * n - (N_c * N_c).sum(axis=1)
        alpha = np.where(expected > 0, 1.0 - (n - 1) * (n - (d / (m - 1))[idx].sum(axis=1)) / expected, np.nan)
        p_bar = (d / (m * (m - 1)))[idx].mean(axis=1)
        p_j = N_c / n[:, None]
        p_e = (p_j * p_j).sum(axis=1)
        kappa = np.where(p_e < 1, (p_bar - p_e) / (1 - p_e), np.nan)
    return alpha, kappa


def bootstrap_agreement(counts, *, n_boot: int = 200, level: float = 0.9,
                        rng: np.random.Generator | int | None = 0) -> dict[str, float]:
    """Percentile bootstrap intervals (resampling units) of Krippendorff's alpha and Fleiss' kappa.

    Returns ``alpha_ci_low, alpha_ci_high, kappa_ci_low, kappa_ci_high`` (NaN when undefined, or when
    ``n_boot == 0``). Vectorised: each replicate draws the pairable units with replacement.
    """
    keys = ["alpha_ci_low", "alpha_ci_high", "kappa_ci_low", "kappa_ci_high"]
    n_uc = np.asarray(counts, dtype=float).reshape(-1, np.shape(counts)[1] if np.ndim(counts) == 2 else 1)
    m = n_uc.sum(axis=1)
    n_uc = n_uc[m >= 2]
    U = len(n_uc)
    if n_boot <= 0 or U == 0:
        return {k: float("nan") for k in keys}
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    alpha, kappa = resampled_agreement(n_uc, rng.integers(0, U, size=(n_boot, U)))
    lo, hi = 100 * (1 - level) / 2, 100 * (1 - (1 - level) / 2)

    def q(x):
        x = x[np.isfinite(x)]
        return (float(np.percentile(x, lo)), float(np.percentile(x, hi))) if len(x) else (float("nan"),) * 2

    (a_lo, a_hi), (k_lo, k_hi) = q(alpha), q(kappa)
    return dict(zip(keys, (a_lo, a_hi, k_lo, k_hi)))
