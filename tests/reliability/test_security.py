"""Security properties of the code base and its defaults (static and in-process; fast).

- no pickle-based loading (pickle, joblib, dill, cloudpickle, shelve, marshal, pandas.read_pickle,
  numpy allow_pickle, torch.load without weights_only=True) outside a short allowlist of locally
  produced files, each with its reason; no trust_remote_code, no use_safetensors=False;
- YAML only through yaml.safe_load (no yaml.load / full_load / unsafe_load / custom Loader);
- no eval/exec, no shell=True, no os.system;
- MLflow and Prefect servers bind to 127.0.0.1 by default and nothing in the repo binds elsewhere;
- secrets come from the environment only: params.yaml holds none, and what is logged is redacted;
- paths from config or data cannot leave the project (safe_join; the stage guard);
- the pip-audit ignore list gives a reason for every entry.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from driftkeel.security import (
    MASK,
    UnsafeModelFiles,
    UnsafePath,
    check_safetensors_only,
    is_loopback,
    is_secret_key,
    redact,
    safe_join,
)

REPO = Path(__file__).resolve().parents[2]
CODE_DIRS = ("src", "pipelines", "flows", "scripts")
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
# (file, enclosing function): why loading a pickle there is acceptable. Keep it short.
TORCH_LOAD_ALLOWED = {
    ("src/driftkeel/training/ppo.py", "train_ppo"):
        "resume state (optimizer/scheduler) written by this same stage into outputs/ppo/checkpoints; "
        "never a user-supplied file (weights_only=True would also work and is recommended)",
}


def _code_files() -> list[Path]:
    return sorted(p for d in CODE_DIRS for p in (REPO / d).rglob("*.py") if ".venv" not in p.parts)


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    parts.append(node.id if isinstance(node, ast.Name) else "?")  # ?.eval(): a method on an expression
    return ".".join(reversed(parts))


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value.value if isinstance(k.value, ast.Constant) else "<expr>"
    return None


def _findings() -> list[str]:
    out = []
    for path in _code_files():
        rel = path.relative_to(REPO).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        funcs = {}
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    funcs.setdefault(id(node), fn.name)
        for node in ast.walk(tree):
            where = f"{rel}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                bad = [a.name for a in node.names if a.name.split(".")[0] in PICKLE_MODULES]
                out += [f"{where}: import {b}" for b in bad]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
                out.append(f"{where}: from {node.module} import ...")
            elif isinstance(node, ast.Call):
                name = _dotted(node.func)
                last = name.rsplit(".", 1)[-1]
                if name in ("yaml.load", "yaml.load_all", "yaml.full_load", "yaml.full_load_all",
                            "yaml.unsafe_load", "yaml.unsafe_load_all"):
                    out.append(f"{where}: {name} (use yaml.safe_load)")
                if name.endswith("read_pickle"):
                    out.append(f"{where}: {name}")
                if last == "load" and name.split(".")[0] in ("np", "numpy") and _kw(node, "allow_pickle") not in (None, False):
                    out.append(f"{where}: {name}(allow_pickle=...)")
                if name == "torch.load" and _kw(node, "weights_only") is not True:
                    if (rel, funcs.get(id(node))) not in TORCH_LOAD_ALLOWED:
                        out.append(f"{where}: torch.load without weights_only=True")
                if _kw(node, "trust_remote_code") not in (None, False):
                    out.append(f"{where}: trust_remote_code")
                if _kw(node, "use_safetensors") is False:
                    out.append(f"{where}: use_safetensors=False")
                if name in ("eval", "exec", "os.system", "os.popen"):
                    out.append(f"{where}: {name}()")
                if _kw(node, "shell") not in (None, False):
                    out.append(f"{where}: shell=True")
                if name.startswith("mlflow.") and last == "load_model" and ".transformers." not in f".{name}.":
                    out.append(f"{where}: {name} (pickle-based MLflow flavours)")
    return out


def test_no_unsafe_deserialisation_or_code_execution():
    findings = _findings()
    assert not findings, "\n".join(findings)


def test_the_scanner_catches_what_it_should(tmp_path, monkeypatch):
    bad = tmp_path / "src" / "bad.py"
    bad.parent.mkdir()
    bad.write_text("import pickle\nimport yaml, torch, numpy as np\n"
                   "def f(p):\n    yaml.load(p)\n    torch.load(p)\n    np.load(p, allow_pickle=True)\n"
                   "    g(p, trust_remote_code=True)\n    eval(p)\n    run(p, shell=True)\n"
                   "    torch.load(p, weights_only=True)\n    yaml.safe_load(p)\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    found = _findings()
    assert len(found) == 7, found


def test_servers_bind_to_loopback_by_default():
    from mlflow.cli import server
    from prefect.settings.models.server.api import ServerAPISettings

    assert is_loopback(ServerAPISettings.model_fields["host"].default)
    assert is_loopback(next(p for p in server.params if p.name == "host").default)
    import prefect.server.api.server as ps

    assert '"127.0.0.1"' in Path(ps.__file__).read_text()   # the ephemeral (subprocess) server
    # nothing in the repo asks for another interface
    texts = [p for p in REPO.glob("*.md")] + [REPO / "prefect.yaml", *REPO.glob("scripts/*"), *_code_files(),
                                              *REPO.glob("docs/**/*.md")]
    bad = []
    for path in texts:
        if not path.is_file():
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for host in re.findall(r"(?:--host[ =]|--bind[ =]|_HOST=|host=)[\"']?([\w.:\[\]-]+)", line):
                if host.startswith(("$", "{")) or host in ("host", "args", "None"):
                    continue
                if not is_loopback(host):
                    bad.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not bad, bad


def test_params_hold_no_secrets():
    def walk(prefix, obj):
        if isinstance(obj, dict):
            for k, v in obj.items():
                yield from walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            yield prefix, obj

    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    leaks = [(k, v) for k, v in walk("", params) if is_secret_key(k.rsplit(".", 1)[-1]) and v not in (None, "", [], {})]
    assert not leaks, f"secrets belong in environment variables, not params.yaml: {leaks}"
    uri = ((params.get("common") or {}).get("mlflow") or {}).get("tracking_uri") or ""
    assert "@" not in uri, "credentials in common.mlflow.tracking_uri: use MLFLOW_TRACKING_USERNAME/PASSWORD"


def test_redaction(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefSECRET")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    got = redact({"common.mlflow.tracking_uri": "https://bob:hunter2@mlflow.example/x",
                  "notify.webhook_url": "https://hooks.example/T000/B000/XXXX",
                  "reward.learning_rate": 0.001, "common.max_prompt_tokens": 48,
                  "note": "token hf_abcdefSECRET in text", "nested": {"api_key": "k-123456"}})
    assert got["common.mlflow.tracking_uri"] == f"https://bob:{MASK}@mlflow.example/x"
    assert got["notify.webhook_url"] == MASK and got["nested"]["api_key"] == MASK
    assert got["reward.learning_rate"] == 0.001 and got["common.max_prompt_tokens"] == 48
    assert got["note"] == f"token {MASK} in text"


def test_stage_run_logs_redacted_params(tmp_path, monkeypatch):
    import mlflow

    from driftkeel.config import CommonParams
    from driftkeel.registry.tracking import stage_run

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("DRIFTKEEL_RUN_GROUP", "security-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-very-secret-123")
    try:
        with stage_run("security", tmp_path, CommonParams()) as run:
            run.log_params({"x.api_token": "abc", "x.lr": 0.1, "x.note": "key aws-very-secret-123"})
        logged = mlflow.get_run(run.run_id).data.params
    finally:
        mlflow.set_tracking_uri(None)
    assert logged["x.api_token"] == MASK and logged["x.lr"] == "0.1" and logged["x.note"] == f"key {MASK}"


def test_paths_stay_inside_the_project(tmp_path):
    (tmp_path / "data").mkdir()
    assert safe_join(tmp_path, "data", "stream") == (tmp_path / "data" / "stream").resolve()
    for bad in ("../etc", "/etc/passwd", "data/../../x", "a\x00b"):
        with pytest.raises(UnsafePath):
            safe_join(tmp_path, bad)
    (tmp_path / "data" / "link").symlink_to("/etc")
    with pytest.raises(UnsafePath):
        safe_join(tmp_path, "data/link/passwd")


def test_stage_refuses_a_data_dir_outside_the_project(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["common"]["data_dir"] = "../elsewhere"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    code = "from pipelines._stage import stage; stage('validate')"
    env = {**os.environ, "DRIFTKEEL_ROOT": str(tmp_path), "PYTHONPATH": str(REPO), "DRIFTKEEL_MLFLOW_PREFLIGHT": "0"}
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "common.data_dir must stay inside the project" in res.stderr, res.stderr


def test_model_dirs_with_pickles_are_refused(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert check_safetensors_only(tmp_path) == ["model.safetensors"]
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(UnsafeModelFiles, match="pytorch_model.bin"):
        check_safetensors_only(tmp_path)
    from driftkeel.registry.modelfiles import ModelDirError, check_model_dir

    only_bin = tmp_path / "only-bin"
    only_bin.mkdir()
    (only_bin / "config.json").write_text("{}")
    (only_bin / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(ModelDirError, match="only .bin weights"):
        check_model_dir(only_bin)


def test_pip_audit_ignore_list_is_justified():
    path = REPO / ".pip-audit-ignore"
    assert (REPO / "scripts" / "audit.sh").is_file()
    entries = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.fullmatch(r"(\S+)\s+(\S+)\s+(\d{4}-\d{2}-\d{2})\s+(.{20,})", line.strip())
        assert m, f".pip-audit-ignore:{n}: want '<VULN-ID> <package> <review-by YYYY-MM-DD> <reason>'"
        entries.append(m.groups())
    assert len({e[0] for e in entries}) == len(entries)
