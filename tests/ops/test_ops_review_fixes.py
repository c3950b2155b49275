"""Review fixes in the ops layer: inbox ingestion that survives a kill at any point and leaves files still
being written alone, a monitoring re-run that rejects a batch left by a killed run, `driftkeel status`
with the configured inbox pattern and a nested data_dir, batch order past batch_999, the flow-failed
hook under a deployment run, and the scale-out readers (newlines only, bad lines named)."""
import json
import logging
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import driftkeel.ops.inbox as inbox
from driftkeel.config import InboxParams, parse_section


NOW = InboxParams(settle_s=0)       # ingest files at once (the settle time is tested on its own)


def _row(i, batch=0):
    return json.dumps({"judgement_id": f"j{i}", "batch": batch, "prompt": "hi"}) + "\n"


def _ids(stream: Path) -> list[str]:
    return sorted(json.loads(line)["judgement_id"] for p in stream.glob("batch_*.jsonl")
                  for line in p.read_text().splitlines() if line.strip())


# ------------------------------------------------------------------------- A: killed ingest, re-run
def _fresh(root: Path) -> None:
    (root / "data" / "stream").mkdir(parents=True)
    (root / "data" / "stream" / "batch_000.jsonl").write_text(_row("old"))
    (root / "inbox").mkdir()
    (root / "inbox" / "a.jsonl").write_text(_row("a1") + _row("a2"))
    (root / "inbox" / "b.jsonl").write_text(_row("b1"))


def test_an_ingest_killed_at_any_point_ingests_each_source_exactly_once_on_rerun(tmp_path, monkeypatch):
    """Kill the ingest before each of its file operations (os.replace, the archive move) in turn;
    a re-run must end with every source's rows in the stream once and every source archived once."""
    real_replace, real_move = os.replace, shutil.move
    k = 0
    while True:
        k += 1
        root = tmp_path / f"k{k}"
        _fresh(root)
        calls = {"n": 0}

        def kill_at(real):
            def op(*a, **kw):
                calls["n"] += 1
                if calls["n"] == k:
                    raise KeyboardInterrupt(f"killed before file operation {k}")
                return real(*a, **kw)
            return op

        monkeypatch.setattr(inbox.os, "replace", kill_at(real_replace))
        monkeypatch.setattr(inbox.shutil, "move", kill_at(real_move))
        killed = False
        try:
            first = inbox.ingest(root, "data", NOW)
        except KeyboardInterrupt:
            killed, first = True, []
        monkeypatch.setattr(inbox.os, "replace", real_replace)
        monkeypatch.setattr(inbox.shutil, "move", real_move)
        second = inbox.ingest(root, "data", NOW)
        assert inbox.ingest(root, "data", NOW) == []
        stream = root / "data" / "stream"
        assert _ids(stream) == ["ja1", "ja2", "jb1", "jold"], f"killed before operation {k}"
        assert not list(stream.glob(".*")), f"temp files left after a kill before operation {k}"
        assert sorted(p.name.split("_", 1)[1] for p in (root / "inbox" / "processed").iterdir()) == \
            ["a.jsonl", "b.jsonl"]
        assert not list((root / "inbox").glob("*.jsonl"))
        ingested = [r["source"] for r in first + second if r["status"] == "ingested"]
        assert len(ingested) == len(set(ingested)), f"killed before operation {k}: {first + second}"
        # every batch ingested by the two runs is pending validation exactly once (what the monitoring
        # flow validates, versions or rejects; a killed run returned no records)
        pend = inbox.pending_batches(root, NOW)
        assert sorted(r["source"] for r in pend) == ["a.jsonl", "b.jsonl"]
        assert sorted(r["path"] for r in pend) == [f"data/stream/batch_00{i}.jsonl" for i in (1, 2)]
        if not killed:
            break
    assert k > 4  # every operation of both files was interrupted once


def test_a_killed_ingest_is_finished_by_the_rerun_and_reported_once(tmp_path, monkeypatch):
    """The reviewer's case: killed between writing the batch and archiving its source."""
    _fresh(tmp_path)
    (tmp_path / "inbox" / "b.jsonl").unlink()

    def crash(*a, **kw):
        raise KeyboardInterrupt("killed between os.replace and the archive")

    monkeypatch.setattr(inbox, "_archive", crash)
    with pytest.raises(KeyboardInterrupt):
        inbox.ingest(tmp_path, "data", NOW)
    monkeypatch.undo()
    (rec,) = inbox.ingest(tmp_path, "data", NOW)
    assert _ids(tmp_path / "data" / "stream") == ["ja1", "ja2", "jold"]
    assert rec["status"] == "ingested" and rec["recovered"] is True and rec["batch"] == 1
    assert rec["path"] == "data/stream/batch_001.jsonl" and Path(rec["archived"]).exists()


# ------------------------------------------------------------------------- B: files still arriving
def test_a_file_still_open_for_writing_is_left_for_the_next_run(tmp_path):
    (tmp_path / "inbox").mkdir()
    rows = [_row(i) for i in range(10)]
    with open(tmp_path / "inbox" / "big.jsonl", "w") as fh:
        fh.writelines(rows[:4])
        fh.flush()
        (rec,) = inbox.ingest(tmp_path, "data", NOW)
        assert rec["status"] == "waiting" and "open for writing" in rec["reason"]
        assert not list((tmp_path / "data" / "stream").glob("*.jsonl"))
        fh.writelines(rows[4:])
    (rec,) = inbox.ingest(tmp_path, "data", NOW)
    assert rec["status"] == "ingested" and rec["rows"] == 10
    assert len(_ids(tmp_path / "data" / "stream")) == 10


def test_a_file_modified_within_the_settle_time_is_left_until_it_settled(tmp_path, monkeypatch):
    """A writer that appends (and closes) every 0.1 s, e.g. a remote copy: the ingest waits the
    settle time, sees the file change and leaves it; once the writer is done it is ingested whole."""
    (tmp_path / "inbox").mkdir()
    path = tmp_path / "inbox" / "slow.jsonl"
    path.write_text(_row(0))

    def writer():
        for i in range(1, 20):
            time.sleep(0.1)
            with open(path, "a") as fh:
                fh.write(_row(i))

    t = threading.Thread(target=writer)
    t.start()
    try:
        (rec,) = inbox.ingest(tmp_path, "data", InboxParams(settle_s=0.5))
    finally:
        t.join()
    assert rec["status"] == "waiting" and "modified" in rec["reason"]
    assert path.exists()
    t0 = time.monotonic()
    (rec,) = inbox.ingest(tmp_path, "data", InboxParams(settle_s=0.5))
    assert rec["status"] == "ingested" and rec["rows"] == 20
    assert time.monotonic() - t0 < 5


def test_settle_time_is_a_param_with_a_clear_message():
    from driftkeel.config import ConfigError

    assert InboxParams().settle_s == 3.0
    assert parse_section("ops", {"inbox": {"settle_s": 0.25}}).inbox.settle_s == 0.25
    for bad in ("soon", -1):
        with pytest.raises(ConfigError, match="settle_s"):
            parse_section("ops", {"inbox": {"settle_s": bad}})


def test_temp_names_of_a_write_then_rename_are_never_picked_up(tmp_path):
    d = tmp_path / "inbox"
    d.mkdir()
    for name in ("x.jsonl.part", "y.tmp", ".z.jsonl", "w.jsonl.partial", "ok.jsonl"):
        (d / name).write_text(_row(1))
    assert [p.name for p in inbox.pending(d, "*")] == ["ok.jsonl"]


# ------------------------------------------------------------------- C: killed monitoring run, re-run
def test_a_batch_left_by_a_monitoring_run_killed_before_validate_is_rejected_by_the_next_run(tmp_path,
                                                                                              monkeypatch):
    import flows.monitoring as fm
    import flows.ops as fo
    from flows.stages import StageFailed

    (tmp_path / "params.yaml").write_text("ops:\n  inbox:\n    settle_s: 0\n")
    log = logging.getLogger("test-monitoring")
    monkeypatch.setattr(fo, "get_run_logger", lambda: log)
    monkeypatch.setattr(fm, "get_run_logger", lambda: log)
    rejected = []
    monkeypatch.setattr(fm, "ingest_new_batches", fo.ingest_new_batches.fn)
    monkeypatch.setattr(fm, "reject_batches", lambda *a, **k: rejected.append(fo.reject_batches.fn(*a, **k)))
    monkeypatch.setattr(fm, "restore_data_version", lambda *a, **k: None)
    monkeypatch.setattr(fm, "current_data_version", lambda root: None)
    monkeypatch.setattr(fm, "run_group", lambda p: p)
    (tmp_path / "inbox").mkdir()
    bad = json.dumps({"judgement_id": "j1", "label": "???"}) + "\n"
    (tmp_path / "inbox" / "bad_batch.jsonl").write_text(bad)

    def killed(stage, *a, **k):
        raise KeyboardInterrupt("killed before validate")

    from driftkeel.validation.validate import DATA_REJECTED

    def validate_fails(stage, *a, **k):
        raise StageFailed(stage, 1, f"{DATA_REJECTED} quarantine rate too high")

    def lock_busy(stage, *a, **k):
        raise StageFailed(stage, 1, "ERROR: Unable to acquire lock", transient=True)

    def timed_out(stage, *a, **k):
        raise StageFailed(stage, -9, "[killed after 600 s]")

    monkeypatch.setattr(fm, "repro_stage", killed)
    with pytest.raises(KeyboardInterrupt):
        fm.monitoring.fn(root=str(tmp_path))
    assert [p.name for p in (tmp_path / "data" / "stream").glob("*.jsonl")] == ["batch_000.jsonl"]
    # a validate that failed for another reason than the data rejects nothing: the batch stays pending
    for infra in (lock_busy, timed_out):
        monkeypatch.setattr(fm, "repro_stage", infra)
        with pytest.raises(StageFailed):
            fm.monitoring.fn(root=str(tmp_path))
        assert [p.name for p in (tmp_path / "data" / "stream").glob("*.jsonl")] == ["batch_000.jsonl"]
        assert rejected == [] and len(inbox.pending_batches(tmp_path, NOW)) == 1
    monkeypatch.setattr(fm, "repro_stage", validate_fails)
    with pytest.raises(StageFailed):
        fm.monitoring.fn(root=str(tmp_path))
    assert not list((tmp_path / "data" / "stream").glob("*.jsonl"))  # taken out again
    ((rec,),) = rejected
    assert rec["status"] == "rejected" and rec["source"] == "bad_batch.jsonl"
    reason = Path(rec["moved_to"] + ".reason.txt").read_text()
    assert "quarantine rate too high" in reason and "source bad_batch.jsonl, ingested as data/stream/batch_000" in reason
    # the user's file itself is in rejected/, and no longer in processed/
    assert Path(rec["moved_to"]).name.endswith("_bad_batch.jsonl") and Path(rec["moved_to"]).read_text() == bad
    assert not list((tmp_path / "inbox" / "processed").glob("*bad_batch.jsonl"))
    assert inbox.pending_batches(tmp_path, NOW) == []


def test_settled_batches_are_no_longer_pending(tmp_path):
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "a.jsonl").write_text(_row(1))
    (rec,) = inbox.ingest(tmp_path, "data", NOW)
    (pend,) = inbox.pending_batches(tmp_path, NOW)
    assert pend["path"] == rec["path"] == "data/stream/batch_000.jsonl"
    inbox.settle(tmp_path, [pend], NOW)
    assert inbox.pending_batches(tmp_path, NOW) == []
    assert not list((tmp_path / "inbox").glob(".*"))


# ----------------------------------------------------------------------------- D, E: status numbers
def test_status_counts_the_inbox_files_of_the_configured_pattern(tmp_path):
    from driftkeel.ops.status import project_status

    (tmp_path / "params.yaml").write_text("ops:\n  inbox:\n    folder: inbox\n    pattern: '*.json'\n")
    (tmp_path / "inbox").mkdir()
    for i in range(3):
        (tmp_path / "inbox" / f"drop{i}.json").write_text('{"a":1}\n')
    (tmp_path / "inbox" / "notes.jsonl").write_text('{"a":1}\n')
    assert project_status(tmp_path)["queues"]["inbox_pending"] == 3


def test_stream_batches_are_ordered_by_their_number_past_batch_999(tmp_path):
    from driftkeel.data.schemas import stream_files
    from driftkeel.ops.status import project_status

    s = tmp_path / "data" / "stream"
    s.mkdir(parents=True)
    for name in ("batch_998.jsonl", "batch_999.jsonl", "batch_x.jsonl", "batch_0007.jsonl"):
        (s / name).write_text("{}\n")
    n = inbox.next_batch_index(s)
    (s / f"batch_{n:03d}.jsonl").write_text("{}\n")
    assert [p.name for p in stream_files(tmp_path / "data")] == [
        "batch_0007.jsonl", "batch_998.jsonl", "batch_999.jsonl", "batch_1000.jsonl", "batch_x.jsonl"]
    assert project_status(tmp_path)["data"]["last_batch"] == "batch_x.jsonl"
    (s / "batch_x.jsonl").unlink()
    assert project_status(tmp_path)["data"]["last_batch"] == "batch_1000.jsonl"


# -------------------------------------------------------------------- F: flow-failed hook, deployment
def test_the_flow_failed_hook_finds_the_root_of_a_deployment_run(tmp_path, monkeypatch):
    import driftkeel.notify
    from prefect import flow

    import flows.ops as fo

    calls = []
    monkeypatch.setattr(driftkeel.notify, "notify_project",
                        lambda root, event, summary, **kw: calls.append((str(root), event)) or {})

    @flow(name="dk-hook-probe")
    def probe(root: str = str(tmp_path)):
        raise RuntimeError("stage failed")

    state = SimpleNamespace(message="stage failed", type=SimpleNamespace(value="FAILED"))
    run = SimpleNamespace(parameters={}, name="brave-fox", id="1234")  # a deployment run: parameters {}
    fo.notify_flow_failed(probe, run, state)
    assert calls == [(str(tmp_path), "flow-failed")]
    calls.clear()
    fo.notify_flow_failed(probe, SimpleNamespace(parameters={"root": "/else"}, name="x", id="1"), state)
    assert calls == [("/else", "flow-failed")]
    # Prefect runs on_failure hooks for Failed states only: both flows also hook on_crashed
    import flows.monitoring as fm
    import flows.retraining as fr

    for f in (fm.monitoring, fr.retraining):
        assert fo.notify_flow_failed in f.on_crashed_hooks and fo.notify_flow_failed in f.on_failure_hooks
    calls.clear()

    @flow(name="dk-hook-probe-2")
    def no_default(root: str):
        raise RuntimeError("x")

    monkeypatch.setenv("DRIFTKEEL_ROOT", str(tmp_path / "env"))
    fo.notify_flow_failed(no_default, run, state)
    assert calls == [(str(tmp_path / "env"), "flow-failed")]


# ------------------------------------------------------------------------ G: scale-out JSONL readers
def test_scaleout_read_texts_splits_on_newlines_only_and_names_bad_lines(tmp_path):
    from flows.scaleout import read_texts

    p = tmp_path / "cur.jsonl"
    rows = [{"prompt": "line one\u2028line two"}, {"prompt": "nel\x85inside"}, {"text": "plain"},
            {"prompt": None, "text": "t"}]
    p.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n", encoding="utf-8")
    assert read_texts(p) == ["line one\u2028line two", "nel\x85inside", "plain", "t"]
    p.write_text(p.read_text(encoding="utf-8") + "{broken\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"cur.jsonl:6: .*JSON"):
        read_texts(p)
    p.write_text('{"prompt": "a"}\n{"prompt": null}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"cur.jsonl:2: .*'prompt'"):
        read_texts(p)


def test_scaleout_read_pool_splits_on_newlines_only_and_names_bad_lines(tmp_path):
    from flows.scaleout import read_pool

    pool = tmp_path / "pool.jsonl"
    good = {"prompt": "p\u2028q", "response_a": "a\x85b", "response_b": "c"}
    pool.write_text(json.dumps(good, ensure_ascii=False) + "\n", encoding="utf-8")
    assert read_pool(pool) == (["p\u2028q"], ["a\x85b"], ["c"])
    pool.write_text(json.dumps(good) + "\n" + json.dumps({**good, "response_b": None}) + "\n")
    with pytest.raises(ValueError, match=r"pool.jsonl:2: 'response_b'"):
        read_pool(pool)
    pool.write_text(json.dumps(good) + "\n[1, 2]\n")
    with pytest.raises(ValueError, match=r"pool.jsonl:2: not a JSON object"):
        read_pool(pool)


# ----------------------------------------------------------------------- H: nested data_dir (data/raw)
def _git(root, *args, env):
    return subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True, text=True)


def test_a_nested_data_dir_checks_its_own_dvc_file_in_git(tmp_path, git_env, monkeypatch):
    from driftkeel.ops.status import data_status

    import flows.ops as fo

    for k, v in git_env.items():
        monkeypatch.setenv(k, v)
    root = tmp_path
    _git(root, "init", "-q", env=git_env)
    (root / "params.yaml").write_text("common:\n  data_dir: data/raw\n")
    (root / "data").mkdir()
    dvc = root / "data" / "raw.dvc"
    dvc.write_text("outs:\n- md5: abc.dir\n  nfiles: 1\n  path: raw\n")
    (root / "raw.dvc").write_text("a decoy at the root, committed\n")
    _git(root, "add", "params.yaml", "raw.dvc", env=git_env)
    _git(root, "commit", "-qm", "init", env=git_env)
    common = parse_section("common", {"data_dir": "data/raw"})
    assert data_status(root, common)["dvc_file_committed"] is False  # data/raw.dvc is untracked
    _git(root, "add", "data/raw.dvc", env=git_env)
    _git(root, "commit", "-qm", "data", env=git_env)
    assert data_status(root, common)["dvc_file_committed"] is True
    # the monitoring flow's version step sees a changed (uncommitted) data/raw.dvc as new data
    dvc.write_text("outs:\n- md5: abc.dir\n  nfiles: 1\n  path: raw\n# edited\n")
    called = []
    monkeypatch.setattr(inbox, "version_data", lambda *a, **k: called.append(a) or {
        "data_version_before": "abc.dir", "data_version": "abc.dir", "committed": None, "pushed": None})
    monkeypatch.setattr(fo, "get_run_logger", lambda: logging.getLogger("t"))
    fo.version_new_data.fn(str(root), [], "abc.dir")
    assert called and called[0][1] == "data/raw"
