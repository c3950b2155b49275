"""Monitoring flow: pick up new batches, validate -> aggregate -> drift (each `dvc repro`), act on the decision.

    python flows/monitoring.py [ROOT]          # one run, no server needed (ephemeral Prefect)

1. New data: files in the inbox (`ops.inbox.folder`, default `inbox/`, or the `inbox` parameter) become
   the next `data/stream/batch_NNN.jsonl` (driftkeel.ops.inbox).
2. `dvc repro validate`; a new batch that makes it fail (the stage's verdict on the data, not a busy
   lock, a timeout or a tracking-store failure: then the batches stay pending) is taken out again
   (-> `<inbox>/rejected/`), also one a killed earlier run ingested and never validated
   (driftkeel.ops.inbox.pending_batches).
   Once validate passed, the data is versioned: `dvc add data`, `git commit data.dvc`, `dvc push`
   (each as configured in `ops.inbox`).
3. `dvc repro aggregate`, `dvc repro drift`: the drift history gains one point per new batch.
4. The decision (outputs/drift/decision.json): a Prefect link artifact to report.html, an event
   `driftkeel.drift.<action>`, a `drift-alarm` notification when any test alarmed (`ops.notify`);
   a decision an earlier run acted on (no new data since) gets no second event, alarm or retraining.
5. On `retrain-reward` / `retrain-all` it starts retraining with the report linked: under a deployment
   through `run_deployment` (the weekly retraining deployment, not waited for, so the monitoring run
   does not hold a worker slot for hours), otherwise as a subflow in this process.
"""
from __future__ import annotations

import sys
from pathlib import Path

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a script / Prefect entrypoint
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect import flow, runtime
from prefect.logging import get_run_logger

from flows.ops import (
    current_data_version,
    decision_already_acted,
    emit_drift_event,
    hold_inbox,
    ingest_new_batches,
    link_drift_report,
    mark_decision_acted,
    notify_flow_failed,
    pending_batches,
    reject_batches,
    restore_data_version,
    send_notification,
    settle_batches,
    validate_rejected_the_data,
    version_new_data,
)
from flows.retraining import retraining, run_group
from flows.stages import PROJECT_ROOT, StageFailed, outputs_dir, read_output_json, repro_stage

MONITOR_STAGES = ("validate", "aggregate", "drift")
RETRAIN_ACTIONS = ("retrain-reward", "retrain-all")
RETRAINING_DEPLOYMENT = "driftkeel-retraining/weekly-retraining"


def decision_action(decision: dict) -> str:
    """The action of a drift decision.json (`action`), validated against the known actions."""
    from driftkeel.drift.decision import ACTIONS

    action = decision.get("action")
    if action not in ACTIONS:
        raise ValueError(f"decision.json: unknown action {action!r}; expected one of {ACTIONS}")
    return action


def start_retraining(root: str, reason: str, deployment: str, stage_timeout_s: float | None,
                     drift_report: str | None = None) -> dict:
    params = {"root": root, "reason": reason, "stage_timeout_s": stage_timeout_s}
    if drift_report:
        params["drift_report"] = drift_report
    if runtime.deployment.id:  # running under a deployment: hand over to the retraining deployment
        from prefect.deployments import run_deployment

        run = run_deployment(name=deployment, parameters=params, timeout=0,
                             tags=["driftkeel", "drift-triggered"])
        return {"mode": "deployment", "deployment": deployment, "flow_run_id": str(run.id)}
    return {"mode": "subflow", "result": retraining(**params)}


def _history_points(root: str, outputs: str) -> int | None:
    path = Path(root) / outputs / "drift" / "report.json"
    if not path.exists():
        return None
    import json

    return len(json.loads(path.read_text(encoding="utf-8")).get("history") or [])


@flow(name="driftkeel-monitoring", log_prints=True, on_failure=[notify_flow_failed], on_crashed=[notify_flow_failed])
def monitoring(root: str = str(PROJECT_ROOT), trigger_retraining: bool = True,
               retraining_deployment: str = RETRAINING_DEPLOYMENT,
               stage_timeout_s: float | None = None, inbox: str | None = None) -> dict:
    """Returns {"decision", "reasons", "stages", "ingested", "data_version", "history_points",
    "drift_report", "notification", "retraining": None | {...}}."""
    logger = get_run_logger()
    env = {"DRIFTKEEL_RUN_GROUP": run_group("monitoring")}
    outputs = outputs_dir(root)
    version_before = current_data_version(root)
    with hold_inbox(root, inbox):   # one run at a time from ingest to settle / reject
        ingested = ingest_new_batches(root, inbox)
        # not only this run's: a run killed before its batches were validated left them pending
        new = pending_batches(root, inbox)
        try:
            stages = [repro_stage("validate", root, timeout_s=stage_timeout_s, env=env)]
        except StageFailed as exc:
            if new and validate_rejected_the_data(exc):
                reject_batches(root, new, f"validate failed:\n{exc.tail}", inbox)
                restore_data_version(root, version_before)
            elif new:   # not a verdict on the data: the batches stay in the stream, pending for the next run
                logger.warning("validate failed for a reason other than the data (%s): %d new batch(es) stay "
                               "pending for the next run", "lock busy" if exc.transient else
                               "timeout" if exc.returncode == -9 else f"exit code {exc.returncode}", len(new))
            raise
        # validated: no longer pending (a run killed before versioning is versioned by the next, whose
        # `dvc repro` has re-recorded data.dvc: a dirty data.dvc counts as new data)
        settle_batches(root, new, inbox)
    versioned = version_new_data(root, new, version_before)
    stages += [repro_stage(s, root, timeout_s=stage_timeout_s, env=env) for s in MONITOR_STAGES[1:]]
    decision = read_output_json(root, f"{outputs}/drift/decision.json")
    action = decision_action(decision)
    logger.info("drift decision: %s", action)
    for reason in decision.get("reasons") or []:
        logger.info("  %s", reason)
    report = link_drift_report(root, outputs, decision)
    # a decision acted on before (no new data since, so the same decision.json) is not acted on again:
    # no second alarm, no second retraining
    acted_before = decision_already_acted(root, decision)
    if acted_before:
        logger.info("drift decision unchanged since an earlier run acted on it (batch %s): not acted on again",
                    decision.get("current_batch"))
    else:
        emit_drift_event(root, decision, report)
    notification = None
    if not acted_before and (decision.get("n_alarms") or decision.get("signals") or action != "none"):
        notification = send_notification(
            root, "drift-alarm", f"batch {decision.get('current_batch')}: {action} "
                                 f"(signals: {', '.join(decision.get('signals') or []) or 'none'})",
            details={"decision": action, "signals": decision.get("signals") or [],
                     "reasons": decision.get("reasons") or []},
            links={"drift_report": report})
    out = {"decision": action, "reasons": decision.get("reasons") or [], "stages": stages,
           "ingested": ingested, "data_version": versioned, "history_points": _history_points(root, outputs),
           "drift_report": report, "notification": notification, "retraining": None,
           "decision_acted_before": acted_before}
    if action in RETRAIN_ACTIONS and trigger_retraining and not acted_before:
        out["retraining"] = start_retraining(root, f"drift decision {action}", retraining_deployment,
                                             stage_timeout_s, drift_report=report)
    mark_decision_acted(root, decision)
    return out


if __name__ == "__main__":
    print(monitoring(root=sys.argv[1] if len(sys.argv) > 1 else str(PROJECT_ROOT)))
