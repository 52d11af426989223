"""RFC 7662 introspection and RFC 7009 revocation on Authlib's endpoints, plus the
revocation feed resource servers follow to refuse revoked JWTs within seconds."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import (
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Error,
    TokenEndpoint,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint
from flask import current_app

from . import api_keys
from .clock import utcnow
from .credentials import (
    holds_introspect_scope,
    introspection_payload,
    query_credential,
    revoke_jti,
)
from .db import db
from .models import RevokedToken
from .oauth2 import CLIENT_AUTH_METHODS, count_against
from .observability import INTROSPECTIONS
from .scopes import current_catalogue, parse_scope

FEED_PAGE_SIZE = 1000
MANAGE_KEYS_SCOPE = "account-management:manage"


class ForbiddenError(OAuth2Error):
    """The client authenticated but may not use this endpoint."""

    error = "unauthorized_client"
    status_code = 403


def _check_token_param(request) -> str:
    # RFC 7662 §2.1 / RFC 7009 §2.1: token is REQUIRED; token_type_hint is only a hint.
    token = request.form.get("token")
    if not token:
        raise InvalidRequestError("The 'token' parameter is required.")
    return token


class IntrospectionEndpoint(_IntrospectionEndpoint):
    """RFC 7662: a client may introspect its own tokens; ``tokens:introspect`` any credential."""

    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def check_params(self, request, client):
        _check_token_param(request)

    def authenticate_token(self, request, client):
        return query_credential(_check_token_param(request))

    def create_endpoint_response(self, request):
        """Authenticate the caller once, look the credential up, answer (§2.2)."""
        client = self.authenticate_endpoint_client(request)
        count_against("INTROSPECTION_RATE_LIMIT", client.client_id)  # SECURITY.md IN09
        credential = self.authenticate_token(request, client)
        payload = introspection_payload(credential, client)
        if payload["active"] and credential.kind == "api_key":
            api_keys.touch_last_used(credential.api_key)
        kind = credential.kind if credential else "unknown"
        INTROSPECTIONS.labels(kind=kind, active=str(payload["active"]).lower()).inc()
        return 200, payload, default_json_headers


class RevocationEndpoint(_RevocationEndpoint):
    """RFC 7009: JWTs are revoked by ``jti`` until their ``exp``; API keys are disabled.

    Unknown, invalid, expired or already revoked tokens get 200 (§2.2); the hint is ignored.
    """

    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def check_params(self, request, client):
        _check_token_param(request)

    def query_token(self, token_string, token_type_hint):
        return query_credential(token_string)

    def authenticate_token(self, request, client):
        credential = query_credential(_check_token_param(request))
        if credential is None:
            return None
        if credential.kind == "jwt" and credential.claims["client_id"] == client.client_id:
            return credential
        if credential.kind == "api_key" and current_catalogue().covers(
                parse_scope(client.scope), MANAGE_KEYS_SCOPE):
            return credential
        # RFC 7009 §2.1: the token was not issued to this client.
        raise InvalidGrantError("The token was not issued to this client.")

    def revoke_token(self, token, request):
        if token.kind == "jwt":
            claims = token.claims
            revoke_jti(claims["jti"], claims["client_id"], int(claims["exp"]))
        elif token.api_key.enabled:
            api_keys.disable_api_key(token.api_key.id, actor=f"client:{request.client.client_id}")


class RevocationFeedEndpoint(TokenEndpoint):
    """``POST /oauth2/revocations``: revoked ``jti``s after a cursor, for ``tokens:introspect``.

    Form parameters: ``after`` (the ``cursor`` of the previous answer; omit for all).
    Answer: ``{"revocations": [{"jti", "exp"}], "cursor": int, "has_more": bool}``.
    """

    ENDPOINT_NAME = "revocation_feed"
    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def create_endpoint_response(self, request):
        client = self.authenticate_endpoint_client(request)
        if not holds_introspect_scope(client):
            raise ForbiddenError("The client may not read the revocation feed.")
        after = request.form.get("after") or "0"  # RFC 6749 §3.1: empty means omitted
        # ASCII digits only: str.isdigit() admits "²" (int() fails: 500) and other scripts.
        if not (after.isascii() and after.isdigit()) or len(after) > 18:
            raise InvalidRequestError("'after' must be a cursor from a previous answer.")
        # Entries stay listed while a verifier with our leeway could still accept the token.
        listed_after = utcnow() - timedelta(seconds=current_app.config["LEEWAY"])
        # One statement, so the cursor only moves past rows this answer has seen: a second
        # query (e.g. max(id)) could see a row committed in between and skip it for good.
        rows = db.session.execute(
            sa.select(RevokedToken.id, RevokedToken.jti, RevokedToken.expires_at)
            .where(RevokedToken.id > int(after))
            .order_by(RevokedToken.id).limit(FEED_PAGE_SIZE + 1)).all()
        page = rows[:FEED_PAGE_SIZE]
        cursor = page[-1].id if page else int(after)  # expired rows are passed over too
        body = {"revocations": [{"jti": row.jti, "exp": int(row.expires_at.timestamp())}
                                for row in page if row.expires_at > listed_after],
                "cursor": cursor, "has_more": len(rows) > FEED_PAGE_SIZE}
        return 200, body, default_json_headers
