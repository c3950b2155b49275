"""Overhead of our SFT and reward stage functions over plain TRL trainers, same model and data.

    python benchmarks/training/overhead.py [--steps 120] [--repeats 3] [--model tiny|<HF id or path>]

Four variants, each in a fresh subprocess (clean peak RSS), interleaved, `--repeats` times, in one run:

- sft/ours:      driftkeel.training.sft.train_sft (checkpoints, resume bookkeeping, atomic save, metrics)
- sft/plain:     trl.SFTTrainer on the same prompt/completion data, same SFTConfig values, no checkpoints
- reward/ours:   driftkeel.training.reward.train_reward (weighted loss, checkpoints, calibration on the
                 held-out pairs, accuracies, atomic save), ensemble_size 1
- reward/plain:  trl.RewardTrainer on the same tokenised pairs (our `encode_pairs`, so both train on
                 identical token sequences), TRL's own loss and collator, same values, no eval

Heavy modules are imported before the clock starts. Both sides use the same training settings (TRL's default activation checkpointing is off on both, as in
our stages), start from the same saved model (the tiny GPT-2 by default, or `--model`), train the same
number of optimiser steps with the same batch size, learning rate and thread count, and are timed from
trainer construction to the saved model (ours: the whole stage function, including its extra work).
tokens/s = training tokens (non-padding prompt + response tokens of the examples seen) / wall seconds.
Overhead = plain tokens/s / ours tokens/s - 1 (median over repeats); the target is <= 10%. It is
reported on wall time and on the process's CPU time (tokens per CPU-second): on a shared machine the
wall time swings by tens of percent with other jobs, CPU time much less (the tiny model trains on one
thread), so the CPU-time figure is the one to judge there; on a dedicated machine both agree.
Peak memory: the subprocess's peak RSS (ru_maxrss) and, on a GPU, torch.cuda.max_memory_allocated.
Writes benchmarks/training/overhead_results.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "src"))
VARIANTS = ["sft/ours", "sft/plain", "reward/ours", "reward/plain"]


# --------------------------------------------------------------------------------------- the data


def make_data():
    """Demonstrations and preference pairs from the simulator (deterministic, in memory)."""
    from driftkeel.config import DataParams
    from driftkeel.data.simulator import simulate

    sim = simulate(DataParams(n_batches=2, comparisons_per_batch=10, n_sft_demos=1200, pool_size=10,
                              n_eval_pairs=1400, n_eval_prompts=4))
    demos = [{"prompt": d["prompt"], "response": d["response"]} for d in sim.demos]
    pairs = [{"pair_id": p["pair_id"], "prompt": p["prompt"], "chosen": p["chosen"],
              "rejected": p["rejected"], "weight": 1.0} for p in sim.eval_pairs]
    return demos, pairs[:1200], pairs[1200:]


def prepare_base(work: Path, model: str, demos, pairs) -> str:
    """Save the starting policy once: the tiny GPT-2 (tokenizer trained on the data) or `model`."""
    from driftkeel.config import CommonParams
    from driftkeel.training.models import build_tiny_causal_lm, load_causal_lm, save_model, set_lengths
    from driftkeel.training.models import train_tokenizer

    common = CommonParams()
    if model == "tiny":
        import torch

        torch.manual_seed(0)
        texts = [d["prompt"] + "\n" + d["response"] for d in demos] + [p["rejected"] for p in pairs]
        tok = train_tokenizer(texts, common.tiny_model.vocab_size)
        lm = build_tiny_causal_lm(tok, common.tiny_model)
    else:
        lm, tok = load_causal_lm(model)
    set_lengths(lm, common.max_prompt_tokens, common.max_response_tokens)
    save_model(lm, tok, work / "base")
    return str(work / "base")


# ----------------------------------------------------------------------------------- one variant


def _plain_args(cls, out: Path, steps: int, batch: int, lr: float, **extra):
    import torch

    from driftkeel.training.models import use_bf16

    return cls(output_dir=str(out), seed=0, data_seed=0, learning_rate=lr, per_device_train_batch_size=batch,
               max_steps=steps, lr_scheduler_type="linear", warmup_steps=min(50, max(1, steps // 20)),
               logging_steps=max(1, steps // 50), save_strategy="no", report_to="none", disable_tqdm=True,
               bf16=use_bf16(), fp16=False, dataloader_num_workers=0,
               dataloader_pin_memory=torch.cuda.is_available(), use_cpu=not torch.cuda.is_available(),
               activation_checkpointing=False,  # TRL defaults to on (~20% slower); our stages turn it off
               **extra)


def run_variant(name: str, base: str, work: Path, steps: int, batch: int) -> dict:
    import torch

    from driftkeel.config import CommonParams, RewardParams, SftParams
    from driftkeel.training.common import cpu_threads, quiet, quiet_offline_env
    from driftkeel.training.models import encode_prompt, encode_response, format_prompt, load_causal_lm
    from driftkeel.training.models import load_reward_model

    quiet_offline_env()
    # import everything either side uses before the clock starts (lazy imports are not training time)
    import datasets  # noqa: F401
    import transformers.models.gpt2.modeling_gpt2  # noqa: F401
    from trl import RewardConfig, RewardTrainer, SFTConfig, SFTTrainer  # noqa: F401

    import driftkeel.evaluation.metrics  # noqa: F401
    import driftkeel.training.reward  # noqa: F401
    import driftkeel.training.sft  # noqa: F401

    demos, pairs, held = make_data()
    common = CommonParams()
    mp, mr = common.max_prompt_tokens, common.max_response_tokens
    out = work / name.replace("/", "-")
    lr = 5e-4
    t0, c0 = time.perf_counter(), time.process_time()
    if name == "sft/ours":
        from driftkeel.training.sft import train_sft

        res = train_sft(demos, [], out, common, SftParams(model_name_or_path=base, learning_rate=lr,
                                                          batch_size=batch, max_steps=steps))
        seconds, cpu, steps_done = time.perf_counter() - t0, time.process_time() - c0, res["metrics"]["steps"]
    elif name == "sft/plain":
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        model, tok = load_causal_lm(base)
        ds = Dataset.from_list([{"prompt": format_prompt(d["prompt"]), "completion": d["response"]} for d in demos])
        args = _plain_args(SFTConfig, out, steps, batch, lr, max_length=mp + mr + 1, completion_only_loss=True,
                           packing=False)
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
        quiet(trainer)
        with cpu_threads(model):
            trainer.train()
        trainer.save_model(str(out / "model"))
        seconds, cpu, steps_done = time.perf_counter() - t0, time.process_time() - c0, trainer.state.global_step
    elif name == "reward/ours":
        from driftkeel.training.reward import train_reward

        res = train_reward(pairs, held, base, out, common,
                           RewardParams(init_from=base, learning_rate=lr, batch_size=batch, max_steps=steps,
                                        ensemble_size=1))
        seconds, cpu, steps_done = time.perf_counter() - t0, time.process_time() - c0, res["metrics"]["steps"]
    elif name == "reward/plain":
        from datasets import Dataset
        from trl import RewardConfig, RewardTrainer

        from driftkeel.training.reward import encode_pairs

        model, tok = load_reward_model(base)
        ds = Dataset.from_list([{"chosen_ids": r["chosen_ids"], "rejected_ids": r["rejected_ids"]}
                                for r in encode_pairs(tok, pairs, mp, mr)])
        args = _plain_args(RewardConfig, out, steps, batch, lr, max_length=None, disable_dropout=True)
        trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
        quiet(trainer)
        with cpu_threads(model):
            trainer.train()
        trainer.save_model(str(out / "model"))
        seconds, cpu, steps_done = time.perf_counter() - t0, time.process_time() - c0, trainer.state.global_step
    else:
        raise ValueError(name)

    # training tokens per example (both sides see the same sequences): prompt + response (+ eos), x2 for a pair
    _, tok = load_causal_lm(base)
    if name.startswith("sft"):
        lens = [min(len(encode_prompt(tok, d["prompt"], 10**6)) + len(encode_response(tok, d["response"], 10**6)),
                    mp + mr + 1) for d in demos]
    else:
        lens = [2 * len(encode_prompt(tok, p["prompt"], mp)) + len(encode_response(tok, p["chosen"], mr))
                + len(encode_response(tok, p["rejected"], mr)) for p in pairs]
    per_example = sum(lens) / len(lens)
    tokens = per_example * batch * steps_done
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"variant": name, "seconds": seconds, "cpu_seconds": cpu, "steps": steps_done, "tokens": tokens,
            "tokens_per_s": tokens / seconds, "tokens_per_cpu_s": tokens / cpu, "peak_rss_mb": rss_kb / 1024,
            "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None}


# ------------------------------------------------------------------------------------------ driver


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--out", default=str(HERE / "overhead_results.json"))
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    ap.add_argument("--base", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print("RESULT " + json.dumps(run_variant(a.one, a.base, Path(a.work), a.steps, a.batch)))
        return {}

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="driftkeel-overhead-") as tmp:
        work = Path(tmp)
        demos, pairs, _ = make_data()
        base = prepare_base(work, a.model, demos, pairs)
        runs = []
        for r in range(a.repeats):
            order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]  # alternate to cancel drifts in load
            for name in order:
                cmd = [sys.executable, __file__, "--one", name, "--base", base, "--work", str(work / f"r{r}"),
                       "--steps", str(a.steps), "--batch", str(a.batch)]
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
                line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                if proc.returncode or not line:
                    raise SystemExit(f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
                runs.append({**json.loads(line[0][7:]), "repeat": r})
                print(f"  {name:13s} repeat {r}: {runs[-1]['tokens_per_s']:9.0f} tokens/s, "
                      f"{runs[-1]['seconds']:6.1f}s, peak RSS {runs[-1]['peak_rss_mb']:.0f} MB", flush=True)

    summary = {}
    for name in VARIANTS:
        rs = [x for x in runs if x["variant"] == name]
        summary[name] = {"tokens_per_s": statistics.median(x["tokens_per_s"] for x in rs),
                         "tokens_per_cpu_s": statistics.median(x["tokens_per_cpu_s"] for x in rs),
                         "seconds": statistics.median(x["seconds"] for x in rs),
                         "cpu_seconds": statistics.median(x["cpu_seconds"] for x in rs),
                         "peak_rss_mb": max(x["peak_rss_mb"] for x in rs),
                         "peak_gpu_mb": max((x["peak_gpu_mb"] or 0) for x in rs) or None}
    overhead = {stage: summary[f"{stage}/plain"]["tokens_per_s"] / summary[f"{stage}/ours"]["tokens_per_s"] - 1
                for stage in ("sft", "reward")}
    overhead_cpu = {stage: summary[f"{stage}/plain"]["tokens_per_cpu_s"] / summary[f"{stage}/ours"]["tokens_per_cpu_s"]
                    - 1 for stage in ("sft", "reward")}
    import torch

    result = {"config": {"steps": a.steps, "batch": a.batch, "repeats": a.repeats, "model": a.model,
                         "load_average_at_end": os.getloadavg(),
                         "device": "cuda" if torch.cuda.is_available() else "cpu",
                         "cpu": platform.processor() or platform.machine(), "n_cpus": os.cpu_count(),
                         "torch": torch.__version__},
              "summary": summary, "overhead_wall": overhead, "overhead_cpu": overhead_cpu,
              "target_overhead": 0.10, "passed_cpu": all(v <= 0.10 for v in overhead_cpu.values()),
              "passed_wall": all(v <= 0.10 for v in overhead.values()), "runs": runs}
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'variant':14s} {'tokens/s':>10s} {'tokens/cpu-s':>13s} {'seconds':>8s} {'cpu s':>7s} "
          f"{'peak RSS MB':>12s}")
    for name in VARIANTS:
        s = summary[name]
        print(f"{name:14s} {s['tokens_per_s']:10.0f} {s['tokens_per_cpu_s']:13.0f} {s['seconds']:8.1f} "
              f"{s['cpu_seconds']:7.1f} {s['peak_rss_mb']:12.0f}")
    for stage in overhead:
        print(f"overhead {stage}: {100 * overhead_cpu[stage]:+.1f}% CPU time, {100 * overhead[stage]:+.1f}% wall "
              f"(target <= +10%)")
    print(f"-> {a.out}")
    return result


if __name__ == "__main__":
    main()
