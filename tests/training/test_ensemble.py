"""The reward ensemble, its conservative reward, and the same number inside TRL's PPO reward call."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from training_task import PAIRS, TEXTS, TINY

from driftkeel.training import models as M
from driftkeel.training.ensemble import ConservativeRewardModel, RewardEnsemble, load_members
from driftkeel.training.reward import get_calibration, set_calibration


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """Three untrained reward models with different seeds and recorded calibrations."""
    tok = M.train_tokenizer(TEXTS, 300)
    root = tmp_path_factory.mktemp("ens")
    torch.manual_seed(0)
    policy = M.save_model(M.build_tiny_causal_lm(tok, TINY), tok, root / "policy")
    dirs = []
    for k, (t, o) in enumerate([(1.0, 0.0), (0.5, 0.2), (2.0, -1.0)]):
        torch.manual_seed(10 + k)
        rm, rtok = M.load_reward_model(policy)
        set_calibration(rm, t, o)
        dirs.append(M.save_model(rm, rtok, root / f"m{k}"))
    return dirs


def test_calibration_travels_with_the_saved_model(members):
    rm, _ = M.load_reward_model(members[1])
    assert get_calibration(rm) == (0.5, 0.2)


def test_conservative_reward_is_mean_minus_lambda_std_of_standardised_scores(members):
    ens = RewardEnsemble(members)
    prompts, responses = [p["prompt"] for p in PAIRS[:6]], [p["chosen"] for p in PAIRS[:6]]
    raw = ens.raw(prompts, responses)
    z = (raw - np.array([[0.0], [0.2], [-1.0]])) / np.array([[1.0], [0.5], [2.0]])
    np.testing.assert_allclose(ens.standardised(prompts, responses), z)
    out = ens.conservative(prompts, responses, lam=0.7)
    np.testing.assert_allclose(out["mean"], z.mean(0))
    np.testing.assert_allclose(out["std"], z.std(0))
    np.testing.assert_allclose(out["reward"], z.mean(0) - 0.7 * z.std(0))
    assert np.all(ens.conservative(prompts, responses, lam=2.0)["reward"] <= out["reward"] + 1e-12)
    single = RewardEnsemble(members[:1]).conservative(prompts, responses, lam=5.0)
    assert np.all(single["std"] == 0) and np.allclose(single["reward"], raw[0])  # T=1, offset 0


def test_ppo_reward_module_matches_the_text_scorer(members):
    """TRL's PPO calls get_reward(model, query_responses, pad, context_length): the module must give the
    conservative reward of the text, read at the last real token."""
    from trl.experimental.utils import get_reward

    lam = 0.5
    module = ConservativeRewardModel(load_members(members), lam).eval()
    ens = RewardEnsemble(members, device="cpu", dtype=torch.float32)
    tok = ens.members[0][1]
    prompts = [p["prompt"] for p in PAIRS[:4]]
    responses = [PAIRS[0]["chosen"], PAIRS[1]["rejected"], "Check the soil.", PAIRS[3]["chosen"]]
    queries = [M.encode_prompt(tok, p, 48) for p in prompts]
    resp_ids = [M.encode_response(tok, r, 48) for r in responses]
    ctx = max(len(q) for q in queries)
    width = max(len(r) for r in resp_ids)
    pad = tok.pad_token_id
    rows = [[pad] * (ctx - len(q)) + q + r + [pad] * (width - len(r)) for q, r in zip(queries, resp_ids)]
    with torch.no_grad():
        _, final, _ = get_reward(module, torch.tensor(rows), pad, ctx)
    want = ens.conservative(prompts, responses, lam)["reward"]
    # left-padded queries shift positions in PPO's call (position ids are rebuilt from the mask)
    np.testing.assert_allclose(final.numpy(), want, rtol=1e-4, atol=1e-4)


def test_module_rejects_models_without_a_score_head():
    class NoHead(torch.nn.Module):
        base_model_prefix = "transformer"

    with pytest.raises(ValueError, match="score"):
        ConservativeRewardModel([NoHead()], 1.0)
