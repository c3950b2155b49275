"""Where the shared real data (`../shared/data`, see its README) is, for tests that read it.

Looked up in order: $DRIFTKEEL_SHARED_DATA; `<repo>/../shared/data`; for a clone of a local checkout
(`git clone /work/main /tmp/x`: CI and the clean-clone check), `<origin>/../shared/data`. Tests skip
with a clear reason only when none exists."""
from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=1)
def shared_data_dir() -> Path | None:
    candidates = []
    if os.environ.get("DRIFTKEEL_SHARED_DATA"):
        candidates.append(Path(os.environ["DRIFTKEEL_SHARED_DATA"]))
    candidates.append(REPO.parent / "shared" / "data")
    try:
        origin = subprocess.run(["git", "config", "--get", "remote.origin.url"], cwd=REPO, capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    if origin and "://" not in origin and not origin.startswith("git@"):
        candidates.append(Path(origin.removeprefix("file:")).resolve().parent / "shared" / "data")
    return next((c for c in candidates if c.is_dir()), None)


def shared_path(*parts: str) -> Path:
    """A path under the shared data (it may not exist: callers skip on that)."""
    base = shared_data_dir()
    return (base if base is not None else REPO.parent / "shared" / "data").joinpath(*parts)
