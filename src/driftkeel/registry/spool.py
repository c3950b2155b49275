"""A local spool for MLflow logging that could not reach the store, and its replay (`driftkeel mlflow-sync`).

When the tracking store goes down *during* a stage (after the pre-flight, e.g. while logging the results
of an hour of training), :func:`driftkeel.registry.tracking.stage_run` writes what the stage logged to
``<outputs_dir>/.mlflow-spool/<stage>-<UTC time>-<pid>/`` and lets the stage succeed, so its outputs are
recorded by DVC instead of being deleted and recomputed by the next ``dvc repro``. One entry holds:

- ``manifest.json``: the stage, its pipeline key and run tags (the same ones ``stage_run`` sets), the
  run id it had in the store (if any), and the ordered logging operations (params, metrics with their
  step and timestamp, tags, artifacts), each with ``done`` = already in that run;
- ``artifacts/<n>/``: copies of the artifact files logged after the store went away (one over
  ``DRIFTKEEL_SPOOL_MAX_COPY_MB``, 200 by default, stays in place with its size and mtime, and is not
  replayed if a later run rewrote it: the run gets a ``driftkeel.spool_skipped_artifacts`` tag).

Nothing secret is written: params and tags are the redacted values :class:`StageRun` logs, the store URI
and the error text have passwords and secret environment values masked.

:func:`sync` replays every entry into the store: into the stage's original run when the store still
has it (only the operations not done), else into a new nested run under the pipeline's parent run
(found or created by the pipeline key, as ``stage_run`` does). Progress is written back to the manifest
after each batch and metrics keep their original timestamps. A replay killed at any point resumes
without duplicates in every store kind: the run it created is found again by its
``driftkeel.spool_entry`` tag, and metric values already in the run (same key, step, timestamp and
value) are not logged again (MLflow's file store, unlike the SQL stores, would keep both); params,
tags and artifacts are idempotent. An entry is deleted only once fully logged. One sync at a
time (an OS lock on ``.mlflow-spool/.lock``). Every ``stage_run`` tries a sync first (best effort).
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Optional

import typer

SPOOL_DIR = ".mlflow-spool"
MANIFEST = "manifest.json"
FORMAT = 1
MAX_COPY_BYTES = int(os.environ.get("DRIFTKEEL_SPOOL_MAX_COPY_MB", "200")) * 1024 * 1024
_METRICS_PER_BATCH = 1000


def spool_root(root: Path, common) -> Path:
    return Path(root) / common.outputs_dir / SPOOL_DIR


def entries(spool: Path) -> list[Path]:
    """Complete spool entries, oldest first."""
    if not spool.is_dir():
        return []
    return sorted(p for p in spool.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file())


def has_entries(spool: Path) -> bool:
    return bool(entries(spool))


# ---- writing (used by StageRun) ------------------------------------------------------------------

def new_entry(spool: Path, stage: str) -> Path:
    """A temp folder for an entry being written; :func:`finish_entry` renames it into place."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = f"{stage}-{stamp}-{os.getpid()}-{secrets.token_hex(2)}"
    tmp = spool / f".tmp-{os.getpid()}-{name}"
    (tmp / "artifacts").mkdir(parents=True)
    return tmp


def copy_artifact(tmp: Path, index: int, path: Path) -> Optional[str]:
    """Copy a file or folder under ``artifacts/<index>/``; None when it is too big to copy (the
    replay then reads it from its original place if it is still there and unchanged, see
    :func:`fingerprint`)."""
    size = path.stat().st_size if path.is_file() else sum(
        f.stat().st_size for f in path.rglob("*") if f.is_file())
    if size > MAX_COPY_BYTES:
        return None
    dest = tmp / "artifacts" / str(index) / path.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        shutil.copytree(path, dest, symlinks=False)
    else:
        shutil.copy2(path, dest)
    return dest.relative_to(tmp).as_posix()


def fingerprint(path: Path) -> list:
    """[[relative path, size, mtime_ns], ...] of a file or every file of a folder: what an artifact left
    in place looked like when it was logged (a rewrite by a later run changes it; cheap on big models)."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(f for f in path.rglob("*") if f.is_file())
    return [[f.relative_to(path).as_posix() if f != path else "", f.stat().st_size, f.stat().st_mtime_ns]
            for f in files]


def _write_manifest(entry: Path, manifest: dict) -> None:
    from driftkeel.io import atomic_path

    with atomic_path(entry / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")


def finish_entry(tmp: Path, manifest: dict) -> Path:
    final = tmp.parent / tmp.name.split("-", 2)[2]  # drop ".tmp-<pid>-"
    _write_manifest(tmp, manifest)
    os.replace(tmp, final)
    return final


def discard_entry(tmp: Optional[Path]) -> None:
    if tmp is not None and tmp.exists():
        shutil.rmtree(tmp, ignore_errors=True)


# ---- replay --------------------------------------------------------------------------------------

class SpoolBusy(RuntimeError):
    """Another process is replaying the spool."""


@contextlib.contextmanager
def _lock(spool: Path) -> Iterator[None]:
    import fcntl

    spool.mkdir(parents=True, exist_ok=True)
    fh = open(spool / ".lock", "a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SpoolBusy(f"another process is replaying {spool}") from None
        yield
    finally:
        fh.close()  # releases the lock


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(spool: Path) -> list[str]:
    """Remove leftovers: entries whose replay finished but whose deletion was interrupted (no manifest
    or ``.done-``) and temp entries of processes that are gone."""
    removed = []
    if not spool.is_dir():
        return removed
    for p in spool.iterdir():
        if not p.is_dir():
            continue
        stale = p.name.startswith(".done-") or (not p.name.startswith(".") and not (p / MANIFEST).exists())
        if p.name.startswith(".tmp-"):
            pid = p.name.split("-", 2)[1]
            stale = pid.isdigit() and not _pid_alive(int(pid))
        if stale:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
    return removed


def _experiment_id(client, name: str, root: Path, common) -> str:
    from mlflow.exceptions import MlflowException

    from driftkeel.registry.tracking import artifact_location

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(root, common))
    except MlflowException:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _run_exists(client, run_id: Optional[str]) -> bool:
    from mlflow.exceptions import MlflowException

    if not run_id:
        return False
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return run.info.lifecycle_stage == "active"


def _batches(ops: list[dict]) -> Iterator[list[dict]]:
    """Consecutive pending metric operations go in one call (up to 1000 values); others alone."""
    group: list[dict] = []
    n = 0
    for op in ops:
        if op.get("done"):
            continue
        if op["op"] == "metrics":
            if group and n + len(op["metrics"]) > _METRICS_PER_BATCH:
                yield group
                group, n = [], 0
            group.append(op)
            n += len(op["metrics"])
            continue
        if group:
            yield group
            group, n = [], 0
        yield [op]
    if group:
        yield group


class _MetricsInRun:
    """The metric values already in a run, as ``(key, step, timestamp, value)``, read from the store
    the first time a key is replayed (one history call per key and entry), then kept up to date with
    what the replay logs. MLflow's file store keeps every value it is given, duplicates included, so a
    batch that may already be in the run (an interrupted replay, or a call the store applied but did
    not confirm) is filtered through this before it is logged again. A run the replay has just created
    holds nothing yet: ``empty`` skips the reads."""

    def __init__(self, client, run_id: str, empty: bool = False):
        self._client, self._run_id, self._empty = client, run_id, empty
        self._seen: dict[str, set] = {}

    @staticmethod
    def _point(step: int, timestamp: int, value: float) -> tuple:
        return (int(step), int(timestamp), "nan" if value != value else float(value))

    def _known(self, key: str) -> set:
        if key not in self._seen:
            self._seen[key] = set() if self._empty else {
                self._point(m.step, m.timestamp, m.value) for m in self._client.get_metric_history(self._run_id, key)}
        return self._seen[key]

    def missing(self, metrics: list) -> list:
        """`metrics` (mlflow Metric) less those already in the run (and repeats within `metrics`)."""
        out = []
        for m in metrics:
            known, point = self._known(m.key), self._point(m.step, m.timestamp, m.value)
            if point not in known:
                known.add(point)
                out.append(m)
        return out


def _apply(client, run_id: str, batch: list[dict], entry: Path, root: Path, say: Callable,
           in_run: Optional[_MetricsInRun] = None) -> None:
    """Log one batch. Every operation may be re-applied after an interruption: metrics already in the
    run are skipped (`in_run`), params are re-logged with the same value (accepted by every store),
    tags are overwritten with the same value, and an artifact is uploaded again to the same path
    (overwritten, not duplicated)."""
    from mlflow.entities import Metric, Param, RunTag

    first = batch[0]
    if first["op"] == "metrics":
        metrics = [Metric(k, float(v), op["timestamp"], op["step"]) for op in batch for k, v in op["metrics"].items()]
        if in_run is not None:
            metrics = in_run.missing(metrics)
        if metrics:
            client.log_batch(run_id, metrics=metrics)
    elif first["op"] == "params":
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in first["params"].items()])
    elif first["op"] == "tags":
        client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in first["tags"].items()])
    elif first["op"] == "artifact":
        src = entry / first["copy"] if first.get("copy") else Path(first["path"])
        if not first.get("copy") and not src.is_absolute():
            src = root / src
        if not src.exists():
            say(f"mlflow-sync: {entry.name}: artifact {first['path']} is gone, skipped")
        elif not first.get("copy") and first.get("fingerprint") is not None and fingerprint(src) != first["fingerprint"]:
            # left in place (too big to copy) and rewritten since, by a later run: not this run's files
            say(f"mlflow-sync: {entry.name}: artifact {first['path']} changed since the stage logged it "
                "(a later run rewrote it), skipped: logging it would attach that run's files to this one")
            tags = client.get_run(run_id).data.tags
            skipped = [x for x in tags.get("driftkeel.spool_skipped_artifacts", "").split(";") if x]
            if first["path"] not in skipped:
                client.set_tag(run_id, "driftkeel.spool_skipped_artifacts", ";".join(skipped + [first["path"]]))
        elif src.is_dir():
            client.log_artifacts(run_id, str(src), first.get("artifact_path"))
        else:
            client.log_artifact(run_id, str(src), first.get("artifact_path"))
    else:
        raise ValueError(f"{entry / MANIFEST}: unknown operation {first['op']!r}")


def _entry_run(client, exp_id: str, entry: Path) -> Optional[str]:
    """The run an earlier, interrupted replay of `entry` created (tagged ``driftkeel.spool_entry`` at
    creation) before it could save its id in the manifest; None when there is none."""
    found = client.search_runs([exp_id], filter_string=f"tags.`driftkeel.spool_entry` = '{entry.name}'",
                               max_results=1, order_by=["attributes.start_time ASC"])
    return found[0].info.run_id if found else None


def replay_entry(client, entry: Path, root: Path, common, say: Callable = print) -> str:
    """Log one spool entry into the store; returns the run id. The entry is deleted at the end.

    Safe to re-run after an interruption at any point: the run is found again (by the id saved in the
    manifest, else by its ``driftkeel.spool_entry`` tag), and a batch that may already be in the run
    is not logged twice (see :func:`_apply`)."""
    from driftkeel.registry.tracking import find_or_create_parent

    manifest = json.loads((entry / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{entry / MANIFEST}: unknown spool format {manifest.get('format')!r}")
    run_id = next((r for r in (manifest.get("replay_run_id"), manifest.get("run_id")) if _run_exists(client, r)),
                  None)
    created = False
    if run_id is None:  # the stage never got a run in this store: a new nested run, every operation
        exp_id = _experiment_id(client, manifest["experiment"], root, common)
        run_id = _entry_run(client, exp_id, entry)  # created by a replay killed before it saved the id
        if run_id is None:
            parent_id = find_or_create_parent(client, exp_id, manifest["pipeline_key"], manifest["tags"])
            run = client.create_run(exp_id, start_time=manifest["start_time"], run_name=manifest["stage"],
                                    tags={**manifest["run_tags"], "mlflow.parentRunId": parent_id,
                                          "driftkeel.spool_entry": entry.name})
            run_id, created = run.info.run_id, True
        for op in manifest["ops"]:
            op["done"] = False
        manifest["replay_run_id"] = run_id
        _write_manifest(entry, manifest)
    else:
        client.set_tag(run_id, "driftkeel.spool_entry", entry.name)
    in_run = _MetricsInRun(client, run_id, empty=created)
    for batch in _batches(manifest["ops"]):
        _apply(client, run_id, batch, entry, root, say, in_run)
        for op in batch:
            op["done"] = True
        _write_manifest(entry, manifest)
    client.set_terminated(run_id, manifest.get("status", "FINISHED"), end_time=manifest.get("end_time"))
    done = entry.with_name(f".done-{entry.name}")
    os.replace(entry, done)
    shutil.rmtree(done, ignore_errors=True)
    return run_id


def sync(root: Path, common, say: Callable = print) -> dict:
    """Replay every spool entry into the configured store; stops at the first entry that fails (the
    store is probably still down) and leaves it and the later ones for the next sync.
    An entry that fails for another reason (a damaged manifest) is kept, reported in ``broken`` and
    skipped. Returns ``{"replayed": [(entry, run_id), ...], "broken": [(entry, error), ...],
    "failed": entry name or None, "error": str or None, "spool": folder}``.
    Raises :class:`SpoolBusy` when another process is replaying."""
    from mlflow.tracking import MlflowClient

    from driftkeel.registry.tracking import configure, is_store_error, safe_error_text

    spool = spool_root(root, common)
    result: dict = {"replayed": [], "broken": [], "failed": None, "error": None, "spool": str(spool)}
    if not has_entries(spool):
        sweep(spool)
        return result
    with _lock(spool):
        sweep(spool)
        todo = entries(spool)
        if not todo:
            return result
        try:
            configure(root, common)
        except Exception as exc:  # noqa: BLE001 (reported, entries kept)
            if not is_store_error(exc):
                raise
            result.update(failed=todo[0].name, error=safe_error_text(exc))
            return result
        client = MlflowClient()
        for entry in todo:
            try:
                run_id = replay_entry(client, entry, Path(root), common, say)
            except Exception as exc:  # noqa: BLE001
                if not is_store_error(exc):  # this entry is at fault (e.g. a damaged manifest): skip it
                    result["broken"].append((entry.name, safe_error_text(exc)))
                    say(f"mlflow-sync: {entry.name} cannot be replayed ({safe_error_text(exc)}); kept")
                    continue
                result.update(failed=entry.name, error=safe_error_text(exc))
                break
            say(f"mlflow-sync: {entry.name} -> run {run_id}")
            result["replayed"].append((entry.name, run_id))
    return result


def drain_best_effort(root: Path, common) -> None:
    """Called by every ``stage_run`` once the store answers: replay a non-empty spool, never fail."""
    spool = spool_root(root, common)
    try:
        if not has_entries(spool):
            return
        res = sync(root, common, say=lambda msg: print(msg, file=sys.stderr))
        if res["failed"] or res["broken"]:
            what = res["failed"] or ", ".join(name for name, _ in res["broken"])
            print(f"WARNING: MLflow spool {spool}: {what} not replayed yet "
                  f"({res['error'] or res['broken'][0][1]}); run `driftkeel mlflow-sync` later.", file=sys.stderr)
    except SpoolBusy:
        pass
    except Exception as exc:  # noqa: BLE001 (best effort: the stage goes on)
        from driftkeel.registry.tracking import safe_error_text

        print(f"WARNING: could not replay the MLflow spool {spool} ({safe_error_text(exc)}); "
              "run `driftkeel mlflow-sync` to retry.", file=sys.stderr)


def mlflow_sync(root: Optional[Path] = None) -> None:
    """Replay MLflow logging spooled while the store was down (outputs/.mlflow-spool) into the store."""
    from driftkeel.config import load_section

    r = Path(root or os.environ.get("DRIFTKEEL_ROOT", ".")).resolve()
    common, _ = load_section("register", r / "params.yaml")
    try:
        res = sync(r, common, say=typer.echo)
    except SpoolBusy as exc:
        typer.echo(f"mlflow-sync: {exc}; try again when it has finished", err=True)
        raise typer.Exit(1)
    left = len(entries(spool_root(r, common)))
    if res["failed"]:
        typer.echo(f"mlflow-sync: {res['failed']} could not be logged ({res['error']}); {left} entr"
                   f"{'y' if left == 1 else 'ies'} left in {res['spool']}. Fix the store, then re-run.", err=True)
        raise typer.Exit(1)
    if res["broken"]:
        typer.echo(f"mlflow-sync: {len(res['broken'])} entr{'y' if len(res['broken']) == 1 else 'ies'} could not "
                   f"be replayed and were kept in {res['spool']}: {res['broken']}", err=True)
        raise typer.Exit(1)
    if not res["replayed"]:
        typer.echo(f"mlflow-sync: nothing to replay ({res['spool']} is empty)")
    else:
        typer.echo(f"mlflow-sync: {len(res['replayed'])} spooled run(s) logged; spool empty")


def mlflow_sync_command(root: Optional[Path] = typer.Option(
        None, help="project root holding params.yaml (default: cwd)")) -> None:
    """Replay MLflow logging spooled while the tracking store was down (outputs/.mlflow-spool)."""
    mlflow_sync(root)
