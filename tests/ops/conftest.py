import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium; installed by scripts/install_system.sh when missing (idempotent), skipped
    with the installer's reason only when it cannot be installed here."""
    from driftkeel.ops.browser import find_chromium

    exe = find_chromium()
    if exe is None:
        res = subprocess.run(["bash", str(REPO / "scripts" / "install_system.sh")], capture_output=True,
                             text=True, timeout=900)
        exe = find_chromium()
        if exe is None:
            pytest.skip("chromium is not installed and scripts/install_system.sh could not install it: "
                        + (res.stdout + res.stderr).strip()[-500:])
    return exe


@pytest.fixture
def receiver():
    from http_receiver import Receiver

    with Receiver() as r:
        yield r


@pytest.fixture
def git_env():
    return {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@e", "DVC_NO_ANALYTICS": "1"}
