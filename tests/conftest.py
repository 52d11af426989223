"""Shared fixtures: the app on SQLite and on the machine's PostgreSQL, clients, a clock, a live server.

Every test that takes ``app`` (or a fixture built on it) runs once per database backend.
PostgreSQL is the real server at 127.0.0.1:5432 (trust auth); each test session creates
its own database there and drops it at the end. Set AUTHSERVER_TEST_DATABASES=sqlite to
run the SQLite half only while iterating (CI runs both).
"""

from __future__ import annotations

import base64
import os
import threading
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from authserver import create_app
from authserver import clients as client_service
from authserver import keys
from authserver.db import db, upgrade_database

# docs/security.md from a run with AUTHSERVER_SECURITY_REPORT set (tests/report_plugin.py).
pytest_plugins = ["report_plugin"]

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
ENCRYPTION_KEY = base64.urlsafe_b64encode(b"k" * 32).decode()
ISSUER = "https://auth.example.test"
BACKENDS = os.environ.get("AUTHSERVER_TEST_DATABASES", "sqlite,postgresql").split(",")
KEEP_TABLES = {"alembic_version", "signing_keys"}
RATE_LIMIT_SETTINGS = ("TOKEN_RATE_LIMIT", "AUTH_FAILURE_RATE_LIMIT", "INTROSPECTION_RATE_LIMIT",
                       "ADMIN_WRITE_RATE_LIMIT")


class Clock:
    """A settable UTC clock for the app's CLOCK hook (starts at the real time)."""

    def __init__(self):
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="session")
def database_urls(tmp_path_factory):
    """One migrated database per backend for the whole session."""
    urls = {}
    created_pg = None
    if "sqlite" in BACKENDS:
        urls["sqlite"] = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.sqlite'}"
    if "postgresql" in BACKENDS:
        created_pg = f"authserver_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{created_pg}"')
        urls["postgresql"] = f"postgresql+psycopg://postgres@127.0.0.1:5432/{created_pg}"
    for backend, url in urls.items():
        app = _make_app(url, tmp_path_factory.mktemp(f"instance-{backend}"))
        with app.app_context():
            upgrade_database()
            keys.ensure_signing_keys()
            db.engine.dispose()
    yield urls
    if created_pg:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{created_pg}" WITH (FORCE)')


def _make_app(url: str, instance_path, **overrides):
    config = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": url, "ISSUER": ISSUER,
              "ENCRYPTION_KEY": ENCRYPTION_KEY, "SECRET_KEY": "test-secret-key"}
    # Rate limits are off unless a test turns one on (tests/test_rate_limits.py does), and a
    # rotation takes effect at once unless a test sets a publish delay (JW03 tests do).
    config.update({name: "" for name in RATE_LIMIT_SETTINGS})
    config["SIGNING_KEY_PUBLISH_DELAY"] = 0
    config.update(overrides)
    return create_app(config, instance_path=str(instance_path))


def _empty_tables() -> None:
    tables = [t for t in reversed(db.metadata.sorted_tables) if t.name not in KEEP_TABLES]
    if db.engine.dialect.name == "postgresql":
        names = ", ".join(t.name for t in tables)
        db.session.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    else:
        for table in tables:
            db.session.execute(table.delete())
    db.session.commit()


@pytest.fixture
def clock():
    """The app's clock; ``clock.advance(s)`` moves time forward without sleeping."""
    return Clock()


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The database backend of this test run: "sqlite" or "postgresql"."""
    return request.param


@pytest.fixture
def app_config():
    """Extra configuration for the ``app`` fixture; override in a test module."""
    return {}


@pytest.fixture
def app(backend, database_urls, tmp_path, clock, app_config):
    """The app on a clean database of ``backend`` (signing keys kept between tests)."""
    application = _make_app(database_urls[backend], tmp_path / "instance", CLOCK=clock,
                            **app_config)
    with application.app_context():
        _empty_tables()
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    """Flask's test client."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """Click runner for the ``authserver`` command group."""
    return app.test_cli_runner()


class OAuthClients:
    """Factory for registered OAuth clients."""

    def __init__(self, app):
        self.app = app

    def create(self, scope: str = "message:send", **kwargs) -> tuple[str, str | None]:
        """Register a client; return (client_id, client_secret)."""
        with self.app.app_context():
            record, secret = client_service.create_client(
                name=kwargs.pop("name", "test client"), scope=scope, actor="test", **kwargs)
            return record.client_id, secret


@pytest.fixture
def oauth_clients(app):
    """Create OAuth clients: ``oauth_clients.create(scope=..., ...)``."""
    return OAuthClients(app)


def basic_auth(client_id: str, secret: str) -> dict:
    """An Authorization header for client_secret_basic (RFC 6749 §2.3.1 encoding)."""
    from urllib.parse import quote

    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@pytest.fixture
def get_token(client):
    """POST to the token endpoint with Basic auth; returns the response."""

    def _get_token(client_id, secret, **form):
        form.setdefault("grant_type", "client_credentials")
        return client.post("/oauth2/token", data=form, headers=basic_auth(client_id, secret))

    return _get_token


class LiveServer:
    """The app served over real HTTP on 127.0.0.1 in a thread."""

    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def live_server(backend, database_urls, tmp_path):
    """A real HTTP server whose issuer is its own URL (for real client libraries)."""
    application = _make_app(database_urls[backend], tmp_path / "live-instance")
    server = LiveServer(application)
    application.config["ISSUER"] = server.url
    application.config["DEFAULT_AUDIENCE"] = server.url + "/api"
    with application.app_context():
        _empty_tables()
    server.app = application
    server.start()
    yield server
    server.stop()
    with application.app_context():
        db.session.remove()
        db.engine.dispose()
