"""Rate limits at the protocol endpoints (SECURITY.md TE11, IN09; issue 7) and trusted proxies."""

from __future__ import annotations

import time

import pytest
from conftest import basic_auth


@pytest.fixture
def app_config():
    return {"TOKEN_RATE_LIMIT": "3/second", "AUTH_FAILURE_RATE_LIMIT": "5/minute",
            "INTROSPECTION_RATE_LIMIT": "4/minute", "RATELIMIT_STORAGE_URI": "memory://"}


def _token(client, client_id, secret, base_url="http://localhost", **environ):
    return client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                       headers=basic_auth(client_id, secret), environ_base=environ,
                       base_url=base_url)


def test_token_requests_limited_per_client_with_retry_after(client, oauth_clients):
    first = oauth_clients.create()
    second = oauth_clients.create()
    statuses = [_token(client, *first).status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]
    limited = _token(client, *first)
    assert limited.status_code == 429
    assert limited.json["error"] == "slow_down"
    assert int(limited.headers["Retry-After"]) >= 1
    # One client's burst does not starve another (SECURITY.md RL7).
    assert _token(client, *second).status_code == 200
    time.sleep(1.1)
    assert _token(client, *first).status_code == 200


def test_TE11_failed_authentication_throttled_per_address(client, oauth_clients):
    client_id, secret = oauth_clients.create()
    answers = [_token(client, client_id, "wrong-secret").status_code for _ in range(7)]
    assert answers[:5] == [401] * 5 and answers[5:] == [429, 429]
    # While throttled even the right secret waits: the address is what is limited.
    assert _token(client, client_id, secret).status_code == 429
    # Another address is unaffected (the legitimate client elsewhere is still served).
    assert _token(client, client_id, secret, REMOTE_ADDR="10.1.2.3").status_code == 200


def test_wrong_secret_with_a_victims_client_id_does_not_use_up_its_quota(client, oauth_clients):
    client_id, secret = oauth_clients.create()
    for _ in range(4):
        _token(client, client_id, "wrong", REMOTE_ADDR="10.9.9.9")
    assert [_token(client, client_id, secret).status_code for _ in range(3)] == [200] * 3


def test_IN09_introspection_limited_per_caller(client, oauth_clients):
    rs = basic_auth(*oauth_clients.create(scope="tokens:introspect"))
    statuses = [client.post("/oauth2/introspect", data={"token": f"garbage-{i}"},
                            headers=rs).status_code for i in range(6)]
    assert statuses[:4] == [200] * 4 and statuses[4:] == [429, 429]


def test_forwarded_for_counts_only_from_trusted_proxies(app, client, oauth_clients):
    client_id, _ = oauth_clients.create()
    spoofed = [_token(client, client_id, "wrong",
                      HTTP_X_FORWARDED_FOR=f"10.0.0.{i}").status_code for i in range(7)]
    # Not a trusted proxy: every spoofed address is the same peer, so it is throttled.
    assert spoofed[5:] == [429, 429]


@pytest.mark.parametrize("app_config", [{"TRUSTED_PROXIES": ["127.0.0.1"],
                                         "AUTH_FAILURE_RATE_LIMIT": "2/minute"}])
def test_trusted_proxy_forwarded_for_and_proto(client, oauth_clients):
    client_id, _ = oauth_clients.create()
    for i in range(3):
        answer = _token(client, client_id, "wrong", HTTP_X_FORWARDED_FOR=f"10.0.0.{i}",
                        HTTP_X_FORWARDED_PROTO="https", base_url="http://auth.example.test")
        # Each forwarded address has its own budget, and the proxy's https is believed
        # (Authlib would refuse plain http for a non-loopback host).
        assert answer.status_code == 401, answer.json


def test_untrusted_forwarded_proto_is_ignored(client, oauth_clients):
    client_id, secret = oauth_clients.create()
    answer = _token(client, client_id, secret, HTTP_X_FORWARDED_PROTO="https",
                    base_url="http://auth.example.test")
    assert answer.status_code == 400 and answer.json["error"] == "insecure_transport"
