"""New-batch pickup and data versioning with the real git and DVC (no Prefect, no stages)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from driftkeel.config import InboxParams
from driftkeel.ops.inbox import (
    data_hash,
    default_remote,
    ingest,
    next_batch_index,
    reject,
    restamp,
    restore_version,
    version_data,
)

DVC = str(Path(sys.executable).with_name("dvc"))


def _row(batch, i=0):
    return json.dumps({"judgement_id": f"j{batch}-{i}", "batch": batch, "prompt": "hi"})


def _git(root, *args, env):
    return subprocess.run(["git", *args], cwd=root, env=env, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def project(tmp_path, git_env):
    """git + dvc init, data/stream with batches 0-2 tracked by data.dvc, a local DVC remote as default."""
    root = tmp_path / "proj"
    (root / "data" / "stream").mkdir(parents=True)
    for b in range(3):
        (root / "data" / "stream" / f"batch_{b:03d}.jsonl").write_text(_row(b) + "\n")
    for cmd in (["git", "init", "-q"], [DVC, "init", "-q"], [DVC, "remote", "add", "-d", "local", "../remote"],
                [DVC, "add", "-q", "data"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=root, env=git_env, check=True, capture_output=True)
    return root


def test_restamp_sets_the_batch_and_leaves_other_lines_alone():
    data = (_row(7) + "\n" + "not json\n" + "\n" + _row(3, 1) + "\n[1, 2]\n" + '{"batch": 3}').encode()
    body, counts = restamp(data, 3)
    lines = body.decode().split("\n")
    assert json.loads(lines[0])["batch"] == 3 and json.loads(lines[0])["judgement_id"] == "j7-0"
    assert lines[1:3] == ["not json", ""]
    assert lines[3] == _row(3, 1)  # already right: byte for byte
    assert lines[4] == "[1, 2]" and lines[5] == '{"batch": 3}' and body.endswith(b"\n")
    assert counts == {"rows": 5, "rows_restamped": 1, "rows_unreadable": 2}


def test_ingest_numbers_files_in_name_order_and_rejects_unreadable_ones(tmp_path):
    root = tmp_path
    (root / "data" / "stream").mkdir(parents=True)
    (root / "data" / "stream" / "batch_004.jsonl").write_text(_row(4) + "\n")
    inbox = root / "inbox"
    inbox.mkdir()
    (inbox / "b.jsonl").write_text(_row(0) + "\n" + _row(0, 1) + "\n")
    (inbox / "a.jsonl").write_text(_row(5) + "\n")
    (inbox / "junk.jsonl").write_text("<html>oops</html>\n")
    (inbox / "notes.txt").write_text("ignored: not *.jsonl")
    assert next_batch_index(root / "data" / "stream") == 5
    recs = ingest(root, "data", InboxParams(folder="inbox"))
    assert [(r["source"], r["status"], r.get("batch")) for r in recs] == [
        ("a.jsonl", "ingested", 5), ("b.jsonl", "ingested", 6), ("junk.jsonl", "rejected", None)]
    assert recs[1]["rows_restamped"] == 2
    assert [json.loads(x)["batch"] for x in (root / "data/stream/batch_006.jsonl").read_text().splitlines()] == [6, 6]
    assert sorted(p.name.split("_", 1)[1] for p in (inbox / "processed").iterdir()) == ["a.jsonl", "b.jsonl"]
    rejected = sorted(p.name for p in (inbox / "rejected").iterdir())
    assert rejected[0].endswith("_junk.jsonl") and rejected[1].endswith("_junk.jsonl.reason.txt")
    assert [p.name for p in inbox.iterdir() if p.is_file()] == ["notes.txt"]
    assert not list((root / "data" / "stream").glob(".*"))  # no temp files left behind
    assert ingest(root, "data", InboxParams(folder="inbox")) == []  # nothing twice


def test_version_data_adds_commits_and_pushes(project, git_env, monkeypatch):
    for k, v in git_env.items():
        monkeypatch.setenv(k, v)
    before = data_hash(project)
    assert default_remote(project) == "local"
    (project / "data" / "stream" / "batch_003.jsonl").write_text(_row(3) + "\n")
    out = version_data(project, "data", InboxParams(), "data: batch_003.jsonl")
    assert out["data_version_before"] == before and out["changed"] and out["data_version"] != before
    assert out["committed"] == _git(project, "rev-parse", "HEAD", env=git_env).strip()
    assert _git(project, "log", "-1", "--format=%s", env=git_env).strip() == "data: batch_003.jsonl"
    assert _git(project, "show", "--name-only", "--format=", "HEAD", env=git_env).split() == ["data.dvc"]
    assert out["pushed"] == "local"
    cloud = subprocess.run([DVC, "status", "--cloud", "--json"], cwd=project, capture_output=True, text=True)
    assert json.loads(cloud.stdout or "{}") == {}
    again = version_data(project, "data", InboxParams(), "nothing new")
    assert not again["changed"] and again["committed"] is None  # no empty commits
    off = version_data(project, "data", InboxParams(git_commit=False, dvc_push=False), "x")
    assert off["committed"] is None and off["pushed"] is None


def test_a_rejected_batch_leaves_data_dvc_as_committed(project, git_env):
    before = data_hash(project)
    recs = ingest(project, "data", InboxParams(folder="inbox")) or []
    assert recs == []
    (project / "inbox").mkdir()
    (project / "inbox" / "new.jsonl").write_text(_row(9) + "\n")
    (rec,) = ingest(project, "data", InboxParams(folder="inbox"))
    # what `dvc repro validate` does to a data-source dependency: re-record data/ in data.dvc
    subprocess.run([DVC, "add", "-q", "data"], cwd=project, env=git_env, check=True)
    assert data_hash(project) != before
    (out,) = reject(project, [rec], InboxParams(folder="inbox"), "validate failed: 100% quarantined")
    assert out["status"] == "rejected" and not (project / rec["path"]).exists()
    assert Path(out["moved_to"]).parent.name == "rejected" and Path(out["moved_to"]).read_text() == _row(9) + "\n"
    assert not list((project / "inbox" / "processed").iterdir())
    assert "100% quarantined" in Path(out["moved_to"] + ".reason.txt").read_text()
    assert restore_version(project, "data", before) == {"data_version": before, "restored": True}
    assert _git(project, "status", "--porcelain", "data.dvc", env=git_env) == ""
    assert yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"] == before


def test_version_data_commits_as_the_projects_own_git_identity(project, tmp_path, monkeypatch):
    """A project with its own `user.email` (repo-local config, none global) commits data.dvc under that
    identity, also when the flow runs from another directory; the fallback identity is only for a
    machine with none at all."""
    home = tmp_path / "home"
    home.mkdir()
    for k in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    env = dict(__import__("os").environ)
    _git(project, "config", "user.name", "Data Team", env=env)
    _git(project, "config", "user.email", "data-team@example.org", env=env)
    monkeypatch.chdir(tmp_path)                       # not the project: a Prefect worker's cwd
    (project / "data" / "stream" / "batch_003.jsonl").write_text(_row(3) + "\n")
    out = version_data(project, "data", InboxParams(dvc_push=False), "data: batch_003.jsonl")
    assert out["committed"]
    assert _git(project, "log", "-1", "--format=%an <%ae>", env=env).strip() == "Data Team <data-team@example.org>"


def test_a_failed_push_is_retried_by_the_next_run_without_new_data(project, git_env, monkeypatch):
    """The commit of data.dvc happens before the push; a run whose push failed (remote down) left the
    next run with nothing new, an unchanged hash and a clean tree, so nothing ever pushed the batch."""
    from driftkeel.ops.inbox import VersioningFailed, push_pending

    for k, v in git_env.items():
        monkeypatch.setenv(k, v)
    subprocess.run([DVC, "remote", "modify", "local", "url", "/proc/1/no-such-remote"], cwd=project, check=True)
    (project / "data" / "stream" / "batch_003.jsonl").write_text(_row(3) + "\n")
    with pytest.raises(VersioningFailed, match="dvc push"):
        version_data(project, "data", InboxParams(), "data: batch_003.jsonl")
    assert _git(project, "status", "--porcelain", "--", "data.dvc", env=git_env) == ""   # committed
    assert push_pending(project, "data", InboxParams(dvc_push=False)) is None
    subprocess.run([DVC, "remote", "modify", "local", "url", "../remote"], cwd=project, check=True)
    assert push_pending(project, "data", InboxParams()) == "local"
    cloud = subprocess.run([DVC, "status", "--cloud", "--json"], cwd=project, capture_output=True, text=True)
    assert json.loads(cloud.stdout or "{}") == {}
    assert push_pending(project, "data", InboxParams()) is None          # nothing owed any more
