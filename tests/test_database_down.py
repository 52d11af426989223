"""The database cannot be reached (threat model item 8, RL1, RV06): every endpoint that needs it
answers 503 with Retry-After, never 400/401 or ``active: false``, and names no DSN."""

from __future__ import annotations

import base64

import pytest
from conftest import ENCRYPTION_KEY, ISSUER, basic_auth
from credential_actions import ASSERTION_TYPE, AssertionSigner, assert_clean_error

import authserver
from authserver.clock import utcnow
from authserver.credentials import api_keys
from authserver.storage.db import db

UNREACHABLE_URL = "postgresql+psycopg://postgres@127.0.0.1:1/none"
DSN_PARTS = ("127.0.0.1", ":1/", "/none", "postgres", "psycopg", "OperationalError",
             "connection", "Connection refused", "Traceback", "sqlalchemy")
CLIENT_ID, SECRET = "0123456789abcdef0123456789abcdef", "a-secret-that-may-well-be-right"
JWT = ("eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiYXQrand0In0."
       "eyJpc3MiOiJodHRwczovL2F1dGguZXhhbXBsZS50ZXN0IiwianRpIjoiajEifQ.c2lnbmF0dXJl")


@pytest.fixture(scope="module")
def down_app(tmp_path_factory):
    """The app pointed at a PostgreSQL port where nothing listens."""
    app = authserver.create_app(
        {"TESTING": True, "SQLALCHEMY_DATABASE_URI": UNREACHABLE_URL,
         "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"connect_timeout": 2}},
         "ISSUER": ISSUER, "ENCRYPTION_KEY": ENCRYPTION_KEY, "SECRET_KEY": "test"},
        instance_path=str(tmp_path_factory.mktemp("down-instance")))
    yield app
    with app.app_context():
        db.engine.dispose()


def _assertion_form() -> dict:
    signer = AssertionSigner()
    return {"client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signer.assertion(CLIENT_ID, ISSUER, utcnow())}


AUTH_METHODS = {
    "client_secret_basic": lambda: (basic_auth(CLIENT_ID, SECRET), {}),
    "client_secret_post": lambda: ({}, {"client_id": CLIENT_ID, "client_secret": SECRET}),
    "private_key_jwt": lambda: ({}, _assertion_form()),
}
REQUESTS = {
    "token": ("/oauth2/token", {"grant_type": "client_credentials"}),
    "token-platform-path": ("/auth/1/oauth2/token", {"grant_type": "client_credentials"}),
    "introspect-jwt": ("/oauth2/introspect", {"token": JWT}),
    "introspect-api-key": ("/oauth2/introspect", {"token": api_keys.PREFIX + "A" * 38}),
    "introspect-garbage": ("/oauth2/introspect", {"token": "garbage"}),
    "revoke": ("/oauth2/revoke", {"token": JWT}),
    "revocation-feed": ("/oauth2/revocations", {"after": "0"}),
}


@pytest.mark.parametrize("method", sorted(AUTH_METHODS))
@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_endpoints_answer_503_with_retry_after(down_app, name, method):
    path, form = REQUESTS[name]
    headers, auth_form = AUTH_METHODS[method]()
    response = down_app.test_client().post(path, data={**form, **auth_form}, headers=headers)

    body = assert_clean_error(response, 503, "temporarily_unavailable")
    assert response.headers["Retry-After"] == str(down_app.config["RETRY_AFTER_SECONDS"])
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["Cache-Control"] == "no-store"
    assert set(body) <= {"error", "error_description"}
    text = response.get_data(as_text=True)
    assert not any(part in text for part in DSN_PARTS), text
    assert base64.b64encode(SECRET.encode()).decode() not in text


def test_well_formed_api_key_with_a_real_checksum_is_503_too(down_app):
    response = down_app.test_client().post(
        "/oauth2/introspect", data={"token": api_keys.generate_api_key()},
        headers=basic_auth(CLIENT_ID, SECRET))
    assert_clean_error(response, 503, "temporarily_unavailable")
