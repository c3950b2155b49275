"""Progress bars: on by default, off in CI / with TQDM_DISABLE / DRIFTKEEL_PROGRESS=0; same items either way."""
import pytest

from driftkeel import progress


@pytest.mark.parametrize("env,shown", [({}, True), ({"CI": "true"}, False), ({"TQDM_DISABLE": "1"}, False),
                                       ({"DRIFTKEEL_PROGRESS": "0"}, False)])
def test_enabled_follows_the_environment(monkeypatch, capsys, env, shown):
    for k in ("CI", "TQDM_DISABLE", "DRIFTKEEL_PROGRESS"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert progress.enabled() is shown
    assert list(progress.bar(range(5), "count", total=5)) == [0, 1, 2, 3, 4]
    err = capsys.readouterr().err
    assert ("count" in err) is shown
