"""Whether this host can actually serve: the checks behind ``/readyz`` and ``config check``.

Ready means: the database answers, its schema is at the migrations' head, the signing key
in force decrypts with this host's keyring, and the shared rate-limit store (Redis) answers
when one is configured. Each check names its cause when it fails.
"""

from __future__ import annotations

import os
from functools import lru_cache

import sqlalchemy as sa
from flask import current_app

from authserver.credentials.keyring import KeyConfigurationError
from authserver.credentials.signing_keys import check_signing_key
from authserver.storage.db import SQLITE_PATH, current_heads, db, head_revisions
from authserver.web.errors import UNAVAILABLE_ERRORS
from authserver.web.limits import shared_store_reachable

OK = "ok"


@lru_cache(maxsize=1)
def _heads() -> frozenset[str]:
    return frozenset(head_revisions())


def schema_problem() -> str | None:
    """None when the database is at the migrations' head, else what is wrong."""
    current = frozenset(current_heads())
    if current == _heads():
        return None
    if not current:
        return "the database is not initialised: run `authserver init` (or `authserver db upgrade`)"
    return (f"the database schema is at {', '.join(sorted(current))}, this version needs "
            f"{', '.join(sorted(_heads()))}: run `authserver db upgrade`")


def missing_sqlite_file() -> str | None:
    """The cause when the configured SQLite file does not exist (it is never created by
    connecting: see ``authserver.storage.db``)."""
    path = current_app.extensions.get(SQLITE_PATH)
    if path and not os.path.exists(path):
        return "the SQLite database does not exist yet: run `authserver init`"
    return None


def readiness() -> tuple[bool, dict[str, str]]:
    """(ready, {check: "ok" or the cause}) for this host, right now."""
    checks: dict[str, str] = {}
    stage = "database"
    if missing_sqlite_file():
        checks[stage] = missing_sqlite_file()
        return False, checks
    try:
        db.session.execute(sa.text("SELECT 1"))
        checks[stage] = OK
        stage = "schema"
        checks[stage] = schema_problem() or OK
        if checks[stage] == OK:
            stage = "signing_key"
            try:
                check_signing_key()
                checks[stage] = OK
            except KeyConfigurationError as exc:
                checks[stage] = str(exc)
    except UNAVAILABLE_ERRORS:
        checks[stage] = "the database does not answer"
    except sa.exc.ProgrammingError:
        checks[stage] = "the database schema cannot be read: run `authserver db upgrade`"
    finally:
        db.session.rollback()  # a read-only check leaves no transaction open
    redis = shared_store_reachable()
    if redis is not None:
        checks["redis"] = OK if redis else "the rate-limit store (RATELIMIT_STORAGE_URI) " \
                                           "does not answer"
    return all(value == OK for value in checks.values()), checks
