"""Metric tables of one evaluation (pure: scores in, flat metrics and per-slice tables out).

Reward model on the fixed eval pairs: accuracy (ties half), precision / recall / F1 of "response A is
preferred" under a fixed hash orientation, calibration error of the temperature-scaled probabilities
(and unscaled), MRR where several responses per prompt are ranked, and the same per slice: the
`slice` column (pre/post drift), `topic`, and `batch` / `policy_version` when the file has them.
Policies on the fixed eval prompts: mean reward, win rate of the challenger over the baseline (ties
half), per slice; under the simulator's true utility too when it is available (ORACLE).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from driftkeel.evaluation.metrics import (
    classification_metrics,
    expected_calibration_error,
    mean_reciprocal_rank,
    pair_outcomes,
    preference_probability,
    slice_gap,
    win_rate,
)

SLICE_COLUMNS = ("slice", "topic", "batch", "policy_version")


def _slices(df: pd.DataFrame) -> list[tuple[str, str, np.ndarray]]:
    """(dimension, value, mask) for every slice column present; `slice` values keep their bare name."""
    out = []
    for col in SLICE_COLUMNS:
        if col not in df.columns:
            continue
        labels = df[col].astype(str).to_numpy()
        for value in sorted(set(labels.tolist())):
            out.append((col, value if col == "slice" else f"{col}={value}", labels == value))
    return out


def pair_metrics(chosen, rejected, pair_ids, temperature: float, n_bins: int) -> dict:
    """accuracy, precision, recall, f1, ece (temperature-scaled), ece_raw (T = 1), n."""
    c, r = np.asarray(chosen, dtype=float), np.asarray(rejected, dtype=float)
    if c.size == 0:
        return {"accuracy": float("nan"), "n": 0}
    out = {"accuracy": float(pair_outcomes(c, r).mean()), "n": int(c.size)}
    out.update(classification_metrics(c, r, pair_ids))
    out["ece"] = expected_calibration_error(preference_probability(c - r, temperature), n_bins)
    out["ece_raw"] = expected_calibration_error(preference_probability(c - r), n_bins)
    return out


def ranking_groups(pairs: pd.DataFrame, chosen, rejected, truth: dict | None = None) -> list:
    """(scores, true order) per prompt with >= 3 distinct responses among the pairs. The true order is
    the oracle utility when `truth` ({(prompt, response): utility}) is given, else wins minus losses."""
    by_prompt: dict[str, dict] = defaultdict(dict)
    record: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    for row, sc, sr in zip(pairs.itertuples(index=False), chosen, rejected):
        by_prompt[row.prompt][row.chosen] = float(sc)
        by_prompt[row.prompt][row.rejected] = float(sr)
        record[row.prompt][row.chosen] += 1
        record[row.prompt][row.rejected] -= 1
    groups = []
    for prompt, scores in by_prompt.items():
        if len(scores) < 3:
            continue
        responses = list(scores)
        order = ([truth[(prompt, r)] for r in responses] if truth is not None
                 else [record[prompt][r] for r in responses])
        groups.append(([scores[r] for r in responses], order))
    return groups


def reward_report(chosen, rejected, pairs: pd.DataFrame, *, temperature: float, n_bins: int,
                  min_slice_pairs: int, prefix: str = "", truth: dict | None = None):
    """Flat metrics `<prefix>reward_*` (per `slice` value too), the per-slice table and details."""
    ids = pairs["pair_id"].astype(str).tolist() if "pair_id" in pairs.columns else [str(i) for i in range(len(pairs))]
    ids = np.asarray(ids, dtype=object)
    c, r = np.asarray(chosen, dtype=float), np.asarray(rejected, dtype=float)
    overall = pair_metrics(c, r, ids, temperature, n_bins)
    m = {f"{prefix}reward_accuracy": overall["accuracy"]}
    for key in ("precision", "recall", "f1", "ece", "ece_raw"):
        m[f"{prefix}reward_{key}"] = overall.get(key, float("nan"))
    m[f"{prefix}reward_temperature"] = float(temperature)
    rows = [{"slice": "all", **overall}]
    per_topic = {}
    for col, name, mask in _slices(pairs):
        row = pair_metrics(c[mask], r[mask], ids[mask], temperature, n_bins)
        rows.append({"slice": name, **row})
        if col == "slice":
            m[f"{prefix}reward_accuracy_{name}"] = row["accuracy"]
        if col == "topic":
            per_topic[name.split("=", 1)[1]] = row
    gap = slice_gap(per_topic, "accuracy", min_slice_pairs)
    m[f"{prefix}reward_accuracy_topic_gap"] = gap["gap"]
    groups = ranking_groups(pairs, c, r, truth)
    m[f"{prefix}reward_mrr"] = mean_reciprocal_rank(groups)
    m[f"{prefix}n_mrr_groups"] = len(groups)
    table = pd.DataFrame(rows, columns=["slice", "accuracy", "n", "precision", "recall", "f1", "ece", "ece_raw"])
    return m, table, {"worst_topic": gap["worst"], "best_topic": gap["best"], "n_topics_in_gap": gap["n_slices"]}


def policy_report(challenger, baseline, prompts: pd.DataFrame, *, min_slice: int, key: str = "policy",
                  what: str = "reward"):
    """`<key>_win_rate` (+ per `slice`, topic gap) and the per-slice table of challenger vs baseline
    values (`what` = reward or true_utility)."""
    ch, bl = np.asarray(challenger, dtype=float), np.asarray(baseline, dtype=float)
    m = {f"{key}_win_rate": win_rate(ch, bl)}
    rows = [{"slice": "all", "n": int(ch.size), f"{key}_win_rate": m[f"{key}_win_rate"],
             f"challenger_{what}": float(ch.mean()) if ch.size else float("nan"),
             f"baseline_{what}": float(bl.mean()) if bl.size else float("nan")}]
    per_topic = {}
    for col, name, mask in _slices(prompts):
        wr = win_rate(ch[mask], bl[mask])
        rows.append({"slice": name, "n": int(mask.sum()), f"{key}_win_rate": wr,
                     f"challenger_{what}": float(ch[mask].mean()), f"baseline_{what}": float(bl[mask].mean())})
        if col == "slice":
            m[f"{key}_win_rate_{name}"] = wr
        if col == "topic":
            per_topic[name] = {"win_rate": wr, "n": int(mask.sum())}
    m[f"{key}_win_rate_topic_gap"] = slice_gap(per_topic, "win_rate", min_slice)["gap"]
    return m, pd.DataFrame(rows)
