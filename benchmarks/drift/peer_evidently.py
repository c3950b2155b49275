"""Evidently 0.7.23 as a peer, run inside benchmarks/drift/.venv-evidently (pandas<3).

    .venv-evidently/bin/python peer_evidently.py TASK.npz OUT.json

TASK.npz holds `emb` (pool embeddings, float32), `ref_idx` / `cur_idx` (one row of pool indices per
window; -1 pads) and optionally `texts.json` beside it (the pool's texts, for the text-column test).
Each window runs Evidently's embedding-drift methods exactly as `EmbeddingsDrift` calls them,
`method(current_df, reference_df)`, on the precomputed MiniLM embeddings (no second MiniLM here), and
the text-content drift test on the raw texts. What is timed: the method call alone (not a Report:
Evidently's Report adds a TSNE plot per check, about 9 s at 1000 rows).

Methods (Evidently's names and defaults):
- model_default: what `EmbeddingsDrift` uses when given no method: `model(bootstrap=n_ref < 1000)`
  (SGD logistic domain classifier on a 50/50 split; drift if ROC AUC > 0.55, or above the 95th
  percentile of random-score AUCs when bootstrapping);
- distance: `distance()` (euclidean distance between mean embeddings > 0.2);
- distance_bootstrap: `distance(bootstrap=True)` (> 95th percentile of reference-bootstrap distances);
- mmd: `mmd()` (MMD^2 > 0.015);  mmd_bootstrap: `mmd(bootstrap=True)`;
- ratio: `ratio()` (share of the 384 components whose Wasserstein distance > 0.1, drift if > 0.2);
- text: the default text-column drift test (`perc_text_content_drift` up to 1000 reference rows,
  `abs_text_content_drift` above: a TF-IDF domain classifier).
"""
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")

from evidently.legacy.calculations.stattests.registry import get_stattest  # noqa: E402
from evidently.legacy.core import ColumnType  # noqa: E402
from evidently.legacy.metrics.data_drift.embedding_drift_methods import distance, mmd, model, ratio  # noqa: E402

def _patch_fast_auc() -> None:
    """EV_FAST_AUC=1: replace sklearn's roc_auc_score inside Evidently by the Mann-Whitney formula,
    which gives the same number (the ROC area with ties counted 1/2); the first 200 calls are checked
    against sklearn. Evidently's bootstraps call it 100-1000 times per window, which is most of their
    time; the alarm rates are unchanged, the seconds recorded in such a run are not Evidently's
    (the speed comparison runs without the patch)."""
    from scipy.stats import rankdata
    from sklearn.metrics import roc_auc_score as sk_auc

    import evidently.legacy.metrics.data_drift.embedding_drift_methods as m1
    import evidently.legacy.utils.data_drift_utils as m2

    calls = {"n": 0}

    def fast_auc(y_true, y_score, *args, **kw):
        y = np.asarray(y_true)
        s = np.asarray(y_score, dtype=float)
        pos = y == np.max(y)
        n1, n0 = int(pos.sum()), int((~pos).sum())
        auc = (rankdata(s)[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
        if calls["n"] < 200:
            assert abs(auc - sk_auc(y_true, y_score)) < 1e-9, "fast AUC differs from sklearn's"
        calls["n"] += 1
        return auc

    m1.roc_auc_score = fast_auc
    m2.roc_auc_score = fast_auc


EMB_METHODS = {
    "model_default": lambda n_ref: model(bootstrap=n_ref < 1000),
    "distance": lambda n_ref: distance(),
    "distance_bootstrap": lambda n_ref: distance(bootstrap=True),
    "mmd": lambda n_ref: mmd(),
    "mmd_bootstrap": lambda n_ref: mmd(bootstrap=True),
    "ratio": lambda n_ref: ratio(),
}


def run(task_path: str, out_path: str, methods: list[str]) -> None:
    import os

    if os.environ.get("EV_FAST_AUC") == "1":
        _patch_fast_auc()
    task = np.load(task_path)
    emb = task["emb"]
    texts_path = Path(task_path).with_suffix(".texts.json")
    texts = json.loads(texts_path.read_text()) if texts_path.exists() else None
    cols = [f"e{i}" for i in range(emb.shape[1])]
    results = {m: [] for m in methods}
    for ri, ci in zip(task["ref_idx"], task["cur_idx"]):
        ri, ci = ri[ri >= 0], ci[ci >= 0]
        ref = pd.DataFrame(emb[ri], columns=cols)
        cur = pd.DataFrame(emb[ci], columns=cols)
        for name in methods:
            if name == "text":
                if texts is None:
                    continue
                r_txt = pd.Series([texts[i] for i in ri])
                c_txt = pd.Series([texts[i] for i in ci])
                t0, c0 = time.perf_counter(), time.process_time()
                test = get_stattest(r_txt, c_txt, ColumnType.Text, None)
                res = test(r_txt, c_txt, ColumnType.Text, None)
                secs = time.perf_counter() - t0
                results[name].append({"score": float(res.drift_score), "drift": bool(res.drifted),
                                      "seconds": secs, "cpu_seconds": time.process_time() - c0,
                                      "method": test.name})
                continue
            method = EMB_METHODS[name](len(ri))
            t0, c0 = time.perf_counter(), time.process_time()
            score, drift, _ = method(cur.copy(), ref.copy())
            secs = time.perf_counter() - t0
            results[name].append({"score": float(score), "drift": bool(drift), "seconds": secs,
                                  "cpu_seconds": time.process_time() - c0})
    Path(out_path).write_text(json.dumps(results))


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], sys.argv[3].split(",") if len(sys.argv) > 3 else list(EMB_METHODS) + ["text"])
