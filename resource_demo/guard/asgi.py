"""The resource guard for ASGI apps (FastAPI, Starlette): the Flask guard's semantics, async.

FastAPI: a dependency, so the app's OpenAPI shows the security schemes and each route's scopes::

    app = FastAPI()
    guard = ResourceGuard(app, {"GUARD_ISSUER": ..., "GUARD_CLIENT_ID": ..., "GUARD_CLIENT_SECRET": ...})

    @app.post("/sms/3/messages")
    async def send(principal: Principal = Security(guard.scope("sms:message:send"))):
        ...

Starlette: a route decorator, the principal in ``request.state.principal``::

    @guard.require_scope("sms:message:send")
    async def send(request): ...

The same ``GUARD_*`` settings as the Flask guard, checked at construction (a bad one raises
``GuardConfigurationError`` naming it); the same envelope, challenges and 503s. Every call to the
issuer (metadata, JWKS, introspection, revocation feed) is awaited on ``httpx.AsyncClient``:
nothing blocks the event loop except the one metadata look-up at construction, before serving.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, quote

import httpx
from starlette.requests import Request
from starlette.responses import Response

from resource_demo.guard.config import GuardConfigurationError, GuardSettings
from resource_demo.guard.dpop import PATH_SAFE
from resource_demo.guard.errors import ApiError, SourceUnavailable
from resource_demo.guard.jwks import AsyncJWKSCache, JWKSUnavailable, MetadataError, discover_metadata
from resource_demo.guard.key_fingerprints import KeyFingerprints
from resource_demo.guard.manifest import manifest, route_entries
from resource_demo.guard.principal import (
    CREDENTIAL_PARAMETERS,
    AsyncAuthenticator,
    InvalidCredential,
    Principal,
    PresentedCredentials,
    check_scopes,
)
from resource_demo.guard.revocation import AsyncFeedFollower, RevocationList
from resource_demo.guard.scopes import Catalogue, default_catalogue
from resource_demo.guard.server_client import (
    ApiKeyCache,
    AsyncAuthorizationServerClient,
    AuthorizationServerClient,
)
from resource_demo.guard.verifier import AccessTokenVerifier

log = logging.getLogger(__name__)
FORM = "application/x-www-form-urlencoded"
#: The request headers ``presented`` reads on every request (the DPoP path reads more).
_READ_HEADERS = frozenset({b"authorization", b"dpop", b"x-forwarded-for", b"content-type"})
#: The OpenAPI security schemes the guard declares (``_security_schemes``).
OAUTH2_SCHEME, APP_KEY_SCHEME = "OAuth2ClientCredentials", "AppKey"

__all__ = ["ResourceGuard", "Principal", "GuardConfigurationError", "render", "presented",
           "current_principal"]


def render(exc: ApiError) -> Response:
    """An ``ApiError`` as a Starlette response (the envelope bytes and its headers)."""
    response = Response(exc.body(), exc.status_code, media_type="application/json")
    for name, value in exc.headers:
        response.headers.append(name, value)
    return response


async def _render_handler(request: Request, exc: Exception) -> Response:
    return render(exc)  # type: ignore[arg-type]


async def presented(request: Request) -> PresentedCredentials:
    """The credentials an ASGI request carries, for an ``AsyncAuthenticator``.

    Read from the ASGI scope and headers directly (no ``request.url`` or ``query_params``
    objects): this runs on every guarded request. The request's URI is read only when a DPoP
    proof comes with it (RFC 9449 §4.3: the proof names it).
    """
    scope = request.scope
    # One pass over the raw header list (ASGI servers give the names in lower case), not one
    # per header read through Starlette's Headers.
    found: dict[bytes, list[str]] = {}
    for name, value in scope.get("headers", ()):
        if name in _READ_HEADERS:
            found.setdefault(name, []).append(value.decode("latin-1"))
    authorization = found.get(b"authorization", [])
    forwarded_for = found[b"x-forwarded-for"][0] if b"x-forwarded-for" in found else None
    elsewhere = False
    if authorization:
        # RFC 6750 §2.2, §2.3: a credential in the query or a form body as well.
        query = scope.get("query_string", b"")
        if query:
            names = {name for name, _ in parse_qsl(query.decode("latin-1"),
                                                   keep_blank_values=True)}
            elsewhere = any(name in names for name in CREDENTIAL_PARAMETERS)
        content_type = found.get(b"content-type", [""])[0].split(";")[0].strip().lower()
        if not elsewhere and content_type == FORM:
            # Read once and cached on the request (the endpoint can still read it); parsed here
            # so the guard needs no multipart library.
            body = (await request.body()).decode("utf-8", "replace")
            names = {name for name, _ in parse_qsl(body, keep_blank_values=True)}
            elsewhere = any(name in names for name in CREDENTIAL_PARAMETERS)
    client = scope.get("client")
    peer = client[0] if client else None
    dpop = found.get(b"dpop")
    if not dpop:
        return PresentedCredentials(authorization, lambda: elsewhere, peer, forwarded_for)
    headers = request.headers
    path = scope.get("root_path", "") + scope.get("path", "/")
    return PresentedCredentials(
        authorization, lambda: elsewhere, peer, forwarded_for, dpop=dpop,
        method=request.method, scheme=scope.get("scheme", "http"),
        host=headers.get("host") or request.url.netloc,
        path=quote(path, safe=PATH_SAFE),
        forwarded_proto=headers.get("x-forwarded-proto"),
        forwarded_host=headers.get("x-forwarded-host"))


def current_principal(request: Request) -> Principal | None:
    """The principal a guarded Starlette endpoint was called with."""
    return getattr(request.state, "principal", None)


class _PerLoopClient:
    """One ``httpx.AsyncClient`` per event loop (a client's connections belong to one loop)."""

    def __init__(self) -> None:
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] \
            = weakref.WeakKeyDictionary()

    def __call__(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = httpx.AsyncClient()
        return client

    async def aclose(self) -> None:
        """Close the running loop's client (each loop's must be closed on that loop)."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()


class ResourceGuard:
    """ASGI guard: authenticate once per request, check scopes any-of, render errors."""

    def __init__(self, app: Any = None, config: Mapping[str, Any] | None = None, *,
                 catalogue: Catalogue | None = None, **settings: Any):
        self.catalogue = catalogue or default_catalogue()
        self.settings = GuardSettings.from_mapping({**(config or {}), **settings})
        s = self.settings
        self._http = _PerLoopClient()
        self.server = AsyncAuthorizationServerClient(s.issuer, s.client_id, s.client_secret,
                                                     timeout=s.http_timeout, client=self._http)
        self.api_keys = ApiKeyCache(s.api_key_cache_seconds)
        self.revocations = RevocationList(s.revocation_poll_seconds, s.revocation_max_outage,
                                          fail_open=s.revocation_fail_open)
        self.feed = AsyncFeedFollower(self.revocations, self.server)
        self.jwks: AsyncJWKSCache | None = None
        self._verifier: AccessTokenVerifier | None = None
        # The set of usable API keys (AV01), followed by a thread with its own blocking
        # client, so that the event loop never waits for it.
        self._fingerprint_server = AuthorizationServerClient(
            s.issuer, s.client_id, s.client_secret, timeout=s.http_timeout)
        self.key_fingerprints = KeyFingerprints(self._fingerprint_server.api_key_fingerprints) \
            if s.api_key_fingerprints and s.has_credentials else None
        self.authenticator = AsyncAuthenticator(
            realm=s.realm, verifier=lambda: self._verifier, is_revoked=self._is_revoked,
            account_refuses=self._account_refuses,
            api_key_answer=self._api_key_answer,
            introspect_jwt=self._jwt_active if s.introspect_jwts else None,
            trusted_proxies=s.trusted_proxies, public_url=s.public_url, clock=s.clock,
            leeway=s.leeway,
            prepare_key=self._prepare_key, retry_after=s.retry_after,
            key_filter=self.key_fingerprints, dpop=s.proof_checker(asynchronous=True))
        self._discover()
        self._fingerprint_server._metadata = self.server._metadata
        # Scopes an operator added at the server (see docs/guard.md): declare routes after this.
        self.catalogue = self.catalogue.extended((self.server._metadata or {}).get("scopes_supported"))
        self._scheme = None
        # True once a FastAPI app's OpenAPI document gets the schemes from this guard
        # (_declare_in_document): dependencies made after that declare none themselves.
        self._completes_documents = False
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Any) -> None:
        """Render the guard's errors in the app (FastAPI or Starlette): never a 500 for them;
        close the guard when the app's lifespan ends (after the app's own shutdown)."""
        app.add_exception_handler(ApiError, _render_handler)
        router = getattr(app, "router", None)
        if router is not None and hasattr(router, "lifespan_context"):
            router.lifespan_context = self._closing(router.lifespan_context)
        if callable(getattr(app, "openapi", None)) and hasattr(app, "openapi_schema"):
            self._declare_in_document(app)

    def _declare_in_document(self, app: Any) -> None:
        """Put the security schemes into ``app``'s OpenAPI document when FastAPI builds it.

        The alternative, the schemes as sub-dependencies of each guard dependency, makes
        FastAPI resolve two more dependencies on every request (about half of what the guard
        costs a FastAPI request). Declared here instead, routes made after this carry none:
        the document lists the same schemes and per-operation requirements either way.
        """
        build = app.openapi

        def openapi() -> dict[str, Any]:
            if app.openapi_schema is not None:  # FastAPI's cache: completed already
                return app.openapi_schema
            document = build()
            self._add_security(app, document)
            return document

        app.openapi = openapi
        self._completes_documents = True

    def _add_security(self, app: Any, document: dict[str, Any]) -> None:
        """Each operation of a route guarded by a dependency of this guard gets its
        requirements (the route's scopes; the App key where keys count); the document's
        components get the schemes used."""
        from fastapi.encoders import jsonable_encoder

        paths, used = document.get("paths", {}), set()
        for route in getattr(app, "routes", ()):
            marks = [mark for mark in self._marks(route)
                     if getattr(mark, "schemes_in_document", False)]
            if not marks:
                continue
            operations = paths.get(getattr(route, "path_format", None), {})
            for method in sorted(getattr(route, "methods", None) or ()):  # none on websockets
                operation = operations.get(method.lower())
                if operation is None:  # include_in_schema=False
                    continue
                security = operation.setdefault("security", [])
                for mark in marks:
                    requirements = [{OAUTH2_SCHEME: sorted(mark.accepted_scopes)}]
                    if mark.accepts_api_keys:
                        requirements.append({APP_KEY_SCHEME: []})
                    for requirement in requirements:
                        if requirement not in security:
                            security.append(requirement)
                        used.update(requirement)
        if not used:
            return
        schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
        for scheme in self._scheme or ():
            name = scheme.scheme_name
            if name in used and name not in schemes:
                schemes[name] = jsonable_encoder(scheme.model, by_alias=True, exclude_none=True)

    def _closing(self, lifespan: Callable) -> Callable:
        @asynccontextmanager
        async def lifespan_then_close(app: Any) -> AsyncIterator[Any]:
            try:
                async with lifespan(app) as state:
                    yield state
            finally:
                await self.aclose()
        return lifespan_then_close

    def _discover(self) -> None:
        """Look the issuer up once before serving: wrong metadata stops the app, no answer does not."""
        with httpx.Client() as client:
            try:
                self.server._metadata = discover_metadata(self.settings.issuer, client,
                                                          self.settings.http_timeout)
            except MetadataError as exc:
                raise GuardConfigurationError(f"GUARD_ISSUER {self.settings.issuer!r}: {exc}") from None
            except JWKSUnavailable as exc:
                log.warning("resource guard: issuer %s not reachable at start (%s); answering 503 "
                            "until it is", self.settings.issuer, exc)

    # --- sources --------------------------------------------------------------------

    async def _ready(self) -> None:
        if self._verifier is None:
            metadata = await self.server.metadata()  # ServerUnavailable: 503
            s = self.settings
            self.jwks = AsyncJWKSCache(metadata["jwks_uri"], self._http, timeout=s.http_timeout,
                                       refetch_cooldown=s.jwks_refetch_cooldown)
            self._verifier = AccessTokenVerifier(s.issuer, s.audiences, self.jwks,
                                                 leeway=s.leeway, clock=s.clock)

    async def _prepare_key(self, kid: str) -> None:
        await self.jwks.ensure(kid)

    async def _is_revoked(self, jti: str) -> bool:
        if not self.settings.revocation_check:
            return False
        return await self.feed.check(jti)

    def _account_refuses(self, claims: dict) -> bool:
        return self.settings.revocation_check and self.revocations.refuses_account(claims)

    async def _api_key_answer(self, key: str) -> dict:
        if not self.settings.has_credentials:
            raise InvalidCredential("api key: the guard has no introspection client")
        return await self.api_keys.aget(key, self.server.introspect)

    async def _jwt_active(self, token: str) -> bool:
        return (await self.server.introspect(token))["active"]

    async def authenticate(self, request: Request) -> Principal:
        """The principal of the request's one credential, or raise 400/401/503."""
        try:
            await self._ready()
        except SourceUnavailable as exc:
            raise self.authenticator.unavailable(exc) from None
        if self.key_fingerprints is not None:
            self.key_fingerprints.ensure_started()
        return await self.authenticator.authenticate(await presented(request))

    def _next_nonce(self, principal: Principal, response: Response) -> None:
        """RFC 9449 §8.2, §9: a DPoP request's answer carries the nonce to use next."""
        checker = self.authenticator.dpop
        if principal.dpop_jkt is not None and checker is not None and checker.nonces is not None:
            response.headers["DPoP-Nonce"] = checker.nonces.current()

    async def aclose(self) -> None:
        """Stop the followers and close the HTTP clients (app shutdown: done by the app's
        lifespan; tests and apps served without one call it)."""
        await self.feed.stop()
        if self.key_fingerprints is not None:
            await asyncio.to_thread(self.key_fingerprints.stop, self.settings.http_timeout + 1)
        self._fingerprint_server.close()
        await self._http.aclose()

    # --- declarations ---------------------------------------------------------------

    def routes(self, app: Any) -> dict:
        """The route manifest (``resource_demo.guard.manifest``) of a FastAPI or Starlette app:
        every route this guard protects (dependency or decorator) with its any-of scopes."""
        entries = []
        for route in getattr(app, "routes", ()):
            methods, path = getattr(route, "methods", None), getattr(route, "path", None)
            if not methods or path is None:
                continue
            for marked in self._marks(route):
                entries += route_entries(methods, path, marked.accepted_scopes,
                                         marked.accepts_api_keys)
        return manifest(self.settings.audiences, entries)

    def _marks(self, route: Any) -> list:
        """This guard's decorated endpoint or dependencies of a route (FastAPI dependants nest)."""
        found = [route.endpoint] if getattr(getattr(route, "endpoint", None), "guard", None) \
            is self else []
        stack = [getattr(route, "dependant", None)]
        while stack:
            dependant = stack.pop()
            if dependant is None:
                continue
            if getattr(dependant.call, "guard", None) is self:
                found.append(dependant.call)
            stack.extend(dependant.dependencies)
        return list({id(mark): mark for mark in found}.values())

    def accepted(self, scope: str) -> frozenset[str]:
        """What an endpoint declaring ``scope`` accepts: the scope and each umbrella over it."""
        return self.catalogue.accepted_by(scope)

    def scope(self, scope: str, *, allow_api_keys: bool = True) -> Callable[..., Awaitable[Principal]]:
        """FastAPI dependency accepting ``scope`` and every umbrella that covers it."""
        return self.scopes(*sorted(self.accepted(scope)), allow_api_keys=allow_api_keys)

    def scopes(self, *scopes: str, allow_api_keys: bool = True) -> Callable[..., Awaitable[Principal]]:
        """FastAPI dependency accepting a credential holding one of ``scopes`` (explicit any-of).

        Use it with ``Security(...)`` or ``Depends(...)``; the route's OpenAPI operation lists
        the OAuth 2.0 client-credentials scheme with these scopes (and the App key scheme when
        API keys are accepted).
        """
        from fastapi import Security

        accepted = frozenset(scopes)
        if not accepted:
            raise ValueError("scopes() needs at least one scope")
        oauth2, app_key = self._security_schemes(accepted)

        async def guard_dependency(
            request: Request,
            response: Response = None,  # type: ignore[assignment]
            _token: Any = Security(oauth2, scopes=sorted(accepted)),
            _key: Any = Security(app_key) if allow_api_keys else None,
        ) -> Principal:
            principal = await self.authenticate(request)
            check_scopes(principal, accepted, realm=self.settings.realm,
                         allow_api_keys=allow_api_keys)
            request.state.principal = principal
            if response is not None:
                self._next_nonce(principal, response)
            return principal

        # FastAPI resolves every parameter on every request: keep only those this guard uses
        # (the answer's headers only for DPoP nonces; the App scheme only when keys count; no
        # scheme at all when the app's document gets them from the guard, _declare_in_document).
        unused = set() if self._sends_nonces() else {"response"}
        in_document = self._completes_documents
        if in_document:
            unused |= {"_token", "_key"}
        elif not allow_api_keys:  # no App scheme in the signature (nor in the OpenAPI)
            unused.add("_key")
        signature = inspect.signature(guard_dependency)
        guard_dependency.__signature__ = signature.replace(
            parameters=[p for p in signature.parameters.values() if p.name not in unused])
        guard_dependency.accepted_scopes = accepted
        guard_dependency.accepts_api_keys = allow_api_keys
        guard_dependency.schemes_in_document = in_document
        guard_dependency.guard = self
        return guard_dependency

    def _sends_nonces(self) -> bool:
        checker = self.authenticator.dpop
        return checker is not None and checker.nonces is not None

    def _security_schemes(self, accepted: frozenset[str]):
        from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
        from fastapi.security import APIKeyHeader, OAuth2

        class DeclaredOAuth2(OAuth2):
            """In the OpenAPI only: the guard reads the header itself (a call per request
            that reads nothing costs FastAPI less than ``OAuth2``'s own)."""

            async def __call__(self) -> None:
                return None

        class DeclaredAppKey(APIKeyHeader):
            """In the OpenAPI only, as ``DeclaredOAuth2``."""

            async def __call__(self) -> None:
                return None

        if self._scheme is None:
            metadata = self.server._metadata or {}
            token_url = metadata.get("token_endpoint") or self.settings.issuer.rstrip("/") + "/oauth2/token"
            flows = OAuthFlows(clientCredentials=OAuthFlowClientCredentials(tokenUrl=token_url, scopes={}))
            self._scheme = (
                DeclaredOAuth2(flows=flows, scheme_name=OAUTH2_SCHEME, auto_error=False,
                       description="Bearer access token (RFC 9068 JWT) from the authorization server"),
                DeclaredAppKey(name="Authorization", scheme_name=APP_KEY_SCHEME, auto_error=False,
                             description="Authorization: App <api key>"),
            )
        oauth2 = self._scheme[0]
        known = oauth2.model.flows.clientCredentials.scopes
        for name in accepted:
            entry = self.catalogue.scopes.get(name)
            known.setdefault(name, entry.description if entry else name)
        return self._scheme

    def require_scope(self, scope: str, *, allow_api_keys: bool = True) -> Callable[[Callable], Callable]:
        """Starlette endpoint decorator accepting ``scope`` and every umbrella covering it."""
        return self.require_any_scope(*sorted(self.accepted(scope)), allow_api_keys=allow_api_keys)

    def require_any_scope(self, *scopes: str, allow_api_keys: bool = True) -> Callable[[Callable], Callable]:
        """Starlette endpoint decorator: an explicit any-of list; errors rendered in the envelope."""
        accepted = frozenset(scopes)
        if not accepted:
            raise ValueError("require_any_scope needs at least one scope")

        def decorator(endpoint: Callable) -> Callable:
            @functools.wraps(endpoint)
            async def wrapper(request: Request) -> Response:
                try:
                    principal = await self.authenticate(request)
                    check_scopes(principal, accepted, realm=self.settings.realm,
                                 allow_api_keys=allow_api_keys)
                except ApiError as exc:
                    return render(exc)
                request.state.principal = principal
                response = await endpoint(request)
                self._next_nonce(principal, response)
                return response

            wrapper.accepted_scopes = accepted
            wrapper.accepts_api_keys = allow_api_keys
            wrapper.guard = self
            return wrapper

        return decorator
