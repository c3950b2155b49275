"""Tokenizer, tiny model construction, loading and atomic saving (fast, no training)."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from driftkeel.training import models as M

from training_task import COMMON, TEXTS, TINY


@pytest.fixture(scope="module")
def tok():
    return M.train_tokenizer(TEXTS, vocab_size=300)


def test_tokenizer_special_tokens_and_padding(tok):
    ids = {tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id}
    assert len(ids) == 4 and None not in ids
    assert tok.padding_side == "left"
    assert len(tok) <= 300
    enc = tok("Check the soil")["input_ids"]
    assert enc[0] == tok.bos_token_id
    assert tok.decode(enc, skip_special_tokens=True) == "Check the soil"


def test_tokenizer_is_deterministic():
    a, b = M.train_tokenizer(TEXTS, 300), M.train_tokenizer(TEXTS, 300)
    assert a.get_vocab() == b.get_vocab()


def test_encode_prompt_and_response_truncate(tok):
    prompt = " ".join(["soil"] * 50)
    ids = M.encode_prompt(tok, prompt, 10)
    assert len(ids) == 10 and ids[0] == tok.bos_token_id
    full = M.encode_prompt(tok, prompt, 10_000)
    assert ids[1:] == full[-9:]  # the end of the prompt (next to the response) is kept
    assert M.encode_prompt(tok, "hi", 10_000) == tok(M.format_prompt("hi"))["input_ids"]
    resp = M.encode_response(tok, prompt, 5)
    assert len(resp) == 6 and resp[-1] == tok.eos_token_id and tok.bos_token_id not in resp


def test_build_save_load_roundtrip(tok, tmp_path):
    torch.manual_seed(0)
    model = M.build_tiny_causal_lm(tok, TINY)
    assert model.config.vocab_size == len(tok) and model.config.n_embd == 32
    M.set_lengths(model, 7, 9)
    out = M.save_model(model, tok, tmp_path / "m")
    names = sorted(p.name for p in out.iterdir())
    assert "model.safetensors" in names and not any(n.endswith((".bin", ".pt")) for n in names)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left behind
    loaded, ltok = M.load_causal_lm(out)
    assert ltok.get_vocab() == tok.get_vocab() and ltok.pad_token_id == tok.pad_token_id
    assert ltok.padding_side == "left"
    assert M.get_lengths(loaded) == (7, 9)
    saved = load_file(out / "model.safetensors")
    for k, v in model.state_dict().items():
        if k in saved:
            assert torch.equal(v, loaded.state_dict()[k])

    rm, rtok = M.load_reward_model(out)
    assert rm.config.num_labels == 1 and rm.config.pad_token_id == rtok.pad_token_id
    assert M.get_lengths(rm) == (7, 9)  # inherited from the policy's config
    assert torch.equal(rm.transformer.wte.weight, loaded.transformer.wte.weight)


def test_save_is_atomic(tok, tmp_path, monkeypatch):
    model = M.build_tiny_causal_lm(tok, TINY)
    M.save_model(model, tok, tmp_path / "m")
    before = (tmp_path / "m" / "model.safetensors").read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(tok), "save_pretrained", boom)
    with torch.no_grad():
        model.transformer.wte.weight.add_(1.0)
    with pytest.raises(RuntimeError, match="disk full"):
        M.save_model(model, tok, tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before  # old model intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_prepare_tokenizer_adds_pad(tok):
    tok2 = M.train_tokenizer(TEXTS, 300)
    tok2.pad_token = None
    tok2.padding_side = "right"
    M.prepare_tokenizer(tok2)
    # a pad of its own, never eos (TRL's PPO ends a response at the first pad: pad == eos drops the eos)
    assert tok2.pad_token == M.PAD != tok2.eos_token and tok2.padding_side == "left"


def test_default_lengths_come_from_common():
    from transformers import GPT2Config, GPT2LMHeadModel

    m = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10))
    assert M.get_lengths(m) == (COMMON.model_fields["max_prompt_tokens"].default,
                                COMMON.model_fields["max_response_tokens"].default)
