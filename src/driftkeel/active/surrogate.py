"""A cheap surrogate Bradley-Terry reward model on sentence embeddings.

r(prompt, response) = w . emb(prompt + "\\n" + response), so
P(a preferred over b) = sigmoid(w . (emb(prompt+"\\n"+a) - emb(prompt+"\\n"+b))).
w is an L2-regularised logistic regression without intercept, fitted on both orientations of every
pair (d, y) and (-d, 1-y) so that P(a > b) = 1 - P(b > a) holds exactly. Sample weight = consensus
confidence. With `n_members > 1` the extra members are fitted on seeded bootstrap resamples and the
prediction is the members' mean (their spread is returned as a disagreement score).
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
        for m in range(self.n_members):
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
        return np.stack([clf.predict_proba(X)[:, 1] for clf in self.members])

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.member_proba(X).mean(axis=0)
