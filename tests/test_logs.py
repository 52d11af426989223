"""Logs are JSON lines with a request id; no secret ever appears in them (threat model AK10,
issue 16 item 6); metrics have bounded labels and can live on their own listener (item 7)."""

from __future__ import annotations

import base64
import io
import json
import logging
import re

import pytest
import requests
from conftest import basic_auth
from serverproc import ServerProcess, authserver, free_port, server_env

from authserver.observability.logs import ACCESS_LOGGER, json_handler

ENCRYPTION_KEY = base64.urlsafe_b64encode(b"L" * 32).decode()
SECRET_KEY = "log-test-session-signing-key-0123456789"
PASSWORD = "log test operator passphrase 42"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
SECRET_RE = re.compile(r"asak_[0-9A-Za-z]{38}")


@pytest.fixture
def access_lines(app):
    """JSON lines the access logger writes while a test runs."""
    stream = io.StringIO()
    handler = json_handler(stream)
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)


@pytest.mark.parametrize("app_config", [{"ACCESS_LOG": True}])
def test_access_log_line(app, client, oauth_clients, access_lines):
    client_id, secret = oauth_clients.create()
    answer = client.post("/oauth2/token?x=1", data={"grant_type": "client_credentials"},
                         headers={**basic_auth(client_id, secret), "X-Request-ID": "abc-123"})
    assert answer.headers["X-Request-ID"] == "abc-123"
    client.get("/healthz", headers={"X-Request-ID": "not valid!"})
    token_line, health_line = access_lines()
    assert token_line["request_id"] == "abc-123" and token_line["route"] == "/oauth2/token"
    assert token_line["status"] == 400  # parameters in the query string (TE05)
    assert token_line["client"] is None and token_line["method"] == "POST"
    assert token_line["path"] == "/oauth2/token" and token_line["latency_ms"] >= 0
    assert {"time", "level", "logger", "message", "remote"} <= set(token_line)
    assert re.fullmatch(r"[0-9a-f]{16}", health_line["request_id"])  # a fresh id, not ours
    answer = client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                         headers=basic_auth(client_id, secret))
    assert access_lines()[-1]["client"] == client_id and access_lines()[-1]["status"] == 200


def test_access_log_is_off_by_default(app, client, access_lines):
    client.get("/healthz")
    assert access_lines() == []


def test_metric_labels_are_bounded(app, client):
    for method in ("FROB", "X" * 40, "PROPFIND"):
        client.open("/healthz", method=method)
    client.get(f"/no/such/{'a' * 30}")
    body = client.get("/metrics").text
    assert "FROB" not in body and "PROPFIND" not in body and "a" * 30 not in body
    assert 'method="other"' in body and 'endpoint="unmatched"' in body


@pytest.mark.parametrize("app_config", [{"METRICS_BIND": "127.0.0.1:9464"}])
def test_metrics_only_on_their_own_listener(app, client):
    main, metrics = "http://127.0.0.1:5000", "http://127.0.0.1:9464"  # SERVER_NAME/PORT
    assert client.get("/metrics", base_url=main).status_code == 404
    assert client.get("/metrics", base_url=metrics).status_code == 200
    for path in ("/healthz", "/readyz"):
        assert client.get(path, base_url=metrics).status_code == 200
        assert client.get(path, base_url=main).status_code == 200
    assert client.get("/.well-known/jwks.json", base_url=metrics).status_code == 404
    assert client.get("/.well-known/jwks.json", base_url=main).status_code == 200


# --- a whole run, every endpoint, every log line searched --------------------------------------

def _csrf(session: requests.Session, url: str) -> str:
    page = session.get(url, timeout=10)
    assert page.status_code == 200, (url, page.status_code)
    return CSRF_RE.search(page.text).group(1)


def test_AK10_no_secret_in_any_log_line(tmp_path):
    """A real server (gunicorn, ACCESS_LOG on, LOG_LEVEL=DEBUG) used through every endpoint,
    with good and bad credentials; then every line it wrote is searched for every secret,
    key and token it handed out or was sent."""
    log_path = tmp_path / "server.log"
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = server_env(tmp_path / "instance", ISSUER=issuer, ENCRYPTION_KEYS=ENCRYPTION_KEY,
                     SECRET_KEY=SECRET_KEY, ACCESS_LOG="true", LOG_LEVEL="DEBUG")
    init = authserver(env, "init")
    secrets_seen = [ENCRYPTION_KEY, SECRET_KEY, PASSWORD]
    admin = json.loads(authserver(env, "clients", "create", "--name", "admin", "--scope",
                                  "account-management:manage tokens:introspect message:send",
                                  "--json").stdout)
    svc = json.loads(authserver(env, "clients", "create", "--name", "svc", "--scope",
                                "message:send", "--auth-method", "client_secret_post",
                                "--json").stdout)
    key = json.loads(authserver(env, "api-keys", "create", "--name", "k", "--scope",
                                "sms:message:send", "--json").stdout)
    authserver(env, "operators", "create", "--username", "alice", "--password-stdin",
               input_text=PASSWORD + "\n")
    secrets_seen += [admin["clientSecret"], svc["clientSecret"], key["apiKeySecret"]]
    assert init.returncode == 0

    server = ServerProcess(env, workers=1, log_path=log_path, port=port).wait_ready()
    try:
        url = server.url
        token = requests.post(url + "/oauth2/token", auth=(admin["clientId"],
                              admin["clientSecret"]), timeout=10,
                              data={"grant_type": "client_credentials",
                                    "resource": issuer}).json()["access_token"]  # AU01
        svc_token = requests.post(url + "/auth/1/oauth2/token", data={
            "grant_type": "client_credentials", "client_id": svc["clientId"],
            "client_secret": svc["clientSecret"]}, timeout=10).json()["access_token"]
        secrets_seen += [token, svc_token]
        bearer = {"Authorization": f"Bearer {token}"}
        # Bad credentials, and secrets where they do not belong (query string, JSON body).
        wrong = "wrong-secret-that-must-not-be-logged-1234"
        secrets_seen.append(wrong)
        requests.post(url + "/oauth2/token", auth=(svc["clientId"], wrong),
                      data={"grant_type": "client_credentials"}, timeout=10)
        requests.post(url + f"/oauth2/token?client_secret={svc['clientSecret']}",
                      data={"grant_type": "client_credentials"}, timeout=10)
        requests.post(url + "/oauth2/token", json={"client_secret": svc["clientSecret"]},
                      timeout=10)
        requests.get(url + f"/settings/2/api-keys?api_key={key['apiKeySecret']}", timeout=10)
        requests.get(url + "/settings/2/api-keys", headers={
            "Authorization": f"App {key['apiKeySecret']}"}, timeout=10)
        admin_auth = (admin["clientId"], admin["clientSecret"])
        for credential in (svc_token, key["apiKeySecret"], "garbage." + token[-20:]):
            requests.post(url + "/oauth2/introspect", auth=admin_auth,
                          data={"token": credential}, timeout=10)
        requests.post(url + "/oauth2/revocations", auth=admin_auth, data={"after": "0"},
                      timeout=10)
        # Admin API: create, read, update, rotate.
        answer = requests.post(url + "/settings/2/api-keys", headers=bearer, json={
            "name": "via api", "scopeGuids": ["sms:message:send"]}, timeout=10)
        assert answer.status_code == 201, answer.text
        created = answer.json()
        answer = requests.post(url + "/settings/2/oauth-clients", headers=bearer, json={
            "name": "via api", "scopes": ["sms:message:send"]}, timeout=10)
        assert answer.status_code == 201, answer.text
        client_created = answer.json()
        secrets_seen += [created["apiKeySecret"], client_created["clientSecret"]]
        requests.put(url + f"/settings/2/api-keys/{created['id']}", headers=bearer,
                     json={"name": "renamed"}, timeout=10)
        rotated = requests.post(url + f"/settings/2/oauth-clients/"
                                f"{client_created['clientId']}/rotate-secret", headers=bearer,
                                json={}, timeout=10).json()
        secrets_seen.append(rotated["clientSecret"])
        for path in ("/settings/2/api-keys", "/settings/2/oauth-clients", "/settings/2/scopes",
                     "/audit/1/logs", "/openapi.json", "/.well-known/oauth-authorization-server",
                     "/.well-known/jwks.json", "/healthz", "/readyz", "/metrics"):
            assert requests.get(url + path, headers=bearer, timeout=10).status_code == 200, path
        requests.post(url + "/oauth2/revoke", auth=admin_auth, data={"token": token},
                      timeout=10)
        requests.post(url + "/oauth2/revoke", auth=admin_auth,
                      data={"token": created["apiKeySecret"]}, timeout=10)
        # The web UI: a failed and a good sign-in, a key created (shown once), a secret rotated.
        browser = requests.Session()
        browser.post(url + "/ui/sign-in", data={"csrf_token": _csrf(browser, url + "/ui/sign-in"),
                                                "username": "alice", "password": wrong},
                     timeout=10)
        signed_in = browser.post(url + "/ui/sign-in", data={
            "csrf_token": _csrf(browser, url + "/ui/sign-in"), "username": "alice",
            "password": PASSWORD}, timeout=10)
        assert signed_in.status_code == 200 and "Sign out" in signed_in.text
        secrets_seen += [cookie.value for cookie in browser.cookies]
        page = browser.post(url + "/ui/api-keys/new", data={
            "csrf_token": _csrf(browser, url + "/ui/api-keys/new"), "name": "ui key",
            "expiration": "", "allowed_ips": "", "scopes": "sms:message:send"}, timeout=10)
        secrets_seen += SECRET_RE.findall(page.text)
        assert len(SECRET_RE.findall(page.text)) >= 1
        browser.get(url + f"/ui/clients/{svc['clientId']}", timeout=10)
        browser.post(url + f"/ui/clients/{svc['clientId']}/rotate-secret", data={
            "csrf_token": _csrf(browser, url + f"/ui/clients/{svc['clientId']}")}, timeout=10)
        browser.get(url + "/ui/audit", timeout=10)
    finally:
        server.stop()
    text = log_path.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is JSON
    routes = {record.get("route") for record in records if record["logger"] == ACCESS_LOGGER}
    assert {"/oauth2/token", "/oauth2/introspect", "/oauth2/revoke", "/oauth2/revocations",
            "/settings/2/api-keys", "/ui/sign-in", "/.well-known/jwks.json"} <= routes
    for secret in secrets_seen:
        assert secret and secret not in text, "a secret appears in the log"
        for token_part in secret.split(".")[1:]:  # JWT payloads and signatures on their own
            assert len(token_part) < 16 or token_part not in text
