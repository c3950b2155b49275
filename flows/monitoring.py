"""Monitoring flow: validate -> aggregate -> drift (each `dvc repro`), then act on the decision.

    python flows/monitoring.py [ROOT]          # one run, no server needed (ephemeral Prefect)

Reads outputs/drift/decision.json; on `retrain-reward` or `retrain-all` it starts retraining:
under a deployment through `run_deployment` (the weekly retraining deployment, not waited for, so the
monitoring run does not hold a worker slot for hours), otherwise as a subflow in this process.
Both decisions run the whole retraining chain; DVC skips the stages whose inputs did not change.
"""
from __future__ import annotations

import sys
from pathlib import Path

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a script / Prefect entrypoint
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect import flow, runtime
from prefect.logging import get_run_logger

from flows.retraining import retraining, run_group
from flows.stages import PROJECT_ROOT, outputs_dir, read_output_json, repro_stage

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


def start_retraining(root: str, reason: str, deployment: str, stage_timeout_s: float | None) -> dict:
    if runtime.deployment.id:  # running under a deployment: hand over to the retraining deployment
        from prefect.deployments import run_deployment

        run = run_deployment(name=deployment, parameters={"root": root, "reason": reason,
                                                          "stage_timeout_s": stage_timeout_s},
                             timeout=0)
        return {"mode": "deployment", "deployment": deployment, "flow_run_id": str(run.id)}
    return {"mode": "subflow",
            "result": retraining(root=root, reason=reason, stage_timeout_s=stage_timeout_s)}


@flow(name="driftkeel-monitoring", log_prints=True)
def monitoring(root: str = str(PROJECT_ROOT), trigger_retraining: bool = True,
               retraining_deployment: str = RETRAINING_DEPLOYMENT,
               stage_timeout_s: float | None = None) -> dict:
    """Returns {"decision": action, "reasons": [...], "retraining": None | {...}}."""
    logger = get_run_logger()
    env = {"DRIFTKEEL_RUN_GROUP": run_group("monitoring")}
    stages = [repro_stage(s, root, timeout_s=stage_timeout_s, env=env) for s in MONITOR_STAGES]
    decision = read_output_json(root, f"{outputs_dir(root)}/drift/decision.json")
    action = decision_action(decision)
    logger.info("drift decision: %s", action)
    for reason in decision.get("reasons") or []:
        logger.info("  %s", reason)
    out = {"decision": action, "reasons": decision.get("reasons") or [], "stages": stages,
           "retraining": None}
    if action in RETRAIN_ACTIONS and trigger_retraining:
        out["retraining"] = start_retraining(root, f"drift decision {action}", retraining_deployment,
                                             stage_timeout_s)
    return out


if __name__ == "__main__":
    print(monitoring(root=sys.argv[1] if len(sys.argv) > 1 else str(PROJECT_ROOT)))
