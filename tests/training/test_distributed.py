"""The training stages under a multi-process launch: `torchrun --nproc_per_node 2 -m pipelines.<stage>`
on CPU (gloo DDP), what `accelerate launch --config_file configs/accelerate/ddp.yaml` does on GPUs.

Both processes run the stage; the launch takes the project lock once (rank 0; a second rank is the same
run, not a second one); only the main process writes the model, metrics and the MLflow run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from stage_project import REPO, make_project

TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.mark.slow
def test_sft_and_reward_stages_run_data_parallel_on_two_processes(tmp_path):
    from mlflow import MlflowClient

    from driftkeel.registry.modelfiles import check_model_dir

    root = make_project(tmp_path / "proj", reward={"max_steps": 4, "ensemble_size": 1})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTKEEL_", "MLFLOW_TRACKING"))}
    env.update(DRIFTKEEL_ROOT=str(root), PYTHONPATH=str(REPO), MLFLOW_DISABLE_TELEMETRY="true",
               MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}", OMP_NUM_THREADS="1")
    for stage in ("sft", "reward"):
        res = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m",
                              f"pipelines.{stage}"], cwd=root, env=env, capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 0, (res.stdout[-3000:], res.stderr[-5000:])
        assert "busy" not in res.stderr
        metrics = json.loads((root / "outputs" / stage / "metrics.json").read_text())
        assert metrics["n_processes"] == 2 and metrics["steps"] == 4, metrics
        assert metrics["params_changed_fraction"] > 0
        check_model_dir(root / "outputs" / stage / "model")
    assert not list((root / "outputs").rglob("checkpoint-*"))  # removed once the final model was saved
    uri = f"sqlite:///{root / 'mlflow.db'}"
    runs = MlflowClient(tracking_uri=uri).search_runs(
        [e.experiment_id for e in MlflowClient(tracking_uri=uri).search_experiments()],
        "tags.`driftkeel.kind` = 'stage'")
    assert sorted(r.data.tags["driftkeel.stage"] for r in runs) == ["reward", "sft"]  # one run each: rank 0 only
    assert yaml.safe_load((root / "params.yaml").read_text())["reward"]["ensemble_size"] == 1
