"""Direct Preference Optimisation (`rl.algorithm: dpo`): TRL's DPOTrainer on the curated pairs.

The alternative to reward model + PPO: the policy (from the SFT model) is trained directly on the same
curated preference pairs the reward model sees (outputs/mix/train.jsonl), with a frozen copy of the
SFT model as the reference; `rl.dpo.beta` sets how far it may move. Pairs carry the aggregate stage's
confidence weight: TRL's DPO loss has no per-pair weight, so pairs are kept or dropped, not weighted
(a weight of 0 drops a pair). The reward model is still trained: evaluation and the gate use it.
Token format as everywhere: `encode_prompt` (the prompt's LAST max_prompt_tokens tokens, as generation
and the reward model see it) and `encode_response` (the first max_response_tokens, then eos) for chosen
and rejected, given to DPOTrainer pre-tokenized (`dpo_token_rows`), so TRL neither truncates nor drops a
pair. A pair whose chosen and rejected are identical once truncated carries no preference: it is dropped
and counted (`n_pairs_dropped_identical`), as are pairs of weight 0 (`n_pairs_dropped_zero_weight`).
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
    encode_prompt,
    encode_response,
    format_prompt,
    get_lengths,
    load_causal_lm,
    params_snapshot,
)


def _weighted(pairs: Sequence[dict]) -> list[dict]:
    """The pairs with a positive weight (or none)."""
    return [p for p in pairs if (p.get("weight") is None or float(p["weight"]) > 0)]


def dpo_rows(pairs: Sequence[dict]) -> list[dict]:
    """{prompt, chosen, rejected} texts of the pairs with a positive weight."""
    return [{"prompt": format_prompt(p["prompt"]), "chosen": p["chosen"], "rejected": p["rejected"]}
            for p in _weighted(pairs)]


def dpo_token_rows(tokenizer, pairs: Sequence[dict], lengths: tuple[int, int]) -> tuple[list[dict], int]:
    """{prompt_ids, chosen_ids, rejected_ids} of the pairs with a positive weight, truncated as at
    inference (`lengths` = (max_prompt_tokens, max_response_tokens)), and the number of those pairs
    left out because chosen and rejected are identical once truncated."""
    max_prompt, max_response = lengths
    kept = _weighted(pairs)
    out = []
    for p in kept:
        chosen = encode_response(tokenizer, p["chosen"], max_response, prompt=p["prompt"])
        rejected = encode_response(tokenizer, p["rejected"], max_response, prompt=p["prompt"])
        if chosen != rejected:
            out.append({"prompt_ids": encode_prompt(tokenizer, p["prompt"], max_prompt),
                        "chosen_ids": chosen, "rejected_ids": rejected})
    return out, len(kept) - len(out)


def _pretokenized(trainer_cls):
    """`trainer_cls` (trl.DPOTrainer) taking datasets already tokenized by :func:`dpo_token_rows`: TRL
    1.12's DPOTrainer always re-tokenizes text and drops pairs whose prompt fills max_length."""

    class PretokenizedDPOTrainer(trainer_cls):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

    return PretokenizedDPOTrainer


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
    n_zero_weight = len(train_pairs) - len(rows)
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    resume = ckpt.prepare(ckpt_dir, ckpt.run_fingerprint(
        "dpo", params=params, common=common, data=[rows, dpo_rows(eval_pairs), rl.lora.model_dump()],
        models=[policy_dir]))
    start_step = ckpt.resumed_step(resume)
    set_seed(common.seed)
    policy, tokenizer = load_causal_lm(policy_dir)
    lengths = get_lengths(policy)
    train_rows, n_identical = dpo_token_rows(tokenizer, train_pairs, lengths)
    if not train_rows:
        raise ValueError(f"train_dpo: all {len(rows)} pairs have chosen == rejected once truncated to "
                         f"{lengths[1]} response tokens")
    eval_rows = dpo_token_rows(tokenizer, eval_pairs, lengths)[0]
    lora = peft_config(rl.lora, "CAUSAL_LM")
    ref = None if lora is not None else load_causal_lm(policy_dir)[0]  # with LoRA: adapters off = reference
    kwargs = base_args(ckpt_dir, seed=common.seed, learning_rate=params.learning_rate,
                       batch_size=params.batch_size, epochs=params.epochs, max_steps=params.max_steps,
                       n_examples=len(train_rows), checkpoint_every=params.checkpoint_every)
    if eval_rows:
        kwargs.update(eval_strategy="steps", eval_steps=max(1, kwargs["save_steps"] // 2))
    args = DPOConfig(**kwargs, beta=params.beta, disable_dropout=True, dataset_num_proc=None,
                     max_length=sum(lengths) + 1)  # what dpo_token_rows gives at most: TRL truncates nothing
    before = params_snapshot(policy)  # before LoRA adapters are injected (they rename the weights)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*checkpointing.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")
        trainer = _pretokenized(DPOTrainer)(
            model=policy, ref_model=ref, args=args, train_dataset=Dataset.from_list(train_rows),
            eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
            processing_class=tokenizer, peft_config=lora)
    trained, seconds = train_and_save(trainer, tokenizer, out_dir, ckpt_dir, resume, lengths)
    log = trainer.state.log_history
    evals = [r for r in log if "eval_rewards/accuracies" in r]
    metrics = {
        "train_loss": ckpt.logged_mean(log, "loss"),
        "steps": int(trainer.state.global_step),
        "epochs": float(trainer.state.epoch or 0.0),
        "n_train_pairs": len(trainer.train_dataset),  # trained on
        "n_pairs_dropped_identical": n_identical,
        "n_pairs_dropped_zero_weight": n_zero_weight,
        "n_eval_pairs": len(eval_rows),
        "eval_reward_accuracy": float(evals[-1]["eval_rewards/accuracies"]) if evals else float("nan"),
        "eval_reward_margin": float(evals[-1].get("eval_rewards/margins", float("nan"))) if evals else float("nan"),
        "resumed_from_step": start_step,
        "train_seconds": seconds,
        "params_changed_fraction": changed_fraction(before, trained),
        "dpo_beta": params.beta,
    }
    return {"metrics": metrics, "history": history(log, "loss"), "model_dir": str(out_dir / "model")}
