"""private_key_jwt client authentication (RFC 7523 §2.2 and §3, draft-ietf-oauth-rfc7523bis)."""

from __future__ import annotations

import json

import jwt
import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from authserver.clock import epoch, utcnow
from authserver.storage.db import db
from authserver.storage.models import SeenAssertion

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})
MAX_ASSERTION_BYTES = 8192
MAX_KEYS = 10


def parse_client_jwks(value: object) -> dict:
    """Validate a client's public JWK Set: asymmetric keys only, no private members."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError("not valid JSON") from exc
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list) \
            or not 0 < len(value["keys"]) <= MAX_KEYS:
        raise ValueError(f"a JWK Set with 1 to {MAX_KEYS} keys is required")
    keys = []
    for jwk in value["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") not in ("RSA", "EC", "OKP"):
            raise ValueError("only RSA, EC and OKP public keys are accepted")
        if PRIVATE_MEMBERS & set(jwk):
            raise ValueError("the JWK Set contains private key members")
        try:
            jwt.PyJWK(jwk)
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise ValueError("a key could not be parsed") from exc
        keys.append(jwk)
    return {"keys": keys}


#: Which advertised algorithms a key type can verify (a key that names its ``alg`` takes
#: only that one: RFC 8725 §3.1).
ALGORITHMS_BY_KEY_TYPE = {"RSA": ("RS256", "PS256"), "EC": ("ES256",), "OKP": ("EdDSA",)}


def _select_key(client, kid: object, alg: str):
    """The registered key for ``kid`` (or the only key) able to verify ``alg``; None if none."""
    keys = (client.jwks or {}).get("keys", [])
    if kid is None and len(keys) == 1:
        candidates = keys
    else:
        candidates = [jwk for jwk in keys if kid is not None and jwk.get("kid") == kid]
    for jwk in candidates:
        allowed = (jwk["alg"],) if jwk.get("alg") else \
            ALGORITHMS_BY_KEY_TYPE.get(jwk.get("kty"), ())
        if alg in allowed:
            # The key object, not the PyJWK: PyJWK pins RSA keys without "alg" to RS256.
            return jwt.PyJWK(jwk, algorithm=alg).key
    return None


def verify_client_assertion(client, assertion: str) -> dict | None:
    """Check an assertion signed by ``client``'s registered key; return its claims or None."""
    issuer = current_app.config["ISSUER"]
    leeway = current_app.config["LEEWAY"]
    try:
        header = jwt.get_unverified_header(assertion)
        # RFC 8725 §3.12: an access token is never a client assertion (threat model PK07).
        if str(header.get("typ", "")).lower() in ("at+jwt", "application/at+jwt"):
            return None
        if header.get("alg") not in ASSERTION_ALGORITHMS or "crit" in header:
            return None
        key = _select_key(client, header.get("kid"), header["alg"])
        if key is None:
            return None
        claims = jwt.decode(assertion, key, algorithms=[header["alg"]],
                            options={"verify_aud": False, "verify_exp": False,
                                     "verify_nbf": False, "verify_iat": False,
                                     "require": ["iss", "sub", "aud", "exp", "jti"]})
    except (jwt.PyJWTError, ValueError, TypeError, OverflowError, RecursionError):
        return None
    # RFC 7523 §3 items 1-2: iss and sub are the client_id.
    if claims["iss"] != client.client_id or claims["sub"] != client.client_id:
        return None
    # rfc7523bis: the audience is the issuer identifier, as the sole value.
    if claims["aud"] != issuer and claims["aud"] != [issuer]:
        return None
    now, exp = epoch(), claims["exp"]
    # RFC 7523 §3 item 4: exp required; unreasonably far-future assertions are refused.
    if not isinstance(exp, int) or isinstance(exp, bool) or exp + leeway <= now \
            or exp > now + current_app.config["CLIENT_ASSERTION_MAX_LIFETIME"] + leeway:
        return None
    nbf = claims.get("nbf")
    if nbf is not None and (not isinstance(nbf, int) or nbf - leeway > now):
        return None
    # NUL cannot be stored in PostgreSQL text (a 500 there, a stored jti on SQLite).
    if not isinstance(claims["jti"], str) or not 0 < len(claims["jti"]) <= 256 \
            or "\x00" in claims["jti"]:
        return None
    return claims


def record_assertion_jti(client_id: str, jti: str, exp: int) -> bool:
    """Remember an assertion's ``jti`` in the shared store; False when it was seen (replay)."""
    from datetime import datetime, timezone

    now = utcnow()
    db.session.execute(sa.delete(SeenAssertion).where(SeenAssertion.expires_at < now))
    db.session.add(SeenAssertion(client_id=client_id, jti=jti,
                                 expires_at=datetime.fromtimestamp(exp, timezone.utc)))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return False
    return True


def unverified_subject(assertion: str) -> str | None:
    """The ``sub`` an assertion claims, unverified (None if it does not parse)."""
    if len(assertion) > MAX_ASSERTION_BYTES:
        return None
    try:
        subject = jwt.decode(assertion, options={"verify_signature": False}).get("sub")
    except (jwt.PyJWTError, ValueError, TypeError, OverflowError, RecursionError, AttributeError):
        return None
    return subject if isinstance(subject, str) else None


def authenticate_private_key_jwt(query_client, request):
    """Authlib client-auth hook for ``private_key_jwt``; None when it does not authenticate."""
    form = request.form
    assertion = form.get("client_assertion")
    # RFC 7523 §2.2 (threat model PK01): the assertion type is fixed.
    if form.get("client_assertion_type") != ASSERTION_TYPE or not assertion \
            or len(assertion) > MAX_ASSERTION_BYTES:
        return None
    try:
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError, OverflowError, RecursionError):
        return None
    client_id = unverified.get("sub")
    if form.get("client_id") not in (None, client_id):
        return None
    client = query_client(client_id)
    if client is None or not client.check_endpoint_auth_method("private_key_jwt", "token"):
        return None
    claims = verify_client_assertion(client, assertion)
    # RFC 7523 §3 item 7: a jti is used once, across every worker (shared table).
    if claims is None or not record_assertion_jti(client.client_id, claims["jti"], claims["exp"]):
        return None
    return client
