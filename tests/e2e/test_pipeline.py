"""The whole pipeline end to end, for real, through faults: demo data -> Prefect flows and `dvc repro`
-> MLflow registry, in a temp git + DVC project (MLflow SQLite, ephemeral Prefect) on a minimal config,
with kill -9 at three points, two runs at once and an MLflow store that is down.

One project goes through the phases in order (each test is one phase; a later one relies on the
earlier ones):

1. the monitoring flow (Prefect, ephemeral) is killed with SIGKILL, its whole process tree frozen then
   killed ("the machine died"), while the validate stage runs;
2. the retraining flow is started (it re-runs the stale upstream stages through `dvc repro`); while its
   reward stage trains, a second `dvc repro` and a stage started by hand must both refuse with a clear
   message and write nothing; then the flow is killed mid-reward-training (after a checkpoint);
3. `dvc repro` resumes (reward from its checkpoint, then ppo, evaluate) and is killed mid-register
   (while the models are being logged to MLflow); the registry must point only at whole, loadable
   models; `dvc repro` then completes, a further `dvc repro` does nothing and `dvc status` is clean.

After every kill every declared DVC output that exists is whole (parses / loads): outputs are written
atomically. Afterwards: the recovered validate outputs equal an in-process run, the champion is the
model the gate evaluated, raw data is byte-identical, no secret from the environment reached MLflow,
the outputs, the DVC or Prefect files, models are safetensors only, and a stage with the MLflow store
down fails in seconds, before training. The kill delays after each marker are random (seed printed).
Then the end-to-end checks of the finished project: every stage wrote its metrics, the champions are
tagged with the git commit and the DVC data version under a parent pipeline run with nested stage runs,
a param change reruns exactly the downstream stages (`dvc exp run`), `dvc metrics show` / `dvc plots
show` render. (One project serves both: a second whole pipeline run would cost minutes of CI.)
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from summary_lines import report

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SEED = int(os.environ.get("DRIFTKEEL_FAULT_SEED", str(int(time.time()) % 100000)))
RNG = random.Random(SEED)
TIMEOUT = float(os.environ.get("DRIFTKEEL_FAULT_TIMEOUT_S", "900"))
SECRETS = {"HF_TOKEN": "hf_reliabilitySECRET0001", "AWS_SECRET_ACCESS_KEY": "aws-secret-reliability-0002",
           "MLFLOW_TRACKING_PASSWORD": "mlflow-pass-reliability-0003",
           "DRIFTKEEL_WEBHOOK_TOKEN": "webhook-token-reliability-0004"}
MINIMAL = {
    "common": {"tiny_model": {"vocab_size": 400, "n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 192}},
    "data": {"n_batches": 4, "comparisons_per_batch": 40, "n_annotators": 12, "new_topics_from_batch": 2,
             "concept_drift_batch": 3, "pool_change_batch": 3, "n_sft_demos": 60, "pool_size": 40,
             "n_eval_pairs": 30, "n_eval_prompts": 8},
    "drift": {"reference_batches": 1, "min_window": 20, "n_permutations": 100},
    "select": {"k": 10},
    "mix": {"new_batches": 2},
    "sft": {"epochs": 1},
    "reward": {"epochs": 1, "max_steps": 12, "checkpoint_every": 2},
    "ppo": {"total_episodes": 16, "batch_size": 8, "mini_batch_size": 4, "response_length": 12, "n_prompts": 32},
    "evaluate": {"min_reward_accuracy": 0.0, "max_policy_reward_drop": 100.0, "n_samples": 8},
}
FLOW = ("import sys; sys.path.insert(0, sys.argv[1]); from flows.{mod} import {fn}; "
        "{fn}(root=sys.argv[1], {kw})")
MONITOR = FLOW.format(mod="monitoring", fn="monitoring", kw="trigger_retraining=False")
RETRAIN = FLOW.format(mod="retraining", fn="retraining", kw="reason='reliability test'")
EVENTS: list[str] = []

pytestmark = pytest.mark.slow


# ----------------------------------------------------------------------------------------- helpers
def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base.get(k, {}), v) if isinstance(v, dict) else v
    return out


def _gate_open() -> dict:
    """evaluate params that let the tiny model through the gate: every optional threshold off."""
    import typing

    from driftkeel.config import EvaluateParams

    out = {"min_reward_accuracy": 0.0, "max_policy_reward_drop": 100.0}
    for name, field in EvaluateParams.model_fields.items():
        if name.startswith(("min_", "max_")) and name not in out and type(None) in typing.get_args(field.annotation):
            out[name] = None
    return out


def _run(cmd, root: Path, env: dict, timeout: float = TIMEOUT, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run([str(c) for c in cmd], cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}")
    return res


def _start(cmd, root: Path, env: dict, log: Path) -> subprocess.Popen:
    fh = log.open("w")
    return subprocess.Popen([str(c) for c in cmd], cwd=root, env=env, stdout=fh, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _kill_tree(proc: subprocess.Popen) -> list[int]:
    """SIGSTOP the process and every descendant (repeat until no new one appears), then SIGKILL all:
    nothing gets to clean up, as when the machine dies. Returns the pids killed."""
    import psutil

    seen: dict[int, psutil.Process] = {}
    try:
        todo = [psutil.Process(proc.pid)]
    except psutil.NoSuchProcess:
        todo = []
    while todo:
        p = todo.pop()
        if p.pid in seen:
            continue
        try:
            p.send_signal(signal.SIGSTOP)
            seen[p.pid] = p
            todo.extend(p.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    for p in seen.values():
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=60)
    psutil.wait_procs(list(seen.values()), timeout=30)
    assert not [p for p in seen.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    return sorted(seen)


def _holder(root: Path) -> str | None:
    """The stage holding the project lock right now (from outputs/.driftkeel.lock), or None."""
    try:
        text = (root / "outputs" / ".driftkeel.lock").read_text()
    except OSError:
        return None
    m = re.search(r"stage '(\w+)', pid (\d+)", text)
    if not m or not Path(f"/proc/{m.group(2)}").exists():
        return None
    return m.group(1)


def _wait_for(pred, proc: subprocess.Popen, log: Path, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        if proc.poll() is not None:
            raise AssertionError(f"ended ({proc.returncode}) before {what}:\n{log.read_text()[-5000:]}")
        time.sleep(0.1)
    _kill_tree(proc)
    raise AssertionError(f"no {what} within {timeout:.0f}s:\n{log.read_text()[-5000:]}")


def _tree_hash(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _declared_outs(root: Path) -> list[Path]:
    spec = yaml.safe_load((root / "dvc.yaml").read_text())
    outs = []
    for st in spec["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for o in st.get(kind, []):
                outs.append(root / (next(iter(o)) if isinstance(o, dict) else o))
    return outs


def _assert_outputs_whole(root: Path) -> int:
    """Every declared DVC output that exists parses or loads: nothing half-written."""
    from driftkeel.registry.modelfiles import check_model_dir

    n = 0
    for path in _declared_outs(root):
        if not path.exists():
            continue
        n += 1
        if path.is_dir():
            if path.name == "model":
                check_model_dir(path)
            continue
        if path.suffix == ".parquet":
            pd.read_parquet(path)
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".jsonl":
            [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        elif path.suffix == ".csv":
            pd.read_csv(path)
        else:
            assert path.stat().st_size > 0, path
    return n


def _registry_state(root: Path) -> dict:
    """Every registered version's artifacts are a whole model dir; every alias points at one."""
    from mlflow import MlflowClient

    from driftkeel.registry.lifecycle import fetch_version
    from driftkeel.registry.modelfiles import check_model_dir
    from driftkeel.security import check_safetensors_only

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    out = {}
    for rm in client.search_registered_models():
        versions = {int(v.version) for v in client.search_model_versions(f"name = '{rm.name}'")}
        aliases = {a: int(v) for a, v in (rm.aliases or {}).items()}
        assert set(aliases.values()) <= versions, (rm.name, aliases, versions)
        for v in sorted(versions):
            dst = root / ".reliability-fetch" / rm.name / str(v)
            fetch_version(client, rm.name, v, dst)
            check_model_dir(dst)
            check_safetensors_only(dst)
        out[rm.name] = {"versions": sorted(versions), "aliases": aliases}
    shutil.rmtree(root / ".reliability-fetch", ignore_errors=True)
    return out


def _count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


# ----------------------------------------------------------------------------------------- project
@pytest.fixture(scope="module")
def proj(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults") / "proj"
    root.mkdir()
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        if (REPO / rel).is_file() and not rel.startswith(("tests/", "benchmarks/")) and rel != "dvc.lock":
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, root / rel)
    base = Path(os.environ.get("DRIFTKEEL_FAULT_PARAMS") or root / "params.yaml")  # another params.yaml to start from
    params = yaml.safe_load(base.read_text())
    over = _merge(MINIMAL, {"evaluate": _gate_open()})
    (root / "params.yaml").write_text(yaml.safe_dump(_merge(params, over), sort_keys=False))
    (root / "data.dvc").unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_TRACKING_URI", "DRIFTKEEL_", "PREFECT_API", "DVC_"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", PREFECT_HOME=str(root / ".prefect"),
               MLFLOW_DISABLE_TELEMETRY="true", PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               DVC_NO_ANALYTICS="1", TQDM_DISABLE="1", PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
               **SECRETS)
    git = ["git", "-c", "user.name=reliability", "-c", "user.email=reliability@localhost"]
    _run(["git", "init", "-q", "-b", "main"], root, env)
    _run([BIN / "driftkeel", "demo-data"], root, env)
    _run(["dvc", "add", "-q", "data"], root, env)
    _run([*git, "add", "-A"], root, env)
    _run([*git, "commit", "-qm", "reliability"], root, env)
    return {"root": root, "env": env, "data": _tree_hash(root / "data"), "data_dvc": (root / "data.dvc").read_text(),
            "t0": time.monotonic()}


# ------------------------------------------------------------------------------------------ phases
def test_monitoring_flow_killed_mid_validate(proj):
    root, env = proj["root"], proj["env"]
    log = root / "flow-monitoring.log"
    flow = _start([sys.executable, "-c", MONITOR, root], root, env, log)
    t0 = time.monotonic()
    _wait_for(lambda: _holder(root) == "validate", flow, log, "the validate stage running")
    time.sleep(RNG.uniform(0, 1.0))
    at = _holder(root)
    killed = _kill_tree(flow)
    assert at == "validate", f"the kill landed in {at!r}, not validate"
    assert len(killed) >= 3  # the flow, its dvc repro, the stage (+ the ephemeral Prefect server)
    assert _holder(root) is None
    lock = yaml.safe_load((root / "dvc.lock").read_text()) if (root / "dvc.lock").exists() else {}
    assert "validate" not in (lock or {}).get("stages", {})      # DVC did not record a half-run stage
    n = _assert_outputs_whole(root)
    EVENTS.append(f"monitoring flow killed in validate after {time.monotonic() - t0:.0f}s "
                  f"({len(killed)} processes, {n} outputs on disk, all whole)")


def test_retraining_flow_killed_mid_reward_while_second_runs_are_refused(proj):
    from driftkeel.training.checkpoints import STEP_DELAY_ENV, hf_checkpoint_complete

    root, env = proj["root"], proj["env"]
    log = root / "flow-retraining.log"
    flow = _start([sys.executable, "-c", RETRAIN, root], root, {**env, STEP_DELAY_ENV: "1.0"}, log)
    t0 = time.monotonic()
    _wait_for(lambda: _holder(root) == "reward", flow, log, "the reward stage running")

    # two runs at once: a second `dvc repro` and a stage started by hand both refuse, and write nothing
    mix_before = _tree_hash(root / "outputs" / "mix")
    second = _run(["dvc", "repro"], root, env, timeout=300, check=False)
    by_hand = _run([sys.executable, "-m", "pipelines.mix"], root, env, timeout=300, check=False)
    assert second.returncode != 0
    assert re.search(r"is busy|Unable to acquire lock", second.stdout + second.stderr), second.stderr[-2000:]
    assert "Running stage" not in second.stdout
    assert by_hand.returncode != 0
    assert "mix: not started, the project is busy: a `dvc repro` is running" in by_hand.stderr, by_hand.stderr[-2000:]
    assert _tree_hash(root / "outputs" / "mix") == mix_before

    ckpts = root / "outputs" / "reward" / "checkpoints"
    _wait_for(lambda: any(hf_checkpoint_complete(p) for p in ckpts.rglob("checkpoint-*")),
              flow, log, "a reward checkpoint")
    time.sleep(RNG.uniform(0, 0.5))
    at = _holder(root)
    killed = _kill_tree(flow)
    assert at == "reward", f"the kill landed in {at!r}, not reward (raise {STEP_DELAY_ENV})"
    assert not (root / "outputs" / "reward" / "model").exists(), "a reward model dir after the kill"
    n = _assert_outputs_whole(root)
    EVENTS.append(f"retraining flow killed in reward training after {time.monotonic() - t0:.0f}s "
                  f"({len(killed)} processes, {n} outputs on disk, all whole); second dvc repro and "
                  f"hand-run stage refused")


def test_dvc_repro_killed_mid_register_then_rerun_completes(proj):
    root, env = proj["root"], proj["env"]
    log = root / "repro-1.log"
    repro = _start(["dvc", "repro"], root, env, log)
    t0 = time.monotonic()
    _wait_for(lambda: _holder(root) == "register", repro, log, "the register stage running")
    before = _count_files(root / "mlartifacts")
    _wait_for(lambda: _count_files(root / "mlartifacts") > before, repro, log, "register logging a model")
    time.sleep(RNG.uniform(0, 1.0))
    at = _holder(root)
    _kill_tree(repro)
    assert at == "register", f"the kill landed in {at!r}, not register"
    assert "Running stage 'reward'" in log.read_text()        # reward re-ran (resumed) in this repro
    _assert_outputs_whole(root)
    after_kill = _registry_state(root)   # whatever got registered before the kill is whole

    rerun = _run(["dvc", "repro"], root, env)
    assert "Running stage 'register'" in rerun.stdout
    again = _run(["dvc", "repro"], root, env)
    assert "Running stage" not in again.stdout
    status = _run(["dvc", "status"], root, env)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    _assert_outputs_whole(root)
    proj["registry"] = _registry_state(root)
    EVENTS.append(f"dvc repro killed in register after {time.monotonic() - t0:.0f}s (registry after the kill: "
                  f"{ {k: v['aliases'] for k, v in after_kill.items()} }); re-run completed, dvc status clean")
    report("e2e faults", "; ".join(EVENTS) + f"; seed {SEED}; {time.monotonic() - proj['t0']:.0f}s in all")


def test_recovered_results_match_an_uninterrupted_computation(proj):
    from driftkeel.config import load_section
    from driftkeel.data.schemas import stream_files
    from driftkeel.registry.modelfiles import fingerprint
    from driftkeel.validation import read_annotators, read_golden, validate_stream

    root = proj["root"]
    out = root / "outputs"
    _, vp = load_section("validate", root / "params.yaml")
    ref = validate_stream(stream_files(root / "data"), read_golden(root / "data" / "golden.jsonl"),
                          read_annotators(root / "data" / "annotators.jsonl"), vp, relative_to=root)
    assert json.loads((out / "validate" / "metrics.json").read_text()) == json.loads(json.dumps(ref.metrics))
    assert [json.loads(x) for x in (out / "validate" / "quarantine.jsonl").read_text().splitlines()] == \
        json.loads(json.dumps(ref.quarantine))
    pd.testing.assert_frame_equal(pd.read_parquet(out / "validate" / "clean.parquet"), ref.clean)

    reward = json.loads((out / "reward" / "metrics.json").read_text())
    assert reward.get("resumed_from_step", 0) > 0 or reward.get("resumed_members", 0) > 0, reward

    record = json.loads((out / "register" / "registry.json").read_text())
    verdict = json.loads((out / "evaluate" / "verdict.json").read_text())
    # the first registration: promoted exactly when the gate passed (the baseline is the SFT model)
    assert record["gate_passed"] is verdict["passed"] and record["promoted"] is verdict["passed"], record["decision"]
    for role, model_dir in (("policy", out / "ppo" / "model"), ("reward", out / "reward" / "model")):
        m = record["models"][role]
        assert m["challenger"] == m["version"] and m["champion"] == (m["version"] if record["promoted"] else None)
        assert m["fingerprint"] == fingerprint(model_dir) == verdict["models"][role]["fingerprint"]
        assert proj["registry"][m["name"]]["aliases"].get("champion") == m["champion"]


def test_registry_aliases_load(proj):
    from mlflow import MlflowClient

    from driftkeel.registry.lifecycle import fetch_alias, load_for_role

    root = proj["root"]
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    record = json.loads((root / "outputs" / "register" / "registry.json").read_text())
    assert record["promoted"], f"the gate should pass with every optional threshold off: {record['decision']}"
    for role, m in record["models"].items():
        for alias in ("champion", "challenger"):
            got = fetch_alias(client, m["name"], alias, root / ".aliases" / role / alias)
            model, tok = load_for_role(got["path"], role)
            assert sum(p.numel() for p in model.parameters()) > 0 and tok is not None
            tags = client.get_model_version(m["name"], str(got["version"])).tags
            assert tags["driftkeel.fingerprint"] == m["fingerprint"]
    shutil.rmtree(root / ".aliases")


def test_raw_data_never_modified(proj):
    root = proj["root"]
    assert _tree_hash(root / "data") == proj["data"]
    assert (root / "data.dvc").read_text() == proj["data_dvc"]
    assert not _run(["git", "status", "--porcelain", "--", "data.dvc", "params.yaml", "dvc.yaml"],
                    root, proj["env"]).stdout.strip()


def test_no_secret_reaches_mlflow_outputs_or_run_records(proj):
    root = proj["root"]
    places = [root / "mlflow.db", root / "mlartifacts", root / "outputs", root / "dvc.lock", root / ".prefect"]
    hits = []
    for place in places:
        files = [place] if place.is_file() else [p for p in place.rglob("*") if p.is_file()]
        for f in files:
            data = f.read_bytes()
            hits += [(str(f.relative_to(root)), name) for name, value in SECRETS.items() if value.encode() in data]
    assert not hits, hits
    import sqlite3

    con = sqlite3.connect(root / "mlflow.db")
    keys = {k for (k,) in con.execute("select key from params")}
    con.close()
    assert "common.mlflow.tracking_uri" in keys and "reward.learning_rate" in keys  # params were logged


def test_models_are_safetensors_only(proj):
    from driftkeel.security import check_safetensors_only

    root = proj["root"]
    for stage in ("sft", "reward", "ppo"):
        assert check_safetensors_only(root / "outputs" / stage / "model")
    logged = [p for p in (root / "mlartifacts").rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in logged)
    assert not [p for p in logged if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".pickle", ".joblib", ".ckpt")]


def test_stage_with_mlflow_down_fails_before_training(proj):
    root, env = proj["root"], proj["env"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = root / "outputs" / "reward" / "model"
    before = _tree_hash(model)
    t0 = time.monotonic()
    res = _run([sys.executable, "-m", "pipelines.reward"], root,
               {**env, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}, timeout=300, check=False)
    seconds = time.monotonic() - t0
    assert res.returncode != 0
    assert f"reward: MLflow tracking store unavailable at http://127.0.0.1:{port}" in res.stderr, res.stderr[-3000:]
    assert "Nothing was run" in res.stderr
    assert _tree_hash(model) == before and not (root / "outputs" / "reward" / "checkpoints").exists()
    report("test_stage_with_mlflow_down_fails_before_training",
           f"reward stage refused in {seconds:.1f}s (imports included), nothing trained")


# ------------------------------------------------------------------------- end to end, on the same project
STAGES = ["validate", "aggregate", "drift", "select", "mix", "sft", "reward", "ppo", "evaluate", "register"]


def test_every_stage_ran_and_wrote_its_metrics(proj):
    root = proj["root"]
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)
    for stage in STAGES:
        metrics = json.loads((root / "outputs" / stage / "metrics.json").read_text())
        assert metrics, stage
    n = MINIMAL["data"]["n_batches"] * MINIMAL["data"]["comparisons_per_batch"] * 3
    validate = json.loads((root / "outputs/validate/metrics.json").read_text())
    assert validate["rows_in"] == validate["rows_clean"] + validate["rows_quarantined"] == n
    assert (root / "outputs/drift/report.html").stat().st_size > 1000
    decision = json.loads((root / "outputs/drift/decision.json").read_text())
    assert decision["action"] in {"none", "collect-labels", "retrain-reward", "retrain-all"}


def test_champions_are_tagged_with_commit_and_data_under_a_pipeline_run(proj):
    from mlflow import MlflowClient

    root = proj["root"]
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    data_version = yaml.safe_load((root / "data.dvc").read_text())["outs"][0]["md5"]
    for name in ("driftkeel-policy", "driftkeel-reward"):
        mv = client.get_model_version_by_alias(name, "champion")
        assert client.get_model_version_by_alias(name, "challenger").version == mv.version
        run = client.get_run(mv.run_id)
        assert run.data.tags["driftkeel.data_version"] == data_version
        assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", run.data.tags["driftkeel.git_commit"])
    exp = client.get_experiment_by_name("driftkeel")
    stage_runs = client.search_runs([exp.experiment_id], "tags.`driftkeel.kind` = 'stage'")
    assert {r.data.tags["driftkeel.stage"] for r in stage_runs} >= set(STAGES)
    assert all(r.data.tags.get("mlflow.parentRunId") for r in stage_runs)
    # the `dvc repro` runs of one code+data+params version share one parent: the resumed reward, ppo,
    # evaluate and both register attempts (killed, re-run) are nested under the last register's parent
    last_register = max((r for r in stage_runs if r.data.tags["driftkeel.stage"] == "register"),
                        key=lambda r: r.info.start_time)
    parent = last_register.data.tags["mlflow.parentRunId"]
    under = {r.data.tags["driftkeel.stage"] for r in stage_runs if r.data.tags["mlflow.parentRunId"] == parent}
    assert under >= {"reward", "ppo", "evaluate", "register"}, under


def test_dvc_metrics_and_plots_render(proj):
    root, env = proj["root"], proj["env"]
    metrics = _run(["dvc", "metrics", "show", "--json"], root, env).stdout
    assert "eval_accuracy" in metrics and "rows_quarantined" in metrics
    out = _run(["dvc", "plots", "show", "--out", "dvc_plots"], root, env)
    html = (root / "dvc_plots" / "index.html").read_text()
    for plot in ("outputs/validate/plots/batches.csv", "outputs/drift/plots/history.csv",
                 "outputs/reward/plots/loss.csv"):
        assert plot in html, (plot, out.stdout[-2000:])


def test_a_param_change_reruns_exactly_the_downstream_stages(proj):
    root, env = proj["root"], proj["env"]
    n = MINIMAL["evaluate"]["n_samples"]
    res = _run(["dvc", "exp", "run", "--set-param", f"evaluate.n_samples={n - 2}"], root, env)
    ran = set(re.findall(r"Running stage '(\w+)'", res.stdout + res.stderr))
    assert ran == {"evaluate", "register"}, (res.stdout + res.stderr)[-3000:]
    shown = _run(["dvc", "exp", "show", "--json"], root, env).stdout
    assert "reward_accuracy" in shown
