"""RLHF with PPO (`trl.experimental.ppo`, the only module importing it) and policy generation.

The policy starts from the SFT model; a frozen copy of it is the KL reference; the reward is the
conservative ensemble reward (`ensemble.py`) of `<bos> prompt \\n response <eos>`; the value model starts
from reward member 0. All must share one tokenizer (reward models are normally initialised from the
SFT model, so they do). Training runs in checkpointed rounds, so a killed run resumes.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from driftkeel.progress import enabled as progress_enabled
from driftkeel.config import CommonParams, PpoParams, RlParams
from driftkeel.io import atomic_dir
from driftkeel.training import checkpoints as ckpt
from driftkeel.training.common import (
    cpu_threads,
    inference,
    is_main_process,
    quiet,
    quiet_offline_env,
    wait_for_everyone,
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


class _RoundTrainer:
    """Factory of a PPOTrainer subclass (built lazily: trl.experimental.ppo imports only here) whose
    optimizer and LR schedule span the whole run and continue from the previous round's state."""

    cls = None

    @classmethod
    def get(cls):
        if cls.cls is None:
            from trl.experimental.ppo import PPOTrainer

            class RoundPPOTrainer(PPOTrainer):
                def __init__(self, *args, total_updates: int, resume_state: dict | None, **kwargs):
                    self._total_updates, self._resume_state = total_updates, resume_state
                    super().__init__(*args, **kwargs)

                def create_optimizer_and_scheduler(self, num_training_steps):
                    super().create_optimizer_and_scheduler(self._total_updates)
                    if self._resume_state:
                        self.optimizer.load_state_dict(self._resume_state["optimizer"])
                        self.lr_scheduler.load_state_dict(self._resume_state["scheduler"])

            cls.cls = RoundPPOTrainer
        return cls.cls


def _rounds(ckpt_dir: Path) -> list[Path]:
    return sorted(p for p in ckpt_dir.glob("round-*") if p.is_dir())


# a round's policy / value: one safetensors file, or shards listed in an index (save_pretrained shards
# models above its max_shard_size), or LoRA adapters
_ROUND_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")


def _round_complete(path: Path) -> bool:
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    weights = all(any((path / part / w).is_file() for w in _ROUND_WEIGHTS) for part in ("policy", "value"))
    return isinstance(state.get("global_step"), int) and (path / "state.pt").is_file() and weights


def _save_round(ckpt_dir: Path, rnd: int, policy, value, trainer, state: dict) -> None:
    """round-<n>/ {policy, value, state.pt, state.json}, written atomically by the main process; older
    rounds removed."""
    if is_main_process():
        _write_round(ckpt_dir, rnd, policy, value, trainer, state)
    wait_for_everyone()


def _write_round(ckpt_dir: Path, rnd: int, policy, value, trainer, state: dict) -> None:
    with atomic_dir(ckpt_dir / f"round-{rnd:04d}") as tmp:
        policy.save_pretrained(tmp / "policy")
        value.save_pretrained(tmp / "value")
        torch.save({"optimizer": trainer.optimizer.state_dict(),
                    "scheduler": trainer.lr_scheduler.state_dict(), **state}, tmp / "state.pt")
        (tmp / "state.json").write_text(json.dumps({k: state[k] for k in ("round", "global_step", "episode")}))
    for old in _rounds(ckpt_dir):
        if old.name != f"round-{rnd:04d}":
            shutil.rmtree(old, ignore_errors=True)


def _load_weights(model, path: Path) -> None:
    from safetensors.torch import load_file

    if (path / "adapter_model.safetensors").is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(path / "adapter_model.safetensors")))
        return
    index = path / "model.safetensors.index.json"
    if index.is_file():  # sharded: every shard the index names
        state = {}
        for shard in sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())):
            state.update(load_file(str(path / shard)))
    else:
        state = load_file(str(path / "model.safetensors"))
    model.load_state_dict(state, strict=False)


@contextlib.contextmanager
def gates_at_prompt_end(reward_model):
    """While TRL's PPO runs: before each reward call, point the routed members' gates of the
    ConservativeRewardModel (training/ensemble.py) at the last query token (queries are left-padded to
    `context_length`). Here because this is the one module that imports trl.experimental.ppo."""
    import trl.experimental.ppo.ppo_trainer as ppo_trainer

    original = ppo_trainer.get_reward

    def get_reward(model, query_responses, pad_token_id, context_length):
        from driftkeel.training.ensemble import _Heads

        heads = getattr(model, "score", None)
        if isinstance(heads, _Heads):   # the reward model (also when a wrapper forwards `score`)
            heads.prompt_end = context_length - 1
        return original(model, query_responses, pad_token_id, context_length)

    ppo_trainer.get_reward = get_reward
    try:
        yield
    finally:
        ppo_trainer.get_reward = original
        reward_model.score.prompt_end = None


def train_ppo(policy_dir: str | Path, reward_dir, prompts: Sequence[str], out_dir: str | Path,
              common: CommonParams, params: PpoParams, rl: RlParams | None = None) -> dict:
    """Optimise the policy with PPO against the conservative ensemble reward (mean - rl.reward_lambda
    x std of the members' standardised scores; `reward_dir` is one dir or member dirs, member 0 first),
    KL penalty `params.kl_coef` towards the frozen SFT policy, value model from reward member 0.

    Runs in rounds of `params.checkpoint_every` updates (default: about 4 rounds); after each round the
    policy, value model, optimizer and LR schedule are checkpointed atomically, so a killed run resumes
    at the last round and ends where an uninterrupted one does (each round is seeded by its index).
    Saves out_dir/model; returns {"metrics": {mean_score, first_score, last_score, mean_kl, final_kl,
    steps, episodes, ...}, "history": [{step, episode, score, kl, ...}], "model_dir"}."""
    quiet_offline_env()
    from datasets import Dataset
    from transformers import set_seed
    from trl.experimental.ppo import PPOConfig

    from driftkeel.training import lora as lora_mod
    from driftkeel.training.ensemble import ConservativeRewardModel, load_members

    rl = rl or RlParams()
    reward_dirs = [Path(d) for d in (reward_dir if isinstance(reward_dir, (list, tuple)) else [reward_dir])]
    if params.batch_size % params.mini_batch_size:
        raise ValueError(f"ppo.batch_size ({params.batch_size}) must be a multiple of ppo.mini_batch_size "
                         f"({params.mini_batch_size})")
    out_dir = Path(out_dir)
    chosen = select_prompts(prompts, params.n_prompts, common.seed)
    if len(chosen) < params.batch_size:
        raise ValueError(f"train_ppo: {len(chosen)} distinct prompts, fewer than ppo.batch_size "
                         f"({params.batch_size})")
    ckpt_dir = out_dir / "checkpoints"
    resume = ckpt.prepare(ckpt_dir, ckpt.run_fingerprint(
        "ppo", params=params, common=common, data=[chosen, rl.reward_lambda, rl.lora.model_dump()],
        models=[policy_dir, *reward_dirs]), complete=_round_complete, listing=_rounds)
    set_seed(common.seed)
    policy, tokenizer = load_causal_lm(policy_dir)
    lengths = get_lengths(policy)
    ref_policy, _ = load_causal_lm(policy_dir)
    members = load_members(reward_dirs)
    # the value head has one output (a routed reward model's 2K-output head is not copied)
    value_model, reward_tok = load_reward_model(reward_dirs[0], num_labels=1)
    _check_same_tokenizer(tokenizer, reward_tok)
    for m in members[1:]:
        if m.config.vocab_size != members[0].config.vocab_size:
            raise ValueError("reward ensemble members must share one tokenizer")
    reward_model = ConservativeRewardModel(members, rl.reward_lambda)
    for frozen in (ref_policy, reward_model):
        frozen.eval().requires_grad_(False)
    before = params_snapshot(policy)
    policy = lora_mod.apply(policy, rl.lora, "CAUSAL_LM")
    max_prompt, _ = lengths

    rows = [{"input_ids": encode_prompt(tokenizer, p, max_prompt)} for p in chosen]
    train_ds = Dataset.from_list(rows)
    eval_ds = Dataset.from_list(rows[: params.batch_size])  # required by the trainer; unused (no samples)
    total_updates = math.ceil(params.total_episodes / params.batch_size)
    every = ckpt.save_every(total_updates, params.checkpoint_every)
    state = {"round": 0, "global_step": 0, "episode": 0, "history": []}
    saved = None
    if resume is not None:
        _load_weights(policy, resume / "policy")
        _load_weights(value_model, resume / "value")
        saved = torch.load(resume / "state.pt", weights_only=True)  # tensors, numbers, lists, dicts
        state = {k: saved[k] for k in ("round", "global_step", "episode", "history")}
    start_step = state["global_step"]
    trainer_cls = _RoundTrainer.get()
    seconds = 0.0
    n_rounds = math.ceil(total_updates / every)
    from driftkeel.progress import bar

    for rnd in bar(range(state["round"], n_rounds), "ppo rounds", total=n_rounds - state["round"], unit="round"):
        updates = min(every, total_updates - rnd * every)
        set_seed(common.seed + rnd)
        args = PPOConfig(
            output_dir=str(ckpt_dir), seed=common.seed + rnd, learning_rate=params.learning_rate,
            total_episodes=updates * params.batch_size, per_device_train_batch_size=params.batch_size,
            gradient_accumulation_steps=1, num_mini_batches=params.batch_size // params.mini_batch_size,
            num_ppo_epochs=params.ppo_epochs, kl_coef=params.kl_coef, response_length=params.response_length,
            temperature=params.temperature, stop_token="eos", missing_eos_penalty=params.missing_eos_penalty,
            local_rollout_forward_batch_size=max(params.batch_size, 16), num_sample_generations=0,
            save_strategy="no", report_to="none", logging_steps=1, disable_tqdm=not progress_enabled(), bf16=use_bf16(),
            fp16=False, activation_checkpointing=False, dataloader_pin_memory=torch.cuda.is_available(),
        )
        with warnings.catch_warnings():  # TRL's PPO wrapper reads a deprecated transformers attribute
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            trainer = trainer_cls(args=args, processing_class=tokenizer, model=policy, ref_model=ref_policy,
                                  reward_model=reward_model, value_model=value_model, train_dataset=train_ds,
                                  eval_dataset=eval_ds, total_updates=total_updates, resume_state=saved)
            quiet(trainer)
            ckpt.add_callbacks(trainer)
            t0 = time.perf_counter()
            with cpu_threads(policy), contextlib.redirect_stdout(io.StringIO()), gates_at_prompt_end(reward_model):
                trainer.train()  # (stdout: "===training policy==="; routed reward gates read the last query token)
            seconds += time.perf_counter() - t0
        for r in trainer.state.log_history:
            if "objective/scores" in r:
                state["history"].append({"step": state["global_step"] + int(r["step"]),
                                         **{_LOG_KEYS[k]: float(r[k]) for k in _LOG_KEYS if k in r}})
                state["history"][-1]["episode"] = state["episode"] + float(r.get("episode", 0))
        state["global_step"] += int(trainer.state.global_step)
        state["episode"] += int(trainer.state.episode)
        state["round"] = rnd + 1
        saved = {"optimizer": trainer.optimizer.state_dict(), "scheduler": trainer.lr_scheduler.state_dict()}
        _save_round(ckpt_dir, rnd + 1, policy, value_model, trainer, state)

    trained = lora_mod.merged(policy)
    set_lengths(trained, *lengths)
    save_model(trained, tokenizer, out_dir / "model")
    ckpt.finish(ckpt_dir)
    hist = state["history"]
    scores = [h["score"] for h in hist] or [float("nan")]
    kls = [h["kl"] for h in hist] or [float("nan")]
    metrics = {
        "mean_score": float(np.mean(scores)),
        "first_score": float(scores[0]),
        "last_score": float(scores[-1]),
        "mean_kl": float(np.mean(kls)),
        "final_kl": float(kls[-1]),
        "steps": int(state["global_step"]),
        "episodes": int(state["episode"]),
        "n_prompts": len(chosen),
        "n_reward_members": len(members),
        "reward_lambda": rl.reward_lambda,
        "resumed_from_step": start_step,
        "train_seconds": seconds,
        "episodes_per_s": (state["episode"] - start_step * params.batch_size) / max(seconds, 1e-9),
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
