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
if str(REPO) not in sys.path:  # `flows` lives at the repo root, beside src/
    sys.path.insert(0, str(REPO))
if str(REPO / "tests" / "ops") not in sys.path:  # http_receiver.py (a local webhook receiver)
    sys.path.insert(0, str(REPO / "tests" / "ops"))

DVC = str(Path(sys.executable).with_name("dvc"))
MONITOR = ("validate", "aggregate", "drift")
RETRAIN = ("select", "mix", "sft", "reward", "ppo", "evaluate", "register")


def _writer(stage: str, body: str) -> str:
    return ("python -c \"import json, pathlib; p = pathlib.Path('outputs/%s'); "
            "p.mkdir(parents=True, exist_ok=True); %s\"" % (stage, body))


def dvc_yaml() -> dict:
    """Stages named like the real ones; drift copies the decision from decision_in.json (a dep), so a
    test picks the decision by editing that file; register writes a registry.json like the real one."""
    stages, prev = {}, None
    for s in MONITOR + RETRAIN:
        if s == "drift":
            body = ("(p / 'decision.json').write_text(pathlib.Path('decision_in.json').read_text()); "
                    "(p / 'report.html').write_text('<html><body>drift report</body></html>')")
            outs = ["outputs/drift/decision.json", "outputs/drift/report.html"]
        elif s == "register":
            body = ("(p / 'registry.json').write_text(pathlib.Path('registry_in.json').read_text())")
            outs = ["outputs/register/registry.json"]
        else:
            body = f"(p / 'done.txt').write_text('{s}')"
            outs = [f"outputs/{s}/done.txt"]
        deps = {"drift": ["decision_in.json"], "register": ["registry_in.json"]}.get(s, [])
        if prev:
            deps.append(prev)
        stages[s] = {"cmd": _writer(s, body), "deps": deps, "outs": outs}
        prev = outs[0]
    stages["boom"] = {"cmd": "python -c \"import sys, pathlib; "
                             "open('attempts.txt', 'a').write('x'); "
                             "sys.stderr.write('boom: row 7 has no prompt\\n'); sys.exit(3)\"",
                      "outs": ["outputs/boom/never.txt"]}
    stages["slow"] = {"cmd": "python -c \"import time, pathlib; time.sleep(6); "
                             "pathlib.Path('outputs/slow').mkdir(parents=True, exist_ok=True); "
                             "pathlib.Path('outputs/slow/done.txt').write_text('x')\"",
                      "outs": ["outputs/slow/done.txt"]}
    return {"stages": stages}


def set_decision(root: Path, action: str) -> None:
    (root / "decision_in.json").write_text(
        '{"action": "%s", "reasons": ["test decision %s"], "level": 0, "current_batch": 3, '
        '"signals": %s, "n_alarms": %d}' % (action, action, '[]' if action == "none" else '["prompt"]',
                                            0 if action == "none" else 1))


def set_gate(root: Path, passed: bool) -> None:
    """What the trivial register stage writes to outputs/register/registry.json."""
    (root / "registry_in.json").write_text(json.dumps({
        "promoted": passed, "gate_passed": passed,
        "decision": "promoted to champion" if passed else "not promoted: gate failed: reward accuracy 0.51 < 0.7",
        "models": {"policy": {"version": 1}, "reward": {"version": 1}}}))


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


def set_ops(root: Path, **ops) -> None:
    """Write an `ops:` section into the project's params.yaml (committed, like a user's edit)."""
    params = yaml.safe_load((root / "params.yaml").read_text()) or {}
    params["ops"] = ops
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


# Tests import these helpers as `flows_conftest`: a bare `from conftest import ...` resolves to whichever
# conftest.py pytest imported last (tests/, tests/reliability/, ...), not necessarily this one.
sys.modules["flows_conftest"] = sys.modules[__name__]
