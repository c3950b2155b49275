"""Helpers of the flow tests: a tiny DVC project whose stages are named like the real ones.

tests/flows/conftest.py imports this module; test modules import it as `flows_conftest` (registered
below): a bare `from conftest import ...` resolves to whichever conftest.py pytest imported last."""
import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DVC = str(Path(sys.executable).with_name("dvc"))
MONITOR = ("validate", "aggregate", "drift")
RETRAIN = ("select", "mix", "sft", "reward", "ppo", "evaluate", "register")


def _writer(stage: str, body: str) -> str:
    return ("python -c \"import json, pathlib; p = pathlib.Path('outputs/%s'); "
            "p.mkdir(parents=True, exist_ok=True); %s\"" % (stage, body))


def dvc_yaml() -> dict:
    """Stages named like the real ones; drift copies the decision from decision_in.json (a dep), so a
    test picks the decision by editing that file; register writes a registry.json like the real one."""
    stages, prev = {}, None
    for s in MONITOR + RETRAIN:
        if s == "drift":
            body = ("(p / 'decision.json').write_text(pathlib.Path('decision_in.json').read_text()); "
                    "(p / 'report.html').write_text('<html><body>drift report</body></html>')")
            outs = ["outputs/drift/decision.json", "outputs/drift/report.html"]
        elif s == "register":
            body = ("(p / 'registry.json').write_text(pathlib.Path('registry_in.json').read_text())")
            outs = ["outputs/register/registry.json"]
        else:
            body = f"(p / 'done.txt').write_text('{s}')"
            outs = [f"outputs/{s}/done.txt"]
        deps = {"drift": ["decision_in.json"], "register": ["registry_in.json"]}.get(s, [])
        if prev:
            deps.append(prev)
        stages[s] = {"cmd": _writer(s, body), "deps": deps, "outs": outs}
        prev = outs[0]
    stages["boom"] = {"cmd": "python -c \"import sys, pathlib; "
                             "open('attempts.txt', 'a').write('x'); "
                             "sys.stderr.write('boom: row 7 has no prompt\\n'); sys.exit(3)\"",
                      "outs": ["outputs/boom/never.txt"]}
    stages["slow"] = {"cmd": "python -c \"import time, pathlib; time.sleep(6); "
                             "pathlib.Path('outputs/slow').mkdir(parents=True, exist_ok=True); "
                             "pathlib.Path('outputs/slow/done.txt').write_text('x')\"",
                      "outs": ["outputs/slow/done.txt"]}
    return {"stages": stages}


def set_decision(root: Path, action: str, batch: int = 3) -> None:
    (root / "decision_in.json").write_text(
        '{"action": "%s", "reasons": ["test decision %s"], "level": 0, "current_batch": %d, '
        '"signals": %s, "n_alarms": %d}' % (action, action, batch, '[]' if action == "none" else '["prompt"]',
                                            0 if action == "none" else 1))


def set_gate(root: Path, passed: bool) -> None:
    """What the trivial register stage writes to outputs/register/registry.json."""
    (root / "registry_in.json").write_text(json.dumps({
        "promoted": passed, "gate_passed": passed,
        "decision": "promoted to champion" if passed else "not promoted: gate failed: reward accuracy 0.51 < 0.7",
        "models": {"policy": {"version": 1}, "reward": {"version": 1}}}))


def set_ops(root: Path, **ops) -> None:
    """Write an `ops:` section into the project's params.yaml (committed, like a user's edit)."""
    params = yaml.safe_load((root / "params.yaml").read_text()) or {}
    params["ops"] = ops
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


sys.modules["flows_conftest"] = sys.modules[__name__]
