"""The ``authserver`` command: through Click's runner, and once as real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import jwt
import psycopg
import pytest
import requests
from conftest import BACKENDS, PG_ADMIN_DSN, basic_auth
from oauth_support import table_counts

import authserver.admin.cli
from authserver import create_app
from authserver.scopes import current_catalogue
from authserver.storage.db import current_revision, db

main = authserver.admin.cli.main


def invoke(runner, *args: str):
    return runner.invoke(main, list(args))


def invoke_json(runner, *args: str):
    result = invoke(runner, *args, "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def create(runner, *args: str, scope: str = "message:send") -> dict:
    return invoke_json(runner, "clients", "create", "--name", "svc", "--scope", scope, *args)


def token_response(client, client_id: str, secret: str, **form):
    return client.post("/oauth2/token", data={"grant_type": "client_credentials", **form},
                       headers=basic_auth(client_id, secret))


# --- init ----------------------------------------------------------------------------------

def test_init_is_idempotent(app, runner):
    before = table_counts(app)
    first, second = invoke(runner, "init"), invoke(runner, "init")
    assert first.exit_code == second.exit_code == 0, (first.output, second.output)
    assert "signing keys already present" in second.stdout
    assert "database schema is up to date" in second.stdout
    assert table_counts(app) == before


@pytest.fixture
def fresh_database(backend, tmp_path):
    """An empty database of ``backend`` (no schema yet)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite'}"
        return
    name = f"authserver_cli_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fresh_app(url: str, instance: Path):
    return create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url,
                       "ISSUER": "https://auth.example.test"}, instance_path=str(instance))


def _dispose(application) -> None:
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


def test_init_on_a_fresh_instance(fresh_database, tmp_path):
    """First init writes instance secrets, schema and two keys; a second init changes nothing."""
    instance = tmp_path / "instance"
    first_app = _fresh_app(fresh_database, instance)
    try:
        result = invoke(first_app.test_cli_runner(), "init")
        assert result.exit_code == 0, result.output
        assert "wrote SECRET_KEY" in result.stdout and "wrote ENCRYPTION_KEY" in result.stdout
        assert "created the first signing keys" in result.stdout
    finally:
        _dispose(first_app)
    config_file = instance / "config.py"
    written = config_file.read_text()
    assert "ENCRYPTION_KEY = " in written and "SECRET_KEY = " in written
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600

    second_app = _fresh_app(fresh_database, instance)  # a new process reads instance/config.py
    try:
        counts = table_counts(second_app)
        result = invoke(second_app.test_cli_runner(), "init")
        assert result.exit_code == 0, result.output
        assert "wrote" not in result.stdout
        assert "signing keys already present" in result.stdout
        assert config_file.read_text() == written
        assert table_counts(second_app) == counts
        assert counts["signing_keys"] == 2
        with second_app.app_context():
            assert current_revision() is not None
        listing = invoke_json(second_app.test_cli_runner(), "signing-keys", "list")
        assert sorted(key["state"] for key in listing) == ["active", "next"]
    finally:
        _dispose(second_app)


# --- scopes ---------------------------------------------------------------------------------

def test_scopes_list_json(app, runner):
    rows = invoke_json(runner, "scopes", "list")
    with app.app_context():
        catalogue = current_catalogue()
        assert [row["name"] for row in rows] == catalogue.names
    by_name = {row["name"]: row for row in rows}
    assert len(rows) >= 160 and "tokens:introspect" in by_name
    assert by_name["sms:message:send"]["coveredBy"] == ["message:send", "sms:manage"]
    assert by_name["sms:manage"]["coveredBy"] == []
    assert all({"name", "category", "description", "coveredBy"} <= set(row) for row in rows)
    assert all(row["description"] for row in rows)


def test_scopes_list_human(runner):
    result = invoke(runner, "scopes", "list")
    assert result.exit_code == 0
    line = next(line for line in result.stdout.splitlines()
                if line.startswith("sms:message:send "))
    assert "also granted by message:send, sms:manage" in line


# --- clients ----------------------------------------------------------------------------------

def test_clients_create_json_and_token(app, client, runner):
    before = table_counts(app)
    created = create(runner, scope="message:send")
    assert {"clientId", "clientSecret", "scopes", "name", "authMethod", "enabled",
            "tokenTtl", "audiences"} <= set(created)
    assert created["scopes"] == ["message:send"] and created["enabled"] is True
    assert created["authMethod"] == "client_secret_basic"
    assert len(created["clientSecret"]) >= 43          # 256 bits, urlsafe base64
    after = table_counts(app)
    assert after["clients"] == before["clients"] + 1
    assert after["audit_events"] == before["audit_events"] + 1
    response = token_response(client, created["clientId"], created["clientSecret"],
                              scope="sms:message:send")
    assert response.status_code == 200
    claims = jwt.decode(response.get_json()["access_token"], options={"verify_signature": False})
    assert claims["sub"] == created["clientId"] and claims["scope"] == "sms:message:send"


def test_clients_create_options(app, client, runner):
    created = create(runner, "--token-ttl", "600", "--audience", "https://a.example.test",
                     "--audience", "https://b.example.test", "--auth-method",
                     "client_secret_post", scope="sms:message:send sms:logs:read")
    assert created["tokenTtl"] == 600
    assert created["audiences"] == ["https://a.example.test", "https://b.example.test"]
    assert created["authMethod"] == "client_secret_post"
    assert created["scopes"] == ["sms:message:send", "sms:logs:read"]
    response = client.post("/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": created["clientId"],
        "client_secret": created["clientSecret"], "resource": "https://b.example.test"})
    assert response.status_code == 200 and response.get_json()["expires_in"] == 600
    claims = jwt.decode(response.get_json()["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "https://b.example.test"


def test_clients_create_private_key_jwt(app, runner, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    jwk = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True)
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [{**jwk, "kid": "k1"}]}))
    created = create(runner, "--auth-method", "private_key_jwt", "--jwks-file", str(jwks_file))
    assert created["authMethod"] == "private_key_jwt"
    assert "clientSecret" not in created and created["hasSecret"] is False


def test_clients_list_and_show_never_print_secrets(app, runner):
    first = create(runner, scope="message:send")
    second = create(runner, scope="sms:manage")
    listing = invoke(runner, "clients", "list", "--json")
    rows = json.loads(listing.stdout)
    assert [row["clientId"] for row in rows] == [first["clientId"], second["clientId"]]
    human = invoke(runner, "clients", "list")
    shown = invoke(runner, "clients", "show", first["clientId"], "--json")
    assert json.loads(shown.stdout)["clientId"] == first["clientId"]
    human_show = invoke(runner, "clients", "show", first["clientId"])
    from authserver.credentials.hashing import hash_secret

    for output in (listing.stdout, human.stdout, shown.stdout, human_show.stdout):
        for secret in (first["clientSecret"], second["clientSecret"]):
            assert secret not in output and hash_secret(secret) not in output
    for row in [*rows, json.loads(shown.stdout)]:
        assert not [name for name in row if "secret" in name or "hash" in name]
    assert first["clientId"] in human.stdout and "enabled" in human.stdout


def test_clients_disable(app, client, runner):
    created = create(runner)
    disabled = invoke_json(runner, "clients", "disable", created["clientId"])
    assert disabled["enabled"] is False
    response = token_response(client, created["clientId"], created["clientSecret"])
    assert response.status_code == 401
    assert invoke_json(runner, "clients", "show", created["clientId"])["enabled"] is False


def test_clients_rotate_secret(app, client, runner):
    created = create(runner)
    rotated = invoke_json(runner, "clients", "rotate-secret", created["clientId"])
    assert rotated["clientSecret"] != created["clientSecret"]
    assert token_response(client, created["clientId"], created["clientSecret"]).status_code \
        == 401
    assert token_response(client, created["clientId"], rotated["clientSecret"]).status_code \
        == 200


def test_clients_rotate_secret_with_grace(app, client, clock, runner):
    created = create(runner)
    rotated = invoke_json(runner, "clients", "rotate-secret", created["clientId"],
                          "--grace-period", "60")
    old, new = created["clientSecret"], rotated["clientSecret"]
    assert token_response(client, created["clientId"], old).status_code == 200
    clock.advance(61)
    assert token_response(client, created["clientId"], old).status_code == 401
    assert token_response(client, created["clientId"], new).status_code == 200


CREATE_VALIDATION_ERRORS = [
    (["--name", "", "--scope", "message:send"], "name"),
    (["--name", "   ", "--scope", "message:send"], "name"),
    (["--name", "bell\x07", "--scope", "message:send"], "name"),
    (["--name", "x" * 201, "--scope", "message:send"], "name"),
    (["--name", "svc", "--scope", ""], "scopes"),
    (["--name", "svc", "--scope", "nosuch:scope"], "scopes"),
    (["--name", "svc", "--scope", "Message:Send"], "scopes"),
    (["--name", "svc", "--scope", "message:send  sms:manage"], "scopes"),
    (["--name", "svc", "--scope", "message:send\tsms:manage"], "scopes"),
    (["--name", "svc", "--scope", "*"], "scopes"),
    (["--name", "svc", "--scope", "message:send", "--token-ttl", "10"], "tokenTtl"),
    (["--name", "svc", "--scope", "message:send", "--token-ttl", "86401"], "tokenTtl"),
    (["--name", "svc", "--scope", "message:send", "--audience", "not a uri"], "audiences"),
    (["--name", "svc", "--scope", "message:send", "--audience", "ftp://x.example"], "audiences"),
    (["--name", "svc", "--scope", "message:send", "--auth-method", "private_key_jwt"], "jwks"),
]


def test_clients_create_validation_errors(app, runner, subtests):
    """Exit status 1, a message naming the field on stderr, nothing on stdout or in the DB."""
    before = table_counts(app)
    for args, field in CREATE_VALIDATION_ERRORS:
        with subtests.test(args=args):
            result = invoke(runner, "clients", "create", *args, "--json")
            assert result.exit_code == 1, result.output
            assert f"error: {field}:" in result.stderr
            assert result.stdout == ""
    assert table_counts(app) == before


@pytest.mark.parametrize("jwks", [
    '{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}',
    '{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA"}]}',
    "not json", '{"keys": []}',
])
def test_clients_create_bad_jwks_file(app, runner, tmp_path, jwks):
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(jwks)
    before = table_counts(app)
    result = invoke(runner, "clients", "create", "--name", "svc", "--scope", "message:send",
                    "--auth-method", "private_key_jwt", "--jwks-file", str(jwks_file))
    assert result.exit_code == 1 and "error: jwks:" in result.stderr
    assert table_counts(app) == before


def test_clients_create_jwks_for_a_secret_client(app, runner, tmp_path):
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text('{"keys": []}')
    before = table_counts(app)
    result = invoke(runner, "clients", "create", "--name", "svc", "--scope", "message:send",
                    "--jwks-file", str(jwks_file))
    assert result.exit_code == 1 and "error: jwks:" in result.stderr
    assert table_counts(app) == before


USAGE_ERRORS = [
    ["clients", "create", "--name", "svc", "--scope", "message:send", "--client-id", "mine"],
    ["clients", "create", "--name", "svc", "--scope", "message:send", "--auth-method", "none"],
    ["clients", "create", "--name", "svc", "--scope", "message:send", "--token-ttl", "1h"],
    ["clients", "create", "--scope", "message:send"],
    ["signing-keys", "rotate", "--alg", "HS256"],
    ["init", "--alg", "none"],
]


def test_usage_errors_write_nothing(app, runner, subtests):
    """Options Click refuses (TE21: no client-chosen client_id) exit 2 and write nothing."""
    before = table_counts(app)
    for args in USAGE_ERRORS:
        with subtests.test(args=args):
            assert invoke(runner, *args).exit_code == 2
    assert table_counts(app) == before


@pytest.mark.parametrize("command", [
    ["clients", "show"], ["clients", "disable"], ["clients", "rotate-secret"],
])
def test_unknown_client(app, runner, command):
    before = table_counts(app)
    result = invoke(runner, *command, "0" * 32)
    assert result.exit_code == 1 and "error: not found" in result.stderr
    assert table_counts(app) == before


@pytest.mark.parametrize("grace", ["-1", str(30 * 86400 + 1)])
def test_rotate_secret_bad_grace_period(app, runner, grace):
    created = create(runner)
    before = table_counts(app)
    result = invoke(runner, "clients", "rotate-secret", created["clientId"],
                    "--grace-period", grace)
    assert result.exit_code == 1 and "error: gracePeriod:" in result.stderr
    assert table_counts(app) == before


def test_rotate_secret_of_private_key_jwt_client(app, runner, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    jwk = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True)
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [jwk]}))
    created = create(runner, "--auth-method", "private_key_jwt", "--jwks-file", str(jwks_file))
    before = table_counts(app)
    result = invoke(runner, "clients", "rotate-secret", created["clientId"])
    assert result.exit_code == 1 and "error: authMethod:" in result.stderr
    assert table_counts(app) == before


def test_clients_update(app, client, runner, tmp_path):
    created = create(runner, scope="sms:manage")
    updated = invoke_json(runner, "clients", "update", created["clientId"], "--name", "renamed",
                          "--scope", "sms:logs:read sms:message:send", "--token-ttl", "120",
                          "--audience", "https://a.example.test")
    assert (updated["name"], updated["scopes"], updated["tokenTtl"], updated["audiences"]) == (
        "renamed", ["sms:logs:read", "sms:message:send"], 120, ["https://a.example.test"])
    answer = token_response(client, created["clientId"], created["clientSecret"])
    assert answer.get_json()["expires_in"] == 120
    reset = invoke_json(runner, "clients", "update", created["clientId"], "--default-token-ttl",
                        "--clear-audiences", "--auth-method", "client_secret_post")
    assert (reset["tokenTtl"], reset["audiences"], reset["authMethod"]) == (
        None, [], "client_secret_post")
    refused = invoke(runner, "clients", "update", created["clientId"], "--token-ttl", "5")
    assert refused.exit_code == 1 and "error: tokenTtl:" in refused.stderr
    nothing = invoke(runner, "clients", "update", created["clientId"])
    assert nothing.exit_code == 1 and "error:" in nothing.stderr

    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    jwk = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True)
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [{**jwk, "kid": "k1"}]}))
    switched = invoke_json(runner, "clients", "update", created["clientId"], "--auth-method",
                           "private_key_jwt", "--jwks-file", str(jwks_file))
    assert (switched["authMethod"], switched["hasSecret"]) == ("private_key_jwt", False)
    assert token_response(client, created["clientId"], created["clientSecret"]).status_code \
        == 401


def test_clients_and_api_keys_delete(app, client, runner):
    created = create(runner)
    asked = runner.invoke(main, ["clients", "delete", created["clientId"]], input="n\n")
    assert asked.exit_code == 1 and "for good?" in asked.output  # declined: nothing deleted
    assert invoke_json(runner, "clients", "show", created["clientId"])["enabled"] is True
    deleted = invoke(runner, "clients", "delete", created["clientId"], "--yes")
    assert deleted.exit_code == 0 and created["clientId"] in deleted.stdout
    assert token_response(client, created["clientId"], created["clientSecret"]).status_code \
        == 401
    assert invoke(runner, "clients", "show", created["clientId"]).exit_code == 1
    key = invoke_json(runner, "api-keys", "create", "--name", "k", "--scope", "sms:manage")
    confirmed = runner.invoke(main, ["api-keys", "delete", key["id"]], input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert invoke(runner, "api-keys", "show", key["id"]).exit_code == 1
    assert invoke(runner, "api-keys", "delete", key["id"], "--yes").exit_code == 1
    with app.app_context():
        from authserver.storage import audit

        events, _ = audit.query_events(size=100)
        assert {(e.object_id, e.action) for e in events} >= {
            (created["clientId"], "delete"), (key["id"], "delete")}


def _json_names(value) -> set:
    if isinstance(value, dict):
        return set(value) | {name for item in value.values() for name in _json_names(item)}
    if isinstance(value, list):
        return {name for item in value for name in _json_names(item)}
    return set()


def test_every_json_output_is_camel_case(app, runner):
    """One casing: the CLI's --json uses the admin API's names (CHANGELOG.md lists renames)."""
    import re

    created = create(runner)
    key = invoke_json(runner, "api-keys", "create", "--name", "k", "--scope", "sms:manage")
    outputs = [created, key, invoke_json(runner, "clients", "list"),
               invoke_json(runner, "clients", "show", created["clientId"]),
               invoke_json(runner, "clients", "rotate-secret", created["clientId"]),
               invoke_json(runner, "clients", "disable", created["clientId"]),
               invoke_json(runner, "api-keys", "list"),
               invoke_json(runner, "api-keys", "show", key["id"]),
               invoke_json(runner, "scopes", "list"), invoke_json(runner, "signing-keys", "list")]
    names = set().union(*(_json_names(output) for output in outputs))
    assert names and all(re.fullmatch(r"[a-z][A-Za-z0-9]*", name) for name in names), names


# --- signing keys -------------------------------------------------------------------------------

def test_signing_keys_rotate_and_list(app, runner):
    listed = invoke_json(runner, "signing-keys", "list")
    upcoming = next(key["kid"] for key in listed if key["state"] == "next")
    rotated = invoke_json(runner, "signing-keys", "rotate")
    assert rotated["kid"] == upcoming and rotated["state"] == "active"
    listed = invoke(runner, "signing-keys", "list", "--json")
    states = [key["state"] for key in json.loads(listed.stdout)]
    assert states.count("active") == 1 and states.count("next") == 1
    assert "private" not in listed.stdout.lower() and '"d"' not in listed.stdout


# --- the real thing: processes, gunicorn, SIGTERM --------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def authserver_command() -> list[str]:
    """The installed console script next to this interpreter."""
    script = Path(sys.executable).with_name("authserver")
    assert script.exists(), f"{script} is missing: install the package (pip install -e .)"
    return [str(script)]


@pytest.fixture(params=BACKENDS)
def process_env(request, tmp_path):
    """Environment for ``authserver`` processes: a fresh instance and a fresh database.

    The copy of os.environ is passed to the processes; os.environ itself is not changed.
    """
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("AUTHSERVER_")}
    env["AUTHSERVER_INSTANCE_PATH"] = str(tmp_path / "instance")
    database = None
    if request.param == "postgresql":
        database = f"authserver_proc_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        env["AUTHSERVER_SQLALCHEMY_DATABASE_URI"] = \
            f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
    yield env
    if database:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def run(env: dict, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([*authserver_command(), *args], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result


def wait_until_serving(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited during start-up"
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def test_real_processes_init_create_serve_token_sigterm(process_env, tmp_path):
    """README path as a user runs it: init, create a client, serve, get and verify a token
    with a plain HTTP client, stop with SIGTERM. (Repeated init: test_init_on_a_fresh_instance.)"""
    first = run(process_env, "init")
    assert "created the first signing keys" in first.stdout
    created = json.loads(run(process_env, "clients", "create", "--name", "svc", "--scope",
                             "message:send", "--json").stdout)
    if "AUTHSERVER_SQLALCHEMY_DATABASE_URI" not in process_env:
        assert (tmp_path / "instance" / "authserver.sqlite").exists()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        server = subprocess.Popen([*authserver_command(), "serve", "--port", str(port),
                                   "--workers", "2"], env=process_env, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        wait_until_serving(base + "/.well-known/jwks.json", server)
        metadata = requests.get(base + "/.well-known/oauth-authorization-server",
                                timeout=5).json()
        assert metadata["issuer"] == base
        response = requests.post(metadata["token_endpoint"],
                                 data={"grant_type": "client_credentials",
                                       "scope": "sms:message:send"},
                                 auth=(created["clientId"], created["clientSecret"]),
                                 timeout=5)
        assert response.status_code == 200, response.text
        assert response.headers["Cache-Control"] == "no-store"
        token = response.json()["access_token"]
        signing_key = jwt.PyJWKClient(metadata["jwks_uri"]).get_signing_key_from_jwt(token)
        claims = jwt.decode(token, signing_key, algorithms=[signing_key.algorithm_name], issuer=base,
                            audience=base + "/api")
        assert claims["sub"] == created["clientId"] and claims["scope"] == "sms:message:send"
        assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
        refused = requests.post(metadata["token_endpoint"],
                                data={"grant_type": "client_credentials"},
                                auth=(created["clientId"], "wrong"), timeout=5)
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            returncode = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            raise
    output = log_path.read_text()
    assert returncode == 0, output
    assert "Traceback" not in output
    assert "Shutting down" in output or "Handling signal" in output, output
