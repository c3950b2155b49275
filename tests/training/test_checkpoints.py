"""Checkpoint bookkeeping: fingerprints, stale runs, torn checkpoints (fast, no training)."""
from __future__ import annotations

import json

import pytest

from driftkeel.config import SftParams
from driftkeel.training import checkpoints as C
from training_task import COMMON


def _fake_ckpt(root, step, *, complete=True, weights="model.safetensors"):
    d = root / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / weights).write_bytes(b"w")
    (d / "optimizer.pt").write_bytes(b"o")
    (d / "scheduler.pt").write_bytes(b"s")
    if complete:
        (d / "trainer_state.json").write_text(json.dumps({"global_step": step, "epoch": 0.5}))
    return d


def test_fingerprint_changes_with_params_data_and_model(tmp_path):
    base = C.run_fingerprint("sft", params=SftParams(), common=COMMON, data=[{"a": 1}])
    assert base == C.run_fingerprint("sft", params=SftParams(), common=COMMON, data=[{"a": 1}])
    assert base != C.run_fingerprint("sft", params=SftParams(epochs=2), common=COMMON, data=[{"a": 1}])
    assert base != C.run_fingerprint("sft", params=SftParams(), common=COMMON, data=[{"a": 2}])
    assert base != C.run_fingerprint("reward", params=SftParams(), common=COMMON, data=[{"a": 1}])
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    a = C.run_fingerprint("sft", params=SftParams(), common=COMMON, models=[model])
    (model / "model.safetensors").write_bytes(b"123")
    assert a != C.run_fingerprint("sft", params=SftParams(), common=COMMON, models=[model])


def test_prepare_resumes_newest_complete_and_drops_torn_ones(tmp_path):
    ck = tmp_path / "checkpoints"
    assert C.prepare(ck, "fp1") is None and json.loads((ck / "run.json").read_text())["fingerprint"] == "fp1"
    _fake_ckpt(ck, 4)
    _fake_ckpt(ck, 8)
    _fake_ckpt(ck, 12, complete=False)  # killed while saving: no trainer_state.json
    (ck / ".round-0003.tmp").mkdir()    # a torn atomic write
    resume = C.prepare(ck, "fp1")
    assert resume == ck / "checkpoint-8" and C.resumed_step(resume) == 8
    assert not (ck / "checkpoint-12").exists() and not (ck / ".round-0003.tmp").exists()
    assert (ck / "checkpoint-4").exists()  # an older complete one is kept (the trainer rotates it)


def test_prepare_wipes_checkpoints_of_another_run(tmp_path):
    ck = tmp_path / "checkpoints"
    C.prepare(ck, "old")
    _fake_ckpt(ck, 4)
    assert C.prepare(ck, "new") is None
    assert not (ck / "checkpoint-4").exists()
    assert json.loads((ck / "run.json").read_text())["fingerprint"] == "new"
    (ck / "run.json").write_text("{not json")  # a torn run.json is not trusted either
    _fake_ckpt(ck, 4)
    assert C.prepare(ck, "new") is None and not (ck / "checkpoint-4").exists()


def test_checkpoint_completeness_rules(tmp_path):
    assert C.hf_checkpoint_complete(_fake_ckpt(tmp_path, 1))
    assert C.hf_checkpoint_complete(_fake_ckpt(tmp_path, 2, weights="adapter_model.safetensors"))
    assert not C.hf_checkpoint_complete(_fake_ckpt(tmp_path, 3, complete=False))
    d = _fake_ckpt(tmp_path, 4)
    (d / "optimizer.pt").unlink()
    assert not C.hf_checkpoint_complete(d)
    d = _fake_ckpt(tmp_path, 5)
    (d / "trainer_state.json").write_text('{"global_step": ')  # torn json
    assert not C.hf_checkpoint_complete(d)


def test_fsdp_and_deepspeed_checkpoint_layouts_are_complete(tmp_path):
    """transformers writes no optimizer.pt under FSDP (optimizer_0/) or DeepSpeed (global_step<N>/):
    such checkpoints were judged torn, deleted by prepare() and training restarted from step 0."""
    ck = tmp_path / "checkpoints"
    C.prepare(ck, "fp")
    fsdp = ck / "checkpoint-6"
    (fsdp / "pytorch_model_fsdp_0").mkdir(parents=True)
    (fsdp / "optimizer_0").mkdir()
    (fsdp / "pytorch_model_fsdp_0" / "__0_0.distcp").write_bytes(b"x")
    (fsdp / "scheduler.pt").write_bytes(b"x")
    (fsdp / "trainer_state.json").write_text(json.dumps({"global_step": 6}))
    assert C.hf_checkpoint_complete(fsdp)
    assert C.prepare(ck, "fp") == fsdp and fsdp.exists()
    ds = tmp_path / "ds" / "checkpoint-9"
    (ds / "global_step9").mkdir(parents=True)
    (ds / "trainer_state.json").write_text(json.dumps({"global_step": 9}))
    assert C.hf_checkpoint_complete(ds)
    # still torn: FSDP state without the optimizer, or weights without any trainer state
    (ck / "checkpoint-7" / "pytorch_model_fsdp_0").mkdir(parents=True)
    (ck / "checkpoint-7" / "scheduler.pt").write_bytes(b"x")
    (ck / "checkpoint-7" / "trainer_state.json").write_text(json.dumps({"global_step": 7}))
    assert not C.hf_checkpoint_complete(ck / "checkpoint-7")
    (ds / "trainer_state.json").unlink()
    assert not C.hf_checkpoint_complete(ds)


def test_finish_removes_checkpoints_and_empty_parent(tmp_path):
    ck = tmp_path / "checkpoints" / "member-0"
    C.prepare(ck, "x")
    C.finish(ck)
    assert not (tmp_path / "checkpoints").exists()


def test_save_every_and_step_delay(monkeypatch):
    assert C.save_every(100, 0) == 25 and C.save_every(3, 0) == 1 and C.save_every(100, 7) == 7
    assert C.hf_save_args(10, 0) == {"save_strategy": "steps", "save_steps": 3, "save_total_limit": 2,
                                     "save_only_model": False}
    monkeypatch.setenv(C.STEP_DELAY_ENV, "0.25")
    assert C.step_delay() == 0.25 and C.delay_callback() is not None
    monkeypatch.setenv(C.STEP_DELAY_ENV, "nonsense")
    assert C.step_delay() == 0.0 and C.delay_callback() is None


def test_logged_mean_is_over_the_whole_history():
    log = [{"loss": 2.0, "step": 1}, {"eval_loss": 9.0, "step": 1}, {"loss": 4.0, "step": 2}]
    assert C.logged_mean(log) == 3.0
    assert C.logged_mean([]) != C.logged_mean([])  # NaN


@pytest.mark.parametrize("bad", [{"global_step": "3"}, {"epoch": 1}, []])
def test_malformed_trainer_state_is_incomplete(tmp_path, bad):
    d = _fake_ckpt(tmp_path, 1, complete=False)
    (d / "trainer_state.json").write_text(json.dumps(bad))
    assert not C.hf_checkpoint_complete(d)
