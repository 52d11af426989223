"""Account service: create, list, show, rename, disable and enable accounts.

The platform account is made by the migration that introduced accounts (``authserver init``
runs it) and cannot be disabled: it holds the operators' own and the resource servers'
clients. The CLI, the admin API and the web UI call these functions.

Disabling an account stops all of it at once, everywhere (threat model AC04): its clients
get ``invalid_client``, its API keys and tokens are inactive at introspection, and guards
following the feed refuse its JWTs. Enabling it again restores its clients, API keys and
operators as they were; access tokens issued before the disable stay refused (``disabled_at``).
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Iterable

import sqlalchemy as sa
from flask import current_app

from authserver.clock import isoformat, utcnow
from authserver.storage import audit
from authserver.storage.audit import Actor
from authserver.storage.cache import cache_rows, cached
from authserver.storage.db import db, paginate, read_connection
from authserver.storage.models import ACCOUNT_ID_LENGTH, Account
from authserver.web.errors import NotFoundError, ValidationError

OBJECT_TYPE = "account"
PLATFORM_NAME = "Platform"
ID_ALPHABET = string.ascii_letters + string.digits
ACCOUNT_ID_RE = re.compile(rf"^[A-Za-z0-9]{{{ACCOUNT_ID_LENGTH}}}$")
NAME_MAX = 200
UPDATABLE = ("name", "enabled")
_PLATFORM_KEY = "authserver.platform_account_id"


class NoPlatformAccount(RuntimeError):
    """The database has no platform account: ``authserver init`` was never run on it."""


def generate_account_id() -> str:
    """An opaque, URL-safe account id: 22 characters of [A-Za-z0-9], about 131 random bits."""
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ACCOUNT_ID_LENGTH))


def check_account_id(value: object) -> bool:
    """True when ``value`` has the shape of an account id (malformed ids cost no query)."""
    return isinstance(value, str) and ACCOUNT_ID_RE.fullmatch(value) is not None


def platform_account_id() -> str:
    """The platform account's id (it never changes, so each app remembers it)."""
    cached = current_app.extensions.get(_PLATFORM_KEY)
    if cached is not None:
        return cached
    found = db.session.scalar(sa.select(Account.id).where(Account.platform.is_(True)))
    if found is None:
        raise NoPlatformAccount("no platform account: run `authserver init`")
    current_app.extensions[_PLATFORM_KEY] = found
    return found


def forget_platform_account() -> None:
    """Drop the remembered platform id (tests that empty the database)."""
    current_app.extensions.pop(_PLATFORM_KEY, None)


def as_actor(actor: Actor | str) -> Actor:
    """An Actor; a bare name (the CLI, whoever holds the database) acts from the platform."""
    if isinstance(actor, Actor):
        return actor
    return Actor(name=str(actor), account_id=platform_account_id())


def resolve_account(account_id: str | None) -> str:
    """The account a new record goes into: ``account_id`` (which must exist) or, by default,
    the platform account (a single-team deployment never names one)."""
    if account_id is None:
        return platform_account_id()
    return get_account(account_id).id


def ensure_platform_account(name: str = PLATFORM_NAME) -> tuple[Account, bool]:
    """The platform account, created when missing; True when this call created it.

    The migration that introduced accounts makes it, so this only acts on a database
    that was emptied by hand (tests do).
    """
    existing = db.session.scalar(sa.select(Account).where(Account.platform.is_(True)))
    if existing is not None:
        return existing, False
    now = utcnow()
    account = Account(id=generate_account_id(), name=name, enabled=True, platform=True,
                      created_at=now, updated_at=now)
    db.session.add(account)  # like the migration that normally makes it: not audited
    db.session.commit()
    forget_platform_account()
    return account, True


def describe(account: Account) -> dict:
    """The account as the CLI and the admin API show it."""
    return {"id": account.id, "name": account.name, "enabled": account.enabled,
            "platform": bool(account.platform), "createdAt": isoformat(account.created_at),
            "disabledAt": isoformat(account.disabled_at)}


def validate_name(name: object, errors: dict) -> str | None:
    """A display name: 1-200 printable characters."""
    if not isinstance(name, str) or not name.strip():
        errors.setdefault("name", []).append("must not be empty")
        return None
    name = name.strip()
    if len(name) > NAME_MAX or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        errors.setdefault("name", []).append(f"at most {NAME_MAX} printable characters")
        return None
    return name


def create_account(*, name: object, actor: Actor | str) -> Account:
    """Create an enabled customer account; audited."""
    errors: dict[str, list[str]] = {}
    name = validate_name(name, errors)
    if errors:
        raise ValidationError(errors)
    actor = as_actor(actor)
    now = utcnow()
    account = Account(id=generate_account_id(), name=name, enabled=True, platform=None,
                      created_at=now, updated_at=now)
    db.session.add(account)
    db.session.flush()  # the audit event refers to the account
    audit.record(actor, "create", OBJECT_TYPE, account.id, after=describe(account),
                 account_id=account.id)
    db.session.commit()
    return account


def get_account(account_id: object, for_update: bool = False) -> Account:
    """The account with ``account_id``; NotFoundError otherwise (malformed ids alike)."""
    account = None
    if check_account_id(account_id):
        account = db.session.get(Account, account_id, with_for_update=for_update)
    if account is None:
        raise NotFoundError(str(account_id)[:64])
    return account


cache_rows(Account, "accounts", "id")
_LOOKUP: list[sa.Select] = []


def query_account(account_id: object) -> Account | None:
    """The account with ``account_id`` read outside the session (authentication paths): a
    detached, read-only record shared by this process's requests, kept in memory within the
    bounds of ``storage.cache`` (a change is in force everywhere within 1 s)."""
    if not check_account_id(account_id):
        return None
    return cached("accounts", account_id, lambda: _read_account(account_id))


def _read_account(account_id: str) -> Account | None:
    if not _LOOKUP:  # built once: building it per call cost more than the query
        table = Account.__table__
        _LOOKUP.append(sa.select(table).where(table.c.id == sa.bindparam("id")).limit(1))
    with read_connection() as connection:
        row = connection.execute(_LOOKUP[0], {"id": account_id}).mappings().first()
    return Account(**row) if row is not None else None


def list_accounts(*, enabled: bool | None = None, name: str | None = None, page: int = 0,
                  size: int = 100) -> tuple[list[Account], int]:
    """A page of accounts, oldest first (the platform account leads), and the total count."""
    query = sa.select(Account)
    if enabled is not None:
        query = query.where(Account.enabled == enabled)
    if name is not None:
        query = query.where(Account.name == name)
    return paginate(query, Account.platform.is_(None), Account.created_at, Account.id,
                    page=page, size=size)


def names(account_ids: Iterable[str]) -> dict[str, str]:
    """Account id -> name for the given ids (one query; unknown ids are left out)."""
    wanted = sorted(set(account_ids))
    if not wanted:
        return {}
    rows = db.session.execute(sa.select(Account.id, Account.name).where(Account.id.in_(wanted)))
    return {row.id: row.name for row in rows}


def _lock_feed() -> None:
    """Serialise feed positions across processes (PostgreSQL advisory lock; SQLite's write
    lock by a no-op write): a position becomes visible only after every smaller one, so a
    guard's cursor never skips a change."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(sa.text("SELECT pg_advisory_xact_lock(7342003)"))
    else:
        db.session.execute(sa.text("UPDATE accounts SET name = name WHERE 1 = 0"))


def update_account(account_id: str, *, actor: Actor | str, **changes) -> Account:
    """Rename, disable or enable an account; audited. The platform account stays enabled."""
    unknown = sorted(set(changes) - set(UPDATABLE))
    if unknown:
        raise ValidationError({field: ["cannot be set"] for field in unknown})
    actor = as_actor(actor)
    if "enabled" in changes:
        _lock_feed()
    account = get_account(account_id, for_update=True)
    before = describe(account)
    errors: dict[str, list[str]] = {}
    if "name" in changes:
        account.name = validate_name(changes["name"], errors) or account.name
    if "enabled" in changes:
        enabled = changes["enabled"]
        if not isinstance(enabled, bool):
            errors.setdefault("enabled", []).append("must be true or false")
        elif account.platform and not enabled:
            errors.setdefault("enabled", []).append("the platform account cannot be disabled")
        elif enabled != account.enabled:
            now = utcnow()
            account.enabled = enabled
            if not enabled:
                account.disabled_at = now
            # One more position at the end of the feed (see _lock_feed).
            account.feed_seq = (db.session.scalar(sa.select(sa.func.max(Account.feed_seq)))
                                or 0) + 1
    if errors:
        db.session.rollback()
        raise ValidationError(errors)
    after = describe(account)
    if after == before:
        db.session.commit()
        return account
    account.updated_at = utcnow()
    action = ("disable" if before["enabled"] and not account.enabled
              else "enable" if account.enabled and not before["enabled"] else "update")
    audit.record(actor, action, OBJECT_TYPE, account.id, before, after, account_id=account.id)
    db.session.commit()
    return account


def set_enabled(account_id: str, enabled: bool, *, actor: Actor | str) -> Account:
    """Enable or disable an account (see the module docstring for what that stops)."""
    return update_account(account_id, actor=actor, enabled=enabled)


def account_feed(after: int, limit: int,
                 only: str | None = None) -> tuple[list[Account], bool]:
    """Accounts whose enabled state changed after feed position ``after`` (of account ``only``,
    or of all), in feed order, and whether more follow. Each account appears once, at its
    latest change."""
    query = sa.select(Account).where(Account.feed_seq > after)
    if only is not None:
        query = query.where(Account.id == only)
    rows = db.session.scalars(query.order_by(Account.feed_seq).limit(limit + 1)).all()
    return list(rows[:limit]), len(rows) > limit
