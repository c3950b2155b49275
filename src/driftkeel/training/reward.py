"""Reward model: training with `trl.RewardTrainer`, scoring, pairwise accuracy.

A pair is {prompt, chosen, rejected, weight}. Texts are tokenized here (`encode_prompt` +
`encode_response`, i.e. `<bos> prompt \\n response <eos>`), the same way :func:`score` and the PPO
rollouts see them, and handed to RewardTrainer already tokenized. The Bradley-Terry loss is weighted
per pair by `weight` (e.g. the annotation confidence): the batch mean of weight x pair loss, with the
weights scaled to mean 1 over the training pairs (:func:`encode_pairs`), so a pair's weight counts
against all the others, not only against those that share its batch (dividing by the batch's weight sum
made a batch of low-weight pairs train at full weight, and weights at batch_size 1 meaningless); with all
weights equal it is TRL's loss.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from trl import RewardConfig, RewardTrainer
from trl.trainer.reward_trainer import DataCollatorForPreference

from driftkeel.config import CommonParams, RewardParams
from driftkeel.io import read_json, write_json
from driftkeel.training import checkpoints as ckpt
from driftkeel.training.common import (
    base_args,
    cpu_threads,
    gathered_state_dict,
    history,
    inference,
    is_main_process,
    quiet,
    quiet_offline_env,
    wait_for_everyone,
    world_size,
)
from driftkeel.training.lora import merged, peft_config
from driftkeel.training.routing import (combine, domain_of, n_outputs, plan_domains, routed_loss, routing_of,
                                        set_routing)
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
                 max_response_tokens: int, domains: Sequence[int] | None = None) -> list[dict]:
    """Tokenized pairs; `domains`: each pair's routed head index (training/routing.py), when routed.
    Weights (default 1) are scaled to mean 1 over `pairs` (all of them 0: left as they are)."""
    raw = [float(p.get("weight", 1.0) if p.get("weight") is not None else 1.0) for p in pairs]
    mean_w = sum(raw) / len(raw) if raw else 1.0
    scale = 1.0 / mean_w if mean_w > 0 else 1.0
    rows = []
    for i, p in enumerate(pairs):
        prompt_ids = encode_prompt(tokenizer, p["prompt"], max_prompt_tokens)
        rows.append({
            "chosen_ids": prompt_ids + encode_response(tokenizer, p["chosen"], max_response_tokens),
            "rejected_ids": prompt_ids + encode_response(tokenizer, p["rejected"], max_response_tokens),
            "weight": raw[i] * scale,
        })
        if domains is not None:
            rows[-1]["domain"] = int(domains[i])
            rows[-1]["prompt_ids"] = prompt_ids   # the gate reads the last prompt token
    return rows


class WeightedPreferenceCollator(DataCollatorForPreference):
    """TRL's preference collator, also passing each pair's `weight` (and routed `domain`)."""

    def torch_call(self, examples):
        out = super().torch_call(examples)
        if "weight" in examples[0]:
            out["weight"] = torch.tensor([float(e["weight"]) for e in examples], dtype=torch.float)
        if "domain" in examples[0]:
            out["domain"] = torch.tensor([int(e["domain"]) for e in examples], dtype=torch.long)
        if "prompt_ids" in examples[0]:
            out["prompt_input_ids"], out["prompt_attention_mask"] = right_padded(
                [e["prompt_ids"] for e in examples], self.pad_token_id)
        return out


def right_padded(seqs: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of right-padded sequences: a sequence classifier reads its last real token."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


class WeightedRewardTrainer(RewardTrainer):
    """RewardTrainer whose loss is the batch mean of weight x pairwise loss -log σ(r_chosen - r_rejected)
    (weights of mean 1 over the training pairs, see :func:`encode_pairs`); with `n_heads` > 1, the
    domain-routed loss of training/routing.py (own head + gate)."""

    n_heads, gate_weight = 1, 1.0

    def __init__(self, *args, n_heads: int = 1, gate_weight: float = 1.0, **kwargs):
        model = kwargs["model"]
        outputs = model.config.num_labels
        model.config.num_labels = 1  # TRL checks for one output; a routed head has 2K
        try:
            super().__init__(*args, **kwargs)
        finally:
            model.config.num_labels = outputs
        self.n_heads, self.gate_weight = n_heads, gate_weight

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["chosen_ids", "rejected_ids", "margin", "weight", "domain", "prompt_ids"]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.n_heads > 1:
            return self._routed_loss(model, inputs, return_outputs)
        inputs.pop("domain", None)
        weight = inputs.pop("weight", None)
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True,
                                             num_items_in_batch=num_items_in_batch)
        if weight is not None:
            chosen, rejected = torch.chunk(outputs.logits.squeeze(-1), chunks=2)
            diff = chosen - rejected
            if "margin" in inputs:
                diff = diff - inputs["margin"]
            w = weight.to(diff.dtype)
            loss = (-F.logsigmoid(diff) * w).mean()
            if self.args.center_rewards_coefficient is not None:
                loss = loss + self.args.center_rewards_coefficient * torch.mean((chosen + rejected) ** 2)
        return (loss, outputs) if return_outputs else loss

    def _routed_loss(self, model, inputs, return_outputs):
        domain, weight, margin = inputs.pop("domain"), inputs.pop("weight", None), inputs.pop("margin", None)
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
        prompt = model(input_ids=inputs["prompt_input_ids"], attention_mask=inputs["prompt_attention_mask"],
                       use_cache=False).logits   # = the logits at the last prompt token (causal)
        chosen, rejected = torch.chunk(outputs.logits, chunks=2)
        if weight is None:
            weight = torch.ones(chosen.shape[0], device=chosen.device)
        loss, diff = routed_loss(chosen, rejected, prompt, domain, self.n_heads, weight, margin, self.gate_weight)
        if self.args.center_rewards_coefficient is not None:
            k = self.n_heads
            loss = loss + self.args.center_rewards_coefficient * torch.mean((chosen[:, :k] + rejected[:, :k]) ** 2)
        mode = "train" if self.model.training else "eval"
        with torch.no_grad():
            self._metrics[mode]["accuracy"].append(
                self.accelerator.gather_for_metrics((diff > 0).float().mean()).mean().item())
        return (loss, outputs) if return_outputs else loss


def bootstrap_pairs(pairs: Sequence[dict], seed: int) -> list[dict]:
    """A seeded bootstrap resample: n pairs drawn with replacement from the n pairs (a pair drawn twice is
    two rows; weights unchanged), in the original order. So a member takes as many optimiser steps, with
    the same learning-rate schedule, as member 0 on the full data (a resample as Poisson weights kept
    only ~63% of the rows and gave the members ~37% fewer steps). No pairs -> no pairs."""
    n = len(pairs)
    if n == 0:
        return []
    idx = np.sort(np.random.default_rng(seed).integers(0, n, size=n))
    return [dict(pairs[i]) for i in idx]


def attach_margins(pairs: Sequence[dict], margins: dict[str, float], scale: float) -> list[dict]:
    """Each pair's Bradley-Terry margin = `scale` x its aggregate margin (log-odds of the preference,
    from outputs/aggregate/training_weights.parquet, keyed by pair_id); 0 when unknown."""
    return [{**p, "margin": float(scale) * float(margins.get(str(p.get("pair_id")), 0.0) or 0.0)}
            for p in pairs]


def read_margins(path: str | Path) -> dict[str, float]:
    """{comparison_id: margin} from the aggregate stage's training weights (empty if absent)."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        return {}
    df = pd.read_parquet(path, columns=["comparison_id", "margin"]).dropna()
    return dict(zip(df["comparison_id"].astype(str), df["margin"].astype(float)))


def set_calibration(model, temperature: float, offset: float) -> None:
    """Record the member's calibration in its config (travels with the saved and registered model):
    P(a > b) = sigmoid((r_a - r_b) / temperature); standardised reward = (r - offset) / temperature."""
    rec = dict(getattr(model.config, "driftkeel", None) or {})
    rec.update({"temperature": float(temperature), "reward_offset": float(offset)})
    model.config.driftkeel = rec


def get_calibration(model) -> tuple[float, float]:
    """(temperature, offset) recorded by :func:`set_calibration`, else (1.0, 0.0)."""
    rec = getattr(model.config, "driftkeel", None) or {}
    return float(rec.get("temperature", 1.0)), float(rec.get("reward_offset", 0.0))


OFFSET_SAMPLE = 256   # training pairs that centre a member's scores when there are no held-out pairs


def train_reward_member(train_pairs: Sequence[dict], calib_pairs: Sequence[dict], init_path: str | Path,
                        model_dir: str | Path, ckpt_dir: str | Path, common: CommonParams,
                        params: RewardParams, seed: int, keep_checkpoints: bool = False) -> dict:
    """Train one reward model (checkpointed, resumable), calibrate it on `calib_pairs`, save it to
    `model_dir` atomically. Returns {"metrics", "history", "eval_history", "model_dir"}.
    `keep_checkpoints`: leave them for the caller to remove (an ensemble keeps finished members'
    final checkpoints until every member is saved, so a re-run after a kill does not retrain them)."""
    quiet_offline_env()
    from datasets import Dataset
    from transformers import set_seed

    from driftkeel.evaluation.metrics import (expected_calibration_error, fit_temperature, pair_outcomes,
                                              preference_nll, preference_probability)

    if not train_pairs:
        raise ValueError("train_reward: no training pairs")
    model_dir, ckpt_dir = Path(model_dir), Path(ckpt_dir)
    resume = ckpt.prepare(ckpt_dir, ckpt.run_fingerprint(
        "reward", params=params, common=common, data=[list(train_pairs), list(calib_pairs), seed],
        models=[init_path]))
    start_step = ckpt.resumed_step(resume)
    domains, pair_domains = [], None
    if params.routing.enabled:
        domains, pair_domains = plan_domains(train_pairs, params.routing.key, params.routing.min_pairs,
                                             params.routing.shared)
    set_seed(seed)  # the score head is initialised at load time
    model, tokenizer = load_reward_model(init_path, num_labels=n_outputs(domains))
    set_routing(model, params.routing.key, domains)  # recorded (or cleared: one domain = no routing)
    set_lengths(model, common.max_prompt_tokens, common.max_response_tokens)
    mp, mr = common.max_prompt_tokens, common.max_response_tokens
    rows = encode_pairs(tokenizer, train_pairs, mp, mr, pair_domains if domains else None)
    if any("margin" in p for p in train_pairs):
        for row, p in zip(rows, train_pairs):
            row["margin"] = float(p.get("margin") or 0.0)
    train_ds = Dataset.from_list(rows)

    # no evaluation during training: the held-out pairs are scored once at the end (calibration,
    # eval_accuracy, eval_loss); mid-run evaluations cost more than 10% of a short run
    kwargs = base_args(ckpt_dir, seed=seed, learning_rate=params.learning_rate,
                       batch_size=params.batch_size, epochs=params.epochs, max_steps=params.max_steps,
                       n_examples=len(train_ds), checkpoint_every=params.checkpoint_every)
    # HF's random sampler: the pairs are reshuffled every epoch, so `mix.order` does not reach training. A
    # sequential sampler (keeping the mix's order) was tried in session 8 and cost the replay-30% model of
    # benchmarks/reward_flip 10 points on domain A in one run (0.541 -> 0.440): reverted, see docs/training.md
    args = RewardConfig(**kwargs, max_length=None, disable_dropout=True,
                        center_rewards_coefficient=params.center_rewards_coefficient)
    before = params_snapshot(model)  # before LoRA adapters are injected (they rename the weights)
    trainer = WeightedRewardTrainer(
        model=model, args=args, train_dataset=train_ds, processing_class=tokenizer,
        data_collator=WeightedPreferenceCollator(pad_token_id=tokenizer.pad_token_id),
        peft_config=peft_config(params.lora, "SEQ_CLS"),
        n_heads=len(domains), gate_weight=params.routing.gate_weight,
    )
    quiet(trainer)
    ckpt.add_callbacks(trainer)
    t0 = time.perf_counter()
    with cpu_threads(trainer.model):
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - t0

    full = gathered_state_dict(trainer)
    trained = merged(trainer.model)
    trained.config.pad_token_id = tokenizer.pad_token_id
    set_routing(trained, params.routing.key, domains)
    temperature, offset, calib, c, r = 1.0, 0.0, {}, np.zeros(0), np.zeros(0)
    if calib_pairs:
        c, r = score_pairs((trained, tokenizer), calib_pairs)
        if params.calibrate:
            temperature = fit_temperature(c - r)
        offset = float(np.mean(np.concatenate([c, r])))
        calib = {"calibration_ece_raw": expected_calibration_error(preference_probability(c - r)),
                 "calibration_ece": expected_calibration_error(preference_probability(c - r, temperature))}
    else:  # no held-out pairs (mix.eval_fraction 0): centre on a seeded training sample, temperature 1
        # (fitted in-sample it would be over-confident). Without a centre every member kept its own
        # arbitrary offset and the ensemble std measured those offsets, not disagreement.
        idx = np.random.default_rng(seed).permutation(len(train_pairs))[:OFFSET_SAMPLE]
        tc, tr = score_pairs((trained, tokenizer), [train_pairs[i] for i in sorted(idx)])
        offset = float(np.mean(np.concatenate([tc, tr])))
        print(f"reward: no held-out pairs: member offset from {len(idx)} training pairs, temperature 1")
    set_calibration(trained, temperature, offset)
    save_model(trained, tokenizer, model_dir, state_dict=full)
    if not keep_checkpoints:
        ckpt.finish(ckpt_dir)
    epochs = float(trainer.state.epoch or 0.0)
    done_epochs = epochs * (1 - start_step / max(trainer.state.global_step, 1))
    metrics = {
        "train_loss": ckpt.logged_mean(trainer.state.log_history, "loss"),
        "steps": int(trainer.state.global_step),
        "epochs": epochs,
        "n_train_pairs": len(train_ds),
        "n_eval_pairs": len(calib_pairs),
        "train_seconds": seconds,
        "pairs_per_s": len(train_ds) * done_epochs / max(seconds, 1e-9),
        "resumed_from_step": start_step,
        "train_accuracy": _late_mean(trainer.state.log_history, "accuracy"),
        "eval_accuracy": float(pair_outcomes(c, r).mean()) if calib_pairs else float("nan"),
        "eval_loss": preference_nll(c - r) if calib_pairs else float("nan"),
        "temperature": temperature,
        "reward_offset": offset,
        "calibrated_on_held_out": 1.0 if calib_pairs else 0.0,   # 0: offset from a training sample, T = 1
        **calib,
        "params_changed_fraction": changed_fraction(before, trained),
        "routing_heads": len(domains) if len(domains) > 1 else 1,
    }
    if len(domains) > 1 and calib_pairs:
        metrics.update(_routed_metrics(trained, tokenizer, calib_pairs, c, r, params.routing.key, domains))
    evals = ([{"step": metrics["steps"], "eval_loss": metrics["eval_loss"],
               "eval_accuracy": metrics["eval_accuracy"]}] if calib_pairs else [])
    return {"metrics": metrics, "history": history(trainer.state.log_history, "loss"),
            "eval_history": evals, "model_dir": str(model_dir), "calib_scores": (c, r)}


def _routed_metrics(model, tokenizer, pairs: Sequence[dict], c: np.ndarray, r: np.ndarray, key: str,
                    domains: Sequence[str]) -> dict:
    """Held-out accuracy per routed domain (`eval_accuracy_domain_<i>`, i = index in `domains`) and the
    gate's accuracy on the pairs whose domain has a head."""
    from driftkeel.evaluation.metrics import pair_outcomes

    names = [domain_of(p, key) for p in pairs]
    out = {}
    for i, d in enumerate(domains):
        mask = np.array([n == d for n in names])
        out[f"eval_accuracy_domain_{i}"] = float(pair_outcomes(c[mask], r[mask]).mean()) if mask.any() else float("nan")
    known = [(p, domains.index(n)) for p, n in zip(pairs, names) if n in domains]
    if known:
        gates = gate_probabilities((model, tokenizer), [p["prompt"] for p, _ in known])
        out["gate_accuracy"] = float(np.mean(gates.argmax(axis=1) == np.array([i for _, i in known])))
    return out


def _late_mean(log_history: list[dict], key: str) -> float:
    """Mean of the logged training-batch `key` over the last quarter of the run (TRL logs the batch
    accuracy; reading it from the logs costs nothing, re-scoring the training set would)."""
    rows = [r for r in log_history if key in r and "step" in r and "eval_" + key not in r]
    if not rows:
        return float("nan")
    last = rows[-1]["step"]
    tail = [float(r[key]) for r in rows if r["step"] > 0.75 * last] or [float(rows[-1][key])]
    return float(np.mean(tail))


ENSEMBLE_DIR, ENSEMBLE_FILE = "ensemble", "ensemble.json"


def member_path(out_dir: Path, k: int) -> Path:
    """Member 0 is out_dir/model (the registered reward model); the others out_dir/ensemble/member-k."""
    return out_dir / "model" if k == 0 else out_dir / ENSEMBLE_DIR / f"member-{k}"


def train_reward(train_pairs: Sequence[dict], eval_pairs: Sequence[dict], init_path: str | Path,
                 out_dir: str | Path, common: CommonParams, params: RewardParams,
                 margins: dict[str, float] | None = None) -> dict:
    """Train `params.ensemble_size` reward models initialised from `init_path` (the SFT model dir, a
    Hub id or a path): member 0 on all pairs (seed `common.seed`), members k >= 1 on a bootstrap
    resample (`params.bootstrap`) with seed `common.seed + k`. Each is checkpointed (resumable after a
    kill), temperature-calibrated on `eval_pairs` and saved atomically; member 0 is trained and saved
    after the others, and `out_dir/ensemble/ensemble.json` (the list) is written last.
    `margins` ({pair_id: margin}) x `params.margin_scale` are Bradley-Terry margins.

    Returns member 0's {"metrics", "history", "eval_history", "model_dir"} with ensemble_* metrics
    added, plus "member_dirs" and "members" (each member's metrics)."""
    out_dir = Path(out_dir)
    pairs = list(train_pairs)
    if params.margin_scale > 0 and margins:
        pairs = attach_margins(pairs, margins, params.margin_scale)
    by_member = {}
    for k in [*range(1, params.ensemble_size), 0]:  # member 0 (outputs/reward/model) last
        seed = common.seed + k
        data = bootstrap_pairs(pairs, seed) if k > 0 and params.bootstrap else pairs
        by_member[k] = train_reward_member(data, eval_pairs, init_path, member_path(out_dir, k),
                                           out_dir / "checkpoints" / f"member-{k}", common, params, seed,
                                           keep_checkpoints=True)
    results = [by_member[k] for k in range(params.ensemble_size)]
    ens_dir = out_dir / ENSEMBLE_DIR
    for stale in ens_dir.glob("member-*") if ens_dir.is_dir() and is_main_process() else []:
        if stale.is_dir() and int(stale.name.split("-")[1]) >= params.ensemble_size:
            shutil.rmtree(stale)
    manifest = {"members": [str(member_path(out_dir, k).relative_to(out_dir))
                            for k in range(params.ensemble_size)],
                "seeds": [common.seed + k for k in range(params.ensemble_size)],
                "bootstrap": params.bootstrap,
                "temperatures": [r["metrics"]["temperature"] for r in results],
                "offsets": [r["metrics"]["reward_offset"] for r in results]}
    if is_main_process():
        write_json(ens_dir / ENSEMBLE_FILE, manifest)
    wait_for_everyone()
    ckpt.finish(out_dir / "checkpoints")

    res = dict(results[0])
    metrics = dict(res["metrics"])
    metrics["ensemble_size"] = params.ensemble_size
    metrics["n_processes"] = world_size()  # > 1 under accelerate launch / torchrun (data parallel)
    metrics["resumed_members"] = sum(r["metrics"]["resumed_from_step"] > 0 for r in results)
    metrics["train_seconds_all_members"] = sum(r["metrics"]["train_seconds"] for r in results)
    metrics["margin_scale"] = params.margin_scale
    metrics["n_pairs_with_margin"] = sum(1 for p in pairs if p.get("margin"))   # pairs without one: margin 0
    if eval_pairs:  # standardised member scores of the held-out pairs (already computed)
        from driftkeel.evaluation.metrics import pairwise_accuracy as accuracy

        z = np.stack([np.concatenate(r["calib_scores"]) for r in results])
        z = (z - np.array([[r["metrics"]["reward_offset"]] for r in results])) / np.array(
            [[r["metrics"]["temperature"]] for r in results])
        mean, n = z.mean(axis=0), len(eval_pairs)
        stats = {"accuracy": accuracy(mean[:n], mean[n:]), "mean_std": float(z.std(axis=0).mean())}
        metrics.update({"ensemble_eval_accuracy": stats["accuracy"], "ensemble_mean_std": stats["mean_std"],
                        "member_eval_accuracy_min": min(r["metrics"]["eval_accuracy"] for r in results),
                        "member_eval_accuracy_max": max(r["metrics"]["eval_accuracy"] for r in results)})
    res.pop("calib_scores", None)
    res.update(metrics=metrics, member_dirs=[r["model_dir"] for r in results],
               members=[r["metrics"] for r in results])
    return res


def ensemble_members(reward_out: str | Path) -> list[Path]:
    """The reward stage's member dirs (member 0 first) from its manifest; [model] when there is none."""
    reward_out = Path(reward_out)
    manifest = reward_out / ENSEMBLE_DIR / ENSEMBLE_FILE
    if manifest.is_file():
        return [reward_out / rel for rel in read_json(manifest)["members"]]
    return [reward_out / "model"]


# ----------------------------------------------------------------------------------------- scoring


def score(model_dir_or_pair, prompts: Sequence[str], responses: Sequence[str],
          batch_size: int = 32) -> np.ndarray:
    """Reward of each (prompt, response): float64 array, no gradients, deterministic.

    `model_dir_or_pair` is a reward-model directory / Hub id, or a loaded (model, tokenizer)."""
    if len(prompts) != len(responses):
        raise ValueError(f"score: {len(prompts)} prompts but {len(responses)} responses")
    if not len(prompts):
        return np.zeros(0, dtype=np.float64)
    return _forward(model_dir_or_pair, prompts, responses, batch_size, gate=False)[:, 0]


def gate_probabilities(model_dir_or_pair, prompts: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """(N, K) gate probabilities of a routed reward model (training/routing.py): read at the last prompt
    token, so they depend on the prompt alone."""
    return _forward(model_dir_or_pair, prompts, [""] * len(prompts), batch_size, gate=True)


def _forward(model_dir_or_pair, prompts, responses, batch_size: int, gate: bool) -> np.ndarray:
    model, tokenizer = resolve(model_dir_or_pair, load_reward_model, device=default_device(),
                               dtype=inference_dtype())
    routing = routing_of(model)
    k = len(routing["domains"]) if routing else 1
    if gate and not routing:
        raise ValueError("gate_probabilities: not a routed reward model")
    device = next(model.parameters()).device
    mp, mr = get_lengths(model)
    prompt_seqs = [encode_prompt(tokenizer, p, mp) for p in prompts]
    seqs = [ps + encode_response(tokenizer, r, mr) for ps, r in zip(prompt_seqs, responses)]
    order = np.argsort([len(s) for s in seqs], kind="stable")  # similar lengths together: less padding
    out = np.zeros((len(seqs), k if gate else 1), dtype=np.float64)
    pad = tokenizer.pad_token_id
    with inference(model):
        for start in range(0, len(seqs), batch_size):
            idx = order[start:start + batch_size]
            at_prompt = None
            if routing:  # the gate: the logits at the last prompt token (a prompt-only pass)
                p_ids, p_mask = right_padded([prompt_seqs[i] for i in idx], pad)
                at_prompt = model(input_ids=p_ids.to(device), attention_mask=p_mask.to(device)).logits.float()
            if gate:
                part = torch.softmax(at_prompt[:, k:2 * k], dim=-1)
            else:  # the heads: the logits at the last real token
                ids, mask = right_padded([seqs[i] for i in idx], pad)
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
                part = combine(logits, k, at_prompt)
            out[idx] = part.cpu().numpy()
    return out


def score_pairs(model_dir_or_pair, pairs: Sequence[dict], batch_size: int = 32):
    """(chosen_scores, rejected_scores) of `pairs` in one scoring pass."""
    prompts = [p["prompt"] for p in pairs]
    s = score(model_dir_or_pair, prompts + prompts,
              [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs], batch_size=batch_size)
    return s[: len(pairs)], s[len(pairs):]


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
