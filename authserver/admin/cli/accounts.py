"""``authserver accounts``: customer accounts (thin wrappers over ``accounts.registry``)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from authserver.accounts import registry as account_service
from authserver.admin.cli.output import emit, emit_rows, fail
from authserver.admin.cli.output import state_column as _state
from authserver.web.errors import NotFoundError, ValidationError

CLI_ACTOR = "cli"


def _line(row: dict) -> str:
    kind = "platform" if row["platform"] else "customer"
    return f"{row['id']}  {_state(row)}  {kind:<8}  {row['name']}"


@click.group("accounts")
def accounts_group():
    """Accounts: every client, API key, operator and audit event belongs to one."""


@accounts_group.command("create")
@click.option("--name", required=True, help="Display name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def accounts_create(name, as_json):
    """Create a customer account; prints its id."""
    try:
        account = account_service.create_account(name=name, actor=CLI_ACTOR)
    except ValidationError as exc:
        fail(exc)
    emit(account_service.describe(account), as_json)


@accounts_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def accounts_list(as_json):
    """List accounts, the platform account first."""
    rows, _ = account_service.list_accounts(size=10**9)
    emit_rows([account_service.describe(row) for row in rows], as_json, _line)


@accounts_group.command("show")
@click.argument("account_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def accounts_show(account_id, as_json):
    """Show one account."""
    try:
        emit(account_service.describe(account_service.get_account(account_id)), as_json)
    except NotFoundError as exc:
        fail(exc)


def _set_enabled(account_id: str, enabled: bool, as_json: bool) -> None:
    try:
        account = account_service.set_enabled(account_id, enabled, actor=CLI_ACTOR)
    except (NotFoundError, ValidationError) as exc:
        fail(exc)
    emit(account_service.describe(account), as_json)


@accounts_group.command("disable")
@click.argument("account_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def accounts_disable(account_id, as_json):
    """Disable an account: its clients, API keys, tokens and operators stop everywhere."""
    _set_enabled(account_id, False, as_json)


@accounts_group.command("enable")
@click.argument("account_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def accounts_enable(account_id, as_json):
    """Enable an account again (tokens issued before it was disabled stay refused)."""
    _set_enabled(account_id, True, as_json)
