"""Reward model: training with `trl.RewardTrainer`, scoring, pairwise accuracy.

A pair is {prompt, chosen, rejected, weight}. Texts are tokenized here (`encode_prompt` +
`encode_response`, i.e. `<bos> prompt \\n response <eos>`), the same way :func:`score` and the PPO
rollouts see them, and handed to RewardTrainer already tokenized. The Bradley-Terry loss is weighted
per pair by `weight` (e.g. the annotation confidence); with all weights equal it is TRL's loss.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from trl import RewardConfig, RewardTrainer
from trl.trainer.reward_trainer import DataCollatorForPreference

from driftkeel.config import CommonParams, RewardParams
from driftkeel.training.common import (
    base_args,
    cpu_threads,
    history,
    inference,
    quiet,
    quiet_offline_env,
    remove_if_empty,
)
from driftkeel.training.models import (
    changed_fraction,
    default_device,
    encode_prompt,
    encode_response,
    get_lengths,
    inference_dtype,
    load_reward_model,
    params_snapshot,
    resolve,
    save_model,
    set_lengths,
)

SFT = "sft"


def resolve_init(init_from: str, sft_model_dir: str | Path) -> str:
    """`reward.init_from`: "sft" -> the SFT model directory; anything else is a Hub id or a path."""
    return str(sft_model_dir) if init_from == SFT else init_from


# ---------------------------------------------------------------------------------------- training


def encode_pairs(tokenizer, pairs: Sequence[dict], max_prompt_tokens: int,
                 max_response_tokens: int) -> list[dict]:
    rows = []
    for p in pairs:
        prompt_ids = encode_prompt(tokenizer, p["prompt"], max_prompt_tokens)
        rows.append({
            "chosen_ids": prompt_ids + encode_response(tokenizer, p["chosen"], max_response_tokens),
            "rejected_ids": prompt_ids + encode_response(tokenizer, p["rejected"], max_response_tokens),
            "weight": float(p.get("weight", 1.0) if p.get("weight") is not None else 1.0),
        })
    return rows


class WeightedPreferenceCollator(DataCollatorForPreference):
    """TRL's preference collator, also passing each pair's `weight`."""

    def torch_call(self, examples):
        out = super().torch_call(examples)
        if "weight" in examples[0]:
            out["weight"] = torch.tensor([float(e["weight"]) for e in examples], dtype=torch.float)
        return out


class WeightedRewardTrainer(RewardTrainer):
    """RewardTrainer whose loss is the weight-averaged pairwise loss -log σ(r_chosen - r_rejected)."""

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["chosen_ids", "rejected_ids", "margin", "weight"]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        weight = inputs.pop("weight", None)
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True,
                                             num_items_in_batch=num_items_in_batch)
        if weight is not None:
            chosen, rejected = torch.chunk(outputs.logits.squeeze(-1), chunks=2)
            diff = chosen - rejected
            if "margin" in inputs:
                diff = diff - inputs["margin"]
            w = weight.to(diff.dtype)
            loss = (-F.logsigmoid(diff) * w).sum() / w.sum().clamp_min(1e-8)
            if self.args.center_rewards_coefficient is not None:
                loss = loss + self.args.center_rewards_coefficient * torch.mean((chosen + rejected) ** 2)
        return (loss, outputs) if return_outputs else loss


def train_reward(train_pairs: Sequence[dict], eval_pairs: Sequence[dict], init_path: str | Path,
                 out_dir: str | Path, common: CommonParams, params: RewardParams) -> dict:
    """Train a reward model initialised from `init_path` (the SFT model dir, a Hub id or a path).

    Saves out_dir/model; returns {"metrics": {..., eval_accuracy, train_accuracy}, "history":
    [{step, loss}], "eval_history": [{step, eval_loss, eval_accuracy}], "model_dir"}."""
    quiet_offline_env()
    from datasets import Dataset
    from transformers import set_seed

    if not train_pairs:
        raise ValueError("train_reward: no training pairs")
    out_dir = Path(out_dir)
    set_seed(common.seed)  # the score head is initialised at load time
    model, tokenizer = load_reward_model(init_path)
    set_lengths(model, common.max_prompt_tokens, common.max_response_tokens)
    mp, mr = common.max_prompt_tokens, common.max_response_tokens
    train_ds = Dataset.from_list(encode_pairs(tokenizer, train_pairs, mp, mr))
    eval_ds = Dataset.from_list(encode_pairs(tokenizer, eval_pairs, mp, mr)) if eval_pairs else None

    kwargs = base_args(out_dir / "checkpoints", seed=common.seed, learning_rate=params.learning_rate,
                       batch_size=params.batch_size, epochs=params.epochs, max_steps=params.max_steps,
                       n_examples=len(train_ds))
    kwargs.update(save_strategy="no", save_total_limit=None)
    if eval_ds is not None:
        kwargs.update(eval_strategy="steps", eval_steps=max(1, kwargs["save_steps"] // 2))
    args = RewardConfig(**kwargs, max_length=None, disable_dropout=True,
                        center_rewards_coefficient=params.center_rewards_coefficient)
    trainer = WeightedRewardTrainer(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer,
        data_collator=WeightedPreferenceCollator(pad_token_id=tokenizer.pad_token_id),
    )
    quiet(trainer)
    before = params_snapshot(model)
    t0 = time.perf_counter()
    with cpu_threads(trainer.model):
        result = trainer.train()
    seconds = time.perf_counter() - t0

    trained = trainer.model
    save_model(trained, tokenizer, out_dir / "model")
    remove_if_empty(out_dir / "checkpoints")
    sample = list(train_pairs)[: min(len(train_pairs), 500)]
    metrics = {
        "train_loss": float(result.training_loss),
        "steps": int(trainer.state.global_step),
        "epochs": float(trainer.state.epoch or 0.0),
        "n_train_pairs": len(train_ds),
        "n_eval_pairs": len(eval_ds) if eval_ds is not None else 0,
        "train_seconds": seconds,
        "pairs_per_s": len(train_ds) * float(trainer.state.epoch or 0.0) / max(seconds, 1e-9),
        "train_accuracy": pairwise_accuracy((trained, tokenizer), sample),
        "eval_accuracy": pairwise_accuracy((trained, tokenizer), eval_pairs) if eval_pairs else float("nan"),
        "params_changed_fraction": changed_fraction(before, trained),
    }
    evals = [{"step": int(r["step"]), "eval_loss": float(r["eval_loss"]),
              "eval_accuracy": float(r.get("eval_accuracy", float("nan")))}
             for r in trainer.state.log_history if "eval_loss" in r]
    return {"metrics": metrics, "history": history(trainer.state.log_history, "loss"),
            "eval_history": evals, "model_dir": str(out_dir / "model")}


# ----------------------------------------------------------------------------------------- scoring


def score(model_dir_or_pair, prompts: Sequence[str], responses: Sequence[str],
          batch_size: int = 32) -> np.ndarray:
    """Reward of each (prompt, response): float64 array, no gradients, deterministic.

    `model_dir_or_pair` is a reward-model directory / Hub id, or a loaded (model, tokenizer)."""
    if len(prompts) != len(responses):
        raise ValueError(f"score: {len(prompts)} prompts but {len(responses)} responses")
    if not len(prompts):
        return np.zeros(0, dtype=np.float64)
    model, tokenizer = resolve(model_dir_or_pair, load_reward_model, device=default_device(),
                               dtype=inference_dtype())
    device = next(model.parameters()).device
    mp, mr = get_lengths(model)
    seqs = [encode_prompt(tokenizer, p, mp) + encode_response(tokenizer, r, mr)
            for p, r in zip(prompts, responses)]
    order = np.argsort([len(s) for s in seqs], kind="stable")  # similar lengths together: less padding
    out = np.zeros(len(seqs), dtype=np.float64)
    pad = tokenizer.pad_token_id
    with inference(model):
        for start in range(0, len(seqs), batch_size):
            idx = order[start:start + batch_size]
            width = max(len(seqs[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):  # right padding: the score is read at the last real token
                ids[row, : len(seqs[i])] = torch.tensor(seqs[i])
                mask[row, : len(seqs[i])] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            out[idx] = logits[:, 0].float().cpu().numpy()
    return out


def pairwise_accuracy(model_dir_or_pair, pairs: Sequence[dict], batch_size: int = 32) -> float:
    """Share of pairs where score(chosen) > score(rejected); an exact tie counts 0.5."""
    if not pairs:
        return float("nan")
    model = resolve(model_dir_or_pair, load_reward_model, device=default_device(), dtype=inference_dtype())
    prompts = [p["prompt"] for p in pairs]
    s = score(model, prompts + prompts, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs],
              batch_size=batch_size)
    chosen, rejected = s[: len(pairs)], s[len(pairs):]
    return float(np.mean(np.where(chosen > rejected, 1.0, np.where(chosen == rejected, 0.5, 0.0))))
