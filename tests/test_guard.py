"""The resource guard end to end: real JWTs and API keys from a live authorization server, sent
over HTTP to a tiny guarded app, once on Flask and once on FastAPI (the contract suite: every
case holds for both adapters; threat model 1.3 RS, 1.4 SC, 1.8 JW, 1.9 AK06/AK08/AK09).

The scope table (SC01–SC12) runs against both credential kinds (SC11, AK08). Scope strings the
server would never issue (not catalogue names, odd separators, empty) are carried by a JWT signed
with the server's own key and encoder, or by a real key whose stored scope was rewritten.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
from urllib.parse import urlsplit

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from guard_support import (  # noqa: F401  (fixtures)
    BAD_REQUEST,
    FORBIDDEN,
    INTROSPECT,
    SCHEMES,
    UNAUTHORIZED,
    SkewedClock,
    auth_server,
    create_guarded_app,
    credentials,
    framework,
    guard_config,
    in_process,
    running,
    start,
    soon,
    wait_for,
)
from jwt.algorithms import RSAAlgorithm

from authserver.credentials.api_keys import generate_api_key, query_api_key
from authserver.scopes import ScopeError, default_catalogue, parse_scope
from resource_demo.guard.flask import ResourceGuard

KINDS = ("jwt", "api_key")
REALM = 'realm="api"'
# No credential: one challenge per scheme (DPoP is on by default); requests joins the two
# header lines with ", " (RFC 9110 §5.3).
CHALLENGE_401 = (f'Bearer {REALM}, DPoP {REALM}, '
                 'algs="ES256 ES384 RS256 PS256 EdDSA Ed25519"')
INVALID_TOKEN = f'Bearer {REALM}, error="invalid_token"'
INVALID_REQUEST = f'Bearer {REALM}, error="invalid_request"'
#: What each endpoint of the test app accepts (the 403 challenge lists it, sorted).
ACCEPTS = {
    "/sms": "message:send sms:manage sms:message:send",  # require_scope: + umbrellas
    "/send": "message:send",
    "/email": "email:manage email:message:send message:send",
    "/any": "people:read sms:logs:read",  # an explicit any-of list: no umbrellas added
    "/keys": "account-management:manage",
}


@pytest.fixture(scope="module")
def rs(auth_server, credentials, framework):
    """The guarded app with default settings, shared by the module, on each framework."""
    app = create_guarded_app(guard_config(auth_server, credentials), framework)
    with running(app) as url:
        app.url = url
        yield app


def get(url: str, path: str = "/sms", headers: dict | None = None, **kwargs):
    return requests.get(url + path, headers=headers or {}, timeout=10, **kwargs)


def assert_unauthorized(response, challenge: str = INVALID_TOKEN) -> None:
    assert response.status_code == 401, response.text
    assert response.text == UNAUTHORIZED
    assert response.headers["WWW-Authenticate"] == challenge


def assert_forbidden(response, path: str) -> None:
    assert response.status_code == 403, response.text
    assert response.text == FORBIDDEN
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer {REALM}, error="insufficient_scope", scope="{ACCEPTS[path]}"')


def issuable(scope: str) -> bool:
    """True when the server would issue ``scope`` (non-empty, catalogue names only)."""
    try:
        names = parse_scope(scope)
    except ScopeError:
        return False
    return bool(names) and not default_catalogue().validate_names(names)


def credential_with(credentials, kind: str, scope: str) -> dict:
    """An Authorization header carrying a ``kind`` credential whose scope is exactly ``scope``."""
    if issuable(scope):
        return credentials.header(kind, scope)
    return {"Authorization": f"{SCHEMES[kind]} {credentials.raw_scope(kind, scope)}"}


# -- SC01–SC12: one table, both credential kinds ----------------------------------------------

SC_TABLE = [
    # SC01 any-of: one listed scope is enough, none is not.
    ("SC01-first", "sms:logs:read", "/any", 200),
    ("SC01-second", "people:read", "/any", 200),
    ("SC01-both", "people:read sms:logs:read", "/any", 200),
    ("SC01-neither", "sms:message:send sms:inbound-message:read", "/any", 403),
    ("SC01-explicit-list-adds-no-umbrella", "sms:manage", "/any", 403),
    # SC02 downward: an umbrella satisfies what it covers.
    ("SC02-exact", "sms:message:send", "/sms", 200),
    ("SC02-message-send-covers-sms", "message:send", "/sms", 200),
    # SC03 never upward.
    ("SC03-channel-send-not-message-send", "sms:message:send", "/send", 403),
    ("SC03-channel-manage-not-message-send", "sms:manage", "/send", 403),
    # SC04 never sideways.
    ("SC04-sms-not-email", "sms:message:send", "/email", 403),
    ("SC04-email-not-sms", "email:message:send", "/sms", 403),
    ("SC04-other-product-manage", "whatsapp:manage", "/sms", 403),
    ("SC04-sibling-scope", "sms:inbound-message:read", "/sms", 403),
    ("SC04-sibling-umbrella", "inbound-message:read", "/sms", 403),
    # SC05 exact tokens: no prefix, suffix or substring matching.
    ("SC05-prefix", "message:sen", "/send", 403),
    ("SC05-suffix-digit", "message:send2", "/send", 403),
    ("SC05-suffix-letter", "message:sendx", "/send", 403),
    ("SC05-first-segment", "message", "/send", 403),
    ("SC05-trailing-colon", "message:", "/send", 403),
    ("SC05-leading-colon", ":send", "/send", 403),
    ("SC05-extra-segment", "message:send:extra", "/send", 403),
    ("SC05-channel-prefix", "sms:message:sen", "/sms", 403),
    ("SC05-superstring", "xsms:message:send", "/sms", 403),
    # SC06 case-sensitive, no Unicode folding.
    ("SC06-title-case", "Message:Send", "/send", 403),
    ("SC06-upper-case", "SMS:MESSAGE:SEND", "/sms", 403),
    ("SC06-fullwidth", "\uff4dessage:send", "/send", 403),
    ("SC06-cyrillic-e", "m\u0435ssage:send", "/send", 403),
    # SC07 the separator is one space.
    ("SC07-comma", "message:send,sms:message:send", "/sms", 403),
    ("SC07-tab", "email:manage\tsms:message:send", "/sms", 403),
    ("SC07-newline", "email:manage\nsms:message:send", "/sms", 403),
    ("SC07-nbsp", "email:manage\u00a0sms:message:send", "/sms", 403),
    ("SC07-space-splits", "email:manage sms:message:send", "/sms", 200),
    # SC08 no scope: nothing scoped.
    ("SC08-empty-sms", "", "/sms", 403),
    ("SC08-empty-send", "", "/send", 403),
    ("SC08-empty-any", "", "/any", 403),
    # SC10 wildcards mean nothing.
    ("SC10-star", "*", "/sms", 403),
    ("SC10-message-star", "message:*", "/send", 403),
    ("SC10-channel-star", "sms:*", "/sms", 403),
    ("SC10-star-channel", "*:message:send", "/sms", 403),
    ("SC10-action-star", "sms:message:*", "/sms", 403),
    # SC12 the reviewed umbrella table: {p}:manage covers the other {p}: scopes.
    ("SC12-sms-manage", "sms:manage", "/sms", 200),
    ("SC12-email-manage", "email:manage", "/email", 200),
    ("SC12-email-send-covered-by-message-send", "message:send", "/email", 200),
]


def _security(row: tuple) -> pytest.MarkDecorator:
    """The row's own id first (the report shows its text), then SC11/AK08 (both credential
    kinds, one table); a refused row is an RS13 case too (403 with the insufficient_scope
    challenge naming the accepted scopes)."""
    refused = ("RS13",) if row[3] == 403 else ()
    return pytest.mark.security(row[0].split("-")[0], "SC11", "AK08", *refused)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("scope", "path", "status"),
                         [pytest.param(*row[1:], id=row[0], marks=_security(row))
                          for row in SC_TABLE])
def test_SC_scope_table(rs, credentials, kind, scope, path, status):
    response = get(rs.url, path, credential_with(credentials, kind, scope))
    if status == 403:
        assert_forbidden(response, path)
    else:
        assert response.status_code == 200, response.text
        assert response.json()["kind"] == kind


@pytest.mark.parametrize("kind", KINDS)
def test_SC08_unscoped_endpoint_takes_any_valid_credential(rs, credentials, kind):
    response = get(rs.url, "/me", credential_with(credentials, kind, ""))
    assert response.status_code == 200 and response.json() == {"kind": kind, "scopes": []}
    assert_unauthorized(get(rs.url, "/me"), CHALLENGE_401)
    assert_unauthorized(get(rs.url, "/me", {"Authorization": f"{SCHEMES[kind]} nope"}))


@pytest.mark.parametrize("scope", [["sms:message:send"], 7, {"sms:message:send": True}])
@pytest.mark.parametrize("introspect", [False, True])
def test_SC09_non_string_scope_refuses_the_token(start, credentials, scope, introspect):
    """Policy: a JWT whose scope is not a string is refused, locally and by introspection."""
    app = start(GUARD_INTROSPECT_JWTS=introspect)
    token = credentials.sign(credentials.claims(scope=scope))
    assert_unauthorized(get(app.url, "/sms", {"Authorization": f"Bearer {token}"}))


def test_SC12_umbrella_table_is_exactly_the_three_rules():
    catalogue = default_catalogue()
    for umbrella, covered in catalogue.umbrella_table().items():
        for name in covered:
            product, rest = name.split(":", 1)
            by_rule = (umbrella == "message:send" and rest == "message:send"
                       or umbrella == "inbound-message:read" and rest == "inbound-message:read"
                       or umbrella == f"{product}:manage")
            assert by_rule, (umbrella, name)
    assert "sms:message:send" in catalogue.umbrella_table()["message:send"]
    assert "sms:message:send" in catalogue.umbrella_table()["sms:manage"]


def test_SC12_coverage_is_transitive_and_only_downward():
    catalogue = default_catalogue()
    names = catalogue.names
    implies = {name: catalogue.accepted_by(name) for name in names}  # b -> every a implying b
    for b in names:
        assert b in implies[b]
        for a in implies[b] - {b}:
            assert a not in implies.get(a, set()) - {a}
            assert b not in implies[a], f"{a} and {b} imply each other"
            for z in implies[a]:  # z => a and a => b, so z => b
                assert z in implies[b], (z, a, b)


# -- docs/scopes.md: endpoints that refuse API keys -----------------------------------------

@pytest.mark.security("RS13")
def test_api_key_refused_by_kind_even_with_the_scope(rs, credentials):
    refused = get(rs.url, "/keys", credentials.header("api_key", "account-management:manage"))
    assert_forbidden(refused, "/keys")
    accepted = get(rs.url, "/keys", credentials.header("jwt", "account-management:manage"))
    assert accepted.status_code == 200 and accepted.json()["kind"] == "jwt"
    # The same rule through require_scope's umbrellas, and for a JWT without the scope.
    assert_forbidden(get(rs.url, "/keys", credentials.header("jwt", "sms:manage")), "/keys")


def test_api_key_refusal_comes_after_authentication(rs):
    bad_key = generate_api_key()  # well formed, unknown to the server
    assert_unauthorized(get(rs.url, "/keys", {"Authorization": f"App {bad_key}"}))
    assert_unauthorized(get(rs.url, "/keys"), CHALLENGE_401)


def test_decorators_publish_what_they_accept():
    app = create_guarded_app({"GUARD_ISSUER": "http://127.0.0.1:9", "GUARD_REVOCATION_CHECK": False})
    views = app.view_functions
    assert views["/keys"].accepts_api_keys is False and views["/sms"].accepts_api_keys is True
    assert views["/sms"].accepted_scopes == frozenset(ACCEPTS["/sms"].split())
    ResourceGuard.close(app)


# -- RS11–RS17: the Authorization header ----------------------------------------------------

def test_RS11_no_credentials_is_401_without_an_error_code(rs):
    response = get(rs.url, "/sms")
    assert_unauthorized(response, CHALLENGE_401)
    assert "error" not in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("value", ["abc.def.ghi", "not-a-token", "a" * 40])
def test_RS12_invalid_credential_is_invalid_token(rs, kind, value):
    assert_unauthorized(get(rs.url, "/sms", {"Authorization": f"{SCHEMES[kind]} {value}"}))


def test_RS12_unknown_well_formed_api_key(rs):
    assert_unauthorized(get(rs.url, "/sms", {"Authorization": f"App {generate_api_key()}"}))


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Token abc", "Bearer", "Bearer ",
                                    "App", "App  ", "Bearertoken"])
def test_RS16_unsupported_scheme_or_no_credential_is_401(rs, header):
    response = get(rs.url, "/sms", {"Authorization": header})
    assert response.status_code == 401 and response.text == UNAUTHORIZED


def raw_request(url: str, path: str, headers: list[tuple[str, str]], method: str = "GET",
                body: bytes | None = None) -> tuple[int, http.client.HTTPMessage, str]:
    """A request with repeated header lines (requests folds them into one)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.putrequest(method, path)
        for name, value in headers:
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        # response.headers: case-insensitive names (uvicorn sends them in lower case).
        return response.status, response.headers, response.read().decode()
    finally:
        connection.close()


@pytest.mark.parametrize(("first", "second"), [("jwt", "jwt"), ("jwt", "api_key"),
                                                ("api_key", "api_key")])
def test_RS14_AK09_two_authorization_headers_is_400(rs, credentials, first, second):
    headers = [("Authorization", credentials.header(first, "sms:message:send")["Authorization"]),
               ("Authorization", credentials.header(second, "sms:manage")["Authorization"])]
    status, response_headers, body = raw_request(rs.url, "/sms", headers)
    assert status == 400 and body == BAD_REQUEST
    assert response_headers["WWW-Authenticate"] == INVALID_REQUEST


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["access_token", "api_key"])
def test_RS14_AK09_header_and_query_credential_is_400(rs, credentials, kind, name):
    token = credentials.credential(kind, "sms:message:send")
    response = get(rs.url, "/sms", credentials.header(kind, "sms:message:send"),
                   params={name: token})
    assert response.status_code == 400 and response.text == BAD_REQUEST
    assert response.headers["WWW-Authenticate"] == INVALID_REQUEST


def test_RS14_header_and_form_body_token_is_400(rs, credentials):
    token = credentials.jwt("sms:message:send")
    response = requests.post(rs.url + "/sms", data={"access_token": token}, timeout=10,
                             headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400 and response.text == BAD_REQUEST


@pytest.mark.parametrize(("kind", "name"), [("jwt", "access_token"), ("api_key", "api_key"),
                                            ("api_key", "apiKey")])
def test_RS15_AK09_credential_in_the_query_alone_is_not_used(rs, credentials, auth_server,
                                                             kind, name):
    before = auth_server.requests[INTROSPECT]
    response = get(rs.url, "/sms", params={name: credentials.credential(kind, "sms:manage")})
    assert_unauthorized(response, CHALLENGE_401)
    assert auth_server.requests[INTROSPECT] == before


def test_RS15_form_body_token_alone_is_not_used(rs, credentials):
    response = requests.post(rs.url + "/sms", timeout=10,
                             data={"access_token": credentials.jwt("sms:manage")})
    assert_unauthorized(response, CHALLENGE_401)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", [str.lower, str.upper, str.title])
def test_RS16_scheme_is_case_insensitive(rs, credentials, kind, case):
    credential = credentials.credential(kind, "sms:message:send")
    response = get(rs.url, "/sms", {"Authorization": f"{case(SCHEMES[kind])} {credential}"})
    assert response.status_code == 200 and response.json()["kind"] == kind


def test_RS16_credentials_are_not_interchangeable_between_schemes(rs, credentials):
    token, key = credentials.jwt("sms:manage"), credentials.api_key("sms:manage")
    assert_unauthorized(get(rs.url, "/sms", {"Authorization": f"App {token}"}))
    assert_unauthorized(get(rs.url, "/sms", {"Authorization": f"Bearer {key}"}))


OTHER_RS = "https://other.example"


def test_RS17_token_for_another_audience_is_401(rs, credentials):
    other = credentials.jwt("sms:manage", resource=OTHER_RS, audiences=[OTHER_RS])
    assert jwt.decode(other, options={"verify_signature": False})["aud"] == OTHER_RS
    assert_unauthorized(get(rs.url, "/sms", {"Authorization": f"Bearer {other}"}))
    # The same client's token without `resource` carries the default audience: accepted by a
    # guard started with just the issuer and its introspection client.
    default = credentials.jwt("sms:manage", audiences=[OTHER_RS])
    assert get(rs.url, "/sms", {"Authorization": f"Bearer {default}"}).status_code == 200


def test_RS17_guard_for_the_other_audience_accepts_only_its_tokens(start, credentials):
    app = start(GUARD_AUDIENCES=[OTHER_RS])
    other = credentials.jwt("sms:manage", resource=OTHER_RS, audiences=[OTHER_RS])
    assert get(app.url, "/sms", {"Authorization": f"Bearer {other}"}).status_code == 200
    assert_unauthorized(get(app.url, "/sms", credentials.header("jwt", "sms:manage")))


# -- JWT battery over HTTP (threat model item 1, RS01, RS04, RS08, item 18) ----------------

def b64url(data: bytes | dict) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def active_kid(credentials) -> str:
    return jwt.get_unverified_header(credentials.jwt("sms:manage"))["kid"]


def published_pem(auth_server, kid: str) -> bytes:
    jwks = requests.get(auth_server.url + "/.well-known/jwks.json", timeout=10).json()
    [jwk] = [key for key in jwks["keys"] if key["kid"] == kid]
    return jwt.PyJWK(jwk).key.public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)


def forged_tokens(auth_server, credentials) -> dict[str, str]:
    kid = active_kid(credentials)
    claims = credentials.claims(scope="sms:manage")
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    attacker_jwk = json.loads(RSAAlgorithm.to_jwk(attacker.public_key()))
    pem = published_pem(auth_server, kid)
    hs_input = f"{b64url({'alg': 'HS256', 'typ': 'at+jwt', 'kid': kid})}.{b64url(claims)}"
    real = credentials.jwt("sms:logs:read")
    header, _, signature = real.split(".")
    tampered = json.loads(base64.urlsafe_b64decode(real.split(".")[1] + "=="))
    tampered["scope"] = "sms:manage"
    return {
        "alg-none": f"{b64url({'alg': 'none', 'typ': 'at+jwt', 'kid': kid})}.{b64url(claims)}.",
        "alg-none-signed": f"{b64url({'alg': 'none', 'typ': 'at+jwt', 'kid': kid})}"
                           f".{b64url(claims)}.{signature}",
        "hmac-with-public-key": hs_input + "." + b64url(
            hmac.new(pem, hs_input.encode(), hashlib.sha256).digest()),
        "tampered-payload": f"{header}.{b64url(tampered)}.{signature}",
        "embedded-jwk-real-kid": jwt.encode(claims, attacker, algorithm="RS256", headers={
            "typ": "at+jwt", "kid": kid, "jwk": attacker_jwk}),
        "embedded-jwk-own-kid": jwt.encode(claims, attacker, algorithm="RS256", headers={
            "typ": "at+jwt", "kid": "attacker", "jwk": {**attacker_jwk, "kid": "attacker"}}),
        "jku-header": jwt.encode(claims, attacker, algorithm="RS256", headers={
            "typ": "at+jwt", "kid": "attacker", "jku": "http://127.0.0.1:9/jwks.json"}),
        "missing-typ": credentials.sign(claims, {"typ": None}),
        "typ-jwt": credentials.sign(claims, {"typ": "JWT"}),
        "crit": credentials.sign(claims, {"crit": ["exp"]}),
        "wrong-issuer": credentials.sign({**claims, "iss": auth_server.url + "/"}),
        "expired": credentials.sign({**claims, "exp": claims["iat"] - 120}),
        "no-client-id": credentials.sign({k: v for k, v in claims.items() if k != "client_id"}),
    }


BATTERY = ["alg-none", "alg-none-signed", "hmac-with-public-key", "tampered-payload",
           "embedded-jwk-real-kid", "embedded-jwk-own-kid", "jku-header", "missing-typ",
           "typ-jwt", "crit", "wrong-issuer", "expired", "no-client-id"]


@pytest.fixture(scope="module")
def forged(auth_server, credentials):
    """The forged and broken tokens of the battery, made once per module."""
    return forged_tokens(auth_server, credentials)


@pytest.mark.parametrize("name", BATTERY)
def test_JWT_battery_refused_over_http(rs, forged, name):
    assert_unauthorized(get(rs.url, "/sms", {"Authorization": f"Bearer {forged[name]}"}))


def test_JWT_battery_control_a_server_signed_token_passes(rs, credentials):
    token = credentials.sign(credentials.claims(scope="sms:manage"))
    assert get(rs.url, "/sms", {"Authorization": f"Bearer {token}"}).status_code == 200


def oversized(size: int) -> str:
    return b64url({"alg": "RS256", "typ": "at+jwt", "kid": "k"}) + "." + "A" * size + ".sig"


def test_item18_oversized_tokens_are_401_never_500(rs):
    # 60 KB fits in one HTTP header line of the test server: the guard refuses it.
    assert_unauthorized(get(rs.url, "/sms", {"Authorization": f"Bearer {oversized(60_000)}"}))
    # 100 KB: refused by the guard itself (test client, no HTTP header limit) ...
    with in_process(rs) as client:
        response = client.get("/sms", headers={"Authorization": f"Bearer {oversized(100_000)}"})
        assert response.status_code == 401 and response.text == UNAUTHORIZED
        response = client.get("/sms", headers={"Authorization": f"App {'a' * 100_000}"})
        assert response.status_code == 401
    # ... and over HTTP the server's header-line limit answers first: 4xx, never 5xx.
    response = get(rs.url, "/sms", {"Authorization": f"Bearer {oversized(100_000)}"})
    assert 400 <= response.status_code < 500


# -- AK06 addresses, AK09 placement, malformed keys -----------------------------------------

@pytest.mark.parametrize(("allowed", "status"), [
    (["127.0.0.1"], 200), (["127.0.0.0/8"], 200), (["::ffff:127.0.0.1"], 200),
    (["10.0.0.1"], 401), (["203.0.113.0/24", "::1"], 401),
])
def test_AK06_allowlist_uses_the_peer_address(rs, credentials, allowed, status):
    header = credentials.header("api_key", "sms:manage", allowed_ips=allowed)
    response = get(rs.url, "/sms", header)
    assert response.status_code == status, response.text
    if status == 401:
        assert_unauthorized(response)


SPOOF_HEADERS = ["X-Forwarded-For", "Forwarded", "X-Real-IP", "True-Client-IP", "Client-IP"]


@pytest.mark.parametrize("name", SPOOF_HEADERS)
def test_AK06_forwarding_headers_ignored_without_trusted_proxies(rs, credentials, name):
    header = credentials.header("api_key", "sms:manage", allowed_ips=["203.0.113.7"])
    value = "for=203.0.113.7" if name == "Forwarded" else "203.0.113.7"
    assert_unauthorized(get(rs.url, "/sms", {**header, name: value}))


def test_AK06_forwarded_for_honoured_from_a_trusted_proxy(start, credentials):
    app = start(GUARD_TRUSTED_PROXIES=["127.0.0.1"])
    remote = credentials.header("api_key", "sms:manage", allowed_ips=["203.0.113.7"])
    assert get(app.url, "/sms", {**remote, "X-Forwarded-For": "203.0.113.7"}).status_code == 200
    # Only the hop the trusted proxy appended counts: what the client wrote further left does not.
    spoofed = {**remote, "X-Forwarded-For": "203.0.113.7, 198.51.100.9"}
    assert_unauthorized(get(app.url, "/sms", spoofed))
    # Behind the proxy, the caller is the forwarded address, not the proxy's.
    local = credentials.header("api_key", "sms:manage", allowed_ips=["127.0.0.1"])
    assert_unauthorized(get(app.url, "/sms", {**local, "X-Forwarded-For": "203.0.113.7"}))
    assert get(app.url, "/sms", local).status_code == 200
    # Other forwarding headers stay ignored even from the proxy.
    assert_unauthorized(get(app.url, "/sms", {**remote, "X-Real-IP": "203.0.113.7"}))


def checksum_broken(key: str) -> str:
    last = key[-1]
    return key[:-1] + ("A" if last != "A" else "B")


@pytest.mark.parametrize("make", [
    checksum_broken, lambda key: key[:-1], lambda key: key + "0", lambda key: key.upper(),
    lambda key: "asak_" + "0" * 38, lambda key: key.replace("asak_", "ASAK_"),
    lambda key: key[5:], lambda key: "x" * 200,
], ids=["checksum", "truncated", "extended", "upper-cased", "zeros", "prefix-case",
        "no-prefix", "junk"])
def test_AK_malformed_key_refused_without_asking_the_server(rs, credentials, auth_server, make):
    key = credentials.api_key("sms:manage")
    before = auth_server.requests[INTROSPECT]
    assert_unauthorized(get(rs.url, "/sms", {"Authorization": f"App {make(key)}"}))
    assert auth_server.requests[INTROSPECT] == before


# -- AK04/AK05 validity and revocation, RV04 revoked JWTs -----------------------------------

def test_AK04_expired_and_not_yet_valid_keys_are_401(rs, credentials):
    expired = credentials.api_key("sms:manage", valid_from=soon(-25), valid_to=soon(-5))
    assert_unauthorized(get(rs.url, "/sms", {"Authorization": f"App {expired}"}))
    future = credentials.api_key("sms:manage", valid_from=soon(3600))
    assert_unauthorized(get(rs.url, "/sms", {"Authorization": f"App {future}"}))


def test_AK04_cached_answer_rechecked_against_the_guard_clock(start, credentials):
    """A key that expires while its introspection answer is cached is refused once its
    validTo (plus the 30 s leeway) is behind the guard's clock."""
    clock = SkewedClock()
    app = start(GUARD_CLOCK=clock)
    header = credentials.header("api_key", "sms:manage", fresh=True, valid_to=soon(60))
    assert get(app.url, "/sms", header).status_code == 200
    clock.offset = 60 + 30 + 2
    assert_unauthorized(get(app.url, "/sms", header))


def test_AK05_disabled_key_refused_within_the_cache_ttl(start, credentials):
    app = start(GUARD_API_KEY_CACHE_SECONDS=1)
    key = credentials.api_key("sms:manage", fresh=True)
    header = {"Authorization": f"App {key}"}
    assert get(app.url, "/sms", header).status_code == 200
    credentials.disable_key(key)
    took = wait_for(lambda: get(app.url, "/sms", header).status_code == 401, timeout=5)
    assert took <= 1 + 0.5
    assert_unauthorized(get(app.url, "/sms", header))


def test_AK05_cache_ttl_is_capped_at_four_seconds(start):
    """Four here plus at most one in the server's credential cache: 5 s end to end."""
    app = start(GUARD_API_KEY_CACHE_SECONDS=60)
    assert app.guard_state.api_keys.ttl == 4.0


def test_RV04_revoked_jwt_refused_within_five_seconds(start, credentials):
    app = start()  # GUARD_REVOCATION_POLL_SECONDS: default 2
    token = credentials.jwt("sms:manage", fresh=True)
    header = {"Authorization": f"Bearer {token}"}
    assert get(app.url, "/sms", header).status_code == 200
    credentials.revoke(token)
    took = wait_for(lambda: get(app.url, "/sms", header).status_code == 401, timeout=5)
    assert took < 5
    assert_unauthorized(get(app.url, "/sms", header))


def test_RV04_introspecting_guard_refuses_a_revoked_jwt_at_once(start, credentials):
    app = start(GUARD_INTROSPECT_JWTS=True, GUARD_REVOCATION_POLL_SECONDS=3600)
    token = credentials.jwt("sms:manage", fresh=True)
    header = {"Authorization": f"Bearer {token}"}
    assert get(app.url, "/sms", header).status_code == 200
    credentials.revoke(token)
    assert_unauthorized(get(app.url, "/sms", header))


def test_RV04_revocation_of_one_token_leaves_the_clients_others(start, credentials):
    app = start()
    client_id, secret = credentials.client("sms:manage", fresh=True)
    first, second = (credentials.token_response(client_id, secret).json()["access_token"]
                     for _ in range(2))
    credentials.revoke(first)
    wait_for(lambda: get(app.url, "/sms", {"Authorization": f"Bearer {first}"}).status_code
             == 401, timeout=5)
    assert get(app.url, "/sms", {"Authorization": f"Bearer {second}"}).status_code == 200


def test_principal_carries_the_credential_identity(rs, credentials, auth_server):
    token = credentials.jwt("sms:manage")
    body = get(rs.url, "/sms", {"Authorization": f"Bearer {token}"}).json()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert body == {"kind": "jwt", "client_id": claims["client_id"], "scopes": ["sms:manage"]}
    key = credentials.api_key("sms:manage")
    with auth_server.app.app_context():
        key_id = query_api_key(key).id
    body = get(rs.url, "/sms", {"Authorization": f"App {key}"}).json()
    assert body == {"kind": "api_key", "client_id": key_id, "scopes": ["sms:manage"]}
