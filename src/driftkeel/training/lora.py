"""LoRA adapters (peft) as an option of every trainer: `lora: {enabled, r, alpha, dropout, target_modules}`.

The trainers get a `peft_config`; only the adapters (and, for reward models, the score head) train.
Checkpoints hold the adapters; the saved model has them merged (`merge_and_unload`), so every output
stays a plain Hugging Face directory that scoring, PPO, evaluation and the registry load as before.
"""
from __future__ import annotations

from driftkeel.config import LoraParams


def peft_config(lora: LoraParams | None, task: str):
    """A `peft.LoraConfig` for `task` ("CAUSAL_LM" or "SEQ_CLS"), or None when LoRA is off."""
    if lora is None or not lora.enabled:
        return None
    from peft import LoraConfig

    targets = lora.target_modules if lora.target_modules == "all-linear" else list(lora.target_modules)
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
                      task_type=task, bias="none")


def merged(model):
    """The plain model: adapters merged into the base weights when `model` is a peft model."""
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a pinned dependency
        return model
    if isinstance(model, PeftModel):
        return model.merge_and_unload()
    return model


def apply(model, lora: LoraParams | None, task: str):
    """Wrap `model` with fresh adapters (for trainers that take a ready model, e.g. PPO)."""
    cfg = peft_config(lora, task)
    if cfg is None:
        return model
    from peft import get_peft_model

    return get_peft_model(model, cfg)
