"""The evaluate and register stage entries on tiny real models and a real MLflow store."""
import json
import sys

import numpy as np
import pytest

from driftkeel.config import EvaluateParams
from driftkeel.evaluation.evaluate import load_eval_pairs, load_reward, run_evaluation, score_pairs
from driftkeel.evaluation.metrics import pairwise_accuracy
from driftkeel.registry.modelfiles import fingerprint

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from pipelines import evaluate as evaluate_stage  # noqa: E402
from pipelines import register as register_stage  # noqa: E402


def test_reward_accuracy_invariants_on_a_real_model(eval_project):
    reward = load_reward(eval_project / "outputs" / "reward" / "model")
    pairs = load_eval_pairs(eval_project / "data" / "eval" / "pairs.jsonl")
    chosen, rejected = score_pairs(reward, pairs)
    # chosen == rejected text: every pair ties exactly -> accuracy exactly 0.5
    same = pairs.assign(rejected=pairs["chosen"])
    c2, r2 = score_pairs(reward, same)
    assert np.array_equal(c2, r2) and pairwise_accuracy(c2, r2) == 0.5
    # swapping chosen and rejected turns wins into losses: the two accuracies sum to exactly 1
    swapped = pairs.assign(chosen=pairs["rejected"], rejected=pairs["chosen"])
    c3, r3 = score_pairs(reward, swapped)
    assert np.array_equal(c3, rejected) and np.array_equal(r3, chosen)
    if not np.any(chosen == rejected):
        assert pairwise_accuracy(chosen, rejected) + pairwise_accuracy(c3, r3) == 1.0


def test_missing_eval_columns_fail_with_their_names(tmp_path):
    (tmp_path / "pairs.jsonl").write_text('{"pair_id": "1", "prompt": "p", "chosen": "c"}\n')
    with pytest.raises(ValueError, match=r"lack column\(s\) \['rejected', 'slice', 'topic'\]"):
        load_eval_pairs(tmp_path / "pairs.jsonl")


@pytest.mark.slow
def test_evaluate_then_register_then_evaluate_against_the_champion(eval_project):
    out = eval_project / "outputs"
    # 1) no champion yet: the SFT model is the baseline
    verdict = evaluate_stage.main()
    assert verdict["baseline"]["source"] == "sft"
    assert verdict["baseline"]["fingerprint"] == fingerprint(out / "sft" / "model")
    assert verdict["models"]["policy"]["fingerprint"] == fingerprint(out / "ppo" / "model")
    assert verdict["passed"] is True
    metrics = json.loads((out / "evaluate" / "metrics.json").read_text())
    for key in ("reward_accuracy", "reward_accuracy_pre", "reward_accuracy_post",
                "challenger_mean_reward", "baseline_mean_reward", "policy_reward_drop", "gate_passed"):
        assert isinstance(metrics[key], (int, float)), key
    assert metrics["n_eval_pairs_pre"] == 5 and metrics["n_policy_prompts"] == 4
    assert (out / "evaluate" / "plots" / "slices.csv").read_text().splitlines()[0] == \
        "slice,accuracy,n,precision,recall,f1,ece,ece_raw"
    for key in ("reward_precision", "reward_recall", "reward_f1", "reward_ece", "reward_temperature",
                "reward_accuracy_topic_gap", "policy_win_rate", "policy_win_rate_pre"):
        assert isinstance(metrics[key], (int, float)), key
    assert metrics["has_champion_reward"] == 0 and metrics["oracle_available"] == 0
    skipped = {c["name"]: c for c in verdict["checks"] if c["skipped"]}
    assert set(skipped) == {"reward_accuracy_drop", "forgetting", "true_win_rate"}
    assert skipped["forgetting"]["reason"] == "forgetting: skipped (no champion reward model to compare with)"
    samples = [json.loads(x) for x in (out / "evaluate" / "samples.jsonl").read_text().splitlines()]
    assert [s["prompt_id"] for s in samples] == ["q0", "q1", "q2", "q3"]
    assert metrics["challenger_mean_reward"] == pytest.approx(
        np.mean([s["challenger_reward"] for s in samples]))

    # 2) the first passing run leaves a champion
    record = register_stage.main()
    assert record["promoted"] is True
    assert record["models"]["policy"]["champion"] == 1 and record["models"]["reward"]["champion"] == 1
    reg = json.loads((out / "register" / "registry.json").read_text())
    assert reg["status"]["driftkeel-policy"]["champion"]["version"] == 1
    assert json.loads((out / "register" / "metrics.json").read_text())["promoted"] == 1

    # 3) the champion (downloaded from MLflow) is now the baseline; it is the same model as the
    #    challenger, so with the same seed both generate the same text: the reward drop is exactly 0
    verdict = evaluate_stage.main()
    assert verdict["baseline"]["source"] == "champion" and verdict["baseline"]["version"] == 1
    assert verdict["baseline"]["path"] == "models:/driftkeel-policy/1"
    assert verdict["metrics"]["policy_reward_drop"] == 0.0
    # ... and the champion reward model is the challenger's: same pairs, same scores, no drop at all
    m = verdict["metrics"]
    assert m["has_champion_reward"] == 1 and verdict["champion_reward"]["version"] == 1
    assert verdict["champion_reward"]["path"] == "models:/driftkeel-reward/1"
    assert m["forgetting"] == 0.0 and m["reward_accuracy_drop_new"] == 0.0
    assert m["champion_reward_accuracy"] == m["reward_accuracy"]
    assert m["policy_win_rate"] == 0.5  # identical generations: every prompt is a tie
    assert not [c for c in verdict["checks"] if c["skipped"] and c["name"] != "true_win_rate"]
    table = (out / "evaluate" / "plots" / "slices.csv").read_text().splitlines()
    assert table[0].endswith(",champion_accuracy")


@pytest.mark.slow
def test_gate_failure_is_recorded_and_register_keeps_the_champion(eval_project):
    import yaml

    first = evaluate_stage.main()
    register_stage.main()  # v1 champion
    # make the held-out pairs disagree with the reward model: swap chosen/rejected when it ranks
    # most pairs right, so its accuracy becomes min(acc, 1 - acc) <= 0.5 < the new threshold
    pairs_path = eval_project / "data" / "eval" / "pairs.jsonl"
    if first["metrics"]["reward_accuracy"] > 0.5:
        rows = [json.loads(x) for x in pairs_path.read_text().splitlines()]
        pairs_path.write_text("".join(json.dumps({**r, "chosen": r["rejected"],
                                                  "rejected": r["chosen"]}) + "\n" for r in rows))
    params = yaml.safe_load((eval_project / "params.yaml").read_text())
    params["evaluate"]["min_reward_accuracy"] = 0.51
    (eval_project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    verdict = evaluate_stage.main()
    assert verdict["passed"] is False
    assert verdict["reasons"][0].startswith("reward_accuracy 0.")
    assert "< min_reward_accuracy 0.5100" in verdict["reasons"][0]
    record = register_stage.main()
    assert record["promoted"] is False and record["decision"].startswith("not promoted: gate failed")
    # the same model files as v1 (only the eval data changed): v1 is reused, not registered twice; its
    # gate tags stay those that promoted it, this verdict is recorded beside them
    assert record["models"]["policy"] == {**record["models"]["policy"], "version": 1, "reused_version": True,
                                          "champion": 1, "challenger": 1}
    from driftkeel.registry.lifecycle import registry_client

    tags = registry_client(eval_project).get_model_version("driftkeel-policy", "1").tags
    assert tags["driftkeel.gate_passed"] == "true" and tags["driftkeel.last_gate_passed"] == "false"


def test_run_evaluation_refuses_a_half_written_model(eval_project):
    from driftkeel.registry.modelfiles import ModelDirError

    (eval_project / "outputs" / "ppo" / "model" / "model.safetensors").unlink()
    with pytest.raises(ModelDirError, match="model.safetensors missing"):
        run_evaluation(params=EvaluateParams(), reward_dir=eval_project / "outputs/reward/model",
                       challenger_dir=eval_project / "outputs/ppo/model",
                       sft_dir=eval_project / "outputs/sft/model",
                       pairs_path=eval_project / "data/eval/pairs.jsonl",
                       prompts_path=eval_project / "data/eval/prompts.jsonl",
                       policy_model_name="driftkeel-policy", max_new_tokens=4, seed=0)


class NoRegistry:
    """An MLflow client whose registry holds no model (no champions): run_evaluation without a store."""

    def get_registered_model(self, name):
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

        raise MlflowException(f"{name} not found", error_code=RESOURCE_DOES_NOT_EXIST)


def _evaluate(root, params, **kw):
    return run_evaluation(params=params, reward_dir=root / "outputs/reward/model",
                          challenger_dir=root / "outputs/ppo/model", sft_dir=root / "outputs/sft/model",
                          pairs_path=root / "data/eval/pairs.jsonl", prompts_path=root / "data/eval/prompts.jsonl",
                          policy_model_name="driftkeel-policy", reward_model_name="driftkeel-reward",
                          max_new_tokens=4, seed=0, client=NoRegistry(), data_dir=root / "data", **kw)


def _params(root):
    import yaml

    return EvaluateParams(**yaml.safe_load((root / "params.yaml").read_text())["evaluate"])


@pytest.mark.slow
def test_oracle_metrics_only_with_simulator_ground_truth(eval_project):
    """data/ground_truth/ present -> true-utility metrics (labelled ORACLE), recomputable by hand."""
    from driftkeel.data.simulator import true_utility

    plain = _evaluate(eval_project, _params(eval_project))
    assert plain.metrics["oracle_available"] == 0 and "true_win_rate" not in plain.metrics
    assert plain.verdict["oracle"] == {"available": False, "label": None}
    (eval_project / "data" / "ground_truth").mkdir(parents=True)
    (eval_project / "data" / "ground_truth" / "truth.json").write_text("{}")
    res = _evaluate(eval_project, _params(eval_project))
    m, verdict = res.metrics, res.verdict
    assert m["oracle_available"] == 1 and verdict["oracle"]["label"].startswith("ORACLE")
    for s in res.samples:
        concept = "pre" if s["slice"] == "pre" else "post"
        assert s["challenger_true_utility"] == true_utility(s["prompt"], s["challenger_response"], concept)
        assert s["baseline_true_utility"] == true_utility(s["prompt"], s["baseline_response"], concept)
    ch = np.array([s["challenger_true_utility"] for s in res.samples])
    bl = np.array([s["baseline_true_utility"] for s in res.samples])
    assert m["true_win_rate"] == pairwise_accuracy(ch, bl)
    assert m["true_utility_gain"] == pytest.approx(ch.mean() - bl.mean())
    check = next(c for c in verdict["checks"] if c["name"] == "true_win_rate")
    assert not check["skipped"] and check["reason"].startswith("true_win_rate ")
    assert "true_win_rate" in res.policy_table.columns
    # the oracle never changes what the learned reward model says
    assert {k: v for k, v in m.items() if not k.startswith(("true_", "oracle", "challenger_true",
                                                             "baseline_true", "gate"))} == pytest.approx(
        {k: v for k, v in plain.metrics.items() if not k.startswith(("oracle", "gate"))}, nan_ok=True)


@pytest.mark.slow
def test_gate_thresholds_come_from_params(eval_project):
    params = _params(eval_project).model_copy(update={"min_policy_win_rate": 1.0, "max_topic_gap": None})
    verdict = _evaluate(eval_project, params).verdict
    checks = {c["name"]: c for c in verdict["checks"]}
    assert "topic_gap" not in checks  # null threshold: reported, not checked
    assert "reward_accuracy_topic_gap" in verdict["metrics"]
    wr = verdict["metrics"]["policy_win_rate"]
    assert checks["policy_win_rate"]["threshold"] == 1.0 and checks["policy_win_rate"]["passed"] is (wr >= 1.0)
    assert verdict["passed"] is all(c["passed"] for c in checks.values())
    assert verdict["thresholds"]["min_policy_win_rate"] == 1.0
    assert verdict["baseline"]["source"] == "sft" and verdict["champion_reward"] is None


def test_reward_accuracy_by_batch_against_the_consensus(eval_project):
    import pandas as pd

    from driftkeel.evaluation.evaluate import accuracy_by_batch

    reward = load_reward(eval_project / "outputs" / "reward" / "model")
    pairs = load_eval_pairs(eval_project / "data" / "eval" / "pairs.jsonl").head(6).reset_index(drop=True)
    chosen, rejected = score_pairs(reward, pairs)
    rows = []
    for i, p in pairs.iterrows():  # consensus "a" = the eval pair's chosen in batch 0; flipped sides in batch 1
        rows.append({"batch": 0, "label": "a", "is_golden": False, "prompt": p["prompt"],
                     "response_a": p["chosen"], "response_b": p["rejected"]})
        rows.append({"batch": 1, "label": "b", "is_golden": False, "prompt": p["prompt"],
                     "response_a": p["rejected"], "response_b": p["chosen"]})
    rows.append({"batch": 1, "label": "tie", "is_golden": False, "prompt": "x", "response_a": "y", "response_b": "z"})
    rows.append({"batch": 2, "label": "a", "is_golden": True, "prompt": "x", "response_a": "y", "response_b": "z"})
    table = accuracy_by_batch(reward, pd.DataFrame(rows), train_batches={0})
    expected = pairwise_accuracy(chosen, rejected)
    assert table["batch"].tolist() == [0, 1]          # the tie and the golden item are left out
    assert table["n"].tolist() == [6, 6]
    assert table["accuracy"].tolist() == [expected, expected]  # the same pairs, sides swapped: same accuracy
    assert table["in_training"].tolist() == [True, False]
    assert accuracy_by_batch(reward, pd.DataFrame(rows[-2:])).empty
