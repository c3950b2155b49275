"""A cheap surrogate Bradley-Terry reward model on sentence embeddings.

r(prompt, response) = w . emb(prompt + "\\n" + response), so
P(a preferred over b) = sigmoid(w . (emb(prompt+"\\n"+a) - emb(prompt+"\\n"+b))).
w is an L2-regularised logistic regression without intercept, fitted on both orientations of every
pair (d, y) and (-d, 1-y) so that P(a > b) = 1 - P(b > a) holds exactly. Sample weight = consensus
confidence. With `n_members > 1` the extra members are fitted on seeded bootstrap resamples and the
prediction is the members' mean (their spread is returned as a disagreement score).
`temperature` divides every member's logit (fitted on held-out labels by `fit_temperature`, so the
probabilities, and the disagreement computed from them, are calibrated; 1 = as fitted).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression

from driftkeel.embeddings import Embedder


def pair_text(prompt: str, response: str) -> str:
    return f"{prompt}\n{response}"


def pair_features(embedder: Embedder, prompts: Sequence[str], responses_a: Sequence[str],
                  responses_b: Sequence[str]) -> np.ndarray:
    """emb(prompt+"\\n"+a) - emb(prompt+"\\n"+b), one row per pair (both sides embedded in one call)."""
    n = len(prompts)
    if n == 0:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    texts = [pair_text(p, a) for p, a in zip(prompts, responses_a)]
    texts += [pair_text(p, b) for p, b in zip(prompts, responses_b)]
    emb = embedder.encode(texts)
    return emb[:n] - emb[n:]


@dataclass
class BradleyTerrySurrogate:
    C: float = 10.0
    n_members: int = 1
    seed: int = 0
    members: list = field(default_factory=list)
    n_train: int = 0
    temperature: float = 1.0

    def fit(self, X: np.ndarray, y_a: np.ndarray, weights: np.ndarray | None = None) -> "BradleyTerrySurrogate":
        """X: pair feature rows; y_a: 1 if a was preferred else 0; weights: e.g. label confidence."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y_a, dtype=int)
        w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
        if len(y) == 0:
            raise ValueError("no labelled pairs to fit the surrogate reward model")
        if not set(np.unique(y)) <= {0, 1}:
            raise ValueError("labels must be 0/1 (1 = response a preferred)")
        rng = np.random.default_rng(self.seed)
        self.members = []
        from driftkeel.progress import bar

        for m in bar(range(self.n_members), "surrogate ensemble", total=self.n_members, unit="member"):
            idx = np.arange(len(y)) if m == 0 else rng.integers(0, len(y), size=len(y))
            Xs = np.vstack([X[idx], -X[idx]])
            ys = np.concatenate([y[idx], 1 - y[idx]])
            ws = np.concatenate([w[idx], w[idx]])
            clf = LogisticRegression(C=self.C, fit_intercept=False, max_iter=2000)
            clf.fit(Xs, ys, sample_weight=ws)
            self.members.append(clf)
        self.n_train = int(len(y))
        return self

    def member_proba(self, X: np.ndarray) -> np.ndarray:
        """(n_members, n) matrix of P(a preferred)."""
        if not self.members:
            raise RuntimeError("surrogate reward model is not fitted")
        X = np.asarray(X, dtype=np.float64)
        if len(X) == 0:
            return np.zeros((len(self.members), 0))
        logits = self.member_logits(X) / self.temperature
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))

    def member_logits(self, X: np.ndarray) -> np.ndarray:
        """(n_members, n) raw logits w_m . x (before the temperature)."""
        if not self.members:
            raise RuntimeError("surrogate reward model is not fitted")
        X = np.asarray(X, dtype=np.float64)
        if len(X) == 0:
            return np.zeros((len(self.members), 0))
        return np.stack([clf.decision_function(X) for clf in self.members])

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.member_proba(X).mean(axis=0)


def fit_temperature(member_logits: np.ndarray, y_a: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Temperature T minimising the held-out log loss of mean_m sigmoid(logit_m / T) (grid + refine)."""
    L = np.atleast_2d(np.asarray(member_logits, dtype=float))
    y = np.asarray(y_a, dtype=float)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    if len(y) == 0:
        return 1.0

    def loss(t: float) -> float:
        p = np.clip((1.0 / (1.0 + np.exp(-np.clip(L / t, -50, 50)))).mean(axis=0), 1e-9, 1 - 1e-9)
        return float(-np.sum(w * (y * np.log(p) + (1 - y) * np.log(1 - p))) / w.sum())

    grid = np.exp(np.linspace(np.log(0.25), np.log(10.0), 41))   # bounded: separable data would sharpen without end
    best = grid[int(np.argmin([loss(t) for t in grid]))]
    fine = best * np.exp(np.linspace(-0.1, 0.1, 21))
    return float(fine[int(np.argmin([loss(t) for t in fine]))])


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """ECE of P(a preferred) against 0/1 outcomes, equal-width bins."""
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    if len(p) == 0:
        return float("nan")
    idx = np.minimum((p * bins).astype(int), bins - 1)
    return float(sum(abs(p[idx == b].mean() - y[idx == b].mean()) * (idx == b).mean()
                     for b in range(bins) if (idx == b).any()))
