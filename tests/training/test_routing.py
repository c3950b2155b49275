"""Domain-routed reward heads (training/routing.py): exact small cases, and a tiny reward model that must
keep two domains with opposite preferences apart."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from training_task import COMMON, REWARD

from driftkeel.training.routing import SHARED, combine, n_outputs, plan_domains, routed_loss


def test_plan_domains_needs_two_domains_with_enough_pairs():
    pairs = [{"source": "new"}] * 5 + [{"source": "replay"}] * 3 + [{"source": None}] + [{"x": 1}]
    domains, idx = plan_domains(pairs, "source", min_pairs=3)
    assert domains == ["new", "replay"]
    assert idx == [0] * 5 + [1] * 3 + [SHARED, SHARED]
    assert plan_domains(pairs, "source", min_pairs=4) == ([], [SHARED] * 10)   # one domain: no routing
    syn = pairs + [{"source": "synthetic"}] * 6
    assert plan_domains(syn, "source", 3, shared=["synthetic"]) == (["new", "replay"], idx + [SHARED] * 6)
    assert n_outputs(["a", "b", "c"]) == 6 and n_outputs(["a"]) == 1 and n_outputs([]) == 1


def test_combine_is_the_gate_weighted_head_reward():
    logits = torch.tensor([[1.0, 3.0, 0.0, 0.0],          # gate even: mean of the heads
                           [1.0, 3.0, math.log(3.0), 0.0]])  # gate 3:1 for head 0
    assert torch.allclose(combine(logits, 2).squeeze(-1), torch.tensor([2.0, 0.75 * 1 + 0.25 * 3]))
    assert torch.equal(combine(torch.tensor([[5.0]]), 1), torch.tensor([[5.0]]))


def test_routed_loss_uses_each_pairs_own_head_and_trains_the_gate():
    # head 0 prefers chosen by 2, head 1 prefers rejected by 2 (B=2 pairs, K=2); the prompt logits (the
    # gate's input) are the chosen rows here
    chosen = torch.tensor([[2.0, -2.0, 5.0, -5.0], [2.0, -2.0, -5.0, 5.0]])
    rejected = torch.zeros(2, 4)
    rejected[:, 2:] = chosen[:, 2:]
    w = torch.ones(2)
    loss, diff = routed_loss(chosen, rejected, chosen, torch.tensor([0, 1]), 2, w, gate_weight=0.0)
    assert torch.allclose(diff, torch.tensor([2.0, -2.0]))
    bt = (-torch.nn.functional.logsigmoid(torch.tensor(2.0)) - torch.nn.functional.logsigmoid(torch.tensor(-2.0))) / 2
    assert torch.isclose(loss, bt)
    # a SHARED pair trains the mean of the heads (here 0); weights average the pairs
    _, diff = routed_loss(chosen, rejected, chosen, torch.tensor([SHARED, 0]), 2, w, gate_weight=0.0)
    assert torch.allclose(diff, torch.tensor([0.0, 2.0]))
    # the gate's cross-entropy: pair 0's gate says head 0 (right), pair 1's says head 1 (right) -> tiny
    with_gate, _ = routed_loss(chosen, rejected, chosen, torch.tensor([0, 1]), 2, w, gate_weight=1.0)
    assert 0 < float(with_gate - loss) < 1e-3
    wrong, _ = routed_loss(chosen, rejected, chosen, torch.tensor([1, 0]), 2, w, gate_weight=1.0)
    assert float(wrong) > 10.0


# two domains whose preferences are opposite: "quiet" prompts want the short answer, "loud" ones the long
SHORT = ["Use {w}.", "Try {w}.", "Add {w}."]
LONG = ["Use {w} and then more {w} and again {w} until it is all {w} everywhere.",
        "Try {w} first, then {w} twice, and {w} once more with extra {w} on top."]
WORDS = ["salt", "sand", "rope", "glue", "wax", "ink", "tape", "oil"]


def _flip_pairs(n_per_domain: int, offset: int = 0) -> list[dict]:
    out = []
    for i in range(offset, offset + n_per_domain):
        w = WORDS[i % len(WORDS)]
        short, long_ = SHORT[i % 3].format(w=w), LONG[i % 2].format(w=w)
        out.append({"pair_id": f"q{i}", "prompt": f"Quietly, what should I do with the {w}?",
                    "chosen": short, "rejected": long_, "source": "replay", "weight": 1.0})
        out.append({"pair_id": f"l{i}", "prompt": f"LOUD REQUEST!!! Tell me all about {w} in detail!",
                    "chosen": long_, "rejected": short, "source": "new", "weight": 1.0})
    return out


@pytest.fixture(scope="module")
def flip_init(tmp_path_factory):
    from driftkeel.training import models as M

    pairs = _flip_pairs(40)
    tok = M.train_tokenizer([p[k] for p in pairs for k in ("prompt", "chosen", "rejected")], 300)
    torch.manual_seed(0)
    return M.save_model(M.build_tiny_causal_lm(tok, COMMON.tiny_model), tok, tmp_path_factory.mktemp("i") / "init")


def _train(flip_init, tmp_path, routing: bool, steps: int = 60):
    from driftkeel.config import RoutingParams
    from driftkeel.training.reward import train_reward_member

    params = REWARD.model_copy(update={"max_steps": steps, "learning_rate": 3e-3,
                                       "routing": RoutingParams(enabled=routing, key="source", min_pairs=10)})
    return train_reward_member(_flip_pairs(40), _flip_pairs(8, offset=100), flip_init, tmp_path / "rm",
                               tmp_path / "ck", COMMON, params, seed=0)


def test_routed_reward_model_keeps_opposite_domains_and_loads_like_any_reward_model(flip_init, tmp_path):
    from driftkeel.training.ensemble import ConservativeRewardModel, RewardEnsemble, load_members
    from driftkeel.training.models import load_reward_model
    from driftkeel.training.reward import gate_probabilities, pairwise_accuracy, score
    from driftkeel.training.routing import routing_of

    res = _train(flip_init, tmp_path, routing=True)
    m = res["metrics"]
    assert m["routing_heads"] == 2
    held = _flip_pairs(8, offset=100)
    quiet, loud = held[0::2], held[1::2]
    model, tok = load_reward_model(res["model_dir"])          # a fresh load: 4 outputs, routing in config
    assert model.config.num_labels == 4 and routing_of(model) == {"key": "source", "domains": ["new", "replay"]}
    assert pairwise_accuracy((model, tok), quiet) == 1.0 and pairwise_accuracy((model, tok), loud) == 1.0
    assert m["eval_accuracy_domain_0"] == 1.0 and m["eval_accuracy_domain_1"] == 1.0   # new = loud, replay = quiet
    g = gate_probabilities((model, tok), [p["prompt"] for p in held])
    assert g.shape == (16, 2) and np.allclose(g.sum(axis=1), 1.0)
    assert (g[0::2, 1] > 0.9).all() and (g[1::2, 0] > 0.9).all() and m["gate_accuracy"] == 1.0
    # the in-loop PPO reward (per-token heads, gate at the last prompt token) at the last token equals
    # score() (gate from a prompt-only pass), standardised
    prompts, responses = [p["prompt"] for p in held], [p["chosen"] for p in held]
    ens = RewardEnsemble([res["model_dir"]])
    crm = ConservativeRewardModel(load_members([res["model_dir"]]), lam=0.0).eval()
    from driftkeel.training.models import encode_prompt, encode_response

    for p, r, want in zip(prompts[:4], responses[:4], ens.standardised(prompts, responses)[0][:4]):
        prompt_ids = encode_prompt(tok, p, COMMON.max_prompt_tokens)
        ids = torch.tensor([prompt_ids + encode_response(tok, r, COMMON.max_response_tokens)])
        with torch.no_grad():
            got = crm(ids, attention_mask=torch.ones_like(ids), prompt_end=len(prompt_ids) - 1).logits[0, -1, 0]
        assert got.item() == pytest.approx(want, abs=1e-4)
    assert np.isfinite(score(res["model_dir"], prompts, responses)).all()


def test_routing_off_or_one_domain_leaves_a_plain_one_output_model(flip_init, tmp_path):
    """With routing off - or on, but with a single domain - the model is the plain one-output reward model
    (also when initialised from a routed one: its 2K-output head is not copied)."""
    from driftkeel.config import RoutingParams
    from driftkeel.training.models import load_reward_model
    from driftkeel.training.reward import train_reward_member
    from driftkeel.training.routing import routing_of

    res = _train(flip_init, tmp_path, routing=False, steps=4)
    model, _ = load_reward_model(res["model_dir"])
    assert model.config.num_labels == 1 and routing_of(model) is None and res["metrics"]["routing_heads"] == 1
    routed = _train(flip_init, tmp_path / "r", routing=True, steps=4)
    one = [p for p in _flip_pairs(20) if p["source"] == "new"]
    params = REWARD.model_copy(update={"max_steps": 4, "routing": RoutingParams(enabled=True, min_pairs=10)})
    res = train_reward_member(one, [], routed["model_dir"], tmp_path / "one", tmp_path / "ck1", COMMON, params, 0)
    model, _ = load_reward_model(res["model_dir"])
    assert model.config.num_labels == 1 and routing_of(model) is None


@pytest.mark.slow
def test_ppo_and_rloo_train_against_a_routed_reward_model(sft_run, tmp_path):
    """PPO's in-loop reward and value model, and RLOO's reward function, on a 3-head routed reward model."""
    from training_task import PAIRS, PPO

    from driftkeel.config import RlParams, RoutingParams
    from driftkeel.training.models import load_reward_model
    from driftkeel.training.online import train_online
    from driftkeel.training.ppo import train_ppo
    from driftkeel.training.reward import train_reward_member

    pairs = [{**p, "domain": p["pair_id"].split("-")[0]} for p in PAIRS]          # garden / kitchen / bike
    params = REWARD.model_copy(update={"routing": RoutingParams(enabled=True, key="domain", min_pairs=5)})
    rm = train_reward_member(pairs, pairs[::4], sft_run["model_dir"], tmp_path / "rm", tmp_path / "ck", COMMON,
                             params, seed=0)
    assert load_reward_model(rm["model_dir"])[0].config.num_labels == 6 and rm["metrics"]["routing_heads"] == 3
    prompts = [p["prompt"] for p in PAIRS]
    res = train_ppo(sft_run["model_dir"], rm["model_dir"], prompts, tmp_path / "ppo", COMMON, PPO)
    assert res["metrics"]["steps"] == PPO.total_episodes // PPO.batch_size
    assert all(np.isfinite(h["score"]) for h in res["history"])
    rl = RlParams(algorithm="rloo")
    res = train_online(sft_run["model_dir"], rm["model_dir"], prompts, tmp_path / "rloo", COMMON, PPO, rl)
    assert res["metrics"]["steps"] >= 1 and np.isfinite(res["metrics"]["mean_score"])


def test_ppo_points_the_gates_at_the_last_query_token(monkeypatch):
    """TRL's PPO left-pads queries to `context_length`: during training each reward call reads the gate
    there; the value model (a plain head) is left alone; afterwards nothing is left set."""
    import trl.experimental.ppo.ppo_trainer as ppo_trainer
    from torch import nn

    from driftkeel.training.ensemble import _Heads
    from driftkeel.training.ppo import gates_at_prompt_end

    seen = []
    monkeypatch.setattr(ppo_trainer, "get_reward", lambda model, qr, pad, ctx: seen.append(
        getattr(model.score, "prompt_end", "plain")))
    rm = nn.Module()
    rm.score = _Heads([nn.Linear(4, 4)], [4], [0.0], [1.0], 0.0, [2])
    value = nn.Module()
    value.score = nn.Linear(4, 1)
    with gates_at_prompt_end(rm):
        ppo_trainer.get_reward(rm, None, 0, 7)
        ppo_trainer.get_reward(value, None, 0, 9)
    assert seen == [6, "plain"] and rm.score.prompt_end is None
    hidden = torch.randn(2, 5, 4)
    rm.score.prompt_end = 1
    per_token = rm.score(hidden).squeeze(-1)
    logits = rm.score.heads[0](hidden)
    gate = torch.softmax(logits[:, 1:2, 2:4], dim=-1)
    assert torch.allclose(per_token, (gate * logits[..., :2]).sum(-1), atol=1e-6)
