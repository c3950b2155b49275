"""Critic-free online RL against the reward model(s): TRL's RLOOTrainer and GRPOTrainer.

`rl.algorithm: rloo | grpo`. Each prompt gets `rl.num_generations` sampled completions; the reward
function is the conservative ensemble reward (`ensemble.py`: mean - rl.reward_lambda x std of the
members' standardised scores) of `<bos> prompt \\n completion <eos>`, exactly as PPO sees it; the
advantage is the leave-one-out (RLOO) or group-normalised (GRPO) reward; `ppo.kl_coef` is the KL
coefficient (beta) towards the frozen SFT policy. Episodes, batch size, learning rate, response length
and temperature come from the `ppo` section so the algorithms are compared on the same budget.
Checkpoints and resume as for every Hugging Face trainer (`checkpoints.py`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from driftkeel.progress import enabled as progress_enabled
from driftkeel.config import CommonParams, PpoParams, RlParams
from driftkeel.training import checkpoints as ckpt
from driftkeel.training.common import history, quiet_offline_env, train_and_save
from driftkeel.training.lora import peft_config
from driftkeel.training.models import (
    changed_fraction,
    encode_prompt,
    format_prompt,
    get_lengths,
    load_causal_lm,
    params_snapshot,
    use_bf16,
)
from driftkeel.training.ppo import _check_same_tokenizer, select_prompts


def conservative_reward_function(reward_dirs: Sequence[str | Path], lam: float):
    """A TRL reward function (prompts, completions, raw_prompt=..., **kw) -> list[float]."""
    from driftkeel.training.ensemble import RewardEnsemble

    ensemble = RewardEnsemble(list(reward_dirs))

    def conservative_reward(prompts, completions, raw_prompt=None, **kwargs):
        raw = raw_prompt if raw_prompt is not None else [p.rstrip("\n") for p in prompts]
        return [float(x) for x in ensemble.conservative(list(raw), list(completions), lam)["reward"]]

    conservative_reward.ensemble = ensemble
    return conservative_reward


def train_online(policy_dir: str | Path, reward_dir, prompts: Sequence[str], out_dir: str | Path,
                 common: CommonParams, params: PpoParams, rl: RlParams) -> dict:
    """RLOO or GRPO (`rl.algorithm`) from the SFT policy; saves out_dir/model.

    Returns {"metrics": {mean_score, first_score, last_score, mean_kl, final_kl, steps, episodes, ...},
    "history": [{step, score, kl, ...}], "model_dir"} like `train_ppo` (score = mean conservative
    reward of the step's completions)."""
    quiet_offline_env()
    from datasets import Dataset
    from transformers import set_seed

    ignored = [k for k in ("mini_batch_size", "ppo_epochs", "missing_eos_penalty")
               if getattr(params, k) != type(params).model_fields[k].default]
    if ignored:
        print(f"{rl.algorithm}: {', '.join('ppo.' + k for k in ignored)} set, but only PPO uses "
              f"{'them' if len(ignored) > 1 else 'it'}: ignored")

    if rl.algorithm == "rloo":
        from trl import RLOOConfig as Config, RLOOTrainer as Trainer
    elif rl.algorithm == "grpo":
        from trl import GRPOConfig as Config, GRPOTrainer as Trainer
    else:
        raise ValueError(f"train_online: rl.algorithm must be rloo or grpo, not {rl.algorithm!r}")
    if params.batch_size % rl.num_generations:
        raise ValueError(f"ppo.batch_size ({params.batch_size}) must be a multiple of rl.num_generations "
                         f"({rl.num_generations})")
    reward_dirs = [Path(d) for d in (reward_dir if isinstance(reward_dir, (list, tuple)) else [reward_dir])]
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    chosen = select_prompts(prompts, params.n_prompts, common.seed)
    resume = ckpt.prepare(ckpt_dir, ckpt.run_fingerprint(
        rl.algorithm, params=params, common=common, data=[chosen, rl.model_dump(exclude={"dpo"})],
        models=[policy_dir, *reward_dirs]))
    start_step = ckpt.resumed_step(resume)
    set_seed(common.seed)
    policy, tokenizer = load_causal_lm(policy_dir)
    lengths = get_lengths(policy)
    reward_fn = conservative_reward_function(reward_dirs, rl.reward_lambda)
    _check_same_tokenizer(tokenizer, reward_fn.ensemble.members[0][1])
    max_prompt = lengths[0]
    # the prompt text the trainer tokenizes (it adds <bos>) is cut to the tokens encode_prompt keeps
    rows = [{"prompt": format_prompt(tokenizer.decode(encode_prompt(tokenizer, p, max_prompt),
                                                      skip_special_tokens=True)), "raw_prompt": p}
            for p in chosen]
    total_steps = max(1, math.ceil(params.total_episodes / params.batch_size))
    args = Config(
        output_dir=str(ckpt_dir), seed=common.seed, data_seed=common.seed,
        learning_rate=params.learning_rate, per_device_train_batch_size=params.batch_size,
        gradient_accumulation_steps=1, num_generations=rl.num_generations, max_steps=total_steps,
        max_completion_length=params.response_length, temperature=params.temperature, top_k=0, top_p=1.0,
        beta=params.kl_coef, lr_scheduler_type="linear", warmup_steps=0, logging_steps=1,
        **ckpt.hf_save_args(total_steps, params.checkpoint_every), report_to="none", disable_tqdm=not progress_enabled(),
        bf16=use_bf16(), fp16=False, dataloader_num_workers=0, log_completions=False,
        activation_checkpointing=False, dataloader_pin_memory=torch.cuda.is_available(),
    )
    before = params_snapshot(policy)  # before LoRA adapters are injected (they rename the weights)
    trainer = Trainer(model=policy, reward_funcs=reward_fn, args=args, train_dataset=Dataset.from_list(rows),
                      processing_class=tokenizer, peft_config=peft_config(rl.lora, "CAUSAL_LM"))
    trained, seconds = train_and_save(trainer, tokenizer, out_dir, ckpt_dir, resume, lengths)
    log = trainer.state.log_history
    hist = [{"step": int(r["step"]), "score": float(r["reward"]), "kl": float(r.get("kl", float("nan"))),
             "reward_std": float(r.get("reward_std", float("nan"))),
             "mean_length": float(r.get("completions/mean_length", float("nan")))}
            for r in log if "reward" in r and "step" in r]
    scores = [h["score"] for h in hist] or [float("nan")]
    kls = [h["kl"] for h in hist] or [float("nan")]
    steps = int(trainer.state.global_step)
    metrics = {
        "mean_score": float(np.mean(scores)), "first_score": float(scores[0]),
        "last_score": float(scores[-1]), "mean_kl": float(np.nanmean(kls)) if hist else float("nan"),
        "final_kl": float(kls[-1]), "steps": steps, "episodes": steps * params.batch_size,
        "n_prompts": len(chosen), "n_reward_members": len(reward_dirs),
        "reward_lambda": rl.reward_lambda, "resumed_from_step": start_step, "train_seconds": seconds,
        "episodes_per_s": (steps - start_step) * params.batch_size / max(seconds, 1e-9),
        "params_changed_fraction": changed_fraction(before, trained),
    }
    return {"metrics": metrics, "history": hist, "model_dir": str(out_dir / "model"),
            "loss_history": history(log, "loss")}

