"""Actions shared by the API-key, introspection, revocation and database-down tests."""

from __future__ import annotations

import base64
import json
import secrets
from contextlib import contextmanager
from datetime import datetime, timezone

import jwt
import sqlalchemy as sa
from conftest import basic_auth
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from authserver.storage.db import db

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
INACTIVE = {"active": False}
#: What an error body must never contain (threat model TE18, RL1).
LEAK_MARKERS = ("Traceback", "File \"", ".py", "/work", "/tmp", "site-packages", "SELECT ",
                "sqlalchemy", "psycopg", "sqlite", "postgres", "Exception", "127.0.0.1")


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with ``Z``, as the CLI takes and prints timestamps."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def introspect(client, token, auth: dict | None = None, **form):
    """POST /oauth2/introspect with ``token`` (omitted when None) and Basic ``auth`` headers."""
    if token is not None:
        form["token"] = token
    return client.post("/oauth2/introspect", data=form, headers=auth or {})


def revoke(client, token, auth: dict | None = None, **form):
    """POST /oauth2/revoke with ``token`` (omitted when None)."""
    if token is not None:
        form["token"] = token
    return client.post("/oauth2/revoke", data=form, headers=auth or {})


def feed(client, auth: dict | None = None, **form):
    """POST /oauth2/revocations (the revocation feed), form-encoded even when empty."""
    return client.post("/oauth2/revocations", data=form, headers=auth or {},
                       content_type="application/x-www-form-urlencoded")


class Caller:
    """A registered client and its Basic credentials."""

    def __init__(self, client_id: str, secret: str):
        self.client_id, self.secret = client_id, secret
        self.auth = basic_auth(client_id, secret)


def make_caller(oauth_clients, scope: str, **kwargs) -> Caller:
    """Register a client_secret_basic client with ``scope``."""
    return Caller(*oauth_clients.create(scope=scope, **kwargs))


class AssertionSigner:
    """A private_key_jwt client's key pair: registers a JWKS, signs RFC 7523 assertions."""

    def __init__(self, kid: str = "client-key-1"):
        self.kid = kid
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        self.jwks = {"keys": [{**jwk, "kid": kid, "alg": "ES256", "use": "sig"}]}

    def assertion(self, client_id: str, audience: str, now: datetime, lifetime: int = 120,
                  jti: str | None = None) -> str:
        """iss = sub = client_id, aud = the issuer, exp within 5 minutes, a fresh jti."""
        issued = int(now.timestamp())
        claims = {"iss": client_id, "sub": client_id, "aud": audience, "iat": issued,
                  "exp": issued + lifetime, "jti": jti or secrets.token_urlsafe(16)}
        return jwt.encode(claims, self.private_key, algorithm="ES256",
                          headers={"kid": self.kid})

    def form(self, client_id: str, audience: str, now: datetime, **kwargs) -> dict:
        """The client-authentication form members of one request."""
        return {"client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.assertion(client_id, audience, now, **kwargs)}


@contextmanager
def sql_statements(app):
    """Collect every SQL statement the app's engine runs inside the block."""
    statements: list[str] = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)


def row_count(app, table: str) -> int:
    """Rows in ``table``."""
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(
            db.metadata.tables[table]))


def dump_tables(app) -> str:
    """Every row of every table, as text (what a stolen database dump would show)."""
    rows = []
    with app.app_context():
        for table in db.metadata.sorted_tables:
            for row in db.session.execute(sa.select(table)).mappings():
                rows.append(json.dumps({table.name: {k: repr(v) for k, v in row.items()}}))
    return "\n".join(rows)


def assert_clean_error(response, status: int, error: str) -> dict:
    """An RFC 6749 §5.2 JSON error with ``status`` and ``error``, leaking nothing."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"] == error, body
    assert "active" not in body
    text = response.get_data(as_text=True)
    assert not any(marker in text for marker in LEAK_MARKERS), text
    return body
