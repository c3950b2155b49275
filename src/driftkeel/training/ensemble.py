"""A reward-model ensemble and the conservative reward the policy optimisers maximise.

Members (outputs/reward/model = member 0, outputs/reward/ensemble/member-k) differ by seed and by a
bootstrap resample of the pairs. Their raw scores have arbitrary offsets and scales (Bradley-Terry is
shift-invariant), so each member's reward is first standardised with the calibration recorded in its
config: z_k = (r_k - offset_k) / temperature_k (calibrated log-odds units, centred on the held-out
responses). Then

    conservative reward = mean_k z_k - lambda * std_k z_k        (population std; 0 for one member)

so the policy is not paid for responses on which the members disagree (reward hacking shows up as
disagreement first). :class:`RewardEnsemble` computes it from text (RLOO/GRPO reward functions,
evaluation); :class:`ConservativeRewardModel` computes the same number inside TRL's PPO loop, which
calls `model.<base_model_prefix>(...)` then `model.score(hidden_states[-1])` per token.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import numpy as np
import torch
from torch import nn

from driftkeel.training.models import default_device, inference_dtype, load_reward_model, resolve
from driftkeel.training.reward import get_calibration, score
from driftkeel.training.routing import combine, routing_of


class RewardEnsemble:
    """Members loaded once; scores as (K, N) arrays."""

    def __init__(self, members: Sequence, device=None, dtype=None):
        if not members:
            raise ValueError("RewardEnsemble: no members")
        kw = {"device": device or default_device(), "dtype": dtype or inference_dtype()}
        self.members = [resolve(m if isinstance(m, (tuple, list)) else str(m), load_reward_model, **kw)
                        for m in members]
        cal = [get_calibration(m) for m, _ in self.members]
        self.temperatures = np.array([t for t, _ in cal], dtype=float)
        self.offsets = np.array([o for _, o in cal], dtype=float)

    def __len__(self) -> int:
        return len(self.members)

    def raw(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return np.stack([score(m, prompts, responses) for m in self.members])

    def standardised(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return (self.raw(prompts, responses) - self.offsets[:, None]) / self.temperatures[:, None]

    def conservative(self, prompts: Sequence[str], responses: Sequence[str], lam: float) -> dict:
        """{"mean", "std", "reward"}: per response, reward = mean - lam * std of standardised scores."""
        z = self.standardised(prompts, responses)
        mean, std = z.mean(axis=0), z.std(axis=0)
        return {"mean": mean, "std": std, "reward": mean - lam * std}

    def pair_stats(self, pairs: Sequence[dict]) -> dict:
        """Ensemble-mean pairwise accuracy (ties half) and the mean member disagreement on `pairs`."""
        from driftkeel.evaluation.metrics import pairwise_accuracy

        prompts = [p["prompt"] for p in pairs]
        z = self.standardised(prompts + prompts, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs])
        n = len(pairs)
        mean = z.mean(axis=0)
        return {"accuracy": pairwise_accuracy(mean[:n], mean[n:]), "mean_std": float(z.std(axis=0).mean())}


class _Backbones(nn.Module):
    def __init__(self, backbones: Sequence[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(backbones)

    def forward(self, **kwargs):
        kwargs["output_hidden_states"] = True
        hidden = [m(**kwargs).hidden_states[-1] for m in self.members]
        return SimpleNamespace(hidden_states=(torch.cat(hidden, dim=-1),))


class _Heads(nn.Module):
    """Per-token standardised member rewards -> the conservative reward. A routed member's gate is read
    at `prompt_end` (the last prompt token; TRL's PPO left-pads queries, so it is context_length - 1 for
    every row: training/ppo.py's gates_at_prompt_end sets it before each reward call)."""

    prompt_end: int | None = None

    def __init__(self, heads: Sequence[nn.Module], widths: Sequence[int], offsets, temperatures, lam: float,
                 n_heads: Sequence[int] | None = None):
        super().__init__()
        self.heads = nn.ModuleList(heads)
        self.widths = list(widths)
        self.n_heads = list(n_heads or [1] * len(heads))  # > 1: a routed member (training/routing.py)
        self.register_buffer("offsets", torch.tensor(list(offsets), dtype=torch.float32))
        self.register_buffer("temperatures", torch.tensor(list(temperatures), dtype=torch.float32))
        self.lam = float(lam)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        parts = torch.split(hidden, self.widths, dim=-1)
        z = []
        for h, p, k in zip(self.heads, parts, self.n_heads):
            out = h(p)
            gate = None
            if k > 1 and self.prompt_end is not None and out.dim() >= 3:
                gate = out[..., self.prompt_end:self.prompt_end + 1, :]      # (B, 1, 2K): every token
            z.append(combine(out, k, gate).squeeze(-1).float())
        z = torch.stack(z, dim=-1)
        z = (z - self.offsets) / self.temperatures
        mean = z.mean(dim=-1)
        std = z.std(dim=-1, unbiased=False) if z.shape[-1] > 1 else torch.zeros_like(mean)
        return (mean - self.lam * std).unsqueeze(-1)


class ConservativeRewardModel(nn.Module):
    """The conservative ensemble reward as one module with the interface TRL's PPO `get_reward` uses.

    Works for sequence classifiers that expose their transformer as `base_model_prefix` and a
    `score` head (GPT-2, Llama, Qwen, Mistral, ... in transformers)."""

    base_model_prefix = "backbone"

    def __init__(self, members: Sequence[nn.Module], lam: float):
        super().__init__()
        for m in members:
            if not hasattr(m, "score") or not hasattr(m, m.base_model_prefix):
                raise ValueError(f"{type(m).__name__}: no `score` head / `{m.base_model_prefix}` backbone")
        cal = [get_calibration(m) for m in members]
        self.backbone = _Backbones([getattr(m, m.base_model_prefix) for m in members])
        self.score = _Heads([m.score for m in members], [m.score.in_features for m in members],
                            [o for _, o in cal], [t for t, _ in cal], lam,
                            [len((routing_of(m) or {}).get("domains") or [0]) for m in members])
        self.config = members[0].config

    def forward(self, input_ids, attention_mask=None, prompt_end: int | None = None, **kwargs):
        """Whole-sequence use (tests, tools): per-token rewards; `prompt_end` as in _Heads."""
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        self.score.prompt_end = prompt_end
        try:
            return SimpleNamespace(logits=self.score(out.hidden_states[-1]))
        finally:
            self.score.prompt_end = None


def load_members(dirs: Sequence[str | Path]) -> list[nn.Module]:
    """Member models (fp32, CPU; the trainer moves them) for :class:`ConservativeRewardModel`."""
    return [load_reward_model(str(d))[0] for d in dirs]
