"""The schema check every CLI command and server start makes (``observability.readiness``)
reads the migrations' heads and the database's revision without Alembic: both must say what
Alembic says, on both backends, before, during and after the migrations."""

from __future__ import annotations

import pytest
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from conftest import ENCRYPTION_KEY

from authserver import create_app
from authserver.observability.readiness import schema_problem
from authserver.storage import db as storage
from authserver.storage.db import (
    alembic_config,
    current_heads,
    db,
    declared_heads,
    downgrade_database,
    head_revisions,
    upgrade_database,
)


def alembic_heads() -> tuple[str, ...]:
    return tuple(sorted(ScriptDirectory.from_config(alembic_config()).get_heads()))


def alembic_current() -> tuple[str, ...]:
    with db.engine.connect() as connection:
        return tuple(sorted(MigrationContext.configure(connection).get_current_heads()))


def test_current_and_head_revisions_agree_with_alembic(empty_database, tmp_path):
    app = create_app({"SQLALCHEMY_DATABASE_URI": empty_database, "ENCRYPTION_KEY": ENCRYPTION_KEY,
                      "SECRET_KEY": "revision-test"}, instance_path=str(tmp_path / "instance"))
    with app.app_context():
        assert declared_heads() is not None  # the shipped scripts declare literals
        assert head_revisions() == alembic_heads()
        upgrade_database("0001")  # creates the SQLite file; the version table holds 0001
        assert current_heads() == alembic_current() == ("0001",)
        assert "authserver db upgrade" in schema_problem()
        upgrade_database("head")
        assert current_heads() == alembic_current() == alembic_heads()
        assert schema_problem() is None
        downgrade_database("base")  # the version table stays, empty
        assert current_heads() == alembic_current() == ()
        assert "not initialised" in schema_problem()
        db.engine.dispose()


def write_script(folder, name: str, body: str) -> None:
    (folder / f"{name}.py").write_text(body, "utf-8")


@pytest.fixture
def scripts(tmp_path, monkeypatch):
    """An empty migrations folder in place of ours (declared_heads reads ``versions/``)."""
    (tmp_path / "versions").mkdir()
    monkeypatch.setattr(storage, "MIGRATIONS_DIR", tmp_path)
    return tmp_path / "versions"


def test_declared_heads_follow_merges_and_annotations(scripts):
    write_script(scripts, "a", "revision = 'a'\ndown_revision = None\n")
    write_script(scripts, "b", "revision: str = 'b'\ndown_revision: str | None = 'a'\n")
    write_script(scripts, "c", "revision = 'c'\ndown_revision = 'a'\n")
    assert declared_heads() == ("b", "c")  # two branches
    write_script(scripts, "d", "revision = 'd'\ndown_revision = ('b', 'c')\n")
    assert declared_heads() == ("d",)  # merged


def test_a_script_without_literal_revisions_leaves_the_answer_to_alembic(scripts):
    write_script(scripts, "a", "revision = 'a'\ndown_revision = None\n")
    write_script(scripts, "b", "import os\nrevision = os.environ['REV']\ndown_revision = 'a'\n")
    assert declared_heads() is None
