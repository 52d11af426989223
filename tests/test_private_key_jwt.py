"""private_key_jwt client authentication (RFC 7523 §3, rfc7523bis): threat model PK01-PK07."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import uuid
from urllib.parse import urlencode

import jwt
import pytest
from conftest import basic_auth
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from oauth_support import ASSERTION_TYPE, FORM, assert_oauth_error, table_counts, verify_token

from authserver.web.errors import ValidationError

TOKEN_URL = "/oauth2/token"


# --- keys and assertions ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def stranger_key():
    """A key nobody registered."""
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(private_key, kid: str) -> dict:
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk, alg = RSAAlgorithm.to_jwk(public, as_dict=True), "RS256"
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk, alg = ECAlgorithm.to_jwk(public, as_dict=True), "ES256"
    else:
        jwk, alg = OKPAlgorithm.to_jwk(public, as_dict=True), "EdDSA"
    jwk.update(kid=kid, use="sig", alg=alg)
    return jwk


def alg_of(private_key) -> str:
    if isinstance(private_key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return "ES256"
    return "EdDSA"


class Assertions:
    """Mint client assertions for one registered client, at the app clock's time."""

    def __init__(self, app, clock, client_id: str, key, kid: str):
        self.app, self.clock, self.client_id, self.key, self.kid = app, clock, client_id, key, kid

    def claims(self, **overrides) -> dict:
        now = int(self.clock.now.timestamp())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": self.app.config["ISSUER"],
                  "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex}
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def mint(self, *, key=None, alg=None, headers=None, **overrides) -> str:
        key = key or self.key
        header = {"kid": self.kid, **(headers or {})}
        # PyJWS signs any payload, so claims PyJWT would refuse to encode can be tested too.
        payload = json.dumps(self.claims(**overrides)).encode()
        return jwt.api_jws.PyJWS().encode(payload, key, algorithm=alg or alg_of(key),
                                          headers={k: v for k, v in header.items()
                                                   if v is not None})


def registered(app, clock, oauth_clients, key, kid="client-key-1", **kwargs) -> Assertions:
    client_id, secret = oauth_clients.create(scope="message:send", auth_method="private_key_jwt",
                                             jwks={"keys": [public_jwk(key, kid)]}, **kwargs)
    assert secret is None
    return Assertions(app, clock, client_id, key, kid)


@pytest.fixture
def ec_client(app, clock, oauth_clients, ec_key):
    return registered(app, clock, oauth_clients, ec_key)


def post_assertion(client, assertion, *, assertion_type=ASSERTION_TYPE, headers=None, **form):
    body = {"grant_type": "client_credentials", "client_assertion_type": assertion_type,
            "client_assertion": assertion, **form}
    body = {name: value for name, value in body.items() if value is not None}
    return client.post(TOKEN_URL, data=urlencode(body), content_type=FORM, headers=headers or {})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict, claims: dict, signature: bytes = b"") -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(signature)}"


def hmac_signed(header: dict, claims: dict, secret: bytes) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def refused(client, app, assertion: str, **kwargs) -> None:
    """The assertion does not authenticate, and nothing is written."""
    before = table_counts(app)
    assert_oauth_error(post_assertion(client, assertion, **kwargs), 401, "invalid_client")
    assert table_counts(app) == before


# --- success ---------------------------------------------------------------------------------

@pytest.mark.parametrize("key_name", ["ec_key", "rsa_key", "ed25519"])
def test_private_key_jwt_success(app, client, clock, oauth_clients, request, key_name):
    key = ed25519.Ed25519PrivateKey.generate() if key_name == "ed25519" \
        else request.getfixturevalue(key_name)
    assertions = registered(app, clock, oauth_clients, key)
    response = post_assertion(client, assertions.mint(), scope="sms:message:send")
    assert response.status_code == 200, response.get_json()
    claims = verify_token(client, app, response.get_json()["access_token"])
    assert claims["sub"] == claims["client_id"] == assertions.client_id
    assert claims["scope"] == "sms:message:send"


KEY_FOR_ALG = {"RS256": "rsa_key", "PS256": "rsa_key", "ES256": "ec_key", "EdDSA": "ed25519"}


def _key_named(request, name):
    return ed25519.Ed25519PrivateKey.generate() if name == "ed25519" \
        else request.getfixturevalue(name)


def test_PK06_every_advertised_assertion_algorithm_works(app, client, clock, oauth_clients,
                                                          request, subtests):
    """Issue 18 finding 9: each algorithm the metadata advertises authenticates a client
    whose registered key names it."""
    metadata = client.get("/.well-known/oauth-authorization-server").get_json()
    advertised = metadata["token_endpoint_auth_signing_alg_values_supported"]
    assert set(advertised) <= set(KEY_FOR_ALG)
    for alg in advertised:
        with subtests.test(alg=alg):
            key = _key_named(request, KEY_FOR_ALG[alg])
            jwk = {**public_jwk(key, "k"), "alg": alg}
            assertions = registered_jwk(app, clock, oauth_clients, key, jwk)
            response = post_assertion(client, assertions.mint(alg=alg))
            assert response.status_code == 200, (alg, response.get_json())


@pytest.mark.parametrize("alg", ["RS256", "PS256"])
def test_PK06_rsa_key_without_alg_takes_either_rsa_algorithm(app, client, clock, oauth_clients,
                                                              rsa_key, alg):
    jwk = public_jwk(rsa_key, "k")
    del jwk["alg"]
    assertions = registered_jwk(app, clock, oauth_clients, rsa_key, jwk)
    assert post_assertion(client, assertions.mint(alg=alg)).status_code == 200


@pytest.mark.parametrize("registered_alg, used_alg", [("RS256", "PS256"), ("PS256", "RS256")])
def test_PK06_a_key_registered_for_one_algorithm_refuses_another(app, client, clock,
                                                                 oauth_clients, rsa_key,
                                                                 registered_alg, used_alg):
    """RFC 8725 §3.1: one algorithm per key when the key names one."""
    jwk = {**public_jwk(rsa_key, "k"), "alg": registered_alg}
    assertions = registered_jwk(app, clock, oauth_clients, rsa_key, jwk)
    refused(client, app, assertions.mint(alg=used_alg))


def registered_jwk(app, clock, oauth_clients, key, jwk) -> Assertions:
    client_id, _ = oauth_clients.create(scope="message:send", auth_method="private_key_jwt",
                                        jwks={"keys": [jwk]})
    return Assertions(app, clock, client_id, key, jwk["kid"])


def test_client_id_in_form_must_match(app, client, ec_client):
    ok = post_assertion(client, ec_client.mint(), client_id=ec_client.client_id)
    assert ok.status_code == 200
    refused(client, app, ec_client.mint(), client_id="0" * 32)


def test_assertion_without_kid_uses_the_only_key(client, ec_client):
    assert post_assertion(client, ec_client.mint(headers={"kid": None})).status_code == 200


def test_registration_writes_a_secretless_client(app, ec_client):
    from authserver.credentials import clients as client_service

    with app.app_context():
        record = client_service.get_client(ec_client.client_id)
        assert record.secret_hash is None and record.auth_method == "private_key_jwt"


# --- PK01: assertion type ----------------------------------------------------------------------

WRONG_ASSERTION_TYPES = [
    None, "", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
    ASSERTION_TYPE.upper(), ASSERTION_TYPE + " ", "jwt-bearer",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
]


def test_PK01_assertion_type(app, client, ec_client, subtests):
    for assertion_type in WRONG_ASSERTION_TYPES:
        with subtests.test(assertion_type=assertion_type):
            refused(client, app, ec_client.mint(), assertion_type=assertion_type)


# --- PK02: iss = sub = client_id ---------------------------------------------------------------

def test_PK02_iss_and_sub_must_be_the_client(app, client, clock, oauth_clients, ec_key):
    first = registered(app, clock, oauth_clients, ec_key)
    second = registered(app, clock, oauth_clients, ec_key)  # the same key, another client
    for overrides in ({"iss": second.client_id}, {"sub": second.client_id},
                      {"iss": "someone-else"}, {"iss": None}, {"sub": None},
                      {"iss": [first.client_id]}, {"sub": 12345}):
        refused(client, app, first.mint(**overrides))
    assert post_assertion(client, first.mint()).status_code == 200


# --- PK03: aud is the issuer, alone ----------------------------------------------------------

WRONG_AUDIENCES = [
    "{issuer}/oauth2/token", "{issuer}/auth/1/oauth2/token", "{issuer}/", "{issuer}/api",
    "https://other-as.example", ["{issuer}", "https://other-as.example"], ["{issuer}", "{issuer}"],
    [], "", None, "HTTPS://AUTH.EXAMPLE.TEST",
]


def test_PK03_audience(app, client, ec_client, subtests):
    """The issuer alone; the token endpoint URL MUST NOT be used (rfc7523bis)."""
    issuer = app.config["ISSUER"]
    for audience in WRONG_AUDIENCES:
        if isinstance(audience, list):
            audience = [value.format(issuer=issuer) for value in audience]
        elif audience is not None:
            audience = audience.format(issuer=issuer)
        with subtests.test(audience=audience):
            refused(client, app, ec_client.mint(aud=audience))


def test_PK03_issuer_as_sole_array_member(client, ec_client, app):
    assert post_assertion(client, ec_client.mint(aud=[app.config["ISSUER"]])).status_code == 200


# --- PK04: exp required and bounded ------------------------------------------------------------

def test_PK04_expiry(app, client, clock, ec_client):
    now = int(clock.now.timestamp())
    leeway = app.config["LEEWAY"]
    maximum = app.config["CLIENT_ASSERTION_MAX_LIFETIME"]
    for overrides in ({"exp": None}, {"exp": now - leeway - 1}, {"exp": now - 3600},
                      {"exp": now + maximum + leeway + 1}, {"exp": now + 86400},
                      {"exp": str(now + 60)}, {"exp": True}, {"exp": 2**70},
                      {"nbf": now + leeway + 60}):
        refused(client, app, ec_client.mint(**overrides))
    assert post_assertion(client, ec_client.mint(exp=now + maximum)).status_code == 200


def test_PK04_assertion_expires_on_the_clock(app, client, clock, ec_client):
    assertion = ec_client.mint(exp=int(clock.now.timestamp()) + 60)
    clock.advance(60 + app.config["LEEWAY"] + 1)
    refused(client, app, assertion)


# --- PK05: jti replay --------------------------------------------------------------------------

def test_PK05_replay_refused(app, client, ec_client):
    assertion = ec_client.mint()
    before = table_counts(app)
    assert post_assertion(client, assertion).status_code == 200
    assert table_counts(app)["seen_assertions"] == before["seen_assertions"] + 1
    refused(client, app, assertion)
    refused(client, app, ec_client.mint(jti=jwt.decode(
        assertion, options={"verify_signature": False})["jti"]))  # same jti, new assertion


def test_PK05_jti_is_per_client(app, client, clock, oauth_clients, ec_key, rsa_key):
    first = registered(app, clock, oauth_clients, ec_key)
    second = registered(app, clock, oauth_clients, rsa_key)
    assert post_assertion(client, first.mint(jti="shared")).status_code == 200
    assert post_assertion(client, second.mint(jti="shared")).status_code == 200


def test_PK05_unverified_assertion_does_not_burn_a_jti(app, client, ec_client, stranger_key):
    refused(client, app, ec_client.mint(key=stranger_key, jti="fresh"))
    assert post_assertion(client, ec_client.mint(jti="fresh")).status_code == 200


def test_PK05_jti_required_and_sane(app, client, ec_client, subtests):
    for jti in (None, "", 42, ["a"], "x" * 257, "a\x00b"):
        with subtests.test(jti=jti if not isinstance(jti, str) else jti[:20]):
            refused(client, app, ec_client.mint(jti=jti))


def test_PK05_replay_across_workers(app, client, ec_client, second_worker):
    assertion = ec_client.mint()
    assert post_assertion(client, assertion).status_code == 200
    other_client = second_worker.test_client()
    assert_oauth_error(post_assertion(other_client, assertion), 401, "invalid_client")
    fresh = ec_client.mint()
    assert post_assertion(other_client, fresh).status_code == 200
    assert_oauth_error(post_assertion(client, fresh), 401, "invalid_client")


def test_PK05_concurrent_replay_across_workers(app, ec_client, second_worker):
    """The same assertion sent to two workers at once: exactly one token (threat model RL5)."""
    assertion = ec_client.mint()
    workers = [app, second_worker] * 3
    barrier = threading.Barrier(len(workers))
    statuses: list[int] = []

    def send(worker_app):
        test_client = worker_app.test_client()
        barrier.wait(10)
        statuses.append(post_assertion(test_client, assertion).status_code)

    threads = [threading.Thread(target=send, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [200] + [401] * (len(workers) - 1)


# --- PK06: the registered key only, allowlisted algorithms -----------------------------------

def test_PK06_unregistered_key(app, client, ec_client, stranger_key):
    refused(client, app, ec_client.mint(key=stranger_key))
    refused(client, app, ec_client.mint(key=stranger_key, headers={"kid": "other"}))
    refused(client, app, ec_client.mint(headers={"kid": "unknown-kid"}))


def test_PK06_embedded_keys_are_not_trusted(app, client, ec_client, stranger_key):
    # RFC 8725 §3.10: jwk/jku/x5u headers never choose the key.
    embedded = public_jwk(stranger_key, "client-key-1")
    refused(client, app, ec_client.mint(key=stranger_key, headers={"jwk": embedded}))
    refused(client, app, ec_client.mint(key=stranger_key,
                                        headers={"jku": "http://127.0.0.1:9/jwks.json"}))


def test_PK06_alg_none_and_hmac_confusion(app, client, ec_client, ec_key):
    claims = ec_client.claims()
    public_pem = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    jwk_json = json.dumps(public_jwk(ec_key, "client-key-1")).encode()
    attempts = [
        handmade({"alg": "none", "kid": "client-key-1"}, claims),
        handmade({"alg": "None", "kid": "client-key-1"}, claims),
        handmade({"alg": "ES256", "kid": "client-key-1"}, claims, b"\x00" * 64),
        hmac_signed({"alg": "HS256", "kid": "client-key-1"}, claims, public_pem),
        hmac_signed({"alg": "HS256", "kid": "client-key-1"}, claims, jwk_json),
        hmac_signed({"alg": "HS256", "kid": "client-key-1"}, claims, b""),
        ec_client.mint(key=ec.generate_private_key(ec.SECP384R1()), alg="ES384"),  # not allowed
        ec_client.mint(headers={"crit": ["exp"]}),
    ]
    for assertion in attempts:
        refused(client, app, assertion)


def test_PK06_rsa_key_cannot_sign_for_an_ec_client(app, client, ec_client, rsa_key):
    refused(client, app, ec_client.mint(key=rsa_key))


# --- PK07: token types -----------------------------------------------------------------------

def test_PK07_access_token_is_not_an_assertion(app, client, ec_client):
    token = post_assertion(client, ec_client.mint()).get_json()["access_token"]
    refused(client, app, token)
    refused(client, app, ec_client.mint(headers={"typ": "at+jwt"}))
    refused(client, app, ec_client.mint(headers={"typ": "application/at+jwt"}))


@pytest.mark.parametrize("typ", ["JWT", "client-authentication+jwt", None])
def test_PK07_accepted_assertion_types(client, ec_client, typ):
    assert post_assertion(client, ec_client.mint(headers={"typ": typ})).status_code == 200


# --- other refusals ----------------------------------------------------------------------------

def test_disabled_private_key_jwt_client(app, client, ec_client):
    from authserver.credentials import clients as client_service

    with app.app_context():
        client_service.disable_client(ec_client.client_id, actor="test")
    refused(client, app, ec_client.mint())


def test_private_key_jwt_client_cannot_use_a_secret(app, client, ec_client):
    for secret in ("", "x", "None"):
        response = client.post(TOKEN_URL, data={"grant_type": "client_credentials"},
                               headers=basic_auth(ec_client.client_id, secret or "x"))
        assert_oauth_error(response, 401, "invalid_client")
        response = client.post(TOKEN_URL, data={"grant_type": "client_credentials",
                                                "client_id": ec_client.client_id,
                                                "client_secret": secret or "x"})
        assert_oauth_error(response, 401, "invalid_client")


def test_secret_client_cannot_use_an_assertion(app, client, clock, oauth_clients, ec_key):
    client_id, _ = oauth_clients.create(scope="message:send")
    impostor = Assertions(app, clock, client_id, ec_key, "client-key-1")
    refused(client, app, impostor.mint())


GARBAGE_ASSERTIONS = [
    "", "a", "a.b.c", "a.b", "....", "eyJhbGciOiJFUzI1NiJ9.W10.c2ln",
    "eyJhbGciOiJFUzI1NiJ9.bnVsbA.c2ln", "x" * 9000,
    handmade({"alg": "ES256"}, {"sub": "x" * 10_000}),
    handmade({"alg": "ES256"}, {"sub": "\x00"}),
    handmade({"alg": "ES256"}, {"sub": ["a"]}),
    handmade({"alg": "ES256"}, {"sub": {"a": 1}}),
]


def test_garbage_assertions(app, client, ec_client, subtests):
    for assertion in GARBAGE_ASSERTIONS:
        with subtests.test(assertion=assertion[:40]):
            refused(client, app, assertion)


def test_oversized_assertion(app, client, ec_client):
    refused(client, app, ec_client.mint(padding="x" * 9000))


# --- registration ------------------------------------------------------------------------------

def test_registration_rejects_unusable_jwks(app, oauth_clients, ec_key):
    good = public_jwk(ec_key, "k")
    private = {**good, "d": "AAAA"}
    symmetric = {"kty": "oct", "k": "c2VjcmV0", "kid": "k"}
    for jwks in (None, {}, {"keys": []}, {"keys": [private]}, {"keys": [symmetric]},
                 {"keys": [good] * 11}, {"keys": ["not a key"]}, "not json", [good],
                 {"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}):
        before = table_counts(app)
        with pytest.raises(ValidationError):
            oauth_clients.create(scope="message:send", auth_method="private_key_jwt", jwks=jwks)
        assert table_counts(app) == before
    with pytest.raises(ValidationError):
        oauth_clients.create(scope="message:send", jwks={"keys": [good]})  # secret client
