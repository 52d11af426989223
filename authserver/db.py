"""The SQLAlchemy handle, a UTC datetime column type and the Alembic glue."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from flask import current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class Base(DeclarativeBase):
    """Declarative base with a naming convention Alembic can rely on."""

    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


db = SQLAlchemy(model_class=Base)


class UTCDateTime(sa.types.TypeDecorator):
    """Stores naive UTC, returns aware UTC: the same on SQLite and PostgreSQL."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    """SQLite as a multi-process store: WAL (readers never block the writer) and a busy
    timeout, so concurrent gunicorn workers wait for the lock instead of failing."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def init_app(app) -> None:
    """Bind the database to the app; tune SQLite connections, put a deadline on PostgreSQL's."""
    db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            sa.event.listen(db.engine, "connect", _sqlite_pragmas)
        elif app.config["DB_REQUEST_TIMEOUT"]:
            from .db_watchdog import watchdog

            watchdog.watch(db.engine, float(app.config["DB_REQUEST_TIMEOUT"]),
                           ping=app.config.get("DB_PING_ON_CHECKOUT", False))


_READ_ONE: dict[tuple, sa.Select] = {}


def read_one(model, column: str, value: object):
    """The row of ``model`` whose ``column`` equals ``value``, as a detached instance read
    with SQLAlchemy Core outside the ORM session: the lookup on every authentication path,
    where the session's unit of work would cost more than the query itself. The statement
    is built once per (model, column).

    The instance is for reading; services that change a record load it with the session.
    """
    statement = _READ_ONE.get((model, column))
    if statement is None:
        table = model.__table__
        statement = sa.select(table).where(table.c[column] == sa.bindparam("value")).limit(1)
        _READ_ONE[(model, column)] = statement
    with db.engine.connect() as connection:
        row = connection.execute(statement, {"value": value}).mappings().first()
    return model(**row) if row is not None else None


def alembic_config() -> Config:
    """An Alembic config bound to the current app's database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", current_app.config["SQLALCHEMY_DATABASE_URI"])
    return config


def upgrade_database(revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (idempotent)."""
    config = alembic_config()
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision() -> str | None:
    """The revision the database is at, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
