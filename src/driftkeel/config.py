"""params.yaml -> typed, validated settings.

One pydantic model per section; unknown or invalid keys fail fast with a message naming the key.
Stages read only `common` plus their own section through :func:`load_section`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


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


SOURCE_NAME_MAX = 64     # a source name prefixes ids: "<name>:<id>#<n>" must stay within the id limit


class SourceParams(_Section):
    """One user file (or annotation folder) of `data.files.sources` (see docs/real-data.md)."""
    format: Literal["hh", "pairs", "prompts", "annotations"]
    path: str                               # file (.jsonl / .jsonl.gz) or, for annotations, a folder
    name: str | None = None                 # source name (annotator id of its judgements); default: file stem
    limit: int | None = Field(None, ge=1)   # read only the first N rows (a slice, e.g. for CI)
    labels: list[str] | None = None         # annotations: the two labels, mapped to a / b in this order


class FilesParams(_Section):
    """`data.source: files`: user files -> the canonical data/ layout (driftkeel.data.prepare)."""
    sources: list[SourceParams] = []        # in time order: each source's comparisons form later batches
    batch_size: int = Field(300, ge=1)      # comparisons per stream batch (when no batch field is given)
    eval_fraction: float = Field(0.1, ge=0, lt=1)   # share of pair groups held out as data/eval/pairs
    pool_fraction: float = Field(0.1, ge=0, lt=1)   # share of pair groups kept unlabeled as data/pool
    n_sft_demos: int = Field(1200, ge=1)    # (prompt, chosen) of stream pairs as SFT demonstrations
    n_eval_prompts: int = Field(64, ge=1)

    @field_validator("sources")
    @classmethod
    def _distinct_names(cls, sources: list[SourceParams]) -> list[SourceParams]:
        # a source's name prefixes its comparison ids and is its judgements' annotator id: two sources
        # of one name (e.g. a/pairs.jsonl and b/pairs.jsonl) would mix their rows
        import re

        from driftkeel.validation.suite import BAD_ID_CHARS

        names = [s.name or Path(s.path).name.split(".")[0] for s in sources]
        for n, s in zip(names, sources):
            # the name becomes part of every id the validate stage checks (comparison, judgement and
            # annotator ids): a name it would refuse must fail here, not quarantine every row later
            what = f"source name {n!r}" + ("" if s.name else f" (the stem of {s.path}: set `name`)")
            if not n or re.search(BAD_ID_CHARS, n):
                raise ValueError(f"{what}: no whitespace, control characters, / or \\, nor a leading '.'")
            if len(n) > SOURCE_NAME_MAX:
                raise ValueError(f"{what}: longer than {SOURCE_NAME_MAX} characters")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"two sources share the name {dup} (the file stem by default): give each a `name`")
        return sources


class DataParams(_Section):
    source: Literal["simulator", "files"] = "simulator"   # files: `data.files` (driftkeel prepare-data)
    files: FilesParams = FilesParams()
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
    max_future_skew_s: float = Field(300, ge=0)      # a timestamp later than now + this is quarantined


class AggregateParams(_Section):
    method: Literal["majority", "weighted", "dawid_skene"] = "dawid_skene"
    review_confidence_threshold: float = Field(0.8, ge=0, le=1)
    confidence_pseudocount: float = Field(0.5, gt=0)
    min_judgements: int = Field(2, ge=1)
    weight_prior_strength: float = Field(2.0, gt=0)        # pseudo-judgements at the pool's accuracy
    ds_prior_strength: float = Field(2.0, gt=0)            # fixed pooled-prior strength (fallback with empirical Bayes)
    ds_empirical_bayes: bool = True                        # pooled-prior strength per class by marginal likelihood
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


_DRIFT_SIGNALS = ("prompt", "output", "perplexity", "label", "reward", "concept")
_DRIFT_ACTIONS = ("collect-labels", "retrain-reward", "retrain-all")


class DecisionParams(_Section):
    """Cost-benefit policy of the drift decision (see driftkeel.drift.decision). Units are arbitrary
    but shared: `loss` is what leaving one alarmed signal unaddressed costs per window, `cost` what an
    action costs, `coverage[action][signal]` the share of that loss the action removes."""
    loss: dict[str, float] = {"prompt": 6.0, "output": 6.0, "perplexity": 6.0,
                              "label": 4.0, "reward": 4.0, "concept": 4.0}
    cost: dict[str, float] = {"collect-labels": 1.0, "retrain-reward": 3.0, "retrain-all": 6.0}
    coverage: dict[str, dict[str, float]] = {
        "collect-labels": {"prompt": 0.5, "output": 0.5, "perplexity": 0.5, "label": 0.25, "reward": 0.25,
                           "concept": 0.25},
        "retrain-reward": {"prompt": 0.5, "output": 0.5, "perplexity": 0.5, "label": 1.0, "reward": 1.0,
                           "concept": 1.0},
        "retrain-all": {s: 1.0 for s in _DRIFT_SIGNALS},
    }

    @field_validator("loss")
    @classmethod
    def _known_signals(cls, v: dict[str, float]) -> dict[str, float]:
        bad = sorted(set(v) - set(_DRIFT_SIGNALS))
        if bad or any(x < 0 for x in v.values()):
            raise ValueError(f"loss: signals must be among {_DRIFT_SIGNALS} with values >= 0 (got {v})")
        return v

    @field_validator("cost")
    @classmethod
    def _known_actions(cls, v: dict[str, float]) -> dict[str, float]:
        if set(v) != set(_DRIFT_ACTIONS) or any(x < 0 for x in v.values()):
            raise ValueError(f"cost: give a value >= 0 for each of {_DRIFT_ACTIONS} (got {v})")
        return v

    @field_validator("coverage")
    @classmethod
    def _coverage(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        if set(v) != set(_DRIFT_ACTIONS):
            raise ValueError(f"coverage: give one mapping per action {_DRIFT_ACTIONS}")
        for a, m in v.items():
            if set(m) - set(_DRIFT_SIGNALS) or any(not 0 <= x <= 1 for x in m.values()):
                raise ValueError(f"coverage.{a}: signals among {_DRIFT_SIGNALS}, shares in [0, 1] (got {m})")
        return v


class DriftParams(_Section):
    reference_batches: int = Field(2, ge=1)
    min_window: int = Field(30, ge=2)
    alpha: float = Field(0.05, gt=0, lt=1)              # family false-alarm rate per window
    n_permutations: int = Field(300, ge=19)
    max_window: int = Field(1000, ge=10)                # permutation tests subsample larger windows (seeded)
    surrogate_features: Literal["hashing", "minilm"] = "hashing"
    output_features: Literal["hashing", "minilm", "none"] = "hashing"  # response embeddings
    clusters: bool = True                                # k-means cluster report of the prompts
    topics: int = Field(8, ge=0)                         # LDA topics of the prompt texts (0 = off)
    reward_ensemble: int = Field(3, ge=1)                # surrogate reward members (spread = disagreement)
    perplexity_model: str | None = None                  # local causal-LM dir: the policy for perplexity drift
    decision: DecisionParams = DecisionParams()


class SelectParams(_Section):
    """Active selection of pool pairs for annotation (src/driftkeel/active)."""
    k: int = Field(100, ge=1)                      # labels to buy (queue length)
    strategy: Literal["bald", "variance", "least_confidence", "margin", "entropy", "random"] = "bald"
    n_members: int = Field(5, ge=1)                # surrogate ensemble (bootstrap) members
    surrogate_features: Literal["hashing", "minilm"] = "hashing"
    calibrate: bool = True                         # temperature of the ensemble fitted on held-out labels
    diversity: Literal["none", "kcenter", "kmeanspp"] = "kcenter"
    candidate_factor: int = Field(4, ge=1)         # diversity works on the top candidate_factor x k pairs
    min_distance: float = Field(0.05, ge=0, le=2)  # closer pairs (normalised feature distance) = near-duplicates
    drift_prior: bool = True                       # boost pairs in new / grown clusters of the drift report
    drift_boost: float = Field(1.0, ge=0)          # new cluster: x(1 + boost); grown cluster: x(1 + boost/2)
    drift_alpha: float = Field(0.05, gt=0, le=1)   # a cluster is flagged at this p-value


class MixParams(_Section):
    """Curriculum mix with replay (src/driftkeel/curriculum)."""
    new_batches: int = Field(4, ge=1)
    replay_fraction: float = Field(0.3, ge=0, lt=1)
    replay_from_drift: bool = False                # take the replay share from the drift level instead
    replay_by_level: dict[int, float] = {0: 0.1, 1: 0.2, 2: 0.3, 3: 0.4}
    replay_pool: Literal["older", "before_drift"] = "older"   # before_drift: pre-drift batches first
    eval_fraction: float = Field(0.1, ge=0, lt=1)
    order: Literal["easy_to_hard", "pacing", "shuffle"] = "easy_to_hard"
    pacing_phases: int = Field(3, ge=1)            # pacing: easiest third first, then the middle, then the hardest (shuffled within a phase)
    close_margin: float = Field(0.2, ge=0)         # |P(a) - 0.5| of the surrogate below this: close comparison
    new_cluster_weight: float = Field(2.0, ge=1.0)   # training weight factor (>= 1: an up-weight) of pairs in flagged new clusters
    drift_alpha: float = Field(0.05, gt=0, le=1)
    synthetic: bool = False                        # add pool pairs labelled by the surrogate ensemble
    synthetic_min_confidence: float = Field(0.95, gt=0.5, le=1)
    synthetic_max_share: float = Field(0.2, ge=0, lt=1)
    synthetic_weight: float = Field(0.5, gt=0, le=1)
    hf_datasets: bool = True                       # also save the mix with datasets.save_to_disk

    @field_validator("replay_by_level")
    @classmethod
    def _shares(cls, v: dict[int, float]) -> dict[int, float]:
        bad = {k: x for k, x in v.items() if not 0 <= x < 1}
        if bad:
            raise ValueError(f"replay shares must be in [0, 1): {bad}")
        return v


class LoraParams(_Section):
    """LoRA adapters via peft; the saved model has the adapters merged (a plain HF model dir)."""
    enabled: bool = False
    r: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class TrainParams(_Section):
    epochs: float = Field(1, gt=0)
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(16, ge=1)
    max_steps: int = -1
    checkpoint_every: int = Field(0, ge=0)   # optimiser steps between checkpoints; 0 = about 4 per run
    lora: LoraParams = LoraParams()


class SftParams(TrainParams):
    model_name_or_path: str = "tiny"


class RoutingParams(_Section):
    """Domain-routed reward heads (training/routing.py): K heads + a K-way gate in one reward model."""
    enabled: bool = False
    key: str = "era"                         # pair field naming the domain: era (before/after drift) | region | source
    min_pairs: int = Field(50, ge=1)         # a domain needs this many training pairs for a head of its own
    gate_weight: float = Field(1.0, ge=0)    # weight of the gate's cross-entropy beside the Bradley-Terry loss
    shared: list[str] = ["synthetic"]        # key values whose pairs train every head (no head of their own)


class RewardParams(TrainParams):
    init_from: str = "sft"
    center_rewards_coefficient: float | None = Field(None, ge=0)  # keeps rewards near 0 (TRL option)
    ensemble_size: int = Field(1, ge=1)      # member 0 = outputs/reward/model; others in members/
    bootstrap: bool = True                   # members 1.. train on a seeded bootstrap resample
    margin_scale: float = Field(0.0, ge=0)   # BT margin = scale x aggregate margin (0 = no margins)
    calibrate: bool = True                   # fit a temperature on the held-out pairs (mix eval)
    routing: RoutingParams = RoutingParams()


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
    checkpoint_every: int = Field(0, ge=0)           # PPO updates between checkpoints; 0 = about 4 per run


class DpoParams(_Section):
    beta: float = Field(0.1, gt=0)                   # strength of the implicit KL to the SFT policy
    epochs: float = Field(1, gt=0)
    learning_rate: float = Field(5e-4, gt=0)
    batch_size: int = Field(16, ge=1)
    max_steps: int = -1
    checkpoint_every: int = Field(0, ge=0)


class RlParams(_Section):
    """Which algorithm the policy stage (`ppo`) runs; rloo/grpo reuse the `ppo` section's episodes,
    batch size, learning rate, response length, temperature and kl_coef."""
    algorithm: Literal["ppo", "rloo", "grpo", "dpo"] = "ppo"
    reward_lambda: float = Field(1.0, ge=0)          # conservative reward: ensemble mean - lambda * std
    num_generations: int = Field(4, ge=2)            # rloo / grpo: completions per prompt
    lora: LoraParams = LoraParams()
    dpo: DpoParams = DpoParams()


class EvaluateParams(_Section):
    min_reward_accuracy: float = Field(0.7, ge=0, le=1)
    max_policy_reward_drop: float = Field(0.1, ge=0)
    n_samples: int = Field(64, ge=1)
    temperature: float = Field(0.7, ge=0)  # policy sampling for the reward comparison; 0 = greedy
    # gate thresholds (null = report the metric only); see src/driftkeel/evaluation/gate.py
    min_policy_win_rate: float | None = Field(0.5, ge=0, le=1)       # vs baseline, under the new RM
    max_reward_accuracy_drop: float | None = Field(0.05, ge=0, le=1)  # champion RM - challenger, new slice
    max_forgetting: float | None = Field(0.1, ge=0, le=1)            # champion RM - challenger, old slice
    max_topic_gap: float | None = Field(0.3, ge=0, le=1)             # best - worst topic RM accuracy
    min_true_win_rate: float | None = Field(0.5, ge=0, le=1)         # simulator oracle only
    old_slice: str = "pre"                  # eval `slice` label of the pre-drift set
    new_slice: str = "post"                 # ... and of the current one
    min_slice_pairs: int = Field(20, ge=1)  # topics with fewer eval pairs are left out of the gap
    calibration_bins: int = Field(10, ge=2)


class RegisterParams(_Section):
    policy_model_name: str = "driftkeel-policy"
    reward_model_name: str = "driftkeel-reward"


class InboxParams(_Section):
    folder: str = "inbox"                   # new batch files dropped here become data/stream/batch_NNN.jsonl
    pattern: str = "*.jsonl"
    version: bool = True                    # `dvc add data` once a new batch passed the validate stage
    git_commit: bool = True                 # then commit data.dvc (only when the project is a git repo)
    dvc_push: bool = True                   # then `dvc push data.dvc` (only when a default remote is set)
    settle_s: float = Field(3.0, ge=0, le=600)  # a file modified more recently may still be arriving: wait, re-check


class NotifyParams(_Section):
    enabled: bool = False
    webhook_url: str | None = None          # POST a JSON message here (has a Slack-style "text" field)
    prefect_block: str | None = None        # a saved Prefect notification block, "<block-type-slug>/<name>"
    events: list[Literal["drift-alarm", "gate-failed", "flow-failed"]] = ["drift-alarm", "gate-failed",
                                                                           "flow-failed"]
    timeout_s: float = Field(10.0, gt=0)


class DaskParams(_Section):
    address: str | None = None              # a running Dask scheduler (tcp://host:8786); null: a local cluster
    n_workers: int = Field(2, ge=1)          # local cluster only
    threads_per_worker: int = Field(1, ge=1)
    shard_size: int = Field(5000, ge=100)   # texts per shard (embedding, drift statistics, scoring)


class OpsParams(_Section):
    """Operations (Prefect flows only; no DVC stage reads this section)."""
    inbox: InboxParams = InboxParams()
    notify: NotifyParams = NotifyParams()
    dask: DaskParams = DaskParams()


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
    "rl": RlParams,
    "evaluate": EvaluateParams,
    "register": RegisterParams,
    "ops": OpsParams,
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
