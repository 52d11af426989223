"""TRUSTED_PROXIES governs Forwarded (RFC 7239) and X-Forwarded-For/-Proto/-Host in one place
(threat model AK06, RFC 9700 §4.13); the issuer never follows them (TE20)."""

from __future__ import annotations

import pytest
from conftest import basic_auth
from flask import Flask, request

from authserver.web.proxies import ForwardedHeaders, node_address, parse_forwarded

TRUSTED = ["10.0.0.0/8", "192.0.2.1"]


def seen(headers: dict, peer: str = "10.1.2.3", trusted=TRUSTED) -> dict:
    """What an app behind the middleware sees for a request from ``peer``."""
    app = Flask(__name__)

    @app.get("/")
    def show():
        return {"remote": request.remote_addr, "scheme": request.scheme, "host": request.host,
                "leftover": sorted(name for name, _ in request.headers
                                   if "forward" in name.lower() or name == "X-Real-Ip")}

    app.wsgi_app = ForwardedHeaders(app.wsgi_app, trusted)
    return app.test_client().get("/", headers=headers,
                                 environ_base={"REMOTE_ADDR": peer}).get_json()


@pytest.mark.parametrize(("headers", "remote", "scheme", "host"), [
    # One trusted proxy, each header style.
    ({"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https",
      "X-Forwarded-Host": "auth.example.test"}, "203.0.113.7", "https", "auth.example.test"),
    ({"Forwarded": 'for=203.0.113.7;proto=https;host="auth.example.test"'},
     "203.0.113.7", "https", "auth.example.test"),
    ({"Forwarded": 'for="[2001:db8::7]:4711";proto=https'}, "2001:db8::7", "https", "localhost"),
    # The client's own entries left of the first untrusted hop are never believed.
    ({"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}, "203.0.113.7", "http", "localhost"),
    ({"X-Forwarded-For": "198.51.100.1, 203.0.113.7, 10.9.9.9"}, "203.0.113.7", "http",
     "localhost"),
    ({"Forwarded": "for=198.51.100.1;proto=http, for=203.0.113.7;proto=https, for=10.9.9.9"},
     "203.0.113.7", "https", "localhost"),
    # Forwarded wins over X-Forwarded-* when both are sent.
    ({"Forwarded": "for=203.0.113.7;proto=https", "X-Forwarded-For": "198.51.100.1"},
     "203.0.113.7", "https", "localhost"),
    # An unknown or obfuscated node is not an address: the caller is "unknown".
    ({"Forwarded": "for=unknown;proto=https"}, "unknown", "https", "localhost"),
    ({"Forwarded": "for=_hidden"}, "unknown", "http", "localhost"),
    # Scheme only (the proxy is the caller).
    ({"X-Forwarded-Proto": "https"}, "10.1.2.3", "https", "localhost"),
    # Garbage scheme or host is ignored.
    ({"X-Forwarded-Proto": "gopher", "X-Forwarded-Host": "a b/c"}, "10.1.2.3", "http",
     "localhost"),
])
def test_trusted_peer(headers, remote, scheme, host):
    assert seen(headers) == {"remote": remote, "scheme": scheme, "host": host, "leftover": []}


@pytest.mark.parametrize("headers", [
    {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https",
     "X-Forwarded-Host": "evil.example"},
    {"Forwarded": "for=203.0.113.7;proto=https;host=evil.example"},
    {"X-Real-IP": "203.0.113.7"},
])
@pytest.mark.parametrize("trusted", [[], TRUSTED])
def test_untrusted_peer_changes_nothing_and_headers_are_dropped(headers, trusted):
    answer = seen(headers, peer="198.51.100.9", trusted=trusted)
    assert answer == {"remote": "198.51.100.9", "scheme": "http", "host": "localhost",
                      "leftover": []}


def test_forwarded_parsing():
    assert parse_forwarded('for=192.0.2.43, for="[2001:db8:cafe::17]";proto=https;'
                           'host="a;b,c"') == [
        {"for": "192.0.2.43"}, {"for": "[2001:db8:cafe::17]", "proto": "https", "host": "a;b,c"}]
    assert node_address("192.0.2.43:8080") == "192.0.2.43"
    assert node_address("[2001:db8::1]:80") == "2001:db8::1"
    assert node_address("010.0.0.1") is None  # AK07: ambiguous octets are no address
    assert node_address("unknown") is None


@pytest.mark.parametrize("app_config", [{"TRUSTED_PROXIES": ["127.0.0.1"],
                                         "AUTH_FAILURE_RATE_LIMIT": "2/minute"}])
def test_forwarded_header_sets_https_and_the_caller_for_rate_limits(client, oauth_clients):
    client_id, secret = oauth_clients.create()
    for i in range(3):
        answer = client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                             headers={**basic_auth(client_id, "wrong"),
                                      "Forwarded": f"for=10.0.0.{i};proto=https"},
                             base_url="http://auth.example.test")
        assert answer.status_code == 401, answer.json  # each caller has its own budget
    # A forwarded Host outside TRUSTED_HOSTS is refused before anything is built from it.
    refused = client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                          headers={**basic_auth(client_id, secret),
                                   "Forwarded": "for=10.0.0.9;proto=https;host=evil.example"},
                          base_url="http://auth.example.test")
    assert refused.status_code == 400 and "access_token" not in refused.json
    good = client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                       headers={**basic_auth(client_id, secret),
                                "Forwarded": "for=10.0.0.9;proto=https;host=auth.example.test"},
                       base_url="http://auth.example.test")
    assert good.status_code == 200
    import jwt

    claims = jwt.decode(good.json["access_token"], options={"verify_signature": False})
    assert claims["iss"] == "https://auth.example.test"  # TE20: never the forwarded host


def test_serve_hands_trusted_proxies_to_gunicorn(monkeypatch, tmp_path):
    """gunicorn's forwarded_allow_ips is TRUSTED_PROXIES (its default trusts 127.0.0.1)."""
    from authserver.web import serving

    captured = {}

    class Recorder(serving.GunicornApplication):
        def run(self):
            captured.update({key: self.cfg.settings[key].get() for key in
                             ("forwarded_allow_ips", "bind", "logger_class")})

    monkeypatch.setattr(serving, "GunicornApplication", Recorder)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    serving.run(lambda: None, "127.0.0.1", 5000, 1, trusted_proxies=["10.0.0.0/8"],
                extra_binds=["127.0.0.1:9100"])
    assert captured["forwarded_allow_ips"] == ["10.0.0.0/8"]
    assert captured["bind"] == ["127.0.0.1:5000", "127.0.0.1:9100"]
    serving.run(lambda: None, "127.0.0.1", 5000, 1)
    assert captured["forwarded_allow_ips"] == []
