"""Hashing of generated secrets: a fast hash, compared in constant time.

Generated secrets carry 256 (client) or 160+ (API key) random bits, so a salted slow KDF
adds nothing against guessing and would cap the token endpoint at a few requests a second.
People's passwords are a different matter: see ``operators`` (scrypt).
"""

from __future__ import annotations

import hashlib
import hmac


def hash_secret(secret: str) -> str:
    """SHA-256 hex digest of a generated secret."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def check_secret(secret: str, expected_hash: str | None) -> bool:
    """Constant-time check of ``secret`` against a stored hash."""
    if not expected_hash or not isinstance(secret, str):
        return False
    return hmac.compare_digest(hash_secret(secret), expected_hash)
