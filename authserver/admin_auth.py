"""Who is calling the admin API: a bearer JWT issued by this server, turned into one caller.

Rules (SCOPES.md "API key management API", SECURITY.md AD02/AD06):
- ``Authorization: Bearer <jwt>``: our own RFC 9068 token (signature, ``typ``, ``iss``, times),
  not revoked, whose ``aud`` names the server's default audience or the issuer, from a client
  that still exists and is enabled. Missing or invalid: 401 UNAUTHORIZED.
- ``Authorization: App <key>``: 403 FORBIDDEN, whatever the key: a key cannot manage keys.
- The caller's scopes are the token's scopes still covered by the client's current allowed
  scopes (narrowing a client takes effect at once, not when its tokens expire).
- Each endpoint names the scopes it accepts (any-of, umbrella-aware through the catalogue);
  a valid token without one of them is 403.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from flask import current_app, g, request
from werkzeug.exceptions import BadRequest

from .clients import query_client
from .credentials import is_revoked
from .errors import ForbiddenError, UnauthorizedError
from .scopes import ScopeError, current_catalogue, parse_scope
from .tokens import decode_access_token
from .verification_keys import verification_keys

MANAGE_SCOPE = "account-management:manage"
AUDIT_SCOPE = "audit-logs:read"
REALM = "authserver-admin"


@dataclass(frozen=True)
class AdminCaller:
    """The authenticated admin caller: an OAuth client and the scopes it holds right now."""

    client_id: str
    scopes: tuple[str, ...]  # in the token's order: a key created without scopes gets them so

    @property
    def actor(self) -> str:
        """The audit trail's name for this caller."""
        return f"client:{self.client_id}"


class AdminUnauthorized(UnauthorizedError):
    """401 with an RFC 6750 §3 challenge, rendered in the admin envelope."""

    def __init__(self, error: str | None = None):
        params = f'realm="{REALM}"' + (f', error="{error}"' if error else "")
        super().__init__("Invalid login details", {"WWW-Authenticate": "Bearer " + params})


def current_caller() -> AdminCaller:
    """The caller of the current admin request (set by ``require_admin``)."""
    return g.admin_caller


def _audiences(claims: dict) -> list:
    aud = claims.get("aud")
    return [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []


def authenticate() -> AdminCaller:
    """Turn the request's Authorization header into a caller, or raise 400/401/403."""
    headers = request.headers.getlist("Authorization")
    # RFC 6750 §3.1: more than one credential is invalid_request (WSGI servers join repeated
    # headers with a comma, which no JWT or key contains).
    if len(headers) > 1 or (headers and "," in headers[0]):
        raise BadRequest("More than one Authorization header.")
    if not headers:
        raise AdminUnauthorized()  # RFC 6750 §3.1: no error code without credentials
    scheme, _, credential = headers[0].strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() == "app":
        raise ForbiddenError("API keys cannot call the admin API.")
    if scheme.lower() != "bearer" or not credential:
        raise AdminUnauthorized("invalid_token")
    claims = decode_access_token(credential, verification_keys)
    if claims is None:
        raise AdminUnauthorized("invalid_token")
    config = current_app.config
    # RFC 9068 §4: the audience must name us (the default audience or the issuer itself).
    if not {config["DEFAULT_AUDIENCE"], config["ISSUER"]} & set(_audiences(claims)):
        raise AdminUnauthorized("invalid_token")
    if is_revoked(claims["jti"]):
        raise AdminUnauthorized("invalid_token")
    client = query_client(claims.get("client_id"))
    if client is None or not client.enabled or claims.get("sub") != client.client_id:
        raise AdminUnauthorized("invalid_token")
    try:
        token_scopes = parse_scope(claims.get("scope", ""))
        allowed = parse_scope(client.scope)
    except ScopeError:
        raise AdminUnauthorized("invalid_token") from None
    catalogue = current_catalogue()
    held = tuple(scope for scope in token_scopes if catalogue.covers(allowed, scope))
    return AdminCaller(client_id=client.client_id, scopes=held)


def require_admin(*accepted: str) -> Callable[[Callable], Callable]:
    """Let a caller in when it holds one of ``accepted`` (or an umbrella covering one)."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            caller = authenticate()
            catalogue = current_catalogue()
            if not any(catalogue.covers(caller.scopes, scope) for scope in accepted):
                challenge = (f'Bearer realm="{REALM}", error="insufficient_scope", '
                             f'scope="{" ".join(accepted)}"')
                raise ForbiddenError("Insufficient scope.", {"WWW-Authenticate": challenge})
            g.admin_caller = caller
            return view(*args, **kwargs)

        wrapper.accepted_scopes = accepted
        return wrapper

    return decorator
