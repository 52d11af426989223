"""Migration 0002 (accounts) with data, up and down, on SQLite and PostgreSQL (threat model AC06).

A database is built at revision 0001 and filled with one row of every kind through SQL (the
models already describe the new schema); the migration must move every row into the platform
account it creates, leave the schema exactly as the models describe it, and on the way down
keep every row (minus the accounts table and its columns).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import PG_ADMIN_DSN, _make_app

from authserver.accounts import registry as accounts
from authserver.admin.cli import main
from authserver.credentials import api_keys, clients
from authserver.storage.db import db, downgrade_database, upgrade_database
from authserver.storage.models import Account

NOW = datetime(2027, 1, 31, 12, 0, 0)
OWNED_TABLES = ("clients", "api_keys", "operators", "audit_events", "revoked_tokens")
ROWS_0001 = {
    "clients": [
        {"id": 1, "client_id": "c" * 32, "name": "resource server", "auth_method":
         "client_secret_basic", "secret_hash": "a" * 64, "scope": "tokens:introspect",
         "audiences": "[]", "enabled": True, "created_at": NOW, "updated_at": NOW},
        {"id": 2, "client_id": "d" * 32, "name": "sender", "auth_method": "client_secret_post",
         "secret_hash": "b" * 64, "scope": "sms:message:send", "audiences": "[]",
         "enabled": False, "created_at": NOW, "updated_at": NOW},
    ],
    "api_keys": [
        {"id": "A" * 32, "name": "key", "secret_hash": "e" * 64, "scope": "sms:manage",
         "allowed_ips": "[]", "valid_from": NOW, "valid_to": NOW + timedelta(days=365),
         "enabled": True, "created_by": "cli", "created_at": NOW, "updated_at": NOW},
    ],
    "operators": [
        {"id": 1, "username": "ops", "password_hash": "$argon2id$x", "enabled": True,
         "created_at": NOW},
    ],
    "operator_sessions": [
        {"id_hash": "f" * 64, "operator_id": 1, "created_at": NOW, "last_seen_at": NOW},
    ],
    "audit_events": [
        {"id": 1, "occurred_at": NOW, "actor": "cli", "action": "create",
         "object_type": "api-key", "object_id": "A" * 32, "changes": "{}"},
        {"id": 2, "occurred_at": NOW, "actor": "cli", "action": "create",
         "object_type": "operator", "object_id": "ops", "changes": "{}"},
    ],
    "revoked_tokens": [
        {"id": 1, "jti": "jti-1", "client_id": "d" * 32, "expires_at": NOW + timedelta(hours=1),
         "revoked_at": NOW},
    ],
    "seen_assertions": [
        {"client_id": "d" * 32, "jti": "assertion-1", "expires_at": NOW},
    ],
}


@pytest.fixture
def blank_app(backend, tmp_path):
    """An app on an empty database of ``backend`` (no migration applied)."""
    created = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'blank.sqlite'}"
    else:
        created = f"authserver_migration_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{created}"')
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{created}"
    app = _make_app(url, tmp_path / "instance")
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    if created:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{created}" WITH (FORCE)')


def _fill_0001() -> None:
    metadata = sa.MetaData()
    metadata.reflect(db.engine)
    with db.engine.begin() as connection:
        for table, rows in ROWS_0001.items():
            connection.execute(metadata.tables[table].insert(), rows)
        if connection.dialect.name == "postgresql":  # explicit ids: move the sequences on
            for table in ("clients", "operators", "audit_events", "revoked_tokens"):
                connection.execute(sa.text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"))


def _rows(table: str) -> list[dict]:
    with db.engine.connect() as connection:
        result = connection.execute(sa.text(f"SELECT * FROM {table}"))
        return [dict(row) for row in result.mappings()]


def _columns(table: str) -> set[str]:
    return {column["name"] for column in sa.inspect(db.engine).get_columns(table)}


def _schema_differences() -> list:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        return compare_metadata(context, db.metadata)


def _without_account(row: dict) -> dict:
    return {name: value for name, value in row.items()
            if name not in ("account_id", "actor_account_id")}


def test_AC06_upgrade_moves_every_row_into_the_platform_account(blank_app):
    with blank_app.app_context():
        upgrade_database("0001")
        _fill_0001()
        before = {table: _rows(table) for table in ROWS_0001}
        upgrade_database("0002")  # later migrations add columns of their own

        platforms = db.session.scalars(sa.select(Account).where(Account.platform.is_(True))).all()
        assert len(platforms) == 1
        platform = platforms[0]
        assert accounts.check_account_id(platform.id) and platform.enabled
        assert accounts.platform_account_id() == platform.id
        for table in ROWS_0001:
            after = _rows(table)
            assert [_without_account(row) for row in after] == before[table], table
            if table in OWNED_TABLES:
                assert {row["account_id"] for row in after} == {platform.id}, table
        assert {row["actor_account_id"] for row in _rows("audit_events")} == {platform.id}
        # The migrated schema is exactly what the models describe (columns, indexes, FKs).
        upgrade_database()
        assert _schema_differences() == []

        # The moved records work as platform records through the services.
        assert clients.get_client("c" * 32, account_id=platform.id).name == "resource server"
        assert api_keys.get_api_key("A" * 32, account_id=platform.id).name == "key"


def test_AC06_downgrade_keeps_every_row_and_upgrade_again_restores_accounts(blank_app):
    with blank_app.app_context():
        upgrade_database("0001")
        _fill_0001()
        before = {table: _rows(table) for table in ROWS_0001}
        upgrade_database()
        customer = accounts.create_account(name="Customer", actor="test")
        record, _ = api_keys.create_api_key(name="customer key", scopes=["sms:manage"],
                                            actor="test", account_id=customer.id)
        customer_key = _without_account(_rows_where("api_keys", record.id))
        db.session.remove()

        downgrade_database("0001")
        assert "accounts" not in sa.inspect(db.engine).get_table_names()
        for table in OWNED_TABLES:
            assert not _columns(table) & {"account_id", "actor_account_id"}, table
        for table, rows in before.items():
            now = _rows(table)
            for row in rows:
                assert row in now, (table, row)  # nothing lost
        assert customer_key in _rows("api_keys")  # the customer's key too, unowned now

        upgrade_database()
        accounts.forget_platform_account()
        platform_id = accounts.platform_account_id()
        assert {row["account_id"] for row in _rows("api_keys")} == {platform_id}
        assert len(_rows("api_keys")) == 2
        assert _schema_differences() == []


def _rows_where(table: str, object_id: str) -> dict:
    return next(row for row in _rows(table) if row["id"] == object_id)


def test_AC06_migration_on_an_empty_database_makes_one_platform_account(blank_app):
    with blank_app.app_context():
        upgrade_database()
        upgrade_database()  # idempotent
        account, created = accounts.ensure_platform_account()
        assert not created
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Account)) == 1
    result = blank_app.test_cli_runner().invoke(main, ["init"])
    assert result.exit_code == 0, result.output
    assert f"platform account {account.id}" in result.output
