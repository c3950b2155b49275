"""A temporary project with tiny real models under outputs/ and held-out eval files under data/."""
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REPO = Path(__file__).resolve().parents[2]
TOPICS = [("fix", "car"), ("clean", "house"), ("paint", "garden"), ("sell", "bike"), ("build", "boat")]
TEXTS = [f"how do I {w} the {o}?\nyou {w} the {o} carefully and kindly." for w, o in TOPICS] * 4


def build_models(out: Path, seed: int) -> dict[str, Path]:
    """A 1-layer GPT-2 policy and a reward model initialised from it, saved like the trainers do."""
    import torch

    from driftkeel.config import TinyModelParams
    from driftkeel.training.models import (build_tiny_causal_lm, load_reward_model, save_model,
                                           set_lengths, train_tokenizer)

    torch.manual_seed(seed)
    tok = train_tokenizer(TEXTS, vocab_size=300)
    policy = build_tiny_causal_lm(tok, TinyModelParams(vocab_size=300, n_positions=64, n_embd=16,
                                                       n_layer=1, n_head=2))
    set_lengths(policy, 16, 8)
    save_model(policy, tok, out / "policy")
    reward, rtok = load_reward_model(out / "policy")
    save_model(reward, rtok, out / "reward")
    return {"policy": out / "policy", "reward": out / "reward"}


def eval_pairs() -> list[dict]:
    rows = []
    for i, (w, o) in enumerate(TOPICS * 2):
        rows.append({"pair_id": f"p{i}", "prompt": f"how do I {w} the {o}?",
                     "chosen": f"you {w} the {o} carefully", "rejected": f"no {o} today",
                     "slice": "pre" if i < 5 else "post", "topic": o})
    return rows


def eval_prompts() -> list[dict]:
    return [{"prompt_id": f"q{i}", "prompt": f"how do I {w} the {o}?",
             "slice": "pre" if i % 2 else "post", "topic": o} for i, (w, o) in enumerate(TOPICS)]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval-models")
    return {"a": build_models(base / "a", seed=0), "b": build_models(base / "b", seed=1)}


@pytest.fixture
def eval_project(tmp_path, tiny_models, monkeypatch):
    """outputs/sft/model = policy b, outputs/ppo/model = policy a, outputs/reward/model = reward a."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DRIFTKEEL_RUN_GROUP", raising=False)
    root = tmp_path / "proj"
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["evaluate"].update({"min_reward_accuracy": 0.0, "max_policy_reward_drop": 1000.0,
                               "n_samples": 4, "min_policy_win_rate": 0.0, "max_reward_accuracy_drop": 1.0,
                               "max_forgetting": 1.0, "max_topic_gap": 1.0, "min_true_win_rate": 0.0,
                               "min_slice_pairs": 1})
    params["common"]["max_response_tokens"] = 6
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(tiny_models["b"]["policy"], root / "outputs" / "sft" / "model")
    shutil.copytree(tiny_models["a"]["policy"], root / "outputs" / "ppo" / "model")
    shutil.copytree(tiny_models["a"]["reward"], root / "outputs" / "reward" / "model")
    write_jsonl(root / "data" / "eval" / "pairs.jsonl", eval_pairs())
    write_jsonl(root / "data" / "eval" / "prompts.jsonl", eval_prompts())
    monkeypatch.setenv("DRIFTKEEL_ROOT", str(root))
    return root
