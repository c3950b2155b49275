"""Small, safe file helpers: atomic writes, JSON/JSONL, stage output folders."""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd


def _json_default(obj: Any):
    """numpy arrays (any size; also list columns read back from parquet) and scalars, paths; the value is
    cleaned again, so a NaN / inf inside becomes null (never a bare NaN, which is not JSON)."""
    if hasattr(obj, "tolist") and getattr(obj, "ndim", 0) > 0:  # numpy arrays: .item() fails unless size 1
        return _clean(obj.tolist())
    if hasattr(obj, "item"):  # numpy scalars
        return _clean(obj.item())
    if hasattr(obj, "tolist"):
        return _clean(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _clean(obj: Any):
    """Replace NaN/inf with None so the JSON is standard."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temp directory beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def tree_digest(root: str | Path) -> dict[str, str]:
    """{relative path: sha256} of every file under `root`."""
    import hashlib

    root = Path(root)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def install_raw_data(new: str | Path, path: str | Path, *, force: bool) -> str:
    """Move the finished tree `new` (a sibling of `path`) to `path`; raw data is never overwritten silently.

    Returns "unchanged" when `path` already holds identical files (then `new` is left for the caller to
    delete) and "written" otherwise. Different existing files raise FileExistsError unless `force`; then
    the old tree is renamed aside first and put back if the new one cannot be moved in (a full disk, an
    error), so a failed replace never leaves `path` empty or half-written."""
    new, path = Path(new), Path(path)
    if path.exists() and any(path.iterdir()):
        if tree_digest(path) == tree_digest(new):
            return "unchanged"
        if not force:
            raise FileExistsError(f"{path} already holds different data; refusing to overwrite raw data "
                                  "(pass --force to replace it, then `dvc add data`)")
    old = path.with_name(f".{path.name}.replaced")
    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        os.replace(path, old)
    try:
        os.replace(new, path)
    except BaseException:
        if old.exists() and not path.exists():
            os.replace(old, path)
        raise
    if old.exists():
        shutil.rmtree(old)
    return "written"


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(_clean(obj), indent=2, sort_keys=True, default=_json_default, allow_nan=False) + "\n")


def read_json(path: str | Path) -> Any:
    with Path(path).open(encoding="utf-8") as fh:
        return json.load(fh)


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(_clean(row), sort_keys=True, default=_json_default, ensure_ascii=False,
                                allow_nan=False))
            fh.write("\n")
            n += 1
    return n


def read_jsonl(path: str | Path) -> list[dict]:
    """Strict JSONL reader for files the project wrote itself (raises on a bad line)."""
    out = []
    with Path(path).open(encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{i}: invalid JSON ({exc.msg})") from None
    return out


def write_parquet(path: str | Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_csv(path: str | Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
