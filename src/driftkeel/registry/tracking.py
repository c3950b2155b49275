"""MLflow tracking: one parent run per pipeline run, one nested run per stage.

The parent run is found (or created) by a *pipeline key*: `DRIFTKEEL_RUN_GROUP` when set (the run
script and the Prefect flows set it), else a hash of the git commit, the DVC hash of `data/` and
params.yaml, so all stages of one `dvc repro` on one code+data+params version share a parent.
Every run is tagged with the git commit and the DVC hash of `data/`.

:func:`check_store` is the pre-flight every stage runs before any work (``pipelines/_stage.py``): an
unreachable or unwritable tracking store fails the stage in seconds with a clear message, never after
training. Params logged to MLflow pass through :func:`driftkeel.security.redact` (secrets never reach
the store).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit, unquote

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


def check_store(root: Path, common: CommonParams, timeout_s: float | None = None) -> str:
    """Raise TrackingUnavailable unless the tracking store answers (HTTP) or can be written (SQLite,
    local folders); returns the URI. Cheap: one request or one SQLite query. Other schemes (postgres,
    databricks, ...) are left to MLflow's own first call."""
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
            url = uri.rstrip("/") + "/health"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (http(s) only)
                    resp.read(64)
            except urllib.error.HTTPError as exc:
                if exc.code >= 500:
                    raise TrackingUnavailable(f"server error {exc.code} from {strip_url_password(url)}") from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise TrackingUnavailable(f"cannot connect ({reason})") from None
        elif scheme in ("", "file"):
            _check_writable_dir(Path(unquote(urlsplit(uri).path)), "tracking folder")
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


@dataclass
class StageRun:
    run_id: str
    parent_run_id: str
    tags: dict

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        import mlflow

        clean = {k: float(v) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if clean:
            mlflow.log_metrics(clean, step=step)

    def log_params(self, params: dict) -> None:
        import mlflow

        from driftkeel.security import redact

        mlflow.log_params({k: str(v)[:500] for k, v in redact(dict(params)).items()})

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        import mlflow

        p = Path(path)
        if p.is_dir():
            mlflow.log_artifacts(str(p), artifact_path=artifact_path)
        elif p.exists():
            mlflow.log_artifact(str(p), artifact_path=artifact_path)


def _flatten(prefix: str, obj, out: dict) -> None:
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump()
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = obj


@contextlib.contextmanager
def stage_run(stage: str, root: Path, common: CommonParams, params=None) -> Iterator[StageRun]:
    """Open the nested MLflow run of `stage` under this pipeline run's parent."""
    import mlflow
    from mlflow.tracking import MlflowClient

    root = Path(root)
    exp_id = configure(root, common)
    commit = git_commit(root)
    data_hash = data_version(root, common.data_dir)
    key = pipeline_key(root, commit, data_hash)
    tags = {"driftkeel.git_commit": commit, "driftkeel.data_version": data_hash,
            "driftkeel.pipeline_key": key, "mlflow.source.git.commit": commit}
    client = MlflowClient()
    found = client.search_runs([exp_id], filter_string=f"tags.`driftkeel.pipeline_key` = '{key}' "
                               "and tags.`driftkeel.kind` = 'pipeline'", max_results=1)
    if found:
        parent_id = found[0].info.run_id
    else:
        parent = client.create_run(exp_id, run_name=f"pipeline-{key[:8]}",
                                   tags={**tags, "driftkeel.kind": "pipeline"})
        parent_id = parent.info.run_id
        client.set_terminated(parent_id, "FINISHED")
    with mlflow.start_run(run_name=stage, parent_run_id=parent_id,
                          tags={**tags, "driftkeel.kind": "stage", "driftkeel.stage": stage}) as run:
        sr = StageRun(run_id=run.info.run_id, parent_run_id=parent_id, tags=tags)
        if params is not None:
            flat: dict = {}
            _flatten(stage, params, flat)
            _flatten("common", common, flat)
            sr.log_params(flat)
        yield sr
