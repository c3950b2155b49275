"""Prefect tasks shared by the flows: run one DVC stage, read a stage's JSON output.

A flow never re-implements a stage: each task runs `dvc repro <stage>` in the project root, so
dvc.lock stays the single record of what ran on which code, data and params. `dvc repro <stage>`
also (re)runs any stale upstream stage and skips an up-to-date one.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TAIL_CHARS = 4000
# DVC refuses a second `dvc repro` in the same repo at once ("... is busy" / lock): that is worth a retry.
TRANSIENT_MARKERS = ("is busy", "Unable to acquire lock", "database is locked")


class StageFailed(RuntimeError):
    """`dvc repro <stage>` failed; the message carries the tail of its output."""

    def __init__(self, stage: str, returncode: int, tail: str, transient: bool = False):
        self.stage, self.returncode, self.tail, self.transient = stage, returncode, tail, transient
        kind = "DVC lock busy (transient)" if transient else f"exit code {returncode}"
        super().__init__(f"dvc repro {stage} failed ({kind}); output tail:\n{tail}")


def dvc_executable() -> str:
    """The dvc of this interpreter's environment (a venv's bin/), else the one on PATH."""
    local = Path(sys.executable).with_name("dvc")
    if local.exists():
        return str(local)
    found = shutil.which("dvc")
    if found is None:
        raise FileNotFoundError("dvc not found next to the Python interpreter or on PATH")
    return found


def _tail(text: str, n: int = TAIL_CHARS) -> str:
    """The end of a stage's output, secrets masked (URL passwords, secret environment values): it goes
    into exceptions, Prefect run logs and inbox/rejected/*.reason.txt."""
    from driftkeel.security import redact_text

    text = redact_text(text)
    return text if len(text) <= n else "..." + text[-n:]


def run_dvc_stage(stage: str, root: str | Path, *, timeout_s: float | None = None,
                  env: dict | None = None, force: bool = False) -> dict:
    """Run `dvc repro [-f] <stage>` in `root`; raise StageFailed with the output tail on failure.

    The command runs in its own process group, so a timeout kills the stage's children too (killing
    only the dvc pid would leave the stage running, holding the repo lock)."""
    cmd = [dvc_executable(), "repro"] + (["--force"] if force else []) + [stage]
    full_env = {**os.environ, "DVC_NO_ANALYTICS": "1", **(env or {})}
    # the stage commands are `python -m pipelines.<stage>`: let them find this environment's interpreter
    bindir = str(Path(sys.executable).parent)
    if not full_env.get("PATH", "").startswith(bindir):
        full_env["PATH"] = bindir + os.pathsep + full_env.get("PATH", "")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=str(root), env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise StageFailed(stage, -9, _tail(out + f"\n[killed after {timeout_s} s]")) from None
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        transient = any(m in out for m in TRANSIENT_MARKERS)
        raise StageFailed(stage, proc.returncode, _tail(out), transient=transient)
    ran = re.findall(r"Running stage '([^']+)'", out)  # this stage and any stale upstream stage
    return {"stage": stage, "seconds": round(seconds, 3), "returncode": 0,
            "up_to_date": stage not in ran, "ran": ran, "output_tail": _tail(out, 1000)}


def _retry_only_transient(task, task_run, state) -> bool:
    """Retry a failed stage only when DVC's lock was busy (another repro): a stage that failed on
    its own would fail the same way again."""
    try:
        state.result()
    except StageFailed as exc:
        return exc.transient
    except Exception:
        return False
    return False


@task(retries=3, retry_delay_seconds=[15, 60, 120], retry_condition_fn=_retry_only_transient,
      task_run_name="dvc repro {stage}")
def repro_stage(stage: str, root: str, timeout_s: float | None = None, env: dict | None = None) -> dict:
    logger = get_run_logger()
    result = run_dvc_stage(stage, root, timeout_s=timeout_s, env=env)
    logger.info("dvc repro %s: %s in %.1f s", stage,
                "up to date" if result["up_to_date"] else "ran", result["seconds"])
    return result


@task(retries=3, retry_delay_seconds=2, task_run_name="read {relpath}")
def read_output_json(root: str, relpath: str) -> dict:
    """A stage's JSON output (retried: it may be on a slow or briefly unavailable disk)."""
    path = Path(root) / relpath
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def outputs_dir(root: str | Path) -> str:
    """`common.outputs_dir` from the project's params.yaml (validated like the stages read it)."""
    from driftkeel.config import parse_section, read_params

    params = Path(root) / "params.yaml"
    raw = read_params(params) if params.exists() else {}
    return parse_section("common", raw.get("common")).outputs_dir
