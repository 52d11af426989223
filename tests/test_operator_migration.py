"""Migration 0004 (operator roles, forced password change, TOTP) on both backends: existing
operators become owners and keep their passwords and sessions; downgrade drops only what the
migration added."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from test_account_migration import _schema_differences, blank_app  # noqa: F401 - fixture

from authserver.storage.db import db, downgrade_database, upgrade_database

NOW = datetime(2027, 1, 31, 12, 0, 0)
NEW_COLUMNS = {"role", "must_change_password", "password_changed_at", "totp_secret",
               "totp_confirmed_at", "totp_last_step"}


def _columns(table: str) -> set[str]:
    return {column["name"] for column in sa.inspect(db.engine).get_columns(table)}


def test_existing_operators_become_owners_and_downgrade_keeps_them(blank_app):  # noqa: F811
    with blank_app.app_context():
        upgrade_database("0003")
        with db.engine.begin() as connection:
            platform = connection.execute(sa.text("SELECT id FROM accounts")).scalar_one()
            for number, name in enumerate(("alice", "bob"), start=1):
                connection.execute(sa.text(
                    "INSERT INTO operators (id, username, account_id, password_hash, enabled, "
                    "created_at) VALUES (:id, :name, :account, :hash, :yes, :now)"),
                    {"id": number, "name": name, "account": platform, "hash": f"$argon2id${name}",
                     "yes": number == 1, "now": NOW})
            connection.execute(sa.text(
                "INSERT INTO operator_sessions (id_hash, operator_id, created_at, last_seen_at) "
                "VALUES (:hash, 1, :now, :now)"), {"hash": "f" * 64, "now": NOW})

        upgrade_database("0004")
        assert NEW_COLUMNS <= _columns("operators")
        assert "operator_recovery_codes" in sa.inspect(db.engine).get_table_names()
        with db.engine.connect() as connection:
            rows = connection.execute(sa.text(
                "SELECT username, role, must_change_password, password_hash, totp_secret "
                "FROM operators ORDER BY id")).all()
            sessions = connection.execute(sa.text(
                "SELECT operator_id FROM operator_sessions")).scalars().all()
        assert [(r[0], r[1], bool(r[2]), r[3], r[4]) for r in rows] == [
            ("alice", "owner", False, "$argon2id$alice", None),
            ("bob", "owner", False, "$argon2id$bob", None)]
        assert sessions == [1]

        upgrade_database("head")
        assert _schema_differences() == []

        downgrade_database("0003")
        assert not NEW_COLUMNS & _columns("operators")
        assert "operator_recovery_codes" not in sa.inspect(db.engine).get_table_names()
        with db.engine.connect() as connection:
            assert connection.execute(sa.text(
                "SELECT username FROM operators ORDER BY id")).scalars().all() == ["alice", "bob"]
            assert connection.execute(sa.text(
                "SELECT count(*) FROM operator_sessions")).scalar() == 1
        upgrade_database("head")
        with db.engine.connect() as connection:
            assert connection.execute(sa.text(
                "SELECT DISTINCT role FROM operators")).scalars().all() == ["owner"]
