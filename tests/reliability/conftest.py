"""Reliability tests (bad input, guards, security). Their generated-case counts are printed in pytest's
terminal summary by the root conftest (tests/summary_lines.py), so CI logs show them without -s."""
from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
