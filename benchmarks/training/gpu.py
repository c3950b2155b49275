"""GPU check of the training stages with a real ~0.1B causal LM loaded from a local directory.

    python benchmarks/training/gpu.py [--model-dir DIR] [--out results.json]

Without --model-dir it builds a GPT-2-shaped model (14 layers, d=768, ~0.1B parameters) with a
tokenizer trained locally and saves it to a temp directory, so the run needs no network. Any local
directory holding a Hugging Face causal LM (e.g. a downloaded Qwen/SmolLM/GPT-2) can be passed instead.
Then it runs the same functions the sft / reward / ppo stages call, with `model_name_or_path` set to
that directory, on the GPU in bf16, and records tokens/s, pairs/s, episodes/s, peak GPU memory and the
reward model's held-out accuracy as JSON. It needs CUDA; it is never part of the CPU test suite.

`--extended` (writes benchmarks/training/gpu_extended_results.json unless --out is given; the recorded
gpu_results.json stays as it is) also runs, on the same model: a 2-member reward ensemble with
calibration, PPO against the conservative ensemble reward, GRPO and RLOO with the ensemble as reward
function, DPO on the pairs, LoRA SFT and LoRA reward, and a kill-and-resume check of SFT on the GPU
(a subprocess killed with SIGKILL after its first checkpoint, re-run, final loss compared).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _peak_and_reset(torch) -> float:
    peak = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    return round(peak, 3)


def build_local_model(model_dir: Path, texts: list[str]) -> int:
    from transformers import GPT2Config, GPT2LMHeadModel

    from driftkeel.training.models import save_model, train_tokenizer

    tok = train_tokenizer(texts, 8000)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=512, n_embd=768, n_layer=14, n_head=12,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                     pad_token_id=tok.pad_token_id)
    model = GPT2LMHeadModel(cfg)
    save_model(model, tok, model_dir)
    return sum(p.numel() for p in model.parameters())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--extended", action="store_true")
    args = ap.parse_args()
    if args.out is None:
        args.out = Path("benchmarks/training/gpu_extended_results.json" if args.extended
                        else "benchmarks/training/gpu_results.json")

    import torch

    if not torch.cuda.is_available():
        print("gpu.py: no CUDA device; this check runs on a GPU machine only", file=sys.stderr)
        return 2
    from driftkeel.config import CommonParams, DataParams, PpoParams, RewardParams, SftParams
    from driftkeel.data.simulator import simulate
    from driftkeel.training.ppo import generate, train_ppo
    from driftkeel.training.reward import pairwise_accuracy, train_reward
    from driftkeel.training.sft import train_sft

    sim = simulate(DataParams(n_batches=4, comparisons_per_batch=50, n_sft_demos=2000, pool_size=10,
                              n_eval_pairs=3000, n_eval_prompts=256, new_topics_from_batch=2,
                              concept_drift_batch=2, pool_change_batch=3))
    pairs = sim.eval_pairs
    train_pairs = [dict(p, weight=1.0) for p in pairs[:1200] + pairs[1500:2700]]
    eval_pairs = pairs[1200:1500] + pairs[2700:]
    prompts = [p["prompt"] for p in sim.eval_prompts]
    texts = [d["prompt"] + "\n" + d["response"] for d in sim.demos]

    work = Path(tempfile.mkdtemp(prefix="driftkeel-gpu-"))
    result: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    if args.model_dir is None:
        args.model_dir = work / "local-lm"
        result["model_parameters"] = build_local_model(args.model_dir, texts)
        result["model"] = "GPT-2-shaped, 14x768, built from a config, saved to a local directory"
    else:
        result["model"] = str(args.model_dir)
    common = CommonParams(max_prompt_tokens=48, max_response_tokens=96)
    torch.cuda.reset_peak_memory_stats()

    t = time.perf_counter()
    sft = train_sft(sim.demos, texts, work / "sft", common,
                    SftParams(model_name_or_path=str(args.model_dir), epochs=1, learning_rate=3e-4,
                              batch_size=32))
    result["sft"] = {**sft["metrics"], "wall_s": round(time.perf_counter() - t, 2),
                     "peak_gpu_gib": _peak_and_reset(torch)}

    t = time.perf_counter()
    rm = train_reward(train_pairs, eval_pairs, sft["model_dir"], work / "reward", common,
                      RewardParams(epochs=2, learning_rate=5e-5, batch_size=32))
    result["reward"] = {**rm["metrics"], "wall_s": round(time.perf_counter() - t, 2),
                        "heldout_accuracy": pairwise_accuracy(rm["model_dir"], eval_pairs),
                        "peak_gpu_gib": _peak_and_reset(torch)}

    t = time.perf_counter()
    ppo = train_ppo(sft["model_dir"], rm["model_dir"], prompts, work / "ppo", common,
                    PpoParams(total_episodes=256, batch_size=32, mini_batch_size=8, learning_rate=1e-5,
                              response_length=48, n_prompts=256))
    result["ppo"] = {**ppo["metrics"], "wall_s": round(time.perf_counter() - t, 2),
                     "peak_gpu_gib": _peak_and_reset(torch)}
    result["sample_generation"] = generate(ppo["model_dir"], prompts[:2], max_new_tokens=32, seed=0)
    if args.extended:
        result["extended"] = extended(work, sft["model_dir"], common, train_pairs, eval_pairs, prompts, torch)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result, indent=2, default=str))
    return 0


def _timed(fn, torch) -> dict:
    t = time.perf_counter()
    res = fn()
    return {**res["metrics"], "wall_s": round(time.perf_counter() - t, 2), "peak_gpu_gib": _peak_and_reset(torch)}


def extended(work: Path, sft_dir: str, common, train_pairs, eval_pairs, prompts, torch) -> dict:
    """Ensemble, conservative PPO, GRPO, RLOO, DPO, LoRA and kill-and-resume on the GPU."""
    from driftkeel.config import DpoParams, LoraParams, PpoParams, RewardParams, RlParams, SftParams
    from driftkeel.training.dpo import train_dpo
    from driftkeel.training.online import train_online
    from driftkeel.training.ppo import train_ppo
    from driftkeel.training.reward import ensemble_members, train_reward
    from driftkeel.training.sft import train_sft

    out: dict = {}
    ens_dir = work / "reward-ensemble"
    out["reward_ensemble"] = _timed(lambda: train_reward(
        train_pairs, eval_pairs, sft_dir, ens_dir, common,
        RewardParams(epochs=1, learning_rate=5e-5, batch_size=32, ensemble_size=2)), torch)
    members = ensemble_members(ens_dir)
    ppo = PpoParams(total_episodes=256, batch_size=32, mini_batch_size=8, learning_rate=1e-5,
                    response_length=48, n_prompts=256)
    out["ppo_conservative"] = _timed(lambda: train_ppo(sft_dir, members, prompts, work / "ppo-ens", common, ppo,
                                                       RlParams(reward_lambda=1.0)), torch)
    for alg in ("grpo", "rloo"):
        out[alg] = _timed(lambda: train_online(sft_dir, members, prompts, work / alg, common, ppo,
                                               RlParams(algorithm=alg, num_generations=4)), torch)
    out["dpo"] = _timed(lambda: train_dpo(sft_dir, train_pairs, eval_pairs, work / "dpo", common, RlParams(
        algorithm="dpo", dpo=DpoParams(epochs=1, learning_rate=5e-6, batch_size=16))), torch)
    lora = LoraParams(enabled=True, r=16, alpha=32)
    out["sft_lora"] = _timed(lambda: train_sft([{"prompt": p["prompt"], "response": p["chosen"]} for p in train_pairs],
                                               [], work / "sft-lora", common,
                                               SftParams(model_name_or_path=sft_dir, epochs=1, learning_rate=2e-4,
                                                         batch_size=32, lora=lora)), torch)
    out["reward_lora"] = _timed(lambda: train_reward(train_pairs, eval_pairs, sft_dir, work / "reward-lora", common,
                                                     RewardParams(epochs=1, learning_rate=2e-4, batch_size=32,
                                                                  lora=lora)), torch)
    out["kill_resume_sft"] = kill_resume(work, sft_dir)
    return out


def kill_resume(work: Path, base_dir: str) -> dict:
    """SFT in a subprocess killed (SIGKILL) after its first checkpoint, re-run; vs an uninterrupted run."""
    import signal
    import subprocess

    from driftkeel.training.checkpoints import hf_checkpoint_complete

    code = (
        "import sys, json; from driftkeel.config import CommonParams, DataParams, SftParams;"
        "from driftkeel.data.simulator import simulate; from driftkeel.training.sft import train_sft;"
        "sim = simulate(DataParams(n_batches=2, comparisons_per_batch=10, n_sft_demos=2000, pool_size=10,"
        " n_eval_pairs=10, n_eval_prompts=4));"
        f"r = train_sft(sim.demos, [], sys.argv[1], CommonParams(), SftParams(model_name_or_path={base_dir!r},"
        " epochs=1, learning_rate=3e-4, batch_size=32, checkpoint_every=8));"
        "print('RESULT ' + json.dumps(r['metrics']))")
    def run(out: Path, kill: bool) -> dict | None:
        proc = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True,
                                start_new_session=True)
        if kill:
            t0 = time.time()
            while time.time() - t0 < 600 and proc.poll() is None:
                if any(hf_checkpoint_complete(p) for p in (out / "checkpoints").glob("checkpoint-*")):
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
                time.sleep(0.05)
            proc.wait()
            return {"returncode": proc.returncode, "model_dir_after_kill": (out / "model").exists()}
        stdout, _ = proc.communicate()
        return json.loads([x for x in stdout.splitlines() if x.startswith("RESULT ")][0][7:])

    ref = run(work / "kr-ref", kill=False)
    killed = run(work / "kr-run", kill=True)
    resumed = run(work / "kr-run", kill=False)
    return {"killed": killed, "resumed_from_step": resumed["resumed_from_step"],
            "final_loss_uninterrupted": ref["final_loss"], "final_loss_resumed": resumed["final_loss"],
            "train_loss_uninterrupted": ref["train_loss"], "train_loss_resumed": resumed["train_loss"]}


if __name__ == "__main__":
    sys.exit(main())
