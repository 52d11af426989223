"""RFC 7662 introspection (threat model IN01–IN08, IN10; IN09 rate limits come later)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import jwt
import psycopg
import pytest
from conftest import basic_auth
from credential_actions import (
    INACTIVE,
    AssertionSigner,
    Caller,
    assert_clean_error,
    b64url,
    b64url_decode,
    introspect,
    make_caller,
    revoke,
)
from cryptography.hazmat.primitives.asymmetric import rsa

from authserver.credentials import api_keys
from authserver.credentials import clients as client_service
from authserver.credentials.signing_keys import active_signing_key
from authserver.storage import cache as row_cache
from authserver.storage.db import db
from authserver.storage.models import ApiKey

RS_A = "https://rs-a.example"
RS_B = "https://rs-b.example"
ACTIVE_JWT_MEMBERS = {"active", "token_type", "scope", "client_id", "sub", "aud", "iss", "exp",
                      "iat", "nbf", "jti", "account_id"}
ACTIVE_KEY_MEMBERS = {"active", "token_type", "scope", "client_id", "sub", "iat", "nbf", "exp",
                      "iss", "allowed_ips", "account_id"}


@pytest.fixture
def rs(oauth_clients):
    """A resource server holding ``tokens:introspect``."""
    return make_caller(oauth_clients, "tokens:introspect", name="resource server")


@pytest.fixture
def service(oauth_clients):
    """A service client that gets tokens."""
    return make_caller(oauth_clients, "message:send sms:message:send", name="service",
                       audiences=[RS_A, RS_B])


@pytest.fixture
def mint(get_token):
    """``mint(caller, **form)``: a fresh access token for ``caller``."""

    def _mint(caller: Caller, **form) -> str:
        response = get_token(caller.client_id, caller.secret, **form)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()["access_token"]

    return _mint


def verified_claims(client, app, token: str, audience: str) -> dict:
    """The token's claims, verified with PyJWT against the published JWKS."""
    header = jwt.get_unverified_header(token)
    document = client.get("/.well-known/jwks.json").get_json()
    key = next(jwt.PyJWK(k) for k in document["keys"] if k["kid"] == header["kid"])
    return jwt.decode(token, key, algorithms=[header["alg"]], audience=audience,
                      issuer=app.config["ISSUER"])


def sign_with_server_key(app, claims: dict, **header) -> str:
    """A JWT signed by the server's own active key, with the given header members."""
    with app.app_context():
        key = active_signing_key()
    headers = {"kid": key.kid, **header}
    return jwt.encode(claims, key.private_key, algorithm=key.alg, headers=headers)


# -- IN01: the caller must authenticate ------------------------------------------------------

@pytest.mark.security("IN01", "IN10")
def test_no_client_authentication_is_401(client, rs, service, mint):
    token = mint(service)
    response = introspect(client, token)
    assert_clean_error(response, 401, "invalid_client")
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.security("IN01")
@pytest.mark.parametrize("auth", [
    pytest.param(lambda rs: basic_auth(rs.client_id, rs.secret + "x"), id="wrong-secret"),
    pytest.param(lambda rs: basic_auth("0" * 32, rs.secret), id="unknown-client"),
    pytest.param(lambda rs: basic_auth(rs.client_id, ""), id="empty-secret"),
    pytest.param(lambda rs: {"Authorization": "Basic !!!"}, id="undecodable-basic"),
    pytest.param(lambda rs: {"Authorization": "Bearer " + rs.secret}, id="bearer-scheme"),
])
def test_failed_client_authentication_is_401_and_identical(client, rs, service, mint, auth):
    token = mint(service)
    response = introspect(client, token, auth(rs))
    body = assert_clean_error(response, 401, "invalid_client")
    reference = introspect(client, token, basic_auth("0" * 32, "nothing")).get_json()
    assert body == reference


def test_two_client_authentication_methods_are_refused(client, rs, service, mint):
    token = mint(service)
    response = introspect(client, token, rs.auth, client_id=rs.client_id,
                          client_secret=rs.secret)
    assert_clean_error(response, 400, "invalid_request")


@pytest.mark.security("IN01")
def test_disabled_resource_server_cannot_introspect(app, client, rs, service, mint):
    token = mint(service)
    with app.app_context():
        client_service.disable_client(rs.client_id, actor="test")
    assert_clean_error(introspect(client, token, rs.auth), 401, "invalid_client")


@pytest.mark.security("IN01", "IN03")
def test_client_without_introspect_scope_learns_nothing_of_others_tokens(client, oauth_clients,
                                                                         service, mint):
    other = make_caller(oauth_clients, "message:send", name="other")
    token = mint(service)
    answer = introspect(client, token, other.auth)
    assert answer.status_code == 200
    assert answer.get_json() == INACTIVE


def test_client_may_introspect_its_own_token(client, service, mint):
    token = mint(service)
    answer = introspect(client, token, service.auth)
    assert answer.status_code == 200
    assert answer.get_json()["active"] is True
    assert answer.get_json()["client_id"] == service.client_id


# -- IN02: request shape ---------------------------------------------------------------------

@pytest.mark.security("IN02", "IN10")
@pytest.mark.parametrize("form", [{}, {"token": ""}, {"token_type_hint": "access_token"}],
                         ids=["missing", "empty", "hint-only"])
def test_missing_token_is_400_invalid_request(client, rs, form):
    response = client.post("/oauth2/introspect", data=form, headers=rs.auth)
    assert_clean_error(response, 400, "invalid_request")
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.security("IN02")
def test_token_in_query_string_or_repeated_or_json_is_refused(client, rs, service, mint):
    token = mint(service)
    in_query = client.post(f"/oauth2/introspect?token={token}", headers=rs.auth)
    assert_clean_error(in_query, 400, "invalid_request")
    repeated = client.post("/oauth2/introspect", data={"token": [token, token]}, headers=rs.auth)
    assert_clean_error(repeated, 400, "invalid_request")
    as_json = client.post("/oauth2/introspect", json={"token": token}, headers=rs.auth)
    assert_clean_error(as_json, 400, "invalid_request")
    assert client.get("/oauth2/introspect", headers=rs.auth).status_code == 405


# -- IN03, IN05: inactive credentials are exactly {"active": false} ---------------------------

@pytest.mark.security("IN03", "IN05")
def test_expired_token_is_inactive_beyond_the_leeway(app, client, clock, rs, service, mint):
    token = mint(service)
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    leeway = app.config["LEEWAY"]
    clock.advance(exp - int(clock.now.timestamp()) + leeway - 1)
    assert introspect(client, token, rs.auth).get_json()["active"] is True
    clock.advance(1)  # exp + leeway
    assert introspect(client, token, rs.auth).get_json() == INACTIVE
    assert introspect(client, token, service.auth).get_json() == INACTIVE


@pytest.mark.security("IN03", "IN05")
def test_revoked_token_is_inactive(client, rs, service, mint):
    token = mint(service)
    assert revoke(client, token, service.auth).status_code == 200
    assert introspect(client, token, rs.auth).get_json() == INACTIVE
    assert introspect(client, token, service.auth).get_json() == INACTIVE


def _tamper_signature(token: str) -> str:
    head, payload, signature = token.split(".")
    raw = bytearray(b64url_decode(signature))
    raw[len(raw) // 2] ^= 0x01
    return f"{head}.{payload}.{b64url(bytes(raw))}"


def _tamper_payload(token: str) -> str:
    head, payload, signature = token.split(".")
    claims = json.loads(b64url_decode(payload))
    claims["scope"] = "account-management:manage"
    return f"{head}.{b64url(json.dumps(claims).encode())}.{signature}"


def _alg_none(token: str) -> str:
    head, payload, _ = token.split(".")
    header = json.loads(b64url_decode(head))
    header["alg"] = "none"
    return f"{b64url(json.dumps(header).encode())}.{payload}."


def _foreign_key(token: str) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    header = jwt.get_unverified_header(token)
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, foreign, algorithm="RS256",
                      headers={"kid": header["kid"], "typ": "at+jwt"})


def _foreign_kid(token: str) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, foreign, algorithm="RS256",
                      headers={"kid": "unknown-kid", "typ": "at+jwt"})


def _hmac_with_public_key(token: str) -> str:
    head, payload, _ = token.split(".")
    header = json.loads(b64url_decode(head))
    header["alg"] = "HS256"
    signing_input = f"{b64url(json.dumps(header).encode())}.{payload}"
    mac = hmac.new(b"public-key-as-secret", signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


TAMPERED = [
    pytest.param(_tamper_signature, id="flipped-signature-bit"),
    pytest.param(_tamper_payload, id="changed-payload"),
    pytest.param(lambda t: t.rsplit(".", 1)[0] + ".", id="stripped-signature"),
    pytest.param(_alg_none, id="alg-none"),
    pytest.param(_hmac_with_public_key, id="alg-hs256"),
    pytest.param(_foreign_key, id="foreign-key-our-kid"),
    pytest.param(_foreign_kid, id="foreign-key-unknown-kid"),
    pytest.param(lambda t: t + ".", id="extra-segment"),
    pytest.param(lambda t: " " + t, id="leading-space"),
]


@pytest.mark.security("IN05")
@pytest.mark.parametrize("tamper", TAMPERED)
def test_tampered_or_foreign_tokens_are_inactive(client, rs, service, mint, tamper):
    token = mint(service)
    assert introspect(client, token, rs.auth).get_json()["active"] is True
    answer = introspect(client, tamper(token), rs.auth)
    assert answer.status_code == 200
    assert answer.get_json() == INACTIVE


MISSING = object()
LATER = object()


@pytest.mark.parametrize("header, claim_changes", [
    pytest.param({}, {}, id="no-typ"),
    pytest.param({"typ": "JWT"}, {}, id="typ-jwt"),
    pytest.param({"typ": "application/jwt"}, {}, id="typ-application-jwt"),
    pytest.param({"typ": "at+jwt"}, {"iss": "https://evil.example"}, id="other-issuer"),
    pytest.param({"typ": "at+jwt"}, {"iss": "https://auth.example.test/"}, id="issuer-slash"),
    pytest.param({"typ": "at+jwt"}, {"jti": MISSING}, id="no-jti"),
    pytest.param({"typ": "at+jwt"}, {"client_id": MISSING}, id="no-client-id"),
    pytest.param({"typ": "at+jwt"}, {"exp": MISSING}, id="no-exp"),
    pytest.param({"typ": "at+jwt"}, {"scope": ["message:send"]}, id="scope-array"),
    pytest.param({"typ": "at+jwt"}, {"nbf": LATER}, id="not-yet-valid"),
    pytest.param({"typ": "at+jwt"}, {"iat": LATER}, id="issued-in-the-future"),
    pytest.param({"typ": "at+jwt", "crit": ["exp"]}, {}, id="crit"),
])
def test_tokens_signed_by_our_key_but_not_access_tokens_are_inactive(app, client, clock, rs,
                                                                      service, header,
                                                                      claim_changes):
    """RFC 9068 §4 / RFC 8725 §3.11: our signature alone does not make an access token."""
    now = int(clock.now.timestamp())
    claims = {"iss": app.config["ISSUER"], "sub": service.client_id,
              "client_id": service.client_id, "aud": app.config["DEFAULT_AUDIENCE"],
              "exp": now + 600, "iat": now, "nbf": now, "jti": "forged-1",
              "scope": "message:send"}
    control = sign_with_server_key(app, claims, typ="at+jwt")
    assert introspect(client, control, rs.auth).get_json()["active"] is True
    for name, value in claim_changes.items():
        if value is MISSING:
            del claims[name]
        else:
            claims[name] = now + 3600 if value is LATER else value
    token = sign_with_server_key(app, claims, **header)
    assert introspect(client, token, rs.auth).get_json() == INACTIVE


GARBAGE = [
    pytest.param("garbage", id="word"),
    pytest.param("a.b.c", id="three-dots"),
    pytest.param("..", id="empty-segments"),
    pytest.param("\x00", id="nul"),
    pytest.param("eyJhbGciOiJSUzI1NiJ9." * 3, id="repeated-header"),
    pytest.param("x" * 8000, id="8-kb-word"),
    pytest.param("e" * 4000 + "." + "e" * 4000 + ".e", id="8-kb-jwt-shape"),
    pytest.param(b64url(b"[" * 5500) + ".e30.e30", id="deeply-nested-header"),
    pytest.param(b64url(json.dumps({"alg": "RS256", "kid": "k" * 6000}).encode()) + ".e30.e30",
                 id="huge-kid"),
    pytest.param("asak_" + "A" * 8000, id="8-kb-api-key-shape"),
    pytest.param("x" * 9000, id="9-kb"),
    pytest.param("y" * 60000, id="60-kb"),
    pytest.param("\u00e9\u4e2d\U0001f600" * 100, id="non-ascii"),
]


@pytest.mark.security("IN03")
@pytest.mark.parametrize("token", GARBAGE)
def test_garbage_is_inactive(client, rs, token):
    answer = introspect(client, token, rs.auth)
    assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
    assert answer.get_json() == INACTIVE


def test_undecodable_form_bytes_are_inactive(client, rs):
    answer = client.post("/oauth2/introspect", data=b"token=%ff%fe%00",
                         content_type="application/x-www-form-urlencoded", headers=rs.auth)
    assert answer.status_code == 200 and answer.get_json() == INACTIVE


def test_body_beyond_the_size_limit_is_413_json(app, client, rs):
    assert app.config["MAX_CONTENT_LENGTH"] == 64 * 1024
    response = introspect(client, "z" * 100_000, rs.auth)
    assert response.status_code == 413
    assert response.mimetype == "application/json"
    assert "active" not in response.get_json()
    assert response.get_json()["error"] == "invalid_request"


@pytest.mark.security("IN03", "IN08")
def test_unknown_well_formed_api_key_is_inactive(client, rs):
    answer = introspect(client, api_keys.generate_api_key(), rs.auth)
    assert answer.get_json() == INACTIVE


@pytest.mark.security("IN03", expected='200 and exactly {"active": false}, the same bytes')
def test_every_kind_of_inactive_credential_gets_the_same_answer(app, client, clock,
                                                                oauth_clients, service, mint):
    """Unknown, expired, revoked, disabled and not-for-this-caller credentials look alike."""
    rs_a = make_caller(oauth_clients, "tokens:introspect", name="rs-a", audiences=[RS_A])
    for_b = mint(service, resource=RS_B)  # active, but not rs_a's to see
    assert introspect(client, for_b, service.auth).get_json()["active"] is True
    revoked = mint(service, resource=RS_A)
    assert revoke(client, revoked, service.auth).status_code == 200
    with app.app_context():
        record, disabled_key = api_keys.create_api_key(name="k", scopes="sms:message:send",
                                                       actor="test")
        api_keys.disable_api_key(record.id, actor="test")
    expiring = mint(service, resource=RS_A)
    assert introspect(client, expiring, rs_a.auth).get_json()["active"] is True
    cases = {"unknown-jwt": _tamper_signature(for_b), "unknown-key": api_keys.generate_api_key(),
             "garbage": "garbage", "revoked": revoked, "disabled-key": disabled_key,
             "other-audience": for_b}
    bodies = set()

    def check(name: str, token: str) -> None:
        answer = introspect(client, token, rs_a.auth)
        assert answer.status_code == 200, name
        assert answer.get_json() == INACTIVE, name
        bodies.add(answer.get_data())

    for name, token in cases.items():
        check(name, token)
    exp = jwt.decode(expiring, options={"verify_signature": False})["exp"]
    clock.advance(exp - int(clock.now.timestamp()) + app.config["LEEWAY"])
    check("expired", expiring)
    assert len(bodies) == 1


# -- IN04: an active answer agrees with the token ---------------------------------------------

@pytest.mark.security("IN04")
def test_active_answer_matches_the_jwt_claims(app, client, rs, service, mint):
    token = mint(service, scope="sms:message:send")
    claims = verified_claims(client, app, token, app.config["DEFAULT_AUDIENCE"])
    answer = introspect(client, token, rs.auth)
    assert answer.status_code == 200
    body = answer.get_json()
    assert set(body) == ACTIVE_JWT_MEMBERS
    assert body == {"active": True, "token_type": "Bearer", **claims}
    assert isinstance(body["scope"], str) and body["scope"] == "sms:message:send"
    assert body["sub"] == body["client_id"] == service.client_id
    assert body["iss"] == app.config["ISSUER"]


# -- IN06: audiences --------------------------------------------------------------------------

@pytest.mark.security("IN05", "IN06")
def test_resource_server_learns_only_about_tokens_for_its_audience(app, client, oauth_clients,
                                                                   rs, service, mint):
    rs_a = make_caller(oauth_clients, "tokens:introspect", name="rs-a", audiences=[RS_A])
    default_token = mint(service)
    token_a = mint(service, resource=RS_A)
    token_b = mint(service, resource=RS_B)

    assert introspect(client, default_token, rs_a.auth).get_json() == INACTIVE
    assert introspect(client, token_b, rs_a.auth).get_json() == INACTIVE
    answer = introspect(client, token_a, rs_a.auth).get_json()
    assert answer["active"] is True and answer["aud"] == RS_A
    assert verified_claims(client, app, token_a, RS_A)["jti"] == answer["jti"]
    # A resource server without registered audiences sees them all.
    for token in (default_token, token_a, token_b):
        assert introspect(client, token, rs.auth).get_json()["active"] is True


# -- IN07: token_type_hint is only a hint -----------------------------------------------------

@pytest.mark.security("IN07")
@pytest.mark.parametrize("hint", ["access_token", "refresh_token", "api_key", "bogus", "App"])
def test_token_type_hint_never_hides_a_credential(app, client, rs, service, mint, hint):
    token = mint(service)
    assert introspect(client, token, rs.auth, token_type_hint=hint).get_json()["active"] is True
    with app.app_context():
        _, secret = api_keys.create_api_key(name="k", scopes="sms:message:send", actor="test")
    answer = introspect(client, secret, rs.auth, token_type_hint=hint)
    assert answer.get_json()["active"] is True


# -- IN08: API keys ---------------------------------------------------------------------------

@pytest.mark.security("IN08")
def test_api_key_introspection_needs_the_introspect_scope(app, client, oauth_clients, rs):
    with app.app_context():
        record, secret = api_keys.create_api_key(
            name="k", scopes=["sms:message:send"], actor="operator-alice",
            allowed_ips=["192.0.2.0/24", "2001:db8::/32"])
        key_id = record.id
        key_hash = db.session.get(ApiKey, key_id).secret_hash
    plain = make_caller(oauth_clients, "sms:message:send message:send")
    assert introspect(client, secret, plain.auth).get_json() == INACTIVE

    answer = introspect(client, secret, rs.auth)
    body = answer.get_json()
    assert set(body) == ACTIVE_KEY_MEMBERS
    assert body["active"] is True and body["client_id"] == body["sub"] == key_id
    assert body["scope"] == "sms:message:send"
    assert body["allowed_ips"] == ["192.0.2.0/24", "2001:db8::/32"]
    text = answer.get_data(as_text=True)
    assert key_hash not in text and secret not in text and secret[5:] not in text
    assert "operator-alice" not in text  # the creator (owner) is not revealed


@pytest.mark.security("IN08")
def test_disabled_api_key_is_inactive(app, client, rs):
    with app.app_context():
        record, secret = api_keys.create_api_key(name="k", scopes="sms:message:send",
                                                 actor="test")
        api_keys.disable_api_key(record.id, actor="test")
    assert introspect(client, secret, rs.auth).get_json() == INACTIVE


# -- IN10: never cached -----------------------------------------------------------------------

@pytest.mark.security("IN10")
def test_answers_are_not_cacheable(client, rs, service, mint):
    token = mint(service)
    for response in (introspect(client, token, rs.auth), introspect(client, "garbage", rs.auth)):
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Pragma"] == "no-cache"
        assert response.mimetype == "application/json"


# -- the three client authentication methods --------------------------------------------------

@pytest.fixture(params=["client_secret_basic", "client_secret_post", "private_key_jwt"])
def authenticated_rs(request, app, oauth_clients, clock):
    """A ``tokens:introspect`` resource server using one client authentication method.

    Returns ``credentials()``: fresh (headers, form) for one request.
    """
    method = request.param
    if method == "private_key_jwt":
        signer = AssertionSigner()
        client_id, _ = oauth_clients.create(scope="tokens:introspect", auth_method=method,
                                            jwks=signer.jwks)
        return method, lambda: ({}, signer.form(client_id, app.config["ISSUER"], clock.now))
    client_id, secret = oauth_clients.create(scope="tokens:introspect", auth_method=method)
    if method == "client_secret_basic":
        return method, lambda: (basic_auth(client_id, secret), {})
    return method, lambda: ({}, {"client_id": client_id, "client_secret": secret})


def test_introspection_with_each_client_authentication_method(client, service, mint,
                                                              authenticated_rs):
    method, credentials = authenticated_rs
    token = mint(service)
    headers, form = credentials()
    answer = client.post("/oauth2/introspect", data={"token": token, **form}, headers=headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["active"] is True
    assert answer.get_json()["client_id"] == service.client_id

    if method == "private_key_jwt":  # a replayed assertion does not authenticate (PK05)
        replay = client.post("/oauth2/introspect", data={"token": token, **form}, headers=headers)
        assert_clean_error(replay, 401, "invalid_client")


def test_registered_method_is_enforced(client, oauth_clients, service, mint):
    """A client_secret_post client cannot authenticate with Basic, and vice versa."""
    token = mint(service)
    post_id, post_secret = oauth_clients.create(scope="tokens:introspect",
                                                auth_method="client_secret_post")
    response = introspect(client, token, basic_auth(post_id, post_secret))
    assert_clean_error(response, 401, "invalid_client")
    basic = make_caller(oauth_clients, "tokens:introspect")
    response = introspect(client, token, None, client_id=basic.client_id,
                          client_secret=basic.secret)
    assert_clean_error(response, 401, "invalid_client")


def test_RL1_a_pooled_connection_lost_under_the_revocation_check_is_503_then_recovers(
        app, backend, client, rs, service, mint):
    """The revocation check reads through a pooled DBAPI connection of its own: a connection
    the database dropped answers 503 + Retry-After (SQLAlchemy's OperationalError, as any
    outage), never a 500, is not handed out again, and requests are answered again after."""
    if backend != "postgresql":
        pytest.skip("SQLite connections are in-process: nothing can drop them")
    token = mint(service)
    assert introspect(client, token, rs.auth).get_json()["active"] is True  # pooled connection
    with app.app_context():
        url = db.engine.url
        pool_size = db.engine.pool.size()
    with psycopg.connect(f"host={url.host} port={url.port or 5432} user={url.username} "
                         f"dbname={url.database}", autocommit=True) as conn:
        # Not the cache listener's: the caller's client stays cached, so the revocation
        # check is the request's first database read (the path under test).
        others = ("datname = current_database() AND pid <> pg_backend_pid() "
                  "AND backend_type = 'client backend' "
                  f"AND application_name <> '{row_cache.APPLICATION_NAME}'")
        assert conn.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            f"WHERE {others}").fetchall()
        deadline = time.monotonic() + 10
        while conn.execute(f"SELECT count(*) FROM pg_stat_activity WHERE {others}").fetchone()[0]:
            assert time.monotonic() < deadline, "terminated backends did not exit"
            time.sleep(0.05)
    statuses = []
    for _ in range(pool_size + 2):  # each broken pooled connection costs one request at most
        answer = introspect(client, token, rs.auth)
        statuses.append(answer.status_code)
        if answer.status_code == 200:
            assert answer.get_json()["active"] is True
            break
        assert answer.status_code == 503, statuses
        assert int(answer.headers["Retry-After"]) > 0
        assert answer.get_json()["error"] == "temporarily_unavailable"
    assert statuses[0] == 503 and statuses[-1] == 200, statuses
