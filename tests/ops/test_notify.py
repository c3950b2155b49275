"""Notifications without Prefect: a real HTTP POST to a local receiver on 127.0.0.1."""
import pytest

from driftkeel.config import ConfigError, NotifyParams
from driftkeel.notify import load_notify_params, message, notify, notify_project


def test_disabled_by_default_sends_nothing(receiver, tmp_path):
    assert load_notify_params(tmp_path) == NotifyParams()  # no params.yaml: defaults
    assert NotifyParams().enabled is False
    out = notify(NotifyParams(webhook_url=receiver.url), "drift-alarm", "x")
    assert out == {"sent": False, "skipped": "ops.notify.enabled is false"}
    assert receiver.wait(1, timeout_s=0.5) == []


def test_webhook_gets_one_json_message(receiver):
    params = NotifyParams(enabled=True, webhook_url=receiver.url)
    out = notify(params, "gate-failed", "reward accuracy 0.61 < 0.7", project="demo",
                 details={"version": 3}, links={"drift_report": "file:///r.html", "empty": None})
    assert out["sent"] and out["errors"] == []
    assert out["deliveries"] == [{"channel": "webhook", "url": "http://127.0.0.1:%d/***" % receiver.server.server_address[1],
                                  "status_code": 200}]
    (req,) = receiver.wait(1)
    body = req["json"]
    assert req["headers"]["Content-Type"] == "application/json"
    assert body["event"] == "gate-failed" and body["project"] == "demo" and body["details"] == {"version": 3}
    assert body["links"] == {"drift_report": "file:///r.html"}
    assert body["text"] == "[demo] gate-failed: reward accuracy 0.61 < 0.7\n- drift_report: file:///r.html"


def test_event_filter_and_missing_channel():
    only_gate = NotifyParams(enabled=True, webhook_url="http://127.0.0.1:9/x", events=["gate-failed"])
    assert notify(only_gate, "drift-alarm", "x")["skipped"] == "drift-alarm not in ops.notify.events"
    none = notify(NotifyParams(enabled=True), "drift-alarm", "x")
    assert none["sent"] is False and "no channel" in none["skipped"]
    with pytest.raises(ValueError, match="unknown notification event"):
        message("drift", "x")


def test_an_undeliverable_notification_is_reported_not_raised(receiver):
    dead = NotifyParams(enabled=True, webhook_url="http://127.0.0.1:9/hook", timeout_s=2)  # nothing on port 9
    out = notify(dead, "drift-alarm", "x")
    assert out["sent"] is False and out["errors"][0]["channel"] == "webhook"
    receiver.status = 500
    failing = notify(NotifyParams(enabled=True, webhook_url=receiver.url), "drift-alarm", "x")
    assert failing["sent"] is False and "500" in failing["errors"][0]["error"]


def test_bad_block_name_is_an_error_not_a_crash():
    out = notify(NotifyParams(enabled=True, prefect_block="no-slash"), "drift-alarm", "x")
    assert out["sent"] is False and "<block-type-slug>/<name>" in out["errors"][0]["error"]


def test_project_params_are_read_and_validated(tmp_path, receiver):
    (tmp_path / "params.yaml").write_text(f"ops:\n  notify:\n    enabled: true\n    webhook_url: {receiver.url}\n")
    assert notify_project(tmp_path, "flow-failed", "boom")["sent"] is True
    assert receiver.wait(1)[0]["json"]["project"] == tmp_path.name
    (tmp_path / "params.yaml").write_text("ops:\n  notify:\n    enabled: true\n    evnts: []\n")
    with pytest.raises(ConfigError, match=r"ops\.notify\.evnts"):
        load_notify_params(tmp_path)
    assert "invalid params" in notify_project(tmp_path, "flow-failed", "boom")["skipped"]


def test_the_webhook_url_is_a_secret_never_returned_nor_logged(receiver, caplog):
    """Slack-style webhook URLs carry their token in the path: neither the delivery record (printed in
    flow summaries) nor an HTTP error (logged, returned, sent to Prefect's log) may show it."""
    import json
    import logging

    secret = "T00000/B00000/XXXXsecretXXXX"
    url = receiver.url.rstrip("/") + "/services/" + secret
    ok = notify(NotifyParams(enabled=True, webhook_url=url), "gate-failed", "x")
    assert ok["sent"] and secret not in json.dumps(ok["deliveries"])
    receiver.status = 500
    with caplog.at_level(logging.WARNING):
        bad = notify(NotifyParams(enabled=True, webhook_url=url), "gate-failed", "x")
    assert bad["sent"] is False and "500" in bad["errors"][0]["error"]
    assert secret not in json.dumps(bad["errors"]) and secret not in caplog.text
    assert "services" not in caplog.text and "/***" in caplog.text


def test_secrets_in_the_summary_and_details_are_masked_before_sending(receiver, monkeypatch):
    """A flow-failed summary quotes the stage's output tail, which can hold a token from the
    environment, a URL with a password or the webhook URL itself: none of them may leave the process."""
    import json

    token = "hf_notifySECRET0042"
    monkeypatch.setenv("HF_TOKEN", token)
    hook = receiver.url.rstrip("/") + "/services/T0/B0/hookSECRET0043"
    summary = (f"retraining failed: dvc repro reward: HTTP 401 for https://bob:pw-SECRET-0044@mlflow.example/api "
               f"with token {token}; webhook {hook}")
    out = notify(NotifyParams(enabled=True, webhook_url=hook), "flow-failed", summary,
                 details={"tail": f"HF_TOKEN={token}", "api_key": "k-SECRET-0045"},
                 links={"run": "https://alice:pw-SECRET-0046@mlflow.example/#/runs/1"})
    assert out["sent"]
    (req,) = receiver.wait(1)
    sent = json.dumps(req["json"]) + json.dumps(out["message"])
    for secret in (token, "pw-SECRET-0044", "hookSECRET0043", "k-SECRET-0045", "pw-SECRET-0046"):
        assert secret not in sent, secret
    body = req["json"]
    assert body["summary"].startswith("retraining failed: dvc repro reward: HTTP 401 for https://bob:***@")
    assert "***" in body["text"] and body["details"]["api_key"] == "***"
