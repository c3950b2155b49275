"""Progress bars on the long steps (embedding, training, selection), quiet in CI.

Bars are shown unless one of these is set: `CI` (any value; CI services set it), `TQDM_DISABLE=1`,
`DRIFTKEEL_PROGRESS=0`. They go to stderr (DVC and Prefect show a stage's stderr as it runs) and
update at most every 2 seconds, so logs captured to a file stay short.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def enabled() -> bool:
    if os.environ.get("CI"):
        return False
    if os.environ.get("TQDM_DISABLE", "").strip().lower() in ("1", "true", "yes"):
        return False
    return os.environ.get("DRIFTKEEL_PROGRESS", "1").strip().lower() not in ("0", "false", "no")


def bar(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """`iterable`, with a tqdm bar when `enabled()` (and a no-op wrapper otherwise)."""
    if not enabled():
        yield from iterable
        return
    from tqdm.auto import tqdm

    yield from tqdm(iterable, desc=desc, total=total, unit=unit, mininterval=2.0, dynamic_ncols=True,
                    leave=False)
