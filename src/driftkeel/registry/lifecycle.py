"""Model registry lifecycle: register this run's models, move `challenger` / `champion`, roll back.

- `register_models` (the register stage): log the reward and policy model dirs to MLflow as
  `transformers` models (safetensors kept), register them as new versions of `driftkeel-reward` /
  `driftkeel-policy` tagged with the git commit and DVC data version, set `challenger` on both, and
  `champion` on both only when the evaluate verdict passed and was computed against the champion that
  is still current (a stale verdict never promotes).
- `rollback`: move `champion` back to the previous champion (lineage replayed from the alias history,
  see `history.py`) or to a given version.
- `status`: champion / challenger versions per model and the last alias event.
Every alias move goes through `move_alias`, which appends an event (who, when, why, from, to).
"""
from __future__ import annotations

import os
import tempfile
from importlib import metadata
from pathlib import Path

from driftkeel.config import CommonParams, RegisterParams, ConfigError, load_section
from driftkeel.registry import history
from driftkeel.registry.modelfiles import (
    ModelDirError,
    check_model_dir,
    fingerprint,
    hf_dir_from_mlflow_download,
)
from driftkeel.registry.tracking import _DEFAULT_RETRY_ENV, _sqlite_path, stage_run, tracking_uri

CHAMPION, CHALLENGER = "champion", "challenger"
# role -> (transformers pipeline task, name of the loader in driftkeel.training.models)
ROLES = {"reward": ("text-classification", "load_reward_model"),
         "policy": ("text-generation", "load_causal_lm")}
TAG = "driftkeel."


class RegistryError(RuntimeError):
    """A registry operation cannot be done as asked (no such version, nothing to roll back to...)."""


# ------------------------------------------------------------------------------------------ client


def registry_client(root: str | Path = ".", common: CommonParams | None = None):
    """An MlflowClient on the project's tracking/registry store (no experiment is created)."""
    from mlflow import MlflowClient

    root = Path(root)
    if common is None:
        common = load_section("register", root / "params.yaml")[0]
    for k, v in _DEFAULT_RETRY_ENV.items():
        os.environ.setdefault(k, v)
    uri = tracking_uri(root, common)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _store_missing(uri: str) -> bool:
    """True for a SQLite store whose file does not exist yet (reading it would create it). The path is
    read as MLflow reads it: `sqlite:///mlflow.db` is relative to the working directory."""
    if not uri.startswith("sqlite:///"):
        return False
    return not _sqlite_path(uri).exists()


def _is_not_found(exc) -> bool:
    return getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


def alias_version(client, model_name: str, alias: str) -> int | None:
    """The version holding `alias`, or None (no such alias or no such registered model)."""
    from mlflow.exceptions import MlflowException

    try:
        aliases = client.get_registered_model(model_name).aliases or {}
    except MlflowException as exc:
        if _is_not_found(exc):
            return None
        raise
    v = aliases.get(alias)
    return None if v is None else int(v)


def move_alias(client, model_name: str, alias: str, version: int, *, action: str, reason: str,
               user: str | None = None, context: dict | None = None) -> dict:
    """Point `alias` at `version` and append the move to the history; returns the event."""
    version = int(version)
    client.get_model_version(model_name, str(version))  # raises if the version does not exist
    before = alias_version(client, model_name, alias)
    event = history.make_event(alias, action, before, version, user or history.current_user(),
                               reason, context)
    client.set_registered_model_alias(model_name, alias, str(version))
    history.record_event(client, model_name, event)
    client.set_model_version_tag(model_name, str(version), f"{TAG}{alias}_since", event["at"])
    return event


# ------------------------------------------------------------------------------- download / fetch


def fetch_version(client, model_name: str, version: int, dst: str | Path) -> Path:
    """Download registered `model_name` version `version` and assemble a save_pretrained dir at `dst`."""
    import mlflow

    uri = client.get_model_version_download_uri(model_name, str(int(version)))
    with tempfile.TemporaryDirectory(prefix="driftkeel-fetch-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
        return hf_dir_from_mlflow_download(local, dst)


def fetch_alias(client, model_name: str, alias: str, dst: str | Path) -> dict | None:
    """{"model_name", "alias", "version", "path"} for the version holding `alias` (downloaded to
    `dst`), or None when no version holds it."""
    version = alias_version(client, model_name, alias)
    if version is None:
        return None
    path = fetch_version(client, model_name, version, dst)
    return {"model_name": model_name, "alias": alias, "version": version, "path": str(path)}


# ---------------------------------------------------------------------------------------- logging


def _pip_requirements() -> list[str]:
    reqs = []
    for pkg in ("torch", "transformers", "tokenizers", "safetensors"):
        try:
            reqs.append(f"{pkg}=={metadata.version(pkg).split('+')[0]}")
        except metadata.PackageNotFoundError:
            reqs.append(pkg)
    return reqs


def load_for_role(model_dir: str | Path, role: str):
    """(model, tokenizer) via the trainers' own loaders, proving the dir loads before registering."""
    from driftkeel.training import models

    if role not in ROLES:
        raise ValueError(f"unknown model role {role!r}; known: {sorted(ROLES)}")
    return getattr(models, ROLES[role][1])(model_dir)


def log_model_dir(model_dir: str | Path, role: str, name: str, description: str = ""):
    """Log a save_pretrained dir as an MLflow `transformers` model in the active run (safetensors,
    tokenizer, pyfunc flavour); returns mlflow's ModelInfo.

    MLflow 3.17's path-based logging (`transformers_model=<dir>`) fails with transformers 5
    (`check_task` returns the pipeline class by name), so the model is loaded and logged as
    components; its weights are then compared tensor by tensor with the source dir."""
    import huggingface_hub
    import mlflow

    task = ROLES[role][0]
    model, tokenizer = load_for_role(model_dir, role)
    card = huggingface_hub.ModelCard(f"# {name}\n\n{description or 'driftkeel ' + role + ' model'}\n")
    # raw reward (no sigmoid) from pyfunc predict for the reward model
    model_config = {"function_to_apply": "none"} if role == "reward" else None
    info = mlflow.transformers.log_model(
        {"model": model, "tokenizer": tokenizer}, name=role, task=task, model_card=card,
        pip_requirements=_pip_requirements(), model_config=model_config)
    return info


def _same_weights(src_dir: Path, model_id: str) -> bool:
    """The logged model's tensors equal the source dir's (names and values)."""
    import mlflow
    from safetensors.torch import load_file

    location = mlflow.MlflowClient().get_logged_model(model_id).artifact_location
    with tempfile.TemporaryDirectory(prefix="driftkeel-verify-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/model",
                                                         dst_path=tmp))
        a, b = _load_tensors(src_dir, load_file), _load_tensors(local, load_file)
    return a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


def _load_tensors(path: Path, load_file) -> dict:
    out = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


# ---------------------------------------------------------------------------------- register stage


def _verdict_models(verdict: dict, reward_dir: Path, policy_dir: Path) -> dict[str, dict]:
    """Check both dirs are complete and are exactly the models the verdict evaluated."""
    dirs = {"reward": Path(reward_dir), "policy": Path(policy_dir)}
    out = {}
    for role, path in dirs.items():
        info = check_model_dir(path)
        fp = fingerprint(path)
        expected = ((verdict.get("models") or {}).get(role) or {}).get("fingerprint")
        if expected is None:
            raise ModelDirError(f"verdict.json has no fingerprint for the {role} model: re-run evaluate")
        if fp != expected:
            raise ModelDirError(f"{path}: not the {role} model the verdict evaluated "
                                f"(fingerprint {fp[:12]} != {expected[:12]}): re-run evaluate")
        out[role] = {**info, "fingerprint": fp}
    return out


def stale_baseline_reason(baseline: dict | None, current_champion: int | None) -> str | None:
    """Why a verdict may not promote because the champion changed since evaluate ran, else None.
    `baseline` is the verdict's {"source": "champion", "version": n} or {"source": "sft"}."""
    baseline = baseline or {}
    source = baseline.get("source")
    if source == "champion":
        if current_champion != baseline.get("version"):
            return (f"verdict is stale: evaluated against champion v{baseline.get('version')}, "
                    f"champion is now {'v' + str(current_champion) if current_champion else 'unset'}"
                    "; re-run evaluate (dvc repro -f evaluate)")
        return None
    if source == "sft":
        if current_champion is not None:
            return (f"verdict is stale: evaluated against the SFT model while no champion existed, "
                    f"champion is now v{current_champion}; re-run evaluate (dvc repro -f evaluate)")
        return None
    return "verdict has no baseline record: re-run evaluate"


def stale_reward_reason(champion_reward: dict | None, current_reward_champion: int | None) -> str | None:
    """Why a verdict may not promote because the reward champion changed since evaluate ran (its
    forgetting and accuracy-drop checks compared against `champion_reward`, the verdict's record, None
    when there was no reward champion), else None. The policy champion can stay while the reward one
    moves: `driftkeel rollback --model driftkeel-reward` moves one model."""
    evaluated = None if not champion_reward else champion_reward.get("version")
    evaluated = None if evaluated is None else int(evaluated)
    current = None if current_reward_champion is None else int(current_reward_champion)
    if evaluated == current:
        return None
    return (f"verdict is stale: its reward checks ran against "
            f"{'reward champion v' + str(evaluated) if evaluated is not None else 'no reward champion'}, "
            f"the reward champion is now {'v' + str(current) if current is not None else 'unset'}"
            "; re-run evaluate (dvc repro -f evaluate)")


def _holds(client, model_name: str, version: int | None, fingerprint: str) -> bool:
    """Whether registered `version` of `model_name` (None: no version) is the model with `fingerprint`."""
    if version is None:
        return False
    tags = client.get_model_version(model_name, str(version)).tags or {}
    return tags.get(f"{TAG}fingerprint") == fingerprint


def _verdict_tags(verdict: dict) -> dict[str, str]:
    tags = {f"{TAG}gate_passed": str(bool(verdict.get("passed"))).lower(),
            f"{TAG}gate_reasons": "; ".join(verdict.get("reasons") or [])[:4000]}
    for key, value in (verdict.get("metrics") or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            tags[f"{TAG}metric.{key}"] = repr(float(value))
    return tags


def _version_tags(role: str, sr, model_info: dict, verdict: dict) -> dict[str, str]:
    tags = {f"{TAG}role": role, f"{TAG}run_id": sr.run_id, f"{TAG}parent_run_id": sr.parent_run_id,
            f"{TAG}fingerprint": model_info["fingerprint"], f"{TAG}source_dir": model_info["path"]}
    tags.update({k: str(v) for k, v in sr.tags.items() if k.startswith(TAG)})  # git commit, data version
    tags.update(_verdict_tags(verdict))
    return tags


def _versions_with_fingerprint(client, model_name: str, fp: str) -> list:
    """Registered versions of `model_name` holding the model with fingerprint `fp` (READY only),
    newest first; [] when the model is not registered yet."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{model_name}'")
    except MlflowException as exc:
        if _is_not_found(exc):
            return []
        raise
    same = [v for v in versions if (v.tags or {}).get(f"{TAG}fingerprint") == fp
            and str(getattr(v, "status", "READY")) in ("READY", "ModelVersionStatus.READY")]
    return sorted(same, key=lambda v: -int(v.version))


def _rolled_back_reason(client, names: dict, versions: dict, fingerprints: dict) -> str | None:
    """Why this pair may not be promoted because a human rolled one of its models back, else None.

    A rollback records `rolled_back_at` on the version it took the champion alias from. The same model
    (same fingerprint) must not come back by a register run: neither by a verdict evaluated before the
    rollback (after it, the champion is again the version that verdict compared against, so the
    version check alone would call it current) nor by a fresh one (the gate does not know why it was
    rolled back). `driftkeel rollback --to <version>` puts it back by hand."""
    for role in ("reward", "policy"):
        current = alias_version(client, names[role], CHAMPION)
        for v in _versions_with_fingerprint(client, names[role], fingerprints[role]):
            at = (v.tags or {}).get(f"{TAG}rolled_back_at")
            if at and current != int(v.version) and current != versions[role]:
                return (f"the {role} model (fingerprint {fingerprints[role][:12]}, v{v.version}) was rolled back "
                        f"from {CHAMPION} at {at}: a rolled-back model is not promoted again by register; "
                        f"train a new one, or put it back by hand with `driftkeel rollback --model "
                        f"{names[role]} --to {versions[role]}`")
    return None


def register_models(root: str | Path, common: CommonParams, params: RegisterParams, verdict: dict, *,
                    reward_dir: str | Path, policy_dir: str | Path, user: str | None = None,
                    verify_weights: bool = True) -> dict:
    """The register stage: returns the record written to outputs/register/registry.json."""
    import mlflow
    from mlflow import MlflowClient

    root = Path(root)
    user = user or history.current_user()
    checked = _verdict_models(verdict, Path(reward_dir), Path(policy_dir))
    names = {"reward": params.reward_model_name, "policy": params.policy_model_name}
    with stage_run("register", root, common, params) as sr:
        client = MlflowClient()
        context = {"run_id": sr.run_id, **{k: v for k, v in sr.tags.items() if k.startswith(TAG)}}
        versions: dict[str, int] = {}
        reused: dict[str, bool] = {}
        for role in ("reward", "policy"):
            same = _versions_with_fingerprint(client, names[role], checked[role]["fingerprint"])
            if same:
                # this very model is registered already (a re-run after a kill, `dvc repro -f register`,
                # a retrain that reproduced it): no second version of it, or a rollback from the copy
                # would land on the same model. Its gate tags stay those it was registered with (they
                # are replaced below only if this verdict promotes it); this verdict goes to last_*.
                versions[role], reused[role] = int(same[0].version), True
                for key, value in {f"{TAG}reregistered_by_run": sr.run_id,
                                   f"{TAG}last_gate_passed": str(bool(verdict.get("passed"))).lower(),
                                   f"{TAG}last_gate_reasons": "; ".join(verdict.get("reasons") or [])[:4000]}.items():
                    client.set_model_version_tag(names[role], str(versions[role]), key, value)
                continue
            info = log_model_dir(checked[role]["path"], role, names[role],
                                 description=f"registered by run {sr.run_id}")
            if verify_weights and not _same_weights(Path(checked[role]["path"]), info.model_id):
                raise ModelDirError(f"{checked[role]['path']}: logged weights differ from the source")
            mv = mlflow.register_model(info.model_uri, names[role],
                                       tags=_version_tags(role, sr, checked[role], verdict))
            versions[role], reused[role] = int(mv.version), False
        client.set_model_version_tag(names["policy"], str(versions["policy"]), f"{TAG}reward_version",
                                     str(versions["reward"]))
        client.set_model_version_tag(names["reward"], str(versions["reward"]), f"{TAG}policy_version",
                                     str(versions["policy"]))
        gate_text = "gate passed" if verdict.get("passed") else "gate failed"
        events = []
        for role in ("reward", "policy"):
            events.append(move_alias(client, names[role], CHALLENGER, versions[role], action="assign",
                                     user=user, context=context,
                                     reason=f"registered by run {sr.run_id} ({gate_text})"))
        current = alias_version(client, names["policy"], CHAMPION)
        stale = stale_baseline_reason(verdict.get("baseline"), current)
        if stale and _holds(client, names["policy"], current, checked["policy"]["fingerprint"]):
            # the champion is this very model: an interrupted run of this register (killed after it
            # promoted) moved it there from this same verdict, so the verdict is still current
            stale = None
        current_reward = alias_version(client, names["reward"], CHAMPION)
        stale_reward = stale_reward_reason(verdict.get("champion_reward"), current_reward)
        if stale_reward and _holds(client, names["reward"], current_reward, checked["reward"]["fingerprint"]):
            # likewise for the reward alias, which register moves first: killed between the two
            # promotions, the reward champion is already this verdict's reward model (by fingerprint)
            stale_reward = None
        stale = stale or stale_reward or _rolled_back_reason(
            client, names, versions, {r: checked[r]["fingerprint"] for r in ("reward", "policy")})
        promoted = bool(verdict.get("passed")) and stale is None
        if promoted:
            why = "; ".join(c["reason"] for c in verdict.get("checks", [])) or "gate passed"
            for role in ("reward", "policy"):
                if reused[role]:   # the champion's gate tags: the verdict that promoted it
                    for key, value in _verdict_tags(verdict).items():
                        client.set_model_version_tag(names[role], str(versions[role]), key, value)
                events.append(move_alias(client, names[role], CHAMPION, versions[role],
                                         action="promote", user=user, context=context,
                                         reason=f"gate passed: {why}"))
            decision = "promoted to champion"
        elif not verdict.get("passed"):
            decision = "not promoted: gate failed: " + "; ".join(verdict.get("reasons") or [])
        else:
            decision = f"not promoted: {stale}"
        record = {
            "run_id": sr.run_id, "git_commit": sr.tags.get(f"{TAG}git_commit"),
            "data_version": sr.tags.get(f"{TAG}data_version"), "gate_passed": bool(verdict.get("passed")),
            "promoted": promoted, "decision": decision,
            "models": {role: {"name": names[role], "version": versions[role],
                              "reused_version": reused[role],
                              "fingerprint": checked[role]["fingerprint"],
                              "champion": alias_version(client, names[role], CHAMPION),
                              "challenger": alias_version(client, names[role], CHALLENGER)}
                       for role in ("reward", "policy")},
            "events": events,
        }
        sr.log_metrics(registry_metrics(record))
        mlflow.set_tags({f"{TAG}promoted": str(promoted).lower(), f"{TAG}decision": decision[:4000]})
    return record


def registry_metrics(record: dict) -> dict:
    """Flat scalars of a register record (outputs/register/metrics.json)."""
    out = {"promoted": int(bool(record["promoted"])), "gate_passed": int(bool(record["gate_passed"]))}
    for role, m in record["models"].items():
        out[f"{role}_version"] = m["version"]
        out[f"{role}_champion_version"] = m["champion"] if m["champion"] is not None else 0
    return out


# --------------------------------------------------------------------------------- rollback/status


def rollback(model_name: str, to_version: int | None = None, *, reason: str, user: str | None = None,
             root: str | Path = ".", common: CommonParams | None = None, alias: str = CHAMPION,
             allow_failed_gate: bool = False) -> dict:
    """Move `alias` (champion) of `model_name` back to the previous champion, or to `to_version`.

    Returns {"model_name", "alias", "from_version", "to_version", "event", "companion"}; the event is
    appended to the alias history. Raises RegistryError when there is nothing to roll back to, and
    when the target failed the promotion gate (tag gate_passed false) unless `allow_failed_gate`
    (the override is recorded in the event's context)."""
    if not reason or not reason.strip():
        raise RegistryError("rollback needs a reason (it is recorded in the alias history)")
    client = registry_client(root, common)
    current = alias_version(client, model_name, alias)
    events = history.read_history(client, model_name)
    if to_version is None:
        # versions deleted since (deleting a version also drops its aliases) are no rollback target
        existing = {int(v.version) for v in client.search_model_versions(f"name = '{model_name}'")}
        target = history.previous_version(events, current, alias, existing=existing)
        if target is None:
            lineage = history.champion_lineage(events, alias)
            gone = [v for v in lineage if v not in existing]
            raise RegistryError(f"{model_name}: no previous {alias} to roll back to "
                                f"(current: {current}, {len(events)} alias events"
                                + (f"; deleted since: {', '.join(f'v{v}' for v in gone)}" if gone else "") + ")")
    else:
        target = int(to_version)
    if target == current:
        raise RegistryError(f"{model_name}: v{target} already holds {alias}")
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version(model_name, str(target))
    except MlflowException as exc:
        raise RegistryError(f"{model_name}: no version {target} to roll back to ({exc})") from None
    tags = mv.tags or {}
    failed_gate = tags.get(f"{TAG}gate_passed") == "false"
    if failed_gate and not allow_failed_gate:
        raise RegistryError(f"{model_name}: v{target} failed the promotion gate "
                            f"({tags.get(f'{TAG}gate_reasons') or 'no reasons recorded'}); nothing becomes "
                            f"{alias} without passing it unless you say so: --allow-failed-gate (recorded)")
    user = user or history.current_user()
    context = {"rolled_back_from": current, **({"gate_override": True} if failed_gate else {})}
    event = move_alias(client, model_name, alias, target, action="rollback", reason=reason, user=user,
                       context=context)
    if current is not None:
        client.set_model_version_tag(model_name, str(current), f"{TAG}rolled_back_at", event["at"])
    companion = {k[len(TAG):]: v for k, v in (mv.tags or {}).items()
                 if k in (f"{TAG}reward_version", f"{TAG}policy_version")}
    return {"model_name": model_name, "alias": alias, "from_version": current, "to_version": target,
            "event": event, "companion": companion}


def _model_names(root: Path) -> list[str]:
    try:
        _, reg = load_section("register", root / "params.yaml")
    except ConfigError:
        reg = RegisterParams()
    return [reg.policy_model_name, reg.reward_model_name]


def _version_info(client, model_name: str, version: int | None) -> dict | None:
    if version is None:
        return None
    mv = client.get_model_version(model_name, str(version))
    tags = mv.tags or {}
    return {"version": int(mv.version), "created_at_ms": mv.creation_timestamp,
            "run_id": tags.get(f"{TAG}run_id"), "git_commit": tags.get(f"{TAG}git_commit"),
            "data_version": tags.get(f"{TAG}data_version"),
            "gate_passed": tags.get(f"{TAG}gate_passed"),
            "rolled_back_at": tags.get(f"{TAG}rolled_back_at")}


def status(root: str | Path = ".", common: CommonParams | None = None,
           model_names: list[str] | None = None) -> dict:
    """Champion / challenger per registered model, latest version, last alias event."""
    from mlflow.exceptions import MlflowException

    root = Path(root)
    if common is None:
        common = load_section("register", root / "params.yaml")[0]
    names = model_names or _model_names(root)
    uri = tracking_uri(root, common)
    out = {"tracking_uri": uri, "models": {}}
    empty = {"registered": False, "champion": None, "challenger": None, "latest_version": None,
             "n_events": 0, "last_event": None}
    if _store_missing(uri):
        out["models"] = {n: dict(empty) for n in names}
        return out
    client = registry_client(root, common)
    for name in names:
        try:
            rm = client.get_registered_model(name)
        except MlflowException as exc:
            if _is_not_found(exc):
                out["models"][name] = dict(empty)
                continue
            raise
        aliases = {k: int(v) for k, v in (rm.aliases or {}).items()}
        versions = client.search_model_versions(f"name = '{name}'")
        events = history.events_from_tags(rm.tags or {})
        out["models"][name] = {
            "registered": True,
            "champion": _version_info(client, name, aliases.get(CHAMPION)),
            "challenger": _version_info(client, name, aliases.get(CHALLENGER)),
            "latest_version": max((int(v.version) for v in versions), default=None),
            "n_events": len(events), "last_event": events[-1] if events else None,
        }
    return out


def alias_history(model_name: str, root: str | Path = ".", common: CommonParams | None = None,
                  alias: str | None = None) -> list[dict]:
    """The recorded alias events of `model_name`, oldest first."""
    return history.read_history(registry_client(root, common), model_name, alias)

