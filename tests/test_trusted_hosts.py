"""The Host header (issue 18 finding 8): only trusted host names are served.

Before the fix ``GET /ui//x`` with ``Host: evil.example`` redirected to
``http://evil.example/ui/x``. Flask's TRUSTED_HOSTS now defaults to the issuer's host plus
the loopback names and addresses; any other Host is refused with 400 before routing (so
before any redirect), except on the probes, which load balancers call by address.
"""

from __future__ import annotations

import pytest
from conftest import basic_auth

EVIL = {"Host": "evil.example"}


@pytest.mark.parametrize("path", ["/ui//x", "/ui", "/oauth2//token", "/settings/2/api-keys/"])
def test_TE20_unknown_host_is_refused_before_any_redirect(client, path):
    response = client.get(path, headers=EVIL)
    assert response.status_code == 400
    assert "evil.example" not in response.headers.get("Location", "")
    assert b"evil.example" not in response.get_data()


def test_TE20_unknown_host_gets_no_token(client, oauth_clients):
    client_id, secret = oauth_clients.create()
    response = client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                           headers={**basic_auth(client_id, secret), **EVIL})
    assert response.status_code == 400
    assert "access_token" not in (response.get_json() or {})


@pytest.mark.parametrize("host", ["auth.example.test", "localhost", "localhost:5000",
                                  "127.0.0.1", "127.0.0.1:8080", "[::1]", "[::1]:5000"])
def test_TE20_issuer_and_loopback_hosts_are_served(client, host):
    response = client.get("/.well-known/oauth-authorization-server", headers={"Host": host})
    assert response.status_code == 200
    assert response.get_json()["issuer"] == "https://auth.example.test"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_TE20_probes_answer_whatever_the_host(client, path):
    assert client.get(path, headers={"Host": "10.1.2.3:8000"}).status_code == 200


@pytest.mark.parametrize("app_config", [{"TRUSTED_HOSTS": ["api.example.org"]}])
def test_TE20_trusted_hosts_is_configurable(client):
    assert client.get("/.well-known/jwks.json",
                      headers={"Host": "api.example.org"}).status_code == 200
    assert client.get("/.well-known/jwks.json",
                      headers={"Host": "auth.example.test"}).status_code == 400
