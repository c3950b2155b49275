"""RLOO, GRPO and DPO as alternatives to PPO, and LoRA adapters, on the tiny models."""
from __future__ import annotations

import pytest
import torch
from training_task import COMMON, DEMOS, PAIRS, PPO, REWARD, SFT, TEXTS

from driftkeel.config import DpoParams, LoraParams, RlParams
from driftkeel.training import models as M
from driftkeel.training.dpo import dpo_rows, train_dpo
from driftkeel.training.online import conservative_reward_function, train_online

LORA = LoraParams(enabled=True, r=4, alpha=8, dropout=0.0)


def test_dpo_rows_drop_zero_weight_pairs():
    rows = dpo_rows([{**PAIRS[0], "weight": 0.0}, PAIRS[1], {**PAIRS[2], "weight": None}])
    assert [r["chosen"] for r in rows] == [PAIRS[1]["chosen"], PAIRS[2]["chosen"]]
    assert rows[0]["prompt"] == M.format_prompt(PAIRS[1]["prompt"])


@pytest.mark.slow
def test_reward_function_for_rloo_grpo_is_the_conservative_ensemble_reward(reward_run):
    fn = conservative_reward_function(reward_run["member_dirs"], lam=0.5)
    prompts = [p["prompt"] for p in PAIRS[:3]]
    completions = [p["chosen"] for p in PAIRS[:3]]
    got = fn([M.format_prompt(p) for p in prompts], completions, raw_prompt=prompts)
    want = fn.ensemble.conservative(prompts, completions, 0.5)["reward"]
    assert got == pytest.approx(list(want))
    assert fn([M.format_prompt(p) for p in prompts], completions) == pytest.approx(got)  # prompt text fallback


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["rloo", "grpo"])
def test_online_rl_trains_against_the_ensemble(algorithm, sft_run, reward_run, tmp_path):
    rl = RlParams(algorithm=algorithm, num_generations=4, reward_lambda=0.5)
    res = train_online(sft_run["model_dir"], reward_run["member_dirs"], [p["prompt"] for p in PAIRS],
                       tmp_path, COMMON, PPO, rl)
    m = res["metrics"]
    assert m["steps"] == PPO.total_episodes // PPO.batch_size and m["n_reward_members"] == 2
    assert m["params_changed_fraction"] > 0.5 and len(res["history"]) == m["steps"]
    assert {"score", "kl"} <= set(res["history"][0]) and not (tmp_path / "checkpoints").exists()
    policy, _ = M.load_causal_lm(res["model_dir"])
    assert M.get_lengths(policy) == (COMMON.max_prompt_tokens, COMMON.max_response_tokens)


@pytest.mark.slow
def test_online_rl_checks_the_group_size(sft_run, reward_run, tmp_path):
    with pytest.raises(ValueError, match="multiple of rl.num_generations"):
        train_online(sft_run["model_dir"], reward_run["member_dirs"], ["p"], tmp_path, COMMON, PPO,
                     RlParams(algorithm="grpo", num_generations=3))


@pytest.mark.slow
@pytest.mark.parametrize("lora", [None, LORA], ids=["full", "lora"])
def test_dpo_moves_the_policy_towards_chosen(lora, sft_run, tmp_path):
    rl = RlParams(algorithm="dpo", dpo=DpoParams(batch_size=8, max_steps=10, learning_rate=3e-3),
                  lora=lora or LoraParams())
    res = train_dpo(sft_run["model_dir"], PAIRS[::2], PAIRS[1::2], tmp_path, COMMON, rl)
    m = res["metrics"]
    assert m["steps"] == 10 and m["n_train_pairs"] == len(PAIRS[::2])
    assert m["eval_reward_accuracy"] >= 0.9  # implicit reward ranks held-out pairs (an easy task)
    assert res["history"][-1]["loss"] < res["history"][0]["loss"]
    policy, _ = M.load_causal_lm(res["model_dir"])  # a plain HF dir (adapters merged)
    assert not any("lora" in k for k in policy.state_dict())
    if lora:  # adapters train the linear layers only; merged, they change those, not the embeddings
        assert 0 < m["params_changed_fraction"] < 0.9
        sft, _ = M.load_causal_lm(sft_run["model_dir"])
        assert torch.equal(policy.transformer.wte.weight, sft.transformer.wte.weight)
    else:
        assert m["params_changed_fraction"] > 0.9


@pytest.mark.slow
def test_lora_sft_and_reward_save_merged_plain_models(tmp_path):
    from driftkeel.training.reward import train_reward
    from driftkeel.training.sft import train_sft

    sft = train_sft(DEMOS, TEXTS, tmp_path / "sft", COMMON, SFT.model_copy(update={"lora": LORA, "max_steps": 4}))
    model, _ = M.load_causal_lm(sft["model_dir"])
    assert not any("lora" in k for k in model.state_dict()) and sft["metrics"]["params_changed_fraction"] > 0
    rw = train_reward(PAIRS[::2], PAIRS[1::2], sft["model_dir"], tmp_path / "rw", COMMON,
                      REWARD.model_copy(update={"lora": LORA, "max_steps": 6}))
    rm, _ = M.load_reward_model(rw["model_dir"])
    assert not any("lora" in k for k in rm.state_dict())
    base, _ = M.load_reward_model(sft["model_dir"])
    assert not torch.equal(rm.transformer.h[0].attn.c_attn.weight, base.transformer.h[0].attn.c_attn.weight)


def test_rloo_and_grpo_say_which_ppo_params_they_ignore(tmp_path, capsys):
    from driftkeel.config import CommonParams, PpoParams, RlParams
    from driftkeel.training.online import train_online

    rl = RlParams(algorithm="rloo", num_generations=2)
    with pytest.raises(ValueError, match="multiple of rl.num_generations"):   # stops before any training
        train_online(tmp_path, tmp_path, ["p"], tmp_path, CommonParams(),
                     PpoParams(batch_size=3, ppo_epochs=2, missing_eos_penalty=1.0), rl)
    assert "rloo: ppo.ppo_epochs, ppo.missing_eos_penalty set, but only PPO uses them: ignored" in capsys.readouterr().out
    with pytest.raises(ValueError):
        train_online(tmp_path, tmp_path, ["p"], tmp_path, CommonParams(), PpoParams(batch_size=3), rl)
    assert "ignored" not in capsys.readouterr().out
