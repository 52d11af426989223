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

from authserver.accounts import registry as accounts
from authserver.accounts import tenancy
from authserver.clock import utcnow
from authserver.credentials import api_keys
from authserver.oauth2.client_auth import CLIENT_AUTH_METHODS, count_against
from authserver.oauth2.presented import (
    holds_introspect_scope,
    introspection_payload,
    query_credential,
    revoke_jti,
)
from authserver.observability.metrics import INTROSPECTIONS
from authserver.scopes import current_catalogue, parse_scope
from authserver.storage.audit import Actor
from authserver.storage.db import db
from authserver.storage.models import RevokedToken
from authserver.web.errors import ForbiddenError as AdminForbidden

FEED_PAGE_SIZE = 1000
#: The feed's answer format: 2 added the account members (followers of version 1 ignore them).
FEED_VERSION = 2
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
        credential = self.authenticate_token(request, client)
        payload = introspection_payload(credential, client)
        if not payload["active"]:
            # Only inactive answers spend the caller's budget (token scanning, IN09): a flood
            # of forged keys that a resource server passes on can never make it refuse the
            # credentials that are real (AV01). The lookup itself is one indexed read.
            count_against(hits=[("INTROSPECTION_RATE_LIMIT", (client.client_id,))])
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
        if credential.kind == "api_key" and _may_change_key(client, credential.api_key):
            return credential
        # RFC 7009 §2.1: the token was not issued to this client. Another account's key is
        # refused exactly like a key of its own account the client may not touch (AC01).
        raise InvalidGrantError("The token was not issued to this client.")

    def revoke_token(self, token, request):
        if token.kind == "jwt":
            claims = token.claims
            revoke_jti(claims["jti"], claims["client_id"], int(claims["exp"]),
                       request.client.account_id)
        elif token.api_key.enabled:
            caller = request.client
            api_keys.disable_api_key(token.api_key.id, account_id=caller.account_id,
                                     actor=Actor(f"client:{caller.client_id}", caller.account_id),
                                     held_scopes=parse_scope(caller.scope))


def _may_change_key(client, record) -> bool:
    """A key manager may revoke a key only where the admin API lets it change that key:
    a key of its own account (AC01) whose scopes it holds (AD04)."""
    held = parse_scope(client.scope)
    if not current_catalogue().covers(held, MANAGE_KEYS_SCOPE) \
            or record.account_id != client.account_id:
        return False
    try:
        api_keys.validate_may_change(record, held)
    except AdminForbidden:
        return False
    return True


class RevocationFeedEndpoint(TokenEndpoint):
    """``POST /oauth2/revocations``: revoked ``jti``s after a cursor, for ``tokens:introspect``;
    version 2 adds the accounts whose enabled state changed (threat model AC04).

    Form parameters: ``after`` (the ``cursor`` of the previous answer; omit for all) and, for
    followers that understand accounts, ``accounts_after`` (the previous ``accounts_cursor``;
    ``0`` the first time). Answer: ``{"version": 2, "revocations": [{"jti", "exp"}],
    "cursor": int, "has_more": bool}`` plus, when ``accounts_after`` was sent,
    ``"accounts": [{"account_id", "enabled", "disabled_at"}]`` and ``"accounts_cursor": int``.
    Version-1 followers send no ``accounts_after`` and read only the members they know.

    An account appears once, at its latest change; ``disabled_at`` (epoch seconds or null) is
    its last disable: tokens of the account issued at or before it stay refused after the
    account is enabled again. ``has_more`` covers both lists. A follower of a customer account
    sees only that account's revocations and state; the platform account's see every account.
    """

    ENDPOINT_NAME = "revocation_feed"
    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def create_endpoint_response(self, request):
        client = self.authenticate_endpoint_client(request)
        if not holds_introspect_scope(client):
            raise ForbiddenError("The client may not read the revocation feed.")
        after = _cursor(request.form.get("after"), "after")
        accounts_after = request.form.get("accounts_after")
        only = None if client.account_platform else client.account_id
        # Entries stay listed while a verifier with our leeway could still accept the token.
        listed_after = utcnow() - timedelta(seconds=current_app.config["LEEWAY"])
        # One statement, so the cursor only moves past rows this answer has seen: a second
        # query (e.g. max(id)) could see a row committed in between and skip it for good.
        query = (sa.select(RevokedToken.id, RevokedToken.jti, RevokedToken.expires_at)
                 .where(RevokedToken.id > after))
        if only is not None:
            query = query.where(RevokedToken.account_id == only)
        rows = db.session.execute(query.order_by(RevokedToken.id)
                                  .limit(FEED_PAGE_SIZE + 1)).all()
        page = rows[:FEED_PAGE_SIZE]
        cursor = page[-1].id if page else after  # expired rows are passed over too
        body = {"version": FEED_VERSION,
                "revocations": [{"jti": row.jti, "exp": int(row.expires_at.timestamp())}
                                for row in page if row.expires_at > listed_after],
                "cursor": cursor, "has_more": len(rows) > FEED_PAGE_SIZE}
        if accounts_after:  # RFC 6749 §3.1: empty means omitted
            position = _cursor(accounts_after, "accounts_after")
            changed, more = accounts.account_feed(position, FEED_PAGE_SIZE, only=only)
            body["accounts"] = [{"account_id": account.id, "enabled": account.enabled,
                                 "disabled_at": tenancy.disabled_at_epoch(account.disabled_at)}
                                for account in changed]
            body["accounts_cursor"] = changed[-1].feed_seq if changed else position
            body["has_more"] = body["has_more"] or more
        return 200, body, default_json_headers


def _cursor(value: str | None, name: str) -> int:
    """A feed cursor from the form: ASCII digits (empty or absent: 0)."""
    value = value or "0"  # RFC 6749 §3.1: empty means omitted
    # ASCII digits only: str.isdigit() admits "²" (int() fails: 500) and other scripts.
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise InvalidRequestError(f"'{name}' must be a cursor from a previous answer.")
    return int(value)
