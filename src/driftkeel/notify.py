"""Notifications: a drift alarm, a failed promotion gate or a failed flow -> a webhook and/or a Prefect
notification block. Disabled by default (params.yaml `ops.notify`).

    ops:
      notify:
        enabled: true
        webhook_url: http://127.0.0.1:9000/hook        # JSON POST (see `message` below)
        prefect_block: custom-webhook/driftkeel-alerts  # any saved Prefect NotificationBlock
        events: [drift-alarm, gate-failed, flow-failed]

The webhook body is one JSON object: {"event", "project", "summary", "text", "details", "links", "at"}
(`text` makes it readable by Slack / Mattermost incoming webhooks as is). A Prefect block gets
`notify(body=text, subject=summary)`: SlackWebhook, MicrosoftTeamsWebhook, CustomWebhookNotificationBlock,
... whatever was saved on the Prefect server under that name.

Delivery never raises: a notification that cannot be sent is logged and reported in the returned record,
it must not fail the monitoring or retraining run it reports on.
"""
from __future__ import annotations

import json
import logging
import socket
from datetime import datetime, timezone
from pathlib import Path

from driftkeel.config import ConfigError, NotifyParams, OpsParams, read_params, parse_section

log = logging.getLogger("driftkeel.notify")

EVENTS = ("drift-alarm", "gate-failed", "flow-failed")


def load_notify_params(root: str | Path) -> NotifyParams:
    """`ops.notify` of the project's params.yaml (defaults when the file or section is missing)."""
    path = Path(root) / "params.yaml"
    raw = read_params(path) if path.exists() else {}
    ops = raw.get("ops")
    # only ops.notify: a mistake elsewhere in ops (inbox, dask) must not silence the notification of
    # the failure it causes
    notify_raw = ops.get("notify") if isinstance(ops, dict) else ops
    return parse_section("ops", {"notify": notify_raw} if notify_raw is not None else {}).notify


def message(event: str, summary: str, *, project: str = "driftkeel", details: dict | None = None,
            links: dict | None = None) -> dict:
    """The JSON body of a notification."""
    if event not in EVENTS:
        raise ValueError(f"unknown notification event {event!r}; known: {EVENTS}")
    links = {k: str(v) for k, v in (links or {}).items() if v}
    lines = [f"[{project}] {event}: {summary}"]
    lines += [f"- {k}: {v}" for k, v in links.items()]
    return {"event": event, "project": project, "summary": summary, "text": "\n".join(lines),
            "details": details or {}, "links": links,
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": socket.gethostname()}


def send_webhook(url: str, body: dict, timeout_s: float = 10.0) -> dict:
    import httpx

    resp = httpx.post(url, content=json.dumps(body, default=str).encode("utf-8"),
                      headers={"Content-Type": "application/json", "User-Agent": "driftkeel-notify"},
                      timeout=timeout_s)
    resp.raise_for_status()
    return {"channel": "webhook", "url": webhook_origin(url), "status_code": resp.status_code}


def webhook_origin(url: str) -> str:
    """What may be shown of a webhook URL: scheme://host[:port]/*** (its path and query are the secret,
    e.g. Slack's /services/T.../B.../token)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}/***"


def _webhook_masked(text: str, url: str | None) -> str:
    """`text` with the webhook URL (and its path, which error messages may quote alone) masked."""
    from urllib.parse import urlsplit

    if not url:
        return text
    parts = urlsplit(url)
    secrets = [url, url.rstrip("/")] + [x for x in (parts.path + (f"?{parts.query}" if parts.query else ""),
                                                    parts.path) if len(x) > 1]
    for s in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(s, webhook_origin(url) if s.startswith(("http://", "https://")) else "/***")
    return text


def _without_webhook(text: str, url: str | None) -> str:
    """`text` with the webhook URL masked, then secret environment values and URL passwords."""
    from driftkeel.security import redact_text

    return redact_text(_webhook_masked(text, url))


def _masked(body: dict, url: str | None) -> dict:
    """`body` with the webhook URL masked in every string, then (:func:`driftkeel.security.redact`) values
    under secret-looking keys, secret environment values and URL passwords: one pass of each."""
    from driftkeel.security import redact

    def walk(x):
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(walk(v) for v in x)
        return _webhook_masked(x, url) if isinstance(x, str) else x

    return redact(walk(body))


def send_block(block: str, body: dict) -> dict:
    """Load the saved Prefect notification block `<block-type-slug>/<name>` and call its notify()."""
    from prefect.blocks.core import Block

    if "/" not in block:
        raise ConfigError(f"ops.notify.prefect_block: expected '<block-type-slug>/<name>', got {block!r}")
    loaded = Block.load(block)
    if not hasattr(loaded, "notify"):
        raise ConfigError(f"ops.notify.prefect_block: {block!r} is not a notification block")
    result = loaded.notify(body=body["text"], subject=f"[{body['project']}] {body['event']}: {body['summary']}")
    if hasattr(result, "__await__"):  # an async-only block used from sync code
        import asyncio

        asyncio.run(result)
    return {"channel": "prefect_block", "block": block}


def notify(params: NotifyParams, event: str, summary: str, *, project: str = "driftkeel",
           details: dict | None = None, links: dict | None = None) -> dict:
    """Send `event` on every configured channel. Returns {"sent": bool, "deliveries": [...],
    "errors": [...], "message": {...}} (or {"sent": False, "skipped": why})."""
    if not params.enabled:
        return {"sent": False, "skipped": "ops.notify.enabled is false"}
    if event not in params.events:
        return {"sent": False, "skipped": f"{event} not in ops.notify.events"}
    # the summary and details can quote a stage's output (tokens from the environment, URLs with a
    # password, the webhook URL itself): masked before anything is sent or returned
    body = _masked(message(event, summary, project=project, details=details, links=links), params.webhook_url)
    deliveries, errors = [], []
    channels = []
    if params.webhook_url:
        channels.append(("webhook", lambda: send_webhook(params.webhook_url, body, params.timeout_s)))
    if params.prefect_block:
        channels.append(("prefect_block", lambda: send_block(params.prefect_block, body)))
    if not channels:
        return {"sent": False, "skipped": "no channel: set ops.notify.webhook_url or ops.notify.prefect_block",
                "message": body}
    for name, send in channels:
        try:
            deliveries.append(send())
        except Exception as exc:  # a notification must never fail the run it reports on
            text = _without_webhook(f"{type(exc).__name__}: {exc}", params.webhook_url)  # the URL is a secret
            log.warning("notification %s via %s failed: %s", event, name, text)
            errors.append({"channel": name, "error": text[:500]})
    return {"sent": bool(deliveries), "deliveries": deliveries, "errors": errors, "message": body}


def notify_project(root: str | Path, event: str, summary: str, **kw) -> dict:
    """`notify` with the project's `ops.notify` params; a broken params.yaml is reported, not raised."""
    try:
        params = load_notify_params(root)
    except ConfigError as exc:
        log.warning("notifications: %s", exc)
        return {"sent": False, "skipped": str(exc)}
    kw.setdefault("project", Path(root).resolve().name)
    return notify(params, event, summary, **kw)


__all__ = ["EVENTS", "OpsParams", "load_notify_params", "message", "notify", "notify_project",
           "send_block", "send_webhook"]
