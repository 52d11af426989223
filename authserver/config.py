"""Configuration defaults and the one place that knows the load order.

Order (later wins): these defaults -> ``instance/config.py`` -> ``AUTHSERVER_*``
environment variables -> the ``test_config`` mapping given to ``create_app``.
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask

#: Issuer identifier (RFC 8414 §2). Unset, it is http://HOST:PORT of ``authserver serve``
#: (http://127.0.0.1:5000 elsewhere). Set it to the public https URL in production.
ISSUER = None
#: Audience put in tokens requested without an RFC 8707 ``resource`` parameter.
#: None means "the issuer's default audience", ``{ISSUER}/api``.
DEFAULT_AUDIENCE = None
#: Database URL; None means a SQLite file in the instance folder.
SQLALCHEMY_DATABASE_URI = None
#: Pool settings (e.g. {"pool_size": 10}). On PostgreSQL, connect_timeout defaults to 5 s.
#: With PostgreSQL, "pool_pre_ping": True is honoured by a ping inside DB_REQUEST_TIMEOUT
#: (SQLAlchemy's own would run outside it); without it a dead pooled connection costs one
#: 503, then the pool is replaced.
SQLALCHEMY_ENGINE_OPTIONS: dict = {}
#: Seconds a PostgreSQL transaction may hold its connection before the watchdog severs it
#: (a hung database then answers 503, not a request that waits forever); 0 disables.
DB_REQUEST_TIMEOUT = 10
#: AES-256-GCM key (urlsafe base64, 32 bytes) that encrypts signing keys at rest.
#: ``authserver init`` writes one into instance/config.py when it is missing.
ENCRYPTION_KEY = None
#: Flask session signing key (web UI); ``authserver init`` writes one too.
SECRET_KEY = None
#: Web UI sessions (server-side rows): seconds without a request, and seconds since sign-in,
#: after which an operator must sign in again.
UI_IDLE_TIMEOUT = 30 * 60
UI_SESSION_LIFETIME = 12 * 3600
#: Web UI sign-in attempts per username and per caller address (temporary lockout).
UI_LOGIN_RATE_LIMIT = "10/minute"
UI_LOGIN_ADDRESS_RATE_LIMIT = "30/minute"
#: The web UI's cookie: HttpOnly, SameSite=Lax; Secure is added on HTTPS requests anyway.
#: Set SESSION_COOKIE_SECURE = True behind a TLS-terminating proxy.
SESSION_COOKIE_NAME = "authserver_ui"
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = False
#: Algorithm of newly created signing keys: RS256, ES256 or EdDSA.
SIGNING_ALG = "RS256"
#: RSA modulus size for RS256 keys (>= 2048).
RSA_KEY_SIZE = 2048
#: A rotation lets the next key sign only once it has been in the JWKS this long, so
#: resource servers that refetch on an unknown kid (at most every 10 s for our guard)
#: already hold it. Set it to your resource servers' JWKS cache time if they never refetch.
SIGNING_KEY_PUBLISH_DELAY = 60
#: How long a process keeps using the signing key it looked up before asking the
#: database again. Harmless after a rotation: the previous key stays published.
SIGNING_KEY_CACHE_SECONDS = 5.0
#: Access-token lifetime when a client has no override (Authlib's default is ten days).
ACCESS_TOKEN_TTL = 3600
#: Upper bound for per-client lifetimes; retired keys stay published this long plus leeway.
MAX_ACCESS_TOKEN_TTL = 86400
#: Clock leeway (seconds) for time-based claims we verify.
LEEWAY = 30
#: private_key_jwt: assertions valid for longer than this are refused (RFC 7523 §3 item 4).
CLIENT_ASSERTION_MAX_LIFETIME = 300
#: Bound on request bodies; protocol requests are tiny.
MAX_CONTENT_LENGTH = 64 * 1024
#: Seconds in the Retry-After header of 503 answers.
RETRY_AFTER_SECONDS = 5
#: Extra scope catalogue file in the instance folder (same format as authserver/scopes.toml).
SCOPES_FILE = "scopes.toml"
#: Proxies whose X-Forwarded-For is believed (addresses or CIDRs); empty = none.
TRUSTED_PROXIES: list[str] = []
#: Rate limits (limits-library syntax, e.g. "10/second"; "" disables one).
#: Token requests per authenticated client (the platform allows 10 a second).
TOKEN_RATE_LIMIT = "10/second"
#: Failed client authentications per caller address, at every protocol endpoint.
AUTH_FAILURE_RATE_LIMIT = "30/minute"
#: Introspection requests per authenticated client (token scanning, SECURITY.md IN09).
INTROSPECTION_RATE_LIMIT = "600/minute"
#: Admin API creates and updates per caller (the platform allows 40 a day).
ADMIN_WRITE_RATE_LIMIT = "40/day"
#: Longest API key validity: validTo at most this many days from the time it is set.
MAX_API_KEY_VALIDITY_DAYS = 730
#: Where counters live: "memory://" (one process) or "redis://127.0.0.1:6379" (shared).
RATELIMIT_STORAGE_URI = "memory://"
#: Prefix of the counters' keys (several deployments can share one Redis).
RATELIMIT_KEY_PREFIX = "authserver"
#: One JSON log line per request (request id, path, status, time; never credentials).
ACCESS_LOG = False
#: Callable returning the current time as an aware UTC datetime (tests inject a clock).
CLOCK = None

JSON_SORT_KEYS = False


def load_config(app: Flask, test_config: dict | None = None,
                default_issuer: str = "http://127.0.0.1:5000") -> None:
    """Fill ``app.config`` in the documented order."""
    app.config.from_object(__name__)
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env("AUTHSERVER")
    if test_config:
        app.config.from_mapping(test_config)
    if not app.config["SQLALCHEMY_DATABASE_URI"]:
        db_file = Path(app.instance_path) / "authserver.sqlite"
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{db_file}"
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        options = dict(app.config["SQLALCHEMY_ENGINE_OPTIONS"])
        # A new connection may not take longer than a whole transaction may (libpq: seconds).
        deadline = app.config["DB_REQUEST_TIMEOUT"] or 5
        connect_timeout = max(1, int(min(5, deadline)))
        options["connect_args"] = {"connect_timeout": connect_timeout,
                                   **options.get("connect_args", {})}
        if options.pop("pool_pre_ping", False) and app.config["DB_REQUEST_TIMEOUT"]:
            # SQLAlchemy's pre-ping would run outside the watchdog's deadline and can hang
            # on a frozen server: the watchdog pings inside the deadline instead.
            app.config["DB_PING_ON_CHECKOUT"] = True
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    if not app.config["ISSUER"]:
        app.config["ISSUER"] = default_issuer
    if not app.config["DEFAULT_AUDIENCE"]:
        app.config["DEFAULT_AUDIENCE"] = app.config["ISSUER"].rstrip("/") + "/api"


def instance_path_from_environment() -> str | None:
    """The instance folder chosen with AUTHSERVER_INSTANCE_PATH, if any.

    Read before the app exists (Flask needs the folder to build its config), which is
    why this is the one environment read outside ``app.config``.
    """
    path = os.environ.get("AUTHSERVER_INSTANCE_PATH")
    return str(Path(path).resolve()) if path else None
