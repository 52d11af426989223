"""The audit trail: one row per change, added to the same transaction as the change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from authserver.clock import isoformat, utcnow
from authserver.storage.db import db, ordering, paginate
from authserver.storage.models import AuditEvent


@dataclass(frozen=True)
class Actor:
    """Who makes a change: the trail's name for it and the account it acts from."""

    name: str
    account_id: str

    def __str__(self) -> str:
        return self.name


def record(actor: Actor, action: str, object_type: str, object_id: str,
           before: dict | None = None, after: dict | None = None, *,
           account_id: str) -> AuditEvent:
    """Add an audit event for a change to a record of ``account_id``; the caller's commit
    writes both or neither.

    ``before``/``after`` hold non-secret fields only; only fields that changed are kept.
    """
    before, after = before or {}, after or {}
    changed = {name: {"before": before.get(name), "after": after.get(name)}
               for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name)}
    event = AuditEvent(occurred_at=utcnow(), actor=actor.name[:200], action=action,
                       object_type=object_type, object_id=object_id, changes=changed,
                       account_id=account_id, actor_account_id=actor.account_id)
    db.session.add(event)
    return event


def query_events(*, account_id: str | None = None, since: datetime | None = None,
                 until: datetime | None = None, actor: str | None = None,
                 object_id: str | None = None, object_type: str | None = None, page: int = 0,
                 size: int = 100, descending: bool = True) -> tuple[list[AuditEvent], int]:
    """A page of events, newest first (oldest first unless ``descending``), and the total
    count; ``since`` inclusive, ``until`` not.

    With ``account_id``: the events about that account's records, and those its own
    callers caused (in other accounts, which only the platform account can act in).
    """
    query = sa.select(AuditEvent)
    if account_id is not None:
        query = query.where(sa.or_(AuditEvent.account_id == account_id,
                                   AuditEvent.actor_account_id == account_id))
    if since is not None:
        query = query.where(AuditEvent.occurred_at >= since)
    if until is not None:
        query = query.where(AuditEvent.occurred_at < until)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if object_id is not None:
        query = query.where(AuditEvent.object_id == object_id)
    if object_type is not None:
        query = query.where(AuditEvent.object_type == object_type)
    return paginate(query, *ordering((AuditEvent.occurred_at, AuditEvent.id), descending),
                    page=page, size=size)


#: Field names that events written before the one-casing change (CHANGELOG.md) used, and
#: the camelCase names every surface uses now; old rows are shown under the new names.
LEGACY_FIELDS = {"client_id": "clientId", "account_id": "accountId", "scope": "scopes", "token_ttl": "tokenTtl",
                 "auth_method": "authMethod", "created_at": "createdAt",
                 "updated_at": "updatedAt", "jwks_kids": "jwksKids",
                 "secret_rotated_at": "secretRotatedAt", "grace_seconds": "gracePeriod",
                 "dpop_bound_access_tokens": "dpopBoundAccessTokens"}


def _changes(changes: dict | None) -> dict:
    renamed = {}
    for name, change in (changes or {}).items():
        if name == "scope":  # a space-separated string then, a list now
            change = {side: value.split() if isinstance(value, str) else value
                      for side, value in change.items()}
        renamed[LEGACY_FIELDS.get(name, name)] = change
    return renamed


def describe(event: AuditEvent) -> dict:
    """The event as the admin API, the CLI and the web UI show it (camelCase field names;
    its changes never hold secrets)."""
    return {"id": event.id, "occurredAt": isoformat(event.occurred_at), "actor": event.actor,
            "actorAccountId": event.actor_account_id, "accountId": event.account_id,
            "action": event.action, "objectType": event.object_type,
            "objectId": event.object_id, "changes": _changes(event.changes)}
