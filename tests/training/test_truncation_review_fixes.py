"""Review fixes: SFT and DPO truncate exactly as inference does (the prompt's LAST tokens, the response's
first max_response_tokens + eos; nothing silently dropped), and encode_response gives the ids joint
tokenization of prompt + response gives (SentencePiece/Metaspace tokenizers). Tiny, no real training:
the trainers are built and their prepared datasets inspected; train_and_save is stubbed out."""
from __future__ import annotations

import pytest
import torch
from training_task import COMMON, DEMOS, PAIRS, TEXTS, TINY

from driftkeel.config import DpoParams, RlParams, SftParams
from driftkeel.training import dpo as dpo_mod
from driftkeel.training import models as M
from driftkeel.training import sft as sft_mod

MP, MR = COMMON.max_prompt_tokens, COMMON.max_response_tokens
LONG = "Some background first. " * 12   # the prompt alone is longer than max_prompt + max_response + 1
MID = "Note. " * 4                       # longer than max_prompt_tokens, shorter than max_length


def _capture(monkeypatch, module) -> dict:
    """Replace module.train_and_save: keep the trainer, train nothing, save nothing."""
    seen = {}

    def fake(trainer, *args, **kwargs):
        seen["trainer"] = trainer
        return trainer.model, 1.0

    monkeypatch.setattr(module, "train_and_save", fake)
    return seen


def _metaspace_tokenizer():
    """A Llama-2 / Mistral-v0.1 style tokenizer (SentencePiece 'Metaspace', prepend_scheme='first': a
    '▁' is prepended to the start of every tokenizer call), trained locally on the task's text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split("\n", "isolated"),
                                                pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")])
    tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    tk.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"],
                                                      show_progress=False))
    tk.post_processor = processors.TemplateProcessing(single="<s> $A",
                                                      special_tokens=[("<s>", tk.token_to_id("<s>"))])
    return M.prepare_tokenizer(PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>",
                                                       unk_token="<unk>"))


# ------------------------------------------------------------------------------------ encode_response


def test_encode_response_matches_joint_tokenization_with_a_metaspace_tokenizer():
    tok = _metaspace_tokenizer()
    for p in PAIRS[:6]:
        for response in (p["chosen"], p["rejected"]):
            joint = tok(M.format_prompt(p["prompt"]) + response)["input_ids"]
            prompt_ids = M.encode_prompt(tok, p["prompt"], 10**6)
            assert joint[:len(prompt_ids)] == prompt_ids
            want = joint[len(prompt_ids):] + [tok.eos_token_id]
            assert M.encode_response(tok, response, 10**6, prompt=p["prompt"]) == want
            assert M.encode_response(tok, response, 10**6) == want   # the "\n" context alone gives the same
            assert M.encode_response(tok, response, 3) == want[:3] + [tok.eos_token_id]
    assert "▁" not in tok.convert_ids_to_tokens(M.encode_response(tok, "Check the soil", 10)[:1])


def test_encode_response_unchanged_for_the_tiny_byte_level_tokenizer():
    tok = M.train_tokenizer(TEXTS, vocab_size=TINY.vocab_size)
    responses = [d["response"] for d in DEMOS[:8]] + [PAIRS[0]["rejected"], " leading space", "\n\nnewlines",
                                                     "", "  two spaces", "soil" * 30]
    for r in responses:
        for prompt in ("", DEMOS[0]["prompt"], LONG):
            old = tok(r, add_special_tokens=False)["input_ids"][:MR] + [tok.eos_token_id]
            assert M.encode_response(tok, r, MR, prompt=prompt) == old
            assert M.encode_response(tok, r, MR) == old


# ------------------------------------------------------------------------------------------------ SFT


def _long_demos() -> list[dict]:
    return (list(DEMOS[:4]) + [{"prompt": LONG + d["prompt"], "response": d["response"]} for d in DEMOS[4:6]]
            + [{"prompt": MID + d["prompt"], "response": d["response"]} for d in DEMOS[6:8]]
            + [{"prompt": DEMOS[8]["prompt"], "response": "soil and water " * 20}])


def test_sft_truncates_like_inference_and_drops_nothing(monkeypatch, tmp_path):
    seen = _capture(monkeypatch, sft_mod)
    demos = _long_demos()
    res = sft_mod.train_sft(demos, TEXTS, tmp_path, COMMON, SftParams(batch_size=2, max_steps=1))
    trainer, m = seen["trainer"], res["metrics"]
    tok = trainer.processing_class
    ds = trainer.train_dataset
    assert len(ds) == len(demos) and m["n_examples"] == len(demos) and m["n_examples_dropped"] == 0
    n_long = sum(len(tok(M.format_prompt(d["prompt"]))["input_ids"]) > MP for d in demos)
    n_cut = sum(len(tok(d["response"], add_special_tokens=False)["input_ids"]) > MR for d in demos)
    assert n_long >= 4 and m["n_prompts_truncated"] == n_long and 1 <= m["n_responses_truncated"] == n_cut
    for d, row in zip(demos, ds):
        prompt_ids = M.encode_prompt(tok, d["prompt"], MP)              # what generation / PPO / the RM see
        response_ids = M.encode_response(tok, d["response"], MR, prompt=d["prompt"])
        assert row["input_ids"] == prompt_ids + response_ids
        assert row["labels"] == [-100] * len(prompt_ids) + response_ids  # the loss covers the response + eos
        assert row["labels"][-1] == tok.eos_token_id


def test_sft_prompt_tokens_are_the_prompt_end(monkeypatch, tmp_path):
    seen = _capture(monkeypatch, sft_mod)
    demos = _long_demos()
    sft_mod.train_sft(demos, TEXTS, tmp_path, COMMON, SftParams(batch_size=2, max_steps=1))
    tok = seen["trainer"].processing_class
    row = seen["trainer"].train_dataset[4]                              # LONG + a question
    n_prompt = row["labels"].count(-100)
    full = tok(M.format_prompt(demos[4]["prompt"]))["input_ids"]
    assert n_prompt == MP and len(full) > 2 * MP
    assert row["input_ids"][:n_prompt] == [tok.bos_token_id] + full[-(MP - 1):]   # <bos> + the prompt's end
    text = tok.decode(row["input_ids"][:n_prompt], skip_special_tokens=True)
    assert text.endswith("number 4?\n") and "background" not in text


# ------------------------------------------------------------------------------------------------ DPO


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    tok = M.train_tokenizer(TEXTS + [LONG], vocab_size=TINY.vocab_size)
    torch.manual_seed(0)
    model = M.build_tiny_causal_lm(tok, TINY)
    M.set_lengths(model, MP, MR)
    return M.save_model(model, tok, tmp_path_factory.mktemp("policy") / "model")


def test_dpo_truncates_like_inference_and_reports_dropped_pairs(monkeypatch, tmp_path, policy_dir):
    seen = _capture(monkeypatch, dpo_mod)
    same_start = "soil and water " * 20                                 # identical in the first MR tokens
    pairs = (list(PAIRS[:4]) + [{**p, "prompt": LONG + p["prompt"]} for p in PAIRS[4:7]]
             + [{**PAIRS[7], "chosen": same_start + "yes", "rejected": same_start + "no"},
                {**PAIRS[8], "weight": 0.0}])
    rl = RlParams(algorithm="dpo", dpo=DpoParams(batch_size=2, max_steps=1))
    res = dpo_mod.train_dpo(policy_dir, pairs, PAIRS[10:12], tmp_path, COMMON, rl)
    trainer, m = seen["trainer"], res["metrics"]
    tok = trainer.processing_class
    kept = pairs[:7]
    assert len(trainer.train_dataset) == len(kept) and m["n_train_pairs"] == len(kept)
    assert m["n_pairs_dropped_identical"] == 1 and m["n_pairs_dropped_zero_weight"] == 1
    assert m["n_eval_pairs"] == 2 and len(trainer.eval_dataset) == 2
    for p, row in zip(kept, trainer.train_dataset):
        assert row["prompt_ids"] == M.encode_prompt(tok, p["prompt"], MP)
        assert row["chosen_ids"] == M.encode_response(tok, p["chosen"], MR, prompt=p["prompt"])
        assert row["rejected_ids"] == M.encode_response(tok, p["rejected"], MR, prompt=p["prompt"])
    # the collator keeps every token: whole chosen/rejected (with eos) after a long prompt
    batch = trainer.data_collator([trainer.train_dataset[4]])
    row = trainer.train_dataset[4]
    assert int(batch["completion_mask"][0].sum()) == len(row["chosen_ids"])
    assert batch["input_ids"][0][batch["completion_mask"][0].bool()].tolist() == row["chosen_ids"]
    assert row["chosen_ids"][-1] == tok.eos_token_id
