"""The embedding cache and the two backends."""
import numpy as np
import pytest

from driftkeel.embeddings import HASHING, Embedder, EmbeddingCache, hashing_embed, text_key


def test_hashing_is_deterministic_and_normalised(tmp_path):
    e = hashing_embed(["the cat sat", "the cat sat", "quantum ledger audit"])
    assert e.dtype == np.float32 and e.shape == (3, 384)
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(e[0], e[1]) and not np.allclose(e[0], e[2])


def test_cache_serves_repeats_without_recomputing(tmp_path):
    path = tmp_path / ".cache" / "embeddings.sqlite"
    a = Embedder(cache_path=path, backend=HASHING)
    first = a.encode(["alpha", "beta", "alpha"])
    assert a.n_computed == 2 and len(EmbeddingCache(path)) == 2
    b = Embedder(cache_path=path, backend=HASHING)       # a new process would see the same file
    again = b.encode(["beta", "alpha", "gamma"])
    assert b.n_computed == 1 and b.n_cached == 2
    assert np.array_equal(again[0], first[1]) and np.array_equal(again[1], first[0])


def test_empty_input_and_unknown_backend(tmp_path):
    assert Embedder(cache_path=None, backend=HASHING).encode([]).shape == (0, 384)
    with pytest.raises(ValueError):
        Embedder(backend="nope")
    assert text_key("x") == text_key("x") != text_key("y")


def test_minilm_is_the_default_and_semantic(tmp_path):
    emb = Embedder(cache_path=tmp_path / "e.sqlite")
    assert emb.backend == "all-MiniLM-L6-v2"
    v = emb.encode(["How do I bake sourdough bread?", "What is a good recipe for sourdough?",
                    "How do I secure a crypto wallet?"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.2
    again = Embedder(cache_path=tmp_path / "e.sqlite")
    assert np.allclose(again.encode(["How do I bake sourdough bread?"])[0], v[0]) and again.n_computed == 0


def test_caches_opened_at_the_same_instant_by_several_workers_all_work(tmp_path):
    """Stages / scale-out shards opening a new cache at once: switching the file to WAL does not wait for
    the busy timeout, so ~2% of such opens failed with "database is locked" (7 of 1,200 here on the old
    code). 300 rounds of 4 threads, each with its own connection."""
    import sqlite3
    import threading

    errors = []
    for t in range(300):
        path = tmp_path / f"r{t}" / "emb.sqlite"
        barrier = threading.Barrier(4)

        def worker():
            barrier.wait()
            try:
                EmbeddingCache(path).put(HASHING, [("k", np.ones(4, np.float32))])
            except sqlite3.OperationalError as exc:
                errors.append(str(exc))
        threads = [threading.Thread(target=worker) for _ in range(4)]
        [th.start() for th in threads]
        [th.join() for th in threads]
    assert errors == []
    con = sqlite3.connect(tmp_path / "r0" / "emb.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_json_writers_take_numpy_arrays_and_never_write_bare_nan(tmp_path):
    import json

    from driftkeel.io import read_jsonl, write_json, write_jsonl

    obj = {"arr": np.array([1.5, np.nan]), "f32": np.float32("nan"), "one": np.array([np.inf]), "n": np.int64(3)}
    write_json(tmp_path / "a.json", obj)
    text = (tmp_path / "a.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}")) == \
        {"arr": [1.5, None], "f32": None, "one": [None], "n": 3}
    write_jsonl(tmp_path / "a.jsonl", [obj])
    assert read_jsonl(tmp_path / "a.jsonl") == [{"arr": [1.5, None], "f32": None, "one": [None], "n": 3}]
