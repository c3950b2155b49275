"""Shared plumbing for the thin stage entries: project root, params, output folder."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from driftkeel.config import load_section

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@dataclass
class Stage:
    name: str
    root: Path
    common: object
    params: object

    @property
    def data(self) -> Path:
        return self.root / self.common.data_dir

    @property
    def outputs(self) -> Path:
        return self.root / self.common.outputs_dir

    @property
    def out(self) -> Path:
        path = self.outputs / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path


def stage(name: str, root: str | Path | None = None) -> Stage:
    root = Path(root or os.environ.get("DRIFTKEEL_ROOT", ".")).resolve()
    common, params = load_section(name, root / "params.yaml")
    return Stage(name=name, root=root, common=common, params=params)
