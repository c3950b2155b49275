"""Drift-aware prior: boost pairs whose prompt falls in a region the drift stage flagged.

The drift stage's `outputs/drift/report.json` has a `clusters` section (driftkeel.drift.clusters):
`new_clusters` (regions of the current window far from every reference cluster, with a Bonferroni
`p_value`) and `grew` (reference clusters whose share grew, `p_value_grew`), each with example
prompts. A cluster is flagged when its p-value is at most `alpha`. The report keeps no centroids, so:

- new clusters: a prompt is "new" when it is far from the reference window, by the drift stage's own
  rule: its best TF-IDF cosine (English stop words removed, fitted on reference + scored prompts) to a
  seeded half of the reference prompts is below the `far_quantile` quantile of the same statistic
  on the other half (so about `far_quantile` of reference prompts would count as new);
- grown clusters: a prompt belongs to the grown cluster whose example prompts (their mean TF-IDF
  vector) it is most similar to, when that cosine is at least `min_similarity`.

Prior = 1 + boost for "new", 1 + boost / 2 for a grown cluster, 1 elsewhere. No report, no
cluster analysis, no flagged cluster or no reference prompts: every prior is 1 (and `note` says why).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FlaggedClusters:
    names: list[str] = field(default_factory=list)        # "new-0", "grew-5", ...
    kinds: list[str] = field(default_factory=list)        # "new" | "grew"
    examples: list[list[str]] = field(default_factory=list)
    note: str | None = None


def flagged_clusters(report: dict | None, alpha: float = 0.05) -> FlaggedClusters:
    out = FlaggedClusters()
    cl = (report or {}).get("clusters") if isinstance(report, dict) else None
    if not isinstance(cl, dict) or cl.get("reason"):
        out.note = ("no drift report" if not report else
                    f"drift report has no cluster analysis ({(cl or {}).get('reason', 'missing') if isinstance(cl, dict) else 'missing'})")
        return out
    for j, c in enumerate(cl.get("new_clusters") or []):
        if isinstance(c, dict) and c.get("examples") and float(c.get("p_value", 1.0)) <= alpha:
            out.names.append(f"new-{j}")
            out.kinds.append("new")
            out.examples.append([str(t) for t in c["examples"]])
    for c in cl.get("grew") or []:
        if isinstance(c, dict) and c.get("examples") and float(c.get("p_value_grew", 1.0)) <= alpha:
            out.names.append(f"grew-{c.get('cluster')}")
            out.kinds.append("grew")
            out.examples.append([str(t) for t in c["examples"]])
    if not out.names:
        out.note = f"no cluster flagged at alpha={alpha} in the drift report"
    return out


@dataclass
class DriftPrior:
    weights: np.ndarray                 # prior per prompt (>= 1)
    region: list[str]                   # "new", "grew-<cluster>" or "" per prompt
    note: str | None = None

    @property
    def n_boosted(self) -> int:
        return int((self.weights > 1).sum())


def drift_prior(prompts: list[str], reference_prompts: list[str], report: dict | None, *, boost: float = 1.0,
                alpha: float = 0.05, far_quantile: float = 0.05, min_similarity: float = 0.3,
                seed: int = 0) -> DriftPrior:
    """See the module docstring."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    n = len(prompts)
    flat = DriftPrior(np.ones(n), [""] * n)
    flagged = flagged_clusters(report, alpha)
    if not flagged.names or boost <= 0 or n == 0:
        flat.note = flagged.note or ("drift prior off (boost 0)" if boost <= 0 else "no prompts")
        return flat
    ref = list(dict.fromkeys(str(t) for t in reference_prompts))
    if len(ref) < 8:
        flat.note = f"too few reference prompts for the drift prior ({len(ref)})"
        return flat
    vec = TfidfVectorizer(sublinear_tf=True, stop_words="english")
    examples = [t for ex in flagged.examples for t in ex]
    try:
        vec.fit(ref + list(prompts) + examples)
    except ValueError:
        flat.note = "no words to compare prompts with (drift prior off)"
        return flat
    Q = vec.transform(list(prompts))
    weights, region = np.ones(n), [""] * n
    if "new" in flagged.kinds:
        perm = np.random.default_rng(seed).permutation(len(ref))
        F, H = perm[: len(ref) // 2], perm[len(ref) // 2:]
        RF = vec.transform([ref[i] for i in F])
        sim_h = (vec.transform([ref[i] for i in H]) @ RF.T).max(axis=1).toarray().ravel()
        tau = float(np.quantile(sim_h, far_quantile))
        sim_q = (Q @ RF.T).max(axis=1).toarray().ravel()
        far = sim_q < tau
        weights[far] = 1.0 + boost
        for i in np.flatnonzero(far):
            region[i] = "new"
    grew = [j for j, k in enumerate(flagged.kinds) if k == "grew"]
    if grew:
        reps = np.vstack([np.asarray(vec.transform(flagged.examples[j]).mean(axis=0)) for j in grew])
        reps /= np.maximum(np.linalg.norm(reps, axis=1, keepdims=True), 1e-12)
        sim = np.asarray(Q @ reps.T)
        best = sim.argmax(axis=1)
        top = sim[np.arange(n), best]
        for i in np.flatnonzero((top >= min_similarity) & (weights == 1.0)):
            weights[i] = 1.0 + boost / 2.0
            region[i] = flagged.names[grew[best[i]]]
    return DriftPrior(weights, region, None)
