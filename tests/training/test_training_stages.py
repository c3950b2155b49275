"""The training stage entries pipelines/{sft,reward,ppo}.py on a tiny project, killed and resumed.

Two twin projects. In `ref` each stage runs uninterrupted (in this process, logged to MLflow). In
`run` each stage entry (`pipelines.<stage>` run as __main__, what `python -m pipelines.<stage>` does)
runs in its own process, is killed with SIGKILL once its first checkpoint is on disk, and is re-run.
The re-run resumes from the checkpoint and ends with the same final metrics and weights as `ref`; no
model directory exists between the kill and the re-run (no half-written model).

The killed processes are forked from a multiprocessing fork server that imported torch, transformers,
TRL and MLflow once (a cold `python -m` import costs 10-30 s on the shared 2-core machine); each is
still a separate OS process killed with SIGKILL mid-training. Killed runs are paced with
DRIFTKEEL_STEP_DELAY_S (a sleep after each optimiser step) so the kill lands mid-training on a loaded
machine; the resumed and reference runs are not paced.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import runpy
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
from safetensors.torch import load_file
from stage_project import REPO, make_project

from driftkeel.io import read_json
from driftkeel.training.checkpoints import STEP_DELAY_ENV, hf_checkpoint_complete

STAGES = ("sft", "reward", "ppo")
OVERRIDES = {
    "sft": {"max_steps": 8, "checkpoint_every": 2},
    "reward": {"max_steps": 4, "checkpoint_every": 2, "ensemble_size": 3},
    "ppo": {"total_episodes": 24, "checkpoint_every": 1},
}
TIMING = {"train_seconds", "train_seconds_all_members", "tokens_per_s", "pairs_per_s", "episodes_per_s",
          "resumed_from_step", "resumed_members"}


def _ppo_round_complete(path: Path) -> bool:
    from driftkeel.training.ppo import _round_complete

    return _round_complete(path)


# stage -> (checkpoint dirs to watch, completeness test)
WATCH = {
    "sft": ("checkpoints/checkpoint-*", hf_checkpoint_complete),
    # members train in the order 1, 2, 0: kill while member 2 trains, member 1 finished (kept), 0 not begun
    "reward": ("checkpoints/member-2/checkpoint-*", hf_checkpoint_complete),
    "ppo": ("checkpoints/round-*", _ppo_round_complete),
}


def _env(root: Path, **extra) -> dict:
    env = dict(os.environ)  # one MLflow store for both projects (created once: migrations are slow)
    env.update(DRIFTKEEL_ROOT=str(root), MLFLOW_TRACKING_URI=f"sqlite:///{root.parent / 'mlflow.db'}",
               DRIFTKEEL_RUN_GROUP=f"kill-{root.name}", MLFLOW_DISABLE_TELEMETRY="true",
               PYTHONPATH=str(REPO), **extra)
    return env


PRELOAD = ["torch", "transformers", "datasets", "trl", "mlflow", "pipelines._stage",
           "driftkeel.registry.tracking", "driftkeel.training.sft", "driftkeel.training.reward",
           "driftkeel.training.ppo"]


def _stage_process(stage: str, env: dict) -> None:
    """Body of the killed process: the stage entry, as `python -m pipelines.<stage>` runs it."""
    os.environ.update(env)
    runpy.run_module(f"pipelines.{stage}", run_name="__main__", alter_sys=True)


def _kill_after_first_checkpoint(ctx, stage: str, root: Path, timeout: float = 300) -> None:
    pattern, complete = WATCH[stage]
    env = _env(root, **{STEP_DELAY_ENV: "0.25"})
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow-killed.db'}"  # not shared with this process
    proc = ctx.Process(target=_stage_process, args=(stage, env), daemon=True)
    proc.start()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if any(complete(p) for p in (root / "outputs" / stage).glob(pattern)):
                break
            if not proc.is_alive():
                raise AssertionError(f"{stage} ended ({proc.exitcode}) before a checkpoint")
            time.sleep(0.05)
        else:
            raise AssertionError(f"{stage}: no checkpoint within {timeout}s")
    finally:
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
        proc.join()
    assert proc.exitcode == -signal.SIGKILL, (stage, proc.exitcode)


def _run_in_process(stage: str, root: Path, monkeypatch) -> dict:
    for k, v in _env(root).items():
        if k.startswith(("DRIFTKEEL_", "MLFLOW_")):
            monkeypatch.setenv(k, v)
    monkeypatch.delenv(STEP_DELAY_ENV, raising=False)
    runpy.run_module(f"pipelines.{stage}", run_name="__main__")
    return json.loads((root / "outputs" / stage / "metrics.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{stage: (reference metrics, resumed metrics)} and the two project roots."""
    import mlflow

    tmp = tmp_path_factory.mktemp("stages")
    ref = make_project(tmp / "ref", **OVERRIDES)
    run = make_project(tmp / "run", **OVERRIDES)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    out = {"ref": ref, "run": run, "metrics": {}, "killed_model_dirs": {}}
    with pytest.MonkeyPatch.context() as mp:
        try:
            for stage in STAGES:
                expected = _run_in_process(stage, ref, mp)
                mlflow.set_tracking_uri(None)
                _kill_after_first_checkpoint(ctx, stage, run)
                out["killed_model_dirs"][stage] = (run / "outputs" / stage / "model").exists()
                got = _run_in_process(stage, run, mp)
                mlflow.set_tracking_uri(None)
                out["metrics"][stage] = (expected, got)
        finally:
            mlflow.set_tracking_uri(None)
    return out


def _flat_scalars(path: Path) -> dict:
    metrics = read_json(path)
    assert metrics and all(isinstance(v, (int, float)) or v is None for v in metrics.values()), metrics
    return metrics


@pytest.mark.slow
def test_stage_entries_write_models_metrics_plots_and_log_to_mlflow(runs):
    from mlflow import MlflowClient

    out = runs["ref"] / "outputs"
    for name in STAGES:
        entry = REPO / "pipelines" / f"{name}.py"
        assert f"python -m pipelines.{name}" in entry.read_text(encoding="utf-8").split('"""')[1]
        assert (out / name / "model" / "model.safetensors").exists()
        assert (out / name / "model" / "tokenizer.json").exists()
        assert not (out / name / "checkpoints").exists(), name  # removed once the final model is saved
    sft = _flat_scalars(out / "sft" / "metrics.json")
    reward = _flat_scalars(out / "reward" / "metrics.json")
    ppo = _flat_scalars(out / "ppo" / "metrics.json")
    assert sft["steps"] == 8 and reward["steps"] == 4 and ppo["episodes"] == 24
    assert 0.0 <= reward["eval_accuracy"] <= 1.0 and reward["ensemble_size"] == 3 and reward["temperature"] > 0
    assert read_json(out / "reward" / "ensemble" / "ensemble.json")["members"] == [
        "model", "ensemble/member-1", "ensemble/member-2"]
    assert ppo["n_reward_members"] == 3 and ppo["algorithm_ppo"] == 1
    assert list(pd.read_csv(out / "sft" / "plots" / "loss.csv").columns) == ["step", "loss"]
    assert {"step", "loss", "eval_loss"} <= set(pd.read_csv(out / "reward" / "plots" / "loss.csv").columns)
    curve = pd.read_csv(out / "ppo" / "plots" / "reward.csv")
    assert {"step", "score", "kl"} <= set(curve.columns) and len(curve) == 3

    client = MlflowClient(tracking_uri=f"sqlite:///{runs['ref'].parent / 'mlflow.db'}")
    exp = client.get_experiment_by_name("driftkeel")
    group = f"kill-{runs['ref'].name}"
    found = client.search_runs([exp.experiment_id], f"tags.`driftkeel.kind` = 'stage' and "
                               f"tags.`driftkeel.pipeline_key` = '{group}'")
    by_stage = {r.data.tags["driftkeel.stage"]: r for r in found}
    assert set(by_stage) == set(STAGES)
    assert "eval_accuracy" in by_stage["reward"].data.metrics
    assert by_stage["sft"].data.params["sft.model_name_or_path"] == "tiny"
    assert by_stage["ppo"].data.params["rl.algorithm"] == "ppo"
    assert len(client.get_metric_history(by_stage["sft"].info.run_id, "loss")) >= 1
    assert json.loads(json.dumps(by_stage["ppo"].data.metrics))["episodes"] == 24


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_killed_stage_resumes_and_matches_an_uninterrupted_run(runs, stage):
    expected, got = runs["metrics"][stage]
    assert not runs["killed_model_dirs"][stage], f"{stage}: a model dir exists after the kill"
    assert got["resumed_from_step"] > 0 or got.get("resumed_members", 0) > 0
    assert not (runs["run"] / "outputs" / stage / "checkpoints").exists()
    assert {k: v for k, v in got.items() if k not in TIMING} == pytest.approx(
        {k: v for k, v in expected.items() if k not in TIMING}, rel=1e-5, abs=1e-6)
    a = load_file(str(runs["run"] / "outputs" / stage / "model" / "model.safetensors"))
    b = load_file(str(runs["ref"] / "outputs" / stage / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all((a[k] - b[k]).abs().max().item() <= 1e-5 for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["grpo", "dpo"])
def test_policy_stage_runs_the_algorithm_from_params(runs, algorithm, tmp_path, monkeypatch):
    """`rl.algorithm` switches the ppo stage's trainer; the policy still lands in outputs/ppo/model."""
    import shutil

    import mlflow
    import yaml

    root = tmp_path / algorithm
    shutil.copytree(runs["ref"], root, ignore=shutil.ignore_patterns("ppo", "mlflow*.db"))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["rl"].update(algorithm=algorithm, num_generations=4)
    params["rl"]["dpo"].update(max_steps=3, batch_size=8)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        metrics = _run_in_process("ppo", root, monkeypatch)
    finally:
        mlflow.set_tracking_uri(None)
    assert metrics[f"algorithm_{algorithm}"] == 1 and metrics["params_changed_fraction"] > 0.5
    assert metrics["steps"] == 3  # dpo: max_steps; grpo: 24 episodes / batch 8
    assert (root / "outputs" / "ppo" / "model" / "model.safetensors").exists()
    assert not (root / "outputs" / "ppo" / "checkpoints").exists()
    curve = pd.read_csv(root / "outputs" / "ppo" / "plots" / "reward.csv")
    assert ("loss" if algorithm == "dpo" else "score") in curve.columns
