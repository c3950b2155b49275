"""Reliability tests: the generated-case counts of the property tests are printed in pytest's terminal
summary, so CI logs show them without -s."""
from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from reliability_report import REPORT  # noqa: E402


def pytest_terminal_summary(terminalreporter):
    if REPORT:
        terminalreporter.section("reliability: generated cases and fault runs")
        for name, line in sorted(REPORT.items()):
            terminalreporter.write_line(f"{name}: {line}")
