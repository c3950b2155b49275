"""The stage entries pipelines/{sft,reward,ppo}.py on a tiny project in a temp dir, logged to MLflow."""
from __future__ import annotations

import json
import runpy
from pathlib import Path

import pandas as pd
import pytest
import yaml
from training_task import DEMOS, PAIRS

from driftkeel.io import read_json, write_jsonl

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def project(tmp_path, monkeypatch, request):
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["common"]["tiny_model"] = {"vocab_size": 300, "n_positions": 64, "n_embd": 32, "n_layer": 1,
                                      "n_head": 2}
    params["common"].update(max_prompt_tokens=20, max_response_tokens=24)
    params["sft"].update(max_steps=4, batch_size=8)
    params["reward"].update(max_steps=4, batch_size=8)
    params["ppo"].update(total_episodes=8, batch_size=8, mini_batch_size=4, response_length=6,
                         n_prompts=16, ppo_epochs=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    write_jsonl(tmp_path / "data" / "sft" / "demos.jsonl",
                [{"prompt_id": f"p{i}", **d} for i, d in enumerate(DEMOS)])
    mix = tmp_path / "outputs" / "mix"
    rows = [{**p, "batch": 0, "source": "new"} for p in PAIRS]
    write_jsonl(mix / "train.jsonl", rows[::2])
    write_jsonl(mix / "eval.jsonl", rows[1::2])
    write_jsonl(mix / "prompts.jsonl", [{"prompt_id": p["pair_id"], "prompt": p["prompt"]} for p in PAIRS])
    monkeypatch.setenv("DRIFTKEEL_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("DRIFTKEEL_RUN_GROUP", request.node.name)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    yield tmp_path
    import mlflow

    mlflow.set_tracking_uri(None)


def _flat_scalars(path: Path) -> dict:
    metrics = read_json(path)
    assert metrics and all(isinstance(v, (int, float)) or v is None for v in metrics.values()), metrics
    return metrics


@pytest.mark.slow
def test_sft_reward_ppo_stages(project):
    for name in ("sft", "reward", "ppo"):
        entry = REPO / "pipelines" / f"{name}.py"
        assert f"python -m pipelines.{name}" in entry.read_text(encoding="utf-8").split('"""')[1]
        runpy.run_path(str(entry), run_name="__main__")

    out = project / "outputs"
    for name in ("sft", "reward", "ppo"):
        assert (out / name / "model" / "model.safetensors").exists()
        assert (out / name / "model" / "tokenizer.json").exists()
    sft = _flat_scalars(out / "sft" / "metrics.json")
    reward = _flat_scalars(out / "reward" / "metrics.json")
    ppo = _flat_scalars(out / "ppo" / "metrics.json")
    assert sft["steps"] == 4 and reward["steps"] == 4 and ppo["episodes"] == 8
    assert 0.0 <= reward["eval_accuracy"] <= 1.0
    assert list(pd.read_csv(out / "sft" / "plots" / "loss.csv").columns) == ["step", "loss"]
    assert {"step", "loss", "eval_loss"} <= set(pd.read_csv(out / "reward" / "plots" / "loss.csv").columns)
    curve = pd.read_csv(out / "ppo" / "plots" / "reward.csv")
    assert {"step", "score", "kl"} <= set(curve.columns) and len(curve) == 1
    assert (out / "sft" / "checkpoints").is_dir()  # SFT keeps its last checkpoint; the others save none
    assert not (out / "reward" / "checkpoints").exists() and not (out / "ppo" / "checkpoints").exists()

    from mlflow import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name("driftkeel")
    runs = client.search_runs([exp.experiment_id], "tags.`driftkeel.kind` = 'stage'")
    by_stage = {r.data.tags["driftkeel.stage"]: r for r in runs}
    assert set(by_stage) == {"sft", "reward", "ppo"}
    assert "eval_accuracy" in by_stage["reward"].data.metrics
    assert by_stage["sft"].data.params["sft.model_name_or_path"] == "tiny"
    assert len(client.get_metric_history(by_stage["sft"].info.run_id, "loss")) >= 1
    assert json.loads(json.dumps(by_stage["ppo"].data.metrics))["episodes"] == 8
