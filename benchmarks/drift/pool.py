"""The real-text pools of the drift benchmark, embedded once into benchmarks/drift/.cache.

Pools (every window of every real cell is drawn from them by index):
- alpaca: all 20,000 Alpaca instructions (`general` and `creative_writing`), the 10k-vs-10k timing uses
  two disjoint halves of it;
- gsm8k: a seeded sample of 1,500 GSM8K training questions;
- hh: the 1,762 HH-RLHF harmless prompts of pairs/hh_harmless_dev (the raw `prompt` field, i.e. the
  dialogue with its "Human:" / "Assistant:" turns, as a user would pass it to `driftkeel drift`).

`python benchmarks/drift/pool.py` embeds whatever is not cached yet (MiniLM, about 100-200 short
prompts/s on 2 free cores) and prints the counts.
"""
from __future__ import annotations

import gzip
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("DRIFTKEEL_SHARED_DATA", HERE.parents[2] / "shared" / "data"))
if not SHARED.exists():
    SHARED = Path("/work/shared/data")
CACHE = HERE / ".cache" / "embeddings.sqlite"
N_GSM8K = 1500


def _jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_texts() -> dict[str, dict]:
    """{pool: {"text": [...], "category": [...]}} in a fixed order."""
    alpaca = _jsonl_gz(SHARED / "prompts" / "alpaca_first20k.jsonl.gz")
    gsm = _jsonl_gz(SHARED / "prompts" / "gsm8k_train.jsonl.gz")
    pick = np.sort(np.random.default_rng(20261125).choice(len(gsm), size=N_GSM8K, replace=False))
    hh = _jsonl_gz(SHARED / "pairs" / "hh_harmless_dev.jsonl.gz")
    return {
        "alpaca": {"text": [r["text"] for r in alpaca], "category": [r["category"] for r in alpaca]},
        "gsm8k": {"text": [gsm[i]["text"] for i in pick], "category": ["math"] * N_GSM8K},
        "hh": {"text": [r["prompt"] for r in hh], "category": ["hh_harmless"] * len(hh)},
    }


def embedder():
    sys.path.insert(0, str(HERE.parents[1] / "src"))
    from driftkeel.embeddings import Embedder

    return Embedder(cache_path=CACHE)


def load_pools(embed: bool = True) -> dict[str, dict]:
    """Texts plus float32 MiniLM embeddings per pool (computed once, then served from the cache)."""
    pools = load_texts()
    if embed:
        emb = embedder()
        for name, pool in pools.items():
            t0 = time.perf_counter()
            pool["emb"] = emb.encode(pool["text"])
            print(f"[pool] {name}: {len(pool['text'])} texts, embedded {emb.n_computed} new "
                  f"in {time.perf_counter() - t0:.1f}s", flush=True)
            emb.n_computed = 0
    return pools


if __name__ == "__main__":
    load_pools()
