"""RFC 9068 JWT access tokens: encoding, and the one verifier for introspection, revocation and the admin API."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import jwt
from flask import current_app

from authserver.clock import epoch
from authserver.credentials.signing_keys import ALGORITHMS, active_signing_key
from authserver.credentials.verification_keys import verification_keys
from resource_demo.guard.verifier import AccessTokenVerifier, InvalidToken

TOKEN_TYPE_HEADER = "at+jwt"  # RFC 9068 §2.1
MAX_TOKEN_BYTES = 8192
VERIFIED_CACHE_SIZE = 10_000
VERIFIER_KEY = "authserver.oauth2.access_token_verifier"


def token_lifetime(client) -> int:
    """The client's lifetime override, or the server default (never Authlib's ten days)."""
    return client.token_ttl or current_app.config["ACCESS_TOKEN_TTL"]


def encode_access_token(client, scopes: Sequence[str], audience: str,
                        jkt: str | None = None) -> dict:
    """Sign an RFC 9068 access token and return the RFC 6749 §5.1 response members.

    With ``jkt`` (a DPoP key's RFC 7638 thumbprint) the token is bound to that key: it
    carries ``cnf.jkt`` and is of type DPoP (RFC 9449 §5, §6.1). Writes nothing to the
    database: a token is checked by its signature, and revocation is recorded by ``jti`` only
    when it happens.
    """
    key = active_signing_key()
    now = epoch()
    lifetime = token_lifetime(client)
    scope = " ".join(scopes)
    claims = {
        "iss": current_app.config["ISSUER"],  # never derived from the Host header (TE20)
        "sub": client.client_id,  # RFC 9068 §2.2: client credentials -> the client itself
        "client_id": client.client_id,
        "account_id": client.account_id,  # the client's account, never another (AC02)
        "aud": audience,
        "exp": now + lifetime,
        "iat": now,
        "nbf": now,
        "jti": secrets.token_urlsafe(18),
        "scope": scope,
    }
    if jkt is not None:
        claims["cnf"] = {"jkt": jkt}
    token = jwt.encode(claims, key.private_key, algorithm=key.alg,
                       headers={"typ": TOKEN_TYPE_HEADER, "kid": key.kid})
    return {"access_token": token, "token_type": "DPoP" if jkt is not None else "Bearer",
            "expires_in": lifetime, "scope": scope}


def access_token_verifier() -> AccessTokenVerifier:
    """The app's verifier of its own tokens: the guard's RFC 9068 verifier on the published keys.

    The audience is left to the caller (introspection answers for every audience we issue;
    the admin API checks its own). A token's signature is checked once; its key's publication
    and its times are checked on every use (the verifier's cache).
    """
    extensions = current_app.extensions
    verifier = extensions.get(VERIFIER_KEY)
    if verifier is None:
        config = current_app.config
        verifier = extensions[VERIFIER_KEY] = AccessTokenVerifier(
            config["ISSUER"], None, verification_keys(), leeway=config["LEEWAY"],
            algorithms=ALGORITHMS, max_token_bytes=MAX_TOKEN_BYTES, clock=epoch,
            verified_cache_size=VERIFIED_CACHE_SIZE)
    return verifier


def decode_access_token(token: object) -> dict | None:
    """The claims of a valid access token of ours (RFC 9068 §4, any audience), else None."""
    if not isinstance(token, str):
        return None
    try:
        return access_token_verifier().verify(token)
    except InvalidToken:
        return None
