"""`dvc repro` on a small slice of the shared real files: params-real.yaml with a tiny override, in a temp
git + DVC project (prepare-data -> dvc add data -> dvc repro).

CI runs the data stages (validate, aggregate, drift: real text through Great Expectations, the
aggregation and the MiniLM drift check). The whole chain, training included (~270 s on 2 cores), is
`extended`: `bash scripts/test.sh --extended` (or DRIFTKEEL_EXTENDED_TESTS=1) runs it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from shared_data import shared_path

REPO = Path(__file__).resolve().parents[2]
SHARED = shared_path()
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data not found at {SHARED}")]

TINY = {
    "common": {"tiny_model": {"vocab_size": 400, "n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 192},
               "max_response_tokens": 96},
    "drift": {"reference_batches": 1, "min_window": 20, "n_permutations": 100, "topics": 0},
    "aggregate": {"bootstrap_samples": 20},
    "select": {"k": 10},
    "mix": {"new_batches": 2},
    "sft": {"epochs": 1},
    "reward": {"epochs": 1, "max_steps": 6, "ensemble_size": 1, "routing": {"enabled": True, "min_pairs": 10}},
    "ppo": {"total_episodes": 16, "batch_size": 8, "mini_batch_size": 4, "response_length": 12, "n_prompts": 32},
    "evaluate": {"min_reward_accuracy": 0.0, "max_policy_reward_drop": 100.0, "n_samples": 8,
                 "min_policy_win_rate": None, "max_reward_accuracy_drop": None, "max_forgetting": None,
                 "max_topic_gap": None, "min_true_win_rate": None},
}


def _run(cmd, root: Path, env: dict, timeout: float = 1200) -> subprocess.CompletedProcess:
    res = subprocess.run([str(c) for c in cmd], cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{cmd} failed:\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    return res


def _real_project(tmp_path) -> tuple[Path, dict]:
    """The temp project with data/ prepared from the real slice and committed (git + dvc add)."""
    root = tmp_path / "proj"
    root.mkdir()
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        if (REPO / rel).is_file() and not rel.startswith(("tests/", "benchmarks/")) and rel not in (
                "dvc.lock", "data.dvc"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, root / rel)
    params = yaml.safe_load((REPO / "params-real.yaml").read_text())
    for section, values in TINY.items():
        for k, v in values.items():
            params[section][k] = ({**params[section][k], **v} if isinstance(v, dict) and k in params[section]
                                  else v)
    params["data"]["files"].update(batch_size=40, n_sft_demos=60, n_eval_prompts=8, eval_fraction=0.15)
    params["data"]["files"]["sources"] = [
        {"format": "pairs", "path": str(SHARED / "pairs" / "hh_harmless_dev.jsonl.gz"), "name": "hh", "limit": 100},
        {"format": "pairs", "path": str(SHARED / "pairs" / "alpaca_eval_gpt4_dev.jsonl.gz"), "name": "ae",
         "limit": 100},
        {"format": "prompts", "path": str(SHARED / "prompts" / "alpaca_first20k.jsonl.gz"), "limit": 40}]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_URI", "DRIFTKEEL_", "DVC_"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", PREFECT_HOME=str(root / ".prefect"), DVC_NO_ANALYTICS="1",
               MLFLOW_DISABLE_TELEMETRY="true", TQDM_DISABLE="1", DO_NOT_TRACK="1")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    _run(["git", "init", "-q", "-b", "main"], root, env)
    out = _run([sys.executable, "-m", "driftkeel.data.prepare_cli"], root, env).stdout
    assert "data written" in out
    _run(["dvc", "add", "-q", "data"], root, env)
    _run([*git, "add", "-A"], root, env)
    _run([*git, "commit", "-qm", "real data"], root, env)
    return root, env


def test_dvc_repro_data_stages_on_shared_slice(tmp_path):
    root, env = _real_project(tmp_path)
    t0 = time.monotonic()
    _run(["dvc", "repro", "drift"], root, env, timeout=1200)
    print(f"real-data dvc repro drift on a 200-pair slice: {time.monotonic() - t0:.0f} s")
    report = json.loads((root / "data" / "prepare_report.json").read_text())
    validate = json.loads((root / "outputs" / "validate" / "metrics.json").read_text())
    assert validate["rows_in"] == report["n_judgements"]
    aggregate = json.loads((root / "outputs" / "aggregate" / "metrics.json").read_text())
    assert aggregate["n_comparisons"] > 0
    history = json.loads((root / "outputs" / "drift" / "report.json").read_text())["history"]
    checked = [h for h in history if not h["in_reference"]]
    # the HH -> AlpacaEval shift: the prompt test ran on real text, and the drift stage alarms
    assert checked and any(h["prompt_status"] in ("ok", "alarm") for h in checked), history
    assert any(h["alarm"] for h in checked), history
    assert "Running stage" not in _run(["dvc", "repro", "drift"], root, env).stdout      # nothing left to do


@pytest.mark.extended
def test_dvc_repro_whole_chain_on_shared_slice(tmp_path):
    root, env = _real_project(tmp_path)
    t0 = time.monotonic()
    _run(["dvc", "repro"], root, env, timeout=1800)
    seconds = time.monotonic() - t0
    print(f"real-data dvc repro on a 200-pair slice: {seconds:.0f} s")
    for stage in ("validate", "aggregate", "drift", "select", "mix", "sft", "reward", "ppo", "evaluate", "register"):
        assert (root / "outputs" / stage / "metrics.json").exists(), stage
    report = json.loads((root / "data" / "prepare_report.json").read_text())
    validate = json.loads((root / "outputs" / "validate" / "metrics.json").read_text())
    assert validate["rows_in"] == report["n_judgements"]
    # the HH -> AlpacaEval shift: the drift stage alarms, the mix splits the eras, the (routed) reward model
    # has a head per era
    mix = json.loads((root / "outputs" / "mix" / "metrics.json").read_text())
    reward = json.loads((root / "outputs" / "reward" / "metrics.json").read_text())
    assert mix["first_drift_batch"] is not None and mix["n_after_drift_pairs"] > 0
    assert reward["routing_heads"] == 2 and 0.0 <= reward["gate_accuracy"] <= 1.0
    assert "Running stage" not in _run(["dvc", "repro"], root, env).stdout      # nothing left to do
