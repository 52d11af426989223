"""Issued access tokens, the JWKS and signing keys: threat model AT01-AT11, JW01, JW02, JW04,
JW07, JW08, the three signing algorithms, rotation, and "no database write per issued token".

Signing keys persist between tests by design (conftest keeps the table); tests that change
the signing algorithm put a key of the default algorithm back in charge when they finish.
"""

from __future__ import annotations

import base64
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
import requests
import sqlalchemy as sa
from conftest import basic_auth
from cryptography.hazmat.primitives import serialization
from oauth_support import (
    TOKEN_CLAIMS,
    published_keys,
    recorded_writes,
    table_counts,
    verify_token,
)

from authserver import config as defaults
from authserver.credentials import clients as client_service
from authserver.credentials import signing_keys as keys
from authserver.storage.db import db
from authserver.storage.models import SigningKey

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}
TOKEN_COUNT = 200


def unverified(token: str) -> tuple[dict, dict]:
    return jwt.get_unverified_header(token), jwt.decode(token,
                                                        options={"verify_signature": False})


def key_states(app) -> dict[str, str]:
    with app.app_context():
        return {key.kid: key.state for key in keys.list_signing_keys()}


def rotate(app, alg: str | None = None) -> str:
    with app.app_context():
        key = keys.rotate_signing_keys(alg)
        return key.kid


@pytest.fixture
def issued(oauth_clients, get_token):
    """TOKEN_COUNT tokens for one client allowed ``message:send sms:logs:read``."""
    client_id, secret = oauth_clients.create(scope="message:send sms:logs:read")
    tokens = []
    for index in range(TOKEN_COUNT):
        form = {"scope": "sms:message:send sms:logs:read"} if index % 2 else {}
        response = get_token(client_id, secret, **form)
        assert response.status_code == 200
        tokens.append(response.get_json())
    return client_id, tokens


# --- AT01-AT09 over many tokens ---------------------------------------------------------------

def test_AT01_AT02_AT03_headers(app, client, issued):
    _, tokens = issued
    jwks = published_keys(client)
    algs = client.get("/.well-known/oauth-authorization-server").get_json()[
        "access_token_signing_alg_values_supported"]
    for body in tokens:
        header, _ = unverified(body["access_token"])
        assert header["alg"] in algs and header["alg"] in ("RS256", "ES256", "EdDSA")
        assert header["alg"] != "none" and not header["alg"].startswith("HS")
        assert header["typ"] == "at+jwt"                    # RFC 9068 §2.1
        assert header["kid"] in jwks                        # resolvable in the current JWKS
        assert set(header) == {"alg", "typ", "kid"}         # no jku/x5u/jwk/crit


@pytest.mark.security("AT04", "AT05", "AT06", "AT07", "AT09")
def test_AT04_to_AT09_claims(app, client, issued):
    client_id, tokens = issued
    for index, body in enumerate(tokens):
        claims = verify_token(client, app, body["access_token"])
        assert set(claims) == TOKEN_CLAIMS                  # AT04, and nothing else (AT10)
        assert claims["sub"] == claims["client_id"] == client_id          # AT05
        assert claims["aud"] == app.config["DEFAULT_AUDIENCE"] != client_id  # AT06
        assert claims["iss"] == app.config["ISSUER"]
        assert isinstance(claims["scope"], str)             # AT07
        expected = "sms:message:send sms:logs:read" if index % 2 else "message:send sms:logs:read"
        assert claims["scope"] == body["scope"] == expected
        assert claims["exp"] - claims["iat"] == body["expires_in"] == 3600  # AT09
        assert claims["nbf"] == claims["iat"]
        assert all(isinstance(claims[name], int) for name in ("exp", "iat", "nbf"))
    jtis = [unverified(body["access_token"])[1]["jti"] for body in tokens]
    assert len(set(jtis)) == TOKEN_COUNT                    # AT08
    assert all(isinstance(jti, str) and len(jti) >= 16 for jti in jtis)


def test_AT08_concurrent_tokens_unique_and_not_crossed(live_server):
    """Concurrent requests from several clients: every token is the requester's, jtis unique
    (threat model item 20)."""
    with live_server.app.app_context():
        registered = [client_service.create_client(name=f"c{i}", scope="message:send",
                                                   actor="test")
                      for i in range(4)]
        credentials = [(record.client_id, secret) for record, secret in registered]
    url = live_server.url + "/oauth2/token"

    def fetch(index: int) -> tuple[str, dict]:
        client_id, secret = credentials[index % len(credentials)]
        with requests.Session() as session:
            response = session.post(url, data={"grant_type": "client_credentials"},
                                    auth=(client_id, secret), timeout=10)
        assert response.status_code == 200, response.text
        return client_id, jwt.decode(response.json()["access_token"],
                                     options={"verify_signature": False})

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(fetch, range(80)))
    assert all(claims["sub"] == claims["client_id"] == cid for cid, claims in results)
    assert len({claims["jti"] for _, claims in results}) == len(results)
    assert Counter(cid for cid, _ in results) == {cid: 20 for cid, _ in credentials}


@pytest.mark.parametrize("name", ["iss", "aud", "sub", "scope", "exp"])
def test_AT10_client_metadata_cannot_override_claims(app, client, oauth_clients, get_token,
                                                     name):
    client_id, secret = oauth_clients.create(scope="sms:message:send", name=name)
    claims = verify_token(client, app, get_token(client_id, secret).get_json()["access_token"])
    assert set(claims) == TOKEN_CLAIMS
    assert claims["iss"] == app.config["ISSUER"] and claims["sub"] == client_id
    assert claims["aud"] == app.config["DEFAULT_AUDIENCE"]
    assert claims["scope"] == "sms:message:send"


def test_AT09_lifetime_override_is_bounded(app, oauth_clients):
    from authserver.web.errors import ValidationError

    maximum = app.config["MAX_ACCESS_TOKEN_TTL"]
    for ttl in (maximum + 1, 59, 0, -1):
        with pytest.raises(ValidationError):
            oauth_clients.create(scope="message:send", token_ttl=ttl)
    oauth_clients.create(scope="message:send", token_ttl=maximum)


def test_AT11_no_symmetric_keys(app, client):
    document = client.get("/.well-known/jwks.json").get_json()
    assert document["keys"]
    assert all(key["kty"] in ("RSA", "EC", "OKP") for key in document["keys"])
    metadata = client.get("/.well-known/oauth-authorization-server").get_json()
    assert not any(alg.upper().startswith(("HS", "NONE"))
                   for alg in metadata["access_token_signing_alg_values_supported"])
    with app.app_context():
        for alg in ("HS256", "none", "RS1", "rs256"):
            with pytest.raises(ValueError):
                keys.create_signing_key(alg)
            db.session.rollback()


# --- JWKS ------------------------------------------------------------------------------------

def test_JW01_JW02_public_members_only(app, client):
    rotate(app)  # a retired, an active and a next key are all published
    document = client.get("/.well-known/jwks.json").get_json()
    kids = [key["kid"] for key in document["keys"]]
    assert len(kids) >= 3 and len(set(kids)) == len(kids)
    for key in document["keys"]:
        assert not PRIVATE_MEMBERS & set(key), key
        assert key["use"] == "sig" and key["alg"] in ("RS256", "ES256", "EdDSA")
        assert "key_ops" not in key
        if key["kty"] == "RSA":
            modulus = base64.urlsafe_b64decode(key["n"] + "=" * (-len(key["n"]) % 4))
            assert len(modulus) * 8 >= 2048
            assert key["alg"] == "RS256"
        elif key["kty"] == "EC":
            assert key["crv"] == "P-256" and key["alg"] == "ES256"
        else:
            assert key["crv"] == "Ed25519" and key["alg"] == "EdDSA"
        jwt.PyJWK(key)  # parses as a public key


def test_JW07_metadata_consistent_with_tokens(app, client, oauth_clients, get_token):
    client_id, secret = oauth_clients.create(scope="message:send")
    response = client.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    metadata = response.get_json()
    issuer = app.config["ISSUER"]
    assert metadata["issuer"] == issuer
    assert metadata["token_endpoint"] == issuer + "/oauth2/token"
    assert metadata["jwks_uri"] == issuer + "/.well-known/jwks.json"
    assert metadata["grant_types_supported"] == ["client_credentials"]
    assert set(metadata["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic", "client_secret_post", "private_key_jwt"}
    assert "none" not in metadata["token_endpoint_auth_signing_alg_values_supported"]
    assert {"message:send", "sms:message:send", "tokens:introspect"} <= \
        set(metadata["scopes_supported"])
    token = get_token(client_id, secret).get_json()["access_token"]
    header, claims = unverified(token)
    assert claims["iss"] == metadata["issuer"]
    assert header["alg"] in metadata["access_token_signing_alg_values_supported"]
    jwks_path = metadata["jwks_uri"].removeprefix(issuer)
    assert header["kid"] in {key["kid"] for key in client.get(jwks_path).get_json()["keys"]}


def test_JW07_jwks_cacheable_without_auth(client):
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    directives = {part.strip().split("=")[0]: part.strip().split("=")[-1]
                  for part in response.headers["Cache-Control"].split(",")}
    assert "no-store" not in directives and "private" not in directives
    assert 60 <= int(directives["max-age"]) <= 3600


def test_JW08_private_keys_encrypted_at_rest(app):
    with app.app_context():
        rows = db.session.execute(sa.text(
            "SELECT kid, private_key_encrypted, public_jwk FROM signing_keys")).all()
        assert rows
        for kid, blob, _ in rows:
            blob = bytes(blob)
            assert b"PRIVATE KEY" not in blob and b"BEGIN" not in blob
            for loader in (serialization.load_pem_private_key,
                           serialization.load_der_private_key):
                with pytest.raises((ValueError, TypeError)):
                    loader(blob, None)
            # Only the configured key opens it, and it is bound to its own kid.
            pem = keys.decrypt_private_key(kid, blob)
            assert serialization.load_pem_private_key(pem, None)
            other = next((other_kid for other_kid, _, _ in rows if other_kid != kid), "x")
            with pytest.raises(keys.UndecryptableKeyError):
                keys.decrypt_private_key(other, blob)
        configured = app.config["ENCRYPTION_KEY"]
        app.config["ENCRYPTION_KEY"] = base64.urlsafe_b64encode(b"w" * 32).decode()
        try:
            with pytest.raises(keys.UndecryptableKeyError):
                keys.decrypt_private_key(rows[0][0], bytes(rows[0][1]))
        finally:
            app.config["ENCRYPTION_KEY"] = configured


# --- algorithms ------------------------------------------------------------------------------

@pytest.fixture
def signing_alg(request, app):
    """Make a key of ``request.param`` the active one; put the default back afterwards."""
    alg = request.param
    with app.app_context():
        keys.rotate_signing_keys(alg)
        keys.rotate_signing_keys(alg)
    yield alg
    with app.app_context():
        keys.rotate_signing_keys(defaults.SIGNING_ALG)
        keys.rotate_signing_keys(defaults.SIGNING_ALG)


@pytest.mark.parametrize(("app_config", "signing_alg"),
                         [({"SIGNING_ALG": alg}, alg) for alg in ("RS256", "ES256", "EdDSA")],
                         indirect=True, ids=["RS256", "ES256", "EdDSA"])
def test_signing_algorithms(app, client, signing_alg, oauth_clients, get_token):
    client_id, secret = oauth_clients.create(scope="message:send")
    token = get_token(client_id, secret).get_json()["access_token"]
    header, _ = unverified(token)
    assert header["alg"] == signing_alg and header["typ"] == "at+jwt"
    jwk = client.get("/.well-known/jwks.json").get_json()["keys"]
    published = {key["kid"]: key for key in jwk}
    assert published[header["kid"]]["alg"] == signing_alg
    claims = jwt.decode(token, jwt.PyJWK(published[header["kid"]]), algorithms=[signing_alg],
                        audience=app.config["DEFAULT_AUDIENCE"], issuer=app.config["ISSUER"])
    assert claims["sub"] == client_id
    # The next key is created with the configured algorithm.
    with app.app_context():
        upcoming = db.session.scalar(sa.select(SigningKey).where(SigningKey.state == keys.NEXT))
        assert upcoming.alg == signing_alg and upcoming.kid in published


# --- rotation (JW03 / JW04 / RL2) -------------------------------------------------------------

@pytest.mark.security("JW04")
def test_rotation_publishes_before_signing_and_retires_after_expiry(app, client, clock,
                                                                   oauth_clients, get_token):
    client_id, secret = oauth_clients.create(scope="message:send")
    states = key_states(app)
    before_jwks = set(published_keys(client))
    old_token = get_token(client_id, secret).get_json()["access_token"]
    old_kid = unverified(old_token)[0]["kid"]
    assert states[old_kid] == "active"
    upcoming = [kid for kid, state in states.items() if state == "next"]
    assert len(upcoming) == 1 and upcoming[0] in before_jwks   # published, not signing yet

    new_kid = rotate(app)
    assert new_kid == upcoming[0]                # the key that signs was already published
    new_token = get_token(client_id, secret).get_json()["access_token"]
    assert unverified(new_token)[0]["kid"] == new_kid
    after = key_states(app)
    assert after[old_kid] == "retired" and after[new_kid] == "active"
    assert list(after.values()).count("active") == 1
    fresh_next = [kid for kid, state in after.items() if state == "next"]
    assert len(fresh_next) == 1 and fresh_next[0] not in before_jwks
    jwks_now = set(published_keys(client))
    assert {old_kid, new_kid, fresh_next[0]} <= jwks_now
    # JW04: a token minted before the rotation still verifies against the published keys.
    assert verify_token(client, app, old_token)["sub"] == client_id

    with app.app_context():
        retired = db.session.get(SigningKey, old_kid)
        lifetime = app.config["MAX_ACCESS_TOKEN_TTL"] + app.config["LEEWAY"]
        assert (retired.publish_until - retired.retired_at).total_seconds() >= lifetime
    clock.advance(lifetime - 1)
    assert old_kid in published_keys(client)
    clock.advance(2)
    remaining = published_keys(client)
    assert old_kid not in remaining and {new_kid, fresh_next[0]} <= set(remaining)


def test_rotation_is_seen_by_another_worker(app, client, oauth_clients):
    """A second app on the same database (another worker) follows a rotation made elsewhere."""
    from authserver import create_app

    client_id, secret = oauth_clients.create(scope="message:send")
    config = {key: app.config[key] for key in ("TESTING", "SQLALCHEMY_DATABASE_URI", "ISSUER",
                                               "ENCRYPTION_KEY", "SECRET_KEY")}
    other = create_app({**config, "SIGNING_KEY_CACHE_SECONDS": 0},
                       instance_path=app.instance_path + "-worker2")
    other_client = other.test_client()

    def kid_from_other_worker() -> str:
        response = other_client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                                     headers=basic_auth(client_id, secret))
        assert response.status_code == 200
        return unverified(response.get_json()["access_token"])[0]["kid"]

    try:
        assert kid_from_other_worker() in published_keys(other_client)
        new_kid = rotate(app)
        assert new_kid in published_keys(other_client)
        assert kid_from_other_worker() == new_kid
    finally:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()


def test_concurrent_rotations_leave_one_active_key(app, backend):
    errors = []

    def worker():
        try:
            with app.app_context():
                keys.rotate_signing_keys()
                db.session.remove()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    states = Counter(key_states(app).values())
    assert states["active"] == 1 and states["next"] == 1


# --- no database write per issued token ------------------------------------------------------

def test_no_database_write_per_issued_token(app, oauth_clients, get_token):
    client_id, secret = oauth_clients.create(scope="message:send")
    assert get_token(client_id, secret).status_code == 200   # warm the key cache
    before = table_counts(app)
    with recorded_writes(app) as writes:
        for index in range(20):
            form = {"scope": "sms:message:send"} if index % 2 else {}
            assert get_token(client_id, secret, **form).status_code == 200
    assert writes == []
    assert table_counts(app) == before
