"""Rate limits at the protocol endpoints (threat model TE11, IN09; issue 7) and trusted proxies."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from conftest import basic_auth


@pytest.fixture(params=["memory", "redis"])
def app_config(request):
    """Every rule here holds with in-process counters and with counters in Redis (a prefix
    of this test's own)."""
    storage = "memory://" if request.param == "memory" else "redis://127.0.0.1:6379/0"
    return {"TOKEN_RATE_LIMIT": "3/second", "AUTH_FAILURE_RATE_LIMIT": "5/minute",
            "INTROSPECTION_RATE_LIMIT": "4/minute", "RATELIMIT_STORAGE_URI": storage,
            "RATELIMIT_KEY_PREFIX": f"authserver-test-{uuid.uuid4().hex}"}


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
    # One client's burst does not starve another (threat model RL7).
    assert _token(client, *second).status_code == 200
    time.sleep(1.1)
    assert _token(client, *first).status_code == 200


def test_TE11_failed_authentication_throttled_per_address_and_client(client, oauth_clients):
    client_id, secret = oauth_clients.create()
    answers = [_token(client, client_id, "wrong-secret").status_code for _ in range(7)]
    assert answers[:5] == [401] * 5 and answers[5:] == [429, 429]
    throttled = _token(client, client_id, "wrong-secret")
    assert throttled.json["error"] == "slow_down" and int(throttled.headers["Retry-After"]) >= 1
    # Another address guessing the same client id has its own budget.
    assert _token(client, client_id, "wrong", REMOTE_ADDR="10.1.2.3").status_code == 401


def test_AV02_credentials_that_verify_are_served_while_their_address_is_throttled(
        client, oauth_clients):
    """Issue 18 finding 2: failures from a shared address (proxy, NAT) never refuse a
    client whose credentials verify: token, introspection, revocation and the feed."""
    victim_id, victim_secret = oauth_clients.create()
    rs_id, rs_secret = oauth_clients.create(scope="tokens:introspect")
    for guessed in (victim_id, rs_id, "no-such-client"):
        for _ in range(8):
            _token(client, guessed, "wrong-secret")
    assert _token(client, victim_id, "wrong-secret").status_code == 429
    token = _token(client, victim_id, victim_secret)
    assert token.status_code == 200, token.json
    rs = basic_auth(rs_id, rs_secret)
    introspected = client.post("/oauth2/introspect", data={"token": token.json["access_token"]},
                               headers=rs)
    assert introspected.status_code == 200 and introspected.json["active"] is True
    assert client.post("/oauth2/revocations", data={"after": "0"}, headers=rs).status_code == 200
    revoked = client.post("/oauth2/revoke", data={"token": token.json["access_token"]},
                          headers=basic_auth(victim_id, victim_secret))
    assert revoked.status_code == 200


@pytest.mark.parametrize("app_config", [{"AUTH_FAILURE_RATE_LIMIT": "5/minute",
                                         "AUTH_FAILURE_ADDRESS_RATE_LIMIT": "12/minute"}])
def test_AV02_failures_for_many_client_ids_from_one_address_are_bounded(client, oauth_clients):
    """Spraying client ids spends the address's own failure budget, not theirs."""
    client_id, secret = oauth_clients.create()
    answers = [_token(client, f"guess-{i}", "wrong").status_code for i in range(14)]
    assert answers[:12] == [401] * 12 and answers[12:] == [429, 429]
    assert _token(client, client_id, secret).status_code == 200
    # The sprayer's address is spent; the same client id from elsewhere is not.
    assert _token(client, "guess-0", "wrong", REMOTE_ADDR="10.7.7.7").status_code == 401


def test_AV02_wrong_secret_with_a_victims_client_id_does_not_use_up_its_quota(client,
                                                                            oauth_clients):
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


@pytest.fixture
def redis_round_trips(monkeypatch):
    """Counts the commands (or pipelines) sent to Redis."""
    sent = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        sent.append(command)
        return original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    return sent


@pytest.mark.parametrize("app_config", ["redis"], indirect=True)
def test_one_redis_round_trip_per_request(client, oauth_clients, redis_round_trips):
    """One round trip per request: a token request counts its client's quota, an inactive
    introspection answer its caller's budget, a failed authentication both of its failure
    counters (one pipeline)."""
    client_id, secret = oauth_clients.create()
    rs = basic_auth(*oauth_clients.create(scope="tokens:introspect"))
    for _ in range(2):  # the scripts are loaded once
        _token(client, client_id, secret)
        client.post("/oauth2/introspect", data={"token": "x"}, headers=rs)
        _token(client, client_id, "wrong")
    for request, status in ((lambda: _token(client, client_id, secret), 200),
                            (lambda: client.post("/oauth2/introspect", data={"token": "x"},
                                                 headers=rs), 200),
                            (lambda: _token(client, client_id, "wrong"), 401)):
        redis_round_trips.clear()
        assert request().status_code == status
        assert len(redis_round_trips) == 1


@pytest.mark.parametrize("app_config", ["redis"], indirect=True)
def test_counting_goes_on_right_after_redis_forgets_its_scripts(app, client, oauth_clients):
    """A restarted or flushed Redis no longer knows the counting script: the request that
    meets that loads it and counts once, and the connection stays in step (each later
    answer is read by the request it belongs to)."""
    app.config["TOKEN_RATE_LIMIT"] = "3/minute"  # no window boundary inside the test
    client_id, secret = oauth_clients.create()
    assert _token(client, client_id, secret).status_code == 200
    redis.Redis.from_url("redis://127.0.0.1:6379/0").script_flush()
    statuses = [_token(client, client_id, secret).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


@pytest.mark.parametrize("app_config", ["redis"], indirect=True)
def test_an_unreachable_counter_store_lets_requests_through(app, client, oauth_clients, caplog):
    """A limiter outage is not an authorization outage: with Redis unreachable, a token
    request is served and the outage logged (and served again: no socket left half-read)."""
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    from authserver.web import limits
    from limits.storage import storage_from_string
    from limits.strategies import FixedWindowRateLimiter

    app.extensions[limits.EXTENSION_KEY] = FixedWindowRateLimiter(
        storage_from_string(f"redis://127.0.0.1:{port}/0"))
    client_id, secret = oauth_clients.create()
    for _ in range(2):
        assert _token(client, client_id, secret).status_code == 200
    assert "rate-limit store unavailable" in caplog.text
