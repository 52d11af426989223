"""Operator accounts and their server-side web UI sessions.

Passwords of people are guessable, unlike generated secrets, so they are hashed with
Argon2id (OWASP's minimum profile: 19 MiB, 2 passes, 1 lane) and checked in constant time.
Signing in with an unknown username costs the same hash verification as a wrong password.

Each operator has a role within their account: an ``owner`` manages the account's operators
(and everything an admin does), an ``admin`` manages credentials, a ``viewer`` only reads.
An account never loses its last enabled owner through a role change or a disable.

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

from authserver.accounts import registry as accounts
from authserver.clock import isoformat, utcnow
from authserver.storage import audit
from authserver.storage.audit import Actor
from authserver.storage.db import db
from authserver.storage.models import Account, Operator, OperatorSession
from authserver.web.errors import NotFoundError, ValidationError

USERNAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._@-]{0,62}[a-z0-9])?$")
PASSWORD_MIN, PASSWORD_MAX = 12, 256
OBJECT_TYPE = "operator"
OWNER, ADMIN, VIEWER = "owner", "admin", "viewer"
ROLES = (OWNER, ADMIN, VIEWER)
#: What each role may do: read pages, change credentials, manage the account's operators.
READ, CREDENTIALS, OPERATORS = "read", "credentials", "operators"
PERMISSIONS = {OWNER: frozenset({READ, CREDENTIALS, OPERATORS}),
               ADMIN: frozenset({READ, CREDENTIALS}),
               VIEWER: frozenset({READ})}
#: Characters of a generated temporary password (no look-alikes: read off a screen and typed).
TEMPORARY_ALPHABET = "abcdefghijkmnpqrstuvwxyzACDEFGHJKLMNPQRTUVWXY345679"
TEMPORARY_LENGTH = 20  # about 113 bits
HANDLE_LENGTH = 16
HANDLE_RE = re.compile(rf"^[0-9a-f]{{{HANDLE_LENGTH}}}$")

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
    """The operator's non-secret fields."""
    return {"username": operator.username, "accountId": operator.account_id,
            "role": operator.role, "enabled": operator.enabled,
            "twoFactor": operator.totp_confirmed_at is not None,
            "mustChangePassword": bool(operator.must_change_password),
            "passwordChangedAt": isoformat(operator.password_changed_at)
            if operator.password_changed_at else None,
            "createdAt": isoformat(operator.created_at)}


def has_permission(operator: Operator, permission: str) -> bool:
    """True when ``operator``'s role grants ``permission`` (READ, CREDENTIALS, OPERATORS)."""
    return permission in PERMISSIONS.get(operator.role, frozenset())


def validate_role(role: object, errors: dict) -> str | None:
    """One of ROLES."""
    if role not in ROLES:
        errors.setdefault("role", []).append(f"one of {', '.join(ROLES)}")
        return None
    return role


def generate_temporary_password() -> str:
    """A random one-time password for a new or reset operator (changed at first sign-in)."""
    return "".join(secrets.choice(TEMPORARY_ALPHABET) for _ in range(TEMPORARY_LENGTH))


def query_operator(username: object) -> Operator | None:
    """The operator called ``username`` (case-insensitive), or None."""
    name = normalize_username(username)
    if not USERNAME_RE.match(name):
        return None
    return db.session.scalar(sa.select(Operator).where(Operator.username == name))


def get_operator(username: object, account_id: str | None = None) -> Operator:
    """The operator called ``username`` (of ``account_id``, when given); NotFoundError
    otherwise: another account's operator answers like one that does not exist."""
    operator = query_operator(username)
    if operator is None or (account_id is not None and operator.account_id != account_id):
        raise NotFoundError(str(username)[:64])
    return operator


def create_operator(*, username: object, password: object, actor: Actor | str,
                    account_id: str | None = None, role: object = None,
                    must_change_password: bool = False) -> Operator:
    """Create an enabled operator of ``account_id`` (default: the platform account); audited.

    Usernames are unique across accounts: signing in names no account. Without a ``role``
    the account's first operator is its owner and later ones are admins.
    """
    account_id = accounts.resolve_account(account_id)
    actor = accounts.as_actor(actor)
    errors: dict[str, list[str]] = {}
    name = normalize_username(username)
    if not USERNAME_RE.match(name):
        errors.setdefault("username", []).append(
            "1-64 characters: letters, digits and . _ @ - (not at either end)")
    elif query_operator(name) is not None:
        errors.setdefault("username", []).append("is already taken")
    password = validate_password(password, errors)
    if role is None:
        first = db.session.scalar(sa.select(sa.func.count()).select_from(Operator)
                                  .where(Operator.account_id == account_id)) == 0
        role = OWNER if first else ADMIN
    role = validate_role(role, errors)
    if errors:
        raise ValidationError(errors)
    operator = Operator(username=name, account_id=account_id, role=role,
                        password_hash=hash_password(password), enabled=True, created_at=utcnow(),
                        must_change_password=must_change_password)
    db.session.add(operator)
    audit.record(actor, "create", OBJECT_TYPE, name, after=describe(operator),
                 account_id=account_id)
    db.session.commit()
    return operator


def _validate_keeps_an_owner(operator: Operator, field: str) -> None:
    """Refuse a change that would leave ``operator``'s account without an enabled owner.

    The account's owners are locked (PostgreSQL) so two owners demoting each other at the
    same moment cannot both succeed.
    """
    owners = db.session.scalars(
        sa.select(Operator.id).where(Operator.account_id == operator.account_id,
                                     Operator.role == OWNER, Operator.enabled.is_(True))
        .with_for_update()).all()
    if set(owners) <= {operator.id}:
        raise ValidationError({field: ["the account's last owner cannot be demoted or "
                                       "disabled: make another operator an owner first"]})


def set_role(username: object, role: object, *, actor: Actor | str,
             account_id: str | None = None) -> Operator:
    """Give an operator another role; the last enabled owner keeps theirs. Audited."""
    actor = accounts.as_actor(actor)
    operator = get_operator(username, account_id)
    errors: dict[str, list[str]] = {}
    role = validate_role(role, errors)
    if errors:
        raise ValidationError(errors)
    if operator.role == OWNER and role != OWNER and operator.enabled:
        _validate_keeps_an_owner(operator, "role")
    before = describe(operator)
    operator.role = role
    audit.record(actor, "set-role", OBJECT_TYPE, operator.username, before, describe(operator),
                 account_id=operator.account_id)
    db.session.commit()
    return operator


def _end_sessions(operator: Operator, keep: str | None = None) -> int:
    """Delete ``operator``'s sessions (except the one with id ``keep``); how many ended."""
    query = sa.delete(OperatorSession).where(OperatorSession.operator_id == operator.id)
    if keep:
        query = query.where(OperatorSession.id_hash != _session_hash(keep))
    return db.session.execute(query).rowcount or 0


def change_password(operator: Operator, *, current: object, new: object,
                    session_id: str | None) -> int:
    """The operator's own change: ``current`` must be right, ``new`` valid and different.

    Every other session of the operator ends (the one with ``session_id`` stays); returns
    how many ended. Audited. ValidationError names the field at fault.
    """
    errors: dict[str, list[str]] = {}
    if not check_password(current, operator.password_hash):
        errors.setdefault("currentPassword", []).append("is not your current password")
    new = validate_password(new, errors)
    if new is not None and not errors and check_password(new, operator.password_hash):
        errors.setdefault("password", []).append("must differ from the current password")
    if errors:
        raise ValidationError(errors)
    before = describe(operator)
    operator.password_hash = hash_password(new)
    operator.must_change_password = False
    operator.password_changed_at = utcnow()
    ended = _end_sessions(operator, keep=session_id)
    audit.record(Actor(f"operator:{operator.username}", operator.account_id), "change-password",
                 OBJECT_TYPE, operator.username, before,
                 dict(describe(operator), sessionsEnded=ended), account_id=operator.account_id)
    db.session.commit()
    return ended


def reset_password(username: object, *, actor: Actor | str, password: object = None,
                   account_id: str | None = None) -> tuple[Operator, str]:
    """Give an operator a temporary password (``password``, or a generated one) that must be
    changed at the next sign-in, and end their sessions. Audited; returns the password."""
    actor = accounts.as_actor(actor)
    operator = get_operator(username, account_id)
    errors: dict[str, list[str]] = {}
    password = generate_temporary_password() if password is None \
        else validate_password(password, errors)
    if errors:
        raise ValidationError(errors)
    before = describe(operator)
    operator.password_hash = hash_password(password)
    operator.must_change_password = True
    operator.password_changed_at = utcnow()
    ended = _end_sessions(operator)
    audit.record(actor, "reset-password", OBJECT_TYPE, operator.username, before,
                 dict(describe(operator), sessionsEnded=ended), account_id=operator.account_id)
    db.session.commit()
    return operator, password


def list_operators(account_id: str | None = None) -> list[Operator]:
    """Every operator (of ``account_id``, or of all accounts), by username."""
    query = sa.select(Operator).order_by(Operator.username)
    if account_id is not None:
        query = query.where(Operator.account_id == account_id)
    return list(db.session.scalars(query))


def set_enabled(username: object, enabled: bool, *, actor: Actor | str,
                account_id: str | None = None) -> Operator:
    """Enable or disable an operator; disabling also ends its sessions, and is refused for
    the account's last enabled owner. Audited."""
    actor = accounts.as_actor(actor)
    operator = get_operator(username, account_id)
    if not enabled and operator.enabled and operator.role == OWNER:
        _validate_keeps_an_owner(operator, "enabled")
    before = describe(operator)
    operator.enabled = enabled
    if not enabled:
        _end_sessions(operator)
    action = "update" if before["enabled"] == enabled else ("enable" if enabled else "disable")
    audit.record(actor, action, OBJECT_TYPE, operator.username, before, describe(operator),
                 account_id=operator.account_id)
    db.session.commit()
    return operator


def authenticate(username: object, password: object) -> Operator | None:
    """The enabled operator of an enabled account with this username and password, or None.

    Unknown, disabled and wrong-password attempts all verify one Argon2 hash, so the
    answer time does not tell which usernames exist (threat model UI09).
    """
    operator = query_operator(username)
    valid = check_password(password, operator.password_hash if operator else DUMMY_HASH)
    if operator is None or not valid or not operator.enabled or not _account_enabled(operator):
        return None
    return operator


def record_throttled_sign_in(username: object, address: str) -> None:
    """Audit that sign-in for an existing operator was throttled from ``address``
    (threat model AV04); called once per exhausted window, so the trail stays bounded."""
    operator = query_operator(username)
    if operator is None:
        return
    actor = Actor(name=f"address:{address}"[:200], account_id=operator.account_id)
    audit.record(actor, "sign-in-throttled", OBJECT_TYPE, operator.username,
                 after={"address": address}, account_id=operator.account_id)
    db.session.commit()


def _account_enabled(operator: Operator) -> bool:
    account = db.session.get(Account, operator.account_id)
    return account is not None and account.enabled


# --- sessions -------------------------------------------------------------------------------

def _session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


def session_hash(session_id: str) -> str:
    """What the database keeps of a session identifier (its SHA-256): the key of anything
    stored with the session (``credentials.shown_once``)."""
    return _session_hash(session_id)


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
            or operator is None or not operator.enabled or not _account_enabled(operator)):
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


def session_handle(row: OperatorSession) -> str:
    """How pages name a session: the start of its hash (never the identifier itself)."""
    return row.id_hash[:HANDLE_LENGTH]


def list_sessions(operator: Operator, current: object = None) -> list[dict]:
    """The operator's live sessions, newest first; the one with id ``current`` is marked."""
    now = utcnow()
    idle, lifetime = _limits()
    current_hash = _session_hash(current) if isinstance(current, str) and current else None
    rows = db.session.scalars(
        sa.select(OperatorSession).where(OperatorSession.operator_id == operator.id,
                                         OperatorSession.last_seen_at > now - idle,
                                         OperatorSession.created_at > now - lifetime)
        .order_by(OperatorSession.created_at.desc(), OperatorSession.id_hash))
    return [{"id": session_handle(row), "createdAt": isoformat(row.created_at),
             "lastSeenAt": isoformat(row.last_seen_at), "current": row.id_hash == current_hash}
            for row in rows]


def end_operator_session(operator: Operator, handle: object) -> bool:
    """End one of ``operator``'s own sessions by its handle; False if there is no such
    session (another operator's sessions are never found). Audited."""
    if not isinstance(handle, str) or not HANDLE_RE.fullmatch(handle):
        return False
    row = db.session.scalar(
        sa.select(OperatorSession).where(OperatorSession.operator_id == operator.id,
                                         OperatorSession.id_hash.startswith(handle)))
    if row is None:
        return False
    db.session.delete(row)
    audit.record(Actor(f"operator:{operator.username}", operator.account_id), "end-session",
                 OBJECT_TYPE, operator.username,
                 before={"session": handle, "createdAt": isoformat(row.created_at)},
                 account_id=operator.account_id)
    db.session.commit()
    return True
