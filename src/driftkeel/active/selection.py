"""Budgeted selection of unlabeled pool pairs for annotation (the labelling queue).

1. Clean the pool: rows missing a required field or with identical responses are skipped (counted by
   reason); repeated pair_ids keep the first row. Pairs that already have a consensus label (imported
   with `driftkeel labels import`, comparison_id = pair_id) are skipped and counted as
   `already_labelled`: they are not queued again (nor labelled synthetically by the mix stage).
2. Fit the surrogate Bradley-Terry reward (active/surrogate.py) on the aggregated consensus: non-tie
   labels, weighted by confidence. Its held-out accuracy (20% of prompts, grouped by prompt_id) is
   reported, then it is refitted on all labels.
   With `calibrate`, the ensemble's temperature is fitted on that held-out part (log loss), so its
   probabilities and its disagreement are calibrated; ECE before/after is reported, and how well the
   disagreement (BALD) ranks the held-out errors (AUROC).
3. Score every pool pair with the acquisition strategy (active/acquisition.py) on the members'
   P(a preferred), times the drift prior (active/drift_prior.py: pairs in new or grown clusters of
   the drift report), and take a batch of k (active/batch.py: diversity, no near-duplicates).
   k larger than the pool takes the whole pool (and says so). Without labels to fit the surrogate,
   the strategy falls back to `random` (and says so). Every skipped pool row but the already labelled
   is quarantined with its reason and its line in the pool file (`Selection.quarantine`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from driftkeel.active.acquisition import bald
from driftkeel.active.acquisition import scores as acquisition_scores
from driftkeel.active.batch import select_batch
from driftkeel.active.drift_prior import DriftPrior, drift_prior
from driftkeel.active.surrogate import (BradleyTerrySurrogate, expected_calibration_error, fit_temperature,
                                        pair_features)
from driftkeel.config import SelectParams
from driftkeel.embeddings import Embedder

_SURROGATE = re.compile("[\ud800-\udfff]")

REQUIRED = ("pair_id", "prompt", "response_a", "response_b")
OPTIONAL = ("prompt_id", "batch", "policy_version")
HOLDOUT = 0.2


@dataclass
class Selection:
    queue: list[dict]
    scores: pd.DataFrame
    metrics: dict
    budget_curve: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    quarantine: list[dict] = field(default_factory=list)


def read_pool(path, with_lines: bool = False, bad_lines: list | None = None) -> tuple:
    """Lenient JSONL reader for the pool: (parsed lines, number of non-blank lines that are not valid
    UTF-8 JSON), and with `with_lines` also the file line number of each parsed line (for the
    quarantine). `bad_lines`: a list that gets {"line", "reason", "row"} for each unreadable line
    (reason ``invalid_utf8`` / ``invalid_json``; row = its first 500 characters)."""
    from driftkeel.validation.reader import read_json_lines

    values, bad = read_json_lines(path, bad_lines)
    rows, lines, n_bad = [v for _, v in values], [n for n, _ in values], sum(bad.values())
    return (rows, n_bad, lines) if with_lines else (rows, n_bad)


def labelled_pair_ids(consensus: pd.DataFrame | None) -> set[str]:
    """Pool pairs that already have labels: `driftkeel labels import` writes a pool pair's judgements with
    comparison_id = its pair_id, so after the aggregate stage they are consensus rows."""
    if consensus is None or not len(consensus) or "comparison_id" not in consensus.columns:
        return set()
    return set(consensus["comparison_id"].astype(str))


def _is_int(v) -> bool:
    """An integer batch number: an int (not a bool), an integral float, or a string of digits."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    if isinstance(v, float):
        return v.is_integer()
    return isinstance(v, str) and v.strip().lstrip("-").isdigit()


def clean_pool(rows: list, quarantine: list | None = None, lines: list[int] | None = None,
               labelled: set[str] | None = None) -> tuple[list[dict], dict]:
    """Valid pool rows and the count of skipped rows per reason; skipped rows are appended to
    `quarantine` as {"line", "reason", "row"} when a list is given (`lines`: the file line number of
    each row, from read_pool(with_lines=True); else its position). Pairs in `labelled` (see
    labelled_pair_ids) are skipped and counted as `already_labelled`, not quarantined: they are fine,
    only no longer worth a label."""
    counts = {"not_an_object": 0, "missing_fields": 0, "field_not_text": 0, "batch_not_an_integer": 0,
              "invalid_unicode": 0, "identical_responses": 0, "duplicate_pair_id": 0,
              "missing_optional_fields": 0, "already_labelled": 0}
    seen, out = set(), []

    def skip(i, reason, row):
        counts[reason] += 1
        if quarantine is not None:
            quarantine.append({"line": lines[i] if lines is not None else i + 1, "reason": reason, "row": row})

    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            skip(i, "not_an_object", r)
            continue
        missing = [k for k in REQUIRED if r.get(k) is None or (isinstance(r.get(k), str) and not r.get(k).strip())]
        if missing:
            skip(i, "missing_fields", {**r, "_missing": missing})
            continue
        not_text = [k for k in REQUIRED if not isinstance(r.get(k), str)]
        if not_text:
            skip(i, "field_not_text", {**r, "_not_text": not_text})
            continue
        if r.get("batch") is not None and not _is_int(r["batch"]):
            skip(i, "batch_not_an_integer", r)
            continue
        if any(isinstance(v, str) and _SURROGATE.search(v) for v in r.values()):
            # a lone surrogate ("\\ud800" in the JSON) is no text: it cannot be hashed, embedded or written
            skip(i, "invalid_unicode", {k: (v.encode("utf-8", "replace").decode("utf-8") if isinstance(v, str) else v)
                                        for k, v in r.items()})
            continue
        if r["response_a"].strip() == r["response_b"].strip():
            skip(i, "identical_responses", r)
            continue
        if r["pair_id"] in seen:
            skip(i, "duplicate_pair_id", r)
            continue
        seen.add(r["pair_id"])
        if labelled and str(r["pair_id"]) in labelled:
            counts["already_labelled"] += 1
            continue
        if any(r.get(k) is None for k in OPTIONAL):
            counts["missing_optional_fields"] += 1
        out.append(r)
    return out, counts


def _labels(consensus: pd.DataFrame | None) -> pd.DataFrame:
    if consensus is None or not len(consensus) or "label" not in consensus.columns:
        return pd.DataFrame(columns=["prompt_id", "prompt", "response_a", "response_b", "label", "confidence"])
    lab = consensus[consensus["label"].isin(["a", "b"])]
    lab = lab.dropna(subset=["prompt", "response_a", "response_b"]).reset_index(drop=True)
    return lab


def _auroc(score: np.ndarray, positive: np.ndarray) -> float | None:
    pos, neg = score[positive], score[~positive]
    if not len(pos) or not len(neg):
        return None
    from scipy.stats import rankdata

    r = rankdata(np.concatenate([pos, neg]))
    return float((r[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


BUDGET_FRACTIONS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)


def budget_curve(X: np.ndarray, y: np.ndarray, w: np.ndarray, held_out: np.ndarray, new: np.ndarray | None,
                 seed: int, fractions=BUDGET_FRACTIONS) -> list[dict]:
    """The label-budget curve: held-out accuracy of a one-member surrogate trained on the first n of the
    training labels in a seeded random order, for growing n (``labels``); ``heldout_accuracy_new`` on
    the held-out pairs of the newest batch. A curve still rising at its end says more labels of this
    kind pay; a flat one says they do not (buy different ones: the drift prior, the acquisition)."""
    train = np.random.default_rng(seed).permutation(np.flatnonzero(~held_out))
    rows: dict[int, dict] = {}
    for frac in fractions:
        n = min(len(train), max(10, int(round(frac * len(train)))))
        idx = train[:n]
        if n in rows or len(set(y[idx].tolist())) < 2:
            continue
        pred = (BradleyTerrySurrogate(n_members=1, seed=seed).fit(X[idx], y[idx], w[idx])
                .predict_proba(X[held_out]) >= 0.5).astype(int)
        row = {"labels": int(n), "heldout_accuracy": float(np.mean(pred == y[held_out])),
               "n_heldout": int(held_out.sum()), "heldout_accuracy_new": None, "n_heldout_new": 0}
        if new is not None and (held_out & new).any():
            on_new = new[held_out]
            row["heldout_accuracy_new"] = float(np.mean(pred[on_new] == y[held_out][on_new]))
            row["n_heldout_new"] = int(on_new.sum())
        rows[n] = row
    return list(rows.values())


def fit_surrogate(consensus: pd.DataFrame | None, embedder: Embedder, n_members: int, seed: int,
                  min_labels: int = 10, calibrate: bool = True) -> tuple[BradleyTerrySurrogate | None, dict]:
    """Fit on consensus labels; returns (model or None, info with held-out accuracy and calibration)."""
    lab = _labels(consensus)
    info = {"n_labels": int(len(lab)), "heldout_accuracy": None, "n_heldout": 0}
    if len(lab) < min_labels or lab["label"].nunique() < 2:
        info["problem"] = f"too few non-tie consensus labels to fit the surrogate ({len(lab)})"
        return None, info
    X = pair_features(embedder, lab["prompt"].astype(str).tolist(), lab["response_a"].astype(str).tolist(),
                      lab["response_b"].astype(str).tolist())
    y = (lab["label"] == "a").to_numpy().astype(int)
    w = (lab["confidence"].fillna(1.0).to_numpy(dtype=float) if "confidence" in lab.columns
         else np.ones(len(lab)))
    groups = (lab["prompt_id"] if "prompt_id" in lab.columns else lab["prompt"]).astype(str)
    uniq = np.array(sorted(groups.unique()))
    held = set(np.random.default_rng(seed).permutation(uniq)[: int(round(HOLDOUT * len(uniq)))])
    te = groups.isin(held).to_numpy()
    temperature = 1.0
    if te.any() and (~te).any() and len(set(y[~te].tolist())) == 2:
        m = BradleyTerrySurrogate(n_members=n_members, seed=seed).fit(X[~te], y[~te], w[~te])
        logits = m.member_logits(X[te])
        p_raw = m.predict_proba(X[te])
        info["heldout_accuracy"] = float(np.mean((p_raw >= 0.5).astype(int) == y[te]))
        info["n_heldout"] = int(te.sum())
        info["heldout_ece_raw"] = expected_calibration_error(p_raw, y[te])
        if calibrate:
            temperature = fit_temperature(logits, y[te], w[te])
            m.temperature = temperature
            info["heldout_ece_calibrated"] = expected_calibration_error(m.predict_proba(X[te]), y[te])
        wrong = (m.predict_proba(X[te]) >= 0.5).astype(int) != y[te]
        info["disagreement_error_auroc"] = _auroc(bald(m.member_proba(X[te])), wrong) if n_members > 1 else None
        new = (lab["batch"] == lab["batch"].max()).to_numpy() if "batch" in lab.columns else None
        info["budget_curve"] = budget_curve(X, y, w, te, new, seed)
    info["temperature"] = temperature
    model = BradleyTerrySurrogate(n_members=n_members, seed=seed).fit(X, y, w)
    model.temperature = temperature
    return model, info


def _reference_prompts(consensus: pd.DataFrame | None, report: dict | None) -> list[str]:
    if consensus is None or "batch" not in getattr(consensus, "columns", []) or not len(consensus):
        return []
    ref = (report or {}).get("reference_batches")
    batches = sorted(consensus["batch"].dropna().unique().tolist())
    ref = ref if isinstance(ref, list) and ref else batches[:2]
    return consensus[consensus["batch"].isin(ref)]["prompt"].dropna().astype(str).tolist()


def choose(acq: np.ndarray, X: np.ndarray | None, prior: np.ndarray, k: int, diversity: str,
           params: SelectParams, seed: int):
    """score = acquisition x drift prior, its seeded order, and the batch of k (active/batch.py).
    The stage and the benchmark both call this, so the benchmark measures what the stage does."""
    prior = np.asarray(prior, dtype=float)
    score = np.asarray(acq, dtype=float) * prior
    # exact ties in the score (e.g. every BALD score 0 with one member) go to the drift prior's
    # boosted pairs first, then a seeded order (rank's, so untied scores order exactly as before)
    order = np.lexsort((np.random.default_rng(seed).random(len(score)), -prior, -score))
    batch = select_batch(score, X, min(k, len(score)), diversity=diversity, min_distance=params.min_distance,
                         candidate_factor=params.candidate_factor, seed=seed, order=order)
    return score, order, batch


def select(pool_rows: list, consensus: pd.DataFrame | None, params: SelectParams, embedder: Embedder,
           seed: int = 0, drift_report: dict | None = None, features: np.ndarray | None = None,
           lines: list[int] | None = None) -> Selection:
    """The labelling queue (see the module docstring). `features` (pair features of the usable pool
    rows, in order) skips embedding, e.g. from a cache. `lines`: file line numbers of `pool_rows` (for
    the quarantine). Pool pairs that already have a consensus label are not selected again."""
    quarantine: list[dict] = []
    pool, skipped = clean_pool(pool_rows, quarantine, lines=lines, labelled=labelled_pair_ids(consensus))
    notes: list[str] = []
    for reason, n in skipped.items():
        if n:
            notes.append(f"{n} pool row(s): {reason.replace('_', ' ')}"
                         + (" (kept)" if reason == "missing_optional_fields" else
                            " (skipped: labelled before, by `driftkeel labels import`)" if reason == "already_labelled"
                            else " (quarantined)"))
    strategy = params.strategy
    model, info = (fit_surrogate(consensus, embedder, params.n_members, seed, calibrate=params.calibrate)
                   if pool else (None, {"n_labels": 0}))
    if pool and model is None:
        notes.append(f"{info.get('problem', 'no surrogate')}: falling back to random selection")
        strategy = "random"
    X = features
    if pool and X is None:
        X = pair_features(embedder, [r["prompt"] for r in pool], [r["response_a"] for r in pool],
                          [r["response_b"] for r in pool])
    if pool and model is not None:
        members = model.member_proba(X)
    else:
        members = np.full((1, len(pool)), 0.5)
    p_a, spread = members.mean(axis=0), members.std(axis=0)
    if strategy in ("bald", "variance") and members.shape[0] < 2 and pool:
        notes.append(f"{strategy} needs select.n_members >= 2 (ensemble disagreement): with one member every "
                     "score is 0 and the order comes from the drift prior and seeded ties")
    acq = acquisition_scores(members, strategy, seed)
    why_off = ("select.drift_prior: false" if not params.drift_prior else "the pool is empty" if not pool
               else f"not applied to {'the fallback to ' if params.strategy != 'random' else ''}random selection")
    prior = DriftPrior(np.ones(len(pool)), [""] * len(pool), f"drift prior off ({why_off})")
    if params.drift_prior and pool and strategy != "random":
        prior = drift_prior([r["prompt"] for r in pool], _reference_prompts(consensus, drift_report), drift_report,
                            boost=params.drift_boost, alpha=params.drift_alpha, seed=seed)
    if prior.note:
        notes.append(f"drift prior: {prior.note}")
    score, order, batch = choose(acq, X if len(pool) else None, prior.weights, params.k,
                                 params.diversity if strategy != "random" else "none", params, seed)
    k = min(params.k, len(pool))
    if params.k > len(pool):
        notes.append(f"k={params.k} exceeds the {len(pool)} usable pool pairs: selecting all of them")
    if not pool:
        notes.append("the pool is empty (or no row is usable): the queue is empty")
    diversity = params.diversity if strategy != "random" else "none"
    chosen = batch.chosen
    if len(chosen) < k:
        notes.append(f"only {len(chosen)} of {k} pairs selected: the rest are near-duplicates "
                     f"(closer than select.min_distance={params.min_distance}) of selected pairs")
    if batch.n_near_duplicates:
        notes.append(f"{batch.n_near_duplicates} candidate pair(s) skipped as near-duplicates of a selected pair")
    rank_of = np.empty(len(pool), dtype=int)
    rank_of[order] = np.arange(len(pool))
    queue = []
    for r, i in enumerate(chosen):
        row = pool[i]
        if strategy == "random":
            reason = f"random: seeded draw {r + 1} of {len(pool)} (seed {seed})"
        else:
            # margin and least confidence share one score, 1 - |2p - 1| (higher = closer to a coin flip)
            what = (f"{strategy}: 1-|2p-1|={acq[i]:.3f}, BT margin |2p-1|={abs(2 * p_a[i] - 1):.3f}"
                    if strategy in ("margin", "least_confidence") else f"{strategy}={acq[i]:.3f}")
            reason = (f"{what} (P(a preferred)={p_a[i]:.3f}, members' std {spread[i]:.3f}, "
                      f"{members.shape[0]} member(s))")
            if prior.weights[i] > 1:
                reason += f"; drift prior x{prior.weights[i]:g} ({prior.region[i]} cluster)"
            reason += f"; score rank {rank_of[i] + 1} of {len(pool)}"
            if diversity != "none":
                reason += f"; {diversity} diversity pick {r + 1}"
        queue.append({"pair_id": row["pair_id"], "prompt_id": row.get("prompt_id"), "prompt": row["prompt"],
                      "response_a": row["response_a"], "response_b": row["response_b"],
                      "batch": row.get("batch"), "policy_version": row.get("policy_version"),
                      "p_a": float(p_a[i]), "uncertainty": float(acq[i]), "acquisition": strategy,
                      "drift_prior": float(prior.weights[i]), "drift_region": prior.region[i] or None,
                      "member_std": float(spread[i]), "rank": r + 1, "reason": reason})
    selected = np.zeros(len(pool), dtype=bool)
    selected[chosen] = True
    scores_df = pd.DataFrame({"rank": rank_of + 1, "pair_id": [r["pair_id"] for r in pool], "p_a": p_a,
                              "uncertainty": acq, "drift_prior": prior.weights, "score": score,
                              "selected": selected}).sort_values("rank")
    sel_u = acq[chosen] if len(chosen) else np.zeros(0)
    metrics = {
        "n_pool_rows": len(pool_rows), "n_pool_usable": len(pool),
        **{f"n_skipped_{k_}": v for k_, v in skipped.items()},
        "n_quarantined": len(quarantine),
        "k_requested": params.k, "k_selected": int(len(chosen)), "k_capped": int(params.k > len(pool)),
        "strategy_random_fallback": int(strategy != params.strategy),
        "n_members": int(members.shape[0]),
        "surrogate_n_labels": info.get("n_labels", 0), "surrogate_heldout_accuracy": info.get("heldout_accuracy"),
        "surrogate_temperature": info.get("temperature"),
        "surrogate_heldout_ece_raw": info.get("heldout_ece_raw"),
        "surrogate_heldout_ece_calibrated": info.get("heldout_ece_calibrated"),
        "disagreement_error_auroc": info.get("disagreement_error_auroc"),
        "mean_uncertainty_selected": float(sel_u.mean()) if len(chosen) else None,
        "mean_uncertainty_pool": float(acq.mean()) if len(pool) else None,
        "mean_abs_margin_selected": float(np.mean(np.abs(p_a[chosen] - 0.5))) if len(chosen) else None,
        "n_pool_drift_boosted": prior.n_boosted,
        "n_selected_drift_boosted": int((prior.weights[chosen] > 1).sum()) if len(chosen) else 0,
        "n_near_duplicates_skipped": int(batch.n_near_duplicates),
    }
    return Selection(queue=queue, scores=scores_df, metrics=metrics, notes=notes, quarantine=quarantine,
                     budget_curve=info.get("budget_curve", []))
