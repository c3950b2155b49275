"""The whole chain, for real: demo data -> `dvc repro` -> MLflow registry, on a minimal config."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

STAGES = ["validate", "aggregate", "drift", "select", "mix", "sft", "reward", "ppo", "evaluate", "register"]

MINIMAL = {
    "common": {"tiny_model": {"vocab_size": 400, "n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 192}},
    "data": {"n_batches": 4, "comparisons_per_batch": 60, "n_annotators": 12, "new_topics_from_batch": 2,
             "concept_drift_batch": 3, "pool_change_batch": 3, "n_sft_demos": 80, "pool_size": 60,
             "n_eval_pairs": 40, "n_eval_prompts": 8},
    "drift": {"reference_batches": 1, "min_window": 20, "n_permutations": 100},
    "select": {"k": 10},
    "mix": {"new_batches": 2},
    "sft": {"epochs": 1},
    "reward": {"epochs": 1},
    "ppo": {"total_episodes": 16, "batch_size": 8, "mini_batch_size": 4, "response_length": 12, "n_prompts": 32},
    "evaluate": {"min_reward_accuracy": 0.0, "max_policy_reward_drop": 100.0, "n_samples": 8},
}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base.get(k, {}), v) if isinstance(v, dict) else v
    return out


def _run(cmd, cwd, env, timeout=900):
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n"
                             f"{res.stdout[-4000:]}\n{res.stderr[-6000:]}")
    return res.stdout + res.stderr


def _copy_project(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    proj = tmp_path_factory.mktemp("e2e") / "proj"
    proj.mkdir()
    _copy_project(proj)
    params = yaml.safe_load((proj / "params.yaml").read_text())
    (proj / "params.yaml").write_text(yaml.safe_dump(_merge(params, MINIMAL), sort_keys=False))
    (proj / "data.dvc").unlink()
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("DRIFTKEEL_RUN_GROUP", None)
    env["PREFECT_HOME"] = str(proj / ".prefect")
    git = ["git", "-c", "user.name=e2e", "-c", "user.email=e2e@localhost"]
    _run(["git", "init", "-q", "-b", "main"], proj, env)
    _run([Path(sys.executable).parent / "driftkeel", "demo-data"], proj, env)
    _run(["dvc", "add", "-q", "data"], proj, env)
    _run([*git, "add", "-A"], proj, env)
    _run([*git, "commit", "-qm", "e2e"], proj, env)
    first = _run(["dvc", "repro"], proj, env)
    return proj, env, first


@pytest.mark.slow
def test_dvc_repro_runs_every_stage_and_writes_metrics(project):
    proj, _, first = project
    for stage in STAGES:
        assert f"Running stage '{stage}'" in first
        metrics = json.loads((proj / "outputs" / stage / "metrics.json").read_text())
        assert metrics, stage
    validate = json.loads((proj / "outputs/validate/metrics.json").read_text())
    assert validate["rows_in"] == validate["rows_clean"] + validate["rows_quarantined"] == 4 * 60 * 3
    assert (proj / "outputs/drift/report.html").stat().st_size > 1000
    decision = json.loads((proj / "outputs/drift/decision.json").read_text())
    assert decision["action"] in {"none", "collect-labels", "retrain-reward", "retrain-all"}


@pytest.mark.slow
def test_registry_holds_a_champion_tagged_with_commit_and_data(project):
    proj, env, _ = project
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{proj / 'mlflow.db'}")
    for name in ("driftkeel-policy", "driftkeel-reward"):
        mv = client.get_model_version_by_alias(name, "champion")
        assert client.get_model_version_by_alias(name, "challenger").version == mv.version
        run = client.get_run(mv.run_id)
        assert run.data.tags["driftkeel.data_version"].endswith(".dir")
        assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", run.data.tags["driftkeel.git_commit"])
    # one parent pipeline run, with a nested run per stage
    exp = client.get_experiment_by_name("driftkeel")
    stage_runs = client.search_runs([exp.experiment_id], "tags.`driftkeel.kind` = 'stage'")
    parents = {r.data.tags["mlflow.parentRunId"] for r in stage_runs}
    assert len(parents) == 1
    assert {r.data.tags["driftkeel.stage"] for r in stage_runs} >= set(STAGES)


@pytest.mark.slow
def test_second_repro_is_a_noop_and_a_param_reruns_only_downstream(project):
    proj, env, _ = project
    again = _run(["dvc", "repro"], proj, env)
    assert "Running stage" not in again
    exp = _run(["dvc", "exp", "run", "--set-param", "ppo.kl_coef=0.1"], proj, env)
    ran = set(re.findall(r"Running stage '(\w+)'", exp))
    assert ran == {"ppo", "evaluate", "register"}, exp[-3000:]


@pytest.mark.slow
def test_dvc_metrics_and_plots_render(project):
    proj, env, _ = project
    metrics = _run(["dvc", "metrics", "show", "--json"], proj, env)
    assert "eval_accuracy" in metrics and "rows_quarantined" in metrics
    out = _run(["dvc", "plots", "show", "--out", "dvc_plots"], proj, env)
    html = (proj / "dvc_plots" / "index.html").read_text()
    for plot in ("outputs/validate/plots/batches.csv", "outputs/drift/plots/history.csv",
                 "outputs/reward/plots/loss.csv"):
        assert plot in html, (plot, out[-2000:])
