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
    df = pd.DataFrame({"unit": list(units), "value": list(values)}).dropna()
    cats = list(categories) if categories is not None else sorted(df["value"].unique().tolist())
    if df.empty:
        return pd.DataFrame(np.zeros((0, len(cats)), dtype=np.int64), columns=cats)
    unknown = set(df["value"]) - set(cats)
    if unknown:
        raise ValueError(f"values outside categories {cats}: {sorted(map(str, unknown))}")
    counts = df.groupby(["unit", "value"], sort=True).size().unstack("value", fill_value=0)
    counts.columns.name = None
    return counts.reindex(columns=cats, fill_value=0).astype(np.int64)


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
