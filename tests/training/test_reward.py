"""Reward model training, scoring and pairwise accuracy."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from training_task import PAIRS, REWARD, TEXTS, TINY

from driftkeel.training import models as M
from driftkeel.training.reward import (
    WeightedRewardTrainer,
    attach_margins,
    bootstrap_pairs,
    ensemble_members,
    get_calibration,
    pairwise_accuracy,
    read_margins,
    resolve_init,
    score,
    set_calibration,
)


@pytest.fixture(scope="module")
def random_rm(tmp_path_factory):
    """An untrained reward model (random weights), saved like the trainers save it."""
    tok = M.train_tokenizer(TEXTS, 300)
    torch.manual_seed(0)
    path = M.save_model(M.build_tiny_causal_lm(tok, TINY), tok, tmp_path_factory.mktemp("p") / "policy")
    return M.load_reward_model(path)


def test_score_is_deterministic_batch_invariant_and_gradient_free(random_rm):
    prompts = [p["prompt"] for p in PAIRS[:10]]
    responses = [p["chosen"] if i % 2 else p["rejected"] for i, p in enumerate(PAIRS[:10])]
    random_rm[0].train()  # dropout on: score must switch it off and restore the mode afterwards
    a = score(random_rm, prompts, responses, batch_size=32)
    assert random_rm[0].training
    b = score(random_rm, prompts, responses, batch_size=3)
    one = np.array([score(random_rm, [p], [r])[0] for p, r in zip(prompts, responses)])
    assert a.shape == (10,) and a.dtype == np.float64
    assert np.array_equal(a, score(random_rm, prompts, responses))
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, one, atol=1e-5)  # padding does not change a score
    assert all(p.grad is None for p in random_rm[0].parameters())
    assert score(random_rm, [], []).shape == (0,)
    with pytest.raises(ValueError):
        score(random_rm, ["a"], [])


def test_pairwise_accuracy_hand_made(random_rm):
    p = PAIRS[0]
    s_c, s_r = score(random_rm, [p["prompt"]] * 2, [p["chosen"], p["rejected"]])
    assert s_c != s_r
    fwd = {**p}
    rev = {**p, "chosen": p["rejected"], "rejected": p["chosen"]}
    tie = {**p, "rejected": p["chosen"]}
    better, worse = (fwd, rev) if s_c > s_r else (rev, fwd)
    assert pairwise_accuracy(random_rm, [better]) == 1.0
    assert pairwise_accuracy(random_rm, [worse]) == 0.0
    assert pairwise_accuracy(random_rm, [tie]) == 0.5           # an exact tie counts one half
    assert pairwise_accuracy(random_rm, [better, worse, tie, better]) == pytest.approx(2.5 / 4)
    assert np.isnan(pairwise_accuracy(random_rm, []))


def test_weighted_loss_is_the_batch_mean_of_weighted_pair_losses():
    class Out:
        def __init__(self, logits):
            self.logits = logits

    class Stub(WeightedRewardTrainer):  # only compute_loss's arithmetic, no model or trainer state
        def __init__(self):
            pass

    rewards = torch.tensor([[2.0], [0.0], [1.0], [1.0]])  # chosen: 2, 0 ; rejected: 1, 1
    stub = Stub()
    stub.args = type("A", (), {"center_rewards_coefficient": None})()
    import trl.trainer.reward_trainer as rt

    orig = rt.RewardTrainer.compute_loss
    rt.RewardTrainer.compute_loss = lambda self, model, inputs, return_outputs=False, **k: (
        torch.tensor(0.0), Out(rewards))
    try:
        loss = stub.compute_loss(None, {"weight": torch.tensor([1.0, 0.0])})
        both = stub.compute_loss(None, {"weight": torch.tensor([1.0, 1.0])})
        low = stub.compute_loss(None, {"weight": torch.tensor([0.05, 0.05])})
    finally:
        rt.RewardTrainer.compute_loss = orig
    first = -torch.nn.functional.logsigmoid(torch.tensor(1.0))
    second = -torch.nn.functional.logsigmoid(torch.tensor(-1.0))
    assert loss.item() == pytest.approx((first / 2).item())
    assert both.item() == pytest.approx(((first + second) / 2).item())
    # a batch of low-weight pairs trains at low weight (divided by the batch's weight sum it was full)
    assert low.item() == pytest.approx(0.05 * both.item())


def test_training_weights_are_scaled_to_mean_one_over_the_training_pairs():
    from driftkeel.training.models import train_tokenizer
    from driftkeel.training.reward import encode_pairs

    pairs = [{"prompt": "p", "chosen": "a", "rejected": "b", "weight": w} for w in (1.0, 0.5, 0.25, None)]
    rows = encode_pairs(train_tokenizer(["a b p"] * 5, vocab_size=100), pairs, 8, 8)
    w = [r["weight"] for r in rows]
    assert sum(w) / len(w) == pytest.approx(1.0)
    assert w == pytest.approx([1.0 / 0.6875, 0.5 / 0.6875, 0.25 / 0.6875, 1.0 / 0.6875])


def test_resolve_init():
    assert resolve_init("sft", "/x/sft/model") == "/x/sft/model"
    assert resolve_init("gpt2", "/x/sft/model") == "gpt2"


@pytest.mark.slow
def test_reward_trains_saves_and_scores(reward_run, sft_run):
    m = reward_run["metrics"]
    assert m["steps"] == REWARD.max_steps and m["n_train_pairs"] == len(PAIRS[::2])
    assert m["params_changed_fraction"] > 0.9
    assert 0.0 <= m["eval_accuracy"] <= 1.0
    assert m["eval_accuracy"] >= 0.9  # chosen (on-topic words) vs rejected (filler) is easy
    assert reward_run["history"] and reward_run["eval_history"]
    held = PAIRS[1::2]
    # eval_accuracy was measured on the in-memory fp32 model; a dir is scored in bf16 on a GPU
    tol = 0.1 if torch.cuda.is_available() else 1e-12
    assert pairwise_accuracy(reward_run["model_dir"], held) == pytest.approx(m["eval_accuracy"], abs=tol)
    rm, tok = M.load_reward_model(reward_run["model_dir"], device=M.default_device(),
                                  dtype=M.inference_dtype())
    sft, _ = M.load_causal_lm(sft_run["model_dir"])
    rm_w = rm.transformer.h[0].mlp.c_fc.weight.float().cpu()
    assert not torch.equal(rm_w, sft.transformer.h[0].mlp.c_fc.weight)
    prompts, responses = [p["prompt"] for p in held], [p["chosen"] for p in held]
    np.testing.assert_array_equal(score(reward_run["model_dir"], prompts, responses),
                                  score((rm, tok), prompts, responses))


def test_bootstrap_pairs_is_a_seeded_resample_of_n_rows():
    pairs = [{**p, "weight": 0.5} for p in PAIRS]
    a, b = bootstrap_pairs(pairs, seed=3), bootstrap_pairs(pairs, seed=3)
    assert a == b and a != bootstrap_pairs(pairs, seed=4)
    idx = np.sort(np.random.default_rng(3).integers(0, len(pairs), size=len(pairs)))
    assert [p["pair_id"] for p in a] == [pairs[i]["pair_id"] for i in idx]
    # as many rows as the data (a member takes as many optimiser steps as member 0), weights unchanged
    assert len(a) == len(pairs) and all(p["weight"] == 0.5 for p in a)
    assert len({p["pair_id"] for p in a}) < len(pairs)       # with replacement: some drawn twice
    assert len(bootstrap_pairs(pairs[:1], seed=0)) == 1
    assert bootstrap_pairs([], seed=0) == []                  # no IndexError: train_reward says "no pairs"


def test_margins_from_the_aggregate_weights(tmp_path):
    import pandas as pd

    path = tmp_path / "training_weights.parquet"
    pd.DataFrame({"comparison_id": ["garden-0", "garden-1", "x"], "margin": [2.0, None, 1.0],
                  "weight": [1.0, 1.0, 1.0]}).to_parquet(path)
    margins = read_margins(path)
    assert margins == {"garden-0": 2.0, "x": 1.0}
    assert read_margins(tmp_path / "missing.parquet") == {}
    out = attach_margins(PAIRS[:3], margins, scale=0.25)
    assert [p["margin"] for p in out] == [0.5, 0.0, 0.0]


def test_weighted_loss_subtracts_the_margin():
    class Out:
        def __init__(self, logits):
            self.logits = logits

    class Stub(WeightedRewardTrainer):
        def __init__(self):
            pass

    stub = Stub()
    stub.args = type("A", (), {"center_rewards_coefficient": None})()
    import trl.trainer.reward_trainer as rt

    orig = rt.RewardTrainer.compute_loss
    rt.RewardTrainer.compute_loss = lambda self, model, inputs, return_outputs=False, **k: (
        torch.tensor(0.0), Out(torch.tensor([[2.0], [1.0]])))  # chosen 2, rejected 1
    try:
        loss = stub.compute_loss(None, {"weight": torch.tensor([1.0]), "margin": torch.tensor([0.5])})
    finally:
        rt.RewardTrainer.compute_loss = orig
    assert loss.item() == pytest.approx(-torch.nn.functional.logsigmoid(torch.tensor(0.5)).item())


def test_calibration_record_roundtrip(random_rm):
    model = random_rm[0]
    assert get_calibration(model) == (1.0, 0.0)
    set_calibration(model, 0.8, -0.25)
    assert get_calibration(model) == (0.8, -0.25)
    assert M.get_lengths(model) == M.get_lengths(model)  # the length record is kept beside it
    model.config.driftkeel = {k: v for k, v in model.config.driftkeel.items()
                              if k not in ("temperature", "reward_offset")}


@pytest.mark.slow
def test_reward_ensemble_members_manifest_and_calibration(reward_run):
    m = reward_run["metrics"]
    assert m["ensemble_size"] == 2 and len(reward_run["member_dirs"]) == 2
    out = Path(reward_run["model_dir"]).parent
    assert ensemble_members(out) == [out / "model", out / "ensemble" / "member-1"]
    assert not (out / "checkpoints").exists()
    m0, m1 = reward_run["members"]
    # the bootstrap resamples n pairs with replacement: as many rows (and optimiser steps) as member 0
    assert m1["n_train_pairs"] == m0["n_train_pairs"] and m1["steps"] == m0["steps"]
    for d, mm in zip(reward_run["member_dirs"], reward_run["members"]):
        rm, _ = M.load_reward_model(d)
        assert get_calibration(rm) == (pytest.approx(mm["temperature"]), pytest.approx(mm["reward_offset"]))
        assert 0.1 <= mm["temperature"] <= 20.0
    a0, _ = M.load_reward_model(reward_run["member_dirs"][0])
    a1, _ = M.load_reward_model(reward_run["member_dirs"][1])
    assert not torch.equal(a0.score.weight, a1.score.weight)
    assert 0.0 <= m["ensemble_eval_accuracy"] <= 1.0 and m["ensemble_mean_std"] > 0


@pytest.mark.slow
def test_members_without_held_out_pairs_are_centred_on_training_pairs(sft_run, tmp_path):
    """mix.eval_fraction 0: no held-out pairs. Each member's scores were left at their own arbitrary
    offset, so the ensemble std (the conservative reward's penalty) measured offsets, not disagreement.
    Now each member is centred on a seeded training sample (temperature stays 1: no held-out fit)."""
    from training_task import COMMON

    from driftkeel.training.ensemble import RewardEnsemble
    from driftkeel.training.reward import get_calibration, score_pairs, train_reward

    params = REWARD.model_copy(update={"ensemble_size": 2})
    res = train_reward(PAIRS[::2], [], sft_run["model_dir"], tmp_path / "r", COMMON, params)
    for k, (d, m) in enumerate(zip(res["member_dirs"], res["members"])):
        rm, tok = M.load_reward_model(d)
        temperature, offset = get_calibration(rm)
        assert temperature == 1.0 and m["calibrated_on_held_out"] == 0.0 and offset != 0.0
        if k == 0:   # member 0 trains on all the pairs (< OFFSET_SAMPLE): its offset is their mean score
            c, r = score_pairs((rm, tok), PAIRS[::2])
            assert offset == pytest.approx(float(np.mean(np.concatenate([c, r]))), abs=1e-6)
    ens = RewardEnsemble(res["member_dirs"])
    prompts = [p["prompt"] for p in PAIRS[::2]] * 2
    responses = [p["chosen"] for p in PAIRS[::2]] + [p["rejected"] for p in PAIRS[::2]]
    z = ens.standardised(prompts, responses)
    # every member centred on the training data (member 1 on its bootstrap sample of it)
    assert (np.abs(z.mean(axis=1)) < 0.5 * z.std(axis=1)).all()


def test_routed_accuracy_is_measured_before_the_margin():
    from driftkeel.training.routing import routed_loss

    chosen, rejected = torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.zeros(2, 2)
    margin = torch.tensor([2.0, 2.0])
    loss, diff = routed_loss(chosen, rejected, chosen, torch.tensor([0, 0]), 1, torch.ones(2), margin, 0.0)
    assert torch.allclose(diff, torch.tensor([1.0, 1.0]))                 # right on both: accuracy 1
    assert torch.isclose(loss, -torch.nn.functional.logsigmoid(torch.tensor(-1.0)))   # the loss sees the margin
