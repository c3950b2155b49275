"""Drift over the labelled stream: every batch against the reference window, the latest is "current".

Reference = the first `drift.reference_batches` batches. Each later batch is compared with the whole
reference; each reference batch with the other reference batches (leave-one-out, a built-in check of
the false-alarm rate) when there are at least two. Each comparison is one call of
:func:`driftkeel.drift.window.check_windows` (every detector, calibrated together at `drift.alpha`).

The history across batches is a monitoring view: each row is calibrated within its own window, there
is no correction across time (the detection delay of a drift is the number of batches to its first
alarm).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from driftkeel.config import DriftParams
from driftkeel.drift import detectors as det
from driftkeel.drift.calibration import calibrate
from driftkeel.drift.decision import decide
from driftkeel.drift.window import TESTS, check_windows, window_from_rows, window_status
from driftkeel.embeddings import Embedder

ALL_TESTS = TESTS
REQUIRED = ("comparison_id", "batch", "prompt_id", "prompt", "response_a", "response_b")


def _flips_for(flips: pd.DataFrame | None, batches: list[int]) -> tuple[int, int]:
    if flips is None or flips.empty or not {"later_batch", "flipped"} <= set(flips.columns):
        return 0, 0
    sub = flips[flips["later_batch"].isin(batches)]
    return int(sub["flipped"].astype(bool).sum()), int(len(sub))


def analyse_stream(consensus: pd.DataFrame, agreement: pd.DataFrame | None, params: DriftParams,
                   embedder: Embedder, seed: int = 0, pair_embedder: Embedder | None = None,
                   output_embedder: Embedder | None = None, flips: pd.DataFrame | None = None) -> tuple[dict, dict]:
    """Return (report, plot_data). The report is JSON-ready; plot_data holds arrays for the HTML.

    `embedder` embeds prompts; `pair_embedder` (default: the same) gives the features of the surrogate
    reward model; `output_embedder` (default: none) embeds responses for the output embedding test;
    `flips` is outputs/aggregate/flips.csv (re-judged pairs) when there is one."""
    pair_embedder = pair_embedder or embedder
    missing = [c for c in REQUIRED if c not in consensus.columns]
    if missing:
        raise ValueError(f"consensus is missing column(s) {missing}")
    cons = consensus.dropna(subset=["batch"]).copy()
    cons["batch"] = cons["batch"].astype(int)
    batches = sorted(cons["batch"].unique().tolist())
    ref_batches = batches[: params.reference_batches]
    kripp = {}
    if agreement is not None and len(agreement) and {"batch", "krippendorff_alpha"} <= set(agreement.columns):
        kripp = {int(b): float(a) for b, a in zip(agreement["batch"], agreement["krippendorff_alpha"]) if pd.notna(a)}
    windows = {b: window_from_rows(cons[cons["batch"] == b]) for b in batches}
    have_flips = flips is not None and not flips.empty

    def merged(bs: list[int]):
        return window_from_rows(cons[cons["batch"].isin(bs)])

    history, tests_by_batch, plots_by_batch = [], {}, {}
    ref_window = merged(ref_batches)
    for b in batches:
        in_ref = b in ref_batches
        base = [x for x in ref_batches if x != b] if in_ref else ref_batches
        s = seed + 1000 * (b + 1)
        if not base:
            tests = [det.result(t, sig, status=det.REFERENCE, reason="reference batch (no other to compare)")
                     for t, sig in ALL_TESTS]
            calibrate(tests, params.alpha)
            plots = None
        else:
            fl = ({"reference": _flips_for(flips, base), "current": _flips_for(flips, [b])} if have_flips else None)
            tests, plots = check_windows(ref_window if base == ref_batches else merged(base), windows[b], params,
                                         embedder, pair_embedder=pair_embedder, output_embedder=output_embedder,
                                         seed=s, flips=fl, ref_kripp=[kripp[x] for x in base if x in kripp],
                                         cur_kripp=kripp.get(b))
        tests_by_batch[b], plots_by_batch[b] = tests, plots
        history.append(_history_row(b, in_ref, tests))

    current = batches[-1] if batches else None
    if current is None or current in ref_batches:
        status = det.INSUFFICIENT
        cur_tests = [det.insufficient(t, sig, "no batch after the reference window") for t, sig in ALL_TESTS]
        calibrate(cur_tests, params.alpha)
        plots = None
    else:
        cur_tests, plots = tests_by_batch[current], plots_by_batch[current]
        status = window_status(cur_tests)
    decision = decide(cur_tests, params.decision, current_batch=current)
    prompt_t = next((t for t in cur_tests if t["signal"] == "prompt"), {})
    report = {
        "status": status,
        "current_batch": current,
        "reference_batches": ref_batches,
        "batches": batches,
        "calibration": {"family_alpha": params.alpha,
                        "correction": "Bonferroni over the signals that ran, then over each signal's tests; "
                                      "permutation (min-p) calibration inside the embedding tests",
                        "scope": "the tests run on one window (one batch vs its reference)",
                        "per_test_alpha_current": prompt_t.get("alpha")},
        "tests": cur_tests,
        "clusters": prompt_t.get("details", {}).pop("clusters", None),
        "topics": prompt_t.get("details", {}).pop("topics", None),
        "history": history,
        "decision": decision,
        "embedding_backend": embedder.backend,
        "params": params.model_dump(),
    }
    empty = np.zeros((0, embedder.dim))
    plot_data = {
        "ref_lengths": plots["ref_lengths"] if plots else np.zeros(0),
        "cur_lengths": plots["cur_lengths"] if plots else np.zeros(0),
        "ref_emb": plots["ref_emb"] if plots else empty,
        "cur_emb": plots["cur_emb"] if plots else empty,
        "agreement": agreement,
        "mean_agreement": (cons.groupby("batch")["agreement"].mean().to_dict()
                           if "agreement" in cons.columns else {}),
    }
    return report, plot_data


def _history_row(batch: int, in_ref: bool, tests: list[dict]) -> dict:
    by = {t["test"]: t for t in tests}

    def get(test, key):
        t = by.get(test)
        return None if t is None else t.get(key)

    def detail(test, key):
        t = by.get(test)
        return None if t is None else t["details"].get(key)

    sig_alarm = {s: any(t["alarm"] for t in tests if t["signal"] == s) for s in det.SIGNALS}
    sig_p = {}
    for s in det.SIGNALS:
        ps = [t["p_value"] for t in tests if t["signal"] == s and t["status"] in (det.OK, det.ALARM)]
        sig_p[s] = min(ps) if ps else None
    return {
        "batch": batch, "in_reference": in_ref,
        "n_prompts": get("prompt_embedding", "n_current"), "mmd2": detail("prompt_embedding", "mmd2"),
        "classifier_auc": detail("prompt_embedding", "classifier_auc"),
        "p_value": get("prompt_embedding", "p_value"), "alarm": sig_alarm["prompt"],
        "prompt_status": get("prompt_embedding", "status"),
        "output_p_value": sig_p["output"], "output_alarm": sig_alarm["output"],
        "output_mean_words": detail("output_text_stats", "mean_words_current"),
        "perplexity_p_value": sig_p["perplexity"],
        "label_p_value": sig_p["label"], "label_alarm": sig_alarm["label"],
        "label_mean_agreement": detail("label_agreement_mwu", "mean_agreement_current"),
        "reward_acc_ref_model": detail("reward_mcnemar", "accuracy_reference_model"),
        "reward_acc_cur_model": detail("reward_mcnemar", "accuracy_current_model"),
        "reward_p_value": sig_p["reward"], "reward_alarm": sig_alarm["reward"],
        "concept_longer_chosen_share": detail("length_preference_fisher", "longer_chosen_share_current"),
        "concept_p_value": sig_p["concept"], "concept_alarm": sig_alarm["concept"],
        "n_alarms": sum(bool(t["alarm"]) for t in tests),
        "alpha_per_test": get("prompt_embedding", "alpha"),
    }
