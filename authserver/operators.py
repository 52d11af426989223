"""Operator accounts and their server-side web UI sessions.

Passwords of people are guessable, unlike generated secrets, so they are hashed with
Argon2id (OWASP's minimum profile: 19 MiB, 2 passes, 1 lane) and checked in constant time.
Signing in with an unknown username costs the same hash verification as a wrong password.

A session is a random identifier held by the browser; the database keeps only its SHA-256
with the operator, the sign-in time and the time of the last request. Sign-out deletes the
row, so a copied or replayed cookie is dead; idle and absolute timeouts are checked here.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

from . import audit
from .clock import isoformat, utcnow
from .db import db
from .errors import NotFoundError, ValidationError
from .models import Operator, OperatorSession

USERNAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._@-]{0,62}[a-z0-9])?$")
PASSWORD_MIN, PASSWORD_MAX = 12, 256
OBJECT_TYPE = "operator"

password_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
#: Verified instead of a real hash when the username is unknown (same parameters, so the
#: same cost); nobody knows its password and the answer is "no" whatever it is.
DUMMY_HASH = ("$argon2id$v=19$m=19456,t=2,p=1$GUheOMpXShkXJk0t7gDwiQ"
              "$wTXVGHW/8gXKujmsfuNaIUQNONtQBRU3I2spBtZtyWk")


# --- accounts ------------------------------------------------------------------------------

def normalize_username(username: object) -> str:
    """Usernames are case-insensitive: compare and store them lower-cased and stripped."""
    return username.strip().lower() if isinstance(username, str) else ""


def hash_password(password: str) -> str:
    """An Argon2id hash (salt and parameters included) of ``password``."""
    return password_hasher.hash(password)


def check_password(password: object, password_hash: str) -> bool:
    """Constant-time check of ``password`` against an Argon2 hash."""
    if not isinstance(password, str) or len(password) > PASSWORD_MAX:
        password = ""
    try:
        return password_hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def validate_password(password: object, errors: dict) -> str | None:
    """A password of PASSWORD_MIN to PASSWORD_MAX characters."""
    if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        errors.setdefault("password", []).append(
            f"from {PASSWORD_MIN} to {PASSWORD_MAX} characters")
        return None
    return password


def describe(operator: Operator) -> dict:
    """The account's non-secret fields."""
    return {"username": operator.username, "enabled": operator.enabled,
            "created_at": isoformat(operator.created_at)}


def query_operator(username: object) -> Operator | None:
    """The operator called ``username`` (case-insensitive), or None."""
    name = normalize_username(username)
    if not USERNAME_RE.match(name):
        return None
    return db.session.scalar(sa.select(Operator).where(Operator.username == name))


def get_operator(username: object) -> Operator:
    """The operator called ``username``; NotFoundError otherwise."""
    operator = query_operator(username)
    if operator is None:
        raise NotFoundError(str(username)[:64])
    return operator


def create_operator(*, username: object, password: object, actor: str) -> Operator:
    """Create an enabled operator account; audited."""
    errors: dict[str, list[str]] = {}
    name = normalize_username(username)
    if not USERNAME_RE.match(name):
        errors.setdefault("username", []).append(
            "1-64 characters: letters, digits and . _ @ - (not at either end)")
    elif query_operator(name) is not None:
        errors.setdefault("username", []).append("is already taken")
    password = validate_password(password, errors)
    if errors:
        raise ValidationError(errors)
    operator = Operator(username=name, password_hash=hash_password(password), enabled=True,
                        created_at=utcnow())
    db.session.add(operator)
    audit.record(actor, "create", OBJECT_TYPE, name, after=describe(operator))
    db.session.commit()
    return operator


def list_operators() -> list[Operator]:
    """Every operator account, by username."""
    return list(db.session.scalars(sa.select(Operator).order_by(Operator.username)))


def set_enabled(username: object, enabled: bool, *, actor: str) -> Operator:
    """Enable or disable an account; disabling also ends its sessions. Audited."""
    operator = get_operator(username)
    before = describe(operator)
    operator.enabled = enabled
    if not enabled:
        db.session.execute(sa.delete(OperatorSession)
                           .where(OperatorSession.operator_id == operator.id))
    action = "update" if before["enabled"] == enabled else ("enable" if enabled else "disable")
    audit.record(actor, action, OBJECT_TYPE, operator.username, before, describe(operator))
    db.session.commit()
    return operator


def authenticate(username: object, password: object) -> Operator | None:
    """The enabled operator with this username and password, or None.

    Unknown, disabled and wrong-password attempts all verify one Argon2 hash, so the
    answer time does not tell which usernames exist (SECURITY.md UI09).
    """
    operator = query_operator(username)
    valid = check_password(password, operator.password_hash if operator else DUMMY_HASH)
    if operator is None or not valid or not operator.enabled:
        return None
    return operator


# --- sessions -------------------------------------------------------------------------------

def _session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


def _limits() -> tuple[timedelta, timedelta]:
    config = current_app.config
    return (timedelta(seconds=config["UI_IDLE_TIMEOUT"]),
            timedelta(seconds=config["UI_SESSION_LIFETIME"]))


def start_session(operator: Operator) -> str:
    """Open a session for ``operator``; returns its identifier (only the hash is stored)."""
    now = utcnow()
    idle, lifetime = _limits()
    # Housekeeping: sessions past either timeout can never be resumed.
    db.session.execute(sa.delete(OperatorSession).where(sa.or_(
        OperatorSession.last_seen_at <= now - idle, OperatorSession.created_at <= now - lifetime)))
    session_id = secrets.token_urlsafe(32)
    db.session.add(OperatorSession(id_hash=_session_hash(session_id), operator_id=operator.id,
                                   created_at=now, last_seen_at=now))
    db.session.commit()
    return session_id


def resume_session(session_id: object) -> Operator | None:
    """The operator of a live session (and mark it used), or None.

    A session past its idle or absolute timeout, or of a disabled operator, is deleted.
    """
    if not isinstance(session_id, str) or not 0 < len(session_id) <= 128:
        return None
    row = db.session.get(OperatorSession, _session_hash(session_id))
    if row is None:
        return None
    now = utcnow()
    idle, lifetime = _limits()
    operator = db.session.get(Operator, row.operator_id)
    if (now - row.last_seen_at >= idle or now - row.created_at >= lifetime
            or operator is None or not operator.enabled):
        db.session.delete(row)
        db.session.commit()
        return None
    row.last_seen_at = now
    db.session.commit()
    return operator


def end_session(session_id: object) -> None:
    """Delete a session: its cookie no longer signs anybody in."""
    if isinstance(session_id, str) and session_id:
        db.session.execute(sa.delete(OperatorSession)
                           .where(OperatorSession.id_hash == _session_hash(session_id)))
        db.session.commit()
