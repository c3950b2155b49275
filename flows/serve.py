"""Serve both deployments from this process (no work pool, no worker): `flow.serve`-style start.

    export PREFECT_API_URL=http://127.0.0.1:4200/api     # a running `prefect server start`
    python flows/serve.py [--no-schedules]               # Ctrl-C stops serving

Same names and cron schedules as prefect.yaml (daily-monitoring 06:00 UTC, weekly-retraining Sunday
02:00 UTC), so the monitoring flow's `run_deployment("driftkeel-retraining/weekly-retraining")` reaches
the served retraining deployment. Each flow run executes in a subprocess of this one. `--limit 1`
(the default) runs one flow at a time: DVC refuses a second `dvc repro` in the same checkout.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from flows.monitoring import monitoring
from flows.retraining import retraining

PREFECT_YAML = Path(__file__).resolve().parents[1] / "prefect.yaml"


def cron_of(name: str) -> tuple[str, str]:
    """(cron, timezone) of deployment `name` in prefect.yaml (one source for both start modes)."""
    spec = yaml.safe_load(PREFECT_YAML.read_text())
    (dep,) = [d for d in spec["deployments"] if d["name"] == name]
    (sched,) = dep["schedules"]
    return sched["cron"], sched.get("timezone", "UTC")


def deployments(schedules: bool = True) -> list:
    out = []
    for fl, name in ((monitoring, "daily-monitoring"), (retraining, "weekly-retraining")):
        kw = {}
        if schedules:
            from prefect.client.schemas.schedules import CronSchedule

            cron, tz = cron_of(name)
            kw["schedules"] = [CronSchedule(cron=cron, timezone=tz)]
        out.append(fl.to_deployment(name=name, tags=["driftkeel", "served"], **kw))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-schedules", action="store_true", help="serve without the cron schedules")
    ap.add_argument("--limit", type=int, default=1, help="flow runs at once (default 1: one dvc repro)")
    args = ap.parse_args(argv)
    from prefect import serve

    serve(*deployments(schedules=not args.no_schedules), limit=args.limit)


if __name__ == "__main__":
    main()
