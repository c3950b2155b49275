"""Training mix with replay: new comparisons + a seeded replay sample of older ones, split by prompt.

- Ties and comparisons with identical responses are dropped (counted); chosen/rejected follow the
  consensus label; weight = consensus confidence.
- "new" = comparisons of the last `mix.new_batches` batches; "replay" = a seeded sample of older
  comparisons of size round(n_new * f / (1 - f)), f = `mix.replay_fraction`, so replay is f of the mix
  (capped by the older comparisons available; the shortfall is reported).
- `mix.eval_fraction` of the mix is held out by prompt_id (a group split: a prompt never appears in
  both train and eval).
- Replay pool: `mix.replay_pool: older` samples all older batches alike; `before_drift` takes the
  batches before the first drift alarm first (what the drift made old is what must not be forgotten;
  the later older batches are like the new ones), then the rest.
- Replay share: `mix.replay_fraction`, or with `mix.replay_from_drift` the share `mix.replay_by_level`
  gives the drift decision's level (more drift, more replay against forgetting).
- Difficulty per pair (curriculum/difficulty.py: consensus confidence, the cross-fitted surrogate
  reward's P(chosen), a close-comparison flag) and the curriculum order `mix.order` (easy_to_hard |
  pacing | shuffle). Without pair features (no embedder) difficulty is the confidence alone.
- Per-cluster mixture weights: pairs whose prompt is in a cluster the drift report flags as new get
  weight x `mix.new_cluster_weight` (grown clusters half that boost; active/drift_prior.py), then all
  weights are divided by the largest factor (the reward loss is weight-averaged: only ratios matter).
- Drift era per pair: "before" for batches before the first batch (outside the reference) on which
  the drift report's history raised a prompt-drift alarm, "after" from it on (all "before" without an
  alarm or a report). Only the prompt signal sets it, on purpose: `reward.routing.key: era` trains one
  reward head per era behind a gate that reads the prompt (training/routing.py), which cannot tell eras
  apart that differ only in labels; and `replay_pool: before_drift` must not replay labels from before
  a concept change as if they were still right.
- Synthetic feedback (`mix.synthetic`, curriculum/synthetic.py): confident surrogate-ensemble labels
  of pool pairs, source "synthetic", train only (never eval).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from driftkeel.config import MixParams
from driftkeel.curriculum.difficulty import cross_fitted_p_chosen, difficulty, order_rows

PAIR_FIELDS = ["pair_id", "prompt", "chosen", "rejected", "weight", "batch", "source", "region", "era"]


@dataclass
class Mix:
    train: pd.DataFrame
    eval: pd.DataFrame
    prompts: pd.DataFrame
    composition: pd.DataFrame
    metrics: dict
    notes: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)   # where the replay share came from, the order


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


def replay_share(params: MixParams, drift_level: int | None) -> tuple[float, str]:
    if params.replay_from_drift and drift_level is not None:
        levels = sorted(params.replay_by_level)
        lvl = max([lv for lv in levels if lv <= drift_level], default=levels[0]) if levels else None
        if lvl is not None:
            return float(params.replay_by_level[lvl]), f"drift level {drift_level} -> replay_by_level[{lvl}]"
    return float(params.replay_fraction), "mix.replay_fraction"


def first_drift_batch(report: dict | None) -> int | None:
    """The first batch outside the reference window whose drift history entry raised a prompt-drift
    alarm (`alarm` in the history is the prompt signal's; see the module docstring for why)."""
    hist = (report or {}).get("history") if isinstance(report, dict) else None
    flagged = [int(h["batch"]) for h in hist or [] if isinstance(h, dict) and h.get("alarm")
               and not h.get("in_reference") and h.get("batch") is not None]
    return min(flagged) if flagged else None


def _features(embedder, prompts, a, b):
    from driftkeel.active.surrogate import pair_features

    return pair_features(embedder, list(prompts), list(a), list(b))


def build_mix(consensus: pd.DataFrame, params: MixParams, seed: int = 0, *, embedder=None,
              drift_report: dict | None = None, drift_level: int | None = None, pool: list[dict] | None = None,
              queued: set | None = None) -> Mix:
    pairs, counts = to_pairs(consensus)
    notes: list[str] = []
    fraction, fraction_from = replay_share(params, drift_level)
    if params.replay_from_drift and drift_level is None:
        notes.append("mix.replay_from_drift is set but there is no drift decision: using mix.replay_fraction")
    batches = sorted(pairs["batch"].unique().tolist())
    new_batches = batches[-params.new_batches:] if batches else []
    is_new = pairs["batch"].isin(new_batches).to_numpy()
    new, old = pairs[is_new], pairs[~is_new]
    want = replay_size(len(new), fraction)
    n_replay = min(want, len(old))
    if n_replay < want:
        notes.append(f"replay wanted {want} older pairs but only {len(old)} exist: replay share is "
                     f"{n_replay / max(len(new) + n_replay, 1):.3f} instead of {fraction}")
    rng = np.random.default_rng(seed)
    onset = first_drift_batch(drift_report)
    if params.replay_pool == "before_drift" and onset is not None and n_replay:
        # what the drift made old is what must not be forgotten: pre-drift pairs first, then the rest
        before = old["batch"].to_numpy() < onset
        pre, post = np.flatnonzero(before), np.flatnonzero(~before)
        take = rng.choice(pre, size=min(n_replay, len(pre)), replace=False)
        if len(take) < n_replay:
            take = np.concatenate([take, rng.choice(post, size=n_replay - len(take), replace=False)])
        replay = old.iloc[np.sort(take)]
    else:
        replay = old.iloc[np.sort(rng.choice(len(old), size=n_replay, replace=False))] if n_replay else old.iloc[:0]
    mix = pd.concat([new.assign(source="new"), replay.assign(source="replay")], ignore_index=True)
    if mix.empty:
        notes.append("no usable labelled pairs: the mix is empty")

    # difficulty (cross-fitted surrogate on chosen - rejected features, when an embedder is given)
    X = _features(embedder, mix["prompt"], mix["chosen"], mix["rejected"]) if embedder is not None and len(mix) else None
    p_chosen = cross_fitted_p_chosen(X, mix["prompt_id"], seed + 3) if X is not None else np.full(len(mix), np.nan)
    d, close = difficulty(mix["weight"].to_numpy(dtype=float), p_chosen, params.close_margin)
    mix = mix.assign(p_chosen=p_chosen, difficulty=d, close=close)

    # per-cluster mixture weights from the drift report
    from driftkeel.active.drift_prior import drift_prior

    ref_batches = (drift_report or {}).get("reference_batches") or batches[:2]
    ref_prompts = consensus[consensus["batch"].isin(ref_batches)]["prompt"].dropna().astype(str).tolist()
    prior = drift_prior(mix["prompt"].tolist(), ref_prompts, drift_report, boost=params.new_cluster_weight - 1.0,
                        alpha=params.drift_alpha, seed=seed)
    if prior.note:
        notes.append(f"cluster weights: {prior.note}")
    factor = prior.weights if len(mix) else np.ones(0)
    top = float(factor.max()) if len(factor) else 1.0
    mix = mix.assign(region=[r or "other" for r in prior.region] if len(mix) else [],
                     weight=mix["weight"].to_numpy(dtype=float) * factor / max(top, 1e-12))

    mix = mix.assign(era=np.where(mix["batch"].to_numpy() >= onset, "after", "before") if onset is not None
                     else "before")
    ev = group_split(mix["prompt_id"], params.eval_fraction, seed + 1)
    train_h, evl = mix[~ev], mix[ev].sort_values("pair_id").reset_index(drop=True)

    syn_info: dict = {}
    syn = pd.DataFrame()
    if params.synthetic:
        from driftkeel.active.selection import clean_pool, labelled_pair_ids
        from driftkeel.curriculum.synthetic import synthetic_pairs

        usable, _ = clean_pool(pool or [], labelled=labelled_pair_ids(consensus))   # human labels win
        # no synthetic pair on an eval prompt: matched by prompt_id and by text (a pool row's prompt_id
        # is optional, and a row without one must not slip past the id check)
        eval_ids, eval_texts = set(evl["prompt_id"].astype(str)), set(evl["prompt"].astype(str))
        n_usable = len(usable)
        usable = [r for r in usable if str(r.get("prompt_id") or "") not in eval_ids
                  and str(r["prompt"]) not in eval_texts]
        n_on_eval = n_usable - len(usable)
        if embedder is None:
            notes.append("mix.synthetic needs pair features (an embedder): no synthetic pairs")
        else:
            Xtr = X[~ev] if X is not None else np.zeros((0, 1))
            PX = _features(embedder, [r["prompt"] for r in usable], [r["response_a"] for r in usable],
                           [r["response_b"] for r in usable]) if usable else np.zeros((0, Xtr.shape[1]))
            syn, syn_info = synthetic_pairs(Xtr, usable, PX, n_train=len(train_h),
                                            min_confidence=params.synthetic_min_confidence,
                                            max_share=params.synthetic_max_share, weight=params.synthetic_weight,
                                            seed=seed, exclude=queued)
            syn_info["n_excluded_eval_prompt"] = n_on_eval
            if len(syn):
                # on the human pairs' scale: their weights were divided by the largest cluster factor
                syn = syn.assign(source="synthetic", p_chosen=np.nan, difficulty=0.0, close=False, region="synthetic",
                                 era="synthetic", weight=syn["weight"].to_numpy(dtype=float) / max(top, 1e-12))
                share = float((train_h["source"] == "replay").sum() / (len(train_h) + len(syn)))
                notes.append(f"{len(syn)} synthetic pairs make the train replay share {share:.3f} "
                             f"(mix.replay_fraction {fraction} applies to the human-labelled pairs)")
            notes.append(f"synthetic feedback: {syn_info.get('n_synthetic', 0)} pool pairs labelled by the "
                         f"surrogate ensemble (source 'synthetic', train only)")
    train_all = pd.concat([train_h, syn], ignore_index=True) if len(syn) else train_h
    train = order_rows(train_all, params.order, seed + 2, params.pacing_phases)
    # PPO prompts: every distinct prompt of the new batches (ties included: a prompt needs no label)
    cons_new = consensus[consensus["batch"].isin(new_batches)].dropna(subset=["prompt_id", "prompt"])
    prompts = (cons_new[["prompt_id", "prompt"]].astype(str).drop_duplicates("prompt_id")
               .sort_values("prompt_id").reset_index(drop=True))
    comp = (train_all.groupby(["batch", "source"]).size().unstack(fill_value=0) if len(train_all) else pd.DataFrame())
    comp_all = (mix.groupby(["batch", "source"]).size().unstack(fill_value=0)
                .reindex(columns=["new", "replay"], fill_value=0).reindex(batches, fill_value=0)
                .rename(columns={"new": "n_new", "replay": "n_replay"}).reset_index())
    comp_all.columns.name = None
    if len(syn):
        # synthetic pairs come from pool batches the consensus may not hold (or none: batch -1)
        syn_counts = comp.get("synthetic", pd.Series(dtype=int))
        extra = sorted(set(syn_counts[syn_counts > 0].index) - set(comp_all["batch"]))
        if extra:
            comp_all = pd.concat([comp_all, pd.DataFrame({"batch": extra, "n_new": 0, "n_replay": 0})],
                                 ignore_index=True).sort_values("batch").reset_index(drop=True)
        comp_all["n_synthetic"] = comp_all["batch"].map(syn_counts).fillna(0).astype(int)
    n_mix = len(mix)
    tr_w = train["weight"].to_numpy(dtype=float) if len(train) else np.zeros(0)
    region_share = ({f"weight_share_{k}": float(tr_w[(train["region"] == k).to_numpy()].sum() / tr_w.sum())
                     for k in sorted(train["region"].unique())} if len(train) and tr_w.sum() > 0 else {})
    metrics = {
        **counts, "n_pairs": int(len(pairs)), "n_new": int(len(new)), "n_replay": int(n_replay),
        "n_replay_wanted": int(want), "n_older_available": int(len(old)), "n_mix": int(n_mix),
        "replay_fraction_target": fraction, "replay_share": float(n_replay / n_mix) if n_mix else 0.0,
        "n_train": int(len(train)), "n_eval": int(len(evl)), "eval_share": float(len(evl) / n_mix) if n_mix else 0.0,
        "n_prompts_new": int(len(prompts)),
        "n_eval_prompt_groups": int(mix[ev]["prompt_id"].nunique()) if n_mix else 0,
        "replay_share_train": float((train["source"] == "replay").mean()) if len(train) else 0.0,
        "mean_weight_train": float(train["weight"].mean()) if len(train) else None,
        "first_new_batch": int(new_batches[0]) if new_batches else None,
        "last_batch": int(batches[-1]) if batches else None,
        "mean_difficulty_train": float(train["difficulty"].mean()) if len(train) else None,
        "n_close_train": int(train["close"].sum()) if len(train) else 0,
        "n_new_cluster_pairs": int((mix["region"] == "new").sum()) if n_mix else 0,
        "first_drift_batch": onset,
        "n_after_drift_pairs": int((mix["era"] == "after").sum()) if n_mix else 0,
        "n_synthetic": int(syn_info.get("n_synthetic", 0)),
        "synthetic_share_train": float((train["source"] == "synthetic").mean()) if len(train) else 0.0,
        **region_share,
    }
    info = {"replay_fraction": fraction, "replay_fraction_from": fraction_from, "order": params.order,
            "synthetic": syn_info or None, "drift_prior_note": prior.note}
    return Mix(train=train, eval=evl, prompts=prompts, composition=comp_all, metrics=metrics, notes=notes,
               info=info)
