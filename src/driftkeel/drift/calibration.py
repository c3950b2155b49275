"""From p-values to alarms with a stated false-alarm rate.

Every test returns a p-value that is valid under "no drift" (permutation tests on the pooled windows,
exact or asymptotic classical tests). :func:`calibrate` splits the family false-alarm rate `alpha`
of one window first equally over the signals that could be tested, then equally over that signal's
tests (a weighted Bonferroni correction): test t of signal s alarms when p_t <= alpha / (S * m_s).
The probability that any test of the window alarms when nothing drifted is therefore at most alpha,
whatever the dependence between tests, and a signal with many tests (reward) does not dilute a
signal with one (prompt). Each result records the alpha it was calibrated for.

Tests with status "insufficient data" or "reference" do not count and never alarm.
"""
from __future__ import annotations

import numpy as np

OK, ALARM, INSUFFICIENT, REFERENCE = "ok", "alarm", "insufficient data", "reference"


def effective_permutations(n_permutations: int, alpha: float, n_tests: int) -> int:
    """At least enough permutations that the smallest p-value, 1/(B+1), is <= alpha/(2 n_tests);
    with fewer, a Bonferroni-corrected permutation test could never alarm."""
    return max(int(n_permutations), int(np.ceil(2 * n_tests / alpha)))


def calibrate(results: list[dict], alpha: float) -> list[dict]:
    ran = [r for r in results if r["status"] not in (INSUFFICIENT, REFERENCE) and r["p_value"] is not None]
    ran_ids = {id(r) for r in ran}
    per_signal: dict[str, int] = {}
    for r in ran:
        per_signal[r["signal"]] = per_signal.get(r["signal"], 0) + 1
    n_signals = len(per_signal)
    for r in results:
        r["family_alpha"] = alpha
        r["n_tests_in_family"] = len(ran)
        r["n_signals_in_family"] = n_signals
        r["correction"] = "bonferroni over signals, then over the signal's tests"
        if id(r) not in ran_ids:
            r["alpha"] = None
            r["alarm"] = False
            continue
        m_s = per_signal[r["signal"]]
        a = alpha / (n_signals * m_s)
        r["alpha"] = a
        alarm = r["p_value"] <= a and "veto" not in r["details"]
        r["alarm"] = bool(alarm)
        r["status"] = ALARM if alarm else OK
        if not r["reason"]:
            r["reason"] = (f"p={r['p_value']:.3g} {'<=' if r['p_value'] <= a else '>'} {a:.3g} "
                           f"(alpha={alpha} / {n_signals} signal(s) / {m_s} test(s) of {r['signal']})")
            if r["p_value"] <= a and not alarm:
                r["reason"] += "; vetoed: " + r["details"]["veto"]
    return results
