"""Register stage: log this run's reward and policy models to MLflow, register new versions, set
`challenger`, and `champion` when the evaluate verdict passed (alias moves recorded in the history).

    python -m pipelines.register

Writes outputs/register/{registry.json, metrics.json}.
"""
from __future__ import annotations

from pipelines._stage import stage

from driftkeel.io import read_json, write_json
from driftkeel.registry.lifecycle import register_models, registry_metrics, status


def main() -> dict:
    st = stage("register")
    verdict_path = st.outputs / "evaluate" / "verdict.json"
    if not verdict_path.exists():
        raise SystemExit(f"register: {verdict_path} not found: run the evaluate stage first")
    verdict = read_json(verdict_path)
    record = register_models(st.root, st.common, st.params, verdict,
                             reward_dir=st.outputs / "reward" / "model",
                             policy_dir=st.outputs / "ppo" / "model")
    record["status"] = status(st.root, st.common)["models"]
    write_json(st.out / "registry.json", record)
    write_json(st.out / "metrics.json", registry_metrics(record))
    pol, rew = record["models"]["policy"], record["models"]["reward"]
    print(f"register: {pol['name']} v{pol['version']}, {rew['name']} v{rew['version']} -> "
          f"{record['decision']}")
    return record


if __name__ == "__main__":
    main()
