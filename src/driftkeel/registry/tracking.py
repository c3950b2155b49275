"""MLflow tracking: one parent run per pipeline run, one nested run per stage.

The parent run is found (or created) by a *pipeline key*: `DRIFTKEEL_RUN_GROUP` when set (the run
script and the Prefect flows set it), else a hash of the git commit, the DVC hash of `data/` and
params.yaml, so all stages of one `dvc repro` on one code+data+params version share a parent.
Every run is tagged with the git commit and the DVC hash of `data/`.

:func:`check_store` is the pre-flight every stage runs before any work (``pipelines/_stage.py``): an
unreachable or unwritable tracking store fails the stage in seconds with a clear message, never after
training. Params logged to MLflow pass through :func:`driftkeel.security.redact` (secrets never reach
the store).

If the store goes down *after* the pre-flight (mid-stage, while the results are logged),
:func:`stage_run` does not fail the stage: its logging goes to a local spool
(``<outputs_dir>/.mlflow-spool/``, :mod:`driftkeel.registry.spool`) with a WARNING, the stage finishes
and DVC records it; ``driftkeel mlflow-sync`` (or the next stage that reaches the store) replays the
spool into the same run structure. The ``register`` stage never spools: it fails with
:class:`TrackingUnavailable`.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlsplit, urlunsplit

import yaml

from driftkeel.config import CommonParams

_DEFAULT_RETRY_ENV = {
    # fail in seconds, not minutes, when a tracking server is down (see STACK.md)
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


def tracking_uri(root: Path, common: CommonParams) -> str:
    """MLFLOW_TRACKING_URI, else params, else a SQLite store in the project."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    if common.mlflow.tracking_uri:
        return common.mlflow.tracking_uri
    return f"sqlite:///{(Path(root).resolve() / 'mlflow.db').as_posix()}"


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking store cannot be reached or written."""


def _sqlite_path(uri: str) -> Path:
    return Path(unquote(uri[len("sqlite:///"):].split("?", 1)[0]))


def _check_writable_dir(path: Path, what: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".driftkeel-write-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise TrackingUnavailable(f"{what} {path} is not writable ({exc.strerror})") from None


# scheme-less values MLflow resolves to a store of its own, not to a local folder (mlflow.tracking.registry)
_MLFLOW_NAMED_STORES = frozenset({"databricks", "databricks-uc", "uc"})


def _local_store_path(uri: str) -> Path | None:
    """The folder of a local file store: ``file:`` URIs and plain paths, which MLflow itself opens as a
    file store (``mlruns``, ``./mlruns``, ``/abs/mlruns``, ``C:\\mlruns``); None for anything else
    (``databricks``, ``databricks-uc``, ``uc``, other schemes), which MLflow resolves itself."""
    if uri in _MLFLOW_NAMED_STORES:
        return None
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if parts.scheme == "" or (len(parts.scheme) == 1 and parts.scheme.isalpha()):  # "" or a Windows drive
        return Path(unquote(uri))  # as MLflow's FileStore reads it (no ~ expansion)
    return None


def _health_request(uri: str) -> urllib.request.Request:
    """GET <uri>/health without the ``user:password@`` of `uri` in the URL (urllib would take it for
    part of the host); the credentials go as Basic auth, percent-decoded as requests (MLflow) does,
    and are not forwarded on a redirect."""
    import base64

    parts = urlsplit(uri)
    userinfo, _, host = parts.netloc.rpartition("@")
    url = urlunsplit(parts._replace(netloc=host)).rstrip("/") + "/health"
    request = urllib.request.Request(url)
    if userinfo:
        user, _, password = userinfo.partition(":")
        token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode("utf-8")).decode("ascii")
        request.add_unredirected_header("Authorization", f"Basic {token}")
    return request


def check_store(root: Path, common: CommonParams, timeout_s: float | None = None) -> str:
    """Raise TrackingUnavailable unless the tracking store answers (HTTP) or can be written (SQLite,
    local folders); returns the URI. Cheap: one request or one SQLite query. Other schemes (postgres,
    databricks, ...) are left to MLflow's own first call. Credentials in an http(s) URI
    (``http://user:pw@host``) are sent as Basic auth, as MLflow sends them, and never shown."""
    from driftkeel.security import strip_url_password

    uri = tracking_uri(root, common)
    timeout = float(os.environ.get("DRIFTKEEL_MLFLOW_CHECK_TIMEOUT_S", timeout_s or 10))
    scheme = urlsplit(uri).scheme
    try:
        if scheme == "sqlite":
            db = _sqlite_path(uri)
            if not db.parent.is_dir():
                raise TrackingUnavailable(f"folder {db.parent} of the SQLite store does not exist")
            _check_writable_dir(db.parent, "folder of the SQLite store")
            if db.exists():
                con = sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=timeout)
                try:
                    con.execute("PRAGMA schema_version").fetchone()
                finally:
                    con.close()
        elif scheme in ("http", "https"):
            request = _health_request(uri)
            url = request.full_url  # no credentials in it
            try:
                with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 (http(s) only)
                    resp.read(64)
            except urllib.error.HTTPError as exc:
                if exc.code >= 500:
                    raise TrackingUnavailable(f"server error {exc.code} from {strip_url_password(url)}") from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise TrackingUnavailable(f"cannot connect ({reason})") from None
        else:
            local = _local_store_path(uri)
            if local is not None:
                _check_writable_dir(local, "tracking folder")
        art = artifact_location(root, common)
        if urlsplit(art).scheme == "file":
            _check_writable_dir(Path(unquote(urlsplit(art).path)), "artifact folder")
    except TrackingUnavailable as exc:
        raise TrackingUnavailable(
            f"MLflow tracking store unavailable at {strip_url_password(uri)}: {exc}. Nothing was run. "
            "Start or fix the store (MLFLOW_TRACKING_URI or common.mlflow.tracking_uri in params.yaml), "
            "then re-run.") from None
    except sqlite3.Error as exc:
        raise TrackingUnavailable(f"MLflow tracking store unavailable at {uri}: SQLite error ({exc}). "
                                  "Nothing was run. Fix or move the database file, then re-run.") from None
    return uri


def artifact_location(root: Path, common: CommonParams) -> str:
    if common.mlflow.artifact_location:
        return common.mlflow.artifact_location
    return (Path(root).resolve() / "mlartifacts").as_uri()


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10)
        commit = out.stdout.strip() if out.returncode == 0 else "unknown"
        # dvc.lock is the pipeline's own record, rewritten while `dvc repro` runs: not a code change
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)dvc.lock"], cwd=root, capture_output=True, text=True, timeout=10)
        if commit != "unknown" and dirty.returncode == 0 and dirty.stdout.strip():
            commit += "-dirty"
        return commit
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def data_version(root: Path, data_dir: str = "data") -> str:
    """The DVC hash of `data/` as recorded in `data.dvc` (``md5`` of the directory)."""
    dvc_file = Path(root) / f"{data_dir}.dvc"
    if not dvc_file.exists():
        return "untracked"
    meta = yaml.safe_load(dvc_file.read_text(encoding="utf-8")) or {}
    outs = meta.get("outs") or [{}]
    return str(outs[0].get("md5", "unknown"))


def pipeline_key(root: Path, commit: str, data_hash: str) -> str:
    env = os.environ.get("DRIFTKEEL_RUN_GROUP")
    if env:
        return env
    params = (Path(root) / "params.yaml")
    h = hashlib.sha256()
    h.update(commit.encode())
    h.update(data_hash.encode())
    if params.exists():
        h.update(params.read_bytes())
    return h.hexdigest()[:16]


def configure(root: Path, common: CommonParams):
    """Point MLflow at the project store and return the experiment id."""
    for k, v in _DEFAULT_RETRY_ENV.items():
        os.environ.setdefault(k, v)
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(root, common))
    from mlflow.exceptions import MlflowException

    exp = mlflow.get_experiment_by_name(common.mlflow.experiment)
    if exp is None:
        try:
            exp_id = mlflow.create_experiment(common.mlflow.experiment,
                                              artifact_location=artifact_location(root, common))
        except MlflowException:  # another process created it first
            exp = mlflow.get_experiment_by_name(common.mlflow.experiment)
            if exp is None:
                raise
            exp_id = exp.experiment_id
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


# stages that must not spool: register needs the registry itself, so an outage fails it clearly
NO_SPOOL_STAGES = frozenset({"register"})
# MlflowException codes that mean "this request is wrong", not "the store is unavailable"
_CLIENT_ERROR_CODES = frozenset({"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "INVALID_STATE",
                                 "MALFORMED_REQUEST", "RESOURCE_CONFLICT", "BAD_REQUEST",
                                 "RESOURCE_DOES_NOT_EXIST", "PERMISSION_DENIED", "UNAUTHENTICATED",
                                 "CUSTOMER_UNAUTHORIZED"})


def is_store_error(exc: BaseException) -> bool:
    """True for errors meaning the tracking store cannot be reached or written (connection refused,
    timeouts, 5xx, SQLite/SQLAlchemy operational errors, file-system errors of the artifact store), not
    for mistakes in the request (changing a logged param, a bad metric)."""
    import sqlite3 as _sqlite3

    from mlflow.exceptions import MlflowException

    if isinstance(exc, (TrackingUnavailable, OSError, _sqlite3.Error)):
        return True
    with contextlib.suppress(ImportError):
        import requests
        import sqlalchemy.exc

        if isinstance(exc, requests.exceptions.RequestException):
            return True
        if isinstance(exc, sqlalchemy.exc.SQLAlchemyError):
            return not isinstance(exc, sqlalchemy.exc.IntegrityError)
    if isinstance(exc, MlflowException):
        cause = exc.__cause__  # the SQL store wraps e.g. "file is not a database" as BAD_REQUEST
        if cause is not None and cause is not exc and is_store_error(cause):
            return True
        if exc.error_code in _CLIENT_ERROR_CODES:
            return False
        if exc.error_code == "INTERNAL_ERROR":
            # MLflow's default code: an outage only when it came over the wire (a server's error
            # response, or the REST client's "API request to ... failed" after its retries), not
            # when MLflow's own code refused something locally (a logging or registration error)
            from mlflow.exceptions import RestException

            return isinstance(exc, RestException) or str(exc.message).startswith("API request")
        return True
    return False


def safe_error_text(exc: BaseException, limit: int = 500) -> str:
    """One line about `exc` with URL passwords and secret environment values masked."""
    from driftkeel.security import redact_text

    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return redact_text(text)[:limit]


def find_or_create_parent(client, exp_id: str, key: str, tags: dict) -> str:
    """The pipeline's parent run (tag ``driftkeel.pipeline_key`` = `key`), created when missing."""
    found = client.search_runs([exp_id], filter_string=f"tags.`driftkeel.pipeline_key` = '{key}' "
                               "and tags.`driftkeel.kind` = 'pipeline'", max_results=1)
    if found:
        return found[0].info.run_id
    parent = client.create_run(exp_id, run_name=f"pipeline-{key[:8]}", tags={**tags, "driftkeel.kind": "pipeline"})
    client.set_terminated(parent.info.run_id, "FINISHED")
    return parent.info.run_id


@dataclass
class StageRun:
    """The stage's MLflow run. Every logging call is also journaled; when the store fails with a store
    error (see :func:`is_store_error`) the run goes *offline*: that call and all later ones are kept
    (artifacts copied) for the spool that :func:`stage_run` writes at the end, unless the stage may not
    spool (``register``), which then fails with :class:`TrackingUnavailable`."""
    run_id: str | None
    parent_run_id: str | None
    tags: dict
    stage: str = ""
    spool_dir: Path | None = None  # None: spooling not allowed
    offline_reason: str | None = None
    ops: list = field(default_factory=list)
    _entry: Path | None = None

    @property
    def offline(self) -> bool:
        return self.offline_reason is not None

    def go_offline(self, exc: BaseException) -> None:
        if self.spool_dir is None:
            raise TrackingUnavailable(
                f"MLflow tracking store became unavailable during stage {self.stage!r} ({safe_error_text(exc)}). "
                "This stage needs the store and does not spool; fix the store, then re-run it.") from exc
        if self.offline_reason is None:
            from driftkeel.registry import spool

            self.offline_reason = safe_error_text(exc)
            self._entry = spool.new_entry(self.spool_dir, self.stage)

    def _record(self, op: dict, call) -> None:
        """Journal `op`; run `call` against the store unless offline; on a store error go offline."""
        self.ops.append(op)
        if not self.offline:
            try:
                call()
                op["done"] = True
                return
            except Exception as exc:  # noqa: BLE001
                if not is_store_error(exc):
                    raise
                self.go_offline(exc)
        if op["op"] == "artifact":
            from driftkeel.registry import spool

            op["copy"] = spool.copy_artifact(self._entry, len(self.ops) - 1, Path(op["path"]))
            if op["copy"] is None:
                op["fingerprint"] = spool.fingerprint(Path(op["path"]))

    def _client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient()

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        from mlflow.entities import Metric

        clean = {k: float(v) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if not clean:
            return
        op = {"op": "metrics", "metrics": clean, "step": int(step or 0), "timestamp": _now_ms(), "done": False}
        self._record(op, lambda: self._client().log_batch(
            self.run_id, metrics=[Metric(k, v, op["timestamp"], op["step"]) for k, v in clean.items()]))

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        from driftkeel.security import redact

        clean = {k: str(v)[:500] for k, v in redact(dict(params)).items()}
        op = {"op": "params", "params": clean, "done": False}
        self._record(op, lambda: self._client().log_batch(self.run_id, params=[Param(k, v) for k, v in clean.items()]))

    def set_tags(self, tags: dict) -> None:
        from mlflow.entities import RunTag

        from driftkeel.security import redact

        clean = {k: str(v)[:5000] for k, v in redact(dict(tags)).items()}
        op = {"op": "tags", "tags": clean, "done": False}
        self._record(op, lambda: self._client().log_batch(self.run_id, tags=[RunTag(k, v) for k, v in clean.items()]))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        p = Path(path)
        if not p.exists():
            return
        op = {"op": "artifact", "path": str(p.resolve()), "artifact_path": artifact_path, "done": False}
        if p.is_dir():
            self._record(op, lambda: self._client().log_artifacts(self.run_id, str(p), artifact_path))
        else:
            self._record(op, lambda: self._client().log_artifact(self.run_id, str(p), artifact_path))

    def write_spool(self, manifest: dict) -> Path:
        from driftkeel.registry import spool

        entry = spool.finish_entry(self._entry, {**manifest, "format": spool.FORMAT, "stage": self.stage,
                                                 "run_id": self.run_id, "parent_run_id": self.parent_run_id,
                                                 "error": self.offline_reason, "ops": self.ops})
        self._entry = None
        return entry

    def discard_spool(self) -> None:
        from driftkeel.registry import spool

        spool.discard_entry(self._entry)
        self._entry = None


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def _flatten(prefix: str, obj, out: dict) -> None:
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump()
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = obj


def _spool_warning(stage: str, sr: StageRun, entry: Path) -> str:
    n = {kind: sum(1 for op in sr.ops if op["op"] == kind and not op.get("done"))
         for kind in ("params", "metrics", "artifact")}
    return (f"WARNING: {stage}: the MLflow tracking store became unavailable while logging ({sr.offline_reason}). "
            f"The stage itself finished and keeps its outputs; its MLflow logging ({n['params']} param batch(es), "
            f"{n['metrics']} metric batch(es), {n['artifact']} artifact(s) not yet in the store) was saved to "
            f"{entry}. Replay it with `driftkeel mlflow-sync` once the store is back (the next stage that "
            "reaches the store also replays it).")


@contextlib.contextmanager
def stage_run(stage: str, root: Path, common: CommonParams, params=None) -> Iterator[StageRun]:
    """Open the nested MLflow run of `stage` under this pipeline run's parent.

    If the store becomes unavailable after the pre-flight (while the block logs, or when the run is
    opened or closed), the block still runs to the end and its logging goes to the local spool
    (``<outputs_dir>/.mlflow-spool``, see :mod:`driftkeel.registry.spool`) with a WARNING; the stage
    succeeds. Stages in ``NO_SPOOL_STAGES`` (register) fail with :class:`TrackingUnavailable` instead.
    When the store answers, a non-empty spool is replayed first (best effort)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from driftkeel.registry import spool
    from driftkeel.security import redact, strip_url_password

    root = Path(root)
    may_spool = stage not in NO_SPOOL_STAGES
    commit = git_commit(root)
    data_hash = data_version(root, common.data_dir)
    key = pipeline_key(root, commit, data_hash)
    tags = {"driftkeel.git_commit": commit, "driftkeel.data_version": data_hash,
            "driftkeel.pipeline_key": key, "mlflow.source.git.commit": commit}
    run_tags = {**tags, "driftkeel.kind": "stage", "driftkeel.stage": stage}
    sr = StageRun(run_id=None, parent_run_id=None, tags=tags, stage=stage,
                  spool_dir=spool.spool_root(root, common) if may_spool else None)
    start_ms, started = _now_ms(), False
    try:
        exp_id = configure(root, common)
        spool.drain_best_effort(root, common)
        parent_id = find_or_create_parent(MlflowClient(), exp_id, key, tags)
        run = mlflow.start_run(run_name=stage, parent_run_id=parent_id, tags=run_tags)
        started = True
        sr.run_id, sr.parent_run_id = run.info.run_id, parent_id
    except Exception as exc:  # noqa: BLE001
        if not is_store_error(exc):
            raise
        sr.go_offline(exc)  # raises TrackingUnavailable for register
    try:
        if params is not None:
            flat: dict = {}
            _flatten(stage, params, flat)
            _flatten("common", common, flat)
            sr.log_params(flat)
        yield sr
    except BaseException as exc:
        sr.discard_spool()  # the stage failed: DVC re-runs it, nothing to keep
        if started:
            with contextlib.suppress(Exception):
                mlflow.end_run("FAILED")
        if not may_spool and isinstance(exc, Exception) and not isinstance(exc, TrackingUnavailable) \
                and is_store_error(exc):
            raise TrackingUnavailable(
                f"MLflow tracking store became unavailable during stage {stage!r} ({safe_error_text(exc)}). "
                "This stage needs the store and does not spool; fix the store, then re-run it.") from exc
        raise
    if started:
        try:
            mlflow.end_run("FINISHED")  # pops the active run even when the store does not answer
        except Exception as exc:  # noqa: BLE001
            if not is_store_error(exc):
                raise
            sr.go_offline(exc)  # raises TrackingUnavailable for register
    if sr.offline:
        entry = sr.write_spool({
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "tracking_uri": strip_url_password(tracking_uri(root, common)),
            "experiment": common.mlflow.experiment, "pipeline_key": key,
            "tags": redact(tags), "run_tags": redact(run_tags),
            "start_time": start_ms, "end_time": _now_ms(), "status": "FINISHED", "replay_run_id": None})
        print(_spool_warning(stage, sr, entry), file=sys.stderr, flush=True)
