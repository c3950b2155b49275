"""Lines tests want in pytest's terminal summary (the root conftest prints them in a section
"driftkeel: generated cases and fault runs"), e.g. how many generated cases a property test tried.

Lines go to a JSONL file named by DRIFTKEEL_SUMMARY_FILE, which the root conftest sets in the pytest
controller before any worker starts, so lines written under pytest-xdist reach the summary too."""
from __future__ import annotations

import json
import os


def report(name: str, line: str) -> None:
    print(f"[summary] {name}: {line}")
    path = os.environ.get("DRIFTKEEL_SUMMARY_FILE")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"name": name, "line": line}) + "\n")


def read(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for raw in fh:
                if raw.strip():
                    rec = json.loads(raw)
                    out[rec["name"]] = rec["line"]
    except FileNotFoundError:
        pass
    return out
