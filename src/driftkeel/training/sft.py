"""Supervised fine-tuning of the policy on demonstrations with `trl.SFTTrainer`.

Data: `format_prompt(prompt)` + response + eos, tokenized here with `encode_prompt` / `encode_response`
(the prompt's LAST max_prompt_tokens, the response's first max_response_tokens, as generation, PPO and
the reward model see them) and passed to SFTTrainer pre-tokenized (input_ids + completion_mask), so TRL
neither truncates nor drops a demo; the loss covers the completion (response + eos) only.
`params.model_name_or_path == "tiny"` trains a tokenizer on the given texts and builds a small GPT-2
from `common.tiny_model`; anything else (Hub id or local directory) is loaded and fine-tuned as is.
Checkpoints go to out_dir/checkpoints; a re-run after a crash resumes from the last complete one
(`checkpoints.py`). `params.lora.enabled` trains LoRA adapters and saves the merged model.
"""
from __future__ import annotations

from pathlib import Path

from driftkeel.config import CommonParams, SftParams
from driftkeel.training import checkpoints as ckpt
from driftkeel.training.common import base_args, history, quiet_offline_env, train_and_save, world_size
from driftkeel.training.lora import peft_config
from driftkeel.training.models import (
    TINY,
    build_tiny_causal_lm,
    changed_fraction,
    encode_prompt,
    encode_response,
    format_prompt,
    load_causal_lm,
    params_snapshot,
    set_lengths,
    train_tokenizer,
)


def build_policy(tokenizer_texts: list[str], common: CommonParams, model_name_or_path: str):
    """(model, tokenizer): the tiny default built from scratch, or a pretrained causal LM."""
    if model_name_or_path == TINY:
        tokenizer = train_tokenizer(tokenizer_texts, common.tiny_model.vocab_size)
        model = build_tiny_causal_lm(tokenizer, common.tiny_model)
    else:
        model, tokenizer = load_causal_lm(model_name_or_path)
    check_positions(model, common, "common.tiny_model.n_positions" if model_name_or_path == TINY
                    else f"the model {model_name_or_path}")
    return model, tokenizer


def check_positions(model, common: CommonParams, what: str) -> None:
    """Refuse, before any training, a model whose position table is shorter than the longest sequence
    the token budgets allow (<bos> + max_prompt_tokens + max_response_tokens + <eos>): it would fail
    mid-run with an index error, or (rotary models) run beyond the length it was trained for."""
    need = common.max_prompt_tokens + common.max_response_tokens + 2
    cfg = model.config
    have = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
    if have is not None and have < need:
        raise ValueError(f"{what} allows {have} positions, but common.max_prompt_tokens "
                         f"({common.max_prompt_tokens}) + common.max_response_tokens "
                         f"({common.max_response_tokens}) + 2 = {need}: raise the one or lower the others")


def train_sft(demos: list[dict], tokenizer_texts: list[str], out_dir: str | Path, common: CommonParams,
              params: SftParams) -> dict:
    """Fine-tune on `demos` ({prompt, response}); save to out_dir/model; return metrics and history.

    Returns {"metrics": {train_loss, steps, tokens_per_s, n_examples, ...}, "history": [{step, loss}],
    "model_dir": str}."""
    quiet_offline_env()
    from datasets import Dataset
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    if not demos:
        raise ValueError("train_sft: no demonstrations")
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    base = [] if params.model_name_or_path == TINY else [params.model_name_or_path]
    resume = ckpt.prepare(ckpt_dir, ckpt.run_fingerprint("sft", params=params, common=common,
                                                         data=[demos, list(tokenizer_texts)], models=base))
    set_seed(common.seed)
    texts = list(tokenizer_texts) + [d["prompt"] + "\n" + d["response"] for d in demos]
    model, tokenizer = build_policy(texts, common, params.model_name_or_path)
    set_lengths(model, common.max_prompt_tokens, common.max_response_tokens)

    rows, n_prompts_cut, n_responses_cut = sft_rows(tokenizer, demos, common.max_prompt_tokens,
                                                    common.max_response_tokens)
    dataset = Dataset.from_list(rows)
    args = SFTConfig(
        **base_args(ckpt_dir, seed=common.seed, learning_rate=params.learning_rate,
                    batch_size=params.batch_size, epochs=params.epochs, max_steps=params.max_steps,
                    n_examples=len(dataset), checkpoint_every=params.checkpoint_every),
        max_length=common.max_prompt_tokens + common.max_response_tokens + 1,  # what sft_rows gives at most
        completion_only_loss=True,
        packing=False,
        dataset_num_proc=None,
    )
    before = params_snapshot(model)  # before LoRA adapters are injected (they rename the weights)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config(params.lora, "CAUSAL_LM"))
    n_tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    start_epoch, start_step = _epoch_of(resume), ckpt.resumed_step(resume)
    trained, seconds = train_and_save(trainer, tokenizer, out_dir, ckpt_dir, resume,
                                      (common.max_prompt_tokens, common.max_response_tokens))
    epochs_done = float(trainer.state.epoch or 0.0)
    log = trainer.state.log_history
    metrics = {
        "train_loss": ckpt.logged_mean(log, "loss"),
        "final_loss": _last_loss(log, float("nan")),
        "steps": int(trainer.state.global_step),
        "epochs": epochs_done,
        "n_examples": len(trainer.train_dataset),  # trained on; TRL drops none of sft_rows' rows
        "n_examples_dropped": len(dataset) - len(trainer.train_dataset),
        "n_prompts_truncated": n_prompts_cut,  # prompt start cut (> max_prompt_tokens)
        "n_responses_truncated": n_responses_cut,  # response end cut (> max_response_tokens)
        "tokens_per_s": n_tokens * (epochs_done - start_epoch) / max(seconds, 1e-9),
        "train_seconds": seconds,
        "resumed_from_step": start_step,
        "params_changed_fraction": changed_fraction(before, trained),
        "n_parameters": sum(p.numel() for p in trained.parameters()),
        "n_processes": world_size(),  # > 1 under accelerate launch / torchrun (data parallel)
    }
    return {"metrics": metrics, "history": history(log, "loss"), "model_dir": str(out_dir / "model")}


def sft_rows(tokenizer, demos: list[dict], max_prompt: int, max_response: int) -> tuple[list[dict], int, int]:
    """Pre-tokenized SFT rows {input_ids, completion_mask} of `demos`, truncated as at inference, with
    the number of demos whose prompt and whose response were cut."""
    rows, n_prompts_cut, n_responses_cut = [], 0, 0
    for d in demos:
        prompt_ids = encode_prompt(tokenizer, d["prompt"], max_prompt)
        full = encode_response(tokenizer, d["response"], 10**9, prompt=d["prompt"])  # response ids + eos
        response_ids = full[:-1][:max_response] + full[-1:]  # = encode_response(..., max_response)
        n_prompts_cut += len(tokenizer(format_prompt(d["prompt"]))["input_ids"]) > max_prompt
        n_responses_cut += len(full) > len(response_ids)
        rows.append({"input_ids": prompt_ids + response_ids,
                     "completion_mask": [0] * len(prompt_ids) + [1] * len(response_ids)})
    return rows, n_prompts_cut, n_responses_cut


def _epoch_of(resume) -> float:
    if resume is None:
        return 0.0
    import json

    return float(json.loads((resume / "trainer_state.json").read_text(encoding="utf-8")).get("epoch") or 0)


def _last_loss(log_history: list[dict], default: float) -> float:
    losses = [row["loss"] for row in log_history if "loss" in row]
    return float(losses[-1]) if losses else float(default)
