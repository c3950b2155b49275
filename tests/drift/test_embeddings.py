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
