"""The guard is safe by default (issue: the guard as a standalone library): settings are checked
at start with messages naming what to fix; revocation checking cannot be lost silently; a feed
that stays unreachable fails closed after a bounded window (threat model AV06); the guard
renders its own errors without any extra call."""

from __future__ import annotations

import logging
import time

import pytest
import requests
from guard_support import (  # noqa: F401  (fixtures)
    SERVICE_UNAVAILABLE,
    UNAUTHORIZED,
    auth_server,
    create_guarded_app,
    credentials,
    framework,
    guard_config,
    running,
    wait_for,
)

from authserver.credentials import clients as client_service
from resource_demo.guard.config import GuardConfigurationError, GuardSettings

LOOPBACK = "http://127.0.0.1:9"


@pytest.mark.parametrize(("settings", "names"), [
    ({}, ["GUARD_ISSUER"]),
    ({"GUARD_ISSUER": "auth.example.com"}, ["GUARD_ISSUER", "http(s)"]),
    ({"GUARD_ISSUER": "http://auth.example.com"}, ["GUARD_ISSUER", "plain http"]),
    ({"GUARD_ISSUER": "https://auth.example.com?x=1"}, ["GUARD_ISSUER"]),
    ({"GUARD_ISSUER": LOOPBACK}, ["GUARD_CLIENT_ID", "GUARD_REVOCATION_CHECK=False"]),
    ({"GUARD_ISSUER": LOOPBACK, "GUARD_CLIENT_ID": "x"}, ["GUARD_CLIENT_SECRET"]),
    ({"GUARD_ISSUER": LOOPBACK, "GUARD_REVOCATION_CHECK": False, "GUARD_INTROSPECT_JWTS": True},
     ["GUARD_CLIENT_ID"]),
    ({"GUARD_ISSUER": LOOPBACK, "GUARD_REVOCATION_CHECK": "no"}, ["GUARD_REVOCATION_CHECK"]),
    ({"GUARD_ISSUER": LOOPBACK, "GUARD_REVOCATION_CHECK": False, "GUARD_AUDIENCE": "x"},
     ["GUARD_AUDIENCE", "GUARD_AUDIENCES"]),
    ({"GUARD_ISSUER": LOOPBACK, "GUARD_REVOCATION_CHECK": False,
      "GUARD_TRUSTED_PROXIES": ["10.0.0.1/8"]}, ["GUARD_TRUSTED_PROXIES", "10.0.0.1/8"]),
    ({"GUARD_ISSUER": LOOPBACK, "GUARD_REVOCATION_CHECK": False,
      "GUARD_TRUSTED_PROXIES": "10.0.0.1"}, ["GUARD_TRUSTED_PROXIES"]),
    ({"GUARD_ISSUER": LOOPBACK, "GUARD_REVOCATION_CHECK": False, "GUARD_HTTP_TIMEOUT": 0},
     ["GUARD_HTTP_TIMEOUT"]),
    ({"GUARD_ISSUER": LOOPBACK, "GUARD_REVOCATION_CHECK": False, "GUARD_AUDIENCES": [""]},
     ["GUARD_AUDIENCES"]),
    ({"GUARD_ISSUER": LOOPBACK, "GUARD_REVOCATION_CHECK": False,
      "GUARD_PUBLIC_URL": "http://api.example.com"}, ["GUARD_PUBLIC_URL", "plain http"]),
    ({"GUARD_ISSUER": LOOPBACK, "GUARD_REVOCATION_CHECK": False,
      "GUARD_PUBLIC_URL": "https://api.example.com/?x=1"}, ["GUARD_PUBLIC_URL"]),
    ({"GUARD_ISSUER": LOOPBACK, "GUARD_REVOCATION_CHECK": False,
      "GUARD_PUBLIC_URL": "api.example.com"}, ["GUARD_PUBLIC_URL"]),
    ({"GUARD_ISSUER": LOOPBACK, "GUARD_REVOCATION_CHECK": False, "GUARD_PUBLIC_URL": 1},
     ["GUARD_PUBLIC_URL"]),
])
def test_misconfiguration_refuses_to_start_naming_the_setting(settings, names):
    with pytest.raises(GuardConfigurationError) as error:
        GuardSettings.from_mapping(settings)
    for name in names:
        assert name in str(error.value)


@pytest.mark.parametrize("issuer", ["http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9",
                                    "https://auth.example.com"])
def test_http_only_on_loopback(issuer):
    assert GuardSettings.from_mapping({"GUARD_ISSUER": issuer,
                                       "GUARD_REVOCATION_CHECK": False}).issuer == issuer


def test_revocation_switched_off_explicitly_warns_at_start(caplog):
    with caplog.at_level(logging.WARNING, logger="resource_demo.guard"):
        GuardSettings.from_mapping({"GUARD_ISSUER": LOOPBACK, "GUARD_REVOCATION_CHECK": False})
    assert "revocation checking is OFF" in caplog.text


def test_metadata_naming_another_issuer_refuses_to_start(framework, auth_server, credentials):
    config = guard_config(auth_server, credentials)
    config["GUARD_ISSUER"] = auth_server.url + "/"  # the metadata says: without the slash
    with pytest.raises(GuardConfigurationError, match="GUARD_ISSUER"):
        create_guarded_app(config, framework)


def test_unreachable_issuer_starts_and_answers_503(framework):
    config = {"GUARD_ISSUER": "http://127.0.0.1:9", "GUARD_CLIENT_ID": "x",
              "GUARD_CLIENT_SECRET": "y", "GUARD_HTTP_TIMEOUT": 0.5}
    app = create_guarded_app(config, framework)
    with running(app) as url:
        response = requests.get(url + "/sms", headers={"Authorization": "Bearer a.b.c"}, timeout=10)
    # A token that cannot be checked yet: 503 with Retry-After, never 401 or 500.
    assert (response.status_code, response.text) == (503, SERVICE_UNAVAILABLE)
    assert response.headers["Retry-After"] == "5"


def test_errors_rendered_without_registering_anything(auth_server, credentials):
    """ResourceGuard(app) alone renders 401/403 in the envelope (no register_error_handlers)."""
    from flask import Flask

    from resource_demo.guard.flask import ResourceGuard

    app = Flask("bare")
    app.config.update(guard_config(auth_server, credentials))
    guard = ResourceGuard(app)

    @app.get("/sms")
    @guard.require_scope("sms:message:send")
    def sms():
        return "sent"

    with running(app) as url:
        response = requests.get(url + "/sms", timeout=10)
        assert (response.status_code, response.text) == (401, UNAUTHORIZED)
        forbidden = requests.get(url + "/sms", headers=credentials.header("jwt", "email:manage"),
                                 timeout=10)
        assert forbidden.status_code == 403
        assert requests.get(url + "/sms", headers=credentials.header("jwt", "sms:manage"),
                            timeout=10).text == "sent"


def test_starlette_decorator_renders_its_errors(auth_server, credentials):
    """A Starlette route decorated with the ASGI guard: 401/403 in the envelope with nothing
    else registered, the principal in request.state, and a form body still readable."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from resource_demo.guard.asgi import ResourceGuard as AsgiGuard
    from resource_demo.guard.asgi import current_principal

    guard = AsgiGuard(None, guard_config(auth_server, credentials))

    @guard.require_scope("sms:message:send")
    async def send(request):
        body = await request.body()
        return JSONResponse({"client_id": current_principal(request).client_id,
                             "body": body.decode()})

    app = Starlette(routes=[Route("/sms", send, methods=["POST"])])
    with running(app) as url:
        assert requests.post(url + "/sms", timeout=10).text == UNAUTHORIZED
        other = requests.post(url + "/sms", headers=credentials.header("jwt", "email:manage"),
                              timeout=10)
        assert other.status_code == 403 and 'error="insufficient_scope"' in \
            other.headers["WWW-Authenticate"]
        ok = requests.post(url + "/sms", headers=credentials.header("api_key", "sms:manage"),
                           data={"to": "41793026727"}, timeout=10)
        assert ok.status_code == 200 and ok.json()["body"] == "to=41793026727"


@pytest.mark.parametrize("fail_open", [False, True])
def test_AV06_feed_outage_fails_closed_after_the_window(framework, auth_server, credentials,
                                                        fail_open):
    """The guard's own client loses access to the feed (disabled at the server): JWTs keep
    working for GUARD_REVOCATION_MAX_OUTAGE, then get 503 (unless fail-open); recovery is
    automatic once the feed answers again. API keys are not affected by the feed."""
    config = guard_config(auth_server, credentials, GUARD_REVOCATION_POLL_SECONDS=0.2,
                          GUARD_REVOCATION_MAX_OUTAGE=1.5, GUARD_REVOCATION_FAIL_OPEN=fail_open)
    guard_client = config["GUARD_CLIENT_ID"]
    header = credentials.header("jwt", "sms:manage")

    def status() -> int:
        return requests.get(url + "/sms", headers=header, timeout=10).status_code

    def set_enabled(enabled: bool) -> None:
        with auth_server.app.app_context():
            client_service.update_client(guard_client, actor="test", changes={"enabled": enabled})

    app = create_guarded_app(config, framework)
    with running(app) as url:
        assert status() == 200
        set_enabled(False)
        try:
            assert status() == 200  # within the window: served from the last good list
            if fail_open:
                wait_for(lambda: app.guard_state.revocations.last_error is not None, timeout=5)
                time.sleep(2)
                assert status() == 200
                return
            took = wait_for(lambda: status() == 503, timeout=10)
            assert 0.5 < took < 5
            response = requests.get(url + "/sms", headers=header, timeout=10)
            assert response.text == SERVICE_UNAVAILABLE and response.headers["Retry-After"]
        finally:
            set_enabled(True)
        wait_for(lambda: status() == 200, timeout=5)


def test_demo_serve_names_the_bad_setting_without_a_traceback():
    from click.testing import CliRunner

    from resource_demo.demo.cli import main

    result = CliRunner().invoke(main, ["serve", "--issuer", "http://auth.example.com",
                                       "--client-id", "x", "--client-secret", "y"])
    assert result.exit_code == 2
    assert "plain http" in result.output and "Traceback" not in result.output


def test_scopes_an_operator_added_are_learnt_from_the_metadata(auth_server, credentials):
    """The server's scopes_supported lists an operator's own scopes; a guard started against
    it applies the umbrella rule to them by name ({p}:manage covers {p}:...)."""
    from flask import Flask

    from authserver.scopes import EXTENSION_KEY as SCOPES_KEY
    from resource_demo.guard.flask import ResourceGuard
    from resource_demo.guard.scopes import Catalogue, Scope, shipped_entries

    application = auth_server.app
    shipped = application.extensions[SCOPES_KEY]
    added = [Scope("billing:invoices:read", "Platform", "Billing", "Read invoices"),
             Scope("billing:manage", "Platform", "Billing", "Manage billing")]
    application.extensions[SCOPES_KEY] = Catalogue(shipped_entries() + added)
    try:
        app = Flask("operator-scopes")
        app.config.update(guard_config(auth_server, credentials))
        guard = ResourceGuard(app)

        @app.get("/invoices")
        @guard.require_scope("billing:invoices:read")
        def invoices():
            return "ok"

        assert invoices.accepted_scopes == {"billing:invoices:read", "billing:manage"}
        with running(app) as url:
            for scope, status in (("billing:manage", 200), ("billing:invoices:read", 200),
                                  ("sms:manage", 403)):
                header = credentials.header("jwt", scope)
                assert requests.get(url + "/invoices", headers=header, timeout=10).status_code \
                    == status
    finally:
        application.extensions[SCOPES_KEY] = shipped


def test_closing_a_flask_guard_stops_its_threads_and_closes_its_connections(auth_server,
                                                                             credentials):
    """``ResourceGuard.close(app)`` (an embedding app's shutdown, or a test's) stops the feed and
    key-fingerprint followers and closes the HTTP client they and the JWKS cache share: nothing
    is left open for the garbage collector to find later (a ResourceWarning in another test)."""
    from resource_demo.guard.flask import ResourceGuard

    app = create_guarded_app(guard_config(auth_server, credentials))
    state = app.guard_state
    with running(app) as url:
        for kind in ("jwt", "api_key"):  # JWKS, feed, fingerprints and introspection in use
            answer = requests.get(url + "/me", headers=credentials.header(kind, "sms:manage"),
                                  timeout=10)
            assert answer.status_code == 200, answer.text
        followers = [state.feed._thread, state.key_fingerprints._thread]
        assert all(thread is not None and thread.is_alive() for thread in followers)
        assert not state.server.http.is_closed
    # running() closed the guard on the way out.
    assert state.server.http.is_closed
    assert not [thread for thread in followers if thread.is_alive()]
    ResourceGuard.close(app)  # a second close is harmless


def test_an_asgi_guard_closes_with_its_apps_lifespan(auth_server, credentials):
    """The ASGI guard hooks the app's lifespan: when the server shuts the app down, the feed task
    and the key-fingerprint thread stop and the HTTP clients close on the server's loop."""
    app = create_guarded_app(guard_config(auth_server, credentials), "fastapi")
    guard = app.guard_state
    with running(app) as url:  # uvicorn with lifespan="on"
        for kind in ("jwt", "api_key"):
            answer = requests.get(url + "/me", headers=credentials.header(kind, "sms:manage"),
                                  timeout=10)
            assert answer.status_code == 200, answer.text
        follower = guard.key_fingerprints._thread
        assert follower is not None and follower.is_alive()
        assert len(guard._http._clients) == 1
    assert not follower.is_alive()
    assert guard._fingerprint_server.http.is_closed
    assert len(guard._http._clients) == 0
