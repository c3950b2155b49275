"""A real tiny DVC project (git + dvc init + trivial python stages) and a Prefect test harness."""
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
            body = ("(p / 'decision.json').write_text(pathlib.Path('decision_in.json').read_text())")
            outs = ["outputs/drift/decision.json"]
        elif s == "register":
            body = ("(p / 'registry.json').write_text(json.dumps({'promoted': True, "
                    "'decision': 'promoted to champion', 'models': {'policy': {'version': 1}, "
                    "'reward': {'version': 1}}}))")
            outs = ["outputs/register/registry.json"]
        else:
            body = f"(p / 'done.txt').write_text('{s}')"
            outs = [f"outputs/{s}/done.txt"]
        deps = ["decision_in.json"] if s == "drift" else []
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
        '{"action": "%s", "reasons": ["test decision %s"], "level": 0}' % (action, action))


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
    for cmd in (["git", "init", "-q"], [DVC, "init", "-q"], ["git", "add", "-A"],
                ["git", "commit", "-q", "-m", "init"]):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
    return root


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
