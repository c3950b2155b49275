"""Drift over the labelled stream: every batch against the reference window, the latest is "current".

Reference = the first `drift.reference_batches` batches. Each later batch is compared with the whole
reference; each reference batch with the other reference batches (leave-one-out, a built-in check of
the false-alarm rate) when there are at least two. Per batch four tests run and are calibrated
together (Bonferroni at `drift.alpha`):

- prompt:  MMD permutation test on MiniLM embeddings of the batch's distinct prompts (by prompt_id);
- output:  KS test on response length in words (both responses of each comparison);
- label:   one-sided Mann-Whitney test on per-comparison annotator agreement (+ Krippendorff alpha
           from outputs/aggregate/plots/agreement.csv must be below every reference batch's);
- concept: two-sided Fisher test on the share of labelled pairs where the longer answer won;
- reward:  on the batch's own pairs, a surrogate Bradley-Terry reward cross-fitted on the batch
           (folds by prompt_id) beats one fitted on as many reference pairs (one-sided McNemar).

The history across batches is a monitoring view: each row is calibrated within its own window, there
is no correction across time.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from driftkeel.active.surrogate import pair_features
from driftkeel.config import DriftParams
from driftkeel.drift import detectors as det
from driftkeel.drift.decision import decide
from driftkeel.embeddings import Embedder

N_TESTS = 5  # prompt, output, label, reward, concept: the Bonferroni family of one window
ALL_TESTS = (("prompt_mmd", "prompt"), ("output_length_ks", "output"), ("label_agreement_mwu", "label"),
             ("reward_mcnemar", "reward"), ("length_preference_fisher", "concept"))
REQUIRED = ("comparison_id", "batch", "prompt_id", "prompt", "response_a", "response_b")


def _labelled_pairs(cons: pd.DataFrame, embedder: Embedder) -> dict | None:
    """Non-tie comparisons with pair features, 0/1 labels (1 = a preferred) and confidence weights."""
    if "label" not in cons.columns:
        return None
    lab = cons[cons["label"].isin(["a", "b"])].reset_index(drop=True)
    X = pair_features(embedder, lab["prompt"].astype(str).tolist(), lab["response_a"].astype(str).tolist(),
                      lab["response_b"].astype(str).tolist())
    w = (lab["confidence"].to_numpy(dtype=float) if "confidence" in lab.columns else np.ones(len(lab)))
    return {"batch": lab["batch"].to_numpy(), "groups": lab["prompt_id"].astype(str).to_numpy(), "X": X,
            "y": (lab["label"] == "a").to_numpy().astype(int), "w": np.nan_to_num(w, nan=1.0)}


def analyse_stream(consensus: pd.DataFrame, agreement: pd.DataFrame | None, params: DriftParams,
                   embedder: Embedder, seed: int = 0,
                   pair_embedder: Embedder | None = None) -> tuple[dict, dict]:
    """Return (report, plot_data). The report is JSON-ready; plot_data holds arrays for the HTML.

    `embedder` embeds prompts (prompt drift); `pair_embedder` (default: the same) gives the features of
    the surrogate reward model used by the reward/concept tests."""
    pair_embedder = pair_embedder or embedder
    missing = [c for c in REQUIRED if c not in consensus.columns]
    if missing:
        raise ValueError(f"consensus is missing column(s) {missing}")
    cons = consensus.dropna(subset=["batch"]).copy()
    cons["batch"] = cons["batch"].astype(int)
    batches = sorted(cons["batch"].unique().tolist())
    ref_batches = batches[: params.reference_batches]
    alpha_by_batch = {}
    if agreement is not None and len(agreement) and {"batch", "krippendorff_alpha"} <= set(agreement.columns):
        alpha_by_batch = {int(b): float(a) for b, a in zip(agreement["batch"], agreement["krippendorff_alpha"])
                          if pd.notna(a)}

    # prompts: distinct prompt_id per batch, embedded once
    prompts = cons.drop_duplicates(["batch", "prompt_id"])[["batch", "prompt_id", "prompt"]]
    uniq = prompts.drop_duplicates("prompt_id")
    emb_all = embedder.encode(uniq["prompt"].astype(str).tolist())
    emb_of = dict(zip(uniq["prompt_id"], range(len(uniq))))

    def prompt_emb(bs: list[int]) -> np.ndarray:
        ids = prompts[prompts["batch"].isin(bs)]["prompt_id"].drop_duplicates()
        return emb_all[[emb_of[i] for i in ids]] if len(ids) else np.zeros((0, emb_all.shape[1]))

    def lengths(bs: list[int]) -> np.ndarray:
        sub = cons[cons["batch"].isin(bs)]
        return det.response_lengths(pd.concat([sub["response_a"], sub["response_b"]]).tolist())

    def agreement_of(bs: list[int]) -> np.ndarray:
        if "agreement" not in cons.columns:
            return np.zeros(0)
        return cons[cons["batch"].isin(bs)]["agreement"].to_numpy(dtype=float)

    pairs = _labelled_pairs(cons, pair_embedder)

    def length_gap(bs: list[int]) -> np.ndarray:
        """words(chosen) - words(rejected) of the labelled pairs of batches `bs`."""
        if "label" not in cons.columns:
            return np.zeros(0)
        sub = cons[cons["batch"].isin(bs) & cons["label"].isin(["a", "b"])]
        la, lb = det.response_lengths(sub["response_a"]), det.response_lengths(sub["response_b"])
        return np.where((sub["label"] == "a").to_numpy(), la - lb, lb - la)

    def reward_test(bs: list[int], b: int, s: int) -> dict:
        if pairs is None:
            return det.insufficient("reward_mcnemar", "reward", "consensus has no label column")
        r, c = np.isin(pairs["batch"], bs), pairs["batch"] == b
        return det.reward_drift(pairs["X"][r], pairs["y"][r], pairs["w"][r], pairs["X"][c], pairs["y"][c],
                                pairs["w"][c], pairs["groups"][c], min_window=params.min_window, seed=s)

    n_perm = det.effective_permutations(params.n_permutations, params.alpha, N_TESTS)
    history, tests_by_batch = [], {}
    for b in batches:
        in_ref = b in ref_batches
        base = [x for x in ref_batches if x != b] if in_ref else ref_batches
        s = seed + 1000 * (b + 1)
        if not base:
            tests = [det.result(t, sig, status=det.REFERENCE, reason="reference batch (no other to compare)")
                     for t, sig in ALL_TESTS]
        else:
            tests = [
                det.prompt_drift(prompt_emb(base), prompt_emb([b]), min_window=params.min_window,
                                 max_window=params.max_window, n_permutations=n_perm, seed=s),
                det.output_drift(lengths(base), lengths([b]), min_window=params.min_window),
                det.label_drift(agreement_of(base), agreement_of([b]), min_window=params.min_window,
                                ref_alpha=[alpha_by_batch[x] for x in base if x in alpha_by_batch],
                                cur_alpha=alpha_by_batch.get(b)),
                reward_test(base, b, s),
                det.length_preference_drift(length_gap(base), length_gap([b]), min_window=params.min_window),
            ]
        det.calibrate(tests, params.alpha)
        tests_by_batch[b] = tests
        history.append(_history_row(b, in_ref, tests))

    current = batches[-1] if batches else None
    if current is None or current in ref_batches:
        status = det.INSUFFICIENT
        cur_tests = [det.insufficient(t, sig, "no batch after the reference window") for t, sig in ALL_TESTS]
        det.calibrate(cur_tests, params.alpha)
    else:
        cur_tests = tests_by_batch[current]
        ran = [t for t in cur_tests if t["status"] in (det.OK, det.ALARM)]
        status = det.INSUFFICIENT if not ran else (det.ALARM if any(t["alarm"] for t in ran) else det.OK)
    decision = decide(cur_tests, params.decision, current_batch=current)
    report = {
        "status": status,
        "current_batch": current,
        "reference_batches": ref_batches,
        "batches": batches,
        "calibration": {"family_alpha": params.alpha, "correction": "bonferroni",
                        "scope": "the tests run on one window (one batch vs its reference)",
                        "per_test_alpha_current": next((t["alpha"] for t in cur_tests if t["alpha"]), None)},
        "tests": cur_tests,
        "history": history,
        "decision": decision,
        "embedding_backend": embedder.backend,
        "params": params.model_dump(),
    }
    plot_data = {
        "ref_lengths": lengths(ref_batches),
        "cur_lengths": lengths([current]) if current is not None else np.zeros(0),
        "ref_emb": prompt_emb(ref_batches),
        "cur_emb": prompt_emb([current]) if current is not None else np.zeros((0, emb_all.shape[1])),
        "agreement": agreement,
        "mean_agreement": (cons.groupby("batch")["agreement"].mean().to_dict()
                           if "agreement" in cons.columns else {}),
    }
    return report, plot_data


def _history_row(batch: int, in_ref: bool, tests: list[dict]) -> dict:
    by = {t["signal"]: t for t in tests}
    p, o, lab, r, c = by["prompt"], by["output"], by["label"], by["reward"], by["concept"]
    return {
        "batch": batch, "in_reference": in_ref,
        "n_prompts": p["n_current"], "mmd2": p["statistic"], "p_value": p["p_value"], "alarm": p["alarm"],
        "prompt_status": p["status"],
        "output_ks": o["statistic"], "output_p_value": o["p_value"], "output_alarm": o["alarm"],
        "output_mean_words": o["details"].get("mean_words_current"),
        "label_p_value": lab["p_value"], "label_alarm": lab["alarm"],
        "label_mean_agreement": lab["details"].get("mean_agreement_current"),
        "reward_acc_ref_model": r["details"].get("accuracy_reference_model"),
        "reward_acc_cur_model": r["details"].get("accuracy_current_model"), "reward_p_value": r["p_value"],
        "reward_alarm": r["alarm"],
        "concept_longer_chosen_share": c["details"].get("longer_chosen_share_current"),
        "concept_p_value": c["p_value"], "concept_alarm": c["alarm"],
        "n_alarms": sum(t["alarm"] for t in tests),
        "alpha_per_test": next((t["alpha"] for t in tests if t["alpha"]), None),
    }
