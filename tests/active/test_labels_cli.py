"""`driftkeel labels export|import` (the typer sub-app; driftkeel/cli.py registers it)."""
import json

import typer
from typer.testing import CliRunner

from driftkeel.active.cli import labels_app


def _app():
    app = typer.Typer()
    app.add_typer(labels_app, name="labels")

    @app.command("noop")
    def noop() -> None:   # a second command keeps typer from collapsing the group
        pass
    return app


def test_export_then_import_roundtrip(tmp_path):
    (tmp_path / "params.yaml").write_text("common: {seed: 0}\n")
    sel = tmp_path / "outputs" / "select"
    sel.mkdir(parents=True)
    q = {"pair_id": "pool-1", "prompt_id": "p1", "prompt": "q?", "response_a": "A", "response_b": "B",
         "policy_version": "v", "reason": "bald=0.9"}
    (sel / "queue.jsonl").write_text(json.dumps(q) + "\n")
    (tmp_path / "data" / "stream").mkdir(parents=True)
    runner = CliRunner()
    r = runner.invoke(_app(), ["labels", "export", "--root", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert (sel / "label_studio_tasks.json").exists() and (sel / "argilla_records.jsonl").exists()
    ls_export = [{"data": {"pair_id": "pool-1"}, "annotations": [
        {"completed_by": {"email": "ann@x"}, "lead_time": 9.0, "result": [{"value": {"selected": "left"}}]}]}]
    f = tmp_path / "export.json"
    f.write_text(json.dumps(ls_export))
    r = runner.invoke(_app(), ["labels", "import", str(f), "--root", str(tmp_path)])
    assert r.exit_code == 0, r.output
    row = json.loads((tmp_path / "data" / "stream" / "batch_000.jsonl").read_text())
    assert row["label"] == "a" and row["annotator_id"] == "ann@x" and row["response_time_s"] == 9.0
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"pair_id": "zzz", "label": "a", "annotator_id": "x"}) + "\n")
    r = runner.invoke(_app(), ["labels", "import", str(bad), "--root", str(tmp_path)])
    assert r.exit_code == 1 and "pair_id not in the labelling queue" in r.output
