"""Prefect tasks around the stages: pick up new batches, version the data, link the drift report, notify.

Thin wrappers over `driftkeel.ops.inbox` and `driftkeel.notify` (the logic lives in src/), so the
monitoring and retraining flows show each step as a task run in the UI.
"""
from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger


def _project_name(root: str) -> str:
    return Path(root).resolve().name


def data_dir(root: str) -> str:
    from driftkeel.config import parse_section, read_params

    params = Path(root) / "params.yaml"
    raw = read_params(params) if params.exists() else {}
    return parse_section("common", raw.get("common")).data_dir


def _inbox_params(root: str, inbox: str | None = None):
    from driftkeel.ops.inbox import load_inbox_params

    params = load_inbox_params(root)
    return params.model_copy(update={"folder": inbox}) if inbox else params


@task(task_run_name="pick up new batches")
def ingest_new_batches(root: str, inbox: str | None = None) -> list[dict]:
    """Move the inbox's files into data/stream/ as the next batch_NNN.jsonl (see driftkeel.ops.inbox)."""
    from driftkeel.ops.inbox import ingest

    logger = get_run_logger()
    records = ingest(root, data_dir(root), _inbox_params(root, inbox))
    for r in records:
        if r["status"] == "ingested":
            logger.info("new batch %s <- %s (%d rows, %d restamped)%s", r["path"], r["source"], r["rows"],
                        r["rows_restamped"], " (a killed run's, finished)" if r.get("recovered") else "")
        elif r["status"] == "waiting":
            logger.info("left %s for the next run: %s", r["source"], r["reason"])
        else:
            logger.warning("rejected %s: %s (-> %s)", r["source"], r["reason"], r["moved_to"])
    return records


def hold_inbox(root: str, inbox: str | None = None):
    """The inbox lock for one ingest -> validate -> settle / reject cycle (driftkeel.ops.inbox.inbox_lock)."""
    from driftkeel.ops.inbox import inbox_lock

    return inbox_lock(root, _inbox_params(root, inbox))


def pending_batches(root: str, inbox: str | None = None) -> list[dict]:
    """Every batch ingested and not validated yet: this run's and any a killed run left behind."""
    from driftkeel.ops.inbox import pending_batches as pending

    return pending(root, _inbox_params(root, inbox))


def settle_batches(root: str, records: list[dict], inbox: str | None = None) -> None:
    """The batches passed validate: no longer pending (never rejected later)."""
    from driftkeel.ops.inbox import settle

    settle(root, records, _inbox_params(root, inbox))


@task(task_run_name="reject batches that failed validate")
def reject_batches(root: str, records: list[dict], reason: str, inbox: str | None = None) -> list[dict]:
    from driftkeel.ops.inbox import reject

    out = reject(root, records, _inbox_params(root, inbox), reason)
    for r in out:
        get_run_logger().warning("batch %s taken out of the stream -> %s", r["path"], r["moved_to"])
    return out


@task(task_run_name="restore the data version")
def validate_rejected_the_data(exc) -> bool:
    """Whether a failed `dvc repro validate` (StageFailed) judged the data bad (the stage's own exit
    message), as opposed to an infrastructure failure: a busy DVC lock, a timeout, the tracking-store
    pre-flight, a crash. Only then are the new batches rejected; otherwise they stay pending."""
    from driftkeel.validation.validate import DATA_REJECTED

    return not exc.transient and exc.returncode != -9 and DATA_REJECTED in (exc.tail or "")


def _decision_marker(root: str) -> Path:
    return Path(root) / ".dvc" / "tmp" / "driftkeel-acted-decision"     # git-ignored by DVC


def decision_key(decision: dict) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(decision, sort_keys=True, default=str).encode()).hexdigest()


def decision_already_acted(root: str, decision: dict) -> bool:
    """True when this very decision (same decision.json content) was acted on by an earlier run: a run
    with no new data must not send the same alarm and start the same retraining again."""
    marker = _decision_marker(root)
    return marker.exists() and marker.read_text().strip() == decision_key(decision)


def mark_decision_acted(root: str, decision: dict) -> None:
    marker = _decision_marker(root)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(decision_key(decision) + "\n")


def restore_data_version(root: str, before: str | None) -> dict:
    """data.dvc back to the data without the rejected batches (DVC re-recorded them at repro)."""
    from driftkeel.ops.inbox import restore_version

    return restore_version(root, data_dir(root), before)


def current_data_version(root: str) -> str | None:
    """The md5 in `<data_dir>.dvc` now (None without one)."""
    from driftkeel.ops.inbox import data_hash

    return data_hash(Path(root), data_dir(root))


@task(task_run_name="version data (dvc add, git commit, dvc push)")
def version_new_data(root: str, ingested: list[dict], before: str | None) -> dict | None:
    """After validate passed: `dvc add data`, commit data.dvc, push to the default remote - when a batch
    was ingested or data/ changed otherwise (a file dropped straight into data/stream)."""
    from driftkeel.ops.inbox import git_dirty, load_inbox_params, push_pending, version_data

    logger = get_run_logger()
    params = load_inbox_params(root)
    new = [r for r in ingested if r.get("status") == "ingested"]
    rel = f"{data_dir(root)}.dvc"  # relative to the root (data/raw.dvc for a data_dir data/raw)
    dvc_file = Path(root) / rel
    if not params.version or (not dvc_file.exists() and not new):
        return None
    # `dvc repro validate` has already re-recorded a changed data/ in data.dvc (DVC does that for a
    # stage's data-source dependency); a dirty data.dvc is the other sign of new data
    if not new and current_data_version(root) == before and not git_dirty(root, rel):
        # nothing new, but an earlier run's push may have failed after its commit: retry it
        pushed = push_pending(root, data_dir(root), params)
        if pushed is None:
            return None
        logger.info("data version %s pushed to %s (an earlier push had failed)", before, pushed)
        return {"data_version_before": before, "data_version": before, "changed": False, "committed": None,
                "pushed": pushed, "retried_push": True}
    names = ", ".join(Path(r["path"]).name for r in new) or "files added to the stream"
    out = version_data(root, data_dir(root), params, f"data: {names} (driftkeel monitoring)", before=before)
    logger.info("data version %s -> %s (commit %s, pushed to %s)", out["data_version_before"],
                out["data_version"], out["committed"], out["pushed"])
    return out


@task(task_run_name="link the drift report")
def link_drift_report(root: str, outputs: str, decision: dict) -> str | None:
    """A Prefect link artifact to outputs/drift/report.html and a markdown summary of the decision."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact

    report = Path(root).resolve() / outputs / "drift" / "report.html"
    if not report.exists():
        return None
    uri = report.as_uri()
    action = decision.get("action")
    create_link_artifact(key="drift-report", link=uri, link_text=f"drift report ({action})",
                         description=f"batch {decision.get('current_batch')}: {action}")
    reasons = "\n".join(f"- {r}" for r in decision.get("reasons") or [])
    create_markdown_artifact(key="drift-decision", markdown=(
        f"# Drift decision: `{action}`\n\ncurrent batch: {decision.get('current_batch')}; "
        f"signals: {', '.join(decision.get('signals') or []) or 'none'}\n\n{reasons}\n\n"
        f"[report.html]({uri})\n"), description="outputs/drift/decision.json")
    return uri


@task(task_run_name="emit drift event")
def emit_drift_event(root: str, decision: dict, report_uri: str | None) -> str | None:
    """A Prefect event `driftkeel.drift.<action>` (automations can react to it, see docs/operations.md)."""
    from prefect.events import emit_event

    name = _project_name(root)
    ev = emit_event(event=f"driftkeel.drift.{decision.get('action')}",
                    resource={"prefect.resource.id": f"driftkeel.project.{name}",
                              "prefect.resource.name": name},
                    payload={"root": str(root), "action": decision.get("action"),
                             "signals": decision.get("signals") or [],
                             "current_batch": decision.get("current_batch"), "report": report_uri})
    return str(ev.id) if ev is not None else None


@task(task_run_name="notify {event}")
def send_notification(root: str, event: str, summary: str, details: dict | None = None,
                      links: dict | None = None) -> dict:
    from driftkeel.notify import notify_project

    out = notify_project(root, event, summary, details=details, links=links)
    logger = get_run_logger()
    if out.get("sent"):
        logger.info("notification %s sent: %s", event, [d["channel"] for d in out["deliveries"]])
    elif out.get("errors"):
        logger.warning("notification %s failed: %s", event, out["errors"])
    else:
        logger.info("notification %s not sent: %s", event, out.get("skipped"))
    return {k: v for k, v in out.items() if k != "message"}


def _flow_root(flow, flow_run) -> str | None:
    """The run's `root`: its parameter, else the flow's default (a deployment run's parameters are {}),
    else DRIFTKEEL_ROOT."""
    import inspect
    import os

    root = (flow_run.parameters or {}).get("root")
    if not root:
        try:
            param = inspect.signature(flow.fn).parameters.get("root")
        except (AttributeError, TypeError, ValueError):
            param = None
        if param is not None and param.default is not inspect.Parameter.empty:
            root = param.default
    return root or os.environ.get("DRIFTKEEL_ROOT")


def notify_flow_failed(flow, flow_run, state) -> None:
    """on_failure and on_crashed hook of both flows (Prefect runs on_failure for Failed states only: a
    SIGTERM or a stopped worker gives Crashed): a `flow-failed` notification (never raises)."""
    from driftkeel.notify import notify_project

    root = _flow_root(flow, flow_run)
    if not root:
        return
    try:
        how = "crashed" if str(getattr(state.type, "value", state.type)).upper() == "CRASHED" else "failed"
        notify_project(root, "flow-failed", f"{flow.name} run {flow_run.name} {how}: {state.message}"[:1000],
                       details={"flow_run_id": str(flow_run.id), "state": state.type.value})
    except Exception:  # the hook must not mask the flow's own failure
        pass
