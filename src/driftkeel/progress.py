"""Progress bars on the long steps (embedding, training, selection), quiet in CI and in logs.

Bars are shown when stderr is a terminal and none of these is set: `CI` (any value; CI services set
it), `TQDM_DISABLE=1`, `DRIFTKEEL_PROGRESS=0`; `DRIFTKEEL_PROGRESS=1` forces them on (e.g. under a
tool that captures stderr). A bar appears only once its step has run for 2 seconds and updates at most
every 2 seconds, so short steps print nothing. They go to stderr, which DVC and Prefect show as a
stage runs.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def enabled() -> bool:
    forced = os.environ.get("DRIFTKEEL_PROGRESS", "").strip().lower()
    if forced in ("0", "false", "no"):
        return False
    if os.environ.get("CI") or os.environ.get("TQDM_DISABLE", "").strip().lower() in ("1", "true", "yes"):
        return False
    if forced in ("1", "true", "yes"):
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def bar(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """`iterable`, with a tqdm bar when `enabled()` (and a no-op wrapper otherwise)."""
    if not enabled():
        yield from iterable
        return
    from tqdm.auto import tqdm

    # disable=False explicitly: tqdm bakes TQDM_* variables into its defaults when it is first imported,
    # and `enabled()` has already read the environment as it is now.
    yield from tqdm(iterable, desc=desc, total=total, unit=unit, delay=2.0, mininterval=2.0,
                    dynamic_ncols=True, leave=False, disable=False)
