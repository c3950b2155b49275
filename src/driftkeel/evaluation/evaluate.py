"""The evaluate stage's logic: challenger vs champion on the same fixed eval sets, and the gate.

- Reward model (`outputs/reward/model`, ensemble member 0 = the one registered) on
  `data/eval/pairs.jsonl`: accuracy, precision/recall/F1, calibration error (ECE, with the temperature
  fitted on held-out pairs by the reward stage), MRR, overall and per slice (`pre` = the concept
  before the drift point, `post` = the current one; topic; batch / policy_version when present).
  The champion reward model (`driftkeel-reward@champion`, when there is one) is scored on the same
  pairs: `reward_accuracy_drop_new` and `forgetting` are its accuracy minus the challenger's on the
  new and old slices. The ensemble (when the reward stage trained several members) is reported too.
- Policy: responses to the first `n_samples` prompts of `data/eval/prompts.jsonl` from the challenger
  (`outputs/ppo/model`) and the baseline (the policy champion, downloaded from MLflow, else the SFT
  model), same seed and temperature; mean reward and win rate under the NEW reward model, per slice;
  and, when the data is the simulator's, under the true utility (ORACLE, see `oracle.py`).
- Gate (`gate.py`) -> verdict {passed, reasons, metrics, checks, baseline, models, ...}. `models` holds
  the fingerprints of the evaluated dirs so the register stage registers exactly what was judged.
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
from driftkeel.evaluation import oracle
from driftkeel.evaluation.gate import gate_from_params
from driftkeel.evaluation.metrics import accuracy_by_slice, pairwise_accuracy, reward_summary
from driftkeel.evaluation.reports import policy_report, reward_report
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


def resolve_champion_reward(reward_model_name: str | None, work_dir: str | Path, client=None) -> dict | None:
    """The registry champion of the reward model, downloaded into `work_dir`, or None."""
    if not reward_model_name:
        return None
    from driftkeel.registry.lifecycle import CHAMPION, fetch_alias

    if client is None:
        from mlflow import MlflowClient

        client = MlflowClient()
    found = fetch_alias(client, reward_model_name, CHAMPION, Path(work_dir) / "champion-reward")
    if found is None:
        return None
    return {"model_name": reward_model_name, "version": found["version"], "path": found["path"],
            "fingerprint": fingerprint(found["path"])}


@dataclass
class EvaluationResult:
    metrics: dict
    verdict: dict
    slice_table: pd.DataFrame
    samples: list[dict] = field(default_factory=list)
    policy_table: pd.DataFrame | None = None


def _truth_table(pairs: pd.DataFrame, old_slice: str) -> dict:
    """{(prompt, response): true utility} of every eval-pair response (ORACLE)."""
    keys, concepts = [], []
    for row in pairs.itertuples(index=False):
        for resp in (row.chosen, row.rejected):
            keys.append((row.prompt, resp))
            concepts.append(oracle.concept_of(row.slice, old_slice))
    values = oracle.true_utilities([k[0] for k in keys], [k[1] for k in keys], concepts)
    return dict(zip(keys, values))


def run_evaluation(*, params: EvaluateParams, reward_dir: str | Path, challenger_dir: str | Path,
                   sft_dir: str | Path, pairs_path: str | Path, prompts_path: str | Path,
                   policy_model_name: str, max_new_tokens: int, seed: int, client=None,
                   reward_model_name: str | None = None, reward_members: list | None = None,
                   data_dir: str | Path | None = None) -> EvaluationResult:
    """Everything the evaluate stage computes; MLflow must point at the project store (for the
    champion downloads) — the stage entry does that through `tracking.stage_run`.
    `reward_model_name` enables the champion reward comparison, `reward_members` (member dirs,
    member 0 first) the ensemble report, `data_dir` the oracle when it holds the simulator's data."""
    from driftkeel.training.common import quiet_offline_env
    from driftkeel.training.reward import get_calibration

    quiet_offline_env()
    models = {}
    for role, path in (("reward", reward_dir), ("policy", challenger_dir)):
        check_model_dir(path)
        models[role] = {"path": str(path), "fingerprint": fingerprint(path)}
    has_oracle = data_dir is not None and oracle.available(data_dir)
    bins, min_n = params.calibration_bins, params.min_slice_pairs

    reward = load_reward(reward_dir)
    pairs = load_eval_pairs(pairs_path)
    chosen, rejected = score_pairs(reward, pairs)
    truth = _truth_table(pairs, params.old_slice) if has_oracle else None
    metrics, _ = reward_model_metrics(chosen, rejected, pairs["slice"].tolist())  # legacy names + counts
    rm, slice_table, details = reward_report(chosen, rejected, pairs, temperature=get_calibration(reward[0])[0],
                                             n_bins=bins, min_slice_pairs=min_n, truth=truth)
    metrics.update(rm)

    prompts = load_eval_prompts(prompts_path, params.n_samples)
    with tempfile.TemporaryDirectory(prefix="driftkeel-baseline-") as work:
        champion_reward = resolve_champion_reward(reward_model_name, work, client=client)
        metrics["has_champion_reward"] = int(champion_reward is not None)
        if champion_reward is not None:
            champ = load_reward(champion_reward["path"])
            cc, cr = score_pairs(champ, pairs)
            cm, ctable, _ = reward_report(cc, cr, pairs, temperature=get_calibration(champ[0])[0], n_bins=bins,
                                          min_slice_pairs=min_n, prefix="champion_", truth=truth)
            metrics.update(cm)
            slice_table["champion_accuracy"] = ctable["accuracy"].to_numpy()
            for name, key in ((params.new_slice, "reward_accuracy_drop_new"), (params.old_slice, "forgetting")):
                metrics[key] = (metrics.get(f"champion_reward_accuracy_{name}", float("nan"))
                                - metrics.get(f"reward_accuracy_{name}", float("nan")))
            champion_reward["path"] = f"models:/{reward_model_name}/{champion_reward['version']}"
        baseline = resolve_baseline(policy_model_name, sft_dir, work, client=client)
        out = policy_rewards({"challenger": challenger_dir, "baseline": baseline["path"]}, reward,
                             prompts["prompt"].tolist(), max_new_tokens, seed, params.temperature)
    if reward_members and len(reward_members) > 1:
        from driftkeel.training.ensemble import RewardEnsemble

        stats = RewardEnsemble(reward_members).pair_stats(pairs.to_dict("records"))
        metrics.update({"ensemble_reward_accuracy": stats["accuracy"], "ensemble_mean_std": stats["mean_std"]})
    metrics["n_reward_members"] = len(reward_members) if reward_members else 1
    if baseline["source"] == "champion":
        baseline["path"] = f"models:/{policy_model_name}/{baseline['version']}"
    slices = prompts["slice"].tolist()
    for name in ("challenger", "baseline"):
        metrics.update(policy_metrics(name, out[name]["rewards"], slices))
    metrics["policy_reward_drop"] = metrics["baseline_mean_reward"] - metrics["challenger_mean_reward"]
    metrics["n_policy_prompts"] = int(len(prompts))
    pm, policy_table = policy_report(out["challenger"]["rewards"], out["baseline"]["rewards"], prompts,
                                     min_slice=1)
    metrics.update(pm)

    metrics["oracle_available"] = int(has_oracle)
    if has_oracle:
        concepts = [oracle.concept_of(x, params.old_slice) for x in slices]
        for name in ("challenger", "baseline"):
            out[name]["true"] = oracle.true_utilities(prompts["prompt"].tolist(), out[name]["responses"], concepts)
            metrics[f"{name}_true_utility"] = float(np.mean(out[name]["true"]))
        metrics["true_utility_gain"] = metrics["challenger_true_utility"] - metrics["baseline_true_utility"]
        tm, true_table = policy_report(out["challenger"]["true"], out["baseline"]["true"], prompts,
                                       min_slice=1, key="true", what="true_utility")
        metrics.update(tm)
        policy_table = policy_table.merge(true_table, on=["slice", "n"], how="left")

    verdict = gate_from_params(metrics, params).to_dict()
    metrics["gate_passed"] = int(verdict["passed"])
    verdict["metrics"] = dict(metrics)
    thresholds = {k: v for k, v in params.model_dump().items()
                  if k.startswith(("min_", "max_")) and k != "min_slice_pairs"}
    verdict.update({"baseline": baseline, "models": models, "champion_reward": champion_reward,
                    "thresholds": thresholds, "slices": details,
                    "oracle": {"available": has_oracle, "label": oracle.LABEL if has_oracle else None},
                    "generation": {"max_new_tokens": max_new_tokens, "seed": seed,
                                   "temperature": params.temperature}})
    samples = []
    for i, row in enumerate(prompts.itertuples(index=False)):
        sample = {"prompt_id": row.prompt_id, "slice": row.slice, "topic": row.topic, "prompt": row.prompt,
                  "challenger_response": out["challenger"]["responses"][i],
                  "challenger_reward": float(out["challenger"]["rewards"][i]),
                  "baseline_response": out["baseline"]["responses"][i],
                  "baseline_reward": float(out["baseline"]["rewards"][i])}
        if has_oracle:
            sample.update(challenger_true_utility=float(out["challenger"]["true"][i]),
                          baseline_true_utility=float(out["baseline"]["true"][i]))
        samples.append(sample)
    return EvaluationResult(metrics=metrics, verdict=verdict, slice_table=slice_table, samples=samples,
                            policy_table=policy_table)


def accuracy_by_batch(reward, consensus: pd.DataFrame, train_batches: set[int] | None = None,
                      batch_size: int = 32) -> pd.DataFrame:
    """The reward model's agreement with the human consensus per stream batch (pairs whose consensus is
    `a` or `b`; ties and golden items left out): the "reward accuracy per batch" curve of `dvc plots`.
    Batches in the training mix are flagged ``in_training`` (their accuracy is in-sample)."""
    cols = ["batch", "accuracy", "n", "in_training"]
    lab = consensus[consensus["label"].isin(["a", "b"])]
    if "is_golden" in lab.columns:
        lab = lab[~lab["is_golden"].astype(bool)]
    lab = lab.dropna(subset=["prompt", "response_a", "response_b", "batch"])
    if lab.empty:
        return pd.DataFrame(columns=cols)
    chosen = np.where(lab["label"] == "a", lab["response_a"], lab["response_b"])
    rejected = np.where(lab["label"] == "a", lab["response_b"], lab["response_a"])
    pairs = pd.DataFrame({"prompt": lab["prompt"].astype(str).to_numpy(), "chosen": chosen.astype(str),
                          "rejected": rejected.astype(str)})
    c, r = score_pairs(reward, pairs, batch_size=batch_size)
    outcome = np.where(c > r, 1.0, np.where(c == r, 0.5, 0.0))  # ties count half, as in reward_accuracy
    frame = pd.DataFrame({"batch": lab["batch"].astype(int).to_numpy(), "ok": outcome})
    table = frame.groupby("batch")["ok"].agg(["mean", "size"]).reset_index()
    table.columns = ["batch", "accuracy", "n"]
    table["in_training"] = table["batch"].isin(train_batches or set())
    return table[cols]
