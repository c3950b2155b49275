"""Tiny real models and a real MLflow SQLite store in a temporary project for the registry tests."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REPO = Path(__file__).resolve().parents[2]

TEXTS = [f"question {i}: how do I {w} the {o}?\nanswer: you {w} the {o} carefully and kindly."
         for i, (w, o) in enumerate([(w, o) for w in ("fix", "clean", "paint", "sell", "build")
                                     for o in ("car", "house", "garden", "bike", "boat")])]


def build_tiny_models(out: Path, seed: int = 0) -> dict[str, Path]:
    """A 1-layer GPT-2 policy and a reward model on top of it, saved like the trainers save them."""
    import torch

    from driftkeel.config import TinyModelParams
    from driftkeel.training.models import (build_tiny_causal_lm, load_reward_model, save_model,
                                           train_tokenizer)

    torch.manual_seed(seed)
    tok = train_tokenizer(TEXTS, vocab_size=300)
    policy = build_tiny_causal_lm(tok, TinyModelParams(vocab_size=300, n_positions=64, n_embd=16,
                                                       n_layer=1, n_head=2))
    save_model(policy, tok, out / "policy")
    reward, rtok = load_reward_model(out / "policy")
    save_model(reward, rtok, out / "reward")
    return {"policy": out / "policy", "reward": out / "reward"}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict:
    """Three generations of models: `first`, `second` and `third` differ in their weights."""
    base = tmp_path_factory.mktemp("tiny-models")
    return {"first": build_tiny_models(base / "first", seed=0),
            "second": build_tiny_models(base / "second", seed=1),
            "third": build_tiny_models(base / "third", seed=2)}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project root with params.yaml, a git commit and a data.dvc, so runs get real version tags.
    Module-scoped: creating the MLflow SQLite schema costs seconds; tests use their own model names."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    (root / "data.dvc").write_text("outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  path: data\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}
    for cmd in (["git", "init", "-q"], ["git", "add", "params.yaml", "data.dvc"],
                ["git", "commit", "-q", "-m", "init"]):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
    return root


@pytest.fixture(autouse=True)
def _project_store(monkeypatch):
    """Never touch a tracking server named by the environment; each test picks its run group."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DRIFTKEEL_RUN_GROUP", raising=False)
