"""Direct Preference Optimisation (`rl.algorithm: dpo`): TRL's DPOTrainer on the curated pairs.

The alternative to reward model + PPO: the policy (from the SFT model) is trained directly on the same
curated preference pairs the reward model sees (outputs/mix/train.jsonl), with a frozen copy of the
SFT model as the reference; `rl.dpo.beta` sets how far it may move. Pairs carry the aggregate stage's
confidence weight: TRL's DPO loss has no per-pair weight, so pairs are kept or dropped, not weighted
(a weight of 0 drops a pair). The reward model is still trained: evaluation and the gate use it.
Text format as everywhere: prompt = `format_prompt(prompt)`, completion = response + eos.
Checkpoints and resume as for every Hugging Face trainer (`checkpoints.py`).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

from driftkeel.config import CommonParams, RlParams
from driftkeel.training import checkpoints as ckpt
from driftkeel.training.common import base_args, history, quiet_offline_env, train_and_save
from driftkeel.training.lora import peft_config
from driftkeel.training.models import (
    changed_fraction,
    format_prompt,
    get_lengths,
    load_causal_lm,
    params_snapshot,
)


def dpo_rows(pairs: Sequence[dict]) -> list[dict]:
    """{prompt, chosen, rejected} texts of the pairs with a positive weight."""
    return [{"prompt": format_prompt(p["prompt"]), "chosen": p["chosen"], "rejected": p["rejected"]}
            for p in pairs if (p.get("weight") is None or float(p["weight"]) > 0)]


def train_dpo(policy_dir: str | Path, train_pairs: Sequence[dict], eval_pairs: Sequence[dict],
              out_dir: str | Path, common: CommonParams, rl: RlParams) -> dict:
    """DPO from the SFT policy on `train_pairs`; saves out_dir/model.

    Returns {"metrics": {train_loss, steps, eval_reward_accuracy (implicit reward on eval_pairs), ...},
    "history": [{step, loss}], "model_dir"}."""
    quiet_offline_env()
    from datasets import Dataset
    from transformers import set_seed
    from trl import DPOConfig, DPOTrainer

    params = rl.dpo
    rows = dpo_rows(train_pairs)
    if not rows:
        raise ValueError("train_dpo: no training pairs")
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    resume = ckpt.prepare(ckpt_dir, ckpt.run_fingerprint(
        "dpo", params=params, common=common, data=[rows, dpo_rows(eval_pairs), rl.lora.model_dump()],
        models=[policy_dir]))
    start_step = ckpt.resumed_step(resume)
    set_seed(common.seed)
    policy, tokenizer = load_causal_lm(policy_dir)
    lengths = get_lengths(policy)
    lora = peft_config(rl.lora, "CAUSAL_LM")
    ref = None if lora is not None else load_causal_lm(policy_dir)[0]  # with LoRA: adapters off = reference
    kwargs = base_args(ckpt_dir, seed=common.seed, learning_rate=params.learning_rate,
                       batch_size=params.batch_size, epochs=params.epochs, max_steps=params.max_steps,
                       n_examples=len(rows), checkpoint_every=params.checkpoint_every)
    eval_rows = dpo_rows(eval_pairs)
    if eval_rows:
        kwargs.update(eval_strategy="steps", eval_steps=max(1, kwargs["save_steps"] // 2))
    args = DPOConfig(**kwargs, beta=params.beta, max_length=sum(lengths) + 1, disable_dropout=True,
                     dataset_num_proc=None)
    before = params_snapshot(policy)  # before LoRA adapters are injected (they rename the weights)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*checkpointing.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")
        trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=Dataset.from_list(rows),
                             eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
                             processing_class=tokenizer, peft_config=lora)
    trained, seconds = train_and_save(trainer, tokenizer, out_dir, ckpt_dir, resume, lengths)
    log = trainer.state.log_history
    evals = [r for r in log if "eval_rewards/accuracies" in r]
    metrics = {
        "train_loss": ckpt.logged_mean(log, "loss"),
        "steps": int(trainer.state.global_step),
        "epochs": float(trainer.state.epoch or 0.0),
        "n_train_pairs": len(rows),
        "n_eval_pairs": len(eval_rows),
        "eval_reward_accuracy": float(evals[-1]["eval_rewards/accuracies"]) if evals else float("nan"),
        "eval_reward_margin": float(evals[-1].get("eval_rewards/margins", float("nan"))) if evals else float("nan"),
        "resumed_from_step": start_step,
        "train_seconds": seconds,
        "params_changed_fraction": changed_fraction(before, trained),
        "dpo_beta": params.beta,
    }
    return {"metrics": metrics, "history": history(log, "loss"), "model_dir": str(out_dir / "model")}
