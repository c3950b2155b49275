"""small-text's query strategies on the benchmark's arrays (runs in benchmarks/active/.venv-peers).

    .venv-peers/bin/python peers.py DATA.npz OUT.json --replay 0.3 --seeds 0 1 2

A pair is one binary example (features = the pair features x, label 1 = a preferred). The classifier
small-text queries with is the same Bradley-Terry surrogate as driftkeel's (L2 logistic regression,
C as bench.py chose it, no intercept, fitted on both orientations (x, y) and (-x, 1-y)), re-implemented here because
driftkeel is not installed in this virtualenv; it is also the reward model scored on the post-drift
eval pairs, trained on the labels bought + the same replay sample of old labels as bench.py.
"""
import argparse
import json

import numpy as np
from sklearn.linear_model import LogisticRegression
from small_text.query_strategies import BreakingTies, EmbeddingKMeans, PredictionEntropy


class BT:
    C = 10.0

    def fit(self, X, y):
        self.clf = LogisticRegression(C=self.C, fit_intercept=False, max_iter=2000)
        self.clf.fit(np.vstack([X, -X]), np.concatenate([y, 1 - y]))
        return self

    def predict_proba(self, X):
        return self.clf.predict_proba(np.asarray(X))

    def embed(self, X, return_proba=False, pbar=None, **kw):   # EmbeddingKMeans: the pair features
        X = np.asarray(X)
        return (X, self.predict_proba(X)) if return_proba else X


def train_set(d, bought, replay, seed):
    n = len(bought)
    n_rep = min(int(round(n * replay / (1 - replay))) if replay > 0 else 0, len(d["y_old"]))
    rep = np.random.default_rng([seed, 99, n]).choice(len(d["y_old"]), size=n_rep, replace=False)
    return (np.vstack([d["X_pool"][bought], d["X_old"][rep]]),
            np.concatenate([d["y_pool"][bought], d["y_old"][rep]]))


def acc(m, X):
    return float(np.mean(m.predict_proba(X)[:, 1] > 0.5))


def run(d, make, seed, replay):
    np.random.seed(seed)
    X, n = d["X_pool"], len(d["y_pool"])
    bought = np.zeros(0, dtype=int)
    model = BT().fit(d["X_old"], d["y_old"])
    out = [{"labels": 0, "post": acc(model, d["X_post"])}]
    for b in d["budgets"]:
        need = int(b) - len(bought)
        rest = np.setdiff1d(np.arange(n), bought)
        if need >= len(rest):
            pick = rest
        else:
            qs = make()
            y_lab = d["y_pool"][bought]
            kw = {"pbar": None} if isinstance(qs, EmbeddingKMeans) else {}
            pick = np.asarray(qs.query(model, X, rest, bought, y_lab, n=need, **kw), dtype=int)
        bought = np.concatenate([bought, pick])
        model = BT().fit(*train_set(d, bought, replay, seed))
        out.append({"labels": int(len(bought)), "post": acc(model, d["X_post"])})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--replay", type=float, default=0.3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--C", type=float, default=10.0)
    a = ap.parse_args()
    BT.C = a.C
    d = dict(np.load(a.data))
    strategies = {"st:PredictionEntropy": PredictionEntropy, "st:BreakingTies": BreakingTies,
                  "st:EmbeddingKMeans": EmbeddingKMeans}
    import small_text
    res = {"small_text": getattr(small_text, "__version__", "?"), "runs": {}}
    for name, cls in strategies.items():
        res["runs"][name] = [run(d, cls, s, a.replay) for s in a.seeds]
    with open(a.out, "w") as fh:
        json.dump(res, fh)


if __name__ == "__main__":
    main()
