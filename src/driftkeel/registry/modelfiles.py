"""Model directories on disk: completeness checks, content fingerprints, and turning an MLflow
`transformers` model download back into a plain Hugging Face `save_pretrained` directory.

A model dir here is what `driftkeel.training.models.save_model` writes: `config.json`, safetensors
weights (`model.safetensors` or a sharded index), tokenizer files. Upstream writes it atomically; we
still check it before registering so a half-written or foreign directory never reaches the registry.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


class ModelDirError(ValueError):
    """A model directory is missing, incomplete, or not loadable."""


def check_model_dir(path: str | Path) -> dict:
    """Raise ModelDirError unless `path` holds config.json, readable safetensors weights and a
    tokenizer; return {"path", "weights": [...], "n_tensors"}. Reads only the safetensors headers."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_dir():
        raise ModelDirError(f"{path}: model directory not found")
    if not (path / "config.json").is_file():
        raise ModelDirError(f"{path}: no config.json (not a save_pretrained directory)")
    try:
        json.loads((path / "config.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelDirError(f"{path}/config.json: invalid JSON ({exc.msg})") from None
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        weights = sorted(set(weight_map.values()))
    else:
        weights = ["model.safetensors"]
    n_tensors = 0
    for name in weights:
        wpath = path / name
        if not wpath.is_file():
            raise ModelDirError(f"{path}: weights file {name} missing"
                                + (" (only .bin weights?)" if list(path.glob("*.bin")) else ""))
        try:
            with safe_open(str(wpath), framework="pt") as fh:
                n_tensors += len(list(fh.keys()))
        except Exception as exc:  # safetensors raises its own error types for truncated headers
            raise ModelDirError(f"{wpath}: unreadable safetensors ({exc})") from None
    if n_tensors == 0:
        raise ModelDirError(f"{path}: weights hold no tensors")
    missing = [f for f in _TOKENIZER_FILES if not (path / f).is_file()]
    if missing:
        raise ModelDirError(f"{path}: tokenizer files missing: {missing}")
    return {"path": str(path), "weights": weights, "n_tensors": n_tensors}


def fingerprint(path: str | Path) -> str:
    """sha256 over every file's relative path and bytes (hidden files skipped): equal fingerprints
    mean the same model, tokenizer and config."""
    path = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path)
        if any(part.startswith(".") for part in rel.parts):
            continue
        h.update(rel.as_posix().encode() + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def hf_dir_from_mlflow_download(download_dir: str | Path, dst: str | Path) -> Path:
    """Assemble a save_pretrained directory at `dst` from a downloaded MLflow `transformers` model
    (weights and config under `model/`, tokenizer under `components/tokenizer/`)."""
    download_dir, dst = Path(download_dir), Path(dst)
    model_part = download_dir / "model"
    if not (model_part / "config.json").is_file():
        raise ModelDirError(f"{download_dir}: not an MLflow transformers model (no model/config.json)")
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(model_part, dst)
    tok = download_dir / "components" / "tokenizer"
    if tok.is_dir():
        for f in tok.iterdir():
            if f.is_file():
                shutil.copy2(f, dst / f.name)
    check_model_dir(dst)
    return dst
