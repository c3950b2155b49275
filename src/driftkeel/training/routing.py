"""Domain-routed reward heads: one reward model that keeps several preference regimes apart.

When the notion of a good answer differs between kinds of prompts (a real case: on HH-RLHF harmless
the shorter answer is preferred, on AlpacaEval the longer one), one Bradley-Terry head trained on the
mixture learns the average and loses the older domain, even with replay. With `reward.routing` the
reward model gets K reward heads and a K-way gate on the same transformer (one sequence classifier
with 2K outputs, so it saves, registers and loads like any Hugging Face model):

    logits[..., :K]  = r_k    the reward under domain k's preferences
    logits[..., K:]  = g_k    the gate: which domain this conversation belongs to
    reward           = sum_k softmax(g)_k * r_k

The heads read the last token (as every reward does); the gate reads the LAST PROMPT TOKEN, which in a
causal transformer has seen the prompt and nothing of the response. So both responses to a prompt are
judged by the same mixture of heads, and a response cannot move the gate (a policy cannot buy the
other domain's preferences by writing in its style).

Training: each pair's Bradley-Terry loss uses the head of its own domain (the value of the pair's
`routing.key` field; by default `era`, which the mix stage sets to "before" / "after" the first batch
the drift stage raised an alarm on, so the heads follow the drift without any domain labels), and the
gate learns the domain by cross-entropy on the prompt. Domains with fewer than `routing.min_pairs` pairs
have no head of their own, nor have pairs whose value is in `routing.shared` (the mix stage's
`synthetic` pairs): their pairs train every head.

The routing (domain names, key) is recorded in the model's config (`config.driftkeel["routing"]`), so
:func:`combine` turns raw logits into the reward wherever a reward model is scored: `reward.score`,
the ensemble, PPO's in-loop reward.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import torch

ROUTING = "routing"
SHARED = -1  # domain index of pairs that train every head


def routing_of(model) -> dict | None:
    """{"key", "domains"} recorded in the model's config, or None (a plain one-head reward model)."""
    rec = getattr(getattr(model, "config", None), "driftkeel", None) or {}
    r = rec.get(ROUTING)
    return dict(r) if r and len(r.get("domains") or ()) > 1 else None


def set_routing(model, key: str, domains: Sequence[str]) -> None:
    rec = dict(getattr(model.config, "driftkeel", None) or {})
    rec[ROUTING] = {"key": key, "domains": list(domains)}
    model.config.driftkeel = rec


def n_outputs(domains: Sequence[str]) -> int:
    """Outputs of the score head: 1 without routing, 2K with K > 1 domains."""
    return 2 * len(domains) if len(domains) > 1 else 1


def domain_of(pair: dict, key: str) -> str:
    value = pair.get(key)
    return "" if value is None else str(value)


def plan_domains(pairs: Sequence[dict], key: str, min_pairs: int, shared: Sequence[str] = ()
                 ) -> tuple[list[str], list[int]]:
    """(domains with a head, sorted; per pair its head index or SHARED). Pairs without the key, with a
    value in `shared` or of a domain under `min_pairs` pairs are SHARED. Fewer than two domains with a
    head -> ([], all SHARED): no routing, a plain reward model."""
    counts = Counter(domain_of(p, key) for p in pairs)
    domains = sorted(d for d, n in counts.items() if d and d not in set(shared) and n >= min_pairs)
    if len(domains) < 2:
        return [], [SHARED] * len(pairs)
    index = {d: i for i, d in enumerate(domains)}
    return domains, [index.get(domain_of(p, key), SHARED) for p in pairs]


def combine(logits: torch.Tensor, k: int, gate_logits: torch.Tensor | None = None) -> torch.Tensor:
    """(..., 2K) raw outputs -> (..., 1) gated reward; (..., 1) passes through (k <= 1). `gate_logits`:
    the outputs at the last prompt token (broadcastable to `logits`), whose gate part is used."""
    if k <= 1:
        return logits[..., :1]
    heads = logits[..., :k]
    gate = (logits if gate_logits is None else gate_logits)[..., k:2 * k]
    return (torch.softmax(gate.float(), dim=-1) * heads.float()).sum(dim=-1, keepdim=True).to(logits.dtype)


def routed_loss(chosen: torch.Tensor, rejected: torch.Tensor, prompt: torch.Tensor, domain: torch.Tensor,
                k: int, weight: torch.Tensor, margin: torch.Tensor | None = None, gate_weight: float = 1.0
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted Bradley-Terry loss (batch mean of weight x pair loss) on each pair's own head (SHARED
    pairs: the mean over heads) plus
    `gate_weight` x the gate's cross-entropy on the pairs with a domain. chosen / rejected: (B, 2K)
    logits at the last token; prompt: (B, 2K) logits at the last prompt token (the gate's input).
    Returns (loss, the pairs' reward differences for metrics: chosen - rejected on their own head,
    before any margin, as TRL's accuracy of the unrouted model)."""
    import torch.nn.functional as F

    own = domain.clamp_min(0)
    shared = domain < 0
    diff_all = chosen[:, :k] - rejected[:, :k]                              # (B, K)
    diff = diff_all.gather(1, own[:, None]).squeeze(1)
    diff = torch.where(shared, diff_all.mean(dim=1), diff)
    fit = diff - margin if margin is not None else diff
    w = weight.to(diff.dtype)
    loss = (-F.logsigmoid(fit) * w).mean()     # weights of mean 1 over the training pairs (reward.encode_pairs)
    has = ~shared
    if gate_weight > 0 and bool(has.any()):
        loss = loss + gate_weight * F.cross_entropy(prompt[has, k:2 * k].float(), own[has])
    return loss, diff
