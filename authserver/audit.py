"""The audit trail: one row per change, added to the same transaction as the change."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from .clock import isoformat, utcnow
from .db import db
from .models import AuditEvent


def record(actor: str, action: str, object_type: str, object_id: str,
           before: dict | None = None, after: dict | None = None) -> AuditEvent:
    """Add an audit event for a change; the caller's commit writes both or neither.

    ``before``/``after`` hold non-secret fields only; only fields that changed are kept.
    """
    before, after = before or {}, after or {}
    changed = {name: {"before": before.get(name), "after": after.get(name)}
               for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name)}
    event = AuditEvent(occurred_at=utcnow(), actor=actor[:200], action=action,
                       object_type=object_type, object_id=object_id, changes=changed)
    db.session.add(event)
    return event


def query_events(*, since: datetime | None = None, until: datetime | None = None,
                 actor: str | None = None, object_id: str | None = None,
                 object_type: str | None = None, page: int = 0,
                 size: int = 100) -> tuple[list[AuditEvent], int]:
    """A page of events, newest first, and the total count; ``since`` inclusive, ``until`` not."""
    query = sa.select(AuditEvent)
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
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    rows = db.session.scalars(query.order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
                              .offset(page * size).limit(size)).all()
    return list(rows), total


def describe(event: AuditEvent) -> dict:
    """The event as the admin API shows it (its changes never hold secrets)."""
    return {"id": event.id, "occurredAt": isoformat(event.occurred_at), "actor": event.actor,
            "action": event.action, "objectType": event.object_type,
            "objectId": event.object_id, "changes": event.changes or {}}
