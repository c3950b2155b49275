"""A real tiny DVC project (git + dvc init + trivial python stages) and a Prefect test harness."""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml


os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="driftkeel-prefect-home-")  # never the project's
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

REPO = Path(__file__).resolve().parents[2]
if str(Path(__file__).parent) not in sys.path:  # flowproj.py, prefect_server.py
    sys.path.insert(0, str(Path(__file__).parent))
if str(REPO) not in sys.path:  # `flows` lives at the repo root, beside src/
    sys.path.insert(0, str(REPO))
if str(REPO / "tests" / "ops") not in sys.path:  # http_receiver.py (a local webhook receiver)
    sys.path.insert(0, str(REPO / "tests" / "ops"))
from flowproj import DVC, dvc_yaml, set_decision, set_gate  # noqa: E402


@pytest.fixture
def dvc_project(tmp_path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}
    (root / "params.yaml").write_text("common:\n  outputs_dir: outputs\n")
    (root / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml(), sort_keys=False))
    (root / ".gitignore").write_text("/outputs/\nattempts.txt\n")
    set_decision(root, "none")
    set_gate(root, True)
    for cmd in (["git", "init", "-q"], [DVC, "init", "-q"], ["git", "add", "-A"],
                ["git", "commit", "-q", "-m", "init"]):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
    return root


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real `prefect server start` on 127.0.0.1 (free port, its own PREFECT_HOME and SQLite DB) for
    the whole session; this process and every child it starts talk to it through PREFECT_API_URL."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from prefect_server import local_prefect_server

    home = tmp_path_factory.mktemp("prefect-server")
    with local_prefect_server(home) as server:
        os.environ["PREFECT_API_URL"] = server.api_url
        try:
            with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
                yield server
                from prefect.logging.handlers import APILogWorker

                APILogWorker.drain_all(timeout=5)  # send the last run logs before the server goes away
        finally:
            os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(scope="session")
def prefect_harness(prefect_server):
    """Kept for the older tests: flows run against the same real local server."""
    return prefect_server


@pytest.fixture
def receiver():
    from http_receiver import Receiver

    with Receiver() as r:
        yield r
