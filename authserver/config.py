"""Configuration defaults and the one place that knows the load order.

Order (later wins): these defaults -> ``instance/config.py`` -> ``AUTHSERVER_*``
environment variables (or ``AUTHSERVER_*_FILE`` files, see ``authserver.settings``) -> the
``test_config`` mapping given to ``create_app``. A host configured entirely from the
environment needs no instance folder at all.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from flask import Flask

from authserver.settings import read_environment, setting_types

#: Issuer identifier (RFC 8414 §2). Unset, it is http://HOST:PORT of ``authserver serve``
#: (http://127.0.0.1:5000 elsewhere). Set it to the public https URL in production.
ISSUER: str | None = None
#: Audience put in tokens requested without an RFC 8707 ``resource`` parameter.
#: None means "the issuer's default audience", ``{ISSUER}/api``.
DEFAULT_AUDIENCE: str | None = None
#: The admin API's own audience (threat model AU01): admin callers ask for it with RFC 8707
#: ``resource``; a client holding an admin scope may, without registering it. The admin API
#: refuses every other token, so a token a resource server sees cannot be replayed there.
#: None means the issuer itself. It must differ from DEFAULT_AUDIENCE.
ADMIN_AUDIENCE: str | None = None
#: Database URL; None means a SQLite file in the instance folder.
SQLALCHEMY_DATABASE_URI: str | None = None
#: Pool settings (e.g. {"pool_size": 10}). On PostgreSQL, connect_timeout defaults to 5 s.
#: With PostgreSQL, "pool_pre_ping": True is honoured by a ping inside DB_REQUEST_TIMEOUT
#: (SQLAlchemy's own would run outside it); without it a dead pooled connection costs one
#: 503, then the pool is replaced.
SQLALCHEMY_ENGINE_OPTIONS: dict = {}
#: Seconds a PostgreSQL transaction may hold its connection before the watchdog severs it
#: (a hung database then answers 503, not a request that waits forever); 0 disables.
DB_REQUEST_TIMEOUT = 10
#: The keyring that encrypts signing keys at rest: AES-256-GCM keys (urlsafe base64, 32
#: bytes each). Every key in the list decrypts; the first one encrypts. In the environment:
#: AUTHSERVER_ENCRYPTION_KEYS="new,old" (or AUTHSERVER_ENCRYPTION_KEYS_FILE). Rollover:
#: docs/operations.md.
ENCRYPTION_KEYS: list[str] = []
#: A lone encryption key: a keyring of one (used when ENCRYPTION_KEYS is empty).
#: ``authserver init`` writes one into instance/config.py when neither is set.
ENCRYPTION_KEY: str | None = None
#: Flask session signing key (web UI); ``authserver init`` writes one too.
SECRET_KEY: str | None = None
#: Web UI sessions (server-side rows): seconds without a request, and seconds since sign-in,
#: after which an operator must sign in again.
UI_IDLE_TIMEOUT = 30 * 60
UI_SESSION_LIFETIME = 12 * 3600
#: Web UI sign-in (threat model AV04): failed attempts per username and caller address;
#: attempts per address; failed attempts per username from all addresses, past which each
#: (username, address) gets the backoff limit instead of the first one. Nobody is locked
#: out by others: the operator's own address keeps its attempts.
UI_LOGIN_RATE_LIMIT = "10/minute"
UI_LOGIN_ADDRESS_RATE_LIMIT = "30/minute"
UI_LOGIN_USERNAME_RATE_LIMIT = "100/hour"
UI_LOGIN_BACKOFF_RATE_LIMIT = "2/minute"
#: The web UI's cookie: HttpOnly, SameSite=Lax; Secure is added on HTTPS requests anyway.
#: Set SESSION_COOKIE_SECURE = True behind a TLS-terminating proxy.
SESSION_COOKIE_NAME = "authserver_ui"
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = False
#: Algorithm of new signing keys (init, rotations): ES256, RS256 or EdDSA. ES256 signs about
#: eight times faster than RS256 (2048 bits) and verifies about as fast once resource servers
#: cache verified tokens, as the guard does (docs/benchmarks.md "Signing algorithm"). Set
#: RS256 for resource servers that support nothing else (RFC 9068 §4 requires only RS256);
#: `authserver signing-keys rotate` then switches a running deployment.
SIGNING_ALG = "ES256"
#: RSA modulus size for RS256 keys (>= 2048).
RSA_KEY_SIZE = 2048
#: A rotation lets the next key sign only once it has been in the JWKS this long, so
#: resource servers that refetch on an unknown kid (at most every 10 s for our guard)
#: already hold it. Set it to your resource servers' JWKS cache time if they never refetch.
SIGNING_KEY_PUBLISH_DELAY = 60
#: How long a process keeps using the signing key it looked up before asking the
#: database again. Harmless after a rotation: the previous key stays published.
SIGNING_KEY_CACHE_SECONDS = 5.0
#: Each process keeps the OAuth clients and API keys it checks in memory for at most this
#: many seconds (0: no cache). A change (disable, secret rotation, scopes, the account)
#: reaches every process and host within 1 s: on PostgreSQL through LISTEN/NOTIFY (this is
#: then only a backstop), on SQLite because entries live at most 1 s (authserver.storage.cache).
CREDENTIAL_CACHE_SECONDS = 30.0
#: Access-token lifetime when a client has no override (Authlib's default is ten days).
ACCESS_TOKEN_TTL = 3600
#: Upper bound for per-client lifetimes; retired keys stay published this long plus leeway.
MAX_ACCESS_TOKEN_TTL = 86400
#: Clock leeway (seconds) for time-based claims we verify.
LEEWAY = 30
#: private_key_jwt: assertions valid for longer than this are refused (RFC 7523 §3 item 4).
CLIENT_ASSERTION_MAX_LIFETIME = 300
#: DPoP (RFC 9449). JWS algorithms accepted in proofs (metadata
#: dpop_signing_alg_values_supported): asymmetric ones only. Ed25519 is RFC 9864's name for
#: EdDSA on that curve, which current clients (openid-client 6) send.
DPOP_SIGNING_ALGS: list[str] = ["ES256", "ES384", "RS256", "PS256", "EdDSA", "Ed25519"]
#: Seconds a proof's iat may lie in the past (plus LEEWAY); LEEWAY bounds the future side.
DPOP_PROOF_MAX_AGE = 60
#: Require a server nonce (§8, use_dpop_nonce) in every proof at the token endpoint.
DPOP_NONCES = False
#: Seconds a nonce stays usable once handed out.
DPOP_NONCE_LIFETIME = 300
#: Key of the nonces' HMAC, the same on every host; None derives one from SECRET_KEY.
DPOP_NONCE_SECRET: str | None = None
#: Where used proof jtis are kept, for every worker and host: "database", a redis:// URL, or
#: None: Redis when RATELIMIT_STORAGE_URI is a Redis URL, the database otherwise.
DPOP_REPLAY_STORE: str | None = None
#: Bound on request bodies; protocol requests are tiny.
MAX_CONTENT_LENGTH = 64 * 1024
#: Seconds in the Retry-After header of 503 answers.
RETRY_AFTER_SECONDS = 5
#: Extra scope catalogue file in the instance folder (same format as authserver/scopes.toml).
SCOPES_FILE = "scopes.toml"
#: Host names the server answers to (Flask's setting; ".example.org" matches subdomains).
#: None: the issuer's host plus localhost, 127.0.0.1 and ::1. Other hosts get 400, except
#: at /healthz, /readyz and /metrics. An empty list answers any host (not recommended).
TRUSTED_HOSTS: list[str] | None = None
#: Proxies (addresses or CIDR ranges) whose Forwarded / X-Forwarded-For, -Proto and -Host
#: headers are believed; empty = none (the socket peer is the caller). gunicorn's
#: forwarded_allow_ips follows this list.
TRUSTED_PROXIES: list[str] = []
#: Strict-Transport-Security max-age (seconds) on answers to HTTPS requests (RFC 6797; never
#: on plain HTTP); 0 sends none. One year by default; no includeSubDomains.
HSTS_SECONDS = 31_536_000
#: Rate limits (limits-library syntax, e.g. "10/second"; "" disables one).
#: Token requests per authenticated client (the platform allows 10 a second).
TOKEN_RATE_LIMIT = "10/second"
#: Failed client authentications per caller address and claimed client id, and per caller
#: address for all client ids, at every protocol endpoint; past them failures get 429.
#: Credentials that verify are always served (a shared address never locks a client out).
AUTH_FAILURE_RATE_LIMIT = "30/minute"
AUTH_FAILURE_ADDRESS_RATE_LIMIT = "300/minute"
#: Introspection requests per authenticated client (token scanning, threat model IN09).
INTROSPECTION_RATE_LIMIT = "600/minute"
#: Admin API creates and updates per caller (the platform allows 40 a day).
ADMIN_WRITE_RATE_LIMIT = "40/day"
#: Longest API key validity: validTo at most this many days from the time it is set.
MAX_API_KEY_VALIDITY_DAYS = 730
#: Where counters live: "memory://" (one process) or "redis://127.0.0.1:6379" (shared).
RATELIMIT_STORAGE_URI = "memory://"
#: Worker processes sharing one host's in-process ("memory://") counters: each enforces
#: 1/N of every limit. ``authserver serve --workers N`` sets it; Redis makes it moot.
RATELIMIT_WORKERS = 1
#: Prefix of the counters' keys (several deployments can share one Redis).
RATELIMIT_KEY_PREFIX = "authserver"
#: One JSON access-log line per request (request id, client, route, status, latency;
#: never credentials, query strings or bodies).
ACCESS_LOG = False
#: Level of the server's log (JSON lines on stderr under ``authserver serve``).
LOG_LEVEL = "INFO"
#: "host:port" of a listener of its own for /metrics (with /healthz and /readyz); when set,
#: /metrics answers 404 on every other listener. Empty: /metrics on the main listener.
METRICS_BIND = ""
#: Callable returning the current time as an aware UTC datetime (tests inject a clock).
CLOCK = None

JSON_SORT_KEYS = False


def load_config(app: Flask, test_config: dict | None = None,
                default_issuer: str = "http://127.0.0.1:5000") -> None:
    """Fill ``app.config`` in the documented order."""
    app.config.from_object(__name__)
    app.config.from_pyfile("config.py", silent=True)
    app.config.update(read_environment(os.environ, setting_types(sys.modules[__name__]))[0])
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
    if admin_audience(app.config) == app.config["DEFAULT_AUDIENCE"]:
        raise ValueError("ADMIN_AUDIENCE must differ from DEFAULT_AUDIENCE: every resource "
                         "server accepts the default audience (threat model AU01)")


def admin_audience(config) -> str:
    """ADMIN_AUDIENCE, or the issuer when it is unset (read at use: tests and ``serve``
    may set ISSUER after the app is built)."""
    return config["ADMIN_AUDIENCE"] or config["ISSUER"]


def unknown_environment_variables() -> list[str]:
    """AUTHSERVER_* variables that name no setting (typos, for ``config check``)."""
    return read_environment(os.environ, setting_types(sys.modules[__name__]))[1]


def settings() -> list[str]:
    """The names of every setting (what ``config check`` prints)."""
    return sorted(setting_types(sys.modules[__name__]))


def instance_path_from_environment() -> str | None:
    """The instance folder chosen with AUTHSERVER_INSTANCE_PATH, if any.

    Read before the app exists (Flask needs the folder to build its config), which is
    why this is the one environment read outside ``app.config``.
    """
    path = os.environ.get("AUTHSERVER_INSTANCE_PATH")
    return str(Path(path).resolve()) if path else None
