"""Training mix with replay: new comparisons + a seeded replay sample of older ones, split by prompt.

- Ties and comparisons with identical responses are dropped (counted); chosen/rejected follow the
  consensus label; weight = consensus confidence.
- "new" = comparisons of the last `mix.new_batches` batches; "replay" = a seeded sample of older
  comparisons of size round(n_new * f / (1 - f)), f = `mix.replay_fraction`, so replay is f of the mix
  (capped by the older comparisons available; the shortfall is reported).
- `mix.eval_fraction` of the mix is held out by prompt_id (a group split: a prompt never appears in
  both train and eval).
- Train rows are ordered easy-to-hard: descending confidence (the curriculum), ties broken by a seeded
  random order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from driftkeel.config import MixParams

PAIR_FIELDS = ["pair_id", "prompt", "chosen", "rejected", "weight", "batch", "source"]


@dataclass
class Mix:
    train: pd.DataFrame
    eval: pd.DataFrame
    prompts: pd.DataFrame
    composition: pd.DataFrame
    metrics: dict
    notes: list[str] = field(default_factory=list)


def to_pairs(consensus: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Consensus -> preference pairs (pair_id, prompt_id, prompt, chosen, rejected, weight, batch)."""
    need = ["comparison_id", "batch", "prompt_id", "prompt", "response_a", "response_b", "label"]
    missing = [c for c in need if c not in consensus.columns]
    if missing:
        raise ValueError(f"consensus is missing column(s) {missing}")
    df = consensus.copy()
    counts = {"n_comparisons": int(len(df))}
    bad = df[need].isna().any(axis=1)
    counts["n_dropped_missing"] = int(bad.sum())
    df = df[~bad]
    tie = ~df["label"].isin(["a", "b"])
    counts["n_dropped_ties"] = int(tie.sum())
    df = df[~tie]
    same = df["response_a"].astype(str).str.strip() == df["response_b"].astype(str).str.strip()
    counts["n_dropped_identical"] = int(same.sum())
    df = df[~same]
    a_wins = df["label"] == "a"
    conf = df["confidence"].astype(float).fillna(1.0) if "confidence" in df.columns else pd.Series(1.0, index=df.index)
    pairs = pd.DataFrame({
        "pair_id": df["comparison_id"].astype(str), "prompt_id": df["prompt_id"].astype(str),
        "prompt": df["prompt"].astype(str),
        "chosen": np.where(a_wins, df["response_a"], df["response_b"]),
        "rejected": np.where(a_wins, df["response_b"], df["response_a"]),
        "weight": conf.clip(0.0, 1.0).to_numpy(), "batch": df["batch"].astype(int).to_numpy(),
    }).reset_index(drop=True)
    return pairs, counts


def replay_size(n_new: int, fraction: float) -> int:
    """Replay rows so that replay / (new + replay) == fraction (rounded to a whole row)."""
    if fraction <= 0 or n_new == 0:
        return 0
    return int(round(n_new * fraction / (1.0 - fraction)))


def group_split(groups: pd.Series, eval_fraction: float, seed: int) -> np.ndarray:
    """Boolean eval mask: whole groups, in a seeded order, until eval holds >= eval_fraction of the rows
    (at least one group when eval_fraction > 0 and there are two or more groups)."""
    n = len(groups)
    mask = np.zeros(n, dtype=bool)
    if eval_fraction <= 0 or n == 0:
        return mask
    sizes = groups.value_counts()
    if len(sizes) < 2:
        return mask
    order = np.random.default_rng(seed).permutation(np.array(sorted(sizes.index)))
    target, taken, chosen = eval_fraction * n, 0, []
    for g in order[:-1]:  # never take every group
        if taken >= target:
            break
        chosen.append(g)
        taken += int(sizes[g])
    return groups.isin(set(chosen)).to_numpy()


def order_easy_to_hard(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    tiebreak = np.random.default_rng(seed).random(len(df))
    idx = np.lexsort((tiebreak, -df["weight"].to_numpy(dtype=float)))
    return df.iloc[idx].reset_index(drop=True)


def build_mix(consensus: pd.DataFrame, params: MixParams, seed: int = 0) -> Mix:
    pairs, counts = to_pairs(consensus)
    notes: list[str] = []
    batches = sorted(pairs["batch"].unique().tolist())
    new_batches = batches[-params.new_batches:] if batches else []
    is_new = pairs["batch"].isin(new_batches).to_numpy()
    new, old = pairs[is_new], pairs[~is_new]
    want = replay_size(len(new), params.replay_fraction)
    n_replay = min(want, len(old))
    if n_replay < want:
        notes.append(f"replay wanted {want} older pairs but only {len(old)} exist: replay share is "
                     f"{n_replay / max(len(new) + n_replay, 1):.3f} instead of {params.replay_fraction}")
    rng = np.random.default_rng(seed)
    replay = old.iloc[np.sort(rng.choice(len(old), size=n_replay, replace=False))] if n_replay else old.iloc[:0]
    mix = pd.concat([new.assign(source="new"), replay.assign(source="replay")], ignore_index=True)
    if mix.empty:
        notes.append("no usable labelled pairs: the mix is empty")
    ev = group_split(mix["prompt_id"], params.eval_fraction, seed + 1)
    train = order_easy_to_hard(mix[~ev], seed + 2)
    evl = mix[ev].sort_values("pair_id").reset_index(drop=True)
    # PPO prompts: every distinct prompt of the new batches (ties included: a prompt needs no label)
    cons_new = consensus[consensus["batch"].isin(new_batches)].dropna(subset=["prompt_id", "prompt"])
    prompts = (cons_new[["prompt_id", "prompt"]].astype(str).drop_duplicates("prompt_id")
               .sort_values("prompt_id").reset_index(drop=True))
    comp = (mix.groupby(["batch", "source"]).size().unstack(fill_value=0)
            .reindex(columns=["new", "replay"], fill_value=0).reindex(batches, fill_value=0)
            .rename(columns={"new": "n_new", "replay": "n_replay"}).reset_index())
    comp.columns.name = None
    n_mix = len(mix)
    metrics = {
        **counts, "n_pairs": int(len(pairs)), "n_new": int(len(new)), "n_replay": int(n_replay),
        "n_replay_wanted": int(want), "n_older_available": int(len(old)), "n_mix": int(n_mix),
        "replay_share": float(n_replay / n_mix) if n_mix else 0.0,
        "n_train": int(len(train)), "n_eval": int(len(evl)), "eval_share": float(len(evl) / n_mix) if n_mix else 0.0,
        "n_prompts_new": int(len(prompts)),
        "n_eval_prompt_groups": int(mix[ev]["prompt_id"].nunique()) if n_mix else 0,
        "replay_share_train": float((train["source"] == "replay").mean()) if len(train) else 0.0,
        "mean_weight_train": float(train["weight"].mean()) if len(train) else None,
        "first_new_batch": int(new_batches[0]) if new_batches else None,
        "last_batch": int(batches[-1]) if batches else None,
    }
    return Mix(train=train, eval=evl, prompts=prompts, composition=comp, metrics=metrics, notes=notes)
