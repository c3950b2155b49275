"""The guards every stage runs before any work (pipelines/_stage.py), on real processes and stores:
the one-stage-at-a-time project lock (refuse, or wait), the sweep of a killed run's temp files, the
MLflow store pre-flight (SQLite missing/corrupt, HTTP down or failing), and the append-only
quarantine with stable ids."""
from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from driftkeel.config import CommonParams, MlflowParams, ValidateParams
from driftkeel.data.schemas import stream_files
from driftkeel.registry.tracking import TrackingUnavailable, check_store
from driftkeel.validation import read_annotators, read_golden, validate_stream

REPO = Path(__file__).resolve().parents[2]
BAD = REPO / "tests" / "data" / "bad"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(root: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTKEEL_", "MLFLOW_TRACKING", "DVC_"))}
    env.update(DRIFTKEEL_ROOT=str(root), MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
               MLFLOW_DISABLE_TELEMETRY="true", PYTHONPATH=str(REPO), **extra)
    return env


@pytest.fixture()
def tiny_project(tmp_path):
    """params.yaml + the bad-input fixture as data (no DVC, no git): enough for the validate stage."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["validate"]["max_quarantine_fraction"] = 1.0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    shutil.copytree(BAD, tmp_path / "data", ignore=shutil.ignore_patterns("*.py", "*.md"))
    return tmp_path


HOLD = """
import sys, time
sys.argv[0] = sys.argv[1] + '/pipelines/validate.py'   # look like the stage's own process
from pipelines._stage import acquire_project_lock
from pathlib import Path
acquire_project_lock(Path(sys.argv[2]), Path(sys.argv[2]) / 'outputs', 'validate')
print('locked', flush=True)
sys.stdin.readline()   # hold until told to go
"""


def _hold_lock(root: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(REPO), str(root)], cwd=REPO, env=_env(root),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_stage_refuses_then_waits_for_the_lock_and_sweeps_leftovers(tiny_project):
    root = tiny_project
    holder = _hold_lock(root)
    waiting = None
    try:
        refused = subprocess.run([sys.executable, "-m", "pipelines.mix"], cwd=REPO, env=_env(root),
                                 capture_output=True, text=True, timeout=300)
        assert refused.returncode != 0
        assert "mix: not started, the project is busy: another driftkeel stage is running" in refused.stderr
        assert f"pid {holder.pid}" in refused.stderr and "stage 'validate'" in refused.stderr
        assert not (root / "outputs" / "mix").exists()  # nothing written
        # leftovers of a killed run, then a run that waits for the lock
        out = root / "outputs" / "validate"
        out.mkdir(parents=True, exist_ok=True)
        (out / ".clean.parquet.abc123.tmp").write_bytes(b"half")
        (out / ".model.k2j4_x9q").mkdir()
        (out / ".model.old").mkdir()
        (out / ".keep").write_text("not a temp file")
        waiting = subprocess.Popen([sys.executable, "-m", "pipelines.validate"], cwd=REPO,
                                   env=_env(root, DRIFTKEEL_LOCK_WAIT_S="300"), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        first = waiting.stdout.readline()
        assert "validate: the project is busy (stage 'validate'" in first and "waiting up to 300 s" in first
        assert not (out / "metrics.json").exists()  # still waiting
        holder.stdin.write("go\n")
        holder.stdin.flush()
        rest = waiting.communicate(timeout=300)[0]
        assert waiting.returncode == 0, rest[-3000:]
        assert "removed 3 temp file(s)" in rest
        assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".keep"]
        m = json.loads((out / "metrics.json").read_text())
        assert m["rows_in"] == m["rows_clean"] + m["rows_quarantined"] == 49
    finally:
        for proc in (holder, waiting):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def _common(uri: str, artifacts: Path) -> CommonParams:
    return CommonParams(mlflow=MlflowParams(tracking_uri=uri, artifact_location=artifacts.as_uri()))


def test_store_preflight_on_sqlite(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ok = check_store(tmp_path, _common(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "art"))
    assert ok.endswith("mlflow.db") and (tmp_path / "art").is_dir()
    with pytest.raises(TrackingUnavailable, match="does not exist.*Nothing was run"):
        check_store(tmp_path, _common(f"sqlite:///{tmp_path}/missing/dir/mlflow.db", tmp_path / "art"))
    (tmp_path / "bad.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(TrackingUnavailable, match="SQLite error"):
        check_store(tmp_path, _common(f"sqlite:///{tmp_path / 'bad.db'}", tmp_path / "art"))


class _Status503(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_store_preflight_on_http(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    port = _free_port()
    t0 = time.monotonic()
    with pytest.raises(TrackingUnavailable, match=r"cannot connect.*Nothing was run"):
        check_store(tmp_path, _common(f"http://user:hunter2@127.0.0.1:{port}", tmp_path / "art"))
    assert time.monotonic() - t0 < 15
    try:
        check_store(tmp_path, _common(f"http://user:hunter2@127.0.0.1:{port}", tmp_path / "art"))
    except TrackingUnavailable as exc:
        assert "hunter2" not in str(exc) and "user:***@" in str(exc)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Status503)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(TrackingUnavailable, match="server error 503"):
            check_store(tmp_path, _common(f"http://127.0.0.1:{server.server_address[1]}", tmp_path / "art"))
    finally:
        server.shutdown()


def test_quarantine_is_append_only_with_stable_ids():
    """Validating the first k stream files, then k+1: the earlier quarantine is a prefix of the later
    one, record for record (same quarantine_id), and clean rows stay clean."""
    files = stream_files(BAD)
    golden, anns = read_golden(BAD / "golden.jsonl"), read_annotators(BAD / "annotators.jsonl")
    runs = [validate_stream(files[:k], golden, anns, ValidateParams(), relative_to=BAD) for k in (2, 4)]
    small, full = runs
    assert full.quarantine[: len(small.quarantine)] == small.quarantine
    ids = [q["quarantine_id"] for q in full.quarantine]
    assert len(set(ids)) == len(ids) and all(i.startswith("q-") for i in ids)
    assert full.clean.iloc[: len(small.clean)].equals(small.clean)


def test_every_quarantine_reason_is_explained():
    from driftkeel.validation.reader import LINE_REASONS, coerce_reason_names
    from driftkeel.validation.suite import expectation_reasons
    from driftkeel.validation.validate import CROSS_ROW_REASONS, explain

    reasons = [*LINE_REASONS, *coerce_reason_names(), *expectation_reasons(ValidateParams()), *CROSS_ROW_REASONS]
    assert len(reasons) > 60
    for reason in reasons:
        text = explain(reason)
        assert len(text) > 10 and "\n" not in text, reason
