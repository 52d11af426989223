"""Alembic environment: runs on the connection the app hands over (or the URL)."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from authserver.storage import models  # noqa: F401  (registers the tables on the metadata)
from authserver.storage.db import db

target_metadata = db.metadata
config = context.config


def run_migrations_online() -> None:
    """Run migrations on the given connection, or on a new one from the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(config.get_section(config.config_ini_section, {}),
                                prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
