"""The resource guard: one principal from a JWT or an API key, one any-of scope check.

Protect a Flask view::

    guard = ResourceGuard(app)           # or guard.init_app(app) in a factory

    @app.post("/sms/3/messages")
    @guard.require_scope("sms:message:send")    # + every umbrella covering it
    def send():
        principal = current_principal()

Configuration (``app.config``): ``GUARD_ISSUER`` (required), ``GUARD_AUDIENCES`` (default
``[issuer + "/api"]``, the server's default audience), ``GUARD_CLIENT_ID`` and
``GUARD_CLIENT_SECRET`` (a client holding ``tokens:introspect``: API keys, revocation feed),
``GUARD_INTROSPECT_JWTS`` (True: ask the server about every JWT), ``GUARD_TRUSTED_PROXIES``,
``GUARD_API_KEY_CACHE_SECONDS`` (<= 5), ``GUARD_REVOCATION_POLL_SECONDS``,
``GUARD_JWKS_REFETCH_COOLDOWN`` (s between JWKS fetches for an unknown ``kid``, default 10),
``GUARD_HTTP_TIMEOUT``, ``GUARD_LEEWAY``, ``GUARD_REALM``, ``GUARD_CLOCK`` (epoch seconds).

Endpoints that must not take API keys (key management, balance) pass ``allow_api_keys=False``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from flask import Flask, current_app, g, request

from authserver.addresses import address_allowed, client_address
from authserver.api_keys import check_api_key_format
from authserver.scopes import Catalogue, default_catalogue, has_required_scope, parse_scope
from authserver.scopes import ScopeError

from .errors import BadRequest, Forbidden, ServiceUnavailable, Unauthorized
from .jwks import JWKSCache, JWKSUnavailable, UnknownKey
from .server_client import AuthorizationServerClient, RevocationList, ServerUnavailable
from .verifier import AccessTokenVerifier, InvalidToken

log = logging.getLogger(__name__)
EXTENSION_KEY = "resource_demo.guard"
MAX_API_KEY_CACHE_ENTRIES = 10_000
#: Where a credential must not be sent (URLs leak into logs); never used, and together with an
#: Authorization header the request is refused (SECURITY.md RS14, RS15, AK09).
CREDENTIAL_PARAMETERS = ("access_token", "api_key", "apiKey")


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: one shape for both credential kinds."""

    subject: str
    kind: str  # "jwt" or "api_key"
    client_id: str  # the OAuth client id, or the API key id
    scopes: frozenset[str]
    claims: dict = field(default_factory=dict, compare=False, repr=False)


def current_principal() -> Principal | None:
    """The principal of the current request (None outside a protected view)."""
    return g.get("principal")


class _InvalidCredential(Exception):
    """The credential is unknown, malformed, expired, revoked or used from a wrong address."""


class ApiKeyCache:
    """Introspection answers for API keys, by SHA-256 of the key, for at most ``ttl`` seconds."""

    def __init__(self, ttl: float, max_entries: int = MAX_API_KEY_CACHE_ENTRIES):
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, dict]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, fetch: Callable[[str], dict]) -> dict:
        """The cached answer for ``key`` or a fresh one from ``fetch``."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(digest)
            if entry is not None and entry[0] > now:
                return entry[1]
        answer = fetch(key)
        with self._lock:
            self._entries[digest] = (now + self.ttl, answer)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return answer


class ResourceGuard:
    """Flask extension: authenticate once per request, check scopes any-of, render errors."""

    def __init__(self, app: Flask | None = None, catalogue: Catalogue | None = None):
        self.catalogue = catalogue or default_catalogue()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read the GUARD_* settings and build the verifier, caches and feed follower."""
        config = app.config
        issuer = config["GUARD_ISSUER"]
        timeout = config.get("GUARD_HTTP_TIMEOUT", 3.0)
        server = AuthorizationServerClient(issuer, config.get("GUARD_CLIENT_ID"),
                                           config.get("GUARD_CLIENT_SECRET"), timeout=timeout)
        state = _GuardState(
            server=server,
            audiences=tuple(config.get("GUARD_AUDIENCES") or (issuer.rstrip("/") + "/api",)),
            leeway=config.get("GUARD_LEEWAY", 30),
            introspect_jwts=config.get("GUARD_INTROSPECT_JWTS", False),
            trusted_proxies=tuple(config.get("GUARD_TRUSTED_PROXIES", ())),
            api_keys=ApiKeyCache(min(float(config.get("GUARD_API_KEY_CACHE_SECONDS", 5)), 5.0)),
            revocations=RevocationList(server, config.get("GUARD_REVOCATION_POLL_SECONDS", 2.0)),
            realm=config.get("GUARD_REALM", "api"),
            clock=config.get("GUARD_CLOCK", time.time),
            jwks_refetch_cooldown=float(config.get("GUARD_JWKS_REFETCH_COOLDOWN", 10.0)),
        )
        app.extensions[EXTENSION_KEY] = state

    @staticmethod
    def close(app: Flask) -> None:
        """Stop the app's revocation-feed follower (tests, embedded use)."""
        state = app.extensions.get(EXTENSION_KEY)
        if state is not None:
            state.revocations.stop()

    # --- decorators -----------------------------------------------------------------

    def require_scope(self, scope: str, *,
                      allow_api_keys: bool = True) -> Callable[[Callable], Callable]:
        """Accept ``scope`` and every umbrella that covers it (the catalogue's one table)."""
        return self.require_any_scope(*sorted(self.catalogue.accepted_by(scope)),
                                      allow_api_keys=allow_api_keys)

    def require_any_scope(self, *scopes: str,
                          allow_api_keys: bool = True) -> Callable[[Callable], Callable]:
        """Accept a credential holding at least one of ``scopes`` (explicit any-of list).

        ``allow_api_keys=False``: an App key gets 403 even when it holds a scope (SCOPES.md:
        key management, sub-account and balance endpoints refuse API keys).
        """
        accepted = frozenset(scopes)
        if not accepted:
            raise ValueError("require_any_scope needs at least one scope")

        def decorator(view: Callable) -> Callable:
            @functools.wraps(view)
            def wrapper(*args, **kwargs):
                # Authenticate first: a bad credential is 401 whatever its kind.
                principal = self.authenticate()
                refused_kind = principal.kind == "api_key" and not allow_api_keys
                if refused_kind or not has_required_scope(principal.scopes, accepted):
                    # RFC 6750 §3.1: 403 with the scopes that would let the caller in.
                    raise Forbidden(headers=self._challenge(
                        error="insufficient_scope", scope=" ".join(sorted(accepted))))
                g.principal = principal
                return view(*args, **kwargs)

            wrapper.accepted_scopes = accepted
            wrapper.accepts_api_keys = allow_api_keys
            return wrapper

        return decorator

    # --- authentication -------------------------------------------------------------

    def _state(self) -> _GuardState:
        return current_app.extensions[EXTENSION_KEY]

    def _challenge(self, **params: str) -> dict:
        parts = [f'realm="{self._state().realm}"']
        parts += [f'{name}="{value}"' for name, value in params.items()]
        return {"WWW-Authenticate": "Bearer " + ", ".join(parts)}

    def authenticate(self) -> Principal:
        """Turn the request's credential into a principal, or raise 400/401/503."""
        headers = request.headers.getlist("Authorization")
        # HTTP servers fold repeated header lines into one, comma-joined (RFC 9110 §5.3);
        # a single token68 credential never contains a comma.
        folded = len(headers) > 1 or any("," in value for value in headers)
        # RFC 6750 §2 / §3.1: more than one way of sending credentials is invalid_request.
        if folded or (headers and _credential_outside_header()):
            log.info("credential refused: more than one credential was sent")
            raise BadRequest(headers=self._challenge(error="invalid_request"))
        if not headers:
            # RFC 6750 §3.1: no error code when the request carried no credentials (RS11, RS15).
            raise Unauthorized(headers=self._challenge())
        scheme, _, credential = headers[0].strip().partition(" ")
        credential = credential.strip()
        try:
            if scheme.lower() == "bearer" and credential:
                return self._from_jwt(credential)
            if scheme.lower() == "app" and credential:
                return self._from_api_key(credential)
            raise _InvalidCredential("unsupported authorization scheme")
        except _InvalidCredential as exc:
            log.info("credential refused: %s", exc)
            raise Unauthorized(headers=self._challenge(error="invalid_token")) from None
        except (ServerUnavailable, JWKSUnavailable) as exc:
            log.warning("authorization server unavailable: %s", exc)
            raise ServiceUnavailable() from None

    def _from_jwt(self, token: str) -> Principal:
        state = self._state()
        state.revocations_started()
        try:
            claims = state.verifier().verify(token)
        except (InvalidToken, UnknownKey) as exc:
            raise _InvalidCredential(f"jwt: {exc}") from None
        if claims["jti"] in state.revocations:
            raise _InvalidCredential("jwt: revoked")
        if state.introspect_jwts and not state.server.introspect(token)["active"]:
            raise _InvalidCredential("jwt: inactive at the authorization server")
        return Principal(subject=claims["sub"], kind="jwt", client_id=claims["client_id"],
                         scopes=_scopes(claims.get("scope", "")), claims=claims)

    def _from_api_key(self, key: str) -> Principal:
        state = self._state()
        # A mistyped or forged key fails its checksum: refused without asking the server.
        if not check_api_key_format(key):
            raise _InvalidCredential("api key: malformed")
        answer = state.api_keys.get(key, state.server.introspect)
        if not answer.get("active"):
            raise _InvalidCredential("api key: inactive")
        now = state.clock()
        exp, nbf = answer.get("exp"), answer.get("nbf")
        # The cached answer may be up to 5 s old: re-check the window against our clock,
        # with the same leeway as JWTs (SECURITY.md RL4: a clock 30 s off must not refuse
        # a key the server has just called active).
        if not isinstance(exp, int) or exp + state.leeway <= now or (
                isinstance(nbf, int) and nbf - state.leeway > now):
            raise _InvalidCredential("api key: outside its validity window")
        allowed = answer.get("allowed_ips") or []
        caller = client_address(request.remote_addr, request.headers.get("X-Forwarded-For"),
                                state.trusted_proxies)
        if not isinstance(allowed, list) or not address_allowed(allowed, caller):
            raise _InvalidCredential("api key: address not allowed")
        key_id = str(answer.get("client_id", ""))
        return Principal(subject=str(answer.get("sub", key_id)), kind="api_key",
                         client_id=key_id, scopes=_scopes(answer.get("scope", "")), claims=answer)


def _credential_outside_header() -> bool:
    """True when the query or a form body carries a credential (RFC 6750 §2.2, §2.3)."""
    if any(name in request.args for name in CREDENTIAL_PARAMETERS):
        return True
    return request.mimetype == "application/x-www-form-urlencoded" and any(
        name in request.form for name in CREDENTIAL_PARAMETERS)


def _scopes(value: object) -> frozenset[str]:
    """Scopes of a credential: a space-separated string, or nothing (SC08, SC09)."""
    if not isinstance(value, str):
        return frozenset()
    try:
        return frozenset(parse_scope(value))
    except ScopeError:
        return frozenset(name for name in value.split(" ") if name)


@dataclass
class _GuardState:
    """Per-app guard state: the server client, caches and the lazily built verifier."""

    server: AuthorizationServerClient
    audiences: tuple[str, ...]
    leeway: float
    introspect_jwts: bool
    trusted_proxies: tuple[str, ...]
    api_keys: ApiKeyCache
    revocations: RevocationList
    realm: str
    clock: Callable[[], float]
    jwks_refetch_cooldown: float = 10.0
    _verifier: AccessTokenVerifier | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def verifier(self) -> AccessTokenVerifier:
        """The JWT verifier, built on first use from the issuer's metadata (its jwks_uri)."""
        if self._verifier is None:
            with self._lock:
                if self._verifier is None:
                    jwks = JWKSCache(self.server.metadata()["jwks_uri"],
                                     timeout=self.server.timeout,
                                     refetch_cooldown=self.jwks_refetch_cooldown)
                    self._verifier = AccessTokenVerifier(
                        self.server.issuer, self.audiences, jwks, leeway=self.leeway,
                        clock=self.clock)
        return self._verifier

    def revocations_started(self) -> None:
        """Follow the revocation feed when the guard has credentials for it."""
        if self.server.auth is not None:
            self.revocations.ensure_started()


def accepted_scopes(view: Callable) -> Iterable[str]:
    """The any-of list a protected view declares (for docs pages like ``GET /scopes``)."""
    return getattr(view, "accepted_scopes", frozenset())
