"""Looking up a presented credential (our JWT or an API key) for introspection and revocation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from authserver.accounts import tenancy
from authserver.accounts.registry import query_account
from authserver.clock import utcnow
from authserver.credentials.api_keys import is_active, query_api_key
from authserver.oauth2.tokens import decode_access_token
from authserver.scopes import current_catalogue, parse_scope
from authserver.storage.db import db, row_exists
from authserver.storage.models import ApiKey, RevokedToken
from resource_demo.guard.api_key_format import PREFIX as API_KEY_PREFIX

INTROSPECT_SCOPE = "tokens:introspect"
MAX_CREDENTIAL_LENGTH = 8192


@dataclass
class Credential:
    """A credential we issued: a verified JWT's claims, or an API key record."""

    kind: str  # "jwt" or "api_key"
    claims: dict | None = None
    api_key: ApiKey | None = None


def query_credential(value: object) -> Credential | None:
    """Find the credential ``value`` stands for, whatever the caller's hint says (RFC 7662 §2.1).

    JWTs must verify against our published keys and be unexpired; API keys must exist.
    Revocation and key state are checked by the callers.
    """
    if not isinstance(value, str) or not value or len(value) > MAX_CREDENTIAL_LENGTH:
        return None
    if value.startswith(API_KEY_PREFIX):
        record = query_api_key(value)
        return Credential("api_key", api_key=record) if record else None
    claims = decode_access_token(value)
    return Credential("jwt", claims=claims) if claims else None


def is_revoked(jti: str) -> bool:
    """True when the JWT with ``jti`` was revoked (own connection: call it outside a
    session transaction). Asked of the database every time: introspection must say
    ``active: false`` at once after a revocation anywhere (threat model RV04)."""
    return row_exists(RevokedToken.__table__, "jti", jti)


def holds_introspect_scope(client) -> bool:
    """True when the client may introspect any credential and read the revocation feed."""
    return current_catalogue().covers(parse_scope(client.scope), INTROSPECT_SCOPE)


def revoke_jti(jti: str, client_id: str, exp: int, account_id: str) -> None:
    """Record a revocation by ``jti`` (idempotent), kept until the token's ``exp``.

    On PostgreSQL the insert runs under a transaction-level advisory lock, so feed ids
    become visible in increasing order and a reader's cursor never skips one.
    """
    now = utcnow()
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(sa.text("SELECT pg_advisory_xact_lock(7342002)"))
    # Checked on the session's own connection: taking a second pooled connection while this
    # transaction holds the lock lets concurrent revocations exhaust the pool and deadlock.
    if db.session.scalar(sa.select(RevokedToken.id).where(RevokedToken.jti == jti)) is not None:
        db.session.commit()
        return
    prune_before = now - timedelta(seconds=current_app.config["LEEWAY"])
    db.session.execute(sa.delete(RevokedToken).where(RevokedToken.expires_at < prune_before))
    db.session.add(RevokedToken(jti=jti, client_id=client_id, account_id=account_id,
                                revoked_at=now,
                                expires_at=datetime.fromtimestamp(exp, timezone.utc)))
    try:
        db.session.commit()
    except IntegrityError:  # a concurrent revocation of the same jti won
        db.session.rollback()


def introspection_payload(credential: Credential | None, client) -> dict:
    """RFC 7662 §2.2 response for ``client``; exactly ``{"active": false}`` when not active
    or not this client's to see (threat model IN03, IN06).

    A client sees only its own account's credentials, except the platform account's
    ``tokens:introspect`` clients, which see every account's (AC01). A credential of a
    disabled account is inactive; so is a token issued before its account's last disable
    (AC04). Active answers carry ``account_id`` (AC02).
    """
    inactive = {"active": False}
    if credential is None:
        return inactive
    privileged = holds_introspect_scope(client)
    platform = bool(getattr(client, "account_platform", False))
    if credential.kind == "api_key":
        record = credential.api_key
        if not privileged or not tenancy.may_see(client.account_id, platform, record.account_id):
            return inactive
        if not is_active(record):
            return inactive
        return {"active": True, "token_type": "App", "scope": record.scope,
                "client_id": record.id, "sub": record.id, "account_id": record.account_id,
                "iat": int(record.created_at.timestamp()),
                "nbf": int(record.valid_from.timestamp()),
                "exp": int(record.valid_to.timestamp()),
                "iss": current_app.config["ISSUER"],
                "allowed_ips": list(record.allowed_ips or [])}
    claims = credential.claims
    if not privileged and claims["client_id"] != client.client_id:
        return inactive
    account_id = tenancy.token_account_id(claims)
    if not tenancy.may_see(client.account_id, platform, account_id):
        return inactive
    # A resource server registered with audiences learns only about tokens meant for it.
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if privileged and client.audiences and not set(client.audiences) & set(audiences):
        return inactive
    if is_revoked(claims["jti"]):
        return inactive
    account = query_account(account_id)
    if account is None or tenancy.token_refused_by_account(claims.get("iat"), account.enabled,
                                                           account.disabled_at):
        return inactive
    payload = {"active": True, "token_type": "Bearer"}
    for name in ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti"):
        if name in claims:
            payload[name] = claims[name]
    payload["account_id"] = account_id
    jkt = dpop_binding(claims)
    if jkt is not None:
        # RFC 9449 §6.2: a bound token's thumbprint, and token_type DPoP (threat model DP02).
        payload["token_type"] = "DPoP"
        payload["cnf"] = {"jkt": jkt}
    return payload


def dpop_binding(claims: dict) -> str | None:
    """The DPoP key thumbprint a token is bound to (``cnf.jkt``, RFC 9449 §6.1), or None."""
    cnf = claims.get("cnf")
    return cnf.get("jkt") if isinstance(cnf, dict) and isinstance(cnf.get("jkt"), str) else None
