"""API key service: generate, hash, look up, create, update, disable.

The key format (prefix, random part, checksum) lives in ``resource_demo.guard.api_key_format``,
shared with the guard. Only the SHA-256 of the key is stored, under a unique index.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from flask import current_app

from authserver.accounts import registry as accounts
from authserver.clock import isoformat, parse_isoformat, utcnow
from authserver.credentials.clients import validate_name
from authserver.credentials.hashing import hash_secret
from authserver.credentials.updates import (
    Updatable,
    update_record,
    validate_account_scopes,
    validate_grantable,
    validate_scopes,
)
from authserver.scopes import current_catalogue, format_scope, parse_scope
from authserver.storage import audit
from authserver.storage.audit import Actor
from authserver.storage.cache import cache_rows, cached
from authserver.storage.db import db, matches, ordering, paginate, read_connection
from authserver.storage.models import Account, ApiKey
from authserver.web.errors import NotFoundError, ValidationError
from resource_demo.guard.addresses import covers_an_address_family, normalize_allowlist
from resource_demo.guard.api_key_format import (  # noqa: F401 - re-exported for callers
    ALPHABET,
    PREFIX,
    RANDOM_LENGTH,
    assemble_api_key,
    check_api_key_format,
    generate_api_key,
)

KEY_ID_RE = re.compile(r"^[0-9A-F]{32}$")
DEFAULT_VALIDITY = timedelta(days=365)
LAST_USED_RESOLUTION = timedelta(seconds=60)
#: Timestamps at or after this are refused: a year's default validity must still fit in datetime.
LATEST_TIMESTAMP = datetime(9000, 1, 1, tzinfo=timezone.utc)


_LOOKUP: list[sa.Select] = []


def _lookup() -> sa.Select:
    """The key row and whether its account is enabled, in one statement built once."""
    if not _LOOKUP:
        keys, accounts_table = ApiKey.__table__, Account.__table__
        _LOOKUP.append(
            sa.select(keys, accounts_table.c.enabled.label("account_enabled"))
            .join(accounts_table, accounts_table.c.id == keys.c.account_id)
            .where(keys.c.secret_hash == sa.bindparam("value")).limit(1))
    return _LOOKUP[0]


# A cached key carries its account's state: a change to either drops it everywhere.
cache_rows(ApiKey, "api_keys", "secret_hash")
cache_rows(Account, "api_keys", None)


def query_api_key(key: object) -> ApiKey | None:
    """The record of a key secret (whatever its state, detached and read-only), or None;
    malformed keys cost no query. ``account_enabled`` tells whether its account is enabled.
    Shared by this process's requests and kept in memory within the bounds of
    ``storage.cache`` (a change is in force everywhere within 1 s)."""
    if not check_api_key_format(key):
        return None
    digest = hash_secret(key)
    return cached("api_keys", digest, lambda: _read_api_key(digest))


def _read_api_key(digest: str) -> ApiKey | None:
    """Read with Core outside the ORM session, in one statement."""
    with read_connection() as connection:
        row = connection.execute(_lookup(), {"value": digest}).mappings().first()
    if row is None:
        return None
    row = dict(row)
    account_enabled = bool(row.pop("account_enabled"))
    record = ApiKey(**row)
    record.account_enabled = account_enabled
    return record


def validate_may_change(record: ApiKey, held_scopes: Iterable[str] | None) -> None:
    """The one rule for every path that changes a key (admin API, UI, /oauth2/revoke):
    the caller must hold every scope the key has (ForbiddenError otherwise); the same check
    ``credentials.updates.update_record`` makes before any change."""
    validate_grantable(parse_scope(record.scope), held_scopes)


def is_active(record: ApiKey, now: datetime | None = None) -> bool:
    """Enabled, of an enabled account, and inside its validity window [validFrom, validTo)."""
    now = now or utcnow()
    return (record.enabled and record.account_enabled
            and record.valid_from <= now < record.valid_to)


def touch_last_used(record: ApiKey) -> None:
    """Record use at most once a minute per key: one cheap conditional UPDATE, no read."""
    now = utcnow()
    if record.last_used_at is not None and now - record.last_used_at < LAST_USED_RESOLUTION:
        return
    db.session.execute(
        sa.update(ApiKey).where(ApiKey.id == record.id)
        .where(sa.or_(ApiKey.last_used_at.is_(None),
                      ApiKey.last_used_at < now - LAST_USED_RESOLUTION))
        .values(last_used_at=now).execution_options(synchronize_session=False))
    db.session.commit()
    record.last_used_at = now  # the cached record too: no UPDATE again within the minute


def describe(record: ApiKey) -> dict:
    """The key in the platform's shape (never the secret or its hash)."""
    return {
        "id": record.id,
        "accountId": record.account_id,
        "name": record.name,
        "scopeGuids": parse_scope(record.scope),
        "validFrom": isoformat(record.valid_from),
        "validTo": isoformat(record.valid_to),
        "allowedIPs": list(record.allowed_ips or []),
        "enabled": record.enabled,
        "createdAt": isoformat(record.created_at),
        "lastUsedAt": isoformat(record.last_used_at),
    }


def _parse_time(value: object, field: str, errors: dict) -> datetime | None:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            errors.setdefault(field, []).append("needs a UTC offset or Z")
            return None
        parsed = value
    else:
        try:
            parsed = parse_isoformat(value)
        except ValueError:
            errors.setdefault(field, []).append("an ISO 8601 timestamp with Z or an offset")
            return None
    if parsed >= LATEST_TIMESTAMP:
        errors.setdefault(field, []).append(f"must be before {isoformat(LATEST_TIMESTAMP)}")
        return None
    return parsed


def _validate_window(valid_from, valid_to, errors: dict, created_at: datetime,
                     now: datetime | None = None) -> None:
    """validFrom not before creation, validTo after validFrom; with ``now`` (a window being
    set), validTo at most MAX_API_KEY_VALIDITY_DAYS from now (policy, threat model AD04)."""
    leeway = timedelta(seconds=current_app.config["LEEWAY"])
    if valid_from is not None and valid_from < created_at - leeway:
        errors.setdefault("validFrom", []).append("must not be before the key's creation")
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        errors.setdefault("validTo", []).append("must be after validFrom")
    max_days = current_app.config["MAX_API_KEY_VALIDITY_DAYS"]
    if now is not None and valid_to is not None and valid_to > now + timedelta(days=max_days):
        errors.setdefault("validTo", []).append(f"must be at most {max_days} days from now")


def _validate_allowlist(value: object, errors: dict) -> list[str] | None:
    try:
        allowlist = normalize_allowlist(value)
    except ValueError as exc:
        errors.setdefault("allowedIPs", []).append(str(exc))
        return None
    # Policy: a list whose ranges together cover every IPv4 or every IPv6 address (one /0,
    # or 0.0.0.0/1 + 128.0.0.0/1, ...) only hides "any address" in a list that looks
    # restrictive; the empty list is the one way to say it.
    if covers_an_address_family(allowlist):
        errors.setdefault("allowedIPs", []).append(
            "ranges covering every address are not allowed: an empty list already allows "
            "any address")
        return None
    return allowlist


def create_api_key(*, name: object, scopes: object, actor: Actor | str,
                   valid_from: object = None, valid_to: object = None, allowed_ips: object = None,
                   held_scopes: Iterable[str] | None = None,
                   account_id: str | None = None) -> tuple[ApiKey, str]:
    """Create a key in ``account_id`` (default: the platform account); returns the record and
    its secret (shown once, never stored).

    With ``held_scopes`` (the caller's): ``scopes=None`` means the caller's scopes
    (docs/scopes.md), and every scope must be covered by them (else ForbiddenError).
    """
    account_id = accounts.resolve_account(account_id)
    actor = accounts.as_actor(actor)
    errors: dict[str, list[str]] = {}
    now = utcnow()
    name = validate_name(name, errors)
    if scopes is None and held_scopes is not None:
        scopes = [scope for scope in held_scopes if scope in current_catalogue()]
    names = validate_scopes(scopes if scopes is not None else [], errors, "scopeGuids")
    if names == []:
        errors.setdefault("scopeGuids", []).append("at least one scope is required")
    validate_account_scopes(names, account_id, errors, "scopeGuids")
    start = now if valid_from is None else _parse_time(valid_from, "validFrom", errors)
    end = (start or now) + DEFAULT_VALIDITY if valid_to is None \
        else _parse_time(valid_to, "validTo", errors)
    _validate_window(start, end, errors, now, now)
    allowlist = _validate_allowlist(allowed_ips, errors)
    if errors:
        raise ValidationError(errors)
    validate_grantable(names, held_scopes)
    secret = generate_api_key()
    record = ApiKey(id=secrets.token_hex(16).upper(), account_id=account_id, name=name,
                    secret_hash=hash_secret(secret), scope=format_scope(names),
                    allowed_ips=allowlist, valid_from=start, valid_to=end, enabled=True,
                    created_by=actor.name[:200], created_at=now, updated_at=now)
    db.session.add(record)
    audit.record(actor, "create", "api-key", record.id, after=describe(record),
                 account_id=account_id)
    db.session.commit()
    return record, secret


def get_api_key(key_id: object, for_update: bool = False,
                account_id: str | None = None) -> ApiKey:
    """The key with ``key_id`` (32 uppercase hex); NotFoundError otherwise.

    ``for_update`` locks the row (PostgreSQL) so concurrent changes apply one after another.
    With ``account_id``, a key of another account is not found either, by the same single
    query, so neither the answer nor its timing tells them apart (AC01).
    """
    record = None
    if isinstance(key_id, str) and KEY_ID_RE.fullmatch(key_id):
        query = sa.select(ApiKey).where(ApiKey.id == key_id)
        if account_id is not None:
            query = query.where(ApiKey.account_id == account_id)
        if for_update:
            query = query.with_for_update()
        record = db.session.scalar(query)
    if record is None:
        raise NotFoundError(str(key_id)[:64])
    return record


#: List orders, under the admin API's names; the id breaks ties so pages never overlap.
ORDERS = {"createdAt": (ApiKey.created_at, ApiKey.id), "name": (ApiKey.name, ApiKey.id),
          "validTo": (ApiKey.valid_to, ApiKey.id)}


def list_api_keys(*, account_id: str | None = None, name: str | None = None,
                  enabled: bool | None = None, search: str | None = None,
                  order_by: str = "createdAt", descending: bool = False, page: int = 0,
                  size: int = 100) -> tuple[list[ApiKey], int]:
    """A page of keys (oldest first unless ordered otherwise) and the total count (of
    ``account_id``, or of all). ``name`` matches exactly; ``search`` is a case-insensitive
    part of the name or id.
    """
    query = sa.select(ApiKey)
    if account_id is not None:
        query = query.where(ApiKey.account_id == account_id)
    if name is not None:
        query = query.where(ApiKey.name == name)
    if enabled is not None:
        query = query.where(ApiKey.enabled == enabled)
    if search:
        query = query.where(matches(search, ApiKey.name, ApiKey.id))
    return paginate(query, *ordering(ORDERS[order_by], descending), page=page, size=size)


def _enabled_rule(value: object, errors: dict, record: ApiKey) -> bool | None:
    if not isinstance(value, bool):
        errors.setdefault("enabled", []).append("must be true or false")
        return None
    # Threat model AK05: revocation is irreversible; issue a new key instead.
    if value and not record.enabled:
        errors.setdefault("enabled", []).append("a disabled key cannot be enabled again")
    return value


def _scopes_rule(value: object, errors: dict, record: ApiKey) -> str | None:
    names = validate_scopes(value or [], errors, "scopeGuids")
    validate_account_scopes(names, record.account_id, errors, "scopeGuids")
    return None if names is None else format_scope(names)


def _time_rule(field: str):
    return lambda value, errors, record: _parse_time(value, field, errors)


#: Updatable fields, under the platform's key-management names.
UPDATABLE_FIELDS = {
    "name": Updatable("name", lambda value, errors, record: validate_name(value, errors)),
    "scopeGuids": Updatable("scope", _scopes_rule),
    "allowedIPs": Updatable("allowed_ips",
                            lambda value, errors, record: _validate_allowlist(value, errors)),
    "validFrom": Updatable("valid_from", _time_rule("validFrom")),
    "validTo": Updatable("valid_to", _time_rule("validTo")),
    "enabled": Updatable("enabled", _enabled_rule),
}


def _check_window(record: ApiKey, values: dict, errors: dict) -> None:
    window_set = "valid_from" in values or "valid_to" in values
    _validate_window(values.get("valid_from", record.valid_from),
                     values.get("valid_to", record.valid_to), errors, record.created_at,
                     utcnow() if window_set else None)


def update_api_key(key_id: str, *, actor: Actor | str, changes: dict,
                   held_scopes: Iterable[str] | None = None,
                   account_id: str | None = None) -> ApiKey:
    """Apply platform-shaped ``changes`` (name, scopeGuids, allowedIPs, validFrom, validTo,
    enabled); validated as a whole, audited, committed (``credentials.updates``).

    With ``held_scopes`` (the caller's), the key's current and new scopes must be covered.
    Disabling a key that is already disabled changes and records nothing. With
    ``account_id``, only a key of that account is found.
    """
    record = get_api_key(key_id, for_update=True, account_id=account_id)
    if changes == {"enabled": False} and not record.enabled:
        validate_may_change(record, held_scopes)
        db.session.commit()
        return record
    return update_record(record, changes, fields=UPDATABLE_FIELDS, actor=actor,
                         held_scopes=held_scopes, object_type="api-key", object_id=record.id,
                         describe=describe, check=_check_window)


def disable_api_key(key_id: str, *, actor: Actor | str, account_id: str | None = None,
                    held_scopes: Iterable[str] | None = None) -> ApiKey:
    """Disable (revoke) a key; it fails authentication from then on."""
    return update_api_key(key_id, actor=actor, changes={"enabled": False},
                          account_id=account_id, held_scopes=held_scopes)


def delete_api_key(key_id: str, *, actor: Actor | str,
                   held_scopes: Iterable[str] | None = None,
                   account_id: str | None = None) -> None:
    """Delete a key for good (it fails authentication from then on); its audit trail stays.
    With ``account_id``, only a key of that account is found."""
    actor = accounts.as_actor(actor)
    record = get_api_key(key_id, for_update=True, account_id=account_id)
    validate_may_change(record, held_scopes)
    before = describe(record)
    db.session.delete(record)
    audit.record(actor, "delete", "api-key", record.id, before, {},
                 account_id=record.account_id)
    db.session.commit()
