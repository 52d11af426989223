"""Migration 0003 (DPoP) on both backends: existing clients keep Bearer behaviour, downgrade
drops only what it added."""

from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa
from conftest import ENCRYPTION_KEY

from authserver import create_app
from authserver.storage.db import db, downgrade_database, upgrade_database


def migrate(revision: str, down: bool = False) -> None:
    (downgrade_database if down else upgrade_database)(revision)


def test_dpop_migration_both_ways(empty_database, tmp_path):
    app = create_app({"SQLALCHEMY_DATABASE_URI": empty_database, "ENCRYPTION_KEY": ENCRYPTION_KEY,
                      "SECRET_KEY": "migration-test"}, instance_path=str(tmp_path / "instance"))
    with app.app_context():
        migrate("0002")
        now = datetime(2026, 1, 1)
        with db.engine.begin() as connection:
            platform = connection.execute(sa.text("SELECT id FROM accounts")).scalar_one()
            connection.execute(sa.text(
                "INSERT INTO clients (client_id, account_id, name, auth_method, scope, audiences, "
                "enabled, created_at, updated_at) VALUES ('c1', :account, 'old', "
                "'client_secret_basic', 'message:send', '[]', :yes, :now, :now)"),
                {"account": platform, "yes": True, "now": now})
        migrate("0003")
        inspector = sa.inspect(db.engine)
        assert "seen_dpop_proofs" in inspector.get_table_names()
        with db.engine.connect() as connection:
            flag = connection.execute(sa.text(
                "SELECT dpop_bound_access_tokens FROM clients WHERE client_id = 'c1'")).scalar()
        assert flag in (False, 0)
        migrate("0002", down=True)
        inspector = sa.inspect(db.engine)
        assert "seen_dpop_proofs" not in inspector.get_table_names()
        columns = {column["name"] for column in inspector.get_columns("clients")}
        assert "dpop_bound_access_tokens" not in columns
        with db.engine.connect() as connection:
            assert connection.execute(sa.text("SELECT name FROM clients")).scalar() == "old"
        migrate("head")
        db.engine.dispose()
