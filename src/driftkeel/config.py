"""params.yaml -> typed, validated settings.

One pydantic model per section; unknown or invalid keys fail fast with a message naming the key.
Stages read only `common` plus their own section through :func:`load_section`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MlflowParams(_Section):
    tracking_uri: str | None = None
    artifact_location: str | None = None
    experiment: str = "driftkeel"


class TinyModelParams(_Section):
    vocab_size: int = Field(1024, ge=64)
    n_positions: int = Field(256, ge=16)
    n_embd: int = Field(64, ge=8)
    n_layer: int = Field(2, ge=1)
    n_head: int = Field(2, ge=1)


class CommonParams(_Section):
    seed: int = 0
    data_dir: str = "data"
    outputs_dir: str = "outputs"
    mlflow: MlflowParams = MlflowParams()
    tiny_model: TinyModelParams = TinyModelParams()
    max_prompt_tokens: int = Field(48, ge=4)
    max_response_tokens: int = Field(48, ge=4)


class DataParams(_Section):
    seed: int = 7
    n_batches: int = Field(10, ge=2)
    comparisons_per_batch: int = Field(300, ge=10)
    judgements_per_comparison: int = Field(3, ge=1)
    n_annotators: int = Field(24, ge=3)
    spammer_fraction: float = Field(0.1, ge=0, le=1)
    golden_fraction: float = Field(0.08, ge=0, le=1)
    new_topics_from_batch: int = Field(5, ge=0)
    concept_drift_batch: int = Field(6, ge=0)
    pool_change_batch: int = Field(7, ge=0)
    n_sft_demos: int = Field(1200, ge=10)
    pool_size: int = Field(1500, ge=10)
    n_eval_pairs: int = Field(600, ge=10)
    n_eval_prompts: int = Field(64, ge=4)


class ValidateParams(_Section):
    min_prompt_chars: int = Field(3, ge=1)
    max_prompt_chars: int = Field(4000, ge=1)
    max_response_chars: int = Field(8000, ge=1)
    max_response_time_s: float = Field(3600, gt=0)
    max_quarantine_fraction: float = Field(0.5, ge=0, le=1)


class AggregateParams(_Section):
    method: Literal["majority", "weighted", "dawid_skene"] = "dawid_skene"
    review_confidence_threshold: float = Field(0.8, ge=0, le=1)
    confidence_pseudocount: float = Field(0.5, gt=0)
    min_judgements: int = Field(2, ge=1)
    weight_prior_strength: float = Field(2.0, gt=0)        # pseudo-judgements at the pool's accuracy
    ds_prior_strength: float = Field(2.0, gt=0)            # pseudo-judgements per confusion row (pooled prior)
    ds_max_iter: int = Field(200, ge=1)
    ds_tol: float = Field(1e-4, gt=0)                     # stop when no posterior moves more
    fast_response_ratio: float = Field(0.25, ge=0)         # faster than this x median response time = fast
    fast_judgement_weight: float = Field(0.5, ge=0, le=1)  # weight of a fast judgement (1 = no penalty)
    expert_annotators: list[str] = []                      # their unanimous labels settle a comparison
    hard_margin: float = Field(0.5, ge=0, le=1)            # weighted vote margin below this = hard pair
    max_margin: float = Field(4.0, ge=0)                   # cap of the training margin (log-odds)
    bootstrap_samples: int = Field(200, ge=0)              # per-batch alpha/kappa intervals (0 = off)
    ci_level: float = Field(0.9, gt=0, lt=1)
    reference_batches: int = Field(2, ge=1)                # agreement_drop: CI below these batches' alpha
    agreement_drop_min: float = Field(0.2, ge=0, le=1)     # ... and alpha this share (relative) lower
    quality_drop_min: float = Field(0.15, gt=0, le=1)      # accuracy drop that flags an annotator
    quality_drop_alpha: float = Field(0.01, gt=0, lt=1)


class DecisionParams(_Section):
    retrain_all_min_signals: int = Field(2, ge=1)
    collect_labels_min_signals: int = Field(1, ge=1)


class DriftParams(_Section):
    reference_batches: int = Field(2, ge=1)
    min_window: int = Field(30, ge=2)
    alpha: float = Field(0.05, gt=0, lt=1)
    n_permutations: int = Field(300, ge=19)
    max_window: int = Field(600, ge=10)
    surrogate_features: Literal["hashing", "minilm"] = "hashing"
    decision: DecisionParams = DecisionParams()


class SelectParams(_Section):
    k: int = Field(100, ge=1)
    strategy: Literal["least_confidence", "random"] = "least_confidence"
    n_members: int = Field(1, ge=1)
    surrogate_features: Literal["hashing", "minilm"] = "hashing"


class MixParams(_Section):
    new_batches: int = Field(4, ge=1)
    replay_fraction: float = Field(0.3, ge=0, lt=1)
    eval_fraction: float = Field(0.1, ge=0, lt=1)


class TrainParams(_Section):
    epochs: float = Field(1, gt=0)
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(16, ge=1)
    max_steps: int = -1


class SftParams(TrainParams):
    model_name_or_path: str = "tiny"


class RewardParams(TrainParams):
    init_from: str = "sft"
    center_rewards_coefficient: float | None = Field(None, ge=0)  # keeps rewards near 0 (TRL option)


class PpoParams(_Section):
    total_episodes: int = Field(384, ge=1)
    batch_size: int = Field(32, ge=1)
    mini_batch_size: int = Field(8, ge=1)            # batch_size must be a multiple of it
    learning_rate: float = Field(2e-4, gt=0)
    kl_coef: float = Field(0.05, ge=0)
    response_length: int = Field(48, ge=1)
    n_prompts: int = Field(512, ge=1)
    ppo_epochs: int = Field(4, ge=1)                 # optimisation passes over each rollout batch
    temperature: float = Field(0.7, gt=0)            # rollout sampling temperature
    missing_eos_penalty: float | None = Field(None, ge=0)  # subtracted from the score without eos


class EvaluateParams(_Section):
    min_reward_accuracy: float = Field(0.7, ge=0, le=1)
    max_policy_reward_drop: float = Field(0.1, ge=0)
    n_samples: int = Field(64, ge=1)
    temperature: float = Field(0.7, ge=0)  # policy sampling for the reward comparison; 0 = greedy


class RegisterParams(_Section):
    policy_model_name: str = "driftkeel-policy"
    reward_model_name: str = "driftkeel-reward"


SECTIONS: dict[str, type[_Section]] = {
    "common": CommonParams,
    "data": DataParams,
    "validate": ValidateParams,
    "aggregate": AggregateParams,
    "drift": DriftParams,
    "select": SelectParams,
    "mix": MixParams,
    "sft": SftParams,
    "reward": RewardParams,
    "ppo": PpoParams,
    "evaluate": EvaluateParams,
    "register": RegisterParams,
}


class ConfigError(ValueError):
    """params.yaml is missing, malformed, or has an invalid key."""


def read_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: not found")
    with path.open(encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; known: {sorted(SECTIONS)}")
    return raw


def parse_section(name: str, raw: dict | None):
    """Validate one section; errors name the offending key as `section.key`."""
    cls = SECTIONS[name]
    try:
        return cls.model_validate(raw or {})
    except ValidationError as exc:
        msgs = []
        for err in exc.errors():
            key = ".".join(str(p) for p in (name, *err["loc"]))
            msgs.append(f"{key}: {err['msg']}")
        raise ConfigError("invalid params: " + "; ".join(msgs)) from None


def load_section(name: str, path: str | Path = "params.yaml"):
    """Return (common, section) for stage `name`."""
    raw = read_params(path)
    return parse_section("common", raw.get("common")), parse_section(name, raw.get(name))


def load_all(path: str | Path = "params.yaml") -> dict:
    raw = read_params(path)
    return {name: parse_section(name, raw.get(name)) for name in SECTIONS}
