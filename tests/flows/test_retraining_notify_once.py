"""The weekly retraining flow on a project where nothing changed since a run whose gate failed: dvc repro
runs nothing and the flow re-reads that run's registry.json. Its gate-failed notification must not be sent
again every week; a new register record (or a failed delivery) notifies again."""
import json
import logging

import flows.retraining as R


def test_gate_failed_is_notified_once_per_register_record(tmp_path, monkeypatch):
    reg = tmp_path / "outputs" / "register" / "registry.json"
    reg.parent.mkdir(parents=True)
    reg.write_text(json.dumps({"gate_passed": False, "promoted": False, "decision": "gate failed",
                               "models": {"policy": {"version": 3}}}))
    sent, deliver = [], {"ok": True}
    ran = {"register": False}
    monkeypatch.setattr(R, "repro_stage", lambda s, root, timeout_s=None, env=None:
                        {"stage": s, "up_to_date": not (s == "register" and ran["register"])})
    monkeypatch.setattr(R, "read_output_json", lambda root, rel: json.loads((tmp_path / rel).read_text()))
    monkeypatch.setattr(R, "send_notification",
                        lambda root, event, *a, **k: sent.append(event) or {"sent": deliver["ok"]})
    monkeypatch.setattr(R, "get_run_logger", lambda: logging.getLogger("test"))
    monkeypatch.setattr(R, "outputs_dir", lambda root: "outputs")

    deliver["ok"] = False                       # the webhook is down: not marked, tried again next week
    R.retraining.fn(root=str(tmp_path))
    deliver["ok"] = True
    first = R.retraining.fn(root=str(tmp_path))
    assert sent == ["gate-failed", "gate-failed"] and first["notification"] == {"sent": True}
    for _ in range(2):                          # nothing changed: no new notification
        again = R.retraining.fn(root=str(tmp_path))
        assert again["notification"]["skipped"] == "already notified for this register record"
        assert again["register_ran"] is False
    assert len(sent) == 2
    ran["register"] = True                      # a new register run whose gate failed again
    reg.write_text(json.dumps({"gate_passed": False, "decision": "gate failed", "models": {"policy": {"version": 4}}}))
    assert R.retraining.fn(root=str(tmp_path))["register_ran"] is True
    assert len(sent) == 3
