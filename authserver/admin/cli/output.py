"""How the ``authserver`` commands print results and report errors (text or ``--json``)."""

from __future__ import annotations

import json
import sys

import click

from authserver.web.errors import NotFoundError, ValidationError


def emit(data, as_json: bool, human=None) -> None:
    """Print ``data`` as JSON, or through ``human`` (a function returning lines)."""
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        for line in (human(data) if human else [f"{k}: {v}" for k, v in data.items()]):
            click.echo(line)


def emit_rows(rows: list[dict], as_json: bool, line) -> None:
    """Print a listing as a JSON array, or one ``line(row)`` per row."""
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(line(row))


def state_column(row: dict) -> str:
    """``enabled``/``disabled``, padded for a listing column."""
    return f"{'enabled' if row['enabled'] else 'disabled':<8}"


def fail(error: Exception) -> None:
    """Report a service error the way a shell user expects: stderr and exit status 1."""
    if isinstance(error, ValidationError):
        for field, messages in error.errors.items():
            click.echo(f"error: {field}: {'; '.join(messages)}", err=True)
    elif isinstance(error, NotFoundError):
        click.echo(f"error: not found: {error}", err=True)
    else:
        click.echo(f"error: {error}", err=True)
    sys.exit(1)
