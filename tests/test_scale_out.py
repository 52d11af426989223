"""Two server processes on one PostgreSQL and one Redis (issue 7: scale-out).

Each server is a real ``authserver serve`` (gunicorn) process; they share nothing but the
database, the Redis rate-limit store and the configuration a deployment would share.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import time
import uuid

import jwt
import pytest
import requests
from serverproc import PostgresDatabase, ServerProcess, authserver, server_env

ISSUER = "https://auth.scale.test"
ENCRYPTION_KEY = base64.urlsafe_b64encode(b"s" * 32).decode()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Servers A and B on one fresh PostgreSQL database and the machine's Redis."""
    database = PostgresDatabase()
    prefix = f"authserver-test-{uuid.uuid4().hex[:8]}"
    settings = {"SQLALCHEMY_DATABASE_URI": database.url, "ISSUER": ISSUER,
                "ENCRYPTION_KEY": ENCRYPTION_KEY, "SECRET_KEY": "scale-test",
                "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379",
                "RATELIMIT_KEY_PREFIX": prefix, "TOKEN_RATE_LIMIT": "8/minute",
                "SIGNING_KEY_CACHE_SECONDS": "1", "SIGNING_KEY_PUBLISH_DELAY": "2"}
    envs = [server_env(tmp_path_factory.mktemp(f"instance-{name}"), **settings)
            for name in "ab"]
    authserver(envs[0], "init")
    logs = tmp_path_factory.mktemp("logs")
    servers = [ServerProcess(env, log_path=logs / f"{i}.log") for i, env in enumerate(envs)]
    try:
        for server in servers:
            server.wait_ready()
        yield servers, envs
    finally:
        for server in servers:
            server.stop()
        database.drop()


def create_client(env: dict, scope: str) -> tuple[str, str]:
    created = json.loads(authserver(env, "clients", "create", "--name", "svc", "--scope", scope,
                                    "--json").stdout)
    return created["clientId"], created["clientSecret"]


def fetch_token(server: ServerProcess, client_id: str, secret: str) -> requests.Response:
    return requests.post(server.url + "/oauth2/token", data={"grant_type": "client_credentials"},
                         auth=(client_id, secret), timeout=10)


@pytest.mark.security("JW06")
def test_token_from_one_verifies_against_the_others_jwks(cluster):
    (a, b), (env_a, _) = cluster
    client_id, secret = create_client(env_a, "message:send")
    token = fetch_token(a, client_id, secret).json()["access_token"]
    key = jwt.PyJWKClient(b.url + "/.well-known/jwks.json").get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["RS256", "ES256", "EdDSA"],
                        audience=ISSUER + "/api", issuer=ISSUER)
    assert claims["client_id"] == client_id
    rs_id, rs_secret = create_client(env_a, "tokens:introspect")
    answer = requests.post(b.url + "/oauth2/introspect", data={"token": token},
                           auth=(rs_id, rs_secret), timeout=10).json()
    assert answer["active"] is True


@pytest.mark.security("JW06")
def test_rotation_through_one_is_used_by_both(cluster):
    (a, b), (env_a, env_b) = cluster
    client_id, secret = create_client(env_a, "message:send")
    before = jwt.get_unverified_header(fetch_token(b, client_id, secret).json()["access_token"])
    rotated = json.loads(authserver(env_a, "signing-keys", "rotate", "--json").stdout)
    assert rotated["kid"] != before["kid"] and rotated["state"] == "active"
    # The new key was already published by both before it signed (publish-before-sign).
    for server in (a, b):
        kids = {k["kid"] for k in requests.get(server.url + "/.well-known/jwks.json").json()["keys"]}
        assert {rotated["kid"], before["kid"]} <= kids
    deadline = time.monotonic() + 10
    seen = set()
    while time.monotonic() < deadline and seen != {rotated["kid"]}:
        seen = {jwt.get_unverified_header(fetch_token(s, client_id, secret).json()["access_token"])
                ["kid"] for s in (a, b)}
        time.sleep(0.3)
    assert seen == {rotated["kid"]}


def test_client_and_key_disabled_through_one_are_refused_by_both(cluster):
    (a, b), (env_a, env_b) = cluster
    client_id, secret = create_client(env_a, "sms:message:send")
    assert fetch_token(b, client_id, secret).status_code == 200
    authserver(env_b, "clients", "disable", client_id)
    # Clients are cached per process; a change is in force everywhere within 1 s
    # (authserver.storage.cache; tests/test_client_cache.py measures the bound).
    time.sleep(1.0)
    for server in (a, b):
        refused = fetch_token(server, client_id, secret)
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    rs_id, rs_secret = create_client(env_a, "tokens:introspect")
    key = json.loads(authserver(env_a, "api-keys", "create", "--name", "k", "--scope",
                                "sms:message:send", "--json").stdout)
    authserver(env_b, "api-keys", "disable", key["id"])
    time.sleep(1.0)  # API keys are cached per process too
    for server in (a, b):
        answer = requests.post(server.url + "/oauth2/introspect",
                               data={"token": key["apiKeySecret"]}, auth=(rs_id, rs_secret))
        assert answer.json() == {"active": False}


def test_rate_limit_is_shared_through_redis(cluster):
    (a, b), (env_a, _) = cluster
    client_id, secret = create_client(env_a, "message:send")
    answers = [fetch_token(server, client_id, secret) for server in (a, b) * 5]
    statuses = [answer.status_code for answer in answers]
    assert statuses.count(200) == 8 and statuses.count(429) == 2, statuses
    limited = next(answer for answer in answers if answer.status_code == 429)
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error"] == "slow_down"


def _issued(server) -> float:
    """authserver_tokens_issued_total{outcome="issued"} as the server exposes it now."""
    answer = requests.get(server.url + "/metrics")
    assert answer.status_code == 200, answer.text
    match = re.search(r'^authserver_tokens_issued_total\{outcome="issued"\} (\S+)$', answer.text,
                      re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_health_readiness_and_metrics(cluster):
    (a, b), (env_a, _) = cluster
    client_id, secret = create_client(env_a, "message:send")
    before = _issued(a)
    fetch_token(a, client_id, secret)
    for server in (a, b):
        assert requests.get(server.url + "/healthz").status_code == 200
        assert requests.get(server.url + "/readyz").status_code == 200
    assert _issued(a) == before + 1
    metrics = requests.get(a.url + "/metrics").text
    # No client_id label (unbounded cardinality): one series per outcome.
    assert client_id not in metrics
    assert "authserver_request_duration_seconds_bucket" in metrics


def test_sigterm_lets_in_flight_requests_finish(tmp_path):
    """Graceful shutdown: a request whose body is still arriving at SIGTERM completes."""
    env = server_env(tmp_path / "instance", ISSUER=ISSUER, ENCRYPTION_KEY=ENCRYPTION_KEY,
                     SECRET_KEY="x")
    authserver(env, "init")
    client_id, secret = create_client(env, "message:send")
    server = ServerProcess(env)
    try:
        server.wait_ready()
        response = _token_request_interrupted_by_sigterm(server, client_id, secret)
    finally:
        exit_code = server.stop()
    assert response.startswith(b"HTTP/1.1 200"), response[:200]
    assert exit_code == 0


def _token_request_interrupted_by_sigterm(server, client_id, secret) -> bytes:
    body = b"grant_type=client_credentials"
    credentials = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /oauth2/token HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Authorization: Basic " + credentials.encode() + b"\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10])
        time.sleep(0.3)
        server.process.terminate()
        time.sleep(0.5)
        sock.sendall(body[10:])
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    return response
