"""`driftkeel ...` commands."""
from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import Optional

import typer

from driftkeel.cli_errors import config_errors

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="driftkeel: keep RLHF-trained language models aligned while their data drifts.")


def _root(root: Optional[Path]) -> Path:
    return Path(root or os.environ.get("DRIFTKEEL_ROOT", ".")).resolve()


def _print(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


@app.command("demo-data")
@config_errors
def demo_data(root: Optional[Path] = typer.Option(None, help="project root (default: cwd)"),
              force: bool = typer.Option(False, help="replace existing, different data/")) -> None:
    """Write the deterministic demo stream (params.yaml `data:`) to data/."""
    from driftkeel.config import load_section
    from driftkeel.data.simulator import materialise

    r = _root(root)
    common, params = load_section("data", r / "params.yaml")
    try:
        state = materialise(params, r / common.data_dir, force=force)
    except FileExistsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    typer.echo(f"demo data {state}: {r / common.data_dir}")


@app.command("drift")
@config_errors
def drift(reference: Path = typer.Option(..., exists=True, dir_okay=False, help="JSONL of the reference window"),
          current: Path = typer.Option(..., exists=True, dir_okay=False, help="JSONL of the current window"),
          out: Path = typer.Option(Path("drift-report"), help="folder for report.json / report.html"),
          root: Optional[Path] = typer.Option(None, help="project root holding params.yaml")) -> None:
    """Compare two JSONL files of prompts (field `prompt` or `text`, optional `response`)."""
    from driftkeel.config import load_section
    from driftkeel.drift.cli import run_drift_cli

    from driftkeel.embeddings import Embedder

    r = _root(root)
    _, params = load_section("drift", r / "params.yaml")
    _print(run_drift_cli(reference, current, out, params, embedder=Embedder.for_project(r)))


@app.command("rollback")
@config_errors
def rollback(model: str = typer.Option("driftkeel-policy", help="registered model name"),
             to: Optional[str] = typer.Option(None, "--to", help="version to make champion (default: previous)"),
             reason: str = typer.Option(..., help="why (recorded in the alias history)"),
             user: Optional[str] = typer.Option(None, help="who (default: current user)"),
             allow_failed_gate: bool = typer.Option(False, "--allow-failed-gate",
                                                    help="allow a version that failed the promotion gate"),
             root: Optional[Path] = typer.Option(None)) -> None:
    """Move the `champion` alias back and record who/why/when."""
    from driftkeel.config import load_section
    from driftkeel.registry import lifecycle, tracking

    r = _root(root)
    common, _ = load_section("register", r / "params.yaml")
    tracking.configure(r, common)
    _print(lifecycle.rollback(model, to_version=to, reason=reason, user=user or getpass.getuser(), root=r,
                              common=common, allow_failed_gate=allow_failed_gate))


@app.command("status")
@config_errors
def status(root: Optional[Path] = typer.Option(None),
           as_json: bool = typer.Option(False, "--json", help="the full status as JSON"),
           prefect: bool = typer.Option(False, "--prefect", help="also count flow runs on PREFECT_API_URL")) -> None:
    """Data version, champion/challenger versions, last drift decision, queue sizes."""
    from driftkeel.config import ConfigError
    from driftkeel.ops.status import project_status, render

    r = _root(root)
    if not (r / "params.yaml").is_file():
        raise ConfigError(f"{r / 'params.yaml'}: not found (not a driftkeel project root?)")
    st = project_status(r, prefect=prefect)
    if as_json:
        _print(st)
    else:
        typer.echo(render(st))


HEADLINE = {
    "validate": ["rows_in", "rows_clean", "rows_quarantined"],
    "aggregate": ["n_comparisons", "krippendorff_alpha", "mean_golden_accuracy", "n_review"],
    "drift": ["n_alarms", "decision_level", "prompt_p_value"],
    "select": ["k_selected", "surrogate_heldout_accuracy"],
    "mix": ["n_train", "n_eval", "replay_share"],
    "sft": ["final_loss", "train_seconds"],
    "reward": ["eval_accuracy", "train_seconds"],
    "ppo": ["first_score", "last_score", "mean_kl", "train_seconds"],
    "evaluate": ["reward_accuracy", "reward_accuracy_pre", "reward_accuracy_post", "challenger_mean_reward",
                 "baseline_mean_reward", "gate_passed"],
    "register": ["policy_version", "policy_champion_version", "reward_champion_version", "promoted"],
}


@app.command("metrics")
@config_errors
def metrics(root: Optional[Path] = typer.Option(None),
            all_: bool = typer.Option(False, "--all", help="every metric, not only the headline ones")) -> None:
    """Each stage's metrics, one per line (outputs/<stage>/metrics.json)."""
    from driftkeel.config import load_section
    from driftkeel.io import read_json

    r = _root(root)
    common, _ = load_section("register", r / "params.yaml")
    for stage, keys in HEADLINE.items():
        path = r / common.outputs_dir / stage / "metrics.json"
        if not path.exists():
            typer.echo(f"{stage:<10} (no metrics yet)")
            continue
        values = read_json(path)
        shown = sorted(values) if all_ else [k for k in keys if k in values]
        for key in shown:
            v = values[key]
            typer.echo(f"{stage:<10} {key:<32} {round(v, 4) if isinstance(v, float) else v}")


from driftkeel.active.cli import labels_app  # noqa: E402

app.add_typer(labels_app, name="labels")  # driftkeel labels export | driftkeel labels import FILE

from driftkeel.registry.spool import mlflow_sync_command  # noqa: E402

app.command("mlflow-sync")(config_errors(mlflow_sync_command))  # driftkeel mlflow-sync [--root PATH]

from driftkeel.data.prepare_cli import prepare_data_command  # noqa: E402

app.command("prepare-data")(prepare_data_command)  # driftkeel prepare-data [--root PATH] [--params FILE] [--force]


if __name__ == "__main__":
    app()
