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
    assert (out / "evaluate" / "plots" / "slices.csv").read_text().splitlines()[0] == "slice,accuracy,n"
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
    assert record["models"]["policy"] == {**record["models"]["policy"], "version": 2,
                                          "champion": 1, "challenger": 2}


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
