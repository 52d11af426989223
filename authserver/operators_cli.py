"""``authserver operators``: web UI accounts (thin wrappers over ``operators``)."""

from __future__ import annotations

import json
import sys

import click
from flask.cli import with_appcontext

from . import operators as operator_service
from .errors import NotFoundError, ValidationError

CLI_ACTOR = "cli"


def _fail(error: Exception) -> None:
    from .cli import fail

    fail(error)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        # One line; only the line break is dropped (spaces may be part of a passphrase).
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@click.group("operators")
def operators_group():
    """People who sign in to the web UI."""


@operators_group.command("create")
@click.option("--username", required=True, help="Sign-in name (case-insensitive).")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of standard input (else prompt).")
@with_appcontext
def operators_create(username, password_stdin):
    """Create an operator account."""
    password = _read_password(password_stdin)
    try:
        operator = operator_service.create_operator(username=username, password=password,
                                                    actor=CLI_ACTOR)
    except ValidationError as exc:
        _fail(exc)
    click.echo(f"created operator {operator.username}")


@operators_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def operators_list(as_json):
    """List operator accounts (never their password hashes)."""
    rows = [operator_service.describe(op) for op in operator_service.list_operators()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "enabled" if row["enabled"] else "disabled"
        click.echo(f"{row['username']:<32} {state:<8} created {row['created_at']}")


def _set_enabled(username: str, enabled: bool) -> None:
    try:
        operator = operator_service.set_enabled(username, enabled, actor=CLI_ACTOR)
    except NotFoundError as exc:
        _fail(exc)
    click.echo(f"{operator.username}: {'enabled' if operator.enabled else 'disabled'}")


@operators_group.command("disable")
@click.argument("username")
@with_appcontext
def operators_disable(username):
    """Disable an account and end its sessions."""
    _set_enabled(username, False)


@operators_group.command("enable")
@click.argument("username")
@with_appcontext
def operators_enable(username):
    """Enable a disabled account again."""
    _set_enabled(username, True)
