"""The Prefect flows on a real tiny DVC project: real `dvc repro`, real Prefect (test harness)."""
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from flows_conftest import DVC, MONITOR, REPO, RETRAIN, set_decision

from flows.monitoring import RETRAINING_DEPLOYMENT, decision_action, monitoring
from flows.retraining import retraining
from flows.stages import StageFailed, _retry_only_transient, run_dvc_stage

pytestmark = pytest.mark.slow  # each test runs several real `dvc repro` (about 1.5 s each)


def locked_stages(root: Path) -> set[str]:
    lock = root / "dvc.lock"
    return set((yaml.safe_load(lock.read_text()) or {}).get("stages", {})) if lock.exists() else set()


def test_monitoring_without_drift_does_not_retrain(dvc_project, prefect_harness):
    out = monitoring(root=str(dvc_project))
    assert out["decision"] == "none" and out["retraining"] is None
    assert out["reasons"] == ["test decision none"]
    assert [s["stage"] for s in out["stages"]] == list(MONITOR)
    assert [s["ran"] for s in out["stages"]] == [["validate"], ["aggregate"], ["drift"]]
    assert not any(s["up_to_date"] for s in out["stages"])
    assert locked_stages(dvc_project) == set(MONITOR)
    assert not (dvc_project / "outputs" / "select").exists()


def test_retrain_decision_runs_the_retraining_subflow(dvc_project, prefect_harness):
    set_decision(dvc_project, "retrain-all")
    out = monitoring(root=str(dvc_project))
    assert out["decision"] == "retrain-all"
    assert out["retraining"]["mode"] == "subflow"
    result = out["retraining"]["result"]
    assert [s["stage"] for s in result["stages"]] == list(RETRAIN)
    assert [s["ran"] for s in result["stages"]] == [[s] for s in RETRAIN]
    assert result["promoted"] is True and result["versions"] == {"policy": 1, "reward": 1}
    assert result["reason"] == "drift decision retrain-all"
    assert locked_stages(dvc_project) == set(MONITOR + RETRAIN)
    status = subprocess.run([DVC, "status", "register"], cwd=dvc_project, capture_output=True, text=True)
    assert "up to date" in status.stdout.lower(), status.stdout


def test_failed_stage_fails_the_flow_with_its_stderr_and_is_not_retried(dvc_project, prefect_harness):
    from prefect import flow

    from flows.stages import repro_stage

    @flow
    def one_stage(root: str):
        return repro_stage("boom", root)

    with pytest.raises(StageFailed) as info:
        one_stage(str(dvc_project))
    assert "dvc repro boom failed (exit code" in str(info.value)
    assert "boom: row 7 has no prompt" in str(info.value)
    assert (dvc_project / "attempts.txt").read_text() == "x"  # deterministic failure: no retry


def test_busy_dvc_lock_is_reported_as_transient(dvc_project):
    """DVC 3 locks per path: a second repro of a stage whose outputs another repro holds fails at
    once with "is busy"; that failure (and only that kind) is marked transient, so the task retries."""
    holder = subprocess.Popen([DVC, "repro", "slow"], cwd=dvc_project, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        rwlock = dvc_project / ".dvc" / "tmp" / "rwlock"
        deadline = time.time() + 30
        while not (rwlock.exists() and "slow" in rwlock.read_text()):
            assert time.time() < deadline and holder.poll() is None, "holder never took the lock"
            time.sleep(0.1)
        with pytest.raises(StageFailed) as info:
            run_dvc_stage("slow", dvc_project)
        assert info.value.transient and info.value.returncode == 255
        assert "is busy" in str(info.value)
    finally:
        holder.wait(timeout=60)


def test_retry_condition_retries_only_transient_failures():
    class State:
        def __init__(self, exc):
            self.exc = exc

        def result(self):
            raise self.exc

    assert _retry_only_transient(None, None, State(StageFailed("x", 255, "is busy", transient=True)))
    assert not _retry_only_transient(None, None, State(StageFailed("x", 3, "boom")))
    assert not _retry_only_transient(None, None, State(ValueError("x")))


def test_a_second_repro_is_up_to_date(dvc_project):
    first = run_dvc_stage("aggregate", dvc_project)
    assert first["ran"] == ["validate", "aggregate"] and not first["up_to_date"]
    again = run_dvc_stage("aggregate", dvc_project)
    assert again["ran"] == [] and again["up_to_date"]


def test_stage_timeout_kills_the_stage(dvc_project):
    with pytest.raises(StageFailed, match=r"killed after 1\.5 s"):
        run_dvc_stage("slow", dvc_project, timeout_s=1.5)
    assert not (dvc_project / "outputs" / "slow" / "done.txt").exists()


def test_decision_action_validates():
    assert decision_action({"action": "retrain-reward"}) == "retrain-reward"
    with pytest.raises(ValueError, match="unknown action"):
        decision_action({"decision": "retrain"})


def test_under_a_deployment_retraining_is_started_through_run_deployment(dvc_project, prefect_harness,
                                                                         monkeypatch):
    from prefect import get_client

    deployment_id = retraining.to_deployment(name=RETRAINING_DEPLOYMENT.split("/")[1]).apply()
    # make the monitoring run see itself as a deployment run (prefect.runtime's documented override)
    monkeypatch.setenv("PREFECT__RUNTIME__DEPLOYMENT__ID", str(deployment_id))
    set_decision(dvc_project, "retrain-reward")
    out = monitoring(root=str(dvc_project))
    assert out["retraining"]["mode"] == "deployment"
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(out["retraining"]["flow_run_id"])
    assert run.deployment_id == deployment_id
    assert run.parameters["root"] == str(dvc_project)
    assert run.parameters["reason"] == "drift decision retrain-reward"
    assert run.state.is_scheduled()
    assert run.parameters["drift_report"] == (dvc_project / "outputs/drift/report.html").resolve().as_uri()
    assert "select" not in locked_stages(dvc_project)  # handed over, not run here
    with get_client(sync_client=True) as client:  # nobody will run it: leave the shared server clean
        client.delete_flow_run(run.id)
        client.delete_deployment(deployment_id)


def test_prefect_yaml_declares_scheduled_deployments_of_these_flows():
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import load_flow_from_entrypoint

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    deps = {d["name"]: d for d in spec["deployments"]}
    assert set(deps) == {"daily-monitoring", "weekly-retraining"}
    flows = {}
    for name, d in deps.items():
        path, func = d["entrypoint"].split(":")
        flows[name] = load_flow_from_entrypoint(f"{REPO / path}:{func}").name
        (sched,) = d["schedules"]
        CronSchedule(cron=sched["cron"], timezone=sched["timezone"])
    assert flows == {"daily-monitoring": "driftkeel-monitoring",
                     "weekly-retraining": "driftkeel-retraining"}
    assert deps["daily-monitoring"]["schedules"][0]["cron"] == "0 6 * * *"       # daily
    assert deps["weekly-retraining"]["schedules"][0]["cron"] == "0 2 * * 0"      # weekly
    assert RETRAINING_DEPLOYMENT == f"{flows['weekly-retraining']}/weekly-retraining"
