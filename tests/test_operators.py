"""Operator accounts: the ``authserver operators`` commands and password storage."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from ui_support import PASSWORD, UI

from authserver.admin.cli import main
from authserver.credentials import operators
from authserver.storage.db import db
from authserver.storage.models import AuditEvent, Operator


def cli(runner, *args, input=None):
    """Run ``authserver operators ARGS``."""
    return runner.invoke(main, ["operators", *args], input=input)


def test_create_from_stdin_list_disable_enable(app, runner):
    # An admin: the account's last owner could not be disabled (tests/test_operator_roles.py).
    result = cli(runner, "create", "--username", "Alice", "--password-stdin", "--role", "admin",
                 input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "created operator alice" in result.output

    listed = json.loads(cli(runner, "list", "--json").output)
    assert [(row["username"], row["enabled"]) for row in listed] == [("alice", True)]
    assert "$argon2" not in json.dumps(listed) and "passwordHash" not in json.dumps(listed)

    with app.app_context():
        stored = db.session.scalar(sa.select(Operator.password_hash))
        assert stored.startswith("$argon2id$") and PASSWORD not in stored
        assert operators.authenticate("ALICE", PASSWORD) is not None

    assert cli(runner, "disable", "alice").exit_code == 0
    with app.app_context():
        assert operators.authenticate("alice", PASSWORD) is None
    assert "disabled" in cli(runner, "list").output
    assert cli(runner, "enable", "alice").exit_code == 0
    with app.app_context():
        assert operators.authenticate("alice", PASSWORD) is not None
        actions = db.session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions == ["create", "disable", "enable"]


def test_a_password_with_spaces_is_kept_whole(app, runner):
    passphrase = "  spaces at both ends  "
    assert cli(runner, "create", "--username", "bob", "--password-stdin",
               input=passphrase + "\n").exit_code == 0
    with app.app_context():
        assert operators.authenticate("bob", passphrase) is not None
        assert operators.authenticate("bob", passphrase.strip()) is None


@pytest.mark.parametrize("username, password, field", [
    ("alice", "short", "password"),
    ("alice", "x" * 257, "password"),
    ("", PASSWORD, "username"),
    ("-alice", PASSWORD, "username"),
    ("al ice", PASSWORD, "username"),
    ("a" * 65, PASSWORD, "username"),
])
def test_create_refuses_bad_input(app, runner, username, password, field):
    result = cli(runner, "create", "--username", username, "--password-stdin",
                 input=password + "\n")
    assert result.exit_code == 1
    assert f"error: {field}:" in result.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Operator)) == 0


def test_usernames_are_unique_ignoring_case(app, runner):
    assert cli(runner, "create", "--username", "alice", "--password-stdin",
               input=PASSWORD + "\n").exit_code == 0
    result = cli(runner, "create", "--username", "ALICE", "--password-stdin",
                 input=PASSWORD + "\n")
    assert result.exit_code == 1 and "already taken" in result.output


def test_disable_unknown_operator_fails(runner):
    result = cli(runner, "disable", "nobody")
    assert result.exit_code == 1 and "not found" in result.output


def test_cli_account_signs_in_to_the_ui(app, runner, client):
    cli(runner, "create", "--username", "alice", "--password-stdin", input=PASSWORD + "\n")
    assert UI(client).sign_in().status_code == 303


def test_dummy_hash_costs_what_a_real_hash_costs():
    """Unknown usernames are checked against DUMMY_HASH: it must use today's parameters."""
    assert not operators.password_hasher.check_needs_rehash(operators.DUMMY_HASH)
    assert operators.check_password(PASSWORD, operators.DUMMY_HASH) is False
