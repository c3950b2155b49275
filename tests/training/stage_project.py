"""A tiny project (params + data + mix outputs) in a temp dir, for running the stage entries."""
from __future__ import annotations

from pathlib import Path

import yaml
from training_task import DEMOS, PAIRS

from driftkeel.io import write_jsonl

REPO = Path(__file__).resolve().parents[2]


def make_project(root: Path, **overrides) -> Path:
    """params.yaml (tiny model, few steps; `overrides` = {section: {key: value}}), demos, mix files."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["common"]["tiny_model"] = {"vocab_size": 300, "n_positions": 64, "n_embd": 32, "n_layer": 1,
                                      "n_head": 2}
    params["common"].update(max_prompt_tokens=20, max_response_tokens=24)
    params["sft"].update(max_steps=4, batch_size=8)
    params["reward"].update(max_steps=4, batch_size=8, ensemble_size=1)
    params["ppo"].update(total_episodes=8, batch_size=8, mini_batch_size=4, response_length=6,
                         n_prompts=16, ppo_epochs=1)
    for section, values in overrides.items():
        params.setdefault(section, {}).update(values)
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    write_jsonl(root / "data" / "sft" / "demos.jsonl",
                [{"prompt_id": f"p{i}", **d} for i, d in enumerate(DEMOS)])
    mix = root / "outputs" / "mix"
    rows = [{**p, "batch": 0, "source": "new"} for p in PAIRS]
    write_jsonl(mix / "train.jsonl", rows[::2])
    write_jsonl(mix / "eval.jsonl", rows[1::2])
    write_jsonl(mix / "prompts.jsonl", [{"prompt_id": p["pair_id"], "prompt": p["prompt"]} for p in PAIRS])
    return root
