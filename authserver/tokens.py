"""RFC 9068 JWT access tokens: encoding, and decoding for introspection and revocation."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence

import jwt
from flask import current_app

from .clock import epoch
from .keys import ALGORITHMS, active_signing_key
from .lru import LRUCache

TOKEN_TYPE_HEADER = "at+jwt"  # RFC 9068 §2.1
MAX_TOKEN_BYTES = 8192
VERIFIED_CACHE_SIZE = 10_000


def token_lifetime(client) -> int:
    """The client's lifetime override, or the server default (never Authlib's ten days)."""
    return client.token_ttl or current_app.config["ACCESS_TOKEN_TTL"]


def encode_access_token(client, scopes: Sequence[str], audience: str) -> dict:
    """Sign an RFC 9068 access token and return the RFC 6749 §5.1 response members.

    Writes nothing to the database: a token is checked by its signature, and revocation
    is recorded by ``jti`` only when it happens.
    """
    key = active_signing_key()
    now = epoch()
    lifetime = token_lifetime(client)
    scope = " ".join(scopes)
    claims = {
        "iss": current_app.config["ISSUER"],  # never derived from the Host header (TE20)
        "sub": client.client_id,  # RFC 9068 §2.2: client credentials -> the client itself
        "client_id": client.client_id,
        "aud": audience,
        "exp": now + lifetime,
        "iat": now,
        "nbf": now,
        "jti": secrets.token_urlsafe(18),
        "scope": scope,
    }
    token = jwt.encode(claims, key.private_key, algorithm=key.alg,
                       headers={"typ": TOKEN_TYPE_HEADER, "kid": key.kid})
    return {"access_token": token, "token_type": "Bearer", "expires_in": lifetime,
            "scope": scope}


def _verified_tokens() -> LRUCache:
    return current_app.extensions.setdefault("authserver.verified_tokens",
                                             LRUCache(VERIFIED_CACHE_SIZE))


def decode_access_token(token: str, published: Callable[[object], dict]) -> dict | None:
    """Like ``verify_access_token``, checking a token's signature once: a token seen before
    is accepted from the cache while its key is still published and its times still hold."""
    if not isinstance(token, str):
        return None
    cache = _verified_tokens()
    entry = cache.get(token)
    if entry is not None:
        kid, claims = entry
        if kid in published(kid) and _check_times(claims, epoch(), current_app.config["LEEWAY"]):
            return claims
        cache.pop(token)
        return None
    claims = verify_access_token(token, published)
    if claims is not None:
        cache.put(token, (jwt.get_unverified_header(token)["kid"], claims))
    return claims


def verify_access_token(token: str, published: Callable[[object], dict]) -> dict | None:
    """Verify a token of ours against the published keys; return its claims or None.

    ``published(kid)`` returns the kid -> verification key mapping (refreshed for new kids). Checks signature, ``typ``, ``iss``,
    ``exp``/``nbf`` (with leeway) and the RFC 9068 claims; audience is the caller's business.
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
        return None
    try:
        header = jwt.get_unverified_header(token)
        if str(header.get("typ", "")).lower() not in ("at+jwt", "application/at+jwt"):
            return None
        key = published(header.get("kid")).get(header.get("kid"))
        if key is None or header.get("alg") not in ALGORITHMS or "crit" in header:
            return None
        # Times are checked below against our (injectable) clock, not PyJWT's.
        claims = jwt.decode(
            token, key, algorithms=[header["alg"]], issuer=current_app.config["ISSUER"],
            options={"verify_aud": False, "verify_exp": False, "verify_nbf": False,
                     "verify_iat": False,
                     "require": ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"]},
        )
    except (jwt.PyJWTError, ValueError, TypeError, OverflowError, RecursionError):
        return None
    if not _check_times(claims, epoch(), current_app.config["LEEWAY"]):
        return None
    if not isinstance(claims.get("scope", ""), str) or not isinstance(claims.get("jti"), str):
        return None  # RFC 9068 §2.2.3: scope is a space-separated string
    return claims


def _check_times(claims: dict, now: int, leeway: int) -> bool:
    """``exp`` in the future, ``nbf`` and ``iat`` not in the future, all within leeway."""
    try:
        exp = int(claims["exp"])
        nbf = int(claims.get("nbf", claims["iat"]))
        iat = int(claims["iat"])
    except (TypeError, ValueError, OverflowError):
        return False
    return exp + leeway > now and nbf - leeway <= now and iat - leeway <= now
