"""Every `driftkeel` command reports a bad params.yaml as one line (exit 2), not a traceback; and
`driftkeel drift --root P` keeps its embedding cache under P wherever it is run from."""
import json

import pytest
from typer.testing import CliRunner

from driftkeel.cli import app

COMMANDS = [
    ["demo-data"],
    ["status"],
    ["metrics"],
    ["rollback", "--reason", "test"],
    ["labels", "export"],
    ["mlflow-sync"],
    ["prepare-data"],
]


def _bad_root(tmp_path, text):
    root = tmp_path / "proj"
    root.mkdir()
    if text is not None:
        (root / "params.yaml").write_text(text)
    return root


@pytest.mark.parametrize("params_text", ["common:\n  seed: not-a-number\n", "nonsense_section: {}\n", None],
                         ids=["invalid-value", "unknown-section", "missing"])
@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c[0] + ("-" + c[1] if len(c) > 1 and not c[1].startswith("-") else ""))
def test_bad_params_give_one_line_error_and_exit_2(tmp_path, cmd, params_text):
    root = _bad_root(tmp_path, params_text)
    r = CliRunner().invoke(app, [*cmd, "--root", str(root)])
    out = r.output + (r.stderr if r.stderr_bytes is not None else "")
    assert r.exit_code == 2, (r.exit_code, out, r.exception)
    assert "error:" in out and "params" in out, out
    assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit), r.exception
    assert "Traceback" not in out


def test_drift_with_bad_params_gives_one_line_error(tmp_path):
    root = _bad_root(tmp_path, "drift:\n  alpha: 7\n")
    f = tmp_path / "w.jsonl"
    f.write_text(json.dumps({"prompt": "hello"}) + "\n")
    r = CliRunner().invoke(app, ["drift", "--reference", str(f), "--current", str(f), "--root", str(root),
                                 "--out", str(tmp_path / "out")])
    assert r.exit_code == 2 and "error:" in r.output and "alpha" in r.output, r.output


def test_drift_cache_lives_under_root_not_the_working_directory(tmp_path, monkeypatch):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "params.yaml").write_text("drift:\n  n_permutations: 49\n  topics: 0\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("DRIFTKEEL_ROOT", raising=False)
    for name, topic in (("ref", "cooking pasta"), ("cur", "filing tax returns")):
        (elsewhere / f"{name}.jsonl").write_text(
            "\n".join(json.dumps({"prompt": f"question {i} about {topic} please"}) for i in range(40)) + "\n")
    r = CliRunner().invoke(app, ["drift", "--reference", "ref.jsonl", "--current", "cur.jsonl",
                                 "--out", "out", "--root", str(root)])
    assert r.exit_code == 0, r.output
    assert (root / ".cache" / "embeddings.sqlite").exists()
    assert not (elsewhere / ".cache").exists()
