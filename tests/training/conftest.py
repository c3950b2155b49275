"""Tiny models and a tiny preference task shared by the training tests (no network, CPU only)."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from training_task import COMMON, DEMOS, PAIRS, REWARD, SFT, TEXTS  # noqa: E402


@pytest.fixture(scope="session")
def sft_run(tmp_path_factory) -> dict:
    from driftkeel.training.sft import train_sft

    out = tmp_path_factory.mktemp("sft")
    return train_sft(DEMOS, TEXTS, out, COMMON, SFT)


@pytest.fixture(scope="session")
def reward_run(tmp_path_factory, sft_run) -> dict:
    from driftkeel.training.reward import train_reward

    out = tmp_path_factory.mktemp("reward")
    params = REWARD.model_copy(update={"ensemble_size": 2})  # member 1: bootstrap resample, seed + 1
    return train_reward(PAIRS[::2], PAIRS[1::2], sft_run["model_dir"], out, COMMON, params)
