"""The encryption keyring that protects signing keys at rest (threat model JW08).

``ENCRYPTION_KEYS`` lists AES-256-GCM keys: the first encrypts, every one decrypts (a lone
``ENCRYPTION_KEY`` is a ring of one). Ciphertexts carry no key id: AES-GCM's tag tells
whether a key fits, and a ring holds a handful of keys at most, so each is tried in turn.
A rollover adds the new key to every host, makes it first, re-encrypts (``authserver
encryption-key rotate``), then drops the old one: docs/operations.md.
"""

from __future__ import annotations

import base64
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app

from authserver.settings import fingerprint

NONCE_BYTES = 12


class KeyConfigurationError(RuntimeError):
    """The encryption keys or the signing keys are missing or unusable."""


class UndecryptableKeyError(KeyConfigurationError):
    """No key of the ring opens a stored signing key (a key rotated elsewhere, a wrong ring)."""


def generate_encryption_key() -> str:
    """A fresh AES-256-GCM key for the keyring (urlsafe base64)."""
    return base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode()


def configured_keys(config) -> list[str]:
    """The ring's keys as configured: ENCRYPTION_KEYS, else ENCRYPTION_KEY alone."""
    ring = config.get("ENCRYPTION_KEYS") or []
    if isinstance(ring, str):
        ring = [part.strip() for part in ring.split(",") if part.strip()]
    if ring:
        return list(ring)
    single = config.get("ENCRYPTION_KEY")
    return [single] if single else []


def keyring_problems(config) -> list[str]:
    """What is wrong with the configured ring (empty list: nothing)."""
    ring = configured_keys(config)
    if not ring:
        return ["no encryption key: set AUTHSERVER_ENCRYPTION_KEYS (or run `authserver init` "
                "for a local instance)"]
    problems = []
    for position, raw in enumerate(ring, start=1):
        try:
            _aead(raw)
        except KeyConfigurationError as exc:
            problems.append(f"ENCRYPTION_KEYS entry {position}: {exc}")
    if len(set(ring)) != len(ring):
        problems.append("ENCRYPTION_KEYS lists the same key twice")
    single = config.get("ENCRYPTION_KEY")
    if config.get("ENCRYPTION_KEYS") and single and single not in ring:
        problems.append("ENCRYPTION_KEY is set but is not in ENCRYPTION_KEYS: add it to the "
                        "ring (to decrypt what it encrypted) or unset it")
    return problems


def _aead(raw: str) -> AESGCM:
    try:
        key = base64.urlsafe_b64decode(raw.encode() if isinstance(raw, str) else raw)
    except (ValueError, TypeError, AttributeError):
        raise KeyConfigurationError("not urlsafe base64") from None
    if len(key) != 32:
        raise KeyConfigurationError("must decode to 32 bytes (AES-256)")
    return AESGCM(key)


class Keyring:
    """The configured keys as AES-GCM objects; the first encrypts."""

    def __init__(self, raw_keys: list[str]):
        if not raw_keys:
            raise KeyConfigurationError(keyring_problems({})[0])
        self.raw = tuple(raw_keys)
        self.keys = []
        for position, raw in enumerate(raw_keys, start=1):
            try:
                self.keys.append(_aead(raw))
            except KeyConfigurationError as exc:
                raise KeyConfigurationError(f"ENCRYPTION_KEYS entry {position}: {exc}") from None

    def encrypt(self, kid: str, plaintext: bytes) -> bytes:
        """nonce || AES-256-GCM(plaintext) under the first key, bound to ``kid`` (AAD)."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self.keys[0].encrypt(nonce, plaintext, kid.encode())

    def decrypt(self, kid: str, blob: bytes) -> tuple[bytes, int]:
        """The plaintext and the position (0 = first) of the key that opened it."""
        blob = bytes(blob)
        for position, key in enumerate(self.keys):
            try:
                return key.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], kid.encode()), position
            except InvalidTag:
                continue
        raise UndecryptableKeyError(
            f"signing key {kid} cannot be decrypted with any of the {len(self.keys)} "
            f"ENCRYPTION_KEYS configured here ({', '.join(fingerprint(r) for r in self.raw)}): "
            "it was encrypted with a key this host does not have")


def current_keyring() -> Keyring:
    """The current app's ring, built once per configured set of keys."""
    raw = configured_keys(current_app.config)
    cached = current_app.extensions.get("authserver.keyring")
    if cached is None or cached.raw != tuple(raw):
        cached = Keyring(raw)
        current_app.extensions["authserver.keyring"] = cached
    return cached
