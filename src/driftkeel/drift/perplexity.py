"""The policy's perplexity on prompts (input of the perplexity drift test).

`drift.perplexity_model` names a local directory holding a Hugging Face causal LM (for example the
policy the ppo stage saved, copied out of the DVC graph so that the drift stage does not depend on a
later stage). Each prompt's perplexity is exp(mean token negative log-likelihood) under that model.
Only `max_prompts` prompts per batch are scored (seeded sample); the others get NaN and are left out.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def perplexities(model_dir: str | Path, texts: list[str], batch_size: int = 16, max_length: int = 256) -> np.ndarray:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    out = np.full(len(texts), np.nan)
    with torch.no_grad():
        for s in range(0, len(texts), batch_size):
            enc = tok(texts[s:s + batch_size], return_tensors="pt", padding=True, truncation=True,
                      max_length=max_length)
            logits = model(**enc).logits[:, :-1]
            target = enc["input_ids"][:, 1:]
            mask = enc["attention_mask"][:, 1:].float()
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
            scored = mask.sum(1)
            per = (nll * mask).sum(1) / scored.clamp(min=1)
            # a text with no scored token (one token, and a tokenizer that adds no bos): no perplexity,
            # not exp(0) = 1 (a "perfect" value the KS test would take)
            out[s:s + len(per)] = torch.where(scored > 0, torch.exp(per), torch.full_like(per, float("nan"))).numpy()
    return out


def add_perplexity(consensus: pd.DataFrame, model_dir: str | Path, max_prompts: int, seed: int = 0) -> pd.DataFrame:
    """consensus with a `perplexity` column (NaN for prompts that were not scored)."""
    if not Path(model_dir).exists():
        raise SystemExit(f"drift: perplexity_model {model_dir} not found")
    df = consensus.copy()
    df["perplexity"] = np.nan
    rng = np.random.default_rng(seed)
    for b, idx in df.groupby("batch").groups.items():
        first = df.loc[idx].drop_duplicates("prompt_id")
        pick = first.index[np.sort(rng.permutation(len(first))[:max_prompts])]
        ppl = perplexities(model_dir, df.loc[pick, "prompt"].astype(str).tolist())
        df.loc[pick, "perplexity"] = ppl
    return df
