"""The resource guard for Flask: one principal from a JWT or an API key, one any-of scope check.

Protect a Flask view::

    guard = ResourceGuard(app)           # or guard.init_app(app) in a factory

    @app.post("/sms/3/messages")
    @guard.require_scope("sms:message:send")    # + every umbrella covering it
    def send():
        principal = current_principal()

``init_app`` checks the ``GUARD_*`` settings (``resource_demo.guard.config``; a bad one stops the
app with a message naming it), looks the issuer up once (metadata naming another issuer stops the
app; an unreachable issuer is an outage: 503 until it answers) and registers the rendering of the
guard's errors: 400/401/403/503 in the platform envelope with RFC 6750 ``WWW-Authenticate``.
``register_error_handlers(app)`` renders every other error of the app in the envelope too.

Endpoints that must not take API keys (key management, balance) pass ``allow_api_keys=False``.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from resource_demo.guard.config import GuardConfigurationError, GuardSettings
from resource_demo.guard.errors import (
    ApiError,
    GeneralError,
    error_for_status,
)
from resource_demo.guard.errors import log as errors_log
from resource_demo.guard.jwks import JWKSCache, MetadataError
from resource_demo.guard.key_fingerprints import KeyFingerprints
from resource_demo.guard.manifest import manifest, route_entries
from resource_demo.guard.flask_request import presented
from resource_demo.guard.principal import (
    Authenticator,
    InvalidCredential,
    Principal,
    check_scopes,
)
from resource_demo.guard.revocation import FeedFollower, RevocationList
from resource_demo.guard.scopes import Catalogue, default_catalogue
from resource_demo.guard.server_client import (
    ApiKeyCache,
    AuthorizationServerClient,
    ServerUnavailable,
)
from resource_demo.guard.verifier import AccessTokenVerifier

log = logging.getLogger(__name__)
EXTENSION_KEY = "resource_demo.guard.flask"
# Headers of a Werkzeug HTTPException worth keeping when re-rendering it.
_KEPT_HEADERS = frozenset({"allow", "retry-after", "www-authenticate", "content-range"})

__all__ = ["ResourceGuard", "current_principal", "register_error_handlers", "presented",
           "render", "GuardConfigurationError", "Principal", "accepted_scopes"]


def current_principal() -> Principal | None:
    """The principal of the current request (None outside a protected view)."""
    return g.get("principal")


def render(exc: ApiError) -> Response:
    """An ``ApiError`` as a Flask response (the envelope bytes and its headers)."""
    return Response(exc.body(), exc.status_code, headers=exc.headers, mimetype="application/json")


def _render_http_exception(exc: HTTPException) -> Response | HTTPException:
    if exc.code is None or exc.code < 400 or exc.response is not None:
        return exc  # redirects and ready-made responses pass through untouched
    headers = [(k, v) for k, v in exc.get_headers() if k.lower() in _KEPT_HEADERS]
    return render(error_for_status(exc.code, headers,
                                   getattr(exc, "validation_errors", None)))


def _render_unexpected(exc: Exception) -> Response:
    errors_log.error("unhandled error", exc_info=exc)
    return render(GeneralError())


def register_error_handlers(app: Flask) -> None:
    """Render ApiError, Werkzeug HTTP errors and unexpected exceptions in the envelope."""
    app.register_error_handler(ApiError, render)
    app.register_error_handler(HTTPException, _render_http_exception)
    app.register_error_handler(Exception, _render_unexpected)


class _FlaskGuardState:
    """Per-app guard state: settings, the server client, caches, the feed follower, the verifier."""

    def __init__(self, settings: GuardSettings):
        self.settings = settings
        self.server = AuthorizationServerClient(settings.issuer, settings.client_id,
                                                settings.client_secret,
                                                timeout=settings.http_timeout)
        self.api_keys = ApiKeyCache(settings.api_key_cache_seconds)
        self.revocations = RevocationList(settings.revocation_poll_seconds,
                                          settings.revocation_max_outage,
                                          fail_open=settings.revocation_fail_open)
        self.feed = FeedFollower(self.revocations, self.server)
        self._verifier: AccessTokenVerifier | None = None
        self._lock = threading.Lock()
        # The set of usable API keys, followed in a thread of this process (AV01).
        self.key_fingerprints = KeyFingerprints(self.server.api_key_fingerprints) \
            if settings.api_key_fingerprints and settings.has_credentials else None
        self.authenticator = Authenticator(
            realm=settings.realm, verifier=self.verifier, is_revoked=self.is_revoked,
            account_refuses=self.account_refuses,
            api_key_answer=self.api_key_answer,
            introspect_jwt=self.jwt_active if settings.introspect_jwts else None,
            trusted_proxies=settings.trusted_proxies, public_url=settings.public_url,
            clock=settings.clock,
            leeway=settings.leeway, retry_after=settings.retry_after,
            key_filter=self.key_fingerprints, dpop=settings.proof_checker())

    def discover(self) -> None:
        """Look the issuer up once at start: wrong metadata stops the app, no answer does not."""
        try:
            self.server.metadata()
        except ServerUnavailable as exc:
            if isinstance(exc.__cause__, MetadataError):
                raise GuardConfigurationError(
                    f"GUARD_ISSUER {self.settings.issuer!r}: {exc.__cause__}") from None
            log.warning("resource guard: issuer %s not reachable at start (%s); answering 503 "
                        "until it is", self.settings.issuer, exc)

    def verifier(self) -> AccessTokenVerifier:
        """The JWT verifier, built on first use from the issuer's metadata (its jwks_uri)."""
        if self._verifier is None:
            with self._lock:
                if self._verifier is None:
                    settings = self.settings
                    jwks = JWKSCache(self.server.metadata()["jwks_uri"], self.server.http,
                                     timeout=settings.http_timeout,
                                     refetch_cooldown=settings.jwks_refetch_cooldown)
                    self._verifier = AccessTokenVerifier(
                        settings.issuer, settings.audiences, jwks, leeway=settings.leeway,
                        clock=settings.clock)
        return self._verifier

    def is_revoked(self, jti: str) -> bool:
        """The revocation source: the feed, unless switched off."""
        if not self.settings.revocation_check:
            return False
        return self.feed.check(jti)

    def account_refuses(self, claims: dict) -> bool:
        """The account source: the accounts the feed reported disabled (AC04)."""
        return self.settings.revocation_check and self.revocations.refuses_account(claims)

    def api_key_answer(self, key: str) -> dict:
        """The API-key source: introspection, cached at most 5 s."""
        if not self.settings.has_credentials:
            raise InvalidCredential("api key: the guard has no introspection client")
        return self.api_keys.get(key, self.server.introspect)

    def follow_key_fingerprints(self) -> None:
        """Start following the key set in this process (again after a fork)."""
        if self.key_fingerprints is not None:
            self.key_fingerprints.ensure_started()

    def jwt_active(self, token: str) -> bool:
        """Per-request JWT introspection (GUARD_INTROSPECT_JWTS)."""
        return self.server.introspect(token)["active"]

    def close(self) -> None:
        """Stop the followers, then close the HTTP client they and the JWKS cache share
        (tests, embedded use): no connection is left for the garbage collector."""
        self.feed.stop()
        if self.key_fingerprints is not None:
            self.key_fingerprints.stop(self.settings.http_timeout + 1)
        self.server.close()


class ResourceGuard:
    """Flask extension: authenticate once per request, check scopes any-of, render errors."""

    def __init__(self, app: Flask | None = None, catalogue: Catalogue | None = None):
        self.catalogue = catalogue or default_catalogue()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Check the GUARD_* settings, look the issuer up, register the guard's error rendering."""
        settings = GuardSettings.from_mapping(app.config)
        state = _FlaskGuardState(settings)
        state.discover()
        # Scopes an operator added at the server: umbrellas over them work by name here too
        # (``require_scope`` resolves umbrellas when applied: construct the guard first).
        self.catalogue = self.catalogue.extended(
            (state.server._metadata or {}).get("scopes_supported"))
        app.extensions[EXTENSION_KEY] = state
        # The guard's own errors are always rendered (never a 500 for a missing credential).
        app.register_error_handler(ApiError, render)

    def routes(self, app: Flask | None = None, audiences: Iterable[str] | None = None) -> dict:
        """The route manifest (``resource_demo.guard.manifest``) of ``app`` (default: the current
        app): every view this guard protects, with its any-of scopes; ``audiences`` default to
        the app's ``GUARD_AUDIENCES``."""
        app = app or current_app
        if audiences is None:
            state = app.extensions.get(EXTENSION_KEY)
            if state is None:
                raise ValueError("audiences are needed for an app the guard was not set up on")
            audiences = state.settings.audiences
        entries = []
        for rule in app.url_map.iter_rules():
            view = app.view_functions.get(rule.endpoint)
            if getattr(view, "guard", None) is self:
                entries += route_entries(rule.methods or (), rule.rule, view.accepted_scopes,
                                         view.accepts_api_keys)
        return manifest(tuple(audiences), entries)

    @staticmethod
    def close(app: Flask) -> None:
        """Stop the app's followers and close its HTTP client (tests, embedded use)."""
        state = app.extensions.get(EXTENSION_KEY)
        if state is not None:
            state.close()

    # --- decorators -----------------------------------------------------------------

    def require_scope(self, scope: str, *,
                      allow_api_keys: bool = True) -> Callable[[Callable], Callable]:
        """Accept ``scope`` and every umbrella that covers it (the catalogue's one table)."""
        return self.require_any_scope(*sorted(self.catalogue.accepted_by(scope)),
                                      allow_api_keys=allow_api_keys)

    def require_any_scope(self, *scopes: str,
                          allow_api_keys: bool = True) -> Callable[[Callable], Callable]:
        """Accept a credential holding at least one of ``scopes`` (explicit any-of list).

        ``allow_api_keys=False``: an App key gets 403 even when it holds a scope (key
        management, sub-account and balance endpoints refuse API keys).
        """
        accepted = frozenset(scopes)
        if not accepted:
            raise ValueError("require_any_scope needs at least one scope")

        def decorator(view: Callable) -> Callable:
            @functools.wraps(view)
            def wrapper(*args, **kwargs):
                state = self._state()  # one look-up of the app's guard per request
                # Authenticate first: a bad credential is 401 whatever its kind.
                principal = self._authenticate(state)
                check_scopes(principal, accepted, realm=state.settings.realm,
                             allow_api_keys=allow_api_keys)
                g.principal = principal
                answer = view(*args, **kwargs)
                checker = state.authenticator.dpop
                if principal.dpop_jkt is None or checker is None or checker.nonces is None:
                    return answer
                # RFC 9449 §8.2, §9: the nonce to use next rides on the answer.
                response = current_app.make_response(answer)
                response.headers["DPoP-Nonce"] = checker.nonces.current()
                return response

            wrapper.accepted_scopes = accepted
            wrapper.accepts_api_keys = allow_api_keys
            wrapper.guard = self  # the route manifest lists this guard's views
            return wrapper

        return decorator

    # --- authentication -------------------------------------------------------------

    def _state(self) -> _FlaskGuardState:
        return current_app.extensions[EXTENSION_KEY]

    def authenticate(self) -> Principal:
        """Turn the request's credential into a principal, or raise 400/401/503."""
        return self._authenticate(self._state())

    @staticmethod
    def _authenticate(state: _FlaskGuardState) -> Principal:
        state.follow_key_fingerprints()
        return state.authenticator.authenticate(presented())


def accepted_scopes(view: Callable) -> Iterable[str]:
    """The any-of list a protected view declares (for docs pages like ``GET /scopes``)."""
    return getattr(view, "accepted_scopes", frozenset())
