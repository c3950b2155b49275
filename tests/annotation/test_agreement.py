"""Krippendorff's alpha and Fleiss' kappa against published worked examples and a brute-force definition."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftkeel.annotation.agreement import (count_matrix, fleiss_kappa, krippendorff_alpha_nominal,
                                            reliability_to_counts)

N = None


def test_krippendorff_2011_nominal_example_with_missing_data():
    # Krippendorff (2011) "Computing Krippendorff's Alpha-Reliability", section C: 4 observers,
    # 12 units, missing values; published nominal alpha = 0.743.
    data = [[1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
            [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N]]
    alpha = krippendorff_alpha_nominal(reliability_to_counts(data))
    assert round(alpha, 3) == 0.743
    assert alpha == pytest.approx(113 / 152, abs=1e-12)  # the exact value behind 0.743


def test_krippendorff_2011_binary_two_observers():
    # Same paper, section A: two observers, binary data, 10 units; published alpha = 0.095.
    data = [[0, 1, 0, 0, 0, 0, 0, 0, 1, 0],
            [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]]
    assert round(krippendorff_alpha_nominal(reliability_to_counts(data)), 3) == 0.095


def test_fleiss_wikipedia_example():
    # https://en.wikipedia.org/wiki/Fleiss%27_kappa worked example: 10 subjects, 14 raters, kappa = 0.210.
    counts = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
              [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert round(fleiss_kappa(counts), 3) == 0.210
    assert fleiss_kappa(counts) == pytest.approx(0.20993070442195522, abs=1e-12)


def test_fleiss_varying_raters_hand_computed():
    # P_i = 1, 0, 1 -> P_bar = 2/3; p = (3/7, 4/7) -> P_e = 25/49; kappa = (2/3 - 25/49) / (24/49) = 23/72
    assert fleiss_kappa([[2, 0], [1, 1], [0, 3]]) == pytest.approx(23 / 72, abs=1e-12)


def test_degenerate_cases():
    assert np.isnan(krippendorff_alpha_nominal([[3, 0], [2, 0]]))   # no variation: undefined
    assert np.isnan(krippendorff_alpha_nominal([[1, 0], [0, 1]]))   # no pairable unit
    assert np.isnan(fleiss_kappa(np.zeros((0, 3))))
    assert krippendorff_alpha_nominal([[2, 0], [0, 2]]) == 1.0
    assert fleiss_kappa([[2, 0], [0, 2]]) == 1.0


def test_count_matrix_from_long_judgements():
    counts = count_matrix(["u1", "u1", "u2", "u2", "u2"], ["a", "b", "tie", "a", "a"], ["a", "b", "tie"])
    assert counts.loc["u1"].tolist() == [1, 1, 0] and counts.loc["u2"].tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="outside categories"):
        count_matrix(["u1"], ["c"], ["a", "b"])


def _alpha_by_definition(units: list[list[int]]) -> float:
    """Nominal alpha straight from the definition: D_o over pairable values, D_e over all pairs."""
    vals = sorted({v for u in units for v in u})
    o = {(c, k): 0.0 for c in vals for k in vals}
    for u in units:
        if len(u) < 2:
            continue
        for i, j in itertools.permutations(range(len(u)), 2):
            o[(u[i], u[j])] += 1.0 / (len(u) - 1)
    n_c = {c: sum(o[(c, k)] for k in vals) for c in vals}
    n = sum(n_c.values())
    d_o = sum(o[(c, k)] for c in vals for k in vals if c != k) / n
    d_e = sum(n_c[c] * n_c[k] for c in vals for k in vals if c != k) / (n * (n - 1))
    return 1 - d_o / d_e


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 2), min_size=0, max_size=6), min_size=2, max_size=25))
def test_alpha_matches_the_definition(units):
    counts = np.zeros((len(units), 3), dtype=int)
    for i, u in enumerate(units):
        for v in u:
            counts[i, v] += 1
    ours = krippendorff_alpha_nominal(counts)
    pairable = [u for u in units if len(u) >= 2]
    if not pairable or len({v for u in pairable for v in u}) < 2:
        assert np.isnan(ours)
    else:
        assert ours == pytest.approx(_alpha_by_definition(pairable), abs=1e-9)
