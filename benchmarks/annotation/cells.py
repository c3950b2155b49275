"""Benchmark cells: the same judgements, golden anchors and truth for every method.

Each cell is written to ``<work>/<name>/``: ``judgements.csv`` (item, worker, label, batch,
response_time_s), ``gold.csv`` (item, label: the golden anchors a method may use), ``truth.csv``
(item, true_label: scoring only), ``workers.csv`` (worker, true_accuracy, spammer, degraded_from) and
``meta.json``.

Cells (seeds differ from the demo data's, nothing is tuned to them):

- ``sim_*``: the project's drifting-stream simulator (:mod:`driftkeel.data.simulator`), 10 batches x
  300 comparisons, 24 annotators, 8% golden, the pool change (a noisier, A- and length-biased pool)
  at batch 7 unless said otherwise; ``few`` = 3 judgements per comparison, ``many`` = 7; ``spamNN`` =
  NN% of the annotators are uniform spammers; ``biased`` = the biased pool from batch 2; ``fatigue`` =
  three regular annotators answer at random from batch 5 (their quality drops); ``nochange`` = no pool
  change (label-drift false alarms).
- ``hh_*``: the 300 real HH-RLHF harmless pairs (../shared/data/hh_harmless_sample.jsonl), shown in a
  random order, judged by simulated annotators (the simulator's annotator model: skill, position bias,
  verbosity bias on the real word counts, spammers) with a utility gap per pair drawn from Exp(1);
  truth = the human ``chosen`` side.
- ``rte_*``, ``temp_*``: the real crowd labels with expert gold (Snow et al. 2008, ../shared/data/
  annotation), clean and with added uniform spammers (20 spammer ids) making 20% / 40% of all
  judgements; no golden anchors (gold is only for scoring).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from driftkeel.config import DataParams
from driftkeel.data.simulator import Annotator, _judge, make_annotators, simulate

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
SMALL = dict(n_sft_demos=10, pool_size=10, n_eval_pairs=10, n_eval_prompts=4)


def _write(cell: Path, judgements: pd.DataFrame, gold: dict, truth: pd.Series, meta: dict,
           spammers=(), degraded: dict | None = None) -> None:
    cell.mkdir(parents=True, exist_ok=True)
    j = judgements[["item", "worker", "label", "batch", "response_time_s"]].reset_index(drop=True)
    j.to_csv(cell / "judgements.csv", index=False)
    pd.DataFrame({"item": list(gold), "label": list(gold.values())}).to_csv(cell / "gold.csv", index=False)
    pd.DataFrame({"item": truth.index, "true_label": truth.to_numpy()}).to_csv(cell / "truth.csv", index=False)
    ok = j["label"].to_numpy() == j["item"].map(truth).to_numpy()
    acc = pd.Series(ok, index=j.index).groupby(j["worker"]).mean()
    degraded = degraded or {}
    pd.DataFrame({"worker": acc.index, "true_accuracy": acc.to_numpy(),
                  "spammer": acc.index.isin(list(spammers)),
                  "degraded_from": [degraded.get(w, -1) for w in acc.index]}).to_csv(cell / "workers.csv", index=False)
    meta = {**meta, "n_judgements": int(len(j)), "n_items": int(j["item"].nunique()),
            "n_workers": int(j["worker"].nunique()), "n_golden": len(gold)}
    (cell / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def sim_cell(work: Path, name: str, *, seed: int, per_item: int, spam: float, pool_change: int = 7,
             fatigue: bool = False) -> None:
    p = DataParams(seed=seed, n_batches=10, comparisons_per_batch=300, judgements_per_comparison=per_item,
                   n_annotators=24, spammer_fraction=spam, golden_fraction=0.08, pool_change_batch=pool_change,
                   **SMALL)
    sim = simulate(p)
    j = pd.DataFrame([r for b in sim.stream.values() for r in b])
    truth = pd.DataFrame(sim.truth_comparisons).set_index("comparison_id")["true_label"]
    degraded = {}
    if fatigue:  # three regular annotators answer at random from batch 5 on
        regular = [a["annotator_id"] for a in sim.truth["annotators"]
                   if not a["spammer"] and a["first_batch"] == 0 and a["last_batch"] == p.n_batches - 1]
        rng = np.random.default_rng([seed, 99])
        for w in sorted(rng.choice(regular, size=3, replace=False).tolist()):
            degraded[w] = 5
            rows = (j["annotator_id"] == w) & (j["batch"] >= 5)
            j.loc[rows, "label"] = rng.choice(["a", "b"], size=int(rows.sum()))
    spammers = [a["annotator_id"] for a in sim.truth["annotators"] if a["spammer"]]
    j = j.rename(columns={"comparison_id": "item", "annotator_id": "worker"})
    gold = {g["comparison_id"]: g["gold_label"] for g in sim.golden}
    _write(work / name, j, gold, truth, {"name": name, "kind": "simulator", "seed": seed, "per_item": per_item,
                                         "spammer_fraction": spam, "pool_change_batch": pool_change if pool_change < 10 else None,
                                         "fatigue": fatigue, "n_batches": 10}, spammers, degraded)


def hh_cell(work: Path, name: str, *, seed: int, per_item: int, spam: float) -> None:
    rows = [json.loads(line) for line in (SHARED / "hh_harmless_sample.jsonl").read_text().splitlines() if line.strip()]
    rng = np.random.default_rng([seed, 7])
    p = DataParams(seed=seed, n_annotators=24, spammer_fraction=spam, n_batches=3, pool_change_batch=3, **SMALL)
    anns: list[Annotator] = make_annotators(p, np.random.default_rng([seed, 1]))
    out, truth, gold = [], {}, {}
    for i, r in enumerate(rows):
        item = f"hh-{i:04d}"
        chosen_first = bool(rng.random() < 0.5)
        a_text, b_text = (r["chosen"], r["rejected"]) if chosen_first else (r["rejected"], r["chosen"])
        gap = float(rng.exponential(1.0))
        ua, ub = (gap, 0.0) if chosen_first else (0.0, gap)
        truth[item] = "a" if chosen_first else "b"
        if rng.random() < 0.08:
            gold[item] = truth[item]
        wa, wb = len(a_text.split()), len(b_text.split())
        batch = i * 3 // len(rows)
        for k in rng.choice(len(anns), size=per_item, replace=False):
            ann = anns[k]
            out.append({"item": item, "worker": ann.annotator_id, "label": _judge(rng, ann, ua, ub, wa, wb),
                        "batch": batch, "response_time_s": round(float(ann.speed * rng.lognormal(0, 0.3)), 2)})
    spammers = [a.annotator_id for a in anns if a.spammer]
    _write(work / name, pd.DataFrame(out), gold, pd.Series(truth),
           {"name": name, "kind": "hh+simulated annotators", "seed": seed, "per_item": per_item,
            "spammer_fraction": spam, "pool_change_batch": None, "n_batches": 3}, spammers)


def real_cell(work: Path, name: str, source: str, *, spam_share: float, seed: int) -> None:
    d = SHARED / "annotation" / source
    lab = pd.read_csv(d / "labels.csv", dtype=str)
    gold = pd.read_csv(d / "gold.csv", dtype=str)
    classes = sorted(gold["gold"].unique())
    to_ab = dict(zip(classes, ["a", "b"]))  # rte: 0/1, temp: after/before
    j = pd.DataFrame({"item": lab["item_id"], "worker": lab["worker_id"], "label": lab["label"].map(to_ab),
                      "batch": 0, "response_time_s": np.nan})
    spammers: list[str] = []
    if spam_share > 0:
        rng = np.random.default_rng([seed, 13])
        n_spam = int(round(spam_share / (1 - spam_share) * len(j)))
        spammers = [f"spam-{k:02d}" for k in range(20)]
        items = j["item"].unique()
        taken = set()
        rows = []
        while len(rows) < n_spam:
            it, w = items[rng.integers(len(items))], spammers[rng.integers(len(spammers))]
            if (it, w) in taken:
                continue
            taken.add((it, w))
            rows.append({"item": it, "worker": w, "label": "a" if rng.random() < 0.5 else "b",
                         "batch": 0, "response_time_s": np.nan})
        j = pd.concat([j, pd.DataFrame(rows)], ignore_index=True)
    truth = gold.set_index("item_id")["gold"].map(to_ab)
    _write(work / name, j, {}, truth, {"name": name, "kind": f"real ({source})", "seed": seed,
                                       "spam_share_of_judgements": spam_share, "pool_change_batch": None,
                                       "n_batches": 1}, spammers)


def build(work: Path, only: list[str] | None = None) -> list[str]:
    specs = {
        "sim_few_clean": lambda n: sim_cell(work, n, seed=101, per_item=3, spam=0.0),
        "sim_few_spam10": lambda n: sim_cell(work, n, seed=102, per_item=3, spam=0.1),
        "sim_few_spam20": lambda n: sim_cell(work, n, seed=103, per_item=3, spam=0.2),
        "sim_few_spam30": lambda n: sim_cell(work, n, seed=104, per_item=3, spam=0.3),
        "sim_many_clean": lambda n: sim_cell(work, n, seed=105, per_item=7, spam=0.0),
        "sim_many_spam30": lambda n: sim_cell(work, n, seed=106, per_item=7, spam=0.3),
        "sim_biased": lambda n: sim_cell(work, n, seed=107, per_item=3, spam=0.1, pool_change=2),
        "sim_fatigue": lambda n: sim_cell(work, n, seed=108, per_item=3, spam=0.1, fatigue=True),
        "sim_nochange": lambda n: sim_cell(work, n, seed=109, per_item=3, spam=0.1, pool_change=10),
        "hh_few_clean": lambda n: hh_cell(work, n, seed=201, per_item=3, spam=0.0),
        "hh_spam20": lambda n: hh_cell(work, n, seed=202, per_item=5, spam=0.2),
        "rte_clean": lambda n: real_cell(work, n, "rte", spam_share=0.0, seed=301),
        "rte_spam20": lambda n: real_cell(work, n, "rte", spam_share=0.2, seed=302),
        "rte_spam40": lambda n: real_cell(work, n, "rte", spam_share=0.4, seed=303),
        "temp_clean": lambda n: real_cell(work, n, "temp", spam_share=0.0, seed=304),
        "temp_spam20": lambda n: real_cell(work, n, "temp", spam_share=0.2, seed=305),
        "temp_spam40": lambda n: real_cell(work, n, "temp", spam_share=0.4, seed=306),
    }
    names = [n for n in specs if not only or n in only]
    for n in names:
        if not (work / n / "meta.json").exists():
            specs[n](n)
    return names
