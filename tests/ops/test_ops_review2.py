"""Second review of the operations code (each test failed on the code before its fix): secrets in
`driftkeel status`, a notify section read apart from the rest of `ops`, a stale screenshot, an empty
sharded-drift window, a project in a subfolder of a git repo, a decision acted on twice, a validate that
failed for another reason than the data."""
import json
import subprocess

import pytest


def test_status_masks_the_password_of_the_tracking_uri(tmp_path, monkeypatch):
    from driftkeel.ops.status import model_status, prefect_status
    from driftkeel.config import CommonParams

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://alice:S3cretPassw0rd@127.0.0.1:9/")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    out = model_status(tmp_path, CommonParams())
    assert "error" in out and "S3cretPassw0rd" not in json.dumps(out)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: "http://bob:Hunter2pass@127.0.0.1:9/api"}):
        p = prefect_status(timeout_s=1)
    assert "error" in p and "Hunter2pass" not in json.dumps(p)


def test_a_mistake_elsewhere_in_ops_does_not_silence_notifications(tmp_path):
    from driftkeel.notify import load_notify_params, notify_project

    (tmp_path / "params.yaml").write_text("ops:\n  inbox: {settle_s: 900}\n"
                                          "  notify: {enabled: true, webhook_url: 'http://127.0.0.1:9/hook'}\n")
    params = load_notify_params(tmp_path)
    assert params.enabled and params.webhook_url == "http://127.0.0.1:9/hook"
    out = notify_project(tmp_path, "flow-failed", "x failed")
    assert "skipped" not in out and out["errors"]          # tried (nothing listens on port 9), not skipped
    (tmp_path / "params.yaml").write_text("ops:\n  notify: {enabled: maybe}\n")
    bad = notify_project(tmp_path, "flow-failed", "x failed")
    assert bad["sent"] is False and bad["skipped"].startswith("invalid params: ops.notify.enabled")
    assert bad["skipped"].count("invalid params") == 1


def test_a_failed_screenshot_does_not_return_an_earlier_png(tmp_path, monkeypatch):
    from driftkeel.ops.browser import screenshot

    monkeypatch.setenv("DRIFTKEEL_CHROMIUM", "/bin/false")
    (tmp_path / "r.html").write_text("<html><body>new</body></html>")
    (tmp_path / "r.png").write_bytes(b"\x89PNG yesterday")
    with pytest.raises(RuntimeError, match="no screenshot"):
        screenshot(tmp_path / "r.html", tmp_path / "r.png")
    assert not (tmp_path / "r.png").exists()


def test_sharded_drift_of_an_empty_window_has_every_decision_field():
    from driftkeel.ops import sharded

    out = sharded.combine_drift([], 0.05)
    assert set(sharded.DECISION_FIELDS) <= set(out) and out["alarm"] is False and out["n_shards_alarmed"] == 0
    serial = sharded.drift_check_serial(["a prompt"] * 50, [], shard_size=5000)
    assert sharded.result_differences(out, serial) == [] and serial["insufficient_data"]


def test_a_project_in_a_subfolder_of_a_git_repo_is_a_git_project(tmp_path, git_env):
    from driftkeel.ops.inbox import is_git_repo

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, env=git_env, check=True)
    (tmp_path / "proj").mkdir()
    assert is_git_repo(tmp_path) and is_git_repo(tmp_path / "proj")
    other = tmp_path.parent / f"{tmp_path.name}-nogit"
    other.mkdir()
    assert not is_git_repo(other)


def test_a_decision_is_acted_on_once(tmp_path):
    from flows.ops import decision_already_acted, mark_decision_acted

    d = {"action": "retrain-all", "current_batch": 3, "signals": ["prompt"], "reasons": ["x"]}
    assert not decision_already_acted(str(tmp_path), d)
    mark_decision_acted(str(tmp_path), d)
    assert decision_already_acted(str(tmp_path), d)
    assert not decision_already_acted(str(tmp_path), {**d, "current_batch": 4})   # new data: a new decision


def test_only_the_validate_stages_verdict_on_the_data_rejects_batches():
    from driftkeel.validation.validate import DATA_REJECTED
    from flows.ops import validate_rejected_the_data
    from flows.stages import StageFailed

    assert validate_rejected_the_data(StageFailed("validate", 1, f"...\n{DATA_REJECTED} 40.0% of rows quarantined"))
    assert not validate_rejected_the_data(StageFailed("validate", 1, "ERROR: lock", transient=True))
    assert not validate_rejected_the_data(StageFailed("validate", -9, "[killed after 60 s]"))
    assert not validate_rejected_the_data(StageFailed("validate", 1, "validate: MLflow store unreachable"))
    assert not validate_rejected_the_data(StageFailed("validate", 1, "Traceback ... KeyError"))


def test_two_monitoring_runs_cannot_hold_the_inbox_at_once(tmp_path):
    """Two overlapping ingests lost one batch and duplicated another (the second took the first's journal
    entries for a killed run's leftovers); the inbox is now held from ingest to settle / reject."""
    import multiprocessing as mp

    from driftkeel.config import InboxParams
    from driftkeel.ops.inbox import InboxBusy, inbox_lock

    params = InboxParams(folder="inbox")
    with inbox_lock(tmp_path, params):
        with pytest.raises(InboxBusy, match="another monitoring run"):
            with inbox_lock(tmp_path, params):
                pass
        # another process too (an OS lock, not a flag in this process)
        ctx = mp.get_context("spawn")
        with ctx.Pool(1) as pool:
            assert pool.apply(_try_lock, (str(tmp_path),)) == "busy"
    with inbox_lock(tmp_path, params):      # released
        pass


def _try_lock(root: str) -> str:
    from driftkeel.config import InboxParams
    from driftkeel.ops.inbox import InboxBusy, inbox_lock

    try:
        with inbox_lock(root, InboxParams(folder="inbox")):
            return "held"
    except InboxBusy:
        return "busy"


def test_stage_output_tails_and_versioning_errors_are_masked(monkeypatch, tmp_path):
    from driftkeel.ops.inbox import VersioningFailed, _run
    from flows.stages import _tail

    monkeypatch.setenv("DRIFTKEEL_TEST_TOKEN", "tok-5up3r-s3cret")
    text = "push to https://user:pa55word@remote.example/store failed; token tok-5up3r-s3cret"
    masked = _tail(text)
    assert "pa55word" not in masked and "tok-5up3r-s3cret" not in masked and "remote.example" in masked
    with pytest.raises(VersioningFailed) as err:
        _run(["sh", "-c", f"echo '{text}' >&2; exit 3"], tmp_path)
    assert "pa55word" not in str(err.value) and "tok-5up3r-s3cret" not in str(err.value)
