"""`driftkeel status` on a real project: git + DVC-tracked data, a real MLflow SQLite registry."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from driftkeel.cli import app

DVC = str(Path(sys.executable).with_name("dvc"))


@pytest.fixture
def project(tmp_path, git_env):
    root = tmp_path / "proj"
    (root / "data" / "stream").mkdir(parents=True)
    for b in range(3):
        (root / "data" / "stream" / f"batch_{b:03d}.jsonl").write_text('{"batch": %d}\n' % b)
    (root / "params.yaml").write_text("common:\n  outputs_dir: outputs\nops:\n  inbox:\n    folder: incoming\n")
    for cmd in (["git", "init", "-q"], [DVC, "init", "-q"], [DVC, "add", "-q", "data"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=root, env=git_env, check=True, capture_output=True)
    out = root / "outputs"
    (out / "drift").mkdir(parents=True)
    (out / "drift" / "decision.json").write_text(json.dumps(
        {"action": "retrain-reward", "current_batch": 2, "signals": ["label"], "n_alarms": 1}))
    (out / "drift" / "report.html").write_text("<html></html>")
    (out / "select").mkdir()
    (out / "select" / "queue.jsonl").write_text("{}\n" * 7)
    (out / "aggregate").mkdir()
    (out / "aggregate" / "review_queue.jsonl").write_text("{}\n{}\n\n")
    (root / "incoming" / "rejected").mkdir(parents=True)
    (root / "incoming" / "new.jsonl").write_text("{}\n")
    (root / "incoming" / "rejected" / "x_bad.jsonl").write_text("x")
    (root / "incoming" / "rejected" / "x_bad.jsonl.reason.txt").write_text("why")
    return root


def test_status_before_any_model_is_registered(project):
    res = CliRunner().invoke(app, ["status", "--root", str(project), "--json"])
    assert res.exit_code == 0, res.output
    st = json.loads(res.output)
    md5 = subprocess.run(["git", "show", "HEAD:data.dvc"], cwd=project, capture_output=True, text=True).stdout
    assert st["data"]["version"] in md5 and st["data"]["version"].endswith(".dir")
    assert st["data"]["stream_batches"] == 3 and st["data"]["last_batch"] == "batch_002.jsonl"
    assert st["data"]["dvc_file_committed"] is True
    assert st["models"]["driftkeel-policy"] == {"registered": False, "latest_version": None, "champion": None,
                                                "challenger": None, "last_event": None}
    assert not (project / "mlflow.db").exists()  # status never creates the store
    assert st["drift"]["action"] == "retrain-reward" and st["drift"]["current_batch"] == 2
    assert st["drift"]["report"] == "outputs/drift/report.html"
    assert st["queues"] == {"labeling": 7, "review": 2, "inbox_pending": 1, "inbox_rejected": 1}


def test_status_shows_champion_and_challenger_from_the_registry(project):
    from mlflow import MlflowClient

    uri = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for name in ("driftkeel-policy", "driftkeel-reward"):
        client.create_registered_model(name)
        for _ in range(3):
            client.create_model_version(name, source=str(project / "model"))
        client.set_registered_model_alias(name, "champion", "2")
        client.set_registered_model_alias(name, "challenger", "3")
    (project / "data" / "stream" / "batch_003.jsonl").write_text('{"batch": 3}\n')
    subprocess.run([DVC, "add", "-q", "data"], cwd=project, check=True)  # new data, not committed yet
    res = CliRunner().invoke(app, ["status", "--root", str(project)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith(f"project   {project.name}")
    assert "4 batches (last batch_003.jsonl)" in lines[1] and "data.dvc NOT committed" in lines[1]
    assert "model     driftkeel-policy: champion v2  challenger v3  latest v3" in lines, res.output
    assert "model     driftkeel-reward: champion v2  challenger v3  latest v3" in lines
    assert any(x.startswith("drift     retrain-reward on batch 2 (signals: label)") for x in lines)
    assert lines[-1] == "queues    labeling 7  review 2  inbox 1 waiting, 1 rejected"


def test_rollback_reads_the_store_of_root_not_of_the_current_directory(tmp_path, monkeypatch):
    """`driftkeel rollback --root P` run from elsewhere: it used to read ./params.yaml and ./mlflow.db."""
    from driftkeel.registry.lifecycle import RegistryError

    project, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "params.yaml").write_text((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(elsewhere)
    res = CliRunner().invoke(app, ["rollback", "--model", "driftkeel-reward", "--reason", "test",
                                   "--root", str(project)])
    assert isinstance(res.exception, RegistryError), res.exception      # the project's store: nothing to roll back
    assert "no previous champion" in str(res.exception)
    assert (project / "mlflow.db").exists() and not list(elsewhere.iterdir())
