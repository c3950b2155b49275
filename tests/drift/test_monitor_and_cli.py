"""Drift over a small synthetic stream, the report files, and the two-file CLI check."""
import json

import numpy as np
import pandas as pd
import pytest

from driftkeel.config import DriftParams
from driftkeel.drift.cli import drift_check, run_drift_cli
from driftkeel.drift.monitor import analyse_stream
from driftkeel.drift.report import write_outputs
from driftkeel.embeddings import HASHING, Embedder

OLD = ["cooking pasta with garlic", "baking sourdough bread", "planning a trip to Lisbon", "packing for a hike",
       "learning piano scales", "growing tomato plants", "budgeting a monthly salary", "training for a marathon"]
NEW = ["securing a crypto wallet", "staking validator rewards", "minting an NFT token", "auditing a smart contract"]


def _stream(n_batches=4, per_batch=60, new_from=3, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for b in range(n_batches):
        for i in range(per_batch):
            topics = OLD + (NEW * 2 if b >= new_from else [])
            t = topics[rng.integers(len(topics))]
            prompt = f"How do I go about {t} {['today', 'quickly', 'safely', 'cheaply'][rng.integers(4)]} #{i % 7}?"
            good = f"Start with {t}, then check details step by step."
            bad = "It depends. " * int(rng.integers(1, 4))
            a_good = rng.random() < 0.5
            rows.append({"comparison_id": f"c{b}-{i}", "batch": b, "prompt_id": f"p{b}-{i}", "prompt": prompt,
                         "response_a": good if a_good else bad, "response_b": bad if a_good else good,
                         "label": ("a" if a_good else "b") if rng.random() < 0.9 else ("b" if a_good else "a"),
                         "confidence": 1.0, "agreement": float(rng.choice([1.0, 2 / 3], p=[0.8, 0.2]))})
    return pd.DataFrame(rows)


@pytest.fixture()
def embedder(tmp_path):
    return Embedder(cache_path=tmp_path / "emb.sqlite", backend=HASHING)


def test_stream_flags_new_topics_not_reference(embedder, tmp_path):
    params = DriftParams(reference_batches=2, min_window=20, n_permutations=99)
    report, plots = analyse_stream(_stream(), None, params, embedder, seed=0, output_embedder=embedder)
    hist = {h["batch"]: h for h in report["history"]}
    assert not hist[0]["alarm"] and not hist[1]["alarm"] and not hist[2]["alarm"]
    assert hist[3]["alarm"] and report["current_batch"] == 3
    assert report["status"] == "alarm" and report["decision"]["action"] != "none"
    prompt = next(t for t in report["tests"] if t["signal"] == "prompt")
    assert prompt["alpha"] == pytest.approx(0.05 / prompt["n_signals_in_family"])
    assert {t["test"] for t in report["tests"]} >= {"prompt_embedding", "output_text_stats", "output_embedding",
                                                    "label_agreement_mwu", "reward_score_ks", "reward_margin_ks",
                                                    "reward_ensemble_disagreement", "reward_accuracy_drop",
                                                    "reward_mcnemar", "length_preference_fisher", "perplexity_ks"}
    new = report["clusters"]["new_clusters"]
    assert new and any(w in " ".join(new[0]["top_words"]) for w in ("crypto", "nft", "validator", "wallet",
                                                                     "smart", "staking", "minting", "auditing"))
    out = write_outputs(tmp_path / "drift", report, plots)
    for p in out["paths"].values():
        assert p.exists()
    html = (tmp_path / "drift" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "http" not in html.split("<body>")[1][:2000]
    assert "Prompt clusters" in html and "New clusters" in html
    hist_csv = pd.read_csv(tmp_path / "drift" / "plots" / "history.csv")
    assert {"batch", "mmd2", "p_value", "alarm"} <= set(hist_csv.columns) and len(hist_csv) == 4
    metrics = json.loads((tmp_path / "drift" / "metrics.json").read_text())
    assert all(v is None or isinstance(v, (int, float)) for v in metrics.values())


def test_stream_with_only_reference_batches_is_insufficient(embedder):
    report, _ = analyse_stream(_stream(n_batches=2), None, DriftParams(reference_batches=2), embedder)
    assert report["status"] == "insufficient data" and report["decision"]["action"] == "none"


def test_tiny_stream_is_insufficient_not_a_crash(embedder):
    report, _ = analyse_stream(_stream(n_batches=3, per_batch=5), None, DriftParams(min_window=30), embedder)
    assert report["status"] == "insufficient data"
    assert not any(t["alarm"] for t in report["tests"])


def test_drift_check_two_windows(embedder, tmp_path):
    rng = np.random.default_rng(0)
    ref = [{"prompt": f"How do I go about {OLD[rng.integers(8)]} #{i}", "response": "ok " * int(rng.integers(5, 9))}
           for i in range(60)]
    same = [{"text": f"How do I go about {OLD[rng.integers(8)]} #{i}", "response": "ok " * int(rng.integers(5, 9))}
            for i in range(60)]
    shifted = [{"prompt": f"How do I go about {NEW[rng.integers(4)]} #{i}", "response": "ok " * 30} for i in range(60)]
    params = DriftParams(min_window=20, n_permutations=99)
    quiet = drift_check(ref, same, params, embedder=embedder)
    loud = drift_check(ref, shifted, params, embedder=embedder)
    assert quiet["decision"]["action"] == "none"
    assert loud["status"] == "alarm" and {t["signal"] for t in loud["tests"] if t["alarm"]} == {"prompt", "output"}
    tiny = drift_check(ref[:3], shifted[:3], params, embedder=embedder)
    assert tiny["status"] == "insufficient data" and tiny["decision"]["action"] == "none"
    # files, with junk lines counted not fatal
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("\n".join(json.dumps(r) for r in ref) + "\nnot json\n[1]\n{\"other\": 1}\n")
    with a.open("ab") as fh:
        fh.write(b'{"prompt": "caf\xe9 latin-1"}\n')                  # not UTF-8: counted, not a crash
        fh.write(b"[" * 100_000 + b"\n")                                   # nested past the recursion limit

    b.write_text("\n".join(json.dumps(r) for r in shifted) + "\n")
    rep = run_drift_cli(a, b, tmp_path / "out", params, embedder=embedder)
    assert rep["inputs"]["reference_skipped_lines"] == {"invalid_utf8": 1, "invalid_json": 2, "not_an_object": 1}
    assert rep["inputs"]["reference_rows_without_text"] == 1
    assert (tmp_path / "out" / "report.html").exists() and (tmp_path / "out" / "decision.json").exists()


@pytest.mark.parametrize("current,why", [
    ([], "empty window"),
    ([{"prompt": f"How do I go about {OLD[i % 8]} #{i}"} for i in range(10)], "below min_window"),
    ([{"prompt": 3}, {"prompt": None}, {"prompt": ["x"]}, {"prompt": "  "}] * 15, "empty window"),
    ([{"prompt": "the very same prompt"}] * 60, "below min_window"),     # one distinct prompt
    ([{"prompt": 3, "response_a": "x y", "response_b": "y z"}] * 30, "empty window"),   # crashed (pandas 3)
    ([{"prompt": None, "response_a": "x", "response_b": "y"}] * 30, "empty window"),
])
def test_bad_current_windows_give_insufficient_data_not_an_alarm(embedder, current, why):
    ref = [{"prompt": f"How do I go about {OLD[i % 8]} #{i}"} for i in range(60)]
    rep = drift_check(ref, current, DriftParams(min_window=20, n_permutations=99), embedder=embedder)
    assert rep["status"] == "insufficient data" and rep["decision"]["action"] == "none"
    assert why in rep["tests"][0]["reason"]


def test_identical_prompts_with_distinct_ids_are_insufficient_too(embedder):
    ref = [{"prompt": f"How do I go about {OLD[i % 8]} #{i}"} for i in range(60)]
    same = [{"prompt": "the very same prompt", "prompt_id": str(i)} for i in range(60)]
    rep = drift_check(ref, same, DriftParams(min_window=20, n_permutations=99), embedder=embedder)
    assert rep["status"] == "insufficient data" and "identical" in rep["tests"][0]["reason"]


def _pairs(n, rng, vocab, pid=""):
    return [{"prompt": " ".join(rng.choice(vocab, 12)), "prompt_id": f"{pid}{i}",
             "response_a": " ".join(rng.choice(vocab[:40], 4)), "response_b": " ".join(rng.choice(vocab[:40], 4)),
             "label": str(rng.choice(["a", "b"]))} for i in range(n)]


def test_reward_tests_use_one_value_per_pair_and_count_pairs_for_min_window():
    """A pair's two responses share its prompt, so their scores are correlated: tested as 2n independent
    values, reward_score_ks alarmed 16% of the time at alpha 0.05 under no drift (same generator). One
    value per pair now (4% in the same check). And a current window of 3 pairs with min_window 5 ran the
    response-level tests on its 6 responses (and could alarm)."""
    from driftkeel.drift.window import reward_tests, window_from_rows

    emb = Embedder(cache_path=None, backend=HASHING)
    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i}" for i in range(300)])
    ref, cur = window_from_rows(_pairs(80, rng, vocab, "r")), window_from_rows(_pairs(30, rng, vocab, "c"))
    tests = {t["test"]: t for t in reward_tests(ref, cur, DriftParams(min_window=5), emb, seed=0)}
    assert tests["reward_score_ks"]["n_current"] == 30 == tests["reward_ensemble_disagreement"]["n_current"]
    n_held = tests["reward_margin_ks"]["n_reference"]
    assert tests["reward_score_ks"]["n_reference"] == n_held == tests["reward_ensemble_disagreement"]["n_reference"]
    small = window_from_rows(_pairs(3, rng, vocab, "s"))
    assert all(t["status"] == "insufficient data"
               for t in reward_tests(ref, small, DriftParams(min_window=5), emb, seed=0))
    rep = drift_check(_pairs(80, rng, vocab, "r"), _pairs(3, rng, vocab, "s"), DriftParams(min_window=5),
                      embedder=emb)
    assert rep["status"] == "insufficient data" and rep["decision"]["action"] == "none"
    assert all(t["status"] == "insufficient data" for t in rep["tests"] if t["signal"] in ("output", "reward"))


def test_reward_scores_given_per_pair_are_one_value_per_pair():
    from driftkeel.drift.window import window_from_rows

    w = window_from_rows([{"prompt": "p", "reward_a": 1.0, "reward_b": 3.0, "label": "a"}] * 4)
    assert w.user_reward.tolist() == [2.0] * 4 and w.user_margin.tolist() == [-2.0] * 4


def test_perplexity_of_a_text_with_no_scored_token_is_nan_not_one(tmp_path):
    """Without a bos token the first token is never scored: a one-token text had mask 0 -> exp(0) = 1.0,
    a "perfect" perplexity that entered the KS test."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from driftkeel.drift.perplexity import perplexities

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate("hello world how are you".split())}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), n_positions=32, n_embd=16, n_layer=1, n_head=2)
                    ).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    ppl = perplexities(tmp_path, ["hello", "hello world how are you"])
    assert np.isnan(ppl[0]) and np.isfinite(ppl[1]) and ppl[1] > 1.0
