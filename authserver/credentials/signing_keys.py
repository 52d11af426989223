"""Signing keys: created in the database, encrypted at rest, rotated, published as a JWKS.

Rotation keeps one ``next`` key published ahead of use, so resource servers already hold
the public key when it starts signing (publish-before-sign, threat model JW03): a rotation
schedules the next key to sign once it has been published for SIGNING_KEY_PUBLISH_DELAY
seconds, and the current key signs until then. A retired key stays published until the
last token it signed has expired (JW04). Which key signs is decided by time
(``activated_at <= now < retired_at``), so every process agrees without coordination.
Private keys are parsed once per process and cached by ``kid`` (parsing a PEM per token
is ~100x slower).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from flask import current_app
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from authserver.clock import utcnow
from authserver.credentials.keyring import (  # noqa: F401 (re-exported for callers)
    KeyConfigurationError,
    UndecryptableKeyError,
    current_keyring,
    generate_encryption_key,
)
from authserver.storage.db import db
from authserver.storage.models import SigningKey

ALGORITHMS = ("RS256", "ES256", "EdDSA")
NEXT, ACTIVE, RETIRED = "next", "active", "retired"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})


@dataclass(frozen=True)
class LoadedKey:
    """A signing key parsed into a key object, ready to sign."""

    kid: str
    alg: str
    private_key: object


def encrypt_private_key(kid: str, pem: bytes) -> bytes:
    """Encrypt a private PEM under the keyring's first key, binding it to its ``kid``."""
    return current_keyring().encrypt(kid, pem)


def decrypt_private_key(kid: str, blob: bytes) -> bytes:
    """Decrypt what ``encrypt_private_key`` produced, with any key of the ring
    (UndecryptableKeyError when none opens it)."""
    return current_keyring().decrypt(kid, blob)[0]


def reencrypt_signing_keys() -> tuple[int, int]:
    """Re-encrypt every stored signing key under the ring's first key, in one transaction.

    Returns (keys rewritten, keys already under the first key). Nothing is written unless
    every key decrypts: a ring that misses a key changes nothing.
    """
    ring = current_keyring()
    _lock_keys()
    rows = db.session.scalars(sa.select(SigningKey).order_by(SigningKey.created_at)).all()
    opened = []
    try:
        for row in rows:
            opened.append((row, *ring.decrypt(row.kid, row.private_key_encrypted)))
    except KeyConfigurationError:
        db.session.rollback()
        raise
    rewritten = 0
    for row, pem, position in opened:
        if position != 0:
            row.private_key_encrypted = ring.encrypt(row.kid, pem)
            rewritten += 1
    db.session.commit()
    return rewritten, len(opened) - rewritten


def _new_private_key(alg: str):
    if alg == "RS256":
        # 2048 bits (RFC 7518 §3.3 minimum, NIST through 2030): signing cost is what caps
        # the token endpoint, and 3072 bits costs about three times as much per token.
        return rsa.generate_private_key(public_exponent=65537,
                                        key_size=current_app.config["RSA_KEY_SIZE"])
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unsupported signing algorithm {alg!r}; choose one of {ALGORITHMS}")


def public_jwk(private_key, kid: str, alg: str) -> dict:
    """The public JWK of a key, with ``kid``, ``alg`` and ``use``."""
    public = private_key.public_key()
    if alg == "RS256":
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif alg == "ES256":
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    # RFC 7517 §4.3: "use" and "key_ops" SHOULD NOT be used together; we publish "use".
    return {name: value for name, value in jwk.items()
            if name not in PRIVATE_JWK_MEMBERS and name != "key_ops"}


def create_signing_key(alg: str | None = None, state: str = NEXT) -> SigningKey:
    """Create a key in ``state`` and add it to the session (the caller commits)."""
    alg = alg or current_app.config["SIGNING_ALG"]
    private_key = _new_private_key(alg)
    kid = secrets.token_urlsafe(16)
    pem = private_key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    now = utcnow()
    key = SigningKey(kid=kid, alg=alg, state=state, public_jwk=public_jwk(private_key, kid, alg),
                     private_key_encrypted=encrypt_private_key(kid, pem), created_at=now,
                     activated_at=now if state == ACTIVE else None)
    db.session.add(key)
    return key


def retention() -> timedelta:
    """How long a retired key stays published: the longest token lifetime plus leeway."""
    config = current_app.config
    return timedelta(seconds=config["MAX_ACCESS_TOKEN_TTL"] + config["LEEWAY"])


def _lock_keys() -> None:
    """Serialise rotations across processes: PostgreSQL's advisory lock, or SQLite's write
    lock taken by a no-op write before anything is read (waiters honour busy_timeout)."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(sa.text("SELECT pg_advisory_xact_lock(7342001)"))
    else:
        db.session.execute(sa.text("UPDATE signing_keys SET state = state WHERE 1 = 0"))


def ensure_signing_keys(alg: str | None = None) -> bool:
    """Create an active and a next key when there is no active key; True if it created any.

    The first key has no predecessor, so it is in force from the start of time: a server
    whose clock runs behind the one that ran ``init`` still has a key to sign with.
    """
    _lock_keys()
    if db.session.scalar(sa.select(SigningKey).where(SigningKey.state == ACTIVE)) is not None:
        db.session.commit()
        return False
    first = create_signing_key(alg, state=ACTIVE)
    first.activated_at = EPOCH
    create_signing_key(alg, state=NEXT)
    db.session.commit()
    return True


def rotate_signing_keys(alg: str | None = None, immediately: bool = False) -> SigningKey:
    """Schedule the published ``next`` key to sign, retire the current one, publish a new next.

    The key scheduled to sign uses ``alg`` (default SIGNING_ALG): a published next key of
    another algorithm never signed, so it is withdrawn and a new one published instead.
    The next key signs from ``created_at + SIGNING_KEY_PUBLISH_DELAY`` (or now, if it has
    been published that long); until then the current key keeps signing. ``immediately``
    skips the wait (key compromise): resource servers that have not refetched the JWKS
    refuse new tokens until they do. Returns the newly scheduled key. Concurrent rotations
    are serialised, so exactly one key is in state ``active``.
    """
    alg = alg or current_app.config["SIGNING_ALG"]
    _lock_keys()
    now = utcnow()
    delay = timedelta(seconds=0 if immediately
                      else current_app.config["SIGNING_KEY_PUBLISH_DELAY"])
    keys = db.session.scalars(sa.select(SigningKey).where(SigningKey.state.in_((NEXT, ACTIVE)))
                              .order_by(SigningKey.created_at)).all()
    upcoming = next((key for key in keys if key.state == NEXT), None)
    if upcoming is not None and upcoming.alg != alg:
        upcoming.state, upcoming.retired_at, upcoming.publish_until = RETIRED, now, now
        upcoming = None
    if upcoming is None:
        upcoming = create_signing_key(alg, state=NEXT)
    starts = max(now, upcoming.created_at + delay)
    for key in keys:
        if key.state == ACTIVE:
            key.state = RETIRED
            if key.retired_at is None or key.retired_at > starts:
                key.retired_at = starts
            key.publish_until = key.retired_at + retention()
    upcoming.state, upcoming.activated_at = ACTIVE, starts
    create_signing_key(alg, state=NEXT)
    db.session.commit()
    _active_cache().clear()
    return upcoming


def key_in_force_state() -> SigningKey | None:
    """The key in state ``active`` (it signs now, or from its ``activated_at``)."""
    return db.session.scalar(sa.select(SigningKey).where(SigningKey.state == ACTIVE))


def published_keys() -> list[SigningKey]:
    """Keys in the JWKS: next, active, and retired ones still inside their retention."""
    now = utcnow()
    return db.session.scalars(
        sa.select(SigningKey)
        .where(sa.or_(SigningKey.state.in_((NEXT, ACTIVE)), SigningKey.publish_until > now))
        .order_by(SigningKey.created_at)
    ).all()


def jwks() -> dict:
    """The public JWK Set (RFC 7517 §5): public members only (threat model JW01)."""
    return {"keys": [dict(key.public_jwk) for key in published_keys()]}


def list_signing_keys() -> list[SigningKey]:
    """All keys, newest first (for the CLI)."""
    return db.session.scalars(sa.select(SigningKey).order_by(SigningKey.created_at.desc())).all()


def key_in_force() -> SigningKey | None:
    """The row of the key that signs now (``activated_at <= now < retired_at``)."""
    now = utcnow()
    return db.session.scalar(
        sa.select(SigningKey)
        .where(SigningKey.activated_at <= now,
               sa.or_(SigningKey.retired_at.is_(None), SigningKey.retired_at > now))
        .order_by(SigningKey.activated_at.desc()).limit(1))


def check_signing_key() -> str:
    """Decrypt the key in force from its stored row (not from this process's cache, which
    may hold a key that was re-encrypted elsewhere since); return its kid or raise
    KeyConfigurationError naming the cause."""
    row = key_in_force()
    if row is None:
        raise KeyConfigurationError("no signing key in force: run `authserver init`")
    decrypt_private_key(row.kid, row.private_key_encrypted)
    return row.kid


class _ActiveKeyCache:
    """Per-process cache: parsed key objects by ``kid``, plus the active kid for a few seconds."""

    def __init__(self):
        self._lock = threading.Lock()
        self._parsed: dict[str, LoadedKey] = {}
        self._active: tuple[str, float] | None = None

    def clear(self) -> None:
        with self._lock:
            self._active = None

    def get(self) -> LoadedKey:
        ttl = current_app.config["SIGNING_KEY_CACHE_SECONDS"]
        with self._lock:
            active = self._active
        if active is not None and time.monotonic() - active[1] < ttl and active[0] in self._parsed:
            return self._parsed[active[0]]
        row = key_in_force()
        if row is None:
            raise KeyConfigurationError("no signing key in force: run `authserver init`")
        loaded = self._parsed.get(row.kid)
        if loaded is None:
            pem = decrypt_private_key(row.kid, row.private_key_encrypted)
            loaded = LoadedKey(row.kid, row.alg, serialization.load_pem_private_key(pem, None))
        with self._lock:
            self._parsed[row.kid] = loaded
            self._active = (row.kid, time.monotonic())
        return loaded


def _active_cache() -> _ActiveKeyCache:
    """This app's cache (one per app, so test apps on different databases never mix)."""
    return current_app.extensions.setdefault("authserver.signing_keys", _ActiveKeyCache())


def active_signing_key() -> LoadedKey:
    """The key to sign with now, parsed once and cached by ``kid``."""
    return _active_cache().get()


def describe(key: SigningKey) -> dict:
    """A JSON-ready summary of a key (never its private part)."""
    from authserver.clock import isoformat

    return {"kid": key.kid, "alg": key.alg, "state": key.state,
            "createdAt": isoformat(key.created_at), "signsFrom": isoformat(key.activated_at),
            "retiredAt": isoformat(key.retired_at), "publishUntil": isoformat(key.publish_until)}
