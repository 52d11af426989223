"""``authserver operators``: web UI accounts (thin wrappers over ``operators`` and
``second_factor``). ``--json`` prints the same camelCase fields as the admin API."""

from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext

from authserver.accounts import registry as account_service
from authserver.admin.cli.output import emit, emit_rows, fail
from authserver.credentials import operators as operator_service
from authserver.credentials import second_factor
from authserver.web.errors import NotFoundError, ValidationError

CLI_ACTOR = "cli"
ROLE_CHOICE = click.Choice(operator_service.ROLES)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        # One line; only the line break is dropped (spaces may be part of a passphrase).
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _line(row: dict) -> str:
    state = "enabled" if row["enabled"] else "disabled"
    factor = "2fa" if row["twoFactor"] else "-"
    return (f"{row['username']:<32} {row['accountId']}  {row['role']:<6} {state:<8} "
            f"{factor:<3} created {row['createdAt']}")


@click.group("operators")
def operators_group():
    """People who sign in to the web UI, and their roles: owner (manages operators), admin
    (manages credentials), viewer (reads)."""


@operators_group.command("create")
@click.option("--username", required=True, help="Sign-in name (case-insensitive).")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of standard input (else prompt).")
@click.option("--account", "account_id", default=None,
              help="The operator's account (default: the platform account).")
@click.option("--role", type=ROLE_CHOICE, default=None,
              help="Role in the account (default: owner for its first operator, else admin).")
@JSON_OPTION
@with_appcontext
def operators_create(username, password_stdin, account_id, role, as_json):
    """Create an operator of an account."""
    password = _read_password(password_stdin)
    try:
        operator = operator_service.create_operator(username=username, password=password,
                                                    actor=CLI_ACTOR, account_id=account_id,
                                                    role=role)
    except (NotFoundError, ValidationError) as exc:
        fail(exc)
    emit(operator_service.describe(operator), as_json, lambda row: [
        f"created operator {row['username']} in account {row['accountId']} as {row['role']}"])


@operators_group.command("list")
@click.option("--account", "account_id", default=None, help="Only this account's operators.")
@JSON_OPTION
@with_appcontext
def operators_list(account_id, as_json):
    """List operators with their accounts and roles (never their password hashes)."""
    if account_id is not None:
        try:
            account_id = account_service.get_account(account_id).id
        except NotFoundError as exc:
            fail(exc)
    rows = [operator_service.describe(op) for op in operator_service.list_operators(account_id)]
    emit_rows(rows, as_json, _line)


@operators_group.command("set-role")
@click.argument("username")
@click.argument("role", type=ROLE_CHOICE)
@JSON_OPTION
@with_appcontext
def operators_set_role(username, role, as_json):
    """Give an operator another role (an account keeps at least one enabled owner)."""
    try:
        operator = operator_service.set_role(username, role, actor=CLI_ACTOR)
    except (NotFoundError, ValidationError) as exc:
        fail(exc)
    emit(operator_service.describe(operator), as_json,
         lambda row: [f"{row['username']}: {row['role']}"])


@operators_group.command("reset-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True,
              help="Read the temporary password from standard input (else one is generated "
                   "and printed).")
@JSON_OPTION
@with_appcontext
def operators_reset_password(username, password_stdin, as_json):
    """Give an operator a one-time password, to change at the next sign-in; ends their
    sessions. A generated password is printed once."""
    given = _read_password(True) if password_stdin else None
    try:
        operator, password = operator_service.reset_password(username, actor=CLI_ACTOR,
                                                             password=given)
    except (NotFoundError, ValidationError) as exc:
        fail(exc)
    data = operator_service.describe(operator)
    if given is None:
        data["temporaryPassword"] = password
    emit(data, as_json, lambda row: [
        f"{row['username']}: password reset; it must be changed at the next sign-in"]
        + ([f"temporary password: {password}"] if given is None else []))


@operators_group.command("reset-2fa")
@click.argument("username")
@JSON_OPTION
@with_appcontext
def operators_reset_two_factor(username, as_json):
    """Turn an operator's second factor off (they sign in with the password alone and may
    set it up again); their recovery codes are deleted."""
    try:
        operator = second_factor.reset(username, actor=CLI_ACTOR)
    except NotFoundError as exc:
        fail(exc)
    emit(operator_service.describe(operator), as_json,
         lambda row: [f"{row['username']}: second factor off"])


def _set_enabled(username: str, enabled: bool, as_json: bool) -> None:
    try:
        operator = operator_service.set_enabled(username, enabled, actor=CLI_ACTOR)
    except (NotFoundError, ValidationError) as exc:
        fail(exc)
    emit(operator_service.describe(operator), as_json, lambda row: [
        f"{row['username']}: {'enabled' if row['enabled'] else 'disabled'}"])


@operators_group.command("disable")
@click.argument("username")
@JSON_OPTION
@with_appcontext
def operators_disable(username, as_json):
    """Disable an operator and end their sessions (never an account's last owner)."""
    _set_enabled(username, False, as_json)


@operators_group.command("enable")
@click.argument("username")
@JSON_OPTION
@with_appcontext
def operators_enable(username, as_json):
    """Enable a disabled operator again."""
    _set_enabled(username, True, as_json)
