"""New data arriving, for real: a copy of this project with small demo data, the real validate ->
aggregate -> drift stages under `dvc repro`, the monitoring flow on the real Prefect server, git, the
repo's local DVC remote and the MLflow SQLite store in the project."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from flows_conftest import REPO, set_ops

from flows.monitoring import monitoring

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
SMALL = {
    "data": {"n_batches": 4, "comparisons_per_batch": 40, "n_annotators": 9, "new_topics_from_batch": 2,
             "concept_drift_batch": 3, "pool_change_batch": 3, "n_sft_demos": 20, "pool_size": 20,
             "n_eval_pairs": 20, "n_eval_prompts": 4},
    "aggregate": {"method": "majority", "review_confidence_threshold": 0.5, "bootstrap_samples": 0,
                  "reference_batches": 1},
    "drift": {"reference_batches": 1, "min_window": 20, "n_permutations": 100},
}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base.get(k, {}), v) if isinstance(v, dict) else v
    return out


def _run(cmd, cwd, env=None):
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{cmd} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


@pytest.fixture
def project(tmp_path):
    """This checkout's tracked files + 3 demo batches (batch 3 held back as the 'new' file), committed."""
    proj = tmp_path / "proj"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        if (REPO / rel).is_file() and not rel.startswith(("tests/", "benchmarks/")):
            (proj / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, proj / rel)
    params = yaml.safe_load((proj / "params.yaml").read_text())
    (proj / "params.yaml").write_text(yaml.safe_dump(_merge(params, SMALL), sort_keys=False))
    (proj / "data.dvc").unlink(missing_ok=True)
    cache = REPO / ".cache" / "embeddings.sqlite"  # MiniLM vectors already computed here, if any
    if cache.exists():
        (proj / ".cache").mkdir()
        shutil.copy2(cache, proj / ".cache" / cache.name)
    _run([BIN / "driftkeel", "demo-data", "--root", proj], proj)
    held = tmp_path / "incoming.jsonl"
    shutil.move(proj / "data" / "stream" / "batch_003.jsonl", held)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    _run(["git", "init", "-q", "-b", "main"], proj)
    _run([BIN / "dvc", "add", "data"], proj)
    _run([*git, "add", "-A"], proj)
    _run([*git, "commit", "-qm", "project with 3 batches"], proj)
    return proj, held


def _history(proj: Path) -> pd.DataFrame:
    return pd.read_csv(proj / "outputs" / "drift" / "plots" / "history.csv")


def test_a_batch_dropped_in_the_inbox_is_validated_versioned_and_extends_the_drift_history(project,
                                                                                          prefect_server):
    """One monitoring run (the real stages cost ~20 s each here): the project holds batches 0-2, the inbox
    one new file; afterwards the stream, data.dvc, the remote and the drift history hold batch 3 too."""
    proj, held = project
    os.environ.setdefault("GIT_AUTHOR_NAME", "t")  # the flow commits data.dvc with git's identity
    version_before = yaml.safe_load((proj / "data.dvc").read_text())["outs"][0]["md5"]
    assert sorted(p.name for p in (proj / "data" / "stream").iterdir()) == [f"batch_00{i}.jsonl" for i in range(3)]

    (proj / "inbox").mkdir()
    shutil.copy2(held, proj / "inbox" / "2026-03-04-vendor-export.jsonl")
    out = monitoring(root=str(proj), trigger_retraining=False)

    # picked up as the next batch, original archived unchanged
    (rec,) = out["ingested"]
    assert rec["status"] == "ingested" and rec["batch"] == 3 and rec["path"] == "data/stream/batch_003.jsonl"
    assert (proj / "data/stream/batch_003.jsonl").read_bytes() == held.read_bytes()  # batch field already 3
    assert not list((proj / "inbox").glob("*.jsonl"))
    (archived,) = (proj / "inbox" / "processed").iterdir()
    assert archived.read_bytes() == held.read_bytes()
    # validated by the real validate stage
    batches = pd.read_csv(proj / "outputs" / "validate" / "plots" / "batches.csv")
    assert list(batches["batch"]) == [0, 1, 2, 3]
    assert int(batches.loc[batches["batch"] == 3, "rows_in"].iloc[0]) == len(held.read_text().splitlines())
    # versioned: data.dvc changed and committed, pushed to the repo's local DVC remote
    v = out["data_version"]
    assert v["data_version_before"] == version_before and v["changed"] and v["pushed"] == "local"
    assert v["data_version"] == yaml.safe_load((proj / "data.dvc").read_text())["outs"][0]["md5"]
    assert subprocess.run(["git", "status", "--porcelain", "data.dvc"], cwd=proj, capture_output=True,
                          text=True).stdout == ""
    log = _run(["git", "log", "-1", "--format=%H %s", "--", "data.dvc"], proj)
    assert log.startswith(v["committed"]) and "batch_003.jsonl" in log
    cloud = json.loads(_run([BIN / "dvc", "status", "--cloud", "--json", "data.dvc"], proj) or "{}")
    assert cloud == {}, cloud  # everything of the new version is in the remote
    assert (proj / ".dvc_remote" / "files" / "md5").is_dir()
    # the drift history grew by exactly one point: the new batch, now the current one
    hist = _history(proj)
    assert list(hist["batch"]) == [0, 1, 2, 3] and out["history_points"] == 4
    assert pd.notna(hist["p_value"].iloc[3]) and not hist["in_reference"].iloc[3]
    assert json.loads((proj / "outputs/drift/decision.json").read_text())["current_batch"] == 3
    # and the stages are recorded against the new data: nothing left to run
    assert "up to date" in _run([BIN / "dvc", "status", "drift"], proj).lower()
