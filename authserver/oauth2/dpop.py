"""DPoP at the token endpoint (RFC 9449 §5, §8): proofs, the shared ``jti`` store, nonces.

The proof rules are the guard library's (``resource_demo.guard.dpop``), so the server and the
resource servers check proofs the same way. Here: where the server keeps used ``jti``s (its
database, or Redis when one is configured; every worker and host sees the same store), its
nonces, the request's URI (built from the configured issuer, never the ``Host`` header), and
the errors in RFC 6749 §5.2 form.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timezone

import sqlalchemy as sa
from authlib.oauth2.rfc6749.errors import OAuth2Error
from flask import current_app
from flask import request as flask_request
from sqlalchemy.exc import IntegrityError

from authserver.clock import utcnow
from authserver.storage.db import db
from authserver.storage.models import SeenDPoPProof
from authserver.web.errors import TemporarilyUnavailableError
from resource_demo.guard.dpop import InvalidProof, ProofChecker, UseNonce
from resource_demo.guard.nonces import Nonces
from resource_demo.guard.replay import RedisReplayStore, ReplayStoreUnavailable

EXTENSION_KEY = "authserver.oauth2.dpop"
NONCE_HEADER = "DPoP-Nonce"


class InvalidDPoPProofError(OAuth2Error):
    """RFC 9449 §5: the DPoP proof is missing (for a bound client) or invalid."""

    error = "invalid_dpop_proof"


class UseDPoPNonceError(OAuth2Error):
    """RFC 9449 §8: the proof must carry the nonce sent in ``DPoP-Nonce``."""

    error = "use_dpop_nonce"

    def get_headers(self):
        return super().get_headers() + nonce_headers()


class DatabaseReplayStore:
    """Used proof keys in the server's database: one row each until the proof expires."""

    def first_use(self, key: str, expires_at: float) -> bool:
        """Insert the key; False when a row for it exists (a replay, on any worker or host)."""
        db.session.execute(sa.delete(SeenDPoPProof).where(SeenDPoPProof.expires_at < utcnow()))
        db.session.add(SeenDPoPProof(key=key,
                                     expires_at=datetime.fromtimestamp(expires_at, timezone.utc)))
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            return False
        return True


def _now() -> float:
    return utcnow().timestamp()


def _replay_store():
    config = current_app.config
    where = config["DPOP_REPLAY_STORE"]
    if where is None:
        shared = config["RATELIMIT_STORAGE_URI"]
        where = shared if shared.startswith(("redis://", "rediss://")) else "database"
    if where == "database":
        return DatabaseReplayStore()
    if where.startswith(("redis://", "rediss://")):
        return RedisReplayStore(where, prefix=f"{config['RATELIMIT_KEY_PREFIX']}:dpop-jti",
                                clock=_now)
    raise ValueError("DPOP_REPLAY_STORE must be 'database' or a redis:// URL")


def _nonces() -> Nonces:
    config = current_app.config
    secret = config["DPOP_NONCE_SECRET"]
    if secret is None:
        if not config.get("SECRET_KEY"):
            raise ValueError("DPoP nonces need SECRET_KEY or DPOP_NONCE_SECRET")
        secret = hmac.new(str(config["SECRET_KEY"]).encode(), b"authserver dpop nonces",
                          hashlib.sha256).digest()
    if isinstance(secret, str):
        secret = secret.encode()
    return Nonces(secret, lifetime=int(config["DPOP_NONCE_LIFETIME"]), clock=_now)


def proof_checker() -> ProofChecker:
    """The app's proof checker (built once per app from its configuration)."""
    checker = current_app.extensions.get(EXTENSION_KEY)
    if checker is None:
        config = current_app.config
        checker = current_app.extensions[EXTENSION_KEY] = ProofChecker(
            replay=_replay_store(), algorithms=config["DPOP_SIGNING_ALGS"],
            max_age=config["DPOP_PROOF_MAX_AGE"], leeway=config["LEEWAY"],
            nonces=_nonces() if config["DPOP_NONCES"] else None, clock=_now)
    return checker


def nonce_headers() -> list[tuple[str, str]]:
    """``DPoP-Nonce`` with the current nonce when nonces are on (§8.2: on every answer)."""
    nonces = proof_checker().nonces
    return [(NONCE_HEADER, nonces.current())] if nonces is not None else []


def validate_token_request_proof(client) -> str | None:
    """Check the request's DPoP proof (§4.3, §5); return the key thumbprint to bind, or None
    for a Bearer token. A client registered with ``dpop_bound_access_tokens`` must send one
    (§5.2, threat model DP04)."""
    values = flask_request.headers.getlist("DPoP")
    if not values:
        if client.dpop_bound_access_tokens:
            raise InvalidDPoPProofError("This client must send a DPoP proof.")
        return None
    # The token endpoint's URI as clients know it (metadata), whatever Host the request carried.
    uri = current_app.config["ISSUER"].rstrip("/") + flask_request.path
    try:
        proof = proof_checker().check(values, method=flask_request.method, uri=uri)
    except InvalidProof as exc:
        raise InvalidDPoPProofError(f"The DPoP proof is invalid: {exc.reason}.") from None
    except UseNonce:
        raise UseDPoPNonceError("The authorization server requires a nonce in the DPoP proof.") \
            from None
    except ReplayStoreUnavailable:
        raise TemporarilyUnavailableError("The service is temporarily unavailable.") from None
    return proof.jkt
