"""One update template for credential records (OAuth clients and API keys).

Both take changes under the admin API's field names (``name``, ``scopes``/``scopeGuids``,
``enabled``, ...), validate them as a whole, refuse to grant what the caller does not hold
(threat model AD04), and write the change and its audit event in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from authserver.accounts import registry as accounts
from authserver.clock import utcnow
from authserver.scopes import ScopeError, current_catalogue, parse_scope
from authserver.storage import audit
from authserver.storage.audit import Actor
from authserver.storage.db import db
from authserver.web.errors import ForbiddenError, ValidationError

#: Granted only inside the platform account, and covered by no umbrella (threat model AC03).
PLATFORM_ONLY_SCOPES = frozenset({"accounts:manage", "resource-servers:manage"})

#: A field's rule: (value, errors, record) -> the value to store; records its own errors.
FieldRule = Callable[[object, dict[str, list[str]], Any], object]


@dataclass(frozen=True)
class Updatable:
    """One updatable field: the model attribute it sets and the rule that checks it."""

    attribute: str
    rule: FieldRule


def validate_scopes(value: object, errors: dict, field: str) -> list[str] | None:
    """Scope names from a space-separated string or a list; each must be in the catalogue."""
    try:
        if isinstance(value, str):
            names = parse_scope(value)
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            names = parse_scope(" ".join(value)) if value else []
        else:
            raise ScopeError("must be a list of scope names")
    except ScopeError as exc:
        errors.setdefault(field, []).append(str(exc))
        return None
    unknown = current_catalogue().validate_names(names)
    if unknown:
        errors.setdefault(field, []).append("unknown scope: " + ", ".join(unknown[:10]))
        return None
    return names


def validate_grantable(names: Iterable[str], held_scopes: Iterable[str] | None) -> None:
    """Raise ForbiddenError unless ``held_scopes`` cover every name (umbrella-aware).

    Threat model AD04: a caller can never grant more than it holds. ``None`` means an
    unrestricted caller (the CLI, run by whoever holds the database).
    """
    if held_scopes is None:
        return
    held = frozenset(held_scopes)
    catalogue = current_catalogue()
    missing = [name for name in names if not catalogue.covers(held, name)]
    if missing:
        raise ForbiddenError("The caller's own scopes do not cover every one of these "
                             "scopes: " + ", ".join(missing), missing_scopes=missing)


def validate_account_scopes(names: Iterable[str] | None, account_id: str, errors: dict,
                            field: str) -> None:
    """Platform-only scopes (``accounts:manage``) only for credentials of the platform account
    (threat model AC03); anything else is a validation error naming the field."""
    refused = sorted(PLATFORM_ONLY_SCOPES.intersection(names or ()))
    if refused and account_id != accounts.platform_account_id():
        errors.setdefault(field, []).append(
            f"{', '.join(refused)} can be granted only in the platform account")


def update_record(record, changes: Mapping[str, object], *, fields: Mapping[str, Updatable],
                  actor: Actor | str, held_scopes: Iterable[str] | None, object_type: str,
                  object_id: str, describe: Callable[[Any], dict],
                  check: Callable[[Any, dict, dict], None] | None = None):
    """Validate ``changes`` as a whole, apply them to ``record``, audit and commit.

    ``check(record, values, errors)`` adds rules across fields (and may set more attributes).
    The record's current scopes and any new ones must be covered by ``held_scopes``. Nothing
    is written on any error, nor when no value differs from the stored one.
    """
    actor = accounts.as_actor(actor)
    unknown = sorted(set(changes) - set(fields))
    if unknown:
        raise ValidationError({name: ["cannot be set"] for name in unknown})
    validate_grantable(parse_scope(record.scope), held_scopes)
    errors: dict[str, list[str]] = {}
    values = {fields[name].attribute: fields[name].rule(value, errors, record)
              for name, value in changes.items()}
    if check is not None:
        check(record, values, errors)
    if errors:
        db.session.rollback()
        raise ValidationError(errors)
    if values.get("scope") is not None:
        validate_grantable(parse_scope(values["scope"]), held_scopes)
    values = {attribute: value for attribute, value in values.items()
              if getattr(record, attribute) != value}
    if not values:  # nothing changes: no write, no audit event (a repeated PUT is a no-op)
        db.session.commit()
        return record
    before = describe(record)
    for attribute, value in values.items():
        setattr(record, attribute, value)
    record.updated_at = utcnow()
    after = describe(record)
    action = "disable" if before.get("enabled") and not after.get("enabled") else "update"
    audit.record(actor, action, object_type, object_id, before, after,
                 account_id=record.account_id)
    db.session.commit()
    return record
