"""Shared fixtures: the app on SQLite and on the machine's PostgreSQL, clients, a clock, a live server.

Every test that takes ``app`` (or a fixture built on it) runs once per database backend.
PostgreSQL is the real server at 127.0.0.1:5432 (trust auth); each test session (each
pytest-xdist worker is one) creates its own database there and drops it at the end. Set
AUTHSERVER_TEST_DATABASES=sqlite to run the SQLite half only while iterating (CI runs both).

Building an app costs more than most tests (its URL map, then the first token parses the
RSA signing key), so ``app`` is shared by the tests of one module that use the same backend
and ``app_config``, and handed to each test as if new: tables emptied, configuration,
instance folder, clock and per-app caches and counters reset (``SharedApps``). A test that
changes the app's wiring (adds a hook or route) or its connections asks for an app of its
own with ``@pytest.mark.own_app``.
"""

from __future__ import annotations

import base64
import os
import shutil
import threading
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from authserver import create_app
from authserver.accounts import registry as accounts
from authserver.credentials import clients as client_service
from authserver.credentials import signing_keys as keys
from authserver.storage import cache as row_cache
from authserver.storage.db import db, upgrade_database
from authserver.web import limits

# docs/security.md from a run with AUTHSERVER_SECURITY_REPORT set (tests/report_plugin.py).
pytest_plugins = ["report_plugin"]

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
ENCRYPTION_KEY = base64.urlsafe_b64encode(b"k" * 32).decode()
ISSUER = "https://auth.example.test"
BACKENDS = os.environ.get("AUTHSERVER_TEST_DATABASES", "sqlite,postgresql").split(",")
KEEP_TABLES = {"alembic_version", "signing_keys"}
RATE_LIMIT_SETTINGS = ("TOKEN_RATE_LIMIT", "AUTH_FAILURE_RATE_LIMIT", "INTROSPECTION_RATE_LIMIT",
                       "ADMIN_WRITE_RATE_LIMIT", "AUTH_FAILURE_ADDRESS_RATE_LIMIT")


#: Modules whose tests run on one pytest-xdist worker, one after another: they kill and freeze
#: processes, load the machine and bound latencies (two at once would measure each other), or
#: build costly module fixtures (a PostgreSQL cluster, server processes, Chromium, fresh
#: virtual environments) that every worker given one of their tests would build again.
#: Every other test is handed to whichever worker is free.
SERIAL_MODULES = ("test_faults.py", "test_scale_out.py", "test_guard_faults.py",
                  "test_ui_browser.py", "test_ui_a11y.py", "test_operators_browser.py",
                  "test_reach_browser.py", "test_credential_cache.py", "test_dpop_scale_out.py",
                  "test_guard_install.py", "test_slow_clients.py", "test_guard.py",
                  "test_worker_balance.py")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``-n N`` (``--dist load``): each SERIAL_MODULES module is one unit of work, handed out
    first (the unit with most tests first: the fault suite is the longest), other tests one
    by one. (xdist_group marks cannot do this here: pytest 9.2 ignores the node-id suffix
    that ``--dist loadgroup`` relies on.)"""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SerialModulesScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if path.rpartition("/")[2] in SERIAL_MODULES else nodeid

    return SerialModulesScheduling(config, log)


class Clock:
    """A settable UTC clock for the app's CLOCK hook (starts at the real time)."""

    def __init__(self):
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(params=BACKENDS)
def empty_database(request, tmp_path):
    """The URL of a new, empty database of each backend (migration tests), dropped after."""
    from serverproc import PostgresDatabase

    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrate.sqlite'}"
        return
    database = PostgresDatabase()
    yield database.url
    database.drop()


@pytest.fixture(scope="session")
def database_urls(tmp_path_factory):
    """One migrated database per backend for the whole session."""
    urls = {}
    created_pg = None
    if "sqlite" in BACKENDS:
        urls["sqlite"] = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.sqlite'}"
    if "postgresql" in BACKENDS:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")  # one database per xdist worker
        created_pg = f"authserver_test_{worker}_{uuid.uuid4().hex[:12]}"
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
    """Delete every row but the signing keys; PostgreSQL's sequences start again at 1.

    DELETE, not TRUNCATE: on tables this small TRUNCATE costs ten times more (it swaps files).
    """
    for table in reversed(db.metadata.sorted_tables):
        if table.name not in KEEP_TABLES:
            db.session.execute(table.delete())
    if db.engine.dialect.name == "postgresql":
        # What TRUNCATE ... RESTART IDENTITY did: ids of a test do not depend on the ones before.
        db.session.execute(sa.text(
            "SELECT setval(format('%I.%I', schemaname, sequencename), 1, false) "
            "FROM pg_sequences WHERE schemaname = current_schema() AND last_value IS NOT NULL"))
    db.session.commit()
    # Every record belongs to an account: the platform account, as `authserver init` leaves it.
    accounts.forget_platform_account()
    accounts.ensure_platform_account()


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


class SharedApps:
    """Apps by (module, backend, ``app_config``), each reset to its just-built state per test.

    What a fresh app would start with and a used one may not: the configuration (tests change
    ``app.config``), an empty instance folder, the test's clock, no lazily built extensions
    (verified-token and verification-key caches: anything ``app.extensions.setdefault``
    adds later is dropped too), fresh rate-limit counters, an empty credential cache. Kept: the engine and its pooled
    connections, and the signing-key objects parsed by ``kid`` (a kid names one key for
    good; which key is active is looked up again, as in a new process).
    """

    KEPT_EXTENSIONS = {"authserver.signing_keys"}

    def __init__(self):
        self.built: dict[tuple, tuple] = {}

    def get(self, module: str, backend: str, url: str, instance_path, app_config: dict):
        key = (module, backend, repr(sorted(app_config.items())))
        if key not in self.built:
            application = _make_app(url, instance_path, **app_config)
            self.built[key] = (application, dict(application.config),
                               set(application.extensions), os.path.isdir(instance_path))
        return self.built[key]

    def reset(self, built: tuple, instance_path, clock: Clock):
        application, config, extensions, made_instance_folder = built
        application.config.clear()
        application.config.update(config)
        application.config["CLOCK"] = clock
        # The instance folder as create_app leaves it: this test's, and empty or absent.
        shutil.rmtree(instance_path, ignore_errors=True)
        if made_instance_folder:
            os.makedirs(instance_path)
        application.instance_path = str(instance_path)
        for name in set(application.extensions) - extensions:
            if name in self.KEPT_EXTENSIONS:
                application.extensions[name].clear()
            else:
                del application.extensions[name]
        limits.init_app(application)  # new counters (RATELIMIT_STORAGE_URI)
        # Rows of earlier tests are deleted behind the services' back: forget them.
        application.extensions[row_cache.EXTENSION_KEY].invalidate_all()
        return application

    def close_module(self, module: str) -> None:
        """Close the engines of a module's apps (its tests are done)."""
        for key in [key for key in self.built if key[0] == module]:
            application = self.built.pop(key)[0]
            with application.app_context():
                db.session.remove()
                db.engine.dispose()


@pytest.fixture(scope="session")
def shared_apps():
    """This session's (this worker's) ``SharedApps``."""
    apps = SharedApps()
    yield apps
    for module in {key[0] for key in apps.built}:
        apps.close_module(module)


@pytest.fixture(scope="module", autouse=True)
def _close_module_apps(request, shared_apps):
    yield
    shared_apps.close_module(request.module.__name__)


@pytest.fixture
def app(request, backend, database_urls, tmp_path, clock, app_config, shared_apps):
    """The app on a clean database of ``backend`` (signing keys kept between tests)."""
    instance_path = tmp_path / "instance"
    if request.node.get_closest_marker("own_app"):
        application = _make_app(database_urls[backend], instance_path, CLOCK=clock,
                                **app_config)
    else:
        built = shared_apps.get(request.module.__name__, backend, database_urls[backend],
                                instance_path, app_config)
        application = shared_apps.reset(built, instance_path, clock)
    with application.app_context():
        _empty_tables()
    yield application
    with application.app_context():
        db.session.remove()
        if request.node.get_closest_marker("own_app"):
            db.engine.dispose()


@pytest.fixture
def second_worker(app, clock, tmp_path):
    """Another app object on the same database, as a second worker process would be."""
    config = {key: app.config[key] for key in ("TESTING", "SQLALCHEMY_DATABASE_URI", "ISSUER",
                                               "ENCRYPTION_KEY", "SECRET_KEY")}
    config.update({key: value for key, value in app.config.items() if key.startswith("DPOP_")})
    other = create_app({**config, "CLOCK": clock}, instance_path=str(tmp_path / "worker2"))
    yield other
    with other.app_context():
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


class Tenants:
    """Factory for customer accounts (every test starts with the platform account only)."""

    def __init__(self, app):
        self.app = app

    def create(self, name: str = "customer") -> str:
        """Create an enabled customer account; return its id."""
        with self.app.app_context():
            return accounts.create_account(name=name, actor="test").id

    def platform(self) -> str:
        """The platform account's id."""
        with self.app.app_context():
            return accounts.platform_account_id()

    def set_enabled(self, account_id: str, enabled: bool) -> None:
        """Disable or enable an account (as the CLI does)."""
        with self.app.app_context():
            accounts.set_enabled(account_id, enabled, actor="test")


@pytest.fixture
def tenants(app):
    """Create customer accounts: ``tenants.create(name)``; ``tenants.platform()``."""
    return Tenants(app)


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


def _closing_served_iterables(app):
    """``app`` whose answers are closed even when Werkzeug's development server skips it.

    That server drains an unread request body before it calls ``close()`` on the answer, and a
    client that has already gone (a browser leaving a page mid-load) makes the drain raise
    first: a static file's answer then stays open until the garbage collector finds it, and
    its ResourceWarning fails whichever test is running (pytest turns warnings into errors).
    gunicorn, which serves production, closes it. Here a generator's ``finally`` closes the
    answer, and Python runs it when the dropped generator is collected too."""

    def wsgi(environ, start_response):
        iterable = app(environ, start_response)

        def closing():
            try:
                yield from iterable
            finally:
                close = getattr(iterable, "close", None)
                if close is not None:
                    close()

        return closing()

    return wsgi


class LiveServer:
    """The app served over real HTTP on 127.0.0.1 in a thread."""

    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, _closing_served_iterables(app), threaded=True)
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
