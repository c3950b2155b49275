"""Progress bars: on for a terminal, off in CI / with TQDM_DISABLE / DRIFTKEEL_PROGRESS=0 / when stderr is
not a terminal (forced on with DRIFTKEEL_PROGRESS=1); the same items either way; short steps print nothing."""
import time

import pytest

from driftkeel import progress


def _slow(n):
    for i in range(n):
        time.sleep(0.6)
        yield i


@pytest.mark.parametrize("env,shown", [({}, False), ({"DRIFTKEEL_PROGRESS": "1"}, True),
                                       ({"DRIFTKEEL_PROGRESS": "1", "CI": "true"}, False),
                                       ({"DRIFTKEEL_PROGRESS": "1", "TQDM_DISABLE": "1"}, False),
                                       ({"DRIFTKEEL_PROGRESS": "0"}, False)])
def test_enabled_follows_the_environment(monkeypatch, capsys, env, shown):
    for k in ("CI", "TQDM_DISABLE", "DRIFTKEEL_PROGRESS"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert progress.enabled() is shown          # pytest's captured stderr is not a terminal
    assert list(progress.bar(range(5), "quick", total=5)) == [0, 1, 2, 3, 4]
    assert "quick" not in capsys.readouterr().err   # under 2 s: no bar at all
    assert list(progress.bar(_slow(5), "slow", total=5)) == [0, 1, 2, 3, 4]
    assert ("slow" in capsys.readouterr().err) is shown


def test_forced_on_even_when_tqdm_was_imported_under_tqdm_disable(tmp_path):
    """tqdm reads TQDM_* into its defaults at import; a bar we decided to show must still show (CI found it:
    scripts/env.sh sets TQDM_DISABLE=1 under CI and another test imported tqdm first)."""
    import os
    import subprocess
    import sys
    code = ("import os, time, tqdm.auto\n"
            "del os.environ['TQDM_DISABLE']; os.environ['DRIFTKEEL_PROGRESS'] = '1'\n"
            "from driftkeel import progress\n"
            "def slow():\n"
            "    for i in range(5):\n"
            "        time.sleep(0.6); yield i\n"
            "assert list(progress.bar(slow(), 'slow', total=5)) == [0, 1, 2, 3, 4]\n")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "DRIFTKEEL_PROGRESS")}
    env["TQDM_DISABLE"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "slow" in out.stderr
