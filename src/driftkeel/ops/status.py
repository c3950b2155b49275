"""`driftkeel status`: where the project stands, from files and the MLflow registry (no pipeline run).

- data:    the DVC version of data/ (md5 in data.dvc), files and batches in the stream, whether data.dvc
           is committed, the git commit;
- models:  champion / challenger version per registered model (MLflow registry, `registry.lifecycle`);
- drift:   the last decision (outputs/drift/decision.json): action, batch, signals, when, report path;
- queues:  labeling queue (outputs/select/queue.jsonl), expert-review queue
           (outputs/aggregate/review_queue.jsonl), files waiting / rejected in the inbox;
- prefect: flow runs of the driftkeel flows by state, only with `prefect=True` and a reachable
           PREFECT_API_URL.
"""
from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from driftkeel.config import CommonParams, ConfigError, InboxParams, parse_section, read_params
from driftkeel.security import redact_text


def _lines(path: Path) -> int | None:
    if not path.exists():
        return None
    from driftkeel.validation.reader import iter_lines

    return sum(1 for _, line in iter_lines(path) if line.strip())


def _mtime(path: Path) -> str | None:
    if not path.exists():
        return None
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")


def _git(root: Path, *args: str) -> str | None:
    try:
        res = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def data_status(root: Path, common: CommonParams) -> dict:
    import yaml

    from driftkeel.data.schemas import stream_files

    rel = f"{common.data_dir}.dvc"  # relative to the root, where git runs (data/raw.dvc for data/raw)
    dvc_file = root / rel
    meta = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs", [{}])[0] if dvc_file.exists() else {}
    files = stream_files(root / common.data_dir)
    commit = _git(root, "rev-parse", "--short", "HEAD")
    return {"version": meta.get("md5"), "nfiles": meta.get("nfiles"), "size": meta.get("size"),
            "stream_batches": len(files), "last_batch": files[-1].name if files else None,
            "dvc_file_committed": (None if commit is None or not dvc_file.exists()
                                   else _git(root, "status", "--porcelain", "--", rel) == ""),
            "git_commit": commit}


def model_status(root: Path, common: CommonParams) -> dict:
    from driftkeel.registry import lifecycle

    try:
        full = lifecycle.status(root, common)
    except Exception as exc:  # a broken/unreachable store must not hide the rest of the status
        return {"error": redact_text(f"{type(exc).__name__}: {exc}")[:300]}   # may quote the store's URL
    out = {}
    for name, m in full["models"].items():
        out[name] = {"registered": m["registered"], "latest_version": m["latest_version"],
                     "champion": (m["champion"] or {}).get("version"),
                     "challenger": (m["challenger"] or {}).get("version"),
                     "last_event": {k: (m["last_event"] or {}).get(k) for k in ("action", "alias", "to", "at")}
                     if m["last_event"] else None}
    return {"tracking_uri": redact_text(full["tracking_uri"]), **out}


def drift_status(root: Path, common: CommonParams) -> dict | None:
    path = root / common.outputs_dir / "drift" / "decision.json"
    if not path.exists():
        return None
    d = json.loads(path.read_text(encoding="utf-8"))
    report = root / common.outputs_dir / "drift" / "report.html"
    return {"action": d.get("action"), "current_batch": d.get("current_batch"), "signals": d.get("signals"),
            "n_alarms": d.get("n_alarms"), "decided_at": _mtime(path),
            "report": str(report.relative_to(root)) if report.exists() else None}


def queue_status(root: Path, common: CommonParams, inbox: str, pattern: str = "*.jsonl") -> dict:
    from driftkeel.ops.inbox import REJECTED, pending

    out_dir = root / common.outputs_dir
    inbox_dir = root / inbox
    rejected = inbox_dir / REJECTED
    return {"labeling": _lines(out_dir / "select" / "queue.jsonl"),
            "review": _lines(out_dir / "aggregate" / "review_queue.jsonl"),
            "inbox_pending": len(pending(inbox_dir, pattern)),
            "inbox_rejected": len([p for p in rejected.glob("*") if not p.name.endswith(".reason.txt")])
            if rejected.is_dir() else 0}


def prefect_status(timeout_s: float = 5.0) -> dict:
    """Flow runs of the driftkeel flows by state on the configured Prefect API (PREFECT_API_URL)."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return {"api_url": None, "note": "PREFECT_API_URL not set"}
    try:
        r = httpx.post(f"{url}/flow_runs/filter", json={"flows": {"name": {"like_": "driftkeel-"}},
                                                        "limit": 200, "sort": "EXPECTED_START_TIME_DESC"},
                       timeout=timeout_s)
        r.raise_for_status()
    except Exception as exc:
        return {"api_url": redact_text(url), "error": redact_text(f"{type(exc).__name__}: {exc}")[:300]}
    counts: dict[str, int] = {}
    for run in r.json():
        name = (run.get("state") or {}).get("name") or "unknown"
        counts[name] = counts.get(name, 0) + 1
    return {"api_url": redact_text(url), "flow_runs_by_state": dict(sorted(counts.items()))}


def project_status(root: str | Path, prefect: bool = False) -> dict:
    root = Path(root)
    path = root / "params.yaml"
    raw = read_params(path) if path.exists() else {}
    common = parse_section("common", raw.get("common"))
    try:
        inbox = parse_section("ops", raw.get("ops")).inbox
    except ConfigError:
        inbox = InboxParams()
    out = {"project": root.resolve().name, "root": str(root.resolve()),
           "data": data_status(root, common), "models": model_status(root, common),
           "drift": drift_status(root, common),
           "queues": queue_status(root, common, inbox.folder, inbox.pattern)}
    if prefect:
        out["prefect"] = prefect_status()
    return out


def render(status: dict) -> str:
    """The status as a few aligned lines."""
    d, q, dr = status["data"], status["queues"], status["drift"]
    lines = [f"project   {status['project']}  ({status['root']})",
             f"data      version {d['version'] or 'untracked'}  {d['stream_batches']} batches"
             f" (last {d['last_batch'] or '-'}), {d['nfiles'] or 0} files"
             + ("" if d["dvc_file_committed"] is None else
                ("  data.dvc committed" if d["dvc_file_committed"] else "  data.dvc NOT committed"))
             + (f"  git {d['git_commit']}" if d["git_commit"] else "")]
    models = status["models"]
    if "error" in models:
        lines.append(f"models    registry unavailable: {models['error']}")
    for name, m in models.items():
        if name in ("tracking_uri", "error"):
            continue
        if not m["registered"]:
            lines.append(f"model     {name}: not registered yet")
            continue
        lines.append(f"model     {name}: champion v{m['champion'] or '-'}  challenger v{m['challenger'] or '-'}"
                     f"  latest v{m['latest_version']}")
    if dr:
        lines.append(f"drift     {dr['action']} on batch {dr['current_batch']}"
                     f" (signals: {', '.join(dr['signals'] or []) or 'none'}) at {dr['decided_at']}"
                     + (f"  report {dr['report']}" if dr["report"] else ""))
    else:
        lines.append("drift     no decision yet (run the drift stage)")
    lines.append(f"queues    labeling {q['labeling'] if q['labeling'] is not None else '-'}"
                 f"  review {q['review'] if q['review'] is not None else '-'}"
                 f"  inbox {q['inbox_pending']} waiting, {q['inbox_rejected']} rejected")
    if "prefect" in status:
        p = status["prefect"]
        detail = p.get("flow_runs_by_state") or p.get("error") or p.get("note")
        lines.append(f"prefect   {p.get('api_url')}: {detail}")
    return "\n".join(lines)
