"""Real credentials for the resource-guard tests: a live authorization server, JWTs and API keys it
issued, guarded apps started against it, and a count of what the guard asked the server.

``auth_server`` is the same server as conftest's ``live_server`` (same app factory, database and
issuer-is-own-URL setup) but lives for a whole test module, one per backend: starting and
stopping ``live_server`` costs about a second per test (its shutdown polls every 0.5 s), and a
module's tests share credentials, which are minted once per scope set (``credentials``).
Tests that stop the server, rotate keys or need a clean database use ``live_server``.
Import the fixtures into a test module: ``from guard_support import auth_server, credentials``.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta

import httpx
import jwt
import pytest
import requests
import sqlalchemy as sa
from fastapi import FastAPI, Request, Security
from conftest import BACKENDS, LiveServer, _empty_tables, _make_app, basic_auth
from demo_support import serve
from flask import Flask

from authserver.clock import utcnow
from authserver.credentials import api_keys
from authserver.credentials import clients as client_service
from authserver.credentials.signing_keys import active_signing_key
from authserver.oauth2.tokens import encode_access_token
from authserver.storage.db import db
from authserver.storage.models import ApiKey
from resource_demo.guard.flask import (
    EXTENSION_KEY,
    ResourceGuard,
    current_principal,
    register_error_handlers,
)

FORBIDDEN = '{"requestError":{"serviceException":{"messageId":"FORBIDDEN","text":"Forbidden"}}}'
UNAUTHORIZED = ('{"requestError":{"serviceException":'
                '{"messageId":"UNAUTHORIZED","text":"Invalid login details"}}}')
BAD_REQUEST = ('{"requestError":{"serviceException":'
               '{"messageId":"BAD_REQUEST","text":"Bad request"}}}')
SERVICE_UNAVAILABLE = ('{"requestError":{"serviceException":{"messageId":"SERVICE_UNAVAILABLE",'
                       '"text":"Service temporarily unavailable"}}}')
SCHEMES = {"jwt": "Bearer", "api_key": "App"}
INTROSPECT = "/oauth2/introspect"
JWKS = "/.well-known/jwks.json"


class RequestCounter:
    """WSGI middleware on the authorization server: requests seen, by path."""

    def __init__(self, app: Flask):
        self._wsgi_app = app.wsgi_app
        self._lock = threading.Lock()
        self.paths: Counter[str] = Counter()
        app.wsgi_app = self

    def __call__(self, environ, start_response):
        with self._lock:
            self.paths[environ.get("PATH_INFO", "")] += 1
        return self._wsgi_app(environ, start_response)

    def __getitem__(self, path: str) -> int:
        with self._lock:
            return self.paths[path]


def counted(server) -> RequestCounter:
    """The server's request counter (installed on first use)."""
    counter = getattr(server, "requests", None)
    if counter is None:
        counter = server.requests = RequestCounter(server.app)
    return counter


@pytest.fixture(scope="module", params=BACKENDS)
def auth_server(request, database_urls, tmp_path_factory):
    """A live authorization server for a whole test module (one per backend)."""
    application = _make_app(database_urls[request.param],
                            tmp_path_factory.mktemp(f"auth-server-{request.param}"))
    server = LiveServer(application)
    application.config["ISSUER"] = server.url
    application.config["DEFAULT_AUDIENCE"] = server.url + "/api"
    with application.app_context():
        _empty_tables()
    server.app = application
    server.backend = request.param
    counted(server)
    server.start()
    yield server
    server.stop()
    server.server.server_close()
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


class Credentials:
    """Mints real credentials at one authorization server; cached by scope set unless ``fresh``."""

    def __init__(self, server):
        self.server = server
        self._cache: dict[tuple, object] = {}
        self._secrets: dict[str, str] = {}  # client_id -> secret, for revocation
        self._lock = threading.RLock()  # a JWT's make() asks for its client under the lock

    def _cached(self, key: tuple, make: Callable[[], object], fresh: bool):
        if fresh:
            return make()
        with self._lock:
            if key not in self._cache:
                self._cache[key] = make()
            return self._cache[key]

    def client(self, scope: str, *, fresh: bool = False, **options) -> tuple[str, str]:
        """A registered client holding ``scope``: (client_id, secret)."""
        def make():
            with self.server.app.app_context():
                record, secret = client_service.create_client(
                    name="guard test client", scope=scope, actor="test", **options)
                client_id = record.client_id
            self._secrets[client_id] = secret
            return client_id, secret
        return self._cached(("client", scope, repr(sorted(options.items()))), make, fresh)

    def token_response(self, client_id: str, secret: str, **form) -> requests.Response:
        """POST /oauth2/token (client_credentials, Basic auth) over HTTP."""
        form.setdefault("grant_type", "client_credentials")
        return requests.post(self.server.url + "/oauth2/token", data=form, timeout=10,
                             headers=basic_auth(client_id, secret))

    def jwt(self, scope: str, *, fresh: bool = False, resource: str | None = None,
            **client_options) -> str:
        """An access token for a client allowed ``scope`` (catalogue names, space-separated)."""
        def make():
            client_id, secret = self.client(scope, fresh=fresh, **client_options)
            form = {"resource": resource} if resource else {}
            response = self.token_response(client_id, secret, **form)
            assert response.status_code == 200, response.text
            return response.json()["access_token"]
        key = ("jwt", scope, resource, repr(sorted(client_options.items())))
        return self._cached(key, make, fresh)

    def api_key(self, scope: str, *, fresh: bool = False, **key_options) -> str:
        """An API key holding ``scope`` (catalogue names, space-separated)."""
        def make():
            with self.server.app.app_context():
                _, secret = api_keys.create_api_key(name="guard test key", scopes=scope.split(),
                                                    actor="test", **key_options)
                return secret
        return self._cached(("api_key", scope, repr(sorted(key_options.items()))), make, fresh)

    def raw_scope(self, kind: str, scope: str) -> str:
        """A credential whose scope is exactly the string ``scope``, which the server would never
        issue (not catalogue names, odd separators, empty): a JWT signed by the server's own key
        and token encoder, or a real key whose stored scope is rewritten in the database."""
        def make():
            with self.server.app.app_context():
                if kind == "jwt":
                    client = client_service.get_client(self.client("web:sdk")[0])
                    audience = self.server.app.config["DEFAULT_AUDIENCE"]
                    return encode_access_token(client, [scope], audience)["access_token"]
                record, secret = api_keys.create_api_key(name="raw scope key",
                                                         scopes=["web:sdk"], actor="test")
                db.session.execute(sa.update(ApiKey).where(ApiKey.id == record.id)
                                   .values(scope=scope))
                db.session.commit()
                return secret
        return self._cached(("raw", kind, scope), make, False)

    def credential(self, kind: str, scope: str, **options) -> str:
        """A JWT or an API key holding ``scope``."""
        return self.jwt(scope, **options) if kind == "jwt" else self.api_key(scope, **options)

    def header(self, kind: str, scope: str, **options) -> dict:
        """The Authorization header carrying a ``kind`` credential holding ``scope``."""
        return {"Authorization": f"{SCHEMES[kind]} {self.credential(kind, scope, **options)}"}

    def introspector(self, **options) -> tuple[str, str]:
        """A fresh resource-server client holding ``tokens:introspect`` (each guard its own,
        so the server's per-client introspection rate limit never spans tests)."""
        return self.client("tokens:introspect", fresh=True, **options)

    def sign(self, claims: dict, headers: dict | None = None) -> str:
        """A JWT signed with the server's active signing key (for the JWT battery)."""
        with self.server.app.app_context():
            key = active_signing_key()
        header = {"typ": "at+jwt", "kid": key.kid, **(headers or {})}
        return jwt.encode(claims, key.private_key, algorithm=key.alg, headers=header)

    def claims(self, **changes) -> dict:
        """Valid RFC 9068 claims for a token of this server, with ``changes`` applied."""
        now = int(time.time())
        claims = {"iss": self.server.url, "sub": "client-x", "client_id": "client-x",
                  "aud": self.server.app.config["DEFAULT_AUDIENCE"], "exp": now + 600,
                  "iat": now, "nbf": now, "jti": base64.urlsafe_b64encode(
                      time.time_ns().to_bytes(8, "big")).decode().rstrip("="),
                  "scope": "sms:message:send"}
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not None}

    def revoke(self, token: str) -> None:
        """Revoke a JWT at the server (RFC 7009) with the client it was issued to."""
        client_id = jwt.decode(token, options={"verify_signature": False})["client_id"]
        response = requests.post(self.server.url + "/oauth2/revoke", data={"token": token},
                                 headers=basic_auth(client_id, self._secrets[client_id]),
                                 timeout=10)
        assert response.status_code == 200, response.text

    def disable_key(self, key: str) -> None:
        """Disable (revoke) an API key at the server."""
        with self.server.app.app_context():
            api_keys.disable_api_key(api_keys.query_api_key(key).id, actor="test")


@pytest.fixture(scope="module")
def credentials(auth_server) -> Credentials:
    """Credentials minted at the module's ``auth_server``, cached by scope set."""
    return Credentials(auth_server)


def guard_config(server, credentials: Credentials, **settings) -> dict:
    """GUARD_* settings for a guard in front of ``server`` with its own introspection client."""
    client_id, secret = credentials.introspector()
    return {"GUARD_ISSUER": server.url, "GUARD_CLIENT_ID": client_id,
            "GUARD_CLIENT_SECRET": secret, **settings}


FRAMEWORKS = ("flask", "fastapi")


@pytest.fixture(scope="module", params=FRAMEWORKS)
def framework(request) -> str:
    """The web framework of the guarded app: every contract case runs against each adapter."""
    return request.param


def create_guarded_app(config: dict, framework: str = "flask"):
    """A tiny API: one endpoint per kind of scope declaration, each answering with the principal.

    The same routes on Flask (``resource_demo.guard.flask``) or FastAPI (``...guard.asgi``);
    ``app.guard_state`` exposes the guard's caches for the few tests that look inside.
    """
    if framework == "fastapi":
        return create_guarded_asgi_app(config)
    app = Flask("guarded")
    app.config.update(config)
    guard = ResourceGuard(app)
    app.guard_state = app.extensions[EXTENSION_KEY]
    register_error_handlers(app)

    def principal():
        who = current_principal()
        return {"kind": who.kind, "client_id": who.client_id, "scopes": sorted(who.scopes)}

    def add(path, decorator, methods=("GET",)):
        app.add_url_rule(path, path, decorator(principal), methods=list(methods))

    add("/sms", guard.require_scope("sms:message:send"), methods=("GET", "POST"))
    add("/send", guard.require_scope("message:send"))
    add("/email", guard.require_scope("email:message:send"))
    add("/any", guard.require_any_scope("sms:logs:read", "people:read"))
    add("/keys", guard.require_scope("account-management:manage", allow_api_keys=False))

    @app.get("/me")
    def me():
        """Unscoped: any valid credential (SC08)."""
        who = guard.authenticate()
        return {"kind": who.kind, "scopes": sorted(who.scopes)}

    @app.get("/account")
    def account():
        """Unscoped: the principal's account (AC02)."""
        who = guard.authenticate()
        return {"kind": who.kind, "client_id": who.client_id, "account_id": who.account_id}

    return app


def create_guarded_asgi_app(config: dict, *, guard_knows_app: bool = True):
    """``create_guarded_app`` on FastAPI with the ASGI guard (dependencies via ``Security``).

    ``guard_knows_app=False``: the guard is made without the app (``ResourceGuard(None, ...)``),
    so its dependencies declare the security schemes themselves (only the OpenAPI document
    is compared: such a guard renders no errors in the app)."""
    from resource_demo.guard.asgi import ResourceGuard as AsgiGuard

    app = FastAPI()
    guard = AsgiGuard(app if guard_knows_app else None, config)
    app.guard_state = guard

    def answer(who):
        return {"kind": who.kind, "client_id": who.client_id, "scopes": sorted(who.scopes)}

    def add(path, dependency, methods=("GET",)):
        async def endpoint(who=Security(dependency)):
            return answer(who)
        for method in methods:  # one operation (and operationId) per method
            app.add_api_route(path, endpoint, methods=[method], name=f"{method}{path}")

    add("/sms", guard.scope("sms:message:send"), methods=("GET", "POST"))
    add("/send", guard.scope("message:send"))
    add("/email", guard.scope("email:message:send"))
    add("/any", guard.scopes("sms:logs:read", "people:read"))
    add("/keys", guard.scope("account-management:manage", allow_api_keys=False))

    @app.get("/me")
    async def me(request: Request):
        """Unscoped: any valid credential (SC08)."""
        who = await guard.authenticate(request)
        return {"kind": who.kind, "scopes": sorted(who.scopes)}

    @app.get("/account")
    async def account(request: Request):
        """Unscoped: the principal's account (AC02)."""
        who = await guard.authenticate(request)
        return {"kind": who.kind, "client_id": who.client_id, "account_id": who.account_id}

    return app


@contextmanager
def serve_asgi(app) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 (a free port) in a thread; yield its URL.

    uvicorn's own proxy-header handling is off: the guard decides which X-Forwarded-For to
    believe (GUARD_TRUSTED_PROXIES), as docs/guard.md tells deployments to do.
    """
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    # A header line up to 80 KB (Werkzeug's test server takes 60 KB ones too: item 18 tests).
    # The lifespan closes the guard on the server's loop at the end (ResourceGuard.init_app).
    config = uvicorn.Config(app, log_level="warning", proxy_headers=False, lifespan="on",
                            timeout_graceful_shutdown=1, h11_max_incomplete_event_size=80_000)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=10)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def in_process(app) -> Iterator:
    """A test client calling the app without HTTP (no header-size limit): ``.get`` answers
    with ``.status_code`` and ``.text``."""
    if isinstance(app, Flask):
        with app.test_client() as client:
            client.get = _flask_get(client)
            yield client
        return
    with asyncio.Runner() as runner:
        try:
            yield _AsgiClient(app, runner)
        finally:  # the guard's connections made on this loop (the app is served elsewhere too)
            runner.run(app.guard_state._http.aclose())


class _AsgiClient:
    """Calls an ASGI app in process through httpx's ASGI transport, on one event loop (the
    guard's connections made on it are closed by ``in_process`` at the end)."""

    def __init__(self, app, runner: asyncio.Runner):
        self.app = app
        self.runner = runner

    def get(self, path: str, headers: dict | None = None) -> httpx.Response:
        async def call():
            transport = httpx.ASGITransport(app=self.app, client=("127.0.0.1", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://guarded") as client:
                return await client.get(path, headers=headers)
        return self.runner.run(call())


def _flask_get(client):
    original = client.get

    def get(*args, **kwargs):
        response = original(*args, **kwargs)
        response.text = response.get_data(as_text=True)
        return response
    return get


@contextmanager
def running(app) -> Iterator[str]:
    """Serve a guarded app over HTTP; stop it and its revocation follower afterwards."""
    if not isinstance(app, Flask):
        with serve_asgi(app) as url:
            yield url
        return
    try:
        with serve(app) as url:
            yield url
    finally:
        ResourceGuard.close(app)


@pytest.fixture
def start(auth_server, credentials, framework):
    """``start(**GUARD_settings)``: a guarded app of this test's own (``app.url``), served
    until the test ends."""
    with ExitStack() as stack:
        def make(**settings):
            app = create_guarded_app(guard_config(auth_server, credentials, **settings),
                                     framework)
            app.url = stack.enter_context(running(app))
            return app

        yield make


class SkewedClock:
    """``time.time`` plus an adjustable offset in seconds (for ``GUARD_CLOCK``)."""

    def __init__(self, offset: float = 0.0):
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> float:
    """Poll ``predicate`` until true; return the seconds it took (fail after ``timeout``)."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        elapsed = time.monotonic() - start
        assert elapsed < timeout, f"not true within {timeout} s"
        time.sleep(interval)


def soon(seconds: float) -> str:
    """The server's time ``seconds`` from now, as an ISO 8601 timestamp."""
    return (utcnow() + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
