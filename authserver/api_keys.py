"""API key service: generate (prefix + checksum), hash, look up, create, update, disable.

Key format: ``asak_`` + 32 base62 characters (190 random bits) + a 6-character base62
CRC-32 of the random part. A mistyped or truncated key fails the checksum and is refused
without a database lookup; secret scanners find leaked keys by the prefix and regex
``asak_[0-9A-Za-z]{38}``. Only the SHA-256 of the key is stored, under a unique index.
"""

from __future__ import annotations

import re
import secrets
import zlib
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from flask import current_app

from . import audit
from .addresses import normalize_allowlist
from .clients import validate_grantable, validate_name, validate_scopes
from .clock import isoformat, parse_isoformat, utcnow
from .db import db, read_one
from .errors import NotFoundError, ValidationError
from .hashing import hash_secret
from .models import ApiKey
from .scopes import current_catalogue, format_scope, parse_scope

PREFIX = "asak_"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH, CHECKSUM_LENGTH = 32, 6
KEY_RE = re.compile(rf"^{PREFIX}[0-9A-Za-z]{{{RANDOM_LENGTH + CHECKSUM_LENGTH}}}$")
KEY_ID_RE = re.compile(r"^[0-9A-F]{32}$")
DEFAULT_VALIDITY = timedelta(days=365)
LAST_USED_RESOLUTION = timedelta(seconds=60)
UPDATABLE = ("name", "scopeGuids", "allowedIPs", "validFrom", "validTo", "enabled")
#: Timestamps at or after this are refused: a year's default validity must still fit in datetime.
LATEST_TIMESTAMP = datetime(9000, 1, 1, tzinfo=timezone.utc)


def _base62(number: int, length: int) -> str:
    digits = []
    for _ in range(length):
        number, digit = divmod(number, 62)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def _checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode()), CHECKSUM_LENGTH)


def assemble_api_key(random_part: str) -> str:
    """The key for a random part: prefix, the part, its checksum."""
    return PREFIX + random_part + _checksum(random_part)


def generate_api_key() -> str:
    """A new key secret: prefix, 190 random bits in base62, checksum."""
    return assemble_api_key("".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH)))


def check_api_key_format(key: object) -> bool:
    """True when ``key`` has our prefix, length, alphabet and a matching checksum."""
    if not isinstance(key, str) or KEY_RE.match(key) is None:
        return False
    random_part = key[len(PREFIX):len(PREFIX) + RANDOM_LENGTH]
    return secrets.compare_digest(_checksum(random_part), key[-CHECKSUM_LENGTH:])


def query_api_key(key: object) -> ApiKey | None:
    """The record of a key secret (whatever its state, detached and read-only), or None;
    malformed keys cost no query."""
    if not check_api_key_format(key):
        return None
    return read_one(ApiKey, "secret_hash", hash_secret(key))


def is_active(record: ApiKey, now: datetime | None = None) -> bool:
    """Enabled and inside its validity window [validFrom, validTo)."""
    now = now or utcnow()
    return record.enabled and record.valid_from <= now < record.valid_to


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


def describe(record: ApiKey) -> dict:
    """The key in the platform's shape (never the secret or its hash)."""
    return {
        "id": record.id,
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
        except (ValueError, TypeError, OverflowError):  # OverflowError: beyond year 1..9999 in UTC
            errors.setdefault(field, []).append("an ISO 8601 timestamp with Z or an offset")
            return None
    if parsed >= LATEST_TIMESTAMP:
        errors.setdefault(field, []).append(f"must be before {isoformat(LATEST_TIMESTAMP)}")
        return None
    return parsed


def _validate_window(valid_from, valid_to, errors: dict, created_at: datetime,
                     now: datetime | None = None) -> None:
    """validFrom not before creation, validTo after validFrom; with ``now`` (a window being
    set), validTo at most MAX_API_KEY_VALIDITY_DAYS from now (policy, SECURITY.md AD04)."""
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
    # Policy: a /0 entry (0.0.0.0/0, ::/0, ::ffff:0:0/96) only hides "any address" in a list
    # that looks restrictive; the empty list is the one way to say it.
    if any(entry.endswith("/0") for entry in allowlist):
        errors.setdefault("allowedIPs", []).append(
            "a /0 range is not allowed: an empty list already allows any address")
        return None
    return allowlist


def create_api_key(*, name: object, scopes: object, actor: str, valid_from: object = None,
                   valid_to: object = None, allowed_ips: object = None,
                   held_scopes: Iterable[str] | None = None) -> tuple[ApiKey, str]:
    """Create a key; returns the record and its secret (shown once, never stored).

    With ``held_scopes`` (the caller's): ``scopes=None`` means the caller's scopes
    (SCOPES.md), and every scope must be covered by them (else ForbiddenError).
    """
    errors: dict[str, list[str]] = {}
    now = utcnow()
    name = validate_name(name, errors)
    if scopes is None and held_scopes is not None:
        scopes = [scope for scope in held_scopes if scope in current_catalogue()]
    names = validate_scopes(scopes if scopes is not None else [], errors, field="scopeGuids")
    if names == []:
        errors.setdefault("scopeGuids", []).append("at least one scope is required")
    start = now if valid_from is None else _parse_time(valid_from, "validFrom", errors)
    end = (start or now) + DEFAULT_VALIDITY if valid_to is None \
        else _parse_time(valid_to, "validTo", errors)
    _validate_window(start, end, errors, now, now)
    allowlist = _validate_allowlist(allowed_ips, errors)
    if errors:
        raise ValidationError(errors)
    validate_grantable(names, held_scopes)
    secret = generate_api_key()
    record = ApiKey(id=secrets.token_hex(16).upper(), name=name, secret_hash=hash_secret(secret),
                    scope=format_scope(names), allowed_ips=allowlist, valid_from=start,
                    valid_to=end, enabled=True, created_by=actor[:200], created_at=now,
                    updated_at=now)
    db.session.add(record)
    audit.record(actor, "create", "api-key", record.id, after=describe(record))
    db.session.commit()
    return record, secret


def get_api_key(key_id: object, for_update: bool = False) -> ApiKey:
    """The key with ``key_id`` (32 uppercase hex); NotFoundError otherwise.

    ``for_update`` locks the row (PostgreSQL) so concurrent changes apply one after another.
    """
    record = None
    if isinstance(key_id, str) and KEY_ID_RE.match(key_id):
        record = db.session.get(ApiKey, key_id, with_for_update=for_update)
    if record is None:
        raise NotFoundError(str(key_id)[:64])
    return record


def list_api_keys(*, name: str | None = None, enabled: bool | None = None,
                  page: int = 0, size: int = 100) -> tuple[list[ApiKey], int]:
    """A page of keys, oldest first, and the total count."""
    query = sa.select(ApiKey)
    if name is not None:
        query = query.where(ApiKey.name == name)
    if enabled is not None:
        query = query.where(ApiKey.enabled == enabled)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    rows = db.session.scalars(query.order_by(ApiKey.created_at, ApiKey.id)
                              .offset(page * size).limit(size)).all()
    return list(rows), total


def update_api_key(key_id: str, *, actor: str, changes: dict,
                   held_scopes: Iterable[str] | None = None) -> ApiKey:
    """Apply platform-shaped ``changes`` (name, scopeGuids, allowedIPs, validFrom, validTo,
    enabled); validated as a whole, audited, committed.

    With ``held_scopes`` (the caller's), the key's current and new scopes must be covered.
    Disabling a key that is already disabled changes and records nothing.
    """
    record = get_api_key(key_id, for_update=True)
    unknown = sorted(set(changes) - set(UPDATABLE))
    if unknown:
        raise ValidationError({field: ["cannot be set"] for field in unknown})
    validate_grantable(parse_scope(record.scope), held_scopes)
    if changes == {"enabled": False} and not record.enabled:
        db.session.commit()
        return record
    before = describe(record)
    errors: dict[str, list[str]] = {}
    values: dict = {}
    names: list[str] | None = []
    if "name" in changes:
        values["name"] = validate_name(changes["name"], errors)
    if "scopeGuids" in changes:
        names = validate_scopes(changes["scopeGuids"] or [], errors, field="scopeGuids")
        values["scope"] = format_scope(names or [])
    if "allowedIPs" in changes:
        values["allowed_ips"] = _validate_allowlist(changes["allowedIPs"], errors)
    start = record.valid_from
    if "validFrom" in changes:
        start = values["valid_from"] = _parse_time(changes["validFrom"], "validFrom", errors)
    end = record.valid_to
    if "validTo" in changes:
        end = values["valid_to"] = _parse_time(changes["validTo"], "validTo", errors)
    if "enabled" in changes and not isinstance(changes["enabled"], bool):
        errors.setdefault("enabled", []).append("must be true or false")
    elif "enabled" in changes:
        # SECURITY.md AK05: revocation is irreversible; issue a new key instead.
        if changes["enabled"] and not record.enabled:
            errors.setdefault("enabled", []).append("a disabled key cannot be enabled again")
        values["enabled"] = changes["enabled"]
    window_set = "validFrom" in changes or "validTo" in changes
    _validate_window(start, end, errors, record.created_at, utcnow() if window_set else None)
    if errors:
        raise ValidationError(errors)
    validate_grantable(names or [], held_scopes)
    for field, value in values.items():
        setattr(record, field, value)
    record.updated_at = utcnow()
    action = "disable" if values.get("enabled") is False and before["enabled"] else "update"
    audit.record(actor, action, "api-key", record.id, before, describe(record))
    db.session.commit()
    return record


def disable_api_key(key_id: str, *, actor: str) -> ApiKey:
    """Disable (revoke) a key; it fails authentication from then on."""
    return update_api_key(key_id, actor=actor, changes={"enabled": False})
