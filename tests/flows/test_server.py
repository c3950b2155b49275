"""Deployments that really run: a real `prefect server start` on 127.0.0.1, `prefect deploy --all` from
prefect.yaml onto a process work pool, a real `prefect worker`, runs triggered through the API."""
import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from flows_conftest import MONITOR, REPO, RETRAIN, set_decision
from prefect_server import PREFECT, process_worker, stop

pytestmark = pytest.mark.slow

POOL, QUEUE = "driftkeel-process", "driftkeel-serial"
MONITORING = "driftkeel-monitoring/daily-monitoring"
RETRAINING = "driftkeel-retraining/weekly-retraining"


def _cli(server, *args, cwd=REPO, **env):
    res = subprocess.run([PREFECT, *args], cwd=cwd, env=server.env(**env), capture_output=True, text=True,
                         timeout=180)
    assert res.returncode == 0, f"prefect {' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def _wait_final(client, flow_run_id, timeout_s: float, logs: list[Path]):
    deadline = time.monotonic() + timeout_s
    while True:
        run = client.read_flow_run(flow_run_id)
        if run.state is not None and run.state.is_final():
            return run
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-3000:]}" for p in logs if p.exists())
            raise AssertionError(f"flow run {run.name} still {run.state.name if run.state else None} "
                                 f"after {timeout_s} s\n{tails}")
        time.sleep(1)


def _runs_of(client, deployment_id, **flt):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                                 **flt)


def _locked(root: Path) -> set[str]:
    return set((yaml.safe_load((root / "dvc.lock").read_text()) or {}).get("stages", {}))


def test_prefect_yaml_deploys_to_a_work_pool_runs_on_a_worker_and_drift_triggers_retraining(
        dvc_project, prefect_server, tmp_path):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId
    from prefect.deployments import run_deployment

    # the pool and its serial queue (what `prefect work-pool create` / `work-queue create --limit 1` do,
    # through the API: each CLI start costs seconds), then the README's `prefect deploy --all` itself
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
        client.create_work_queue(name=QUEUE, work_pool_name=POOL, concurrency_limit=1)
    _cli(prefect_server, "--no-prompt", "deploy", "--all", DRIFTKEEL_ROOT=str(REPO))

    with get_client(sync_client=True) as client:
        deps = {d.name: d for d in client.read_deployments()}
        mon, ret = deps["daily-monitoring"], deps["weekly-retraining"]
        assert mon.work_pool_name == POOL and mon.work_queue_name == QUEUE
        assert ret.work_pool_name == POOL and ret.work_queue_name == QUEUE
        assert [s.schedule.cron for s in mon.schedules] == ["0 6 * * *"] and mon.schedules[0].active
        assert [s.schedule.cron for s in ret.schedules] == ["0 2 * * 0"] and ret.schedules[0].active

        # the server's scheduler turns the cron schedules into scheduled runs (daily 06:00 / Sunday 02:00 UTC)
        deadline = time.monotonic() + 60
        while True:
            daily = [r for r in _runs_of(client, mon.id) if r.state.is_scheduled()]
            weekly = [r for r in _runs_of(client, ret.id) if r.state.is_scheduled()]
            if len(daily) >= 2 and weekly:
                break
            assert time.monotonic() < deadline, "the scheduler made no scheduled runs from the cron schedules"
            time.sleep(1)
        starts = sorted(r.expected_start_time.astimezone(dt.timezone.utc) for r in daily)
        assert all((s.hour, s.minute) == (6, 0) for s in starts)
        assert starts[1] - starts[0] == dt.timedelta(days=1)
        w = min(r.expected_start_time for r in weekly).astimezone(dt.timezone.utc)
        assert (w.weekday(), w.hour, w.minute) == (6, 2, 0)  # Sunday 02:00

    # a run through the API; the decision is retrain-all, so monitoring starts the retraining deployment
    set_decision(dvc_project, "retrain-all")
    worker_log = tmp_path / "worker.log"
    with process_worker(prefect_server, POOL, tmp_path, worker_log):
        started = run_deployment(MONITORING, parameters={"root": str(dvc_project)}, timeout=0)
        with get_client(sync_client=True) as client:
            run = _wait_final(client, started.id, 240, [worker_log])
            assert run.state.is_completed(), (run.state, worker_log.read_text()[-4000:])
            deadline = time.monotonic() + 60
            while not (triggered := [r for r in _runs_of(client, ret.id)
                                     if r.parameters.get("root") == str(dvc_project)]):
                assert time.monotonic() < deadline, "monitoring did not start the retraining deployment"
                time.sleep(1)
            (triggered,) = triggered
            assert "drift-triggered" in triggered.tags
            assert triggered.parameters["reason"] == "drift decision retrain-all"
            report_uri = (dvc_project / "outputs" / "drift" / "report.html").resolve().as_uri()
            assert triggered.parameters["drift_report"] == report_uri
            retrain = _wait_final(client, triggered.id, 240, [worker_log])
            assert retrain.state.is_completed(), (retrain.state, worker_log.read_text()[-4000:])
            # the drift report is linked from both runs
            arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["drift-report"])),
                                         flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id, retrain.id])))
            assert {a.flow_run_id for a in arts} == {run.id, retrain.id}
            assert all(report_uri in str(a.data) for a in arts)
    # both flows really ran every stage in the project, one after the other (queue limit 1)
    assert _locked(dvc_project) == set(MONITOR + RETRAIN)
    assert retrain.start_time >= run.end_time
    status = subprocess.run([str(Path(sys.executable).with_name("dvc")), "status", "register"], cwd=dvc_project,
                            capture_output=True, text=True)
    assert "up to date" in status.stdout.lower(), status.stdout


def test_served_deployments_run_without_a_work_pool(dvc_project, prefect_server, tmp_path):
    """`python flows/serve.py` (Runner): both deployments served from one process, a run through the API."""
    from prefect import get_client
    from prefect.deployments import run_deployment

    with get_client(sync_client=True) as client:  # switching start modes: remove the pool deployments first
        for d in client.read_deployments():
            if d.name in ("daily-monitoring", "weekly-retraining"):
                client.delete_deployment(d.id)
    log = tmp_path / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, str(REPO / "flows" / "serve.py"), "--no-schedules"], cwd=REPO,
                                env=prefect_server.env(PREFECT_RUNNER_POLL_FREQUENCY="2"), stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + 90
            while True:
                served = [d for d in client.read_deployments() if "served" in (d.tags or [])]
                if len(served) == 2:
                    break
                assert proc.poll() is None, log.read_text()[-4000:]
                assert time.monotonic() < deadline, f"deployments not served:\n{log.read_text()[-4000:]}"
                time.sleep(1)
            set_decision(dvc_project, "collect-labels")  # no retraining: one short run
            started = run_deployment(MONITORING, parameters={"root": str(dvc_project)}, timeout=0)
            run = _wait_final(client, started.id, 180, [log])
            assert run.state.is_completed(), log.read_text()[-4000:]
            assert run.deployment_id in {d.id for d in served}
    finally:
        stop(proc)
    assert _locked(dvc_project) == set(MONITOR)
