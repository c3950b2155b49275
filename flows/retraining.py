"""Retraining flow: select -> mix -> sft -> reward -> ppo -> evaluate -> register, each `dvc repro`.

    python flows/retraining.py [ROOT]          # one run, no server needed (ephemeral Prefect)

Deployed weekly by prefect.yaml, and triggered by the monitoring flow on a retrain decision (with the
drift report it acted on in `drift_report`, also shown as a link artifact). The register stage promotes
to `champion` only when the evaluate gate passed; a failed gate sends a `gate-failed` notification
(`ops.notify`). The flow returns the registry record (outputs/register/registry.json).
"""
from __future__ import annotations

import hashlib
import sys
import uuid
from pathlib import Path

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a script / Prefect entrypoint
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect import flow, runtime
from prefect.logging import get_run_logger

from flows.ops import notify_flow_failed, send_notification
from flows.stages import PROJECT_ROOT, outputs_dir, read_output_json, repro_stage

RETRAIN_STAGES = ("select", "mix", "sft", "reward", "ppo", "evaluate", "register")


def run_group(prefix: str) -> str:
    """MLflow parent-run key for this flow run (all its stages nest under one parent run)."""
    flow_run_id = runtime.flow_run.id
    return f"{prefix}-{flow_run_id or uuid.uuid4().hex}"


@flow(name="driftkeel-retraining", log_prints=True, on_failure=[notify_flow_failed], on_crashed=[notify_flow_failed])
def retraining(root: str = str(PROJECT_ROOT), reason: str = "scheduled",
               stage_timeout_s: float | None = None, drift_report: str | None = None) -> dict:
    """Run the retraining stages in order; a failed stage fails the flow with its output tail."""
    logger = get_run_logger()
    logger.info("retraining in %s (reason: %s)", root, reason)
    if drift_report:
        from prefect.artifacts import create_link_artifact

        logger.info("drift report: %s", drift_report)
        create_link_artifact(key="drift-report", link=drift_report, link_text="drift report",
                             description=f"the drift report behind this run ({reason})")
    env = {"DRIFTKEEL_RUN_GROUP": run_group("retraining")}
    stages = [repro_stage(s, root, timeout_s=stage_timeout_s, env=env) for s in RETRAIN_STAGES]
    registry = read_output_json(root, f"{outputs_dir(root)}/register/registry.json")
    versions = {role: m.get("version") for role, m in (registry.get("models") or {}).items()}
    summary = {"reason": reason, "stages": stages, "promoted": registry.get("promoted"),
               "decision": registry.get("decision"), "versions": versions, "drift_report": drift_report,
               "notification": None}
    registry_path = Path(root).resolve() / outputs_dir(root) / "register" / "registry.json"
    summary["register_ran"] = any(s.get("stage") == "register" and not s.get("up_to_date") for s in stages)
    if registry.get("gate_passed") is False:
        # once per register record: a run with every stage up to date re-reads last week's registry.json
        # (not this run's result), and must not re-send its gate-failed notification
        marker = registry_path.with_name(".gate-failed-notified")
        record = hashlib.sha256(registry_path.read_bytes()).hexdigest() if registry_path.exists() else ""
        if record and marker.exists() and marker.read_text(encoding="utf-8").strip() == record:
            summary["notification"] = {"sent": False, "skipped": "already notified for this register record"}
        else:
            summary["notification"] = send_notification(
                root, "gate-failed", f"challenger not promoted: {registry.get('decision')}"[:1000],
                details={"versions": versions, "reason": reason},
                links={"drift_report": drift_report, "registry": registry_path.as_uri()})
            if record and (summary["notification"] or {}).get("sent"):
                marker.write_text(record + "\n", encoding="utf-8")
    logger.info("retraining done: %s", summary["decision"])
    return summary


if __name__ == "__main__":
    print(retraining(root=sys.argv[1] if len(sys.argv) > 1 else str(PROJECT_ROOT)))
