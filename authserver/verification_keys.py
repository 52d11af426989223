"""Public keys for checking our own tokens (introspection, revocation), cached per process.

The published set is re-read from the database at most every SIGNING_KEY_CACHE_SECONDS,
and at once (at most once a second) when a token names a ``kid`` we do not hold yet.
"""

from __future__ import annotations

import threading
import time

import jwt
from flask import current_app

from .keys import published_keys

UNKNOWN_KID_COOLDOWN = 1.0


class VerificationKeys:
    """kid -> public key object, for one app."""

    def __init__(self):
        self._lock = threading.Lock()
        self._keys: dict[str, object] = {}
        self._loaded_at = float("-inf")

    def _reload(self) -> None:
        loaded = {}
        for key in published_keys():
            loaded[key.kid] = jwt.PyJWK(key.public_jwk).key
        with self._lock:
            self._keys, self._loaded_at = loaded, time.monotonic()

    def get(self, kid: object) -> dict[str, object]:
        """The current set, refreshed when stale or when ``kid`` is new to us."""
        age = time.monotonic() - self._loaded_at
        if age > current_app.config["SIGNING_KEY_CACHE_SECONDS"] or \
                (isinstance(kid, str) and kid not in self._keys and age > UNKNOWN_KID_COOLDOWN):
            self._reload()
        return self._keys


def verification_keys(kid: object = None) -> dict[str, object]:
    """Published verification keys of the current app (kid -> key)."""
    cache = current_app.extensions.setdefault("authserver.verification_keys", VerificationKeys())
    return cache.get(kid)
