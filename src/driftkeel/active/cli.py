"""`driftkeel labels ...`: the labelling queue in and out of annotation tools.

    driftkeel labels export [--out DIR]            # queue -> JSONL / Label Studio / Argilla files
    driftkeel labels import LABELS [--default-response-time-s 30]
                                                   # tool export -> data/stream/batch_NNN.jsonl (a new file)

Registered in driftkeel/cli.py with `app.add_typer(labels_app, name="labels")`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from driftkeel.cli_errors import config_errors

labels_app = typer.Typer(add_completion=False, no_args_is_help=True,
                         help="Labelling queue: export to annotation tools, import their labels as a new batch.")


def _root(root: Optional[Path]) -> Path:
    return Path(root or os.environ.get("DRIFTKEEL_ROOT", ".")).resolve()


def _paths(root: Optional[Path]) -> tuple[Path, Path, Path]:
    from driftkeel.config import load_section

    r = _root(root)
    common, _ = load_section("select", r / "params.yaml")
    return r, r / common.data_dir, r / common.outputs_dir / "select" / "queue.jsonl"


@labels_app.command("export")
@config_errors
def export(out: Optional[Path] = typer.Option(None, help="folder (default: outputs/select)"),
           queue: Optional[Path] = typer.Option(None, help="queue JSONL (default: outputs/select/queue.jsonl)"),
           root: Optional[Path] = typer.Option(None, help="project root holding params.yaml")) -> None:
    """Write the queue as JSONL, Label Studio tasks + config and Argilla records + settings."""
    from driftkeel.active.export import write_exports
    from driftkeel.io import read_jsonl

    _, _, default_queue = _paths(root)
    q = queue or default_queue
    if not q.exists():
        typer.echo(f"error: {q} not found (run the select stage first)", err=True)
        raise typer.Exit(2)
    folder = out or q.parent
    names = write_exports(folder, read_jsonl(q), {"jsonl", "label_studio", "argilla"})
    typer.echo(json.dumps({"folder": str(folder), "files": names}, indent=2))


@labels_app.command("import")
@config_errors
def import_(labels: Path = typer.Argument(..., exists=True, dir_okay=False,
                                          help="Label Studio JSON export, Argilla export or JSONL of "
                                               "{pair_id, label, annotator_id}"),
            queue: Optional[Path] = typer.Option(None, help="queue the labels answer (default: outputs/select/queue.jsonl)"),
            default_response_time_s: Optional[float] = typer.Option(
                None, help="response time for labels without one (else they are rejected)"),
            root: Optional[Path] = typer.Option(None, help="project root holding params.yaml")) -> None:
    """Write the labels as the next data/stream batch (never overwrites); rejected rows are listed with a reason."""
    from driftkeel.active.export import import_labels

    _, data, default_queue = _paths(root)
    q = queue or default_queue
    if not q.exists():
        typer.echo(f"error: {q} not found", err=True)
        raise typer.Exit(2)
    summary = import_labels(labels, q, data, default_response_time_s=default_response_time_s)
    typer.echo(json.dumps(summary, indent=2, default=str))
    if not summary["n_judgements"]:
        raise typer.Exit(1)
