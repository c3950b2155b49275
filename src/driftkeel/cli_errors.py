"""One way for every `driftkeel` command to report a bad configuration: a one-line message, exit code 2."""
from __future__ import annotations

import functools

import typer


def config_errors(fn):
    """Decorate a Typer command so that a :class:`driftkeel.config.ConfigError` (a missing or invalid
    params.yaml, an unknown section, a bad value) prints ``error: <message>`` and exits with 2 instead of
    ending in a traceback."""
    from driftkeel.config import ConfigError

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    return run
