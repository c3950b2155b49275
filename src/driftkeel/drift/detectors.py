"""Drift detectors: each compares a reference window with a current window and returns a result dict.

A detector only measures (statistic, p-value, effect sizes). Whether a result is an alarm is decided
afterwards by :func:`calibrate`, which applies a Bonferroni correction across the tests run on the
same window, so every alarm states the per-test alpha it was calibrated for.

Statuses: "ok", "alarm", "insufficient data" (window smaller than `min_window`, empty, or without any
variation: a test that cannot run never alarms), "reference" (a reference batch with nothing to
compare against).
"""
from __future__ import annotations

import numpy as np
from scipy import stats as sstats

from driftkeel.drift.stats import js_divergence_samples, ks_test, mmd_permutation_test, wasserstein

OK, ALARM, INSUFFICIENT, REFERENCE = "ok", "alarm", "insufficient data", "reference"

SIGNALS = ("prompt", "output", "label", "reward", "concept")


def result(test: str, signal: str, **kw) -> dict:
    base = {"test": test, "signal": signal, "status": OK, "statistic": None, "statistic_name": None,
            "p_value": None, "alpha": None, "alarm": False, "n_reference": 0, "n_current": 0,
            "reason": "", "details": {}}
    base.update(kw)
    return base


def insufficient(test: str, signal: str, reason: str, n_ref: int = 0, n_cur: int = 0) -> dict:
    return result(test, signal, status=INSUFFICIENT, reason=reason, n_reference=int(n_ref), n_current=int(n_cur))


def subsample_index(n: int, max_n: int, seed: int) -> np.ndarray:
    """All indices if n <= max_n, else a seeded sorted sample of max_n of them."""
    if n <= max_n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_n, replace=False))


def _window_problem(ref: np.ndarray, cur: np.ndarray, min_window: int) -> str | None:
    if len(ref) == 0 or len(cur) == 0:
        return f"empty window (reference {len(ref)}, current {len(cur)})"
    if len(ref) < min_window or len(cur) < min_window:
        return f"window below min_window={min_window} (reference {len(ref)}, current {len(cur)})"
    pooled = np.concatenate([ref, cur]) if ref.ndim == 1 else np.vstack([ref, cur])
    if np.all(pooled == pooled[0]):
        return "no variation: every value in both windows is identical"
    return None


# ----------------------------------------------------------------------------- prompt (covariate)
def effective_permutations(n_permutations: int, alpha: float, n_tests: int) -> int:
    """At least enough permutations that the smallest p-value, 1/(B+1), is <= alpha/(2 n_tests);
    with fewer, a Bonferroni-corrected permutation test could never alarm."""
    return max(int(n_permutations), int(np.ceil(2 * n_tests / alpha)))


def prompt_drift(ref_emb: np.ndarray, cur_emb: np.ndarray, *, min_window: int, max_window: int,
                 n_permutations: int, seed: int) -> dict:
    """MMD permutation test on prompt embeddings (windows above max_window are subsampled, seeded)."""
    ref_emb = np.asarray(ref_emb, dtype=np.float64)
    cur_emb = np.asarray(cur_emb, dtype=np.float64)
    problem = _window_problem(ref_emb, cur_emb, min_window)
    if problem:
        return insufficient("prompt_mmd", "prompt", problem, len(ref_emb), len(cur_emb))
    ri = subsample_index(len(ref_emb), max_window, seed)
    ci = subsample_index(len(cur_emb), max_window, seed + 1)
    try:
        res = mmd_permutation_test(ref_emb[ri], cur_emb[ci], n_permutations=n_permutations, seed=seed)
    except ValueError as exc:
        return insufficient("prompt_mmd", "prompt", str(exc), len(ref_emb), len(cur_emb))
    z = (res.mmd2 - res.null_mean) / res.null_std if res.null_std > 0 else 0.0
    return result("prompt_mmd", "prompt", statistic=res.mmd2, statistic_name="mmd2", p_value=res.p_value,
                  n_reference=len(ref_emb), n_current=len(cur_emb),
                  details={"bandwidth": res.bandwidth, "n_permutations": res.n_permutations,
                           "null_mean": res.null_mean, "null_std": res.null_std, "z_vs_null": float(z),
                           "n_reference_used": int(len(ri)), "n_current_used": int(len(ci))})


# ----------------------------------------------------------------------------- output (responses)
def response_lengths(texts) -> np.ndarray:
    """Whitespace tokens per response."""
    return np.array([len(str(t).split()) for t in texts], dtype=float)


def output_drift(ref_lengths, cur_lengths, *, min_window: int) -> dict:
    """KS test on response length (words); Wasserstein distance and JS of the histograms as effect sizes."""
    ref = np.asarray(ref_lengths, dtype=float)
    cur = np.asarray(cur_lengths, dtype=float)
    problem = _window_problem(ref, cur, min_window)
    if problem:
        return insufficient("output_length_ks", "output", problem, len(ref), len(cur))
    ks, p = ks_test(ref, cur)
    w = wasserstein(ref, cur)
    scale = float(ref.std()) or 1.0
    return result("output_length_ks", "output", statistic=ks, statistic_name="ks", p_value=p,
                  n_reference=len(ref), n_current=len(cur),
                  details={"wasserstein_words": w, "wasserstein_in_ref_std": w / scale,
                           "js_divergence_nats": js_divergence_samples(ref, cur, n_bins=30),
                           "mean_words_reference": float(ref.mean()), "mean_words_current": float(cur.mean())})


# ----------------------------------------------------------------------------- label (annotators)
def label_drift(ref_agreement, cur_agreement, *, min_window: int, ref_alpha: list[float] | None = None,
                cur_alpha: float | None = None) -> dict:
    """Has annotator agreement dropped?

    Test: one-sided Mann-Whitney U on per-comparison agreement (share of judgements equal to the
    consensus), H1 = current agreement is stochastically lower than the reference. When batch-level
    Krippendorff alphas are given (outputs/aggregate/plots/agreement.csv), an alarm additionally needs
    the current alpha to be below the lowest reference alpha (a drop, not noise within the reference).
    """
    ref = np.asarray(ref_agreement, dtype=float)
    cur = np.asarray(cur_agreement, dtype=float)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    problem = _window_problem(ref, cur, min_window)
    if problem:
        return insufficient("label_agreement_mwu", "label", problem, len(ref), len(cur))
    res = sstats.mannwhitneyu(cur, ref, alternative="less")
    details = {"mean_agreement_reference": float(ref.mean()), "mean_agreement_current": float(cur.mean())}
    veto = None
    ref_alpha = [a for a in (ref_alpha or []) if a is not None and np.isfinite(a)]
    if ref_alpha and cur_alpha is not None and np.isfinite(cur_alpha):
        details.update({"krippendorff_alpha_reference_min": float(min(ref_alpha)),
                        "krippendorff_alpha_reference_mean": float(np.mean(ref_alpha)),
                        "krippendorff_alpha_current": float(cur_alpha),
                        "krippendorff_alpha_drop": float(np.mean(ref_alpha) - cur_alpha)})
        if cur_alpha >= min(ref_alpha):
            veto = "current Krippendorff alpha is not below the reference batches' minimum"
    out = result("label_agreement_mwu", "label", statistic=float(res.statistic), statistic_name="mann_whitney_u",
                 p_value=float(res.pvalue), n_reference=len(ref), n_current=len(cur), details=details)
    if veto:
        out["details"]["veto"] = veto
    return out


# ----------------------------------------------------------------------------- reward (concept)
def _group_folds(groups: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold index per row; all rows of one group (prompt_id) share a fold."""
    uniq = np.array(sorted(set(groups.tolist())))
    order = np.random.default_rng(seed).permutation(len(uniq))
    fold_of = {uniq[j]: i % n_folds for i, j in enumerate(order)}
    return np.array([fold_of[g] for g in groups])


def reward_drift(ref_X, ref_y, ref_w, cur_X, cur_y, cur_w, cur_groups, *, min_window: int, seed: int,
                 n_folds: int = 5, C: float = 10.0) -> dict:
    """Would a reward model fitted on the current labels beat one fitted on the reference labels?

    Cross-fitting on the current window (folds grouped by prompt_id): for each fold, a surrogate
    Bradley-Terry model is fitted on the other current folds, and another on a seeded sample of the
    reference of the SAME size; both predict the held-out fold. Under no concept drift the two models
    are exchangeable, so among pairs where exactly one is right, "current model right" is Binomial(n, 1/2).
    Test: exact one-sided McNemar (binomial) test. Comparing two models on the same current pairs
    cancels a change of difficulty (e.g. a new policy writing closer pairs), which a plain accuracy
    drop would mistake for drift. An alarm means the preference concept moved, or the current inputs
    teach the reward something the reference does not (covariate drift it does not generalise to).
    """
    from driftkeel.active.surrogate import BradleyTerrySurrogate

    ref_X, cur_X = np.asarray(ref_X, dtype=float), np.asarray(cur_X, dtype=float)
    ref_y, cur_y = np.asarray(ref_y, dtype=int), np.asarray(cur_y, dtype=int)
    ref_w = np.ones(len(ref_y)) if ref_w is None else np.asarray(ref_w, dtype=float)
    cur_w = np.ones(len(cur_y)) if cur_w is None else np.asarray(cur_w, dtype=float)
    test, sig = "reward_mcnemar", "reward"
    if len(ref_y) < min_window or len(cur_y) < min_window:
        return insufficient(test, sig, f"window below min_window={min_window} (reference {len(ref_y)}, "
                            f"current {len(cur_y)} non-tie pairs)", len(ref_y), len(cur_y))
    folds = _group_folds(np.asarray(cur_groups), n_folds, seed)
    if len(set(folds.tolist())) < 2:
        return insufficient(test, sig, "fewer than 2 prompt groups in the current window", len(ref_y), len(cur_y))
    rng = np.random.default_rng(seed)
    ref_right = np.zeros(len(cur_y), dtype=bool)
    cur_right = np.zeros(len(cur_y), dtype=bool)
    for f in sorted(set(folds.tolist())):
        tr, te = folds != f, folds == f
        if len(set(cur_y[tr].tolist())) < 2:
            return insufficient(test, sig, "current labels have a single class", len(ref_y), len(cur_y))
        n_tr = min(int(tr.sum()), len(ref_y))
        ri = rng.choice(len(ref_y), size=n_tr, replace=False)
        if len(set(ref_y[ri].tolist())) < 2:
            return insufficient(test, sig, "reference labels have a single class", len(ref_y), len(cur_y))
        m_cur = BradleyTerrySurrogate(C=C, seed=seed).fit(cur_X[tr], cur_y[tr], cur_w[tr])
        m_ref = BradleyTerrySurrogate(C=C, seed=seed).fit(ref_X[ri], ref_y[ri], ref_w[ri])
        cur_right[te] = (m_cur.predict_proba(cur_X[te]) >= 0.5).astype(int) == cur_y[te]
        ref_right[te] = (m_ref.predict_proba(cur_X[te]) >= 0.5).astype(int) == cur_y[te]
    b = int(np.sum(cur_right & ~ref_right))   # only the current-fitted model is right
    c = int(np.sum(ref_right & ~cur_right))   # only the reference-fitted model is right
    p = float(sstats.binomtest(b, b + c, 0.5, alternative="greater").pvalue) if b + c else 1.0
    return result(test, sig, statistic=float(cur_right.mean() - ref_right.mean()),
                  statistic_name="accuracy_gain_current_model", p_value=p,
                  n_reference=len(ref_y), n_current=len(cur_y),
                  details={"accuracy_reference_model": float(ref_right.mean()),
                           "accuracy_current_model": float(cur_right.mean()),
                           "only_current_right": b, "only_reference_right": c, "n_folds": n_folds})


# ----------------------------------------------------------------------------- concept: verbosity
def length_preference_drift(ref_diff, cur_diff, *, min_window: int) -> dict:
    """Has the preference for longer answers changed?

    Inputs: words(chosen) - words(rejected) per labelled (non-tie) pair; pairs of equal length are
    left out. Test: two-sided Fisher exact test on (longer chosen, shorter chosen) x (reference,
    current). Verbosity is the best-known axis along which human and AI preferences differ between
    domains and drift over time (length bias of reward models), and the test needs no model.
    """
    ref = np.asarray(ref_diff, dtype=float)
    cur = np.asarray(cur_diff, dtype=float)
    ref, cur = ref[ref != 0], cur[cur != 0]
    test, sig = "length_preference_fisher", "concept"
    if len(ref) < min_window or len(cur) < min_window:
        return insufficient(test, sig, f"window below min_window={min_window} (reference {len(ref)}, current "
                            f"{len(cur)} labelled pairs of different length)", len(ref), len(cur))
    table = [[int((ref > 0).sum()), int((ref < 0).sum())], [int((cur > 0).sum()), int((cur < 0).sum())]]
    _, p = sstats.fisher_exact(table)
    return result(test, sig, statistic=float((cur > 0).mean() - (ref > 0).mean()),
                  statistic_name="change_in_longer_chosen_share", p_value=float(p),
                  n_reference=len(ref), n_current=len(cur),
                  details={"longer_chosen_share_reference": float((ref > 0).mean()),
                           "longer_chosen_share_current": float((cur > 0).mean()),
                           "mean_length_gap_reference": float(ref.mean()), "mean_length_gap_current": float(cur.mean())})


# ----------------------------------------------------------------------------- calibration
def calibrate(results: list[dict], alpha: float) -> list[dict]:
    """Bonferroni across the tests that ran on one window: each is tested at alpha / m.

    Tests with status "insufficient data" or "reference" do not count and never alarm.
    """
    ran = [r for r in results if r["status"] not in (INSUFFICIENT, REFERENCE) and r["p_value"] is not None]
    ran_ids = {id(r) for r in ran}
    m = len(ran)
    per_test = alpha / m if m else alpha
    for r in results:
        r["family_alpha"] = alpha
        r["n_tests_in_family"] = m
        r["correction"] = "bonferroni"
        if id(r) in ran_ids:
            r["alpha"] = per_test
            alarm = r["p_value"] <= per_test and "veto" not in r["details"]
            r["alarm"] = bool(alarm)
            r["status"] = ALARM if alarm else OK
            if not r["reason"]:
                r["reason"] = (f"p={r['p_value']:.3g} {'<=' if r['p_value'] <= per_test else '>'} "
                               f"alpha/m={per_test:.3g} (alpha={alpha}, m={m})")
                if r["p_value"] <= per_test and not alarm:
                    r["reason"] += "; vetoed: " + r["details"]["veto"]
        else:
            r["alarm"] = False
    return results
