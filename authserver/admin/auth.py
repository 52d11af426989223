"""Who is calling the admin API: the guard library's request -> principal -> scope path, with
this server's own database as the key and revocation sources (no network hop, no feed lag).

Rules (docs/scopes.md "API-key management API", threat model AD02/AD06):
- ``Authorization: Bearer <jwt>``: our own RFC 9068 token, checked by the one verifier the guard
  uses (signature with a published key, ``typ``, canonical encoding, ``iss``, times), not revoked,
  whose ``aud`` names the admin API's own audience (``ADMIN_AUDIENCE``, by default the issuer;
  never the resource servers' default audience: threat model AU01), from a client that still
  exists and is enabled. Missing or invalid: 401 UNAUTHORIZED; two credentials: 400.
- ``Authorization: DPoP <jwt>`` with a ``DPoP`` proof (RFC 9449 §7): a DPoP-bound token of a
  client registered for bound tokens, checked as the guard checks it (``ath``, ``cnf.jkt``) with
  the token endpoint's proof checker (algorithms, replay store, nonces); ``htu`` is the issuer
  plus the path, never the request's Host. A bound token sent as Bearer is 401.
- ``Authorization: App <key>``: 403 FORBIDDEN, whatever the key: a key cannot manage keys.
- The caller's scopes are the token's scopes still covered by the client's current allowed
  scopes (narrowing a client takes effect at once, not when its tokens expire).
- Each endpoint names the scopes it accepts (any-of, umbrella-aware through the catalogue);
  a valid token without one of them is 403 (the guard's ``check_scopes``), whose envelope
  names them (``missingScopes``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace

from flask import current_app, g

from authserver.accounts import tenancy
from authserver.clock import epoch
from authserver.config import admin_audience
from authserver.credentials.clients import query_client
from authserver.credentials.signing_keys import ALGORITHMS
from authserver.credentials.verification_keys import verification_keys
from authserver.oauth2.dpop import proof_checker
from authserver.oauth2.presented import is_revoked
from authserver.oauth2.tokens import MAX_TOKEN_BYTES, VERIFIED_CACHE_SIZE
from authserver.scopes import ScopeError, current_catalogue, has_required_scope, parse_scope
from authserver.storage.audit import Actor
from authserver.web.errors import ForbiddenError
from resource_demo.guard.errors import Unauthorized, bearer_challenge
from resource_demo.guard.flask_request import presented
from resource_demo.guard.principal import Authenticator, Principal, check_scopes
from resource_demo.guard.verifier import AccessTokenVerifier

MANAGE_SCOPE = "account-management:manage"
AUDIT_SCOPE = "audit-logs:read"
ACCOUNTS_SCOPE = "accounts:manage"
RESOURCE_SERVERS_SCOPE = "resource-servers:manage"
REALM = "authserver-admin"
EXTENSION_KEY = "authserver.admin.authenticator"


@dataclass(frozen=True)
class AdminCaller:
    """The authenticated admin caller: the guard's principal, the scopes it holds right now,
    and its client's account (``platform``: the platform account)."""

    principal: Principal
    scopes: tuple[str, ...]  # in the token's order: a key created without scopes gets them so
    account_id: str = ""
    platform: bool = False
    audiences: tuple[str, ...] = ()  # registered for the client: the ones it may grant (AU02)

    @property
    def client_id(self) -> str:
        """The OAuth client calling."""
        return self.principal.client_id

    @property
    def actor(self) -> Actor:
        """The audit trail's name for this caller, and the account it acts from."""
        return Actor(f"client:{self.client_id}", self.account_id)


def current_caller() -> AdminCaller:
    """The caller of the current admin request (set by ``require_admin``)."""
    return g.admin_caller


def admin_audiences() -> tuple[str, ...]:
    """The audience the admin API accepts: its own, which no resource server accepts, so a
    token one of them saw cannot be replayed here (AU01)."""
    return (admin_audience(current_app.config),)


def _authenticator() -> Authenticator:
    """The app's admin authenticator: database keys and revocations, DPoP proofs as at the
    token endpoint, App keys refused."""
    authenticator = current_app.extensions.get(EXTENSION_KEY)
    if authenticator is None:
        config = current_app.config
        verifier = AccessTokenVerifier(
            config["ISSUER"], admin_audiences(), verification_keys(), leeway=config["LEEWAY"],
            algorithms=ALGORITHMS, max_token_bytes=MAX_TOKEN_BYTES, clock=epoch,
            verified_cache_size=VERIFIED_CACHE_SIZE)
        authenticator = current_app.extensions[EXTENSION_KEY] = Authenticator(
            realm=REALM, verifier=lambda: verifier, is_revoked=is_revoked, api_key_answer=None,
            dpop=proof_checker(), public_url=config["ISSUER"].rstrip("/"))
    return authenticator


def _invalid_token() -> Unauthorized:
    return Unauthorized(headers=[bearer_challenge(REALM, error="invalid_token")])


def authenticate() -> AdminCaller:
    """Turn the request's Authorization header into a caller, or raise 400/401/403."""
    principal = _authenticator().authenticate(presented())
    client = query_client(principal.client_id)
    if client is None or not client.enabled or principal.subject != client.client_id:
        raise _invalid_token()
    # Threat model AC02/AC04: the token's account is its client's, and that account is
    # enabled and was not disabled after the token was issued.
    claims = principal.claims
    if tenancy.token_account_id(claims) != client.account_id or \
            tenancy.token_refused_by_account(claims.get("iat"), client.account_enabled,
                                             client.account_disabled_at):
        raise _invalid_token()
    try:
        token_scopes = parse_scope(principal.claims.get("scope", ""))
        allowed = parse_scope(client.scope)
    except ScopeError:
        raise _invalid_token() from None
    catalogue = current_catalogue()
    held = tuple(scope for scope in token_scopes if catalogue.covers(allowed, scope))
    g.client_id = client.client_id  # for the access log
    return AdminCaller(principal=replace(principal, scopes=frozenset(held)), scopes=held,
                       account_id=client.account_id, platform=client.account_platform,
                       audiences=tuple(client.audiences or ()))


def require_admin(*accepted: str) -> Callable[[Callable], Callable]:
    """Let a caller in when it holds one of ``accepted`` (or an umbrella covering one)."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            caller = authenticate()
            catalogue = current_catalogue()
            covering = frozenset().union(*(catalogue.accepted_by(scope) for scope in accepted))
            if not has_required_scope(caller.principal.scopes, covering):
                challenge = bearer_challenge(REALM, error="insufficient_scope",
                                             scope=" ".join(sorted(covering)))
                raise ForbiddenError(
                    "This operation needs one of these scopes: " + ", ".join(accepted),
                    dict([challenge]), missing_scopes=list(accepted))
            check_scopes(caller.principal, covering, realm=REALM, allow_api_keys=False)
            g.admin_caller = caller
            return view(*args, **kwargs)

        wrapper.accepted_scopes = accepted
        return wrapper

    return decorator
