"""SFT on the tiny model (built from scratch) and on a saved model given by path."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from training_task import COMMON, DEMOS, SFT, TEXTS, TINY

from driftkeel.training import models as M
from driftkeel.training.sft import train_sft


@pytest.mark.slow
def test_sft_tiny_trains_and_saves(sft_run):
    m = sft_run["metrics"]
    assert m["steps"] == SFT.max_steps and m["n_examples"] == len(DEMOS)
    assert m["params_changed_fraction"] > 0.9
    assert m["tokens_per_s"] > 0 and m["train_loss"] > 0
    hist = sft_run["history"]
    assert hist and all(set(h) == {"step", "loss"} for h in hist)
    assert hist[-1]["loss"] < hist[0]["loss"]  # it learns something in 12 steps
    model, tok = M.load_causal_lm(sft_run["model_dir"])
    assert model.config.n_embd == TINY.n_embd and len(tok) <= TINY.vocab_size
    assert M.get_lengths(model) == (COMMON.max_prompt_tokens, COMMON.max_response_tokens)
    assert m["resumed_from_step"] == 0
    assert not (Path(sft_run["model_dir"]).parent / "checkpoints").exists()  # removed once the model is saved


@pytest.mark.slow
def test_sft_from_a_local_model_path(tmp_path):
    """model_name_or_path = a saved directory goes through the same loader as any Hub id."""
    tok = M.train_tokenizer(TEXTS, 300)
    torch.manual_seed(1)
    base = M.build_tiny_causal_lm(tok, TINY)
    M.save_model(base, tok, tmp_path / "base")
    before = M.params_snapshot(base)

    params = SFT.model_copy(update={"model_name_or_path": str(tmp_path / "base"), "max_steps": 4})
    res = train_sft(DEMOS, ["ignored: the tokenizer comes with the model"], tmp_path / "out", COMMON, params)
    tuned, ttok = M.load_causal_lm(res["model_dir"])
    assert ttok.get_vocab() == tok.get_vocab()  # the saved tokenizer was used, not a new one
    assert res["metrics"]["steps"] == 4 and res["metrics"]["params_changed_fraction"] > 0.9
    assert M.changed_fraction(before, tuned) > 0.9


def test_token_budgets_longer_than_the_model_are_refused_before_training(tmp_path):
    """tiny_model.n_positions below <bos> + max_prompt_tokens + max_response_tokens + <eos> crashed mid-run
    (an index error in the position table); now a clear error names the params, before any training."""
    from training_task import COMMON, DEMOS, SFT, TEXTS

    from driftkeel.training.sft import train_sft

    short = COMMON.model_copy(update={"tiny_model": COMMON.tiny_model.model_copy(update={"n_positions": 40})})
    with pytest.raises(ValueError, match=r"common.tiny_model.n_positions allows 40 positions.*= 46"):
        train_sft(DEMOS, TEXTS, tmp_path / "sft", short, SFT)
    assert not (tmp_path / "sft" / "model").exists()
