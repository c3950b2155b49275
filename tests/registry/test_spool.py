"""MLflow store outage *during* a stage (RELIABILITY.md row 23): the stage's logging goes to the local
spool, the stage succeeds, `driftkeel mlflow-sync` (or the next stage) replays it into the store.

A real MLflow tracking server (MLflow's own Flask app over a SQLite store) runs in-process on
127.0.0.1; the outage is real: the server is shut down (connection refused) between two logging calls,
then started again on the same port."""
from __future__ import annotations

import os

import socket
import threading
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from driftkeel.config import CommonParams
from driftkeel.registry import spool
from driftkeel.registry.tracking import TrackingUnavailable, stage_run

SECRET = "sk-fake-spool-secret-4242"


class Server:
    """MLflow's tracking server app on a fixed loopback port that can go down and come back."""

    def __init__(self, db_uri: str, artifacts: Path):
        from mlflow.server import handlers

        handlers._tracking_store = None
        handlers._get_tracking_store(db_uri, artifacts.as_uri())  # created once, before any client call
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._srv = None
        self.answer_503 = False

    def _wsgi(self, environ, start_response):
        from mlflow.server import app

        if self.answer_503:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"upstream database unavailable"]
        return app(environ, start_response)

    def outage(self, kind: str) -> None:
        """`refused`: the server process is gone; `503`: it answers 503 to everything."""
        if kind == "503":
            self.answer_503 = True
        else:
            self.stop()

    def start(self) -> None:
        from werkzeug.serving import make_server

        self.answer_503 = False
        if self._srv is not None:
            return
        self._srv = make_server("127.0.0.1", self.port, self._wsgi, threaded=True)
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._srv is not None:
            self._srv.shutdown()
            self._srv.server_close()
            self._srv = None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from mlflow.server import handlers

    saved = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    base = tmp_path_factory.mktemp("mlflow-server")
    srv = Server(f"sqlite:///{base / 'mlflow.db'}", base / "served-artifacts")
    srv.start()
    yield srv
    srv.stop()
    handlers._tracking_store = None
    # the in-process server sets MLFLOW_TRACKING_URI (its store) and MLFLOW_EXPERIMENT_ID in os.environ:
    # leave the environment as it was for the tests that run after this module in the same process
    for k in [k for k in os.environ if k.startswith("MLFLOW_")]:
        if k not in saved:
            del os.environ[k]
    os.environ.update(saved)


@pytest.fixture
def project(tmp_path, monkeypatch, server):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{server.port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    monkeypatch.setenv("DRIFTKEEL_FAKE_API_TOKEN", SECRET)
    monkeypatch.setenv("DRIFTKEEL_RUN_GROUP", f"spool-{tmp_path.name}")
    (tmp_path / "params.yaml").write_text("common:\n  seed: 0\n", encoding="utf-8")
    common = CommonParams(mlflow={"artifact_location": (tmp_path / "mlartifacts").as_uri(),
                                  "experiment": f"spool-{tmp_path.name}"})
    yield tmp_path, common
    server.start()  # up again for the next test, whatever happened
    mlflow.set_tracking_uri(None)


def _sync(root: Path) -> object:
    app = typer.Typer()
    app.command("mlflow-sync")(spool.mlflow_sync_command)
    app.command("noop")(lambda: None)  # keep "mlflow-sync" a sub-command
    return CliRunner().invoke(app, ["mlflow-sync", "--root", str(root)])


def _spool_bytes(spool_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in spool_dir.rglob("*") if p.is_file())


def _write_outputs(root: Path) -> Path:
    out = root / "outputs" / "reward"
    (out / "plots").mkdir(parents=True)
    (out / "metrics.json").write_text('{"eval_accuracy": 0.75}\n')
    (out / "plots" / "loss.csv").write_text("step,loss\n1,0.5\n2,0.4\n")
    return out


@pytest.mark.parametrize("outage", ["refused", "503"])
def test_outage_mid_stage_spools_then_sync_logs_into_the_same_run(project, server, capsys, outage):
    from mlflow.tracking import MlflowClient

    root, common = project
    with stage_run("reward", root, common, {"lr": 0.1, "api_token": SECRET}) as run:
        run.log_metrics({"warmup": 1.0})  # the store answers
        out = _write_outputs(root)  # "an hour of training"
        server.outage(outage)  # the store goes down before the results are logged
        run.log_metrics({"eval_accuracy": 0.75})
        for step, loss in ((1, 0.5), (2, 0.4)):
            run.log_metrics({"loss": loss}, step=step)
        run.log_params({"reward.note": f"key {SECRET}"})
        run.log_artifact(out / "metrics.json")
        run.log_artifact(out / "plots", "plots")
    import mlflow

    assert mlflow.active_run() is None
    err = capsys.readouterr().err
    assert "WARNING: reward:" in err and "driftkeel mlflow-sync" in err and ".mlflow-spool" in err
    spool_dir = root / "outputs" / spool.SPOOL_DIR
    [entry] = spool.entries(spool_dir)
    manifest = (entry / spool.MANIFEST).read_text()
    assert run.run_id in manifest and '"eval_accuracy"' in manifest and '"loss"' in manifest
    assert list((entry / "artifacts").rglob("loss.csv")) and list((entry / "artifacts").rglob("metrics.json"))
    assert SECRET.encode() not in _spool_bytes(spool_dir)
    (out / "metrics.json").write_text("overwritten later\n")  # the spool holds the file as it was logged

    res = _sync(root)  # store still down: entry kept, clear message
    assert res.exit_code == 1 and "could not be logged" in res.output and spool.entries(spool_dir) == [entry]

    server.start()
    res = _sync(root)
    assert res.exit_code == 0, res.output
    assert spool.entries(spool_dir) == [] and not [p for p in spool_dir.iterdir() if p.is_dir()]
    client = MlflowClient()
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.data.metrics == {"warmup": 1.0, "eval_accuracy": 0.75, "loss": 0.4}
    assert [m.value for m in client.get_metric_history(run.run_id, "loss")] == [0.5, 0.4]
    assert got.data.params["reward.lr"] == "0.1" and got.data.params["reward.api_token"] == "***"
    assert got.data.params["reward.note"] == "key ***"
    assert got.data.tags["driftkeel.stage"] == "reward" and got.data.tags["mlflow.parentRunId"] == run.parent_run_id
    arts = {a.path for a in client.list_artifacts(run.run_id)} | {
        a.path for a in client.list_artifacts(run.run_id, "plots")}
    assert {"metrics.json", "plots/loss.csv"} <= arts
    local = Path(client.download_artifacts(run.run_id, "metrics.json", str(root / "dl")))
    assert local.read_text() == '{"eval_accuracy": 0.75}\n'

    res = _sync(root)  # a second sync is a no-op
    assert res.exit_code == 0 and "nothing to replay" in res.output
    assert [m.value for m in client.get_metric_history(run.run_id, "loss")] == [0.5, 0.4]


def test_store_error_classification():
    import sqlite3

    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE

    from driftkeel.registry.tracking import is_store_error

    assert is_store_error(MlflowException("database is locked", error_code=TEMPORARILY_UNAVAILABLE))
    assert is_store_error(MlflowException("API request failed with exception ConnectionRefused"))
    assert is_store_error(ConnectionRefusedError()) and is_store_error(sqlite3.OperationalError("locked"))
    assert not is_store_error(MlflowException("Changing param values is not allowed",
                                              error_code=INVALID_PARAMETER_VALUE))
    assert not is_store_error(ValueError("a bug"))
    # request errors: a missing version is no outage, nor is MLflow refusing something locally
    # (INTERNAL_ERROR is MLflow's default code); over the wire INTERNAL_ERROR still is one
    from mlflow.exceptions import RestException

    assert not is_store_error(MlflowException("Model Version (name=m, version=7) not found",
                                              error_code="RESOURCE_DOES_NOT_EXIST"))
    assert not is_store_error(MlflowException("Unable to find a logged_model with artifact_path"))
    assert is_store_error(RestException({"error_code": "INTERNAL_ERROR", "message": "db down"}))
    assert is_store_error(MlflowException("API request to http://127.0.0.1:5000/api/2.0/mlflow/runs/get "
                                          "failed with timeout exception"))
    wrapped = MlflowException("not found", error_code="RESOURCE_DOES_NOT_EXIST")
    wrapped.__cause__ = sqlite3.OperationalError("disk I/O error")
    assert is_store_error(wrapped)


def test_store_down_at_open_then_next_stage_drains_the_spool(project, server, capsys):
    from mlflow.tracking import MlflowClient

    root, common = project
    with stage_run("sft", root, common, {"epochs": 1}):  # creates the experiment and the parent run
        pass
    server.stop()
    try:
        with stage_run("mix", root, common, {"replay": 0.2}) as run:
            assert run.offline and run.run_id is None
            run.log_metrics({"n_train": 12})
    finally:
        server.start()
    assert "WARNING: mix:" in capsys.readouterr().err
    spool_dir = root / "outputs" / spool.SPOOL_DIR
    assert len(spool.entries(spool_dir)) == 1

    with stage_run("ppo", root, common) as nxt:  # the store is back: the spool drains first
        nxt.log_metrics({"mean_kl": 0.01})
    assert spool.entries(spool_dir) == []
    client = MlflowClient()
    exp = client.get_experiment_by_name(common.mlflow.experiment)
    runs = {r.data.tags["driftkeel.stage"]: r for r in client.search_runs(
        [exp.experiment_id], "tags.`driftkeel.kind` = 'stage'")}
    assert set(runs) == {"sft", "mix", "ppo"}
    parents = {r.data.tags["mlflow.parentRunId"] for r in runs.values()}
    assert parents == {nxt.parent_run_id}
    mix = runs["mix"]
    assert mix.data.metrics == {"n_train": 12.0} and mix.data.params["mix.replay"] == "0.2"
    assert mix.info.status == "FINISHED" and mix.data.tags["driftkeel.spool_entry"].startswith("mix-")
    assert mix.data.tags["driftkeel.pipeline_key"] == runs["sft"].data.tags["driftkeel.pipeline_key"]
    assert mix.info.run_name == "mix"


def test_interrupted_sync_resumes_without_duplicates(project, server, monkeypatch):
    from mlflow.tracking import MlflowClient

    root, common = project
    with stage_run("drift", root, common) as run:
        server.stop()
        try:
            for step in range(3):
                run.log_metrics({"p": step / 10}, step=step)
                run.log_params({f"x{step}": step})
        finally:
            server.start()
    spool_dir = root / "outputs" / spool.SPOOL_DIR
    real_apply, calls = spool._apply, []

    def flaky(client, run_id, batch, *a):
        calls.append(batch[0]["op"])
        if len(calls) == 3:
            raise OSError("connection reset (simulated)")
        return real_apply(client, run_id, batch, *a)

    monkeypatch.setattr(spool, "_apply", flaky)
    res = spool.sync(root, common)
    assert res["failed"] and len(spool.entries(spool_dir)) == 1
    monkeypatch.setattr(spool, "_apply", real_apply)
    (spool_dir / "damaged-entry").mkdir()
    (spool_dir / "damaged-entry" / spool.MANIFEST).write_text("{")  # kept and reported, never blocks the rest
    res = spool.sync(root, common)
    assert res["failed"] is None and [name for name, _ in res["broken"]] == ["damaged-entry"]
    assert [e.name for e in spool.entries(spool_dir)] == ["damaged-entry"]
    client = MlflowClient()
    assert [m.value for m in client.get_metric_history(run.run_id, "p")] == [0.0, 0.1, 0.2]
    assert {k: v for k, v in client.get_run(run.run_id).data.params.items()} == {"x0": "0", "x1": "1", "x2": "2"}


def test_register_never_spools_and_other_errors_are_not_swallowed(project, server):
    root, common = project
    spool_dir = root / "outputs" / spool.SPOOL_DIR
    server.stop()
    try:
        with pytest.raises(TrackingUnavailable, match="register"):
            with stage_run("register", root, common):
                raise AssertionError("the block must not run")
    finally:
        server.start()
    with pytest.raises(TrackingUnavailable, match="does not spool"):
        with stage_run("register", root, common) as run:
            server.stop()
            try:
                run.log_metrics({"promoted": 1})
            finally:
                server.start()
    with pytest.raises(ValueError, match="a bug"):
        with stage_run("evaluate", root, common) as run:
            server.stop()
            try:
                run.log_metrics({"x": 1})  # goes offline...
                raise ValueError("a bug")  # ...but the stage fails: nothing to keep
            finally:
                server.start()
    assert spool.entries(spool_dir) == [] and not [p for p in spool_dir.glob(".tmp-*")]


def test_an_artifact_too_big_to_copy_is_not_replayed_once_a_later_run_rewrote_it(project, server, monkeypatch):
    """Artifacts over DRIFTKEEL_SPOOL_MAX_COPY_MB stay where they are and are read at replay. If the next
    `dvc repro` rewrote them first, logging them would attach the newer model to the older run: the
    replay skips them, says so, and tags the run; an unchanged one is logged."""
    from mlflow.tracking import MlflowClient

    root, common = project
    monkeypatch.setattr(spool, "MAX_COPY_BYTES", 10)
    out = root / "outputs" / "reward"
    (out / "model").mkdir(parents=True)
    (out / "model" / "weights.safetensors").write_bytes(b"model of run 1" * 4)
    (out / "tokenizer.json").write_text('{"model": "tokenizer of run 1"}')
    with stage_run("reward", root, common, {"lr": 0.1}) as run:
        server.outage("refused")
        run.log_artifact(out / "model", "model")
        run.log_artifact(out / "tokenizer.json")
    [entry] = spool.entries(root / "outputs" / spool.SPOOL_DIR)
    assert not [f for f in entry.rglob("*") if f.is_file() and f.name != spool.MANIFEST]   # too big: not copied
    (out / "model" / "weights.safetensors").write_bytes(b"model of run 2" * 4)   # the next repro retrained

    server.start()
    res = _sync(root)
    assert res.exit_code == 0, res.output
    assert "changed since the stage logged it" in res.output and "model" in res.output
    client = MlflowClient()
    arts = {a.path for a in client.list_artifacts(run.run_id)}
    assert "tokenizer.json" in arts and "model" not in arts
    assert client.get_run(run.run_id).data.tags["driftkeel.spool_skipped_artifacts"].endswith("model")
