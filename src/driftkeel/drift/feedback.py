"""Drift detectors on the feedback: annotator labels, the preference concept and the reward model.

- label:   agreement between annotators dropped (Mann-Whitney), more preference flips (Fisher);
- reward:  the reward model's score distribution, its chosen-minus-rejected margin and its ensemble
           disagreement moved (KS / Mann-Whitney); its accuracy on freshly labelled pairs fell below
           its reference level (Fisher); a model fitted on the current labels beats it (McNemar);
- concept: the share of pairs where the longer answer won changed (Fisher).

All return result dicts of :func:`driftkeel.drift.detectors.result`; alarms come from calibrate().
"""
from __future__ import annotations

import numpy as np
from scipy import stats as sstats

from driftkeel.drift.detectors import insufficient, result, window_problem
from driftkeel.drift.stats import divergences, ks_test


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
    test = "label_agreement_mwu"
    if len(ref) == 0 or len(cur) == 0 or len(ref) < min_window or len(cur) < min_window:
        return insufficient(test, "label", window_problem(ref, cur, min_window, "agreement values")
                            or "too few values", len(ref), len(cur))
    if np.all(np.concatenate([ref, cur]) == ref[0]):
        return insufficient(test, "label", "no variation: every agreement value in both windows is identical",
                            len(ref), len(cur))
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
    out = result(test, "label", statistic=float(res.statistic), statistic_name="mann_whitney_u",
                 p_value=float(res.pvalue), n_reference=len(ref), n_current=len(cur), details=details)
    if veto:
        out["details"]["veto"] = veto
    return out


def flip_rate_drift(ref_flips: int, ref_pairs: int, cur_flips: int, cur_pairs: int, *, min_window: int) -> dict:
    """More preference flips (the same pair labelled the other way when judged again) than in the
    reference: one-sided Fisher exact test on (flipped, kept) x (reference, current)."""
    test = "label_flip_rate"
    if ref_pairs < min_window or cur_pairs < min_window:
        return insufficient(test, "label", f"re-judged pairs below min_window={min_window} (reference {ref_pairs}, "
                            f"current {cur_pairs})", ref_pairs, cur_pairs)
    table = [[int(cur_flips), int(cur_pairs - cur_flips)], [int(ref_flips), int(ref_pairs - ref_flips)]]
    _, p = sstats.fisher_exact(table, alternative="greater")
    fr, fc = ref_flips / ref_pairs, cur_flips / cur_pairs
    return result(test, "label", statistic=float(fc - fr), statistic_name="flip_rate_increase", p_value=float(p),
                  n_reference=int(ref_pairs), n_current=int(cur_pairs),
                  details={"flip_rate_reference": float(fr), "flip_rate_current": float(fc)})


# ----------------------------------------------------------------------------- reward model
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
    drop would mistake for drift.
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


def reward_score_drift(ref_scores, cur_scores, *, min_window: int, test: str = "reward_score_ks",
                       what: str = "reward scores") -> dict:
    """Two-sided KS test on a reward-model quantity (scores of responses, or chosen-minus-rejected
    margins); Wasserstein / JS / KL and the shift of the mean as effect sizes."""
    ref = np.asarray(ref_scores, dtype=float)
    cur = np.asarray(cur_scores, dtype=float)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    problem = window_problem(ref, cur, min_window, what)
    if problem:
        return insufficient(test, "reward", problem, len(ref), len(cur))
    ks, p = ks_test(ref, cur)
    return result(test, "reward", statistic=ks, statistic_name="ks", p_value=p, n_reference=len(ref),
                  n_current=len(cur),
                  details={"mean_reference": float(ref.mean()), "mean_current": float(cur.mean()),
                           "std_reference": float(ref.std()), "std_current": float(cur.std()), **divergences(ref, cur)})


def reward_disagreement_drift(ref_spread, cur_spread, *, min_window: int) -> dict:
    """Do the reward ensemble's members disagree more on the current window? One-sided Mann-Whitney
    on the standard deviation of the members' scores (one value per pair: the mean over its two responses)."""
    test = "reward_ensemble_disagreement"
    ref = np.asarray(ref_spread, dtype=float)
    cur = np.asarray(cur_spread, dtype=float)
    problem = window_problem(ref, cur, min_window, "ensemble spreads")
    if problem:
        return insufficient(test, "reward", problem, len(ref), len(cur))
    res = sstats.mannwhitneyu(cur, ref, alternative="greater")
    return result(test, "reward", statistic=float(np.median(cur) / max(np.median(ref), 1e-12)),
                  statistic_name="median_spread_ratio", p_value=float(res.pvalue), n_reference=len(ref),
                  n_current=len(cur),
                  details={"median_spread_reference": float(np.median(ref)),
                           "median_spread_current": float(np.median(cur))})


def reward_accuracy_drift(ref_correct, cur_correct, *, min_window: int) -> dict:
    """Is the reward model less accurate on freshly labelled pairs than at its reference level?
    `ref_correct`: held-out (cross-fitted) correctness on the reference labels; `cur_correct`: the
    reference-fitted model on the current labels. One-sided Fisher exact test."""
    test = "reward_accuracy_drop"
    ref = np.asarray(ref_correct, dtype=bool)
    cur = np.asarray(cur_correct, dtype=bool)
    if len(ref) < min_window or len(cur) < min_window:
        return insufficient(test, "reward", f"window below min_window={min_window} (reference {len(ref)}, current "
                            f"{len(cur)} labelled pairs)", len(ref), len(cur))
    table = [[int(ref.sum()), int((~ref).sum())], [int(cur.sum()), int((~cur).sum())]]
    _, p = sstats.fisher_exact(table, alternative="greater")
    return result(test, "reward", statistic=float(ref.mean() - cur.mean()), statistic_name="accuracy_drop",
                  p_value=float(p), n_reference=len(ref), n_current=len(cur),
                  details={"accuracy_reference": float(ref.mean()), "accuracy_current": float(cur.mean())})


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
