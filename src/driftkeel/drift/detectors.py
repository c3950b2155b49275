"""Drift detectors on the inputs and outputs of the policy: prompts, responses, perplexity.

A detector compares a reference window with a current window and returns a result dict (statistic,
p-value, effect sizes in `details`). Whether a result is an alarm is decided afterwards by
:func:`driftkeel.drift.calibration.calibrate`, so every alarm states the alpha it was calibrated for.
Detectors on labels and reward models live in :mod:`driftkeel.drift.feedback`.

Statuses: "ok", "alarm", "insufficient data" (a window that is empty, smaller than `min_window`, or
whose values are all identical: a test that cannot run never alarms), "reference" (a reference
batch with nothing to compare against).
"""
from __future__ import annotations

import numpy as np

from driftkeel.drift.calibration import ALARM, INSUFFICIENT, OK, REFERENCE, calibrate, effective_permutations
from driftkeel.drift.stats import divergences, ks_test
from driftkeel.drift.twosample import DEFAULT_BANDWIDTHS, DEFAULT_STATISTICS, two_sample_test

SIGNALS = ("prompt", "output", "perplexity", "label", "reward", "concept")
EMBEDDING_STATISTICS = DEFAULT_STATISTICS     # see driftkeel.drift.twosample
EMBEDDING_BANDWIDTHS = DEFAULT_BANDWIDTHS

__all__ = ["ALARM", "INSUFFICIENT", "OK", "REFERENCE", "SIGNALS", "calibrate", "effective_permutations",
           "insufficient", "output_embedding_drift", "output_text_drift", "perplexity_drift", "prompt_drift",
           "response_stats", "result", "subsample_index", "window_problem"]


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


def _all_identical(x: np.ndarray) -> bool:
    return len(x) > 0 and bool(np.all(x == x[0]))


def window_problem(ref: np.ndarray, cur: np.ndarray, min_window: int, what: str = "values",
                   per_window: bool = False) -> str | None:
    """Why two windows cannot be compared (None when they can). A window with every value identical
    is bad input when `per_window` (prompts: a window of one repeated prompt is a broken feed, not a
    distribution); otherwise only when both windows hold one and the same value (nothing to test)."""
    if len(ref) == 0 or len(cur) == 0:
        return f"empty window (reference {len(ref)}, current {len(cur)} {what})"
    if len(ref) < min_window or len(cur) < min_window:
        return f"window below min_window={min_window} (reference {len(ref)}, current {len(cur)} {what})"
    if per_window:
        for name, x in (("reference", ref), ("current", cur)):
            if _all_identical(x):
                return f"no variation: all {len(x)} {what} of the {name} window are identical"
    elif _all_identical(ref) and _all_identical(cur) and np.all(ref[0] == cur[0]):
        return f"no variation: every {what[:-1] if what.endswith('s') else what} in both windows is identical"
    return None


# ----------------------------------------------------------------------------- embeddings (shared)
def _embedding_test(test: str, signal: str, ref_emb, cur_emb, *, min_window: int, max_window: int,
                    n_permutations: int, seed: int, alpha: float, what: str,
                    per_window: bool = False) -> tuple[dict, dict | None]:
    ref_emb = np.asarray(ref_emb, dtype=np.float64)
    cur_emb = np.asarray(cur_emb, dtype=np.float64)
    if ref_emb.ndim != 2:
        ref_emb = ref_emb.reshape(len(ref_emb), -1)
    if cur_emb.ndim != 2:
        cur_emb = cur_emb.reshape(len(cur_emb), -1)
    problem = window_problem(ref_emb, cur_emb, min_window, what, per_window=per_window)
    if problem:
        return insufficient(test, signal, problem, len(ref_emb), len(cur_emb)), None
    ri = subsample_index(len(ref_emb), max_window, seed)
    ci = subsample_index(len(cur_emb), max_window, seed + 1)
    try:
        res = two_sample_test(ref_emb[ri], cur_emb[ci], n_permutations=n_permutations, seed=seed, alpha=alpha,
                              statistics=EMBEDDING_STATISTICS, bandwidths=EMBEDDING_BANDWIDTHS)
    except ValueError as exc:
        return insufficient(test, signal, str(exc), len(ref_emb), len(cur_emb)), None
    stats_ = res.statistics
    auc = stats_.get("classifier_auc", {}).get("statistic")
    out = result(test, signal, statistic=res.p_value, statistic_name="min_p_over_statistics",
                 p_value=res.p_value, n_reference=len(ref_emb), n_current=len(cur_emb),
                 details={"strongest_statistic": res.strongest, "classifier_auc": auc,
                          "mmd2": stats_.get("mmd@1", {}).get("statistic"), "bandwidth": res.bandwidth,
                          "n_permutations": res.n_permutations, "n_reference_used": int(len(ri)),
                          "n_current_used": int(len(ci)), "statistics": stats_,
                          "calibration": f"min-p permutation test over {len(stats_)} statistics, {res.n_permutations}"
                                         f" permutations; thresholds are the permutation (1-{alpha}) quantiles"})
    return out, {"ri": ri, "ci": ci, "result": res}


# ----------------------------------------------------------------------------- prompt (covariate)
def prompt_drift(ref_emb, cur_emb, *, min_window: int, max_window: int, n_permutations: int, seed: int,
                 alpha: float = 0.05, ref_texts: list[str] | None = None, cur_texts: list[str] | None = None,
                 clusters: bool = True, topics: bool = True, n_topics: int = 8) -> dict:
    """Prompt drift on sentence embeddings: one permutation test over MMD, a domain classifier (AUC),
    k-nearest-neighbour links and k-means cluster histograms (see :mod:`driftkeel.drift.twosample`),
    plus the cluster and topic report (which regions grew or appeared, with example prompts)."""
    out, extra = _embedding_test("prompt_embedding", "prompt", ref_emb, cur_emb, min_window=min_window,
                                 max_window=max_window, n_permutations=n_permutations, seed=seed, alpha=alpha,
                                 what="prompts", per_window=True)
    if extra is None:
        return out
    if clusters:
        from driftkeel.drift.clusters import cluster_report

        out["details"]["clusters"] = cluster_report(np.asarray(ref_emb), np.asarray(cur_emb), ref_texts, cur_texts,
                                                    seed=seed)
    if topics and ref_texts is not None and cur_texts is not None:
        from driftkeel.drift.clusters import topic_report

        out["details"]["topics"] = topic_report(list(ref_texts), list(cur_texts), n_topics=n_topics, seed=seed,
                                                max_docs=min(max_window, 500))
    return out


# ----------------------------------------------------------------------------- output (responses)
def response_stats(texts) -> dict[str, np.ndarray]:
    """Per response: words (whitespace tokens), characters per word, share of distinct words."""
    words, cpw, distinct = [], [], []
    for t in texts:
        toks = str(t).split()
        words.append(len(toks))
        cpw.append(sum(len(w) for w in toks) / len(toks) if toks else 0.0)
        distinct.append(len({w.lower() for w in toks}) / len(toks) if toks else 0.0)
    return {"words": np.array(words, dtype=float), "chars_per_word": np.array(cpw, dtype=float),
            "distinct_word_share": np.array(distinct, dtype=float)}


def output_text_drift(ref_responses, cur_responses, *, min_window: int) -> dict:
    """KS tests on response length (words), characters per word and share of distinct words
    (Bonferroni over the three inside the test); JS / KL / Wasserstein of each as effect sizes.

    Also accepts arrays of lengths (numbers) instead of texts: then only `words` is tested."""
    test, sig = "output_text_stats", "output"
    ref_l, cur_l = list(ref_responses), list(cur_responses)
    numeric = all(isinstance(x, (int, float, np.integer, np.floating)) for x in ref_l + cur_l)
    if numeric:
        rs = {"words": np.asarray(ref_l, dtype=float)}
        cs = {"words": np.asarray(cur_l, dtype=float)}
    else:
        rs, cs = response_stats(ref_l), response_stats(cur_l)
    problem = window_problem(np.asarray(ref_l, dtype=object), np.asarray(cur_l, dtype=object), min_window,
                             "responses")
    if problem:
        return insufficient(test, sig, problem, len(ref_l), len(cur_l))
    per, best = {}, None
    for name in rs:
        r, c = rs[name], cs[name]
        if np.all(np.concatenate([r, c]) == r[0]):
            per[name] = {"ks": 0.0, "p_value": 1.0}
            continue
        ks, p = ks_test(r, c)
        per[name] = {"ks": ks, "p_value": p, "mean_reference": float(r.mean()), "mean_current": float(c.mean()),
                     **divergences(r, c)}
        if best is None or p < per[best]["p_value"]:
            best = name
    if best is None:
        return insufficient(test, sig, "no variation in any response statistic", len(ref_l), len(cur_l))
    p_adj = min(1.0, per[best]["p_value"] * len(per))
    w = per["words"]
    return result(test, sig, statistic=per[best]["ks"], statistic_name=f"ks_{best}", p_value=p_adj,
                  n_reference=len(ref_l), n_current=len(cur_l),
                  details={"strongest_statistic": best, "per_statistic": per,
                           "mean_words_reference": w.get("mean_reference"), "mean_words_current": w.get("mean_current"),
                           "wasserstein_words": w.get("wasserstein"), "js_divergence_words_nats": w.get("js_nats"),
                           "kl_divergence_words_nats": w.get("kl_current_reference_nats"),
                           "calibration": f"Bonferroni over {len(per)} KS tests inside the test"})


def output_embedding_drift(ref_emb, cur_emb, *, min_window: int, max_window: int, n_permutations: int,
                           seed: int, alpha: float = 0.05, n_components: int = 3) -> dict:
    """Response drift on sentence embeddings (the permutation test of the prompt detector), with JS /
    KL / Wasserstein of the projections on the pooled sample's top principal axes as effect sizes."""
    out, extra = _embedding_test("output_embedding", "output", ref_emb, cur_emb, min_window=min_window,
                                 max_window=max_window, n_permutations=n_permutations, seed=seed, alpha=alpha,
                                 what="responses")
    if extra is None:
        return out
    R = np.asarray(ref_emb, dtype=np.float64)[extra["ri"]]
    C = np.asarray(cur_emb, dtype=np.float64)[extra["ci"]]
    Z = np.vstack([R, C])
    mu = Z.mean(axis=0)
    w, V = np.linalg.eigh(np.cov(Z - mu, rowvar=False))       # principal axes of the pooled sample
    proj = {}
    for j in range(min(n_components, V.shape[1])):
        axis = V[:, -(j + 1)]
        proj[f"pc{j + 1}"] = divergences((R - mu) @ axis, (C - mu) @ axis)
    out["details"]["projections"] = proj
    return out


# ----------------------------------------------------------------------------- perplexity
def perplexity_drift(ref_ppl, cur_ppl, *, min_window: int) -> dict:
    """The policy's perplexity on current vs reference prompts: KS on log-perplexity, Wasserstein of
    log-perplexity and the ratio of median perplexities as effect sizes."""
    test, sig = "perplexity_ks", "perplexity"
    ref = np.asarray(ref_ppl, dtype=float)
    cur = np.asarray(cur_ppl, dtype=float)
    ref, cur = ref[np.isfinite(ref) & (ref > 0)], cur[np.isfinite(cur) & (cur > 0)]
    problem = window_problem(ref, cur, min_window, "perplexities")
    if problem:
        return insufficient(test, sig, problem, len(ref), len(cur))
    lr, lc = np.log(ref), np.log(cur)
    ks, p = ks_test(lr, lc)
    return result(test, sig, statistic=ks, statistic_name="ks_log_perplexity", p_value=p,
                  n_reference=len(ref), n_current=len(cur),
                  details={"median_perplexity_reference": float(np.median(ref)),
                           "median_perplexity_current": float(np.median(cur)),
                           "median_ratio": float(np.median(cur) / np.median(ref)), **divergences(lr, lc)})
