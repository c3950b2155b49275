"""Re-annotated pairs: temporal consistency of annotators and preference flips of the consensus.

The same pair may come back later as a *new* comparison (a new ``comparison_id``), possibly with the
two responses swapped. :func:`pair_keys` identifies it by its content: a hash of the prompt and the
two responses in a canonical (sorted) order, plus whether this comparison shows them swapped. Labels
are compared in the canonical orientation (``a`` of a swapped comparison is canonical ``b``).

- Temporal consistency (per annotator): over consecutive judgements, in time order, of the same pair
  under different comparisons, the share with the same canonical label (``n_repeats`` = how many such
  consecutive re-judgements).
- Preference flips: consecutive comparisons of the same pair, in time order, whose consensus reversed
  (``a`` <-> ``b`` in canonical orientation; a change to or from ``tie`` is ``changed`` but not a flip).
  The rate per batch is over the later comparisons (re-annotations) of that batch.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from driftkeel.data.schemas import sort_in_time

FLIP_COLUMNS = ["pair_key", "earlier_comparison_id", "later_comparison_id", "earlier_batch", "later_batch",
                "earlier_label", "later_label", "earlier_confidence", "later_confidence", "flipped", "changed"]
_SWAP = {"a": "b", "b": "a", "tie": "tie"}


def pair_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """Per row: ``pair_key`` (content hash, order-free) and ``swapped`` (responses in non-canonical order).

    The key is pandas' stable 64-bit hash (``pd.util.hash_array``, fixed default key) of
    ``prompt NUL low NUL high`` in hex: the same content gives the same key on every run and machine.
    """
    ra, rb = frame["response_a"].astype(str), frame["response_b"].astype(str)
    swapped = (ra > rb).to_numpy()
    lo, hi = ra.where(~swapped, rb), rb.where(~swapped, ra)
    text = (frame["prompt"].astype(str) + "\x00" + lo + "\x00" + hi).to_numpy(dtype=object)
    keys = np.char.mod("%016x", pd.util.hash_array(text)) if len(text) else np.array([], dtype=str)
    return pd.DataFrame({"pair_key": keys, "swapped": swapped}, index=frame.index)


def canonical(labels: pd.Series, swapped) -> pd.Series:
    """Labels in the canonical orientation of their pair."""
    return labels.where(~np.asarray(swapped, dtype=bool), labels.map(_SWAP))


def pair_groups(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(group code, swapped) per row: rows with the same pair content share a code (fast, not stable)."""
    ra, rb = frame["response_a"].astype(str), frame["response_b"].astype(str)
    swapped = (ra > rb).to_numpy()
    lo, hi = ra.where(~swapped, rb), rb.where(~swapped, ra)
    codes, _ = pd.factorize(frame["prompt"].astype(str) + "\x00" + lo + "\x00" + hi)
    return codes, swapped


def _repeated(codes: np.ndarray) -> np.ndarray:
    return np.bincount(codes)[codes] >= 2 if len(codes) else np.zeros(0, dtype=bool)


def temporal_consistency(judgements: pd.DataFrame, consensus: pd.DataFrame) -> pd.DataFrame:
    """Per annotator with repeats: ``n_repeats`` and ``temporal_consistency``.

    `consensus` supplies each comparison's content (prompt, response_a, response_b).
    """
    groups, swapped = pair_groups(consensus)
    pos = pd.Index(consensus["comparison_id"]).get_indexer(judgements["comparison_id"])
    ann, _ = pd.factorize(judgements["annotator_id"])
    key = ann.astype(np.int64) * (int(groups.max(initial=0)) + 1) + groups[pos]
    rep = _repeated(pd.factorize(key)[0])
    empty = pd.DataFrame({"n_repeats": pd.Series(dtype="int64"), "temporal_consistency": pd.Series(dtype=float)})
    if not rep.any():
        return empty
    sub = judgements.loc[rep, ["annotator_id", "comparison_id", "timestamp", "label"]].copy()
    sub["key"] = key[rep]
    sub["label"] = canonical(sub["label"], swapped[pos[rep]])
    sub = sort_in_time(sub, ["key", "timestamp", "comparison_id"])
    same = sub["key"].eq(sub["key"].shift()) & sub["comparison_id"].ne(sub["comparison_id"].shift())
    if not same.any():
        return empty
    consistent = (sub["label"] == sub["label"].shift())[same]
    g = consistent.groupby(sub.loc[same, "annotator_id"])
    return pd.DataFrame({"n_repeats": g.size().astype("int64"), "temporal_consistency": g.mean().astype(float)})


def preference_flips(consensus: pd.DataFrame) -> pd.DataFrame:
    """FLIP_COLUMNS: one row per re-annotation (a comparison of a pair seen before), in time order."""
    groups, swapped = pair_groups(consensus)
    rep = _repeated(groups)
    if not rep.any():
        return pd.DataFrame({k: pd.Series(dtype=t) for k, t in zip(
            FLIP_COLUMNS, ["str", "str", "str", "int64", "int64", "str", "str", "float64", "float64", "bool", "bool"])})
    c = consensus.loc[rep].copy()
    c["group"] = groups[rep]
    c["pair_key"] = pair_keys(c)["pair_key"].to_numpy()
    c["canon"] = canonical(c["label"], swapped[rep]).to_numpy()
    c = sort_in_time(c, ["group", "timestamp", "comparison_id"])
    prev = c.shift()
    later = c["group"].eq(prev["group"])
    e, l = prev[later], c[later]
    out = pd.DataFrame({
        "pair_key": l["pair_key"].to_numpy(), "earlier_comparison_id": e["comparison_id"].to_numpy(),
        "later_comparison_id": l["comparison_id"].to_numpy(), "earlier_batch": e["batch"].astype("int64").to_numpy(),
        "later_batch": l["batch"].astype("int64").to_numpy(), "earlier_label": e["canon"].to_numpy(),
        "later_label": l["canon"].to_numpy(), "earlier_confidence": e["confidence"].astype(float).to_numpy(),
        "later_confidence": l["confidence"].astype(float).to_numpy()})
    pair = out["earlier_label"] + out["later_label"]
    out["flipped"] = pair.isin(["ab", "ba"])
    out["changed"] = out["earlier_label"] != out["later_label"]
    return out[FLIP_COLUMNS].sort_values(["later_batch", "later_comparison_id"]).reset_index(drop=True)


def flip_rates(flips: pd.DataFrame, batches) -> pd.DataFrame:
    """Per batch: ``n_reannotated``, ``n_flips``, ``flip_rate`` (NaN when nothing was re-annotated)."""
    g = flips.groupby("later_batch")
    out = pd.DataFrame({"n_reannotated": g.size(), "n_flips": g["flipped"].sum()}).reindex(list(batches), fill_value=0)
    out = out.fillna(0).astype("int64")
    out["flip_rate"] = out["n_flips"] / out["n_reannotated"].replace(0, np.nan)
    out.index.name = "batch"
    return out
