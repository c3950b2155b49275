"""Shared plumbing for the thin stage entries: project root, params, output folder.

`stage(name)` also guards the run before any work is done:
- `common.data_dir` and `common.outputs_dir` must stay inside the project root;
- one stage at a time per project: a stage process (`python -m pipelines.<name>`) holds an exclusive
  lock on `<outputs>/.driftkeel.lock` until it exits (an OS file lock: a killed process frees it, no
  stale lock is left). A second stage started meanwhile refuses at once with a message naming the
  holder, or waits up to `DRIFTKEEL_LOCK_WAIT_S` seconds. A stage started by hand while a
  `dvc repro` runs in the same project refuses too (DVC's own lock keeps two `dvc repro` apart);
- temp files a killed run of this stage left in `outputs/<name>/` (`.<file>.*.tmp`, `.<dir>.<random>`,
  `.<dir>.old`, see `driftkeel.io`) are removed once the lock is held;
- the MLflow tracking store must answer (`driftkeel.registry.tracking.check_store`), so a stage never
  trains for an hour and then fails to log. `DRIFTKEEL_MLFLOW_PREFLIGHT=0` skips this check.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from driftkeel.config import load_section

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

LOCK_NAME = ".driftkeel.lock"
LOCK_WAIT_ENV = "DRIFTKEEL_LOCK_WAIT_S"
_HELD: dict[str, int] = {}   # lock path -> open fd, for this process's lifetime
# what driftkeel.io's atomic_path / atomic_dir leave behind when killed: .<name>.<random>.tmp files,
# .<name>.<8 random chars> directories (mkdtemp) and .<name>.old directories
_LEFTOVER = re.compile(r"^\..+\.(tmp|old)$|^\..+\.[a-z0-9_]{8}$")


@dataclass
class Stage:
    name: str
    root: Path
    common: object
    params: object

    @property
    def data(self) -> Path:
        return self.root / self.common.data_dir

    @property
    def outputs(self) -> Path:
        return self.root / self.common.outputs_dir

    @property
    def out(self) -> Path:
        path = self.outputs / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path


def _is_stage_process(name: str) -> bool:
    """True when this process is the stage's own CLI (`python -m pipelines.<name>` or the file): the
    lock is then held until the process exits. Stage mains run in-process (tests) take no lock."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    return argv0.stem == name and argv0.parent.name == "pipelines"


def _dvc_repro_holders(root: Path) -> list[str]:
    """Live processes other than our ancestors that hold DVC's read/write locks in this project."""
    path = root / ".dvc" / "tmp" / "rwlock"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    mine = set()
    pid = os.getpid()
    while pid > 1 and pid not in mine:  # this process and its parents (a stage run by dvc)
        mine.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    entries = list((info.get("write") or {}).values())
    entries += [e for lst in (info.get("read") or {}).values() for e in lst]
    out = []
    for e in entries:
        p = e.get("pid") if isinstance(e, dict) else None
        if isinstance(p, int) and p not in mine and Path(f"/proc/{p}").exists():
            out.append(f"pid {p}: {e.get('cmd', '?')}")
    return sorted(set(out))


def acquire_project_lock(root: Path, outputs: Path, name: str) -> None:
    """Take the project's stage lock (see the module docstring); SystemExit with a clear message if
    another stage or a `dvc repro` holds the project."""
    import fcntl

    if "DVC_STAGE" not in os.environ:  # started by hand: is a `dvc repro` running here?
        holders = _dvc_repro_holders(root)
        if holders:
            raise SystemExit(f"{name}: not started, the project is busy: a `dvc repro` is running in {root} "
                             f"({'; '.join(holders)}). "
                             "Two pipeline runs would interleave their writes; wait for it to finish.")
    path = outputs / LOCK_NAME
    key = str(path.resolve())
    if key in _HELD:
        return
    outputs.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    wait_s = float(os.environ.get(LOCK_WAIT_ENV, "0") or 0)
    deadline = time.monotonic() + wait_s
    announced = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
            if time.monotonic() < deadline and not announced:
                print(f"{name}: the project is busy ({holder}); waiting up to {wait_s:.0f} s", flush=True)
                announced = True
            if time.monotonic() >= deadline:
                os.close(fd)
                raise SystemExit(
                    f"{name}: not started, the project is busy: another driftkeel stage is running in "
                    f"{root} ({holder}). "
                    f"Two pipeline runs would interleave their writes; wait for it to finish "
                    f"(or set {LOCK_WAIT_ENV}=<seconds> to wait).") from None
            time.sleep(0.5)
    since = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"stage {name!r}, pid {os.getpid()}, since {since}\n".encode(), 0)
    _HELD[key] = fd   # released by the OS when this process exits (or is killed)


def sweep_leftovers(out_dir: Path) -> list[str]:
    """Remove temp files/dirs a killed run left under `out_dir` (call only while holding the lock)."""
    removed = []
    if not out_dir.is_dir():
        return removed
    for path in sorted(out_dir.rglob(".*"), key=lambda p: len(p.parts)):
        if not path.exists() or path.is_symlink() or not _LEFTOVER.match(path.name):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(str(path.relative_to(out_dir)))
    return removed


def stage(name: str, root: str | Path | None = None) -> Stage:
    from driftkeel.security import UnsafePath, safe_join

    root = Path(root or os.environ.get("DRIFTKEEL_ROOT", ".")).resolve()
    common, params = load_section(name, root / "params.yaml")
    try:
        for key in ("data_dir", "outputs_dir"):
            safe_join(root, getattr(common, key))
    except UnsafePath as exc:
        raise SystemExit(f"{name}: common.{key} must stay inside the project: {exc}") from None
    st = Stage(name=name, root=root, common=common, params=params)
    # under `accelerate launch` / `torchrun` every rank runs the stage: the launch holds the lock once,
    # through its main process (rank 0); the other ranks are the same run, not a second one
    main_rank = int(os.environ.get("RANK", "0") or 0) == 0
    if _is_stage_process(name) and main_rank and os.environ.get("DRIFTKEEL_LOCK", "1") != "0":
        acquire_project_lock(root, st.outputs, name)
        removed = sweep_leftovers(st.outputs / name)
        if removed:
            print(f"{name}: removed {len(removed)} temp file(s) left by an interrupted run: {removed[:5]}")
    if os.environ.get("DRIFTKEEL_MLFLOW_PREFLIGHT", "1") != "0":
        from driftkeel.registry.tracking import TrackingUnavailable, check_store

        try:
            check_store(root, common)
        except TrackingUnavailable as exc:
            raise SystemExit(f"{name}: {exc}") from None
    return st
