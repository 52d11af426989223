"""Our published public keys as the access-token verifier's key source (introspection,
revocation, admin API): read from the database, no network hop, cached per process.

The published set is re-read at most every SIGNING_KEY_CACHE_SECONDS, and at once (at most once
a second) when a token names a ``kid`` we do not hold yet. Keys are parsed with the guard's
``parse_jwk``, so the server and every guard bind each key to its one algorithm the same way.
"""

from __future__ import annotations

import logging
import threading
import time

import jwt
from flask import current_app

from authserver.credentials.signing_keys import published_keys
from resource_demo.guard.keys import UnknownKey, parse_jwk

log = logging.getLogger(__name__)
UNKNOWN_KID_COOLDOWN = 1.0
EXTENSION_KEY = "authserver.credentials.verification_keys"


class DatabaseKeys:
    """kid -> ``jwt.PyJWK`` for one app: a ``resource_demo.guard.keys.KeySource``."""

    def __init__(self, max_age: float):
        self.max_age = max_age
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded_at = float("-inf")

    def _reload(self) -> None:
        loaded = {}
        for key in published_keys():
            try:
                loaded[key.kid] = parse_jwk(dict(key.public_jwk))
            except ValueError as exc:  # never expected for keys we generated: say so loudly
                log.error("published key %s unusable: %s", key.kid, exc)
        with self._lock:
            self._keys, self._loaded_at = loaded, time.monotonic()

    def get_key(self, kid: str) -> jwt.PyJWK:
        """The published key ``kid``, re-reading the set when stale or when ``kid`` is new to us.

        Database errors propagate (the endpoints answer 503, never "invalid token")."""
        age = time.monotonic() - self._loaded_at
        if age > self.max_age or (kid not in self._keys and age > UNKNOWN_KID_COOLDOWN):
            self._reload()
        key = self._keys.get(kid)
        if key is None:
            raise UnknownKey(f"no published key with kid {kid[:64]!r}")
        return key


def verification_keys() -> DatabaseKeys:
    """The current app's published verification keys."""
    extensions = current_app.extensions
    if EXTENSION_KEY not in extensions:
        extensions[EXTENSION_KEY] = DatabaseKeys(current_app.config["SIGNING_KEY_CACHE_SECONDS"])
    return extensions[EXTENSION_KEY]
