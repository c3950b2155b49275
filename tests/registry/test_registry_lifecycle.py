"""Register / promote / rollback / status against a real MLflow SQLite store with tiny real models."""
import json
import os
import subprocess
import sys
import uuid

import pytest

from driftkeel.config import CommonParams, RegisterParams
from driftkeel.evaluation.gate import gate
from driftkeel.registry.lifecycle import (RegistryError, alias_history, register_models,
                                          registry_client, rollback, stale_baseline_reason, stale_reward_reason,
                                          status)
from driftkeel.registry.modelfiles import ModelDirError, check_model_dir, fingerprint

COMMON = CommonParams()


def names() -> RegisterParams:
    u = uuid.uuid4().hex[:6]
    return RegisterParams(policy_model_name=f"policy-{u}", reward_model_name=f"reward-{u}")


def verdict_for(models: dict, passed: bool, baseline: dict, reward_champion: int | None = None) -> dict:
    """A verdict as evaluate writes it; `champion_reward` records the reward champion its reward checks
    compared against (default: the version of the policy champion baseline, as the pairs move together)."""
    metrics = {"reward_accuracy": 0.8 if passed else 0.4, "challenger_mean_reward": 1.0,
               "baseline_mean_reward": 0.9}
    v = gate(metrics, min_reward_accuracy=0.7, max_policy_reward_drop=0.1).to_dict()
    assert v["passed"] is passed
    v["baseline"] = baseline
    rv = reward_champion if reward_champion is not None else (baseline or {}).get("version")
    v["champion_reward"] = None if rv is None else {"model_name": "driftkeel-test-reward", "version": int(rv)}
    v["models"] = {role: {"path": str(models[role]), "fingerprint": fingerprint(models[role])}
                   for role in ("reward", "policy")}
    return v


def register(project, params, models, passed, baseline, reward_champion=None, **kw):
    return register_models(project, COMMON, params, verdict_for(models, passed, baseline, reward_champion),
                           reward_dir=models["reward"], policy_dir=models["policy"], **kw)


def test_first_passing_run_sets_challenger_and_champion_with_version_tags(project, tiny_models):
    params = names()
    rec = register(project, params, tiny_models["first"], True, {"source": "sft"}, user="ci-bot")
    assert rec["promoted"] is True and rec["gate_passed"] is True
    client = registry_client(project, COMMON)
    for role, name in (("policy", params.policy_model_name), ("reward", params.reward_model_name)):
        assert rec["models"][role] == {**rec["models"][role], "version": 1, "champion": 1,
                                       "challenger": 1}
        rm = client.get_registered_model(name)
        assert {k: int(v) for k, v in rm.aliases.items()} == {"champion": 1, "challenger": 1}
        tags = client.get_model_version(name, "1").tags
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True,
                                text=True, check=True).stdout.strip()
        assert tags["driftkeel.git_commit"] == commit
        assert tags["driftkeel.data_version"] == "0123456789abcdef0123456789abcdef.dir"
        assert tags["driftkeel.gate_passed"] == "true"
        assert tags["driftkeel.fingerprint"] == fingerprint(tiny_models["first"][role])
        assert float(tags["driftkeel.metric.reward_accuracy"]) == 0.8
        events = alias_history(name, project, COMMON)
        assert [(e["alias"], e["action"], e["from_version"], e["to_version"], e["user"])
                for e in events] == [("challenger", "assign", None, 1, "ci-bot"),
                                     ("champion", "promote", None, 1, "ci-bot")]
        assert events[1]["reason"].startswith("gate passed: reward_accuracy 0.8000 >=")
        assert events[1]["context"]["run_id"] == rec["run_id"]
    assert client.get_model_version(params.policy_model_name, "1").tags["driftkeel.reward_version"] == "1"


def test_failing_gate_moves_challenger_not_champion(project, tiny_models):
    params = names()
    register(project, params, tiny_models["first"], True, {"source": "sft"})
    rec = register(project, params, tiny_models["second"], False,
                   {"source": "champion", "version": 1})
    assert rec["promoted"] is False
    assert rec["decision"].startswith("not promoted: gate failed: reward_accuracy 0.4000 <")
    for role in ("policy", "reward"):
        assert rec["models"][role]["version"] == 2
        assert rec["models"][role]["champion"] == 1
        assert rec["models"][role]["challenger"] == 2
    champion_events = alias_history(params.policy_model_name, project, COMMON, alias="champion")
    assert [e["to_version"] for e in champion_events] == [1]
    client = registry_client(project, COMMON)
    assert client.get_model_version(params.policy_model_name, "2").tags["driftkeel.gate_passed"] == "false"


def test_stale_verdict_never_promotes(project, tiny_models):
    params = names()
    register(project, params, tiny_models["first"], True, {"source": "sft"})
    # evaluated while there was no champion, but v1 became champion since
    rec = register(project, params, tiny_models["second"], True, {"source": "sft"})
    assert rec["promoted"] is False and "verdict is stale" in rec["decision"]
    assert rec["models"]["policy"]["champion"] == 1
    assert stale_baseline_reason({"source": "champion", "version": 1}, 1) is None
    assert stale_baseline_reason({"source": "champion", "version": 1}, 2).startswith("verdict is stale")
    assert stale_baseline_reason({"source": "sft"}, None) is None
    assert stale_baseline_reason(None, None) == "verdict has no baseline record: re-run evaluate"

    # the same model and verdict again (a re-run after a kill that landed after the promotion): the
    # champion is this very model, so the verdict is current; the model is registered already, so its
    # version is reused (no duplicate v3 that a rollback would "roll back" to the same model)
    again = register(project, params, tiny_models["first"], True, {"source": "sft"})
    assert again["promoted"] is True and again["models"]["policy"]["champion"] == again["models"]["policy"]["version"] == 1
    assert again["models"]["policy"]["reused_version"] is True and again["models"]["reward"]["version"] == 1


def test_rollback_moves_champion_back_and_records_who_why_when(project, tiny_models):
    params = names()
    name = params.policy_model_name
    register(project, params, tiny_models["first"], True, {"source": "sft"})
    register(project, params, tiny_models["second"], True, {"source": "champion", "version": 1})
    client = registry_client(project, COMMON)
    assert int(client.get_registered_model(name).aliases["champion"]) == 2

    out = rollback(name, reason="toxicity spike in prod", user="oncall", root=project, common=COMMON)
    assert (out["from_version"], out["to_version"]) == (2, 1)
    assert out["companion"] == {"reward_version": "1"}
    assert int(client.get_registered_model(name).aliases["champion"]) == 1
    last = alias_history(name, project, COMMON)[-1]
    assert (last["alias"], last["action"], last["from_version"], last["to_version"], last["user"],
            last["reason"]) == ("champion", "rollback", 2, 1, "oncall", "toxicity spike in prod")
    assert last["at"].endswith("+00:00")
    assert "driftkeel.rolled_back_at" in client.get_model_version(name, "2").tags

    with pytest.raises(RegistryError, match="no previous champion"):
        rollback(name, reason="again", user="oncall", root=project, common=COMMON)
    with pytest.raises(RegistryError, match="already holds"):
        rollback(name, to_version=1, reason="noop", root=project, common=COMMON)
    with pytest.raises(RegistryError, match="no version 9"):
        rollback(name, to_version=9, reason="typo", root=project, common=COMMON)
    with pytest.raises(RegistryError, match="needs a reason"):
        rollback(name, to_version=2, reason=" ", root=project, common=COMMON)
    out = rollback(name, to_version=2, reason="false alarm", user="oncall", root=project, common=COMMON)
    assert (out["from_version"], out["to_version"]) == (1, 2)

    st = status(project, COMMON, model_names=[name, "never-registered"])
    assert st["models"][name]["champion"]["version"] == 2
    assert st["models"][name]["challenger"]["version"] == 2
    assert st["models"][name]["latest_version"] == 2
    assert st["models"][name]["last_event"]["reason"] == "false alarm"
    assert st["models"]["never-registered"]["registered"] is False


def test_status_does_not_create_a_missing_store(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text("common: {}\n")
    st = status(tmp_path)
    assert st["models"]["driftkeel-policy"]["champion"] is None
    assert not (tmp_path / "mlflow.db").exists()


def test_half_written_or_foreign_model_is_refused(project, tiny_models, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_models["first"]["policy"], broken)
    (broken / "model.safetensors").write_bytes(b"\x00\x01partial")
    with pytest.raises(ModelDirError, match="unreadable safetensors"):
        check_model_dir(broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(ModelDirError, match="model.safetensors missing"):
        check_model_dir(broken)
    with pytest.raises(ModelDirError, match="not found"):
        check_model_dir(tmp_path / "absent")

    params = names()
    v = verdict_for(tiny_models["first"], True, {"source": "sft"})
    with pytest.raises(ModelDirError, match="not the policy model the verdict evaluated"):
        register_models(project, COMMON, params, v, reward_dir=tiny_models["first"]["reward"],
                        policy_dir=tiny_models["second"]["policy"])
    assert status(project, COMMON, model_names=[params.policy_model_name])["models"][
        params.policy_model_name]["registered"] is False


@pytest.mark.slow
def test_champion_loads_in_a_fresh_process(project, tiny_models):
    params = names()
    register(project, params, tiny_models["first"], True, {"source": "sft"})
    code = f"""
import json, mlflow, torch
from safetensors.torch import load_file
mlflow.set_tracking_uri({('sqlite:///' + str(project / 'mlflow.db'))!r})
pipe = mlflow.transformers.load_model("models:/{params.policy_model_name}@champion")
out = pipe("how do I fix the car?", max_new_tokens=4, do_sample=False)
src = load_file({str(tiny_models['first']['policy'] / 'model.safetensors')!r})
same = all(torch.equal(pipe.model.state_dict()[k], v) for k, v in src.items())
rm = mlflow.pyfunc.load_model("models:/{params.reward_model_name}@champion")
pred = rm.predict(["how do I fix the car?"])
print(json.dumps({{"text": out[0]["generated_text"], "same": same, "score": float(pred["score"][0])}}))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["same"] is True
    assert got["text"].startswith("how do I fix the car?")
    assert isinstance(got["score"], float)


def test_verdict_is_stale_when_the_reward_champion_moved_since_evaluate(project, tiny_models):
    """The policy champion can stay while `driftkeel rollback --model <reward>` moves the reward one; the
    verdict's forgetting / accuracy-drop checks compared against the old reward champion, so it must
    not promote (it used to: only the policy champion was compared)."""
    params = names()
    register(project, params, tiny_models["first"], True, {"source": "sft"})
    register(project, params, tiny_models["second"], True, {"source": "champion", "version": 1})
    rollback(params.reward_model_name, reason="reward regression", user="oncall", root=project, common=COMMON)
    # evaluated against policy champion v2 and reward champion v2, but the reward champion is now v1
    # (the first reward model; this verdict's reward model is the second one)
    rec = register(project, params, tiny_models["second"], True, {"source": "champion", "version": 2},
                   reward_champion=2)
    assert rec["promoted"] is False and "reward champion is now v1" in rec["decision"], rec["decision"]
    assert rec["models"]["policy"]["champion"] == 2 and rec["models"]["reward"]["champion"] == 1
    # evaluated against the current pair: not stale, but this reward model is the one a human rolled
    # back, so register does not bring it back
    rec = register(project, params, tiny_models["second"], True, {"source": "champion", "version": 2},
                   reward_champion=1)
    assert rec["promoted"] is False and "the reward model" in rec["decision"] and "was rolled back" in rec["decision"]
    # a new pair evaluated against the current pair promotes
    rec = register(project, params, tiny_models["third"], True, {"source": "champion", "version": 2},
                   reward_champion=1)
    assert rec["promoted"] is True, rec["decision"]
    assert stale_reward_reason(None, None) is None and stale_reward_reason({"version": 3}, 3) is None
    assert stale_reward_reason(None, 2).startswith("verdict is stale")


def test_a_register_killed_between_the_two_promotions_still_promotes_on_rerun(project, tiny_models):
    """register moves the reward champion first, then the policy one. Killed in between, the reward
    champion is already this verdict's reward model (same fingerprint, an earlier version number): the
    re-run must not call the verdict stale because of its own move."""
    from driftkeel.registry.lifecycle import move_alias

    params = names()
    register(project, params, tiny_models["first"], True, {"source": "sft"})
    failed = register(project, params, tiny_models["second"], False, {"source": "champion", "version": 1})
    client = registry_client(project, COMMON)
    move_alias(client, params.reward_model_name, "champion", failed["models"]["reward"]["version"],
               action="promote", reason="simulated: killed after the reward promotion")
    rec = register(project, params, tiny_models["second"], True, {"source": "champion", "version": 1},
                   reward_champion=1)
    assert rec["promoted"] is True, rec["decision"]
    assert rec["models"]["policy"]["champion"] == rec["models"]["policy"]["version"]


def test_a_rolled_back_model_is_not_promoted_again_by_register(project, tiny_models):
    """After `rollback`, the champion is again the version an older verdict compared against, so that
    verdict looks current; re-running register with it (dvc repro -f register, or a changed input of
    register) used to promote the rolled-back model as a new version."""
    params = names()
    register(project, params, tiny_models["first"], True, {"source": "sft"})
    register(project, params, tiny_models["second"], True, {"source": "champion", "version": 1})
    rollback(params.policy_model_name, reason="toxicity in prod", user="oncall", root=project, common=COMMON)
    rec = register(project, params, tiny_models["second"], True, {"source": "champion", "version": 1})
    assert rec["promoted"] is False and "policy model" in rec["decision"] and "rolled back" in rec["decision"]
    assert f"--to {rec['models']['policy']['version']}" in rec["decision"]
    assert rec["models"]["policy"]["champion"] == 1 and rec["models"]["policy"]["version"] == 2
    client = registry_client(project, COMMON)
    assert len(client.search_model_versions(f"name = '{params.policy_model_name}'")) == 2   # no duplicate
    # put back by hand, then the same verdict is a no-op promotion, not a refusal
    rollback(params.policy_model_name, to_version=2, reason="false alarm", root=project, common=COMMON)
    rec = register(project, params, tiny_models["second"], True, {"source": "champion", "version": 2},
                   reward_champion=2)
    assert rec["promoted"] is True and rec["models"]["policy"]["champion"] == 2, rec["decision"]


def test_registering_the_same_models_twice_reuses_the_versions_so_rollback_reaches_the_real_previous(
        project, tiny_models):
    params = names()
    register(project, params, tiny_models["first"], True, {"source": "sft"})
    verdict = verdict_for(tiny_models["second"], True, {"source": "champion", "version": 1})
    for _ in range(2):     # a re-run: dvc repro -f register, or after a kill past the promotion
        rec = register_models(project, COMMON, params, verdict, reward_dir=tiny_models["second"]["reward"],
                              policy_dir=tiny_models["second"]["policy"])
        assert rec["promoted"] is True and rec["models"]["policy"]["version"] == 2
    assert rec["models"]["policy"]["reused_version"] is True
    client = registry_client(project, COMMON)
    tags = client.get_model_version(params.policy_model_name, "2").tags
    assert tags["driftkeel.reregistered_by_run"] == rec["run_id"] and tags["driftkeel.gate_passed"] == "true"
    assert tags["driftkeel.last_gate_passed"] == "true"
    out = rollback(params.policy_model_name, reason="regression", root=project, common=COMMON)
    assert (out["from_version"], out["to_version"]) == (2, 1)


def test_rollback_skips_deleted_versions(project, tiny_models):
    params = names()
    name = params.policy_model_name
    register(project, params, tiny_models["first"], True, {"source": "sft"})
    register(project, params, tiny_models["second"], True, {"source": "champion", "version": 1})
    register(project, params, tiny_models["third"], True, {"source": "champion", "version": 2}, reward_champion=2)
    client = registry_client(project, COMMON)
    # the previous champion (v2) was deleted: the rollback goes one further down
    client.delete_model_version(name, "2")
    out = rollback(name, reason="bad v3", root=project, common=COMMON)
    assert (out["from_version"], out["to_version"]) == (3, 1)
    # the champion itself deleted (its aliases go with it): the rollback restores the one below it
    rollback(name, to_version=3, reason="again", root=project, common=COMMON)
    client.delete_model_version(name, "3")
    assert "champion" not in client.get_registered_model(name).aliases
    out = rollback(name, reason="v3 deleted", root=project, common=COMMON)
    assert (out["from_version"], out["to_version"]) == (None, 1)
    client.delete_model_version(name, "1")
    with pytest.raises(RegistryError, match="deleted since: v1, v2, v3|deleted since: v1, v3, v2|deleted since"):
        rollback(name, reason="nothing left", root=project, common=COMMON)


def test_status_reads_a_relative_sqlite_uri_like_mlflow(project, tiny_models, monkeypatch):
    params = names()
    register(project, params, tiny_models["first"], True, {"source": "sft"})
    db = project / "mlflow.db"
    assert db.exists()
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")    # as a user writes it, from the project
    st = status(project, COMMON, model_names=[params.policy_model_name])
    assert st["models"][params.policy_model_name]["registered"] is True
    assert st["models"][params.policy_model_name]["champion"]["version"] == 1


def test_rollback_to_a_version_that_failed_the_gate_needs_an_explicit_override(project, tiny_models):
    params = names()
    name = params.policy_model_name
    register(project, params, tiny_models["first"], True, {"source": "sft"})
    register(project, params, tiny_models["second"], False, {"source": "champion", "version": 1})
    with pytest.raises(RegistryError, match=r"v2 failed the promotion gate \(reward_accuracy 0.4000 <.*--allow-failed-gate"):
        rollback(name, to_version=2, reason="try it", root=project, common=COMMON)
    assert alias_history(name, project, COMMON, alias="champion")[-1]["to_version"] == 1
    out = rollback(name, to_version=2, reason="hotfix, gate known wrong", root=project, common=COMMON,
                   allow_failed_gate=True)
    assert out["to_version"] == 2 and out["event"]["context"]["gate_override"] is True
