"""A tiny preference task and tiny-model params shared by the training tests."""
from __future__ import annotations

from driftkeel.config import CommonParams, PpoParams, RewardParams, SftParams, TinyModelParams

TOPICS = {
    "garden": ["soil", "compost", "water", "seeds", "roots"],
    "kitchen": ["garlic", "onion", "oven", "flour", "butter"],
    "bike": ["chain", "brake", "tyre", "gear", "saddle"],
}
FILLER = "There are many different views on this."


def _prompt(topic: str, i: int) -> str:
    return f"How do I look after my {topic} number {i}?"


def _good(topic: str, i: int) -> str:
    w = TOPICS[topic]
    return f"Check the {w[i % 5]} and the {w[(i + 1) % 5]} each day."


def _bad(topic: str, i: int) -> str:
    return FILLER + " " + FILLER


DEMOS = [{"prompt": _prompt(t, i), "response": _good(t, i)} for t in TOPICS for i in range(16)]
PAIRS = [{"pair_id": f"{t}-{i}", "prompt": _prompt(t, i), "chosen": _good(t, i), "rejected": _bad(t, i),
          "weight": 1.0} for t in TOPICS for i in range(24)]
TEXTS = [d["prompt"] + "\n" + d["response"] for d in DEMOS] + [p["rejected"] for p in PAIRS]

TINY = TinyModelParams(vocab_size=300, n_positions=64, n_embd=32, n_layer=1, n_head=2)
COMMON = CommonParams(seed=0, tiny_model=TINY, max_prompt_tokens=20, max_response_tokens=24)
SFT = SftParams(epochs=1, learning_rate=3e-3, batch_size=8, max_steps=12)
REWARD = RewardParams(epochs=1, learning_rate=3e-3, batch_size=8, max_steps=24)
PPO = PpoParams(total_episodes=16, batch_size=8, mini_batch_size=4, learning_rate=1e-3, kl_coef=0.05,
                response_length=8, n_prompts=16, ppo_epochs=1)
