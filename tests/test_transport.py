"""Transport security and the headers every answer carries (threat model TE22, AD09).

Plain HTTP to the server's public name gets no token (Authlib's ``insecure_transport``);
answers to HTTPS requests, the request's own or a trusted proxy's, carry
``Strict-Transport-Security``; plain-HTTP answers never do (RFC 6797 §7.2). Every answer is
``nosniff``, no origin is granted CORS, and the debugger is off.
"""

from __future__ import annotations

import pytest
from conftest import basic_auth

PUBLIC_HTTP = "http://auth.example.test"
PUBLIC_HTTPS = "https://auth.example.test"
HSTS = "Strict-Transport-Security"
PROTOCOL = ("/oauth2/token", "/oauth2/introspect", "/oauth2/revoke")


def _post(client, path, client_id, secret, base_url, **environ):
    form = ({"grant_type": "client_credentials"} if path == "/oauth2/token"
            else {"token": "not-a-token"})
    return client.post(path, data=form, headers=basic_auth(client_id, secret),
                       base_url=base_url, environ_base=environ)


@pytest.mark.parametrize("path", PROTOCOL)
def test_TE22_plain_http_to_the_public_host_is_refused(client, oauth_clients, path):
    client_id, secret = oauth_clients.create(scope="tokens:introspect")
    answer = _post(client, path, client_id, secret, PUBLIC_HTTP)
    assert answer.status_code == 400, answer.get_data()
    assert answer.get_json()["error"] == "insecure_transport"
    assert "access_token" not in answer.get_json()
    assert HSTS not in answer.headers  # never on plain HTTP (RFC 6797 §7.2)


@pytest.mark.parametrize("path", PROTOCOL)
def test_TE22_https_answers_carry_hsts(client, oauth_clients, path):
    client_id, secret = oauth_clients.create(scope="tokens:introspect")
    answer = _post(client, path, client_id, secret, PUBLIC_HTTPS)
    assert answer.status_code == 200, answer.get_data()
    assert answer.headers[HSTS] == "max-age=31536000"


@pytest.mark.parametrize("path", ["/.well-known/oauth-authorization-server",
                                  "/.well-known/jwks.json", "/settings/2/api-keys", "/ui/sign-in",
                                  "/no-such-page"])
def test_TE22_every_kind_of_https_answer_carries_hsts(client, path):
    answer = client.get(path, base_url=PUBLIC_HTTPS)
    assert answer.headers[HSTS] == "max-age=31536000", (path, answer.status_code)
    assert HSTS not in client.get(path, base_url=PUBLIC_HTTP).headers


@pytest.mark.parametrize("app_config", [{"TRUSTED_PROXIES": ["127.0.0.1"]}])
def test_TE22_https_at_a_trusted_proxy_counts(client, oauth_clients):
    client_id, secret = oauth_clients.create()
    answer = _post(client, "/oauth2/token", client_id, secret, PUBLIC_HTTP,
                   HTTP_X_FORWARDED_PROTO="https")
    assert answer.status_code == 200 and answer.headers[HSTS] == "max-age=31536000"


def test_TE22_https_claimed_by_an_untrusted_peer_counts_for_nothing(client, oauth_clients):
    client_id, secret = oauth_clients.create()
    answer = _post(client, "/oauth2/token", client_id, secret, PUBLIC_HTTP,
                   HTTP_X_FORWARDED_PROTO="https")
    assert answer.status_code == 400 and HSTS not in answer.headers


@pytest.mark.parametrize("app_config", [{"HSTS_SECONDS": 0}])
def test_TE22_hsts_can_be_left_to_the_proxy(client):
    assert HSTS not in client.get("/.well-known/jwks.json", base_url=PUBLIC_HTTPS).headers


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/oauth2/token"), ("GET", "/.well-known/oauth-authorization-server"),
    ("GET", "/settings/2/api-keys"), ("OPTIONS", "/settings/2/api-keys"),
    ("OPTIONS", "/oauth2/token"), ("GET", "/no-such-page"), ("DELETE", "/oauth2/token")])
def test_AD09_no_sniffing_no_cors_no_debugger(app, client, method, path):
    """A browser on another origin gets no CORS grant (with or without credentials), every
    answer is ``nosniff``, and the debugger is off whatever the answer."""
    assert not app.debug
    answer = client.open(path, method=method, base_url=PUBLIC_HTTPS, headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization"})
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert not [name for name in answer.headers.keys()
                if name.lower().startswith("access-control-")], answer.headers
    assert b"Traceback" not in answer.get_data() and b"Werkzeug Debugger" not in answer.get_data()
