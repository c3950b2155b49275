"""Review fixes for the MLflow spool replay and the tracking-store pre-flight.

Spool: a replay killed at *any* point (after any store call or manifest write), then re-run, logs every
spooled metric exactly once and leaves exactly one run per spool entry, on MLflow's file store
(which keeps duplicate metric values) and on a SQLite store. Real stores in a temporary folder; the
"kill" is a BaseException raised right after the n-th side effect, as a SIGKILL would leave things.

Pre-flight: an http tracking URI with ``user:password@`` is checked against a real server on
127.0.0.1 (credentials sent as Basic auth, never shown); ``databricks``-style values are left to MLflow
(no local folder created)."""
from __future__ import annotations

import base64
import http.server
import json
import os
import threading
from pathlib import Path

import pytest

from driftkeel.config import CommonParams, MlflowParams
from driftkeel.registry import spool
from driftkeel.registry.tracking import TrackingUnavailable, check_store

T0 = 1_700_000_000_000
ENTRY_TAG = "driftkeel.spool_entry"


class Killed(BaseException):
    """The process died (not an Exception: nothing in the replay may catch it)."""


class _Killer:
    """Counts side effects (store writes through the client, manifest writes) and dies right after the
    `at`-th one; `at=None` never dies."""

    MUTATING = {"create_experiment", "create_run", "set_tag", "log_batch", "set_terminated",
                "log_artifact", "log_artifacts"}

    def __init__(self, at):
        self.at, self.n = at, 0

    def tick(self):
        self.n += 1
        if self.at is not None and self.n == self.at:
            raise Killed(f"killed after side effect {self.n}")


class _Client:
    def __init__(self, client, killer):
        self._c, self._k = client, killer

    def __getattr__(self, name):
        attr = getattr(self._c, name)
        if name not in _Killer.MUTATING:
            return attr

        def call(*a, **kw):
            out = attr(*a, **kw)
            self._k.tick()
            return out
        return call


@pytest.fixture
def mlflow_env():
    import mlflow

    saved = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3.17 refuses file:/mlruns without it
    yield
    mlflow.set_tracking_uri(None)
    for k in [k for k in os.environ if k.startswith("MLFLOW_")]:
        if k not in saved:
            del os.environ[k]
    os.environ.update(saved)


def _spooled_ops(artifact: Path) -> list[dict]:
    """What a stage logged after the store went away (the first two ops reached the store)."""
    return [
        {"op": "params", "params": {"lr": "0.1"}, "done": True},
        {"op": "metrics", "metrics": {"loss": 0.9}, "step": 0, "timestamp": T0, "done": True},
        {"op": "metrics", "metrics": {"loss": 0.5, "acc": 0.6}, "step": 1, "timestamp": T0 + 1, "done": False},
        {"op": "metrics", "metrics": {"loss": 0.4, "acc": 0.7}, "step": 2, "timestamp": T0 + 2, "done": False},
        {"op": "params", "params": {"note": "late"}, "done": False},
        {"op": "metrics", "metrics": {"loss": 0.4}, "step": 3, "timestamp": T0 + 3, "done": False},
        {"op": "tags", "tags": {"phase": "done"}, "done": False},
        {"op": "artifact", "path": str(artifact), "artifact_path": "out", "done": False},
        {"op": "metrics", "metrics": {"eval": 0.75}, "step": 0, "timestamp": T0 + 4, "done": False},
    ]


EXPECTED_HISTORY = {"loss": [(0, T0, 0.9), (1, T0 + 1, 0.5), (2, T0 + 2, 0.4), (3, T0 + 3, 0.4)],
                    "acc": [(1, T0 + 1, 0.6), (2, T0 + 2, 0.7)], "eval": [(0, T0 + 4, 0.75)]}


def _store(tmp_path: Path, kind: str) -> str:
    return (tmp_path / "mlruns").as_uri() if kind == "file" else f"sqlite:///{tmp_path / 'mlflow.db'}"


def _setup(root: Path, case: str, uri: str, with_run: bool):
    """A project with one spool entry; `with_run`: the stage's run is still in the store and holds the
    ops marked done, else the stage never got a run (replay creates one)."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    root.mkdir(parents=True)
    (root / "params.yaml").write_text("common:\n  seed: 0\n", encoding="utf-8")
    common = CommonParams(mlflow=MlflowParams(tracking_uri=uri, experiment=f"exp-{case}",
                                              artifact_location=(root / "mlartifacts").as_uri()))
    art = root / "report.txt"
    art.write_text("report v1\n", encoding="utf-8")
    ops = _spooled_ops(art)
    client = MlflowClient(tracking_uri=uri)
    run_id = None
    key = f"key-{case}"
    tags = {"driftkeel.pipeline_key": key}
    if with_run:
        exp = client.create_experiment(common.mlflow.experiment, artifact_location=common.mlflow.artifact_location)
        run_id = client.create_run(exp, run_name="sft", tags={**tags, "driftkeel.kind": "stage"}).info.run_id
        client.log_batch(run_id, params=[Param("lr", "0.1")], metrics=[Metric("loss", 0.9, T0, 0)])
    sp = spool.spool_root(root, common)
    tmp = spool.new_entry(sp, "sft")
    entry = spool.finish_entry(tmp, {
        "format": spool.FORMAT, "stage": "sft", "run_id": run_id, "parent_run_id": None, "replay_run_id": None,
        "ops": ops, "experiment": common.mlflow.experiment, "pipeline_key": key, "tags": tags,
        "run_tags": {**tags, "driftkeel.kind": "stage", "driftkeel.stage": "sft"},
        "start_time": T0 - 10, "end_time": T0 + 10, "status": "FINISHED", "error": "down"})
    return common, entry, run_id


def _check(root: Path, common, entry_name: str, uri: str, original_run_id):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    assert spool.entries(spool.spool_root(root, common)) == []
    exp = client.get_experiment_by_name(common.mlflow.experiment)
    runs = client.search_runs([exp.experiment_id], f"tags.`{ENTRY_TAG}` = '{entry_name}'")
    assert len(runs) == 1, [(r.info.run_id, r.info.status) for r in runs]
    [run] = runs
    if original_run_id:
        assert run.info.run_id == original_run_id
    stage_runs = client.search_runs([exp.experiment_id], "tags.`driftkeel.kind` = 'stage'")
    assert [r.info.run_id for r in stage_runs] == [run.info.run_id]
    assert run.info.status == "FINISHED"
    for key, want in EXPECTED_HISTORY.items():
        got = sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert got == want, key
    assert run.data.params == {"lr": "0.1", "note": "late"}
    assert run.data.tags["phase"] == "done" and run.data.tags[ENTRY_TAG] == entry_name
    assert [a.path for a in client.list_artifacts(run.info.run_id, "out")] == ["out/report.txt"]
    if not original_run_id:
        parents = client.search_runs([exp.experiment_id], "tags.`driftkeel.kind` = 'pipeline'")
        assert len(parents) == 1 and run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id


def _killed_replay(monkeypatch, client, entry, root, common, at) -> bool:
    """Replay `entry` dying after side effect `at`; True when it got that far (False: it finished)."""
    killer = _Killer(at)
    real_write = spool._write_manifest

    def write(e, m):
        real_write(e, m)
        killer.tick()

    monkeypatch.setattr(spool, "_write_manifest", write)
    try:
        spool.replay_entry(_Client(client, killer), entry, root, common, say=lambda msg: None)
        return False
    except Killed:
        return True
    finally:
        monkeypatch.setattr(spool, "_write_manifest", real_write)


@pytest.mark.parametrize("with_run", [True, False], ids=["original-run", "new-run"])
@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_replay_killed_at_any_point_then_rerun_logs_everything_exactly_once(tmp_path, monkeypatch, mlflow_env,
                                                                             kind, with_run):
    """Defects 1 and 2: no duplicate metric values, no second (orphan) run for one spool entry."""
    from mlflow.tracking import MlflowClient

    uri = _store(tmp_path, kind)
    os.environ["MLFLOW_TRACKING_URI"] = uri  # sync() configures MLflow from it
    at = 1
    while True:
        root = tmp_path / f"p{at}"
        common, entry, run_id = _setup(root, f"{kind}-{with_run}-{at}", uri, with_run)
        if not _killed_replay(monkeypatch, MlflowClient(tracking_uri=uri), entry, root, common, at):
            break  # `at` is past the last side effect: every kill point was covered
        res = spool.sync(root, common, say=lambda msg: None)  # the re-run
        assert res["failed"] is None and not res["broken"], res
        _check(root, common, entry.name, uri, run_id)
        at += 1
    assert at > 10  # the loop really went through the replay's steps
    _check(root, common, entry.name, uri, run_id)  # the uninterrupted replay is right too


def test_orphan_run_of_an_earlier_replay_is_reused_even_when_its_ops_were_marked_done(tmp_path, mlflow_env):
    """The stage's original run was deleted: the replay creates a new run and is killed before saving
    its id; the manifest on disk still says the first ops are done (in the deleted run)."""
    from mlflow.tracking import MlflowClient

    uri = _store(tmp_path, "file")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    root = tmp_path / "p"
    common, entry, run_id = _setup(root, "deleted", uri, with_run=True)
    client = MlflowClient(tracking_uri=uri)
    client.delete_run(run_id)
    manifest = json.loads((entry / spool.MANIFEST).read_text())
    exp_id = client.get_experiment_by_name(common.mlflow.experiment).experiment_id
    orphan = client.create_run(exp_id, run_name="sft", tags={**manifest["run_tags"], ENTRY_TAG: entry.name})
    res = spool.sync(root, common, say=lambda msg: None)
    assert res["replayed"] == [(entry.name, orphan.info.run_id)]
    got = client.get_run(orphan.info.run_id)
    assert sorted((m.step, m.value) for m in client.get_metric_history(orphan.info.run_id, "loss")) == [
        (0, 0.9), (1, 0.5), (2, 0.4), (3, 0.4)]
    assert got.data.params == {"lr": "0.1", "note": "late"} and got.info.status == "FINISHED"


# ---- pre-flight of the tracking store -------------------------------------------------------------

class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list = []
    status = 200

    def do_GET(self):  # noqa: N802
        type(self).seen.append((self.path, self.headers.get("Authorization"), self.headers.get("Host")))
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass


@pytest.fixture
def health_server():
    handler = type("H", (_Recorder,), {"seen": [], "status": 200})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv, handler
    srv.shutdown()
    srv.server_close()


def _http_common(uri: str) -> CommonParams:
    return CommonParams(mlflow=MlflowParams(tracking_uri=uri, artifact_location="s3://bucket/x"))


def test_preflight_http_with_credentials_in_the_uri(tmp_path, monkeypatch, health_server, capsys, caplog):
    """Defect 3: userinfo is not part of the host; it goes as Basic auth (percent-decoded)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    srv, handler = health_server
    port = srv.server_address[1]
    uri = f"http://alice:s3cr%40t@127.0.0.1:{port}/"
    assert check_store(tmp_path, _http_common(uri), timeout_s=5) == uri
    [(path, auth, host)] = handler.seen
    assert path == "/health" and host == f"127.0.0.1:{port}"
    assert auth == "Basic " + base64.b64encode(b"alice:s3cr@t").decode()
    handler.seen.clear()
    check_store(tmp_path, _http_common(f"http://127.0.0.1:{port}"), timeout_s=5)
    assert handler.seen == [("/health", None, f"127.0.0.1:{port}")]  # no credentials: no header
    handler.status = 503
    with pytest.raises(TrackingUnavailable, match="server error 503") as err:
        check_store(tmp_path, _http_common(f"http://alice:hunter2@127.0.0.1:{port}"), timeout_s=5)
    out = capsys.readouterr()
    for text in (str(err.value), out.out, out.err, caplog.text):
        assert "hunter2" not in text and "s3cr" not in text


@pytest.mark.parametrize("value", ["databricks", "databricks-uc", "uc"])
def test_preflight_leaves_databricks_to_mlflow(tmp_path, monkeypatch, value):
    """Defect 4: no local folder named after a store MLflow resolves itself."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", value)
    common = CommonParams(mlflow=MlflowParams(artifact_location="dbfs:/x"))
    assert check_store(tmp_path, common) == value
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["mlruns", "./runs/mlruns", "file:{tmp}/fs/mlruns", "{tmp}/abs/mlruns"])
def test_preflight_still_checks_local_folders(tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    value = value.format(tmp=tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", value)
    common = CommonParams(mlflow=MlflowParams(artifact_location="dbfs:/x"))
    check_store(tmp_path, common)
    folder = Path(value.removeprefix("file:"))
    assert (folder if folder.is_absolute() else tmp_path / folder).is_dir()
    (tmp_path / "ro").mkdir(mode=0o500)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(tmp_path / "ro"))
    if os.geteuid() != 0:
        with pytest.raises(TrackingUnavailable, match="not writable"):
            check_store(tmp_path, common)
