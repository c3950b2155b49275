"""Checkpoints during every trainer run, and resuming after a crash (SIGKILL included).

Every trainer writes checkpoints under a `checkpoints/` folder beside its model, together with
`run.json`: the fingerprint of what the run trains (params, data, initial model). When a run starts:

- no folder, or another fingerprint (params/data/model changed) -> start fresh (stale state deleted);
- the same fingerprint -> resume from the newest *complete* checkpoint; one cut short by a kill
  (no parseable `trainer_state.json`, missing weights or optimizer) is deleted and never resumed.

Hugging Face trainers (SFT, reward, DPO, RLOO, GRPO) write `checkpoint-<step>/` themselves, with
`trainer_state.json` last; two are kept so a torn newest one still leaves a complete one. PPO writes
`round-<n>/` atomically (see `ppo.py`). Resuming restores weights, optimizer, scheduler, RNG states and
the data position, so a resumed run ends where an uninterrupted one does. Final models are written
atomically (`models.save_model`) and the checkpoints are removed only after that succeeded.

`DRIFTKEEL_STEP_DELAY_S` (seconds, default 0) sleeps after every optimiser step: a fault-injection knob
that lets tests kill a tiny run mid-training at a predictable pace. Never set it in production.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Iterable

from driftkeel.io import read_json, write_json

RUN_FILE = "run.json"
_HF_CKPT = re.compile(r"^checkpoint-(\d+)$")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors",
            "pytorch_model.bin")
_FSDP_MODEL = "pytorch_model_fsdp"      # accelerate's FSDP model state: pytorch_model_fsdp_0/ or ..._fsdp.bin
STEP_DELAY_ENV = "DRIFTKEEL_STEP_DELAY_S"
DEFAULT_CHECKPOINTS_PER_RUN = 4


# ------------------------------------------------------------------------------------ fingerprints


def digest(obj: Any) -> str:
    """sha256 of a JSON rendering (sorted keys; non-JSON values via str)."""
    text = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_ref(path_or_id: str | Path) -> Any:
    """What identifies an initial model cheaply: a local dir's files (name, size, mtime), else the id."""
    path = Path(str(path_or_id))
    if path.is_dir():
        return [(p.relative_to(path).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                for p in sorted(path.rglob("*")) if p.is_file()]
    return str(path_or_id)


def run_fingerprint(kind: str, *, params: Any, common: Any, data: Iterable | None = None,
                    models: Iterable[str | Path] = ()) -> str:
    """Fingerprint of a training run: its kind, params (pydantic or dict), data rows, initial models."""
    def plain(p):
        return p.model_dump(mode="json") if hasattr(p, "model_dump") else p

    return digest({"kind": kind, "params": plain(params), "common": plain(common),
                   "data": digest(list(data)) if data is not None else None,
                   "models": [model_ref(m) for m in models]})


# -------------------------------------------------------------------------------- checkpoint dirs


def hf_checkpoint_complete(path: Path) -> bool:
    """A Hugging Face `checkpoint-<step>` dir that a resume can trust: a parseable trainer_state.json
    (the Trainer writes it after the model and optimizer) plus model weights, optimizer and scheduler
    state in any layout transformers writes: plain / DDP (model.safetensors, optimizer.pt, scheduler.pt),
    FSDP (pytorch_model_fsdp_0/, optimizer_0/) or DeepSpeed (global_step<N>/, which holds all three)."""
    state = path / "trainer_state.json"
    try:
        step = json.loads(state.read_text(encoding="utf-8"))["global_step"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if not isinstance(step, int):
        return False
    names = {p.name: p.is_dir() for p in path.iterdir()}
    # DeepSpeed keeps model, optimizer and (its own) scheduler state in global_step<N>/
    deepspeed = any(d and n.startswith("global_step") for n, d in names.items())
    weights = deepspeed or any(names.get(w) is False for w in _WEIGHTS) or any(
        n.startswith(_FSDP_MODEL) for n in names)                    # FSDP: pytorch_model_fsdp_0/ or .bin
    optimizer = deepspeed or names.get("optimizer.pt") is False or names.get("optimizer.bin") is False or any(
        d and n.startswith("optimizer_") for n, d in names.items())   # FSDP sharded: optimizer_0/
    scheduler = deepspeed or names.get("scheduler.pt") is False
    return weights and optimizer and scheduler


def hf_checkpoints(ckpt_dir: Path) -> list[Path]:
    """`checkpoint-<step>` dirs, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir()
             if p.is_dir() and (m := _HF_CKPT.match(p.name))]
    return [p for _, p in sorted(found)]


def prepare(ckpt_dir: str | Path, fingerprint: str, complete=hf_checkpoint_complete,
            listing=hf_checkpoints) -> Path | None:
    """Make `ckpt_dir` hold only state of the run `fingerprint`; return the checkpoint to resume from
    (the newest complete one) or None. Incomplete checkpoints are deleted. With several processes only
    the main one changes files; the others wait for it, then read."""
    from driftkeel.training.common import is_main_process, wait_for_everyone

    ckpt_dir = Path(ckpt_dir)
    if is_main_process():
        _clean(ckpt_dir, fingerprint, complete, listing)
    wait_for_everyone()
    found = [p for p in listing(ckpt_dir) if complete(p)]
    return found[-1] if found else None


def _clean(ckpt_dir: Path, fingerprint: str, complete, listing) -> None:
    run_file = ckpt_dir / RUN_FILE
    if ckpt_dir.exists():
        try:
            same = read_json(run_file).get("fingerprint") == fingerprint
        except (OSError, ValueError, AttributeError):
            same = False
        if not same:
            shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    if not run_file.exists():
        write_json(run_file, {"fingerprint": fingerprint, "created_at": time.time()})
    for path in listing(ckpt_dir):
        if not complete(path):
            shutil.rmtree(path, ignore_errors=True)
    for stray in ckpt_dir.glob(".*"):  # temp dirs of an interrupted atomic write
        if stray.is_dir():
            shutil.rmtree(stray, ignore_errors=True)


def finish(ckpt_dir: str | Path) -> None:
    """Remove a finished run's checkpoints (call only after its final model was saved)."""
    from driftkeel.training.common import is_main_process, wait_for_everyone

    wait_for_everyone()
    if not is_main_process():
        return
    ckpt_dir = Path(ckpt_dir)
    if ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    parent = ckpt_dir.parent
    if parent.name == "checkpoints" and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()


def resumed_step(resume: Path | None) -> int:
    """The optimiser step a resumed run starts from (0 when fresh)."""
    if resume is None:
        return 0
    state = resume / "trainer_state.json"
    if state.is_file():
        return int(json.loads(state.read_text(encoding="utf-8")).get("global_step", 0))
    return int(read_json(resume / "state.json").get("global_step", 0))


# --------------------------------------------------------------------------------- trainer plumbing


def save_every(total_steps: int, checkpoint_every: int) -> int:
    """Steps between checkpoints: `checkpoint_every` when > 0, else about 4 per run."""
    if checkpoint_every and checkpoint_every > 0:
        return int(checkpoint_every)
    return max(1, math.ceil(total_steps / DEFAULT_CHECKPOINTS_PER_RUN))


def hf_save_args(total_steps: int, checkpoint_every: int) -> dict:
    """TrainingArguments fields for periodic, resumable checkpoints."""
    return {"save_strategy": "steps", "save_steps": save_every(total_steps, checkpoint_every),
            "save_total_limit": 2, "save_only_model": False}


def step_delay() -> float:
    try:
        return max(0.0, float(os.environ.get(STEP_DELAY_ENV, "0") or 0))
    except ValueError:
        return 0.0


def delay_callback():
    """A TrainerCallback sleeping `DRIFTKEEL_STEP_DELAY_S` after each step (None when unset)."""
    delay = step_delay()
    if delay <= 0:
        return None
    from transformers import TrainerCallback

    class StepDelay(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            time.sleep(delay)

    return StepDelay()


def add_callbacks(trainer) -> None:
    cb = delay_callback()
    if cb is not None:
        trainer.add_callback(cb)


def logged_mean(log_history: list[dict], key: str = "loss") -> float:
    """Mean of the logged `key` values over the whole run (resumed runs keep the earlier logs, so this
    is the same whether or not the run was interrupted)."""
    vals = [float(r[key]) for r in log_history if key in r]
    return float(sum(vals) / len(vals)) if vals else float("nan")
