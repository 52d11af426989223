"""Backup and restore as docs/operations.md describes it (issue 16 item 9): a pg_dump of the
database restored into a fresh one, served with the same keyring, serves the same JWKS,
verifies tokens issued before the backup and accepts the API keys that existed."""

from __future__ import annotations

import base64
import shutil
import subprocess

import jwt
import pytest
from conftest import basic_auth
from serverproc import PostgresDatabase

from authserver import create_app
from authserver.credentials import api_keys as api_key_service
from authserver.credentials import clients as client_service
from authserver.credentials import signing_keys as keys
from authserver.storage.db import db, upgrade_database

KEYRING = [base64.urlsafe_b64encode(b"B" * 32).decode()]
ISSUER = "https://auth.example.test"

pytestmark = pytest.mark.skipif(not shutil.which("pg_dump"), reason="needs pg_dump")


def _app(url: str, tmp_path, ring=KEYRING):
    return create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url, "ISSUER": ISSUER,
                       "ENCRYPTION_KEYS": ring, "SECRET_KEY": "b",
                       "TOKEN_RATE_LIMIT": "", "INTROSPECTION_RATE_LIMIT": ""},
                      instance_path=str(tmp_path / "instance"))


def _dispose(app) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_pg_dump_restore_serves_the_same_keys_tokens_and_api_keys(tmp_path):
    original, restored = PostgresDatabase(), PostgresDatabase()
    try:
        before = _app(original.url, tmp_path)
        with before.app_context():
            upgrade_database()
            keys.ensure_signing_keys()
            keys.rotate_signing_keys()  # a retired key too: everything published must survive
            introspector, introspector_secret = client_service.create_client(
                name="rs", scope="tokens:introspect", actor="test")
            service, service_secret = client_service.create_client(
                name="svc", scope="message:send", actor="test")
            _, api_key = api_key_service.create_api_key(name="k", scopes="sms:message:send",
                                                        actor="test")
            ids = introspector.client_id, service.client_id
        client = before.test_client()
        token = client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                            headers=basic_auth(ids[1], service_secret)).get_json()["access_token"]
        jwks = client.get("/.well-known/jwks.json").get_json()
        _dispose(before)

        dump = tmp_path / "authserver.dump"
        subprocess.run(["pg_dump", "--format=custom", "--no-owner", "-h", "127.0.0.1", "-U",
                        "postgres", "-f", str(dump), original.name], check=True, timeout=60)
        original.drop()  # the original is gone: only the dump and the keyring are left
        subprocess.run(["pg_restore", "--no-owner", "-h", "127.0.0.1", "-U", "postgres",
                        "-d", restored.name, str(dump)], check=True, timeout=60)

        after = _app(restored.url, tmp_path)
        client = after.test_client()
        assert client.get("/readyz").status_code == 200
        assert client.get("/.well-known/jwks.json").get_json() == jwks
        key = jwt.PyJWK(next(k for k in jwks["keys"]
                             if k["kid"] == jwt.get_unverified_header(token)["kid"]))
        assert jwt.decode(token, key, algorithms=[key.algorithm_name], audience=ISSUER + "/api",
                          issuer=ISSUER)["client_id"] == ids[1]
        introspect = basic_auth(ids[0], introspector_secret)
        for credential in (token, api_key):
            answer = client.post("/oauth2/introspect", data={"token": credential},
                                 headers=introspect).get_json()
            assert answer["active"] is True, credential[:8]
        fresh = client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                            headers=basic_auth(ids[1], service_secret))
        assert fresh.status_code == 200  # the restored host signs with the restored key
        _dispose(after)

        # The dump alone is not enough: without the keyring the keys cannot be used.
        other = _app(restored.url, tmp_path, [base64.urlsafe_b64encode(b"X" * 32).decode()])
        ready = other.test_client().get("/readyz")
        assert ready.status_code == 503 and "cannot be decrypted" in ready.text
        _dispose(other)
    finally:
        original.drop()
        restored.drop()
