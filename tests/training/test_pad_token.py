"""Tokenizers shipped without a pad token (Llama, Mistral, GPT-NeoX) or with pad == eos (Qwen2) get a
distinct pad token, and every model loaded with them is resized to match.

TRL's PPO loop (trl.experimental.ppo) ends a response at its first pad token: with pad == eos the eos
would be masked out of the PPO loss (no signal to stop) and the reward/value read one token early.
The models here are tiny random-init Llama / GPT-NeoX / Qwen2 built locally (no network) with
tokenizers trained on the test texts."""
from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    GPTNeoXTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaTokenizer,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Tokenizer,
)

from driftkeel.training import models as M
from driftkeel.training.ppo import _check_same_tokenizer

from training_task import COMMON, PAIRS, TEXTS

ARCHS = ("llama", "neox", "qwen2")


def _bpe(pre, specials, vocab_size, alphabet=()):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre
    tok.train_from_iterator(TEXTS, trainer=trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=specials, initial_alphabet=list(alphabet),
        show_progress=False))
    d = json.loads(tok.to_str())["model"]
    return d["vocab"], [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in d["merges"]]


def _build(arch: str):
    """(model, tokenizer) of a tiny `arch` as its Hub checkpoints ship: no pad token, or pad == eos."""
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                 max_position_embeddings=128)
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if arch == "llama":  # SentencePiece-like (Metaspace + byte fallback), <s>/</s>, no pad, untied head
        specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
        vocab, merges = _bpe(pre_tokenizers.Sequence([
            pre_tokenizers.Split("\n", "isolated"),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)]), specials, 400)
        merges = [(a, b) for a, b in merges if "\n" not in a + b]
        kept = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if "\n" not in t]
        tok = LlamaTokenizer(vocab={t: i for i, t in enumerate(kept)}, merges=merges, unk_token="<unk>",
                             bos_token="<s>", eos_token="</s>", add_bos_token=True, add_eos_token=False)
        cfg = LlamaConfig(vocab_size=len(tok), num_key_value_heads=1, bos_token_id=tok.bos_token_id,
                          eos_token_id=tok.eos_token_id, pad_token_id=None, tie_word_embeddings=False, **small)
        model = LlamaForCausalLM(cfg)
    elif arch == "neox":  # byte-level BPE, bos = eos = <|endoftext|>, no pad (as Pythia)
        vocab, merges = _bpe(byte_level, ["<|endoftext|>"], 320, pre_tokenizers.ByteLevel.alphabet())
        tok = GPTNeoXTokenizer(vocab=vocab, merges=merges, pad_token=None)
        cfg = GPTNeoXConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                            **small)
        model = GPTNeoXForCausalLM(cfg)
    else:  # qwen2: byte-level BPE, no bos, pad = eos = <|endoftext|> (as Qwen2.5 base), tied head
        vocab, merges = _bpe(byte_level, ["<|endoftext|>"], 320, pre_tokenizers.ByteLevel.alphabet())
        tok = Qwen2Tokenizer(vocab=vocab, merges=merges)
        cfg = Qwen2Config(vocab_size=len(tok), num_key_value_heads=1, bos_token_id=None,
                          eos_token_id=tok.eos_token_id, tie_word_embeddings=True, **small)
        model = Qwen2ForCausalLM(cfg)
    assert tok.pad_token is None or tok.pad_token_id == tok.eos_token_id
    return model, tok


@pytest.fixture(scope="module")
def base_dirs(tmp_path_factory) -> dict:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("bases")
    out = {}
    for arch in ARCHS:
        model, tok = _build(arch)
        model.save_pretrained(root / arch)
        tok.save_pretrained(root / arch)
        out[arch] = root / arch
    return out


def _ppo_masks(tok, generated: list[int]):
    """TRL's rollout post-processing (ppo_trainer.py, `truncate_response` then `first_true_indices`):
    (index where the reward/value is read, per-token flag: in the PPO loss)."""
    from trl.experimental.ppo.ppo_trainer import first_true_indices, truncate_response

    post = truncate_response(tok.eos_token_id, tok.pad_token_id, torch.tensor([generated]))
    seq_len = first_true_indices(post == tok.pad_token_id) - 1
    in_loss = ~(torch.arange(post.shape[1]) > seq_len.unsqueeze(1))
    return int(seq_len), in_loss[0].tolist()


@pytest.mark.parametrize("arch", ARCHS)
def test_pad_differs_from_eos_and_eos_stays_in_the_ppo_loss(base_dirs, arch):
    policy, tok = M.load_causal_lm(base_dirs[arch])
    assert tok.pad_token is not None and tok.pad_token_id != tok.eos_token_id
    assert tok.padding_side == "left"
    assert policy.get_input_embeddings().num_embeddings >= len(tok)
    assert policy.config.pad_token_id == tok.pad_token_id == policy.generation_config.pad_token_id
    body = M.encode_response(tok, "Check the soil", 3)[:-1]
    eos_at = len(body)
    read_at, in_loss = _ppo_masks(tok, body + [tok.eos_token_id] + body[:2])
    assert read_at == eos_at  # reward and value read at the eos
    assert in_loss[:eos_at + 1] == [True] * (eos_at + 1) and not any(in_loss[eos_at + 1:])
    with torch.no_grad():  # the pad id embeds (no index error) and has an output logit
        ids = torch.tensor([[tok.pad_token_id] + body + [tok.eos_token_id]])
        logits = policy(input_ids=ids, attention_mask=(ids != tok.pad_token_id).long()).logits
    assert logits.isfinite().all() and logits.shape[-1] > tok.pad_token_id


@pytest.mark.parametrize("arch", ARCHS)
def test_policy_and_reward_model_from_one_folder_share_the_tokenizer(base_dirs, arch, tmp_path):
    policy, ptok = M.load_causal_lm(base_dirs[arch])
    reward, rtok = M.load_reward_model(base_dirs[arch])
    _check_same_tokenizer(ptok, rtok)
    assert reward.config.pad_token_id == rtok.pad_token_id != rtok.eos_token_id
    assert reward.get_input_embeddings().num_embeddings == policy.get_input_embeddings().num_embeddings
    # the reward model reads the score at the eos of a right-padded sequence, not one token before
    seq = M.encode_prompt(rtok, PAIRS[0]["prompt"], 20) + M.encode_response(rtok, PAIRS[0]["chosen"], 6)
    ids = torch.tensor([seq + [rtok.pad_token_id] * 3, seq[:-1] + [rtok.pad_token_id] * 4])
    with torch.no_grad():
        scores = reward(input_ids=ids, attention_mask=(ids != rtok.pad_token_id).long()).logits[:, 0]
        alone = reward(input_ids=torch.tensor([seq])).logits[0, 0]
    assert torch.allclose(scores[0], alone, atol=1e-5) and not torch.allclose(scores[0], scores[1])

    # a model saved after SFT (resized, with its pad token) reloads with no further change
    out = M.save_model(policy, ptok, tmp_path / "sft")
    again, atok = M.load_causal_lm(out)
    assert atok.get_vocab() == ptok.get_vocab() and atok.pad_token_id == ptok.pad_token_id
    assert again.get_input_embeddings().num_embeddings == policy.get_input_embeddings().num_embeddings
    for k, v in policy.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    reward2, rtok2 = M.load_reward_model(out)
    _check_same_tokenizer(atok, rtok2)
    assert reward2.config.pad_token_id == atok.pad_token_id


def test_resolve_fits_an_already_loaded_pair(base_dirs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(base_dirs["llama"]))
    tok = AutoTokenizer.from_pretrained(str(base_dirs["llama"]))
    model, tok = M.resolve((model, tok), M.load_causal_lm)
    assert tok.pad_token_id != tok.eos_token_id
    assert model.get_input_embeddings().num_embeddings >= len(tok) and model.config.pad_token_id == tok.pad_token_id


def test_tiny_default_tokens_are_unchanged():
    tok = M.train_tokenizer(TEXTS, 300)
    vocab, n, pad = tok.get_vocab(), len(tok), tok.pad_token_id
    assert M.prepare_tokenizer(tok) is tok
    assert tok.get_vocab() == vocab and len(tok) == n and tok.pad_token_id == pad == vocab[M.PAD]
    model = M.build_tiny_causal_lm(tok, COMMON.tiny_model)
    assert model.get_input_embeddings().num_embeddings == n


def test_train_ppo_gives_trl_a_pad_distinct_from_eos(base_dirs, tmp_path, monkeypatch):
    """Inside driftkeel's PPO stage (policy and reward from one Llama folder): the pad id TRL masks
    with is not the stop (eos) id, and the saved policy keeps the tokenizer."""
    import trl.experimental.ppo.ppo_trainer as P

    from driftkeel.config import PpoParams
    from driftkeel.training.ppo import train_ppo

    seen = []
    orig = P.truncate_response

    def spy(stop_id, pad_id, responses):
        seen.append((stop_id, pad_id))
        return orig(stop_id, pad_id, responses)

    monkeypatch.setattr(P, "truncate_response", spy)
    prompts = [p["prompt"] for p in PAIRS[:4]]
    params = PpoParams(total_episodes=2, batch_size=2, mini_batch_size=2, learning_rate=1e-3,
                       response_length=4, n_prompts=4, ppo_epochs=1)
    d = base_dirs["llama"]
    res = train_ppo(d, [d], prompts, tmp_path / "ppo", COMMON, params)
    assert seen and all(stop != pad for stop, pad in seen)
    _, tok = M.load_causal_lm(d)
    model, saved_tok = M.load_causal_lm(res["model_dir"])
    assert saved_tok.get_vocab() == tok.get_vocab() and saved_tok.pad_token_id == tok.pad_token_id
    assert model.get_input_embeddings().num_embeddings == len(tok)


def test_a_tokenizer_whose_vocab_has_the_pad_token_gets_that_id_back():
    tok = M.train_tokenizer(TEXTS, 300)
    pad, n = tok.pad_token_id, len(tok)
    tok.pad_token = None
    M.prepare_tokenizer(tok)
    assert tok.pad_token == M.PAD and tok.pad_token_id == pad != tok.eos_token_id and len(tok) == n
    tok.pad_token = tok.eos_token  # pad == eos is replaced as well
    M.prepare_tokenizer(tok)
    assert tok.pad_token_id == pad and len(tok) == n
