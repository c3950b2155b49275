"""`driftkeel prepare-data`: write data/ from the source params.yaml `data.source` names.

- ``simulator`` (default): the deterministic demo stream, exactly like ``driftkeel demo-data``;
- ``files``: the user files in ``data.files`` (driftkeel.data.prepare), quarantines in data/quarantine/.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer


def prepare_data_command(root: Optional[Path] = typer.Option(None, help="project root (default: cwd)"),
                         params: Optional[Path] = typer.Option(None, help="params file (default: <root>/params.yaml)"),
                         force: bool = typer.Option(False, help="replace existing, different data/")) -> None:
    """Write data/ from params.yaml `data:` (the simulator, or user files in documented formats)."""
    from driftkeel.config import ConfigError, load_section

    r = Path(root or os.environ.get("DRIFTKEEL_ROOT", ".")).resolve()
    try:
        common, p = load_section("data", params or r / "params.yaml")
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    data_dir = r / common.data_dir
    try:
        if p.source == "simulator":
            from driftkeel.data.simulator import materialise

            typer.echo(f"demo data {materialise(p, data_dir, force=force)}: {data_dir}")
            return
        from driftkeel.data.prepare import prepare

        state, summary = prepare(p, r, data_dir, force=force)
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    for s in summary["sources"]:
        reasons = ", ".join(f"{k} x{v}" for k, v in s["reasons"].items()) or "none"
        not_needed = (f", {s['rows_not_needed']} not needed (beyond files.n_eval_prompts)"
                      if s.get("rows_not_needed") else "")
        typer.echo(f"{s['format']:<12} {s['source']}: {s['rows_in']} rows in, {s['rows_used']} used, "
                   f"{s['rows_quarantined']} quarantined ({reasons}){not_needed}")
    typer.echo(f"data {state}: {data_dir} -- {summary['n_batches']} batches, {summary['n_judgements']} judgements, "
               f"{summary['n_golden']} golden, {summary['n_eval_pairs']} eval pairs, {summary['n_pool']} pool, "
               f"{summary['n_sft_demos']} demos, {summary['n_eval_prompts']} eval prompts; quarantine in "
               f"{data_dir / 'quarantine'}")


if __name__ == "__main__":   # python -m driftkeel.data.prepare_cli [--root PATH] [--params FILE] [--force]
    typer.run(prepare_data_command)
