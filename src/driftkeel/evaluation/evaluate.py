"""The evaluate stage's logic: reward-model accuracy on held-out pairs, policy reward, the gate.

- Reward model (`outputs/reward/model`): pairwise accuracy on `data/eval/pairs.jsonl`, overall and per
  slice (`pre` = the concept before the drift point, `post` = the current one).
- Policy: mean reward, under the NEW reward model, of responses to the first `n_samples` prompts of
  `data/eval/prompts.jsonl`, for the challenger (`outputs/ppo/model`) and the baseline: the registry
  champion of the policy when one exists (downloaded from MLflow), else the SFT model.
- Gate (`gate.py`) -> verdict {passed, reasons, metrics, checks, baseline, models}. `models` holds the
  fingerprints of the evaluated dirs so the register stage registers exactly what was judged.
Scoring and generation are the trainers' own functions (`driftkeel.training.reward.score`,
`driftkeel.training.ppo.generate`), so evaluation sees the same token format as training.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from driftkeel.config import EvaluateParams
from driftkeel.data.schemas import EVAL_PAIR_COLUMNS, EVAL_PROMPT_COLUMNS
from driftkeel.evaluation.gate import gate
from driftkeel.evaluation.metrics import accuracy_by_slice, pairwise_accuracy, reward_summary
from driftkeel.io import read_jsonl
from driftkeel.registry.modelfiles import check_model_dir, fingerprint


def _load_table(path: Path, columns: dict, what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found")
    rows = read_jsonl(path)
    if not rows:
        raise ValueError(f"{path}: no {what}")
    df = pd.DataFrame(rows)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: {what} lack column(s) {missing}; expected {list(columns)}")
    for col, kind in columns.items():
        if kind == "str":
            df[col] = df[col].astype(str)
    return df


def load_eval_pairs(path: str | Path) -> pd.DataFrame:
    return _load_table(Path(path), EVAL_PAIR_COLUMNS, "eval pairs")


def load_eval_prompts(path: str | Path, n: int) -> pd.DataFrame:
    return _load_table(Path(path), EVAL_PROMPT_COLUMNS, "eval prompts").head(n).reset_index(drop=True)


# ---------------------------------------------------------------------------- pure metric tables


def reward_model_metrics(chosen_scores, rejected_scores, slices) -> tuple[dict, pd.DataFrame]:
    """Flat metrics (`reward_accuracy`, `reward_accuracy_<slice>`, counts) and a per-slice table."""
    per_slice = accuracy_by_slice(chosen_scores, rejected_scores, slices)
    metrics = {"reward_accuracy": pairwise_accuracy(chosen_scores, rejected_scores),
               "n_eval_pairs": int(len(chosen_scores))}
    for name, row in per_slice.items():
        metrics[f"reward_accuracy_{name}"] = row["accuracy"]
        metrics[f"n_eval_pairs_{name}"] = row["n"]
    table = pd.DataFrame([{"slice": "all", "accuracy": metrics["reward_accuracy"],
                           "n": metrics["n_eval_pairs"]}]
                         + [{"slice": k, **v} for k, v in per_slice.items()])
    return metrics, table


def policy_metrics(prefix: str, rewards, slices) -> dict:
    """`<prefix>_mean_reward`, `<prefix>_reward_std` and `<prefix>_mean_reward_<slice>`."""
    rewards = np.asarray(rewards, dtype=float)
    overall = reward_summary(rewards)
    out = {f"{prefix}_mean_reward": overall["mean"], f"{prefix}_reward_std": overall["std"]}
    labels = np.asarray(slices, dtype=object)
    for name in sorted(set(labels.tolist())):
        out[f"{prefix}_mean_reward_{name}"] = reward_summary(rewards[labels == name])["mean"]
    return out


# ----------------------------------------------------------------------------------- model calls


def load_reward(reward_dir: str | Path):
    """(model, tokenizer) of the reward model, loaded once for every scoring pass."""
    from driftkeel.training.models import default_device, inference_dtype, load_reward_model

    return load_reward_model(str(reward_dir), device=default_device(), dtype=inference_dtype())


def score_pairs(reward, pairs: pd.DataFrame, batch_size: int = 32):
    """(chosen_scores, rejected_scores) in one scoring pass; `reward` is a dir or a loaded pair."""
    from driftkeel.training.reward import score

    prompts = pairs["prompt"].tolist()
    scores = np.asarray(score(reward, prompts + prompts,
                              pairs["chosen"].tolist() + pairs["rejected"].tolist(),
                              batch_size=batch_size), dtype=float)
    n = len(pairs)
    return scores[:n], scores[n:]


def policy_rewards(policy_dirs: dict[str, str | Path], reward, prompts: list[str],
                   max_new_tokens: int, seed: int, temperature: float) -> dict[str, dict]:
    """{name: {"responses": [...], "rewards": array}}: same prompts, seed and temperature for every
    policy, all responses scored by one reward model in one pass."""
    from driftkeel.training.ppo import generate
    from driftkeel.training.reward import score

    responses = {name: list(generate(str(path), prompts, max_new_tokens=max_new_tokens, seed=seed,
                                     temperature=temperature))
                 for name, path in policy_dirs.items()}
    names = list(responses)
    flat = [r for name in names for r in responses[name]]
    scores = np.asarray(score(reward, prompts * len(names), flat), dtype=float)
    n = len(prompts)
    return {name: {"responses": responses[name], "rewards": scores[i * n:(i + 1) * n]}
            for i, name in enumerate(names)}


def resolve_baseline(policy_model_name: str, sft_dir: str | Path, work_dir: str | Path,
                     client=None) -> dict:
    """The registry champion of the policy (downloaded into `work_dir`) if there is one, else the SFT
    model: {"source": "champion"|"sft", "path", "version", "model_name", "fingerprint"}."""
    from driftkeel.registry.lifecycle import CHAMPION, fetch_alias

    if client is None:
        from mlflow import MlflowClient

        client = MlflowClient()
    found = fetch_alias(client, policy_model_name, CHAMPION, Path(work_dir) / "champion")
    if found is not None:
        return {"source": "champion", "path": found["path"], "version": found["version"],
                "model_name": policy_model_name, "fingerprint": fingerprint(found["path"])}
    check_model_dir(sft_dir)
    return {"source": "sft", "path": str(sft_dir), "version": None, "model_name": None,
            "fingerprint": fingerprint(sft_dir)}


# ------------------------------------------------------------------------------------- the stage


@dataclass
class EvaluationResult:
    metrics: dict
    verdict: dict
    slice_table: pd.DataFrame
    samples: list[dict] = field(default_factory=list)


def run_evaluation(*, params: EvaluateParams, reward_dir: str | Path, challenger_dir: str | Path,
                   sft_dir: str | Path, pairs_path: str | Path, prompts_path: str | Path,
                   policy_model_name: str, max_new_tokens: int, seed: int,
                   client=None) -> EvaluationResult:
    """Everything the evaluate stage computes; MLflow must point at the project store (for the
    champion download) — the stage entry does that through `tracking.stage_run`."""
    models = {}
    for role, path in (("reward", reward_dir), ("policy", challenger_dir)):
        check_model_dir(path)
        models[role] = {"path": str(path), "fingerprint": fingerprint(path)}

    reward = load_reward(reward_dir)
    pairs = load_eval_pairs(pairs_path)
    chosen, rejected = score_pairs(reward, pairs)
    metrics, slice_table = reward_model_metrics(chosen, rejected, pairs["slice"].tolist())

    prompts = load_eval_prompts(prompts_path, params.n_samples)
    with tempfile.TemporaryDirectory(prefix="driftkeel-baseline-") as work:
        baseline = resolve_baseline(policy_model_name, sft_dir, work, client=client)
        out = policy_rewards({"challenger": challenger_dir, "baseline": baseline["path"]}, reward,
                             prompts["prompt"].tolist(), max_new_tokens, seed, params.temperature)
    if baseline["source"] == "champion":
        baseline["path"] = f"models:/{policy_model_name}/{baseline['version']}"
    slices = prompts["slice"].tolist()
    for name in ("challenger", "baseline"):
        metrics.update(policy_metrics(name, out[name]["rewards"], slices))
    metrics["policy_reward_drop"] = metrics["baseline_mean_reward"] - metrics["challenger_mean_reward"]
    metrics["n_policy_prompts"] = int(len(prompts))

    verdict = gate(metrics, params.min_reward_accuracy, params.max_policy_reward_drop).to_dict()
    metrics["gate_passed"] = int(verdict["passed"])
    verdict["metrics"] = dict(metrics)
    verdict.update({"baseline": baseline, "models": models,
                    "thresholds": {"min_reward_accuracy": params.min_reward_accuracy,
                                   "max_policy_reward_drop": params.max_policy_reward_drop},
                    "generation": {"max_new_tokens": max_new_tokens, "seed": seed,
                                   "temperature": params.temperature}})
    samples = [{"prompt_id": row.prompt_id, "slice": row.slice, "topic": row.topic,
                "prompt": row.prompt,
                "challenger_response": out["challenger"]["responses"][i],
                "challenger_reward": float(out["challenger"]["rewards"][i]),
                "baseline_response": out["baseline"]["responses"][i],
                "baseline_reward": float(out["baseline"]["rewards"][i])}
               for i, row in enumerate(prompts.itertuples(index=False))]
    return EvaluationResult(metrics=metrics, verdict=verdict, slice_table=slice_table, samples=samples)
