"""RLHF with PPO (`trl.experimental.ppo`, the only module importing it) and policy generation.

The policy starts from the SFT model; a frozen copy of it is the KL reference; the reward model scores
`<bos> prompt \\n response <eos>`; the value model starts from the reward model. All four must share one
tokenizer (the reward model is normally initialised from the SFT model, so they do).
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from driftkeel.config import CommonParams, PpoParams
from driftkeel.training.common import (
    cpu_threads,
    inference,
    quiet,
    quiet_offline_env,
    remove_if_empty,
)
from driftkeel.training.models import (
    changed_fraction,
    default_device,
    encode_prompt,
    get_lengths,
    inference_dtype,
    load_causal_lm,
    load_reward_model,
    params_snapshot,
    resolve,
    save_model,
    set_lengths,
    use_bf16,
)

# PPOTrainer log keys -> our names
_LOG_KEYS = {"objective/scores": "score", "objective/kl": "kl", "objective/rlhf_reward": "rlhf_reward",
             "objective/entropy": "entropy", "loss/policy_avg": "policy_loss",
             "loss/value_avg": "value_loss", "policy/clipfrac_avg": "clipfrac", "episode": "episode"}


def _check_same_tokenizer(policy_tok, reward_tok) -> None:
    same = policy_tok.get_vocab() == reward_tok.get_vocab()
    if not same or policy_tok.pad_token_id != reward_tok.pad_token_id:
        raise ValueError("PPO needs the policy and the reward model to share one tokenizer; initialise the "
                         "reward model from the SFT model (reward.init_from: sft) or from the same base model")


def select_prompts(prompts: Sequence[str], n: int, seed: int) -> list[str]:
    """Up to `n` distinct prompts, a seeded sample when there are more."""
    uniq = list(dict.fromkeys(p for p in prompts if p and p.strip()))
    if len(uniq) <= n:
        return uniq
    idx = np.random.default_rng(seed).choice(len(uniq), size=n, replace=False)
    return [uniq[i] for i in sorted(idx)]


def train_ppo(policy_dir: str | Path, reward_dir: str | Path, prompts: Sequence[str], out_dir: str | Path,
              common: CommonParams, params: PpoParams) -> dict:
    """Optimise the policy against the reward model with PPO (KL penalty `params.kl_coef`).

    Saves out_dir/model; returns {"metrics": {mean_score, first_score, last_score, mean_kl, final_kl,
    steps, episodes, ...}, "history": [{step, episode, score, kl, ...}], "model_dir"}."""
    quiet_offline_env()
    from datasets import Dataset
    from transformers import set_seed
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    if params.batch_size % params.mini_batch_size:
        raise ValueError(f"ppo.batch_size ({params.batch_size}) must be a multiple of ppo.mini_batch_size "
                         f"({params.mini_batch_size})")
    out_dir = Path(out_dir)
    chosen = select_prompts(prompts, params.n_prompts, common.seed)
    if len(chosen) < params.batch_size:
        raise ValueError(f"train_ppo: {len(chosen)} distinct prompts, fewer than ppo.batch_size "
                         f"({params.batch_size})")
    set_seed(common.seed)
    policy, tokenizer = load_causal_lm(policy_dir)
    ref_policy, _ = load_causal_lm(policy_dir)
    reward_model, reward_tok = load_reward_model(reward_dir)
    value_model, _ = load_reward_model(reward_dir)
    _check_same_tokenizer(tokenizer, reward_tok)
    for frozen in (ref_policy, reward_model):
        frozen.eval().requires_grad_(False)
    max_prompt, _ = get_lengths(policy)

    rows = [{"input_ids": encode_prompt(tokenizer, p, max_prompt)} for p in chosen]
    train_ds = Dataset.from_list(rows)
    eval_ds = Dataset.from_list(rows[: params.batch_size])  # required by the trainer; unused (no samples)
    args = PPOConfig(
        output_dir=str(out_dir / "checkpoints"),
        seed=common.seed,
        learning_rate=params.learning_rate,
        total_episodes=params.total_episodes,
        per_device_train_batch_size=params.batch_size,
        gradient_accumulation_steps=1,
        num_mini_batches=params.batch_size // params.mini_batch_size,
        num_ppo_epochs=params.ppo_epochs,
        kl_coef=params.kl_coef,
        response_length=params.response_length,
        temperature=params.temperature,
        stop_token="eos",
        missing_eos_penalty=params.missing_eos_penalty,
        local_rollout_forward_batch_size=max(params.batch_size, 16),
        num_sample_generations=0,
        save_strategy="no",
        report_to="none",
        logging_steps=1,
        disable_tqdm=True,
        bf16=use_bf16(),
        fp16=False,
        activation_checkpointing=False,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    before = params_snapshot(policy)
    with warnings.catch_warnings():  # TRL's PPO wrapper reads a deprecated transformers attribute
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        trainer = PPOTrainer(args=args, processing_class=tokenizer, model=policy, ref_model=ref_policy,
                             reward_model=reward_model, value_model=value_model, train_dataset=train_ds,
                             eval_dataset=eval_ds)
        quiet(trainer)
        t0 = time.perf_counter()
        with cpu_threads(policy):
            trainer.train()
        seconds = time.perf_counter() - t0

    trained = trainer.accelerator.unwrap_model(trainer.model).policy
    set_lengths(trained, *get_lengths(policy))
    save_model(trained, tokenizer, out_dir / "model")
    remove_if_empty(out_dir / "checkpoints")
    hist = [{"step": int(r["step"]), **{_LOG_KEYS[k]: float(r[k]) for k in _LOG_KEYS if k in r}}
            for r in trainer.state.log_history if "objective/scores" in r]
    scores = [h["score"] for h in hist] or [float("nan")]
    kls = [h["kl"] for h in hist] or [float("nan")]
    metrics = {
        "mean_score": float(np.mean(scores)),
        "first_score": float(scores[0]),
        "last_score": float(scores[-1]),
        "mean_kl": float(np.mean(kls)),
        "final_kl": float(kls[-1]),
        "steps": int(trainer.state.global_step),
        "episodes": int(trainer.state.episode),
        "n_prompts": len(chosen),
        "train_seconds": seconds,
        "episodes_per_s": trainer.state.episode / max(seconds, 1e-9),
        "params_changed_fraction": changed_fraction(before, trained),
    }
    return {"metrics": metrics, "history": hist, "model_dir": str(out_dir / "model")}


def generate(policy_dir_or_pair, prompts: Sequence[str], max_new_tokens: int = 32, seed: int = 0,
             batch_size: int = 16, temperature: float = 0.7) -> list[str]:
    """Completion text (prompt excluded, stops at eos) for each prompt.

    Seeded sampling at `temperature` (the PPO rollout default, 0.7); `temperature=0` is greedy.
    Deterministic for a given seed, batch size and device."""
    model, tokenizer = resolve(policy_dir_or_pair, load_causal_lm, device=default_device(),
                               dtype=inference_dtype())
    if not len(prompts):
        return []
    device = next(model.parameters()).device
    max_prompt, _ = get_lengths(model)
    encoded = [encode_prompt(tokenizer, p, max_prompt) for p in prompts]
    pad = tokenizer.pad_token_id
    kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
    if temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
    else:
        kwargs.update(do_sample=False)
    out: list[str] = []
    with inference(model):
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start:start + batch_size]
            width = max(len(c) for c in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, c in enumerate(chunk):  # left padding: generation continues from the last column
                ids[row, width - len(c):] = torch.tensor(c)
                mask[row, width - len(c):] = 1
            cuda = [device] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda):  # seeded without disturbing the caller's RNG
                torch.manual_seed(seed + start)
                seqs = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
            for row in seqs[:, width:].tolist():
                if tokenizer.eos_token_id in row:
                    row = row[: row.index(tokenizer.eos_token_id)]
                out.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return out
