"""What the protocol endpoints do not do per request (issue 19): no cookie session, no web UI
hooks. (One Redis round trip per request: tests/test_rate_limits.py; the client cache:
tests/test_client_cache.py.)"""

from __future__ import annotations

import pytest
from conftest import basic_auth
from flask.sessions import SecureCookieSessionInterface


@pytest.fixture
def session_opens(monkeypatch):
    """Paths whose cookie session was opened."""
    opened = []
    original = SecureCookieSessionInterface.open_session

    def spy(self, app, request):
        opened.append(request.path)
        return original(self, app, request)

    monkeypatch.setattr(SecureCookieSessionInterface, "open_session", spy)
    return opened


def test_protocol_endpoints_open_no_cookie_session(client, oauth_clients, session_opens):
    client_id, secret = oauth_clients.create(scope="sms:message:send")
    client.set_cookie("authserver_ui", "forged-or-stale")
    token = client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                        headers=basic_auth(client_id, secret))
    assert token.status_code == 200
    introspection = client.post("/oauth2/introspect", data={"token": "x"},
                                headers=basic_auth(client_id, secret))
    for path in ("/healthz", "/.well-known/jwks.json", "/.well-known/oauth-authorization-server"):
        assert client.get(path).status_code == 200
    assert session_opens == []
    for response in (token, introspection):
        assert "Set-Cookie" not in response.headers
        assert "Cookie" not in response.headers.get("Vary", "")
    # The web UI still has its session.
    assert client.get("/ui/sign-in").status_code == 200
    assert session_opens == ["/ui/sign-in"]
