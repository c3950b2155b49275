"""New data arriving: inbox files -> the next `data/stream/batch_NNN.jsonl`, then versioned with DVC.

The monitoring flow calls, in order:

1. :func:`ingest` moves every file matching `ops.inbox.pattern` in `ops.inbox.folder` (oldest name
   first) into `data/stream/` as the next `batch_NNN.jsonl`. A row whose `batch` field is not NNN gets
   NNN (the batch index is the arrival order; such a row is re-serialised as compact JSON, so its other
   bytes may change form but not meaning; a row already saying NNN, and every line that is not a
   JSON object, is copied unchanged so the validate stage quarantines it as usual). The original file
   is kept, unchanged, in `<inbox>/processed/`; a file with no readable row goes to `<inbox>/rejected/`
   with a `.reason.txt`. A file that may still be arriving is left for the next run (status
   "waiting"): one open for writing by a process on this machine (Linux /proc), or one modified again
   within the settle time (`ops.inbox.settle_s`, default 3 s; ingest waits that long for a file
   younger than that). Dotfiles and `*.tmp` / `*.part` / `*.partial` names are never picked
   up (write to such a name, then rename).
   Each ingested batch is recorded in `<inbox>/.driftkeel/ingested.json` before it appears in the stream; an
   ingest killed half-way is finished (or forgotten) by the next one, so every source lands once.
   The batches listed there stay pending (:func:`pending_batches`) until :func:`settle` (validate
   passed) or :func:`reject`.
2. `dvc repro validate` (the flow) - the Great Expectations suite on the whole stream. (DVC itself
   re-records the changed `data/` in data.dvc at this point, since the stage depends on data/stream.)
3. :func:`version_data` (only after validate passed): `dvc add data`, `git commit data.dvc` (only in a
   git repo, `ops.inbox.git_commit`) and `dvc push data.dvc` (only when a default DVC remote is
   configured, `ops.inbox.dvc_push`). A batch that fails validate is taken out again by
   :func:`reject` and lands in `<inbox>/rejected/`; :func:`restore_version` then re-records the data
   without it, so data.dvc matches the commit again.

Files dropped straight into `data/stream/` are versioned by the same step (`dvc add data` sees them).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from driftkeel.config import InboxParams, parse_section, read_params

_BATCH_RE = re.compile(r"^batch_(\d+)\.jsonl$")
PROCESSED, REJECTED = "processed", "rejected"
JOURNAL = ".driftkeel/ingested.json"      # in the inbox: batches ingested, not yet validated or rejected
TEMP_SUFFIXES = (".tmp", ".part", ".partial")  # names of files still being written (then renamed)


class VersioningFailed(RuntimeError):
    """`dvc add` / `git commit` / `dvc push` failed; the message carries the command's output."""


def load_inbox_params(root: str | Path) -> InboxParams:
    path = Path(root) / "params.yaml"
    raw = read_params(path) if path.exists() else {}
    return parse_section("ops", raw.get("ops")).inbox


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def next_batch_index(stream_dir: Path) -> int:
    nums = [int(m.group(1)) for p in stream_dir.glob("batch_*.jsonl") if (m := _BATCH_RE.match(p.name))]
    return max(nums) + 1 if nums else 0


def pending(inbox_dir: Path, pattern: str = "*.jsonl") -> list[Path]:
    """Files waiting in the inbox (not its processed/ or rejected/ sub-folders), by name."""
    if not inbox_dir.is_dir():
        return []
    return sorted(p for p in inbox_dir.glob(pattern) if p.is_file() and not p.name.startswith(".")
                  and not p.name.endswith(TEMP_SUFFIXES))


def _writers(paths: list[Path]) -> dict[Path, int]:
    """{path: pid} for the files a process of this machine holds open for writing (Linux /proc, the
    processes this user may inspect; {} elsewhere)."""
    want = {str(p.resolve()): p for p in paths}
    found: dict[Path, int] = {}
    if not want or not Path("/proc/self/fdinfo").is_dir():
        return found
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd_dir / fd)
                if target not in want:
                    continue
                flags = re.search(r"^flags:\s*([0-7]+)", (fd_dir.parent / "fdinfo" / fd).read_text(), re.M)
            except OSError:
                continue
            if flags and int(flags.group(1), 8) & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
                found[want[target]] = int(fd_dir.parent.name)
    return found


def arriving(files: list[Path], settle_s: float) -> dict[Path, str]:
    """The files that may still be being written, with why: open for writing here, or modified within
    the last `settle_s` seconds and again while we waited for them to reach that age."""
    def signature(p: Path):
        try:
            st = p.stat()
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns

    now = time.time()
    ages = {p: now - p.stat().st_mtime for p in files}
    young = {p: signature(p) for p, age in ages.items() if age < settle_s}
    out = {}
    if young:  # wait until the youngest is settle_s old (at most settle_s: a clock ahead of ours)
        time.sleep(min(settle_s, max(settle_s - ages[p] for p in young)))
        out = {p: f"still being written (modified within the last {settle_s:g} s)"
               for p, sig in young.items() if signature(p) != sig}
    for p, pid in _writers([p for p in files if p not in out]).items():
        out[p] = f"still open for writing by process {pid}"
    return out


class InboxBusy(RuntimeError):
    """Another monitoring run holds the inbox (ingesting or validating its batches)."""


@contextlib.contextmanager
def inbox_lock(root: str | Path, params: InboxParams):
    """Exclusive hold of the inbox for one ingest -> validate -> settle / reject cycle (an OS file lock
    on `<inbox>/.driftkeel/monitoring.lock`: a killed run frees it). Without it, a second run took the
    first one's journal entries for a killed run's leftovers and both used the same batch number.
    Raises InboxBusy at once when another run holds it."""
    import fcntl

    inbox = (Path(root) / params.folder).resolve()
    path = inbox / ".driftkeel" / "monitoring.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InboxBusy(f"{inbox}: another monitoring run is ingesting or validating its batches (lock "
                            f"{path}); this run stops without touching the inbox: run it again later") from None
        yield path
    finally:
        os.close(fd)     # closing the descriptor releases the lock


def _read_journal(inbox: Path) -> list[dict]:
    path = inbox / JOURNAL
    if not path.exists():
        return []
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); it lists the batches ingested and not yet "
                         "validated (data/stream/batch_NNN.jsonl); fix it or remove it") from None


def _write_journal(inbox: Path, entries: list[dict]) -> None:
    path = inbox / JOURNAL
    if not entries:
        path.unlink(missing_ok=True)
        if path.parent.is_dir() and not any(path.parent.iterdir()):
            path.parent.rmdir()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(entries, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _finish_interrupted(root: Path, inbox: Path, stream: Path) -> list[dict]:
    """An ingest killed after recording a batch (journal entry without "archived"): finish or forget it."""
    for tmp in stream.glob(".batch_*.jsonl.ingest.tmp"):  # killed before the batch was in place
        tmp.unlink()
    entries = _read_journal(inbox)
    if all("archived" in e for e in entries):
        return []
    keep, done = [], []
    for e in entries:
        if "archived" in e:
            keep.append(e)
            continue
        src, dst = inbox / e["source"], root / e["path"]
        if dst.exists() and src.is_file():
            if dst.read_bytes() == restamp(src.read_bytes(), e["batch"])[0]:  # killed before archiving
                e = {**e, "archived": str(_archive(src, inbox / PROCESSED)), "recovered": True}
                keep.append(e)
                done.append(e)
            # else the number went to other data since: the source is ingested anew
        elif dst.exists():  # killed after archiving the source, before the journal said so
            e = {**e, "archived": None, "recovered": True}
            keep.append(e)
            done.append(e)
        # else killed before the batch was written: the source is still waiting, ingested anew
    _write_journal(inbox, keep)
    return done


def pending_batches(root: str | Path, params: InboxParams) -> list[dict]:
    """The batches ingested from the inbox and not settled yet (validated, or rejected),
    those of an earlier, killed run included; the records :func:`ingest` returned for them."""
    root = Path(root)
    return [e for e in _read_journal((root / params.folder).resolve()) if (root / e["path"]).exists()]


def settle(root: str | Path, records: list[dict], params: InboxParams) -> None:
    """`records` are no longer pending: validated, or rejected."""
    inbox = (Path(root) / params.folder).resolve()
    entries = _read_journal(inbox)
    done = {r.get("path") for r in records}
    if any(e.get("path") in done for e in entries):
        _write_journal(inbox, [e for e in entries if e.get("path") not in done])


def restamp(data: bytes, batch: int) -> tuple[bytes, dict]:
    """Set `batch` to `batch` on every JSON-object line; other lines pass through unchanged."""
    out, n_rows, n_restamped, n_unreadable = [], 0, 0, 0
    for line in data.splitlines(keepends=True):
        body = line.rstrip(b"\r\n")
        if not body.strip():
            out.append(line)
            continue
        n_rows += 1
        try:
            obj = json.loads(body.decode("utf-8-sig"))
        except (ValueError, RecursionError):
            obj = None
        if not isinstance(obj, dict):
            n_unreadable += 1
            out.append(line)
            continue
        if obj.get("batch") != batch:
            obj["batch"] = batch
            n_restamped += 1
            line = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
        out.append(line if line.endswith(b"\n") else line + b"\n")
    return b"".join(out), {"rows": n_rows, "rows_restamped": n_restamped, "rows_unreadable": n_unreadable}


def ingest(root: str | Path, data_dir: str, params: InboxParams, settle_s: float | None = None) -> list[dict]:
    """Move the inbox's files into the stream; returns one record per file (ingested, rejected or
    waiting; `recovered` for a source a killed ingest had already written). `settle_s`: default
    `params.settle_s`."""
    root = Path(root)
    inbox = (root / params.folder).resolve()
    stream = root / data_dir / "stream"
    stream.mkdir(parents=True, exist_ok=True)
    records = _finish_interrupted(root, inbox, stream)
    files = pending(inbox, params.pattern)
    waiting = arriving(files, params.settle_s if settle_s is None else settle_s)
    for src in files:
        if src in waiting:
            records.append({"source": src.name, "status": "waiting", "reason": waiting[src]})
            continue
        data = src.read_bytes()
        n = next_batch_index(stream)
        body, counts = restamp(data, n)
        rec = {"source": src.name, "bytes": len(data), **counts}
        if counts["rows"] == 0 or counts["rows_unreadable"] == counts["rows"]:
            why = "empty file" if counts["rows"] == 0 else "no line is a JSON object"
            records.append({**rec, "status": "rejected", "reason": why,
                            "moved_to": str(_archive(src, inbox / REJECTED, why))})
            continue
        dst = stream / f"batch_{n:03d}.jsonl"
        tmp = stream / f".{dst.name}.ingest.tmp"
        rec = {**rec, "status": "ingested", "batch": n, "path": str(dst.relative_to(root))}
        journal = _read_journal(inbox)
        _write_journal(inbox, journal + [rec])  # first: a kill from here on is finished by the next run
        tmp.write_bytes(body)
        os.replace(tmp, dst)  # atomic: the stream never holds half a batch
        rec["archived"] = str(_archive(src, inbox / PROCESSED))
        _write_journal(inbox, journal + [rec])
        records.append(rec)
    return records


def _archive(src: Path, folder: Path, reason: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / f"{_stamp()}_{src.name}"
    shutil.move(str(src), dst)
    if reason:
        dst.with_name(dst.name + ".reason.txt").write_text(reason + "\n", encoding="utf-8")
    return dst


def reject(root: str | Path, records: list[dict], params: InboxParams, reason: str) -> list[dict]:
    """Take ingested batches out of the stream again (validate failed on them) -> <inbox>/rejected/.

    The user's file (archived in processed/ at ingest) moves to rejected/ with a reason file naming the
    source and the batch it was; the stream's restamped copy is removed. (Without an archived original,
    e.g. a batch a killed ingest left, the stream copy itself moves.) So a rejected file is in rejected/
    only, not also in processed/."""
    root = Path(root)
    rejected = (root / params.folder).resolve() / REJECTED
    out = []
    for rec in records:
        if rec.get("status") != "ingested":
            continue
        path = root / rec["path"]
        original = Path(rec["archived"]) if rec.get("archived") else None
        why = f"{reason[-4000:]}\n(source {rec.get('source')}, ingested as {rec['path']})"
        if original is not None and original.exists():
            moved = _archive(original, rejected, why)
            path.unlink(missing_ok=True)
        elif path.exists():
            moved = _archive(path, rejected, why)
        else:
            continue
        out.append({**rec, "status": "rejected", "reason": reason[-500:], "moved_to": str(moved)})
    settle(root, records, params)
    return out


# ------------------------------------------------------------------------------------ versioning
def _tool(name: str) -> str:
    local = Path(sys.executable).with_name(name)
    return str(local) if local.exists() else (shutil.which(name) or name)


def _run(cmd: list[str], root: Path, timeout_s: float = 600) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    res = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout_s)
    if res.returncode != 0:   # masked: a DVC remote URL may carry credentials
        from driftkeel.security import redact_text

        raise VersioningFailed(redact_text(f"{' '.join(cmd)} failed ({res.returncode}):\n"
                                           f"{(res.stdout + res.stderr)[-3000:]}"))
    return res.stdout + res.stderr


def is_git_repo(root: Path) -> bool:
    """`root` is inside a git work tree (its top level, or a subfolder: a DVC project made with
    `dvc init --subdir` in a larger repo)."""
    res = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=root, capture_output=True, text=True)
    return res.returncode == 0 and res.stdout.strip() == "true"


def default_remote(root: Path) -> str | None:
    """The DVC default remote's name (`core.remote`), or None."""
    res = subprocess.run([_tool("dvc"), "config", "core.remote"], cwd=root, capture_output=True, text=True,
                         env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    name = res.stdout.strip()
    return name if res.returncode == 0 and name else None


def data_hash(root: Path, data_dir: str = "data") -> str | None:
    """The md5 recorded in `<data_dir>.dvc` (the DVC version of the raw data), or None."""
    import yaml

    path = root / f"{data_dir}.dvc"
    if not path.exists():
        return None
    outs = (yaml.safe_load(path.read_text()) or {}).get("outs") or [{}]
    return outs[0].get("md5")


def _git_identity(root: str | Path) -> list[str]:
    """`-c user.name/email` only when git has none configured for the project (a fresh CI machine).
    Asked in `root`: a repo-local identity counts, whatever directory the flow runs from."""
    have = subprocess.run(["git", "config", "user.email"], cwd=root, capture_output=True, text=True).stdout.strip()
    if have or os.environ.get("GIT_AUTHOR_EMAIL"):
        return []
    return ["-c", "user.name=driftkeel", "-c", "user.email=driftkeel@localhost"]


def version_data(root: str | Path, data_dir: str, params: InboxParams, message: str,
                 before: str | None = None) -> dict:
    """`dvc add <data_dir>` (+ git commit of the .dvc file, + dvc push).

    `before`: the data version when the caller started (note that `dvc repro` itself re-records a
    changed `data/` in data.dvc when a stage depends on it, so data.dvc may already be updated)."""
    root = Path(root)
    if before is None:
        before = data_hash(root, data_dir)
    _run([_tool("dvc"), "add", "-q", data_dir], root)
    after = data_hash(root, data_dir)
    out = {"data_version_before": before, "data_version": after, "changed": before != after,
           "committed": None, "pushed": None}
    dvc_file = f"{data_dir}.dvc"
    if params.git_commit and is_git_repo(root):
        dirty = subprocess.run(["git", "status", "--porcelain", "--", dvc_file], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        if dirty:
            _run(["git", "add", "--", dvc_file], root)
            _run(["git", *_git_identity(root), "commit", "-q", "-m", message, "--", dvc_file], root)
            out["committed"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                              text=True).stdout.strip()
    if params.dvc_push:
        out["pushed"] = push_data(root, data_dir)
    return out


def _unpushed_marker(root: Path) -> Path:
    # in .dvc/tmp (git-ignored by DVC): present from before a push until it succeeded
    return Path(root) / ".dvc" / "tmp" / "driftkeel-unpushed"


def push_data(root: str | Path, data_dir: str) -> str | None:
    """`dvc push <data_dir>.dvc` to the default remote (None without one). A marker stays until the push
    succeeded, so a push that failed (remote down) is retried by the next run even when that run has no
    new data (:func:`push_pending`)."""
    root = Path(root)
    remote = default_remote(root)
    if not remote:
        return None
    marker = _unpushed_marker(root)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{data_dir}.dvc\n")
    _run([_tool("dvc"), "push", "-q", f"{data_dir}.dvc"], root)
    marker.unlink(missing_ok=True)
    return remote


def push_pending(root: str | Path, data_dir: str, params: InboxParams) -> str | None:
    """Retry the push an earlier run could not finish; None when none is owed."""
    if not (params.dvc_push and _unpushed_marker(Path(root)).exists()):
        return None
    return push_data(root, data_dir)


def restore_version(root: str | Path, data_dir: str, before: str | None) -> dict:
    """After a rejected batch was taken out: re-record data/ if data.dvc no longer says `before`."""
    root = Path(root)
    now = data_hash(root, data_dir)
    if before is None or now == before:
        return {"data_version": now, "restored": False}
    _run([_tool("dvc"), "add", "-q", data_dir], root)
    return {"data_version": data_hash(root, data_dir), "restored": True}


def git_dirty(root: str | Path, path: str) -> bool:
    if not is_git_repo(Path(root)):
        return False
    return bool(subprocess.run(["git", "status", "--porcelain", "--", path], cwd=root, capture_output=True,
                               text=True).stdout.strip())
