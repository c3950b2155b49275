"""Peers on the benchmark cells, run in the peers' own virtualenv (.venv-peers; see setup_peers.sh).

    .venv-peers/bin/python peers.py WORK_DIR CELL [CELL ...]

For each cell folder: crowd-kit 1.4.2 MajorityVote, DawidSkene (golden anchors passed as
``true_labels``, its semi-supervised mode), GLAD and MACE with their defaults, and cleanlab 2.9.0
CROWDLAB (``get_label_quality_multiannotator``). CROWDLAB needs a classifier's ``pred_probs``; no
method here gets item features, so it gets the items' vote shares with add-one smoothing (what it
sees is then exactly the judgements, like everyone else). Writes ``pred_<method>.csv`` (item, label,
confidence, p_<label>...), ``skill_<method>.csv`` (worker, skill: the method's own annotator score)
and ``peers.json`` (CPU and wall seconds of each fit, errors).
"""
from __future__ import annotations

import json
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")


def _pred(probas: pd.DataFrame | None, labels: pd.Series) -> pd.DataFrame:
    out = pd.DataFrame({"item": labels.index, "label": labels.to_numpy()})
    if probas is not None:
        p = probas.reindex(labels.index)
        out["confidence"] = [p.loc[i, l] for i, l in zip(labels.index, labels.to_numpy())]
        for c in p.columns:
            out[f"p_{c}"] = p[c].to_numpy()
    return out


def run_mv(df, gold):
    from crowdkit.aggregation import MajorityVote
    m = MajorityVote().fit(df)
    return _pred(m.probas_, m.labels_), m.skills_


def run_ds(df, gold):
    from crowdkit.aggregation import DawidSkene
    m = DawidSkene(n_iter=100).fit(df, true_labels=gold if len(gold) else None)
    err = m.errors_  # (worker, observed) x true
    prior = m.priors_
    skill = {}
    for w, block in err.groupby(level=0):
        b = block.droplevel(0)
        skill[w] = float(sum(prior.get(k, 0.0) * b.loc[k, k] for k in b.columns if k in b.index))
    return _pred(m.probas_, m.labels_), pd.Series(skill)


def run_glad(df, gold):
    from crowdkit.aggregation import GLAD
    m = GLAD().fit(df)
    return _pred(m.probas_, m.labels_), m.alphas_


def run_mace(df, gold):
    from crowdkit.aggregation import MACE
    m = MACE().fit(df)
    workers = pd.factorize(df["worker"])[1]
    return _pred(m.probas_, m.labels_), pd.Series(m.spamming_[:, 1], index=workers)


def run_crowdlab(df, gold):
    from cleanlab.multiannotator import get_label_quality_multiannotator
    classes = sorted(df["label"].unique())
    code = {c: i for i, c in enumerate(classes)}
    wide = df.assign(code=df["label"].map(code)).pivot(index="task", columns="worker", values="code")
    counts = np.stack([(wide.to_numpy() == k).sum(axis=1) for k in range(len(classes))], axis=1).astype(float)
    pred_probs = (counts + 1.0) / (counts.sum(axis=1, keepdims=True) + len(classes))
    res = get_label_quality_multiannotator(wide, pred_probs, verbose=False)
    lq = res["label_quality"]
    labels = pd.Series([classes[int(k)] for k in lq["consensus_label"]], index=wide.index)
    conf = lq["consensus_quality_score"].to_numpy()
    out = pd.DataFrame({"item": wide.index, "label": labels.to_numpy(), "confidence": conf})
    skill = res["annotator_stats"]["annotator_quality"]
    return out, skill


METHODS = {"majority_vote": run_mv, "dawid_skene": run_ds, "glad": run_glad, "mace": run_mace,
           "crowdlab": run_crowdlab}


def main(work: Path, cells: list[str]) -> None:
    import cleanlab.multiannotator  # noqa: F401  (imports outside the timed fits)
    import crowdkit.aggregation  # noqa: F401
    for cell in cells:
        d = work / cell
        j = pd.read_csv(d / "judgements.csv", dtype={"item": str, "worker": str, "label": str})
        g = pd.read_csv(d / "gold.csv", dtype=str)
        gold = pd.Series(g["label"].to_numpy(), index=g["item"].to_numpy(), name="label")
        gold.index.name = "task"
        df = pd.DataFrame({"task": j["item"], "worker": j["worker"], "label": j["label"]})
        report = {}
        for name, fn in METHODS.items():
            t_cpu, t_wall = time.process_time(), time.perf_counter()
            try:
                pred, skill = fn(df, gold)
            except Exception as exc:  # a peer failing is reported, not hidden
                report[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]}
                continue
            cpu, wall = time.process_time() - t_cpu, time.perf_counter() - t_wall
            pred.to_csv(d / f"pred_{name}.csv", index=False)
            pd.DataFrame({"worker": skill.index.astype(str), "skill": np.asarray(skill, dtype=float)}).to_csv(
                d / f"skill_{name}.csv", index=False)
            report[name] = {"cpu_s": cpu, "wall_s": wall}
            print(f"[peers] {cell:>16} {name:>14}: {cpu:7.2f} s CPU", flush=True)
        (d / "peers.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
