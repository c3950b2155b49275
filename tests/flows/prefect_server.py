"""Start and stop a real local Prefect server (`prefect server start`) and a process worker for tests."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
PREFECT = str(BIN / "prefect")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(home: Path, api_url: str | None = None, **extra: str) -> dict:
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "DVC_NO_ANALYTICS": "1", "PREFECT_CLI_PROMPT": "false",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    else:
        env.pop("PREFECT_API_URL", None)
    return env


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def stop(proc: subprocess.Popen, grace_s: float = 20) -> None:
    """SIGTERM the process group, SIGKILL it after `grace_s`."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@dataclass
class Server:
    api_url: str
    home: Path
    log: Path
    proc: subprocess.Popen

    def env(self, **extra: str) -> dict:
        return child_env(self.home, self.api_url, **extra)


@contextlib.contextmanager
def local_prefect_server(home: Path, startup_timeout_s: float = 150):
    """`prefect server start --host 127.0.0.1 --port <free>` with PREFECT_HOME=`home`; waits for
    /api/health (bounded), yields a Server, stops the whole process group afterwards."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    log = home / "server.log"
    env = child_env(home, None, PREFECT_UI_ENABLED="false",
                    PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS="2")
    with log.open("wb") as fh:
        proc = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port),
                                 "--no-ui", "--analytics-off"], cwd=home, env=env, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited ({proc.returncode}):\n{_tail(log)}")
            try:
                with urllib.request.urlopen(f"{api_url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"prefect server not healthy after {startup_timeout_s} s:\n{_tail(log)}")
            time.sleep(0.5)
        yield Server(api_url=api_url, home=home, log=log, proc=proc)
    finally:
        stop(proc)


@contextlib.contextmanager
def process_worker(server: Server, pool: str, cwd: Path, log: Path, **extra_env: str):
    """`prefect worker start --pool <pool> --type process`, polling every 2 s; stopped afterwards."""
    env = server.env(PREFECT_WORKER_QUERY_SECONDS="2", PREFECT_WORKER_PREFETCH_SECONDS="5", **extra_env)
    with log.open("wb") as fh:
        proc = subprocess.Popen([PREFECT, "worker", "start", "--pool", pool, "--type", "process",
                                 "--name", "test-worker"], cwd=cwd, env=env, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        stop(proc)
