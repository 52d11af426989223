"""Helpers shared by the token-endpoint, access-token, private_key_jwt and CLI tests."""

from __future__ import annotations

import re
from contextlib import contextmanager

import jwt
import sqlalchemy as sa

from authserver.storage.db import db

FORM = "application/x-www-form-urlencoded"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: RFC 6749 §5.2 plus RFC 8707 §2 (invalid_target).
REGISTERED_ERRORS = {"invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
                     "unsupported_grant_type", "invalid_scope", "invalid_target"}
#: RFC 6749 §5.2: error_description is limited to %x20-21 / %x23-5B / %x5D-7E.
DESCRIPTION_RE = re.compile(r"^[\x20\x21\x23-\x5b\x5d-\x7e]*$")
LEAK_MARKERS = ("Traceback", "File \"", ".py", "/work", "/tmp", "site-packages", "SELECT ",
                "INSERT ", "sqlalchemy", "psycopg", "sqlite", "postgres", "Exception")
RFC9068_CLAIMS = {"iss", "sub", "client_id", "aud", "exp", "iat", "nbf", "jti", "scope"}
#: What our tokens carry: the RFC 9068 claims and the client's account (threat model AC02).
TOKEN_CLAIMS = RFC9068_CLAIMS | {"account_id"}


def table_counts(app) -> dict[str, int]:
    """Row count of every table of the schema."""
    with app.app_context():
        return {table.name: db.session.scalar(sa.select(sa.func.count()).select_from(table))
                for table in db.metadata.sorted_tables}


@contextmanager
def recorded_writes(app):
    """Collect every INSERT/UPDATE/DELETE statement the app's engine runs inside the block."""
    statements: list[str] = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().split(" ", 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            statements.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)


def assert_oauth_error(response, status: int, error: str | None = None) -> dict:
    """An RFC 6749 §5.2 error: status, JSON, a registered code, a clean description."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert isinstance(body, dict) and "access_token" not in body
    assert body["error"] in REGISTERED_ERRORS, body
    if error is not None:
        assert body["error"] == error, body
    assert DESCRIPTION_RE.match(body.get("error_description", "")), body
    text = response.get_data(as_text=True)
    assert not any(marker in text for marker in LEAK_MARKERS), text
    return body


def published_keys(client) -> dict[str, jwt.PyJWK]:
    """The JWKS of the app behind ``client`` (a Flask test client), by ``kid``."""
    document = client.get("/.well-known/jwks.json").get_json()
    return {key["kid"]: jwt.PyJWK(key) for key in document["keys"]}


def verify_token(client, app, token: str, audience: str | None = None) -> dict:
    """Verify an access token against the app's JWKS (signature, iss, aud, exp); return claims."""
    header = jwt.get_unverified_header(token)
    key = published_keys(client)[header["kid"]]
    return jwt.decode(token, key, algorithms=[header["alg"]], issuer=app.config["ISSUER"],
                      audience=audience or app.config["DEFAULT_AUDIENCE"],
                      options={"require": sorted(RFC9068_CLAIMS - {"scope"})})
