"""Plumbing shared by the trainer wrappers: quiet offline defaults, TrainingArguments, histories."""
from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import torch

from driftkeel.progress import enabled as progress_enabled
from driftkeel.training import checkpoints as ckpt
from driftkeel.training.lora import merged
from driftkeel.training.models import save_model, set_lengths, use_bf16

_ENV = {
    "HF_HUB_OFFLINE": "1",            # never download at run time (an explicit Hub id must be cached)
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "WANDB_DISABLED": "true",
    "TRL_EXPERIMENTAL_SILENCE": "1",
    "DISABLE_MLFLOW_INTEGRATION": "TRUE",  # the stage logs to MLflow itself (tracking.stage_run)
}


def quiet_offline_env() -> None:
    """Offline, no progress bars, no reporting integrations (setdefault: callers may override)."""
    for k, v in _ENV.items():
        os.environ.setdefault(k, v)
    import warnings

    warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")  # peft on GPT-2's Conv1D: it fixes it
    # TRL 1.12 / peft still call transformers' deprecated gradient_checkpointing names
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    if not progress_enabled():
        transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def estimated_steps(n_examples: int, batch_size: int, epochs: float, max_steps: int) -> int:
    if max_steps and max_steps > 0:
        return max_steps
    return max(1, math.ceil(math.ceil(n_examples / batch_size) * epochs))


def base_args(output_dir: Path, *, seed: int, learning_rate: float, batch_size: int, epochs: float,
              max_steps: int, n_examples: int, checkpoint_every: int = 0) -> dict:
    """TrainingArguments shared by the Hugging Face trainers (CPU: fp32; GPU: bf16 autocast), with
    periodic resumable checkpoints in `output_dir` (see `checkpoints.py`)."""
    from driftkeel.training.checkpoints import hf_save_args

    steps = estimated_steps(n_examples, batch_size, epochs, max_steps)
    return dict(
        output_dir=str(output_dir),
        seed=seed,
        data_seed=seed,
        learning_rate=learning_rate,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=max(batch_size, 32),
        num_train_epochs=epochs,
        max_steps=max_steps if max_steps and max_steps > 0 else -1,
        lr_scheduler_type="linear",
        warmup_steps=min(50, max(1, steps // 20)),
        weight_decay=0.0,
        logging_steps=max(1, steps // 50),
        logging_first_step=True,
        **hf_save_args(steps, checkpoint_every),
        report_to="none",
        disable_tqdm=not progress_enabled(),
        bf16=use_bf16(),
        fp16=False,
        activation_checkpointing=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),  # also: gloo DDP on CPU under torchrun
    )


def history(log_history: list[dict], key: str = "loss") -> list[dict]:
    """[{step, <key>}] from a Trainer's state.log_history (entries that carry `key`)."""
    return [{"step": int(row["step"]), key: float(row[key])}
            for row in log_history if key in row and "step" in row]


def remove_if_empty(path: Path) -> None:
    """Drop an output dir a trainer created but wrote nothing to (reward/PPO save no checkpoints)."""
    path = Path(path)
    if path.is_dir() and not any(path.iterdir()):
        path.rmdir()


def quiet(trainer) -> None:
    """Drop the console printer (the history is returned and logged to MLflow instead)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)


SMALL_MODEL_PARAMS = 50_000_000


@contextlib.contextmanager
def cpu_threads(model: torch.nn.Module) -> Iterator[None]:
    """Run a small model on CPU with one torch thread (restored afterwards).

    Measured on the 2-core dev machine while other jobs ran: PPO on the tiny default took 131 s with 2
    threads and 18 s with 1 (same result); tiny-model kernels gain little from threads and suffer badly
    from oversubscription. DRIFTKEEL_TORCH_THREADS overrides (0 = leave torch's setting alone)."""
    env = os.environ.get("DRIFTKEEL_TORCH_THREADS")
    on_cpu = next(model.parameters()).device.type == "cpu"
    small = sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMS
    want = int(env) if env else (1 if on_cpu and small else 0)
    old = torch.get_num_threads()
    if want > 0:
        torch.set_num_threads(want)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def inference(model: torch.nn.Module) -> Iterator[None]:
    """eval() mode, no gradients and :func:`cpu_threads`; the previous train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), cpu_threads(model):
            yield
    finally:
        model.train(was_training)


# ------------------------------------------------------------------- several processes (accelerate)
# Under `accelerate launch` / `torchrun` every process runs the whole stage; the trainers split the
# batches between them, and only the main process writes files (checkpoints bookkeeping, the final
# model, metrics, MLflow). These helpers cost nothing in a single process.


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0


def wait_for_everyone() -> None:
    """A barrier across the launched processes (no-op in a single process)."""
    if world_size() > 1:
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available()).wait_for_everyone()


def gathered_state_dict(trainer) -> dict | None:
    """Full weights of a sharded model (FSDP, DeepSpeed ZeRO-3), gathered for the final save; None when
    the model is whole in every process (single process, DDP). Every process must call it."""
    acc = getattr(trainer, "accelerator", None)
    if acc is None or hasattr(trainer.model, "peft_config"):  # LoRA: adapters are merged, not gathered
        return None
    ds = getattr(acc.state, "deepspeed_plugin", None)
    sharded = getattr(trainer, "is_fsdp_enabled", False) or (ds is not None and ds.zero_stage == 3)
    return acc.get_state_dict(trainer.model) if sharded else None


def train_and_save(trainer, tokenizer, out_dir: Path, ckpt_dir: Path, resume: Path | None,
                   lengths: Sequence[int]) -> tuple[torch.nn.Module, float]:
    """The common end of the Hugging Face policy trainer wrappers (SFT, DPO, RLOO/GRPO).

    Quiets the trainer and adds the checkpoint callbacks, trains (resuming from `resume`, see
    `checkpoints.py`), gathers the full weights of a sharded model (every process), merges LoRA
    adapters, restores the (prompt, response) token `lengths`, saves out_dir/model (only the main
    process writes, `save_model`) and removes the finished run's checkpoints (`checkpoints.finish`).
    Returns (the trained, merged model, training seconds)."""
    quiet(trainer)
    ckpt.add_callbacks(trainer)
    t0 = time.perf_counter()
    with cpu_threads(trainer.model), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*checkpointing.*", category=FutureWarning)
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - t0

    full = gathered_state_dict(trainer)
    trained = merged(trainer.model)
    set_lengths(trained, *lengths)
    save_model(trained, tokenizer, Path(out_dir) / "model", state_dict=full)
    ckpt.finish(ckpt_dir)
    return trained, seconds
