"""Notifications from the flows (real Prefect server, real `dvc repro`, a local HTTP receiver on 127.0.0.1):
a drift alarm -> webhook, a failed gate -> a saved Prefect notification block, a failed flow -> webhook.
Undelivered notifications and the event filter are covered without Prefect in tests/ops/test_notify.py."""
import pytest

from flows_conftest import set_decision, set_gate, set_ops

from flows.monitoring import monitoring
from flows.retraining import retraining

pytestmark = pytest.mark.slow


def test_drift_alarm_goes_to_the_webhook_only_when_enabled(dvc_project, prefect_server, receiver):
    set_decision(dvc_project, "collect-labels")
    off = monitoring(root=str(dvc_project))  # default params: notifications disabled
    assert off["notification"]["sent"] is False and "enabled is false" in off["notification"]["skipped"]
    assert receiver.wait(1, timeout_s=1) == []

    set_ops(dvc_project, notify={"enabled": True, "webhook_url": receiver.url})
    same = monitoring(root=str(dvc_project))   # the same decision, acted on already: no second alarm
    assert same["decision_acted_before"] is True and same["notification"] is None
    assert receiver.wait(1, timeout_s=1) == []
    set_decision(dvc_project, "collect-labels", batch=4)     # a new batch, a new decision
    out = monitoring(root=str(dvc_project))
    assert out["notification"]["sent"] is True and out["decision_acted_before"] is False
    (req,) = receiver.wait(1)
    body = req["json"]
    assert req["path"] == "/hook" and req["headers"]["Content-Type"] == "application/json"
    assert body["event"] == "drift-alarm" and body["project"] == dvc_project.name
    assert body["details"]["decision"] == "collect-labels" and body["details"]["signals"] == ["prompt"]
    report = (dvc_project / "outputs" / "drift" / "report.html").resolve().as_uri()
    assert body["links"] == {"drift_report": report} and out["drift_report"] == report
    assert body["text"].startswith(f"[{dvc_project.name}] drift-alarm: batch 4: collect-labels")



def test_failed_gate_goes_through_a_saved_prefect_notification_block(dvc_project, prefect_server, receiver):
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    CustomWebhookNotificationBlock(name="driftkeel", url=receiver.url, allow_private_urls=True,
                                   json_data={"text": "{{subject}}\n{{body}}"}).save("driftkeel-alerts",
                                                                                    overwrite=True)
    set_ops(dvc_project, notify={"enabled": True, "prefect_block": "custom-webhook/driftkeel-alerts",
                                 "events": ["gate-failed"]})
    set_gate(dvc_project, passed=False)
    out = retraining(root=str(dvc_project), drift_report="file:///tmp/report.html")
    assert out["promoted"] is False
    assert out["notification"]["sent"] is True
    assert out["notification"]["deliveries"] == [{"channel": "prefect_block",
                                                  "block": "custom-webhook/driftkeel-alerts"}]
    (req,) = receiver.wait(1)
    text = req["json"]["text"]
    assert text.startswith(f"[{dvc_project.name}] gate-failed: challenger not promoted: not promoted: gate failed")
    assert "drift_report: file:///tmp/report.html" in text


def test_failed_flow_notifies(dvc_project, prefect_server, receiver):
    set_ops(dvc_project, notify={"enabled": True, "webhook_url": receiver.url, "events": ["flow-failed"]})
    set_decision(dvc_project, "bogus")  # drift writes a decision the flow refuses
    with pytest.raises(ValueError, match="unknown action 'bogus'"):
        monitoring(root=str(dvc_project))
    (req,) = receiver.wait(1)
    assert req["json"]["event"] == "flow-failed"
    assert "driftkeel-monitoring run" in req["json"]["summary"] and "failed" in req["json"]["summary"]
