"""The audit trail: one row per change, added to the same transaction as the change."""

from __future__ import annotations

from .clock import utcnow
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
