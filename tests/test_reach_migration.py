"""Migration 0006 (resource servers) on both backends: up adds the table, down drops only it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from conftest import ENCRYPTION_KEY

from authserver import create_app
from authserver.storage.db import db, downgrade_database, upgrade_database


def test_resource_servers_migration_both_ways(empty_database, tmp_path):
    app = create_app({"SQLALCHEMY_DATABASE_URI": empty_database, "ENCRYPTION_KEY": ENCRYPTION_KEY,
                      "SECRET_KEY": "migration-test"}, instance_path=str(tmp_path / "instance"))
    with app.app_context():
        upgrade_database("0005")
        assert "resource_servers" not in sa.inspect(db.engine).get_table_names()
        upgrade_database("0006")
        inspector = sa.inspect(db.engine)
        assert "resource_servers" in inspector.get_table_names()
        assert {column["name"] for column in inspector.get_columns("resource_servers")} == {
            "id", "name", "manifest", "created_at", "updated_at"}
        with db.engine.begin() as connection:
            connection.execute(sa.text(
                "INSERT INTO resource_servers (name, manifest, created_at, updated_at) "
                "VALUES ('demo', '{\"routes\": []}', :now, :now)"), {"now": "2026-01-01"})
            with pytest.raises(sa.exc.IntegrityError), connection.begin_nested():
                connection.execute(sa.text(
                    "INSERT INTO resource_servers (name, manifest, created_at, updated_at) "
                    "VALUES ('demo', '{}', :now, :now)"), {"now": "2026-01-01"})
        downgrade_database("0005")
        inspector = sa.inspect(db.engine)
        assert "resource_servers" not in inspector.get_table_names()
        assert "seen_dpop_proofs" in inspector.get_table_names()
        upgrade_database("head")
        assert "resource_servers" in sa.inspect(db.engine).get_table_names()
        db.engine.dispose()
