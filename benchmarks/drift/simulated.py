"""Simulator cells of the drift benchmark: windows of labelled comparisons with a known truth.

The texts come from driftkeel's own simulator (src/driftkeel/data/simulator.py: prompt templates per
topic, responses whose length/wording depend on the policy version, a true utility per response). Three
pools of comparisons are generated once (seeded) and embedded once:

- base: the 8 initial topics, policy version 0;
- new:  the 3 later topics (cryptocurrency, medicine, legal), policy version 0;
- v1:   the initial topics, policy version 1 (more filler sentences and ornate openers: output drift).

Labels are drawn per window, so the same items can carry the reference concept or the drifted one:
three annotators judge each comparison (the simulator's Bradley-Terry judge), the consensus is the
majority, agreement = share of judgements equal to it. Scenarios (truth in parentheses):

- none (no drift): reference and current both from base, concept "pre", the original annotator pool;
- covariate_<eps> (prompt drift): a share eps of the current window from the new-topic pool;
- output (output drift): the current window from v1;
- concept (concept drift): current labels judged under the "post" concept (padding disliked,
  unsafe text penalised more); texts unchanged;
- label (label drift): current labels from the replacement annotator pool (noisier, biased to A and
  to longer answers); texts and concept unchanged.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from driftkeel.config import DataParams  # noqa: E402
from driftkeel.data import simulator as sim  # noqa: E402
from driftkeel.data import vocab  # noqa: E402

POOL_SIZES = {"base": 6000, "new": 2500, "v1": 4000}
POOL_SPEC = {"base": (vocab.INITIAL_TOPICS, 0), "new": (vocab.NEW_TOPICS, 0), "v1": (vocab.INITIAL_TOPICS, 1)}
COVARIATE_SHARES = (0.05, 0.1, 0.25, 0.5)
SCENARIOS = ("none", *(f"covariate_{e:g}" for e in COVARIATE_SHARES), "output", "concept", "label")
TRUTH = {"none": None, "output": "output", "concept": "concept", "label": "label",
         **{f"covariate_{e:g}": "prompt" for e in COVARIATE_SHARES}}


def make_pool(name: str, seed: int = 11) -> pd.DataFrame:
    topics, version = POOL_SPEC[name]
    rng = np.random.default_rng([seed, list(POOL_SPEC).index(name)])
    rows = []
    for i in range(POOL_SIZES[name]):
        topic = topics[rng.integers(len(topics))]
        prompt, a, b, _, _ = sim._pair(rng, topic, version, "pre")
        rows.append({"item": f"{name}-{i:05d}", "topic": topic, "version": version, "prompt": prompt,
                     "response_a": a, "response_b": b,
                     "u_pre_a": sim.true_utility(prompt, a, "pre"), "u_pre_b": sim.true_utility(prompt, b, "pre"),
                     "u_post_a": sim.true_utility(prompt, a, "post"), "u_post_b": sim.true_utility(prompt, b, "post")})
    return pd.DataFrame(rows)


def make_pools(seed: int = 11) -> dict[str, pd.DataFrame]:
    return {name: make_pool(name, seed) for name in POOL_SPEC}


def pool_texts(pools: dict[str, pd.DataFrame]) -> list[str]:
    out: list[str] = []
    for df in pools.values():
        out += df["prompt"].tolist() + df["response_a"].tolist() + df["response_b"].tolist()
    return out


def annotator_pools(seed: int = 11) -> tuple[list, list]:
    """(annotators active before the pool change, after it): half of the regular pool is replaced."""
    p = DataParams(n_annotators=24, spammer_fraction=0.1, pool_change_batch=1, n_batches=2)
    anns = sim.make_annotators(p, np.random.default_rng([seed, 1]))
    return [a for a in anns if a.active(0)], [a for a in anns if a.active(1)]


def label_window(items: pd.DataFrame, concept: str, annotators: list, rng: np.random.Generator,
                 k: int = 3) -> pd.DataFrame:
    """Consensus rows (the columns the drift stage reads) for `items` judged by k annotators each."""
    ua, ub = items[f"u_{concept}_a"].to_numpy(), items[f"u_{concept}_b"].to_numpy()
    wa = items["response_a"].str.split().str.len().to_numpy()
    wb = items["response_b"].str.split().str.len().to_numpy()
    labels, agreement = [], []
    for i in range(len(items)):
        chosen = rng.choice(len(annotators), size=k, replace=False)
        votes = [sim._judge(rng, annotators[j], ua[i], ub[i], wa[i], wb[i]) for j in chosen]
        counts = {v: votes.count(v) for v in ("a", "b", "tie")}
        top = max(counts.values())
        winners = [v for v, c in counts.items() if c == top]
        lab = winners[0] if len(winners) == 1 else "tie"
        labels.append(lab)
        agreement.append(top / k)
    out = items[["item", "prompt", "response_a", "response_b"]].copy()
    out["comparison_id"] = out["item"]
    out["prompt_id"] = out["item"]
    out["label"] = labels
    out["agreement"] = agreement
    out["confidence"] = agreement
    return out.reset_index(drop=True)


def draw_window(pools: dict[str, pd.DataFrame], scenario: str, n: int, rng: np.random.Generator,
                annotators: tuple[list, list]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reference rows, current rows) of one window pair of `scenario` with n comparisons each."""
    base = pools["base"]
    idx = rng.choice(len(base), size=2 * n, replace=False)
    ref_items, cur_items = base.iloc[idx[:n]], base.iloc[idx[n:]]
    concept, cur_ann = "pre", annotators[0]
    if scenario.startswith("covariate_"):
        k = int(round(float(scenario.split("_")[1]) * n))
        new = pools["new"].iloc[rng.choice(len(pools["new"]), size=k, replace=False)]
        cur_items = pd.concat([cur_items.iloc[: n - k], new])
        cur_items = cur_items.iloc[rng.permutation(n)]
    elif scenario == "output":
        cur_items = pools["v1"].iloc[rng.choice(len(pools["v1"]), size=n, replace=False)]
    elif scenario == "concept":
        concept = "post"
    elif scenario == "label":
        cur_ann = annotators[1]
    ref = label_window(ref_items, "pre", annotators[0], rng)
    cur = label_window(cur_items, concept, cur_ann, rng)
    return ref, cur
