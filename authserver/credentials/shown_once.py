"""Secrets shown once, after a redirect (web UI Post/Redirect/Get).

A form that makes a secret (a new API key, a client secret) keeps it here and redirects; the
page it redirects to takes it, which deletes it, so a reload shows it no more and the secret
never travels in a URL or in the (readable, only signed) session cookie. It waits in the
database with the operator's server-side session (deleted with it), encrypted with the
keyring that protects signing keys, for at most ``KEEP_FOR``.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from authserver.clock import utcnow
from authserver.credentials.keyring import UndecryptableKeyError, current_keyring
from authserver.credentials.operators import session_hash
from authserver.storage.db import db
from authserver.storage.models import ShownOnceSecret

#: A secret not shown within this time is dropped (the redirect takes milliseconds).
KEEP_FOR = timedelta(minutes=10)


def _aad(hashed_session: str, object_type: str, object_id: str) -> str:
    """What the ciphertext is bound to: it opens only for this session and object."""
    return f"shown-once:{hashed_session}:{object_type}:{object_id}"


def keep(session_id: str, object_type: str, object_id: str, secret: str) -> None:
    """Keep ``secret`` for the session's next page about ``object_id``."""
    hashed, now = session_hash(session_id), utcnow()
    db.session.execute(sa.delete(ShownOnceSecret)
                       .where(ShownOnceSecret.created_at <= now - KEEP_FOR))
    blob = current_keyring().encrypt(_aad(hashed, object_type, object_id), secret.encode())
    db.session.add(ShownOnceSecret(session_hash=hashed, object_type=object_type,
                                   object_id=object_id, secret_encrypted=blob, created_at=now))
    db.session.commit()


def take(session_id: str, object_type: str, object_id: str) -> str | None:
    """The secret kept for this session and object, deleted as it is read (None if there is
    none, it expired, or another request took it first)."""
    hashed = session_hash(session_id)
    rows = db.session.scalars(
        sa.select(ShownOnceSecret).where(ShownOnceSecret.session_hash == hashed,
                                         ShownOnceSecret.object_type == object_type,
                                         ShownOnceSecret.object_id == object_id)
        .order_by(ShownOnceSecret.id.desc())).all()
    found = None
    for row in rows:
        # Only the request whose DELETE removed the row shows it: two reloads racing each
        # other cannot both see the secret.
        deleted = db.session.execute(sa.delete(ShownOnceSecret)
                                     .where(ShownOnceSecret.id == row.id)).rowcount
        if deleted and found is None and row.created_at > utcnow() - KEEP_FOR:
            try:
                plain, _ = current_keyring().decrypt(
                    _aad(hashed, object_type, object_id), row.secret_encrypted)
            except UndecryptableKeyError:  # the keyring rolled over in between: gone
                continue
            found = plain.decode()
    db.session.commit()
    return found
