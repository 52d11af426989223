"""Settings from the environment, ``config check``, the encryption keyring and its rotation,
/readyz, and the CLI's one-line errors (issue 16, items 1-3 and 8)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid

import psycopg
import pytest
import sqlalchemy as sa
from conftest import ENCRYPTION_KEY, PG_ADMIN_DSN, basic_auth
from serverproc import BIN, free_port, server_env

from authserver import create_app
from authserver.credentials import signing_keys as keys
from authserver import config as defaults
from authserver.settings import (
    ConfigurationError,
    fingerprint,
    parse_value,
    read_environment,
    setting_types,
)
from authserver.storage.db import db, upgrade_database
from authserver.storage.models import SigningKey

KINDS = setting_types(defaults)
NEW_KEY = base64.urlsafe_b64encode(b"n" * 32).decode()
OTHER_KEY = base64.urlsafe_b64encode(b"o" * 32).decode()
TRACEBACK_MARKERS = ("Traceback", 'File "', "site-packages")


def from_env(environ: dict) -> tuple[dict, list[str]]:
    """The settings an environment gives (and its variables that name none)."""
    return read_environment(environ, KINDS)


def cli(env: dict, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run ``authserver`` as a user would (its own process, the given environment only)."""
    return subprocess.run([str(BIN / "authserver"), *args], env=env, capture_output=True,
                          text=True, timeout=120, input=stdin)


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    """Non-zero, one line on stderr naming the problem, no traceback."""
    assert result.returncode != 0, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not any(marker in result.stderr + result.stdout for marker in TRACEBACK_MARKERS)


# --- settings from the environment -------------------------------------------------------------

@pytest.mark.parametrize(("name", "text", "expected"), [
    ("ISSUER", "https://auth.example.test", "https://auth.example.test"),
    ("SECRET_KEY", "12345", "12345"),                       # a string stays a string
    ("ACCESS_TOKEN_TTL", "600", 600),
    ("SIGNING_KEY_CACHE_SECONDS", "2.5", 2.5),
    ("SESSION_COOKIE_SECURE", "true", True),
    ("ACCESS_LOG", "0", False),
    ("TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1", ["10.0.0.0/8", "192.0.2.1"]),
    ("TRUSTED_PROXIES", '["10.0.0.1"]', ["10.0.0.1"]),
    ("ENCRYPTION_KEYS", f"{NEW_KEY},{ENCRYPTION_KEY}", [NEW_KEY, ENCRYPTION_KEY]),
    ("SQLALCHEMY_ENGINE_OPTIONS", '{"pool_size": 3}', {"pool_size": 3}),
])
def test_every_setting_parses_by_its_type(name, text, expected):
    values, unknown = from_env({f"AUTHSERVER_{name}": text})
    assert values == {name: expected} and unknown == []


@pytest.mark.parametrize(("name", "text"), [
    ("ACCESS_TOKEN_TTL", "an hour"), ("SESSION_COOKIE_SECURE", "maybe"),
    ("SQLALCHEMY_ENGINE_OPTIONS", "{pool_size"), ("TRUSTED_PROXIES", '[1, 2]'),
])
def test_a_value_that_does_not_parse_names_its_variable(name, text):
    with pytest.raises(ConfigurationError, match=f"AUTHSERVER_{name}"):
        from_env({f"AUTHSERVER_{name}": text})


def test_a_secret_value_is_never_echoed_in_an_error():
    with pytest.raises(ConfigurationError) as raised:
        parse_value("ENCRYPTION_KEYS", '["unterminated', list)
    assert "unterminated" not in str(raised.value)


def test_secrets_from_files(tmp_path):
    secret_file = tmp_path / "encryption_keys"
    secret_file.write_text(f"{NEW_KEY},{ENCRYPTION_KEY}\n")
    values, _ = from_env({"AUTHSERVER_ENCRYPTION_KEYS_FILE": str(secret_file),
                                  "AUTHSERVER_SCOPES_FILE": "extra.toml"})
    # SCOPES_FILE is a setting of its own, not "SCOPES" from a file.
    assert values == {"ENCRYPTION_KEYS": [NEW_KEY, ENCRYPTION_KEY], "SCOPES_FILE": "extra.toml"}
    with pytest.raises(ConfigurationError, match="both set"):
        from_env({"AUTHSERVER_SECRET_KEY": "a",
                          "AUTHSERVER_SECRET_KEY_FILE": str(secret_file)})
    with pytest.raises(ConfigurationError, match="AUTHSERVER_SECRET_KEY_FILE: cannot read"):
        from_env({"AUTHSERVER_SECRET_KEY_FILE": str(tmp_path / "missing")})


def test_environment_overrides_the_instance_file(tmp_path, monkeypatch):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "config.py").write_text("ISSUER = 'https://file.example.test'\nLEEWAY = 5\n")
    monkeypatch.setenv("AUTHSERVER_ISSUER", "https://env.example.test")
    app = create_app(instance_path=str(instance))
    assert app.config["ISSUER"] == "https://env.example.test" and app.config["LEEWAY"] == 5


def environment_only(folder) -> dict:
    """A host configured from the environment alone (no instance/config.py anywhere), its
    SQLite database and secret file in ``folder``."""
    database = folder / "data" / "authserver.sqlite"
    secret_file = folder / "secret_key"
    secret_file.write_text("from-a-file\n")
    return server_env(folder / "no-instance", ISSUER="https://auth.example.test",
                      SQLALCHEMY_DATABASE_URI=f"sqlite:///{database}",
                      ENCRYPTION_KEYS=ENCRYPTION_KEY, SECRET_KEY_FILE=str(secret_file))


@pytest.fixture
def env_only(tmp_path):
    """A host from the environment alone, not initialised yet."""
    return environment_only(tmp_path)


@pytest.fixture(scope="module")
def initialised_env(tmp_path_factory):
    """A host from the environment alone after ``authserver init``, for the tests that only
    read it (``config check``, a refused ``serve``)."""
    env = environment_only(tmp_path_factory.mktemp("initialised"))
    init = cli(env, "init")
    assert init.returncode == 0, init.stderr
    return env


def test_a_host_runs_from_the_environment_alone(env_only, tmp_path):
    init = cli(env_only, "init")
    assert init.returncode == 0, init.stderr
    assert "wrote" not in init.stdout  # every secret came from the environment
    assert not (tmp_path / "no-instance").exists()
    created = cli(env_only, "clients", "create", "--name", "svc", "--scope", "message:send",
                  "--json")
    assert created.returncode == 0, created.stderr
    check = cli(env_only, "config", "check")
    assert check.returncode == 0, check.stderr
    assert ENCRYPTION_KEY not in check.stdout and "from-a-file" not in check.stdout
    assert fingerprint(ENCRYPTION_KEY) in check.stdout
    assert 'ISSUER = "https://auth.example.test"' in check.stdout


@pytest.mark.parametrize(("setting", "value", "problem"), [
    ("TRUSTED_PROXIES", "10.0.0.1/8", "TRUSTED_PROXIES entry '10.0.0.1/8'"),
    ("ENCRYPTION_KEYS", "c2hvcnQ=", "ENCRYPTION_KEYS entry 1: must decode to 32 bytes"),
    ("ISSUER", "http://auth.example.test", "must be an https URL"),
    ("TOKEN_RATE_LIMIT", "lots", "TOKEN_RATE_LIMIT 'lots'"),
    ("TRUSTED_PROXIE", "10.0.0.1", "AUTHSERVER_TRUSTED_PROXIE names no setting"),
    ("METRICS_BIND", "9100", "METRICS_BIND"),
])
def test_config_check_names_the_problem(initialised_env, setting, value, problem):
    env = {**initialised_env, f"AUTHSERVER_{setting}": value}
    check = cli(env, "config", "check", "--offline")
    assert check.returncode == 1, check.stdout
    assert any(problem in line for line in check.stderr.splitlines()), check.stderr
    assert not any(marker in check.stderr for marker in TRACEBACK_MARKERS)


def test_config_check_runs_the_readiness_checks(env_only):
    check = cli(env_only, "config", "check")  # not initialised yet
    assert check.returncode == 1
    assert "problem: database: the SQLite database does not exist yet" in check.stderr
    assert cli(env_only, "init").returncode == 0
    check = cli(env_only, "config", "check")
    assert check.returncode == 0, check.stderr
    wrong = cli({**env_only, "AUTHSERVER_ENCRYPTION_KEYS": OTHER_KEY}, "config", "check")
    assert wrong.returncode == 1
    assert "problem: signing_key: signing key" in wrong.stderr
    assert "cannot be decrypted" in wrong.stderr


# --- the CLI's errors ------------------------------------------------------------------------

def test_uninitialised_instance_is_one_line_and_creates_nothing(env_only, tmp_path):
    database = tmp_path / "data" / "authserver.sqlite"
    for command in (["clients", "list"], ["api-keys", "list"], ["signing-keys", "list"],
                    ["operators", "list"], ["encryption-key", "rotate"]):
        assert_one_line_error(cli(env_only, *command), "not initialised", "authserver init")
    assert not database.exists() and not database.parent.exists()


def test_unreachable_database_is_one_line(env_only):
    port = free_port()  # nothing listens there
    env = {**env_only, "AUTHSERVER_SQLALCHEMY_DATABASE_URI":
           f"postgresql+psycopg://postgres:hunter2@127.0.0.1:{port}/nowhere"}
    result = cli(env, "clients", "list")
    assert_one_line_error(result, "does not answer", f"127.0.0.1:{port}")
    assert "hunter2" not in result.stderr


def test_pending_migrations_are_one_line(env_only, tmp_path):
    assert cli(env_only, "init").returncode == 0
    database = tmp_path / "data" / "authserver.sqlite"
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '0000_older'"))
    engine.dispose()
    assert_one_line_error(cli(env_only, "clients", "list"), "0000_older",
                          "authserver db upgrade")


@pytest.mark.parametrize("args", [["clients", "list", "--bogus"], ["no-such-command"],
                                  ["clients", "create", "--name", "x"]])
def test_bad_flags_are_one_line(env_only, args):
    result = cli(env_only, *args)
    assert result.returncode == 2
    assert_one_line_error(result, "--help")


def test_bad_environment_value_is_one_line(env_only):
    env = {**env_only, "AUTHSERVER_ACCESS_TOKEN_TTL": "an hour"}
    assert_one_line_error(cli(env, "clients", "list"), "AUTHSERVER_ACCESS_TOKEN_TTL")


def test_version():
    from importlib.metadata import version

    result = cli(dict(os.environ), "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"authserver {version('authserver')}"


# --- the keyring -------------------------------------------------------------------------------

def _stored(app) -> dict[str, bytes]:
    with app.app_context():
        return {row.kid: bytes(row.private_key_encrypted)
                for row in db.session.scalars(sa.select(SigningKey))}


@pytest.fixture
def own_database(backend, tmp_path):
    """A database of its own (these tests re-encrypt every signing key)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'keyring.sqlite'}"
        return
    name = f"authserver_keyring_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def host(url: str, tmp_path, ring: list[str] | None = None, **extra):
    """An app on ``url`` whose keyring is ``ring``, as one host of several."""
    config = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "t",
              "ISSUER": "https://auth.example.test", "ENCRYPTION_KEYS": ring or [ENCRYPTION_KEY],
              "TOKEN_RATE_LIMIT": "", "AUTH_FAILURE_RATE_LIMIT": "", **extra}
    return create_app(config, instance_path=str(tmp_path / f"instance-{uuid.uuid4().hex[:6]}"))


def dispose(*apps) -> None:
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def token_status(app, client_id, secret) -> tuple[int, dict]:
    answer = app.test_client().post("/oauth2/token", data={"grant_type": "client_credentials"},
                                    headers=basic_auth(client_id, secret))
    return answer.status_code, answer.get_json()


def test_keyring_rollover_without_downtime(own_database, tmp_path):
    """The documented rollover (docs/operations.md): old ring -> both keys, old first -> both,
    new first -> rotate -> new alone. Every host serves tokens at every step."""
    from authserver.credentials import clients as client_service

    old_only = host(own_database, tmp_path, [ENCRYPTION_KEY])
    with old_only.app_context():
        upgrade_database()
        keys.ensure_signing_keys()
        record, secret = client_service.create_client(name="s", scope="message:send",
                                                      actor="test")
        client_id = record.client_id
    before = _stored(old_only)
    steps = [[ENCRYPTION_KEY, NEW_KEY], [NEW_KEY, ENCRYPTION_KEY]]
    hosts = [old_only] + [host(own_database, tmp_path, ring) for ring in steps]
    for app in hosts:
        assert token_status(app, client_id, secret)[0] == 200
    newest = hosts[-1]
    with newest.app_context():
        keys.rotate_signing_keys()  # a key created now is encrypted under NEW_KEY ...
    for app in hosts[1:]:  # ... which every host that already holds NEW_KEY decrypts
        with app.app_context():
            keys.check_signing_key()
    with newest.app_context():
        rewritten, unchanged = keys.reencrypt_signing_keys()
    assert rewritten == len(before) and unchanged == 1  # the next key made by the rotation
    after = _stored(newest)
    assert set(after) > set(before) and all(after[kid] != before[kid] for kid in before)
    new_only = host(own_database, tmp_path, [NEW_KEY])
    assert token_status(new_only, client_id, secret)[0] == 200
    with new_only.app_context():
        assert keys.reencrypt_signing_keys() == (0, len(after))
    dispose(*hosts, new_only)


def test_rotate_changes_nothing_when_a_key_is_missing(own_database, tmp_path):
    first = host(own_database, tmp_path, [ENCRYPTION_KEY])
    with first.app_context():
        upgrade_database()
        keys.ensure_signing_keys()
    before = _stored(first)
    wrong = host(own_database, tmp_path, [NEW_KEY])  # lacks the key the rows are under
    with wrong.app_context(), pytest.raises(keys.UndecryptableKeyError, match="cannot be decrypt"):
        keys.reencrypt_signing_keys()
    assert _stored(first) == before
    dispose(first, wrong)


def test_a_key_rotated_elsewhere_is_503_with_the_reason(own_database, tmp_path):
    """A host whose ring lacks the key everything was re-encrypted under: /readyz 503 naming
    the cause, token requests 503 with Retry-After (never 500)."""
    from authserver.credentials import clients as client_service

    stale = host(own_database, tmp_path, [ENCRYPTION_KEY])
    with stale.app_context():
        upgrade_database()
        keys.ensure_signing_keys()
        record, secret = client_service.create_client(name="s", scope="message:send",
                                                      actor="test")
        client_id = record.client_id
    assert stale.test_client().get("/readyz").status_code == 200
    rotated = host(own_database, tmp_path, [NEW_KEY, ENCRYPTION_KEY])
    with rotated.app_context():
        keys.reencrypt_signing_keys()
    ready = stale.test_client().get("/readyz")
    assert ready.status_code == 503 and int(ready.headers["Retry-After"]) > 0
    body = ready.get_json()
    assert body["checks"]["database"] == "ok" and body["checks"]["schema"] == "ok"
    assert "cannot be decrypted" in body["checks"]["signing_key"]
    assert fingerprint(ENCRYPTION_KEY) in body["checks"]["signing_key"]
    restarted = host(own_database, tmp_path, [ENCRYPTION_KEY])  # no cached key object
    status, answer = token_status(restarted, client_id, secret)
    assert status == 503 and answer["error"] == "temporarily_unavailable"
    assert rotated.test_client().get("/readyz").status_code == 200
    dispose(stale, rotated, restarted)


def test_serve_refuses_to_start_without_the_key(initialised_env):
    env = {**initialised_env, "AUTHSERVER_ENCRYPTION_KEYS": OTHER_KEY}
    result = subprocess.run([str(BIN / "authserver"), "serve", "--port", str(free_port())],
                            env=env, capture_output=True, text=True, timeout=60)
    assert_one_line_error(result, "refusing to start", "cannot be decrypted")


def test_serve_refuses_to_start_on_an_uninitialised_database(env_only):
    result = subprocess.run([str(BIN / "authserver"), "serve", "--port", str(free_port())],
                            env=env_only, capture_output=True, text=True, timeout=60)
    assert_one_line_error(result, "refusing to start", "authserver init")


# --- readiness ---------------------------------------------------------------------------------

def test_readyz_names_every_check(app, client):
    answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.get_json() == {"status": "ready", "checks": {
        "database": "ok", "schema": "ok", "signing_key": "ok"}}


@pytest.mark.parametrize("app_config", [{"RATELIMIT_STORAGE_URI": "redis://127.0.0.1:1"}])
def test_readyz_checks_redis_when_configured(app, client):
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.get_json()["checks"]["redis"].startswith("the rate-limit store")
    assert "127.0.0.1" not in answer.text


def test_readyz_with_redis(tmp_path, database_urls, backend):
    app = host(database_urls[backend], tmp_path, RATELIMIT_STORAGE_URI="redis://127.0.0.1:6379/9",
               RATELIMIT_KEY_PREFIX=f"readyz-{uuid.uuid4().hex[:6]}")
    assert app.test_client().get("/readyz").get_json()["checks"]["redis"] == "ok"
    dispose(app)


def test_readyz_on_pending_migrations(own_database, tmp_path):
    app = host(own_database, tmp_path)
    with app.app_context():
        upgrade_database()
        keys.ensure_signing_keys()
        db.session.execute(sa.text("UPDATE alembic_version SET version_num = '0000_older'"))
        db.session.commit()
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503
    assert "0000_older" in answer.get_json()["checks"]["schema"]
    assert "signing_key" not in answer.get_json()["checks"]
    dispose(app)


def test_config_check_json_masks_secrets(initialised_env):
    env = {**initialised_env,
           "AUTHSERVER_RATELIMIT_STORAGE_URI": "redis://:hunter2@127.0.0.1:6379/9"}
    check = cli(env, "config", "check", "--json", "--offline")
    report = json.loads(check.stdout)
    assert report["settings"]["ENCRYPTION_KEYS"] == [f"<secret {fingerprint(ENCRYPTION_KEY)}>"]
    assert report["settings"]["SECRET_KEY"] == f"<secret {fingerprint('from-a-file')}>"
    assert report["settings"]["RATELIMIT_STORAGE_URI"] == "redis://:***@127.0.0.1:6379/9"
    assert "hunter2" not in check.stdout + check.stderr
