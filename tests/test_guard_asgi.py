"""What only the ASGI adapter has: FastAPI's OpenAPI shows the guard's schemes and each route's
scopes, and calls to the issuer never block the event loop (the contract cases themselves run
against both adapters in test_guard.py, test_guard_faults.py and test_guard_safety.py)."""

from __future__ import annotations

import threading
import time

import requests
from guard_support import (  # noqa: F401  (fixtures)
    auth_server,
    create_guarded_app,
    create_guarded_asgi_app,
    credentials,
    guard_config,
    running,
)


def test_openapi_lists_the_schemes_and_each_routes_scopes(auth_server, credentials):
    app = create_guarded_app(guard_config(auth_server, credentials), "fastapi")
    document = app.openapi()
    schemes = document["components"]["securitySchemes"]
    flow = schemes["OAuth2ClientCredentials"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == auth_server.url + "/oauth2/token"  # from the issuer's metadata
    assert {"sms:message:send", "message:send", "sms:manage"} <= set(flow["scopes"])
    assert schemes["AppKey"] == {"type": "apiKey", "in": "header", "name": "Authorization",
                                 "description": "Authorization: App <api key>"}
    paths = document["paths"]
    assert paths["/sms"]["post"]["security"] == [
        {"OAuth2ClientCredentials": ["message:send", "sms:manage", "sms:message:send"]},
        {"AppKey": []}]
    assert paths["/any"]["get"]["security"] == [
        {"OAuth2ClientCredentials": ["people:read", "sms:logs:read"]}, {"AppKey": []}]
    # JWTs only: no App key alternative.
    assert paths["/keys"]["get"]["security"] == [
        {"OAuth2ClientCredentials": ["account-management:manage"]}]


def test_the_document_is_the_same_when_the_guard_declares_the_schemes(auth_server, credentials):
    """A guard given the app completes its OpenAPI document, and its dependencies carry no
    security sub-dependencies for FastAPI to resolve on each request; a guard made without
    the app declares them in each dependency. Both give the same document."""
    from fastapi.security.base import SecurityBase

    config = guard_config(auth_server, credentials)
    completed = create_guarded_asgi_app(config)
    declared = create_guarded_asgi_app(config, guard_knows_app=False)
    assert completed.openapi() == declared.openapi()
    assert completed.openapi() is completed.openapi()  # built once, as FastAPI caches it

    def schemes_resolved(app) -> set[str]:
        found, stack = set(), [route.dependant for route in app.routes
                               if getattr(route, "dependant", None) is not None]
        while stack:
            dependant = stack.pop()
            if isinstance(dependant.call, SecurityBase):
                found.add(dependant.call.scheme_name)
            stack.extend(dependant.dependencies)
        return found

    assert schemes_resolved(completed) == set()
    assert schemes_resolved(declared) == {"OAuth2ClientCredentials", "AppKey"}


class SlowIntrospection:
    """WSGI middleware on the authorization server: introspection answers after ``delay`` s."""

    def __init__(self, server):
        self.app = server.app.wsgi_app
        self.delay = 0.0
        server.app.wsgi_app = self

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == "/oauth2/introspect" and self.delay:
            time.sleep(self.delay)
        return self.app(environ, start_response)


def test_a_slow_issuer_never_blocks_the_event_loop(auth_server, credentials):
    """One uvicorn worker, one event loop: while an API key waits 1.5 s for introspection,
    a JWT request (keys cached) is answered at once."""
    slow = SlowIntrospection(auth_server)
    try:
        app = create_guarded_app(guard_config(auth_server, credentials,
                                              GUARD_API_KEY_CACHE_SECONDS=0), "fastapi")
        jwt_header = credentials.header("jwt", "sms:manage")
        key_header = credentials.header("api_key", "sms:manage", fresh=True)
        with running(app) as url:
            assert requests.get(url + "/sms", headers=jwt_header, timeout=10).status_code == 200
            slow.delay = 1.5
            waiting = {}

            def key_call():
                started = time.monotonic()
                response = requests.get(url + "/sms", headers=key_header, timeout=10)
                waiting["key"] = (response.status_code, time.monotonic() - started)

            thread = threading.Thread(target=key_call)
            thread.start()
            time.sleep(0.3)  # the key request is now awaiting introspection
            started = time.monotonic()
            response = requests.get(url + "/sms", headers=jwt_header, timeout=10)
            jwt_took = time.monotonic() - started
            thread.join(10)
        assert response.status_code == 200 and jwt_took < 0.8, jwt_took
        assert waiting["key"][0] == 200 and waiting["key"][1] >= 1.5
    finally:
        auth_server.app.wsgi_app = slow.app


def test_concurrent_misses_for_one_key_share_one_introspection():
    """Many requests in flight with the same uncached key ask the server once (and share a
    failure too), instead of one introspection each."""
    import asyncio

    from resource_demo.guard.server_client import ApiKeyCache, ServerUnavailable

    calls = []

    async def introspect(key):
        calls.append(key)
        await asyncio.sleep(0.05)
        if key == "down":
            raise ServerUnavailable("introspection_endpoint: HTTP 503")
        return {"active": True, "key": key}

    async def scenario():
        cache = ApiKeyCache(5)
        answers = await asyncio.gather(*(cache.aget("k", introspect) for _ in range(20)))
        failures = await asyncio.gather(*(cache.aget("down", introspect) for _ in range(5)),
                                        return_exceptions=True)
        again = await cache.aget("k", introspect)  # cached now
        return answers, failures, again

    answers, failures, again = asyncio.run(scenario())
    assert calls == ["k", "down"]
    assert all(answer == {"active": True, "key": "k"} for answer in answers) and again == answers[0]
    assert all(isinstance(failure, ServerUnavailable) for failure in failures)
