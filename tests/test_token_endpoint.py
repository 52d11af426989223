"""The token endpoint through HTTP: threat model TE01-TE21 (TE11 and TE22 belong to later issues).

Every test here runs on SQLite and on PostgreSQL (the ``app`` fixture).
"""

from __future__ import annotations

import base64
import io
from urllib.parse import quote, quote_plus, unquote, urlencode

import jwt
import pytest
from conftest import basic_auth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oauth_support import (
    ASSERTION_TYPE,
    FORM,
    REGISTERED_ERRORS,
    TOKEN_CLAIMS,
    assert_oauth_error,
    table_counts,
    verify_token,
)

from authserver.credentials.hashing import hash_secret
from authserver.storage.db import db
from authserver.storage.models import Client

TOKEN_URL = "/oauth2/token"
GRANT = {"grant_type": "client_credentials"}
OTHER_AUDIENCE = "https://other-api.example.test"


def post_form(client, body: str | bytes, headers: dict | None = None, url: str = TOKEN_URL,
              **kwargs):
    """POST a raw form body (for bodies ``data=dict`` cannot express, like repeats)."""
    return client.post(url, data=body, content_type=FORM, headers=headers or {}, **kwargs)


@pytest.fixture
def basic_client(oauth_clients):
    """A client_secret_basic client allowed ``message:send`` (an umbrella)."""
    return oauth_clients.create(scope="message:send")


@pytest.fixture
def post_client(oauth_clients):
    """A client_secret_post client allowed ``sms:message:send``."""
    return oauth_clients.create(scope="sms:message:send", auth_method="client_secret_post")


def set_secret(app, client_id: str, secret: str) -> None:
    """Give a client a chosen secret (generated ones are urlsafe; TE10 needs other characters)."""
    with app.app_context():
        record = db.session.scalar(db.select(Client).where(Client.client_id == client_id))
        record.secret_hash = hash_secret(secret)
        db.session.commit()


def disable(app, client_id: str) -> None:
    from authserver.credentials import clients as client_service

    with app.app_context():
        client_service.disable_client(client_id, actor="test")


def rotate(app, client_id: str, grace_seconds: int = 0) -> str:
    from authserver.credentials import clients as client_service

    with app.app_context():
        return client_service.rotate_secret(client_id, actor="test",
                                            grace_seconds=grace_seconds)[1]


def claims_of(response) -> dict:
    return jwt.decode(response.get_json()["access_token"], options={"verify_signature": False})


# --- TE01 / TE02: POST with a form body only ----------------------------------------------

@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_TE01_only_post(client, basic_client, method):
    client_id, secret = basic_client
    response = getattr(client, method)(TOKEN_URL, query_string=GRANT if method == "get" else None,
                                       data=None if method == "get" else GRANT,
                                       headers=basic_auth(client_id, secret))
    body = assert_oauth_error(response, 405)
    assert "POST" in response.headers["Allow"]
    assert body["error"] == "invalid_request"


@pytest.mark.parametrize("kind", ["json", "multipart", "no-content-type", "text-plain"])
def test_TE02_form_body_only(client, basic_client, kind):
    client_id, secret = basic_client
    headers = basic_auth(client_id, secret)
    if kind == "json":
        response = client.post(TOKEN_URL, json=GRANT, headers=headers)
    elif kind == "multipart":
        response = client.post(TOKEN_URL, data=GRANT, headers=headers,
                               content_type="multipart/form-data")
    elif kind == "no-content-type":
        response = client.post(TOKEN_URL, data=b"grant_type=client_credentials", headers=headers)
        assert "Content-Type" not in response.request.headers
    else:
        response = client.post(TOKEN_URL, data=b"grant_type=client_credentials", headers=headers,
                               content_type="text/plain")
    assert_oauth_error(response, 400, "invalid_request")


def test_TE02_form_with_charset_parameter_is_accepted(client, basic_client):
    client_id, secret = basic_client
    response = client.post(TOKEN_URL, data=b"grant_type=client_credentials",
                           content_type=FORM + "; charset=UTF-8",
                           headers=basic_auth(client_id, secret))
    assert response.status_code == 200, response.get_json()


# --- TE03: no repeated parameters ------------------------------------------------------------

@pytest.mark.parametrize("repeated", [
    "grant_type=client_credentials&grant_type=client_credentials",
    "grant_type=client_credentials&scope=sms:message:send&scope=sms:message:send",
    "grant_type=client_credentials&scope=sms:message:send&scope=",
    "grant_type=client_credentials&resource=https://a.example&resource=https://b.example",
    "grant_type=client_credentials&client_id={id}&client_id={id}",
])
def test_TE03_duplicate_params(app, client, basic_client, repeated):
    client_id, secret = basic_client
    before = table_counts(app)
    response = post_form(client, repeated.format(id=client_id), basic_auth(client_id, secret))
    assert_oauth_error(response, 400, "invalid_request")
    assert table_counts(app) == before


@pytest.mark.parametrize("repeated", ["client_id", "client_secret"])
def test_TE03_duplicate_credentials_in_body(client, post_client, repeated):
    client_id, secret = post_client
    pairs = [("grant_type", "client_credentials"), ("client_id", client_id),
             ("client_secret", secret)]
    pairs.append((repeated, dict(pairs)[repeated]))
    response = post_form(client, urlencode(pairs))
    assert_oauth_error(response, 400, "invalid_request")


# --- TE04: an empty parameter is an omitted one -----------------------------------------------

def test_TE04_empty_scope_is_no_scope(client, oauth_clients, get_token):
    client_id, secret = oauth_clients.create(scope="sms:message:send sms:logs:read")
    without = get_token(client_id, secret)
    empty = get_token(client_id, secret, scope="")
    assert without.status_code == empty.status_code == 200
    assert without.get_json()["scope"] == empty.get_json()["scope"] == \
        "sms:message:send sms:logs:read"
    assert claims_of(without)["scope"] == claims_of(empty)["scope"]


def test_TE04_empty_resource_is_no_resource(app, client, basic_client, get_token):
    client_id, secret = basic_client
    response = get_token(client_id, secret, resource="")
    assert response.status_code == 200
    assert claims_of(response)["aud"] == app.config["DEFAULT_AUDIENCE"]


# --- TE05: nothing from the query string ------------------------------------------------------

@pytest.mark.parametrize("location", ["secret-in-query", "grant-in-query", "scope-in-query"])
def test_TE05_query_string_refused(app, client, post_client, basic_client, location):
    if location == "secret-in-query":
        client_id, secret = post_client
        url = f"{TOKEN_URL}?client_secret={secret}"
        body, headers = urlencode({**GRANT, "client_id": client_id}), {}
    elif location == "grant-in-query":
        client_id, secret = basic_client
        url, body, headers = f"{TOKEN_URL}?grant_type=client_credentials", "", \
            basic_auth(client_id, secret)
    else:
        client_id, secret = basic_client
        url, body, headers = f"{TOKEN_URL}?scope=sms:message:send", urlencode(GRANT), \
            basic_auth(client_id, secret)
    before = table_counts(app)
    assert_oauth_error(post_form(client, body, headers, url=url), 400, "invalid_request")
    assert table_counts(app) == before


# --- TE06: one client authentication method per request ----------------------------------------

def test_TE06_basic_and_body_secret(client, oauth_clients):
    # Even when both are right, two methods in one request are refused (RFC 6749 §2.3).
    client_id, secret = oauth_clients.create(scope="message:send")
    response = post_form(client, urlencode({**GRANT, "client_id": client_id,
                                            "client_secret": secret}),
                         basic_auth(client_id, secret))
    assert_oauth_error(response, 400, "invalid_request")


@pytest.mark.parametrize("combination", ["basic+assertion", "secret+assertion"])
def test_TE06_assertion_and_secret(client, post_client, combination):
    client_id, secret = post_client
    form = {**GRANT, "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"}
    headers = {}
    if combination == "basic+assertion":
        headers = basic_auth(client_id, secret)
    else:
        form.update(client_id=client_id, client_secret=secret)
    assert_oauth_error(post_form(client, urlencode(form), headers), 400, "invalid_request")


def test_TE06_basic_with_client_id_in_body_is_one_method(client, basic_client):
    # client_id alone in the body is not a second authentication method.
    client_id, secret = basic_client
    response = post_form(client, urlencode({**GRANT, "client_id": client_id}),
                         basic_auth(client_id, secret))
    assert response.status_code == 200


# --- TE07 / TE08 / TE09: client authentication failures ----------------------------------------

@pytest.mark.parametrize("form", [
    {},
    {"client_id": "{id}"},
    {"client_id": "{id}", "client_secret": ""},
])
def test_TE07_no_credentials(app, client, post_client, form):
    client_id, _ = post_client
    before = table_counts(app)
    body = urlencode({**GRANT, **{k: v.format(id=client_id) for k, v in form.items()}})
    assert_oauth_error(post_form(client, body), 401, "invalid_client")
    assert table_counts(app) == before


@pytest.mark.parametrize("credentials", ["wrong-secret", "unknown-client", "id-only", "empty"])
def test_TE08_failed_basic_is_401_with_challenge(client, basic_client, credentials):
    client_id, secret = basic_client
    raw = {"wrong-secret": f"{client_id}:x{secret}", "unknown-client": f"nobody:{secret}",
           "id-only": f"{client_id}:", "empty": ":"}[credentials]
    response = post_form(client, urlencode(GRANT),
                         {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()})
    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_TE09_unknown_client_and_wrong_secret_are_indistinguishable(app, client, oauth_clients):
    """Unknown client, wrong secret, disabled client, wrong method: one status, one body."""
    basic_id, basic_secret = oauth_clients.create(scope="message:send")
    post_id, post_secret = oauth_clients.create(scope="message:send",
                                                auth_method="client_secret_post")
    disabled_id, disabled_secret = oauth_clients.create(scope="message:send")
    disable(app, disabled_id)
    attempts = {
        "basic unknown client": post_form(client, urlencode(GRANT),
                                          basic_auth("0" * 32, basic_secret)),
        "basic wrong secret": post_form(client, urlencode(GRANT),
                                        basic_auth(basic_id, post_secret)),
        "basic disabled client": post_form(client, urlencode(GRANT),
                                           basic_auth(disabled_id, disabled_secret)),
        "basic for a post client": post_form(client, urlencode(GRANT),
                                             basic_auth(post_id, post_secret)),
        "post unknown client": post_form(client, urlencode(
            {**GRANT, "client_id": "0" * 32, "client_secret": post_secret})),
        "post wrong secret": post_form(client, urlencode(
            {**GRANT, "client_id": post_id, "client_secret": basic_secret})),
        "post for a basic client": post_form(client, urlencode(
            {**GRANT, "client_id": basic_id, "client_secret": basic_secret})),
    }
    answers = {(r.status_code, r.get_data(), r.headers.get("WWW-Authenticate"))
               for r in attempts.values()}
    assert len(answers) == 1, answers
    assert_oauth_error(attempts["post wrong secret"], 401, "invalid_client")


# --- TE10: Basic credentials are form-urlencoded before base64 ---------------------------------

def _encoded_basic(client_id: str, secret: str, quote_function=quote_plus) -> dict:
    raw = f"{quote_function(client_id, safe='')}:{quote_function(secret, safe='')}"
    return {"Authorization": "Basic " + base64.b64encode(raw.encode("ascii")).decode()}


def _percent_encode_everything(text: str) -> str:
    return "".join(f"%{byte:02X}" for byte in text.encode("utf-8"))


def test_TE10_percent_encoded_generated_credentials_decode(client, basic_client):
    client_id, secret = basic_client
    raw = f"{_percent_encode_everything(client_id)}:{_percent_encode_everything(secret)}"
    headers = {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}
    response = post_form(client, urlencode(GRANT), headers)
    assert response.status_code == 200, response.get_json()
    assert claims_of(response)["sub"] == client_id


def test_TE10_unencoded_generated_credentials_work(client, basic_client):
    # Our secrets are urlsafe base64 and ids hex: encoding leaves them unchanged, so clients
    # that skip the encoding (requests' HTTPBasicAuth, curl -u) work too.
    client_id, secret = basic_client
    raw = f"{client_id}:{secret}".encode()
    response = post_form(client, urlencode(GRANT),
                         {"Authorization": "Basic " + base64.b64encode(raw).decode()})
    assert response.status_code == 200


@pytest.mark.parametrize("secret", ["pa:ss", "100%pure", "a%41b", "a+b", "pässwörd",
                                    "a:b%c+d/é"])
def test_TE10_special_characters_encoded_per_spec(app, client, basic_client, secret):
    client_id, _ = basic_client
    set_secret(app, client_id, secret)
    response = post_form(client, urlencode(GRANT), _encoded_basic(client_id, secret))
    assert response.status_code == 200, response.get_json()
    # Sent unencoded, a secret whose percent-escapes decode is a different secret.
    if unquote(secret) != secret:
        raw = f"{client_id}:{secret}".encode()
        wrong = post_form(client, urlencode(GRANT),
                          {"Authorization": "Basic " + base64.b64encode(raw).decode()})
        assert_oauth_error(wrong, 401, "invalid_client")


def test_TE10_colon_in_unencoded_secret_belongs_to_the_secret(app, client, basic_client):
    client_id, _ = basic_client
    set_secret(app, client_id, "pa:ss")
    raw = f"{client_id}:pa:ss".encode()
    response = post_form(client, urlencode(GRANT),
                         {"Authorization": "Basic " + base64.b64encode(raw).decode()})
    assert response.status_code == 200


def test_TE10_plus_is_a_space(app, client, basic_client):
    client_id, _ = basic_client
    set_secret(app, client_id, "two words")
    response = post_form(client, urlencode(GRANT), _encoded_basic(client_id, "two words"))
    assert response.status_code == 200


# --- TE12 / TE13: grant types ----------------------------------------------------------------

UNSUPPORTED_GRANT_TYPES = [
    "password", "authorization_code", "refresh_token", "implicit",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "urn:ietf:params:oauth:grant-type:token-exchange",
    "Client_Credentials", "CLIENT_CREDENTIALS", "client_credentials ", " client_credentials",
    "client-credentials", "client_credentials\x00",
]


def test_TE12_TE13_unsupported_grant_types(app, client, basic_client, subtests):
    client_id, secret = basic_client
    before = table_counts(app)
    for grant_type in UNSUPPORTED_GRANT_TYPES:
        with subtests.test(grant_type=grant_type):
            response = post_form(client, urlencode({"grant_type": grant_type,
                                                    "username": "u", "password": "p"}),
                                 basic_auth(client_id, secret))
            assert_oauth_error(response, 400, "unsupported_grant_type")
    assert table_counts(app) == before


@pytest.mark.parametrize("body", ["", "scope=message:send", "grant_type="])
def test_TE12_missing_grant_type(client, basic_client, body):
    client_id, secret = basic_client
    assert_oauth_error(post_form(client, body, basic_auth(client_id, secret)), 400,
                       "unsupported_grant_type")


# --- TE14 / TE15 / TE16: scope rules ---------------------------------------------------------

@pytest.mark.parametrize(("allowed", "requested", "granted"), [
    ("message:send", None, "message:send"),
    ("message:send", "", "message:send"),
    ("message:send", "sms:message:send", "sms:message:send"),
    ("message:send", "sms:message:send whatsapp:message:send",
     "sms:message:send whatsapp:message:send"),
    ("message:send", "message:send sms:message:send", "message:send sms:message:send"),
    ("sms:manage", "sms:logs:read", "sms:logs:read"),
    ("sms:manage", "sms:message:send sms:inbound-message:read",
     "sms:message:send sms:inbound-message:read"),
    ("inbound-message:read", "email:message:send", None),
    ("inbound-message:read", "whatsapp:inbound-message:read", "whatsapp:inbound-message:read"),
    ("sms:message:send sms:logs:read", None, "sms:message:send sms:logs:read"),
    ("sms:message:send sms:logs:read", "sms:logs:read", "sms:logs:read"),
    ("sms:message:send", "sms:message:send sms:message:send", "sms:message:send"),
])
def test_TE14_TE15_scope_granting(client, oauth_clients, get_token, allowed, requested,
                                  granted):
    """No scope -> every allowed scope; a narrower scope through an umbrella is granted."""
    client_id, secret = oauth_clients.create(scope=allowed)
    form = {} if requested is None else {"scope": requested}
    response = get_token(client_id, secret, **form)
    if granted is None:
        assert_oauth_error(response, 400, "invalid_scope")
        return
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["scope"] == granted
    assert claims_of(response)["scope"] == granted


NOT_ALLOWED = {
    "sms:message:send": [
        "message:send",                       # upward
        "sms:manage",                         # upward, same product
        "email:message:send",                 # sideways
        "sms:logs:read",                      # sideways, same product
        "sms:message:send message:send",      # one bad scope spoils the request
        "*", "sms:*", "sms:message", "sms:message:send:extra",
    ],
    "sms:logs:read": ["sms:message:send"],
    "message:send": [
        "sms:logs:read",                      # the umbrella covers only sends
        "inbound-message:read", "sms:inbound-message:read",
        "mobile-app-messaging:send",          # not a {ch}:message:send name
        "acme:message:send",                  # unknown, though it fits the pattern
        "nosuch:scope",
        "Message:Send", "SMS:message:send",   # TE13: case-sensitive
        "sms:message:send email:logs:read",
    ],
    "sms:manage": ["email:message:send", "message:send"],
}


@pytest.mark.parametrize("allowed", sorted(NOT_ALLOWED))
def test_TE14_scope_not_allowed(app, client, oauth_clients, get_token, subtests, allowed):
    """Upward, sideways, unknown or case-variant scopes: invalid_scope, nothing dropped."""
    client_id, secret = oauth_clients.create(scope=allowed)
    before = table_counts(app)
    for requested in NOT_ALLOWED[allowed]:
        with subtests.test(requested=requested):
            assert_oauth_error(get_token(client_id, secret, scope=requested), 400,
                               "invalid_scope")
    assert table_counts(app) == before


MALFORMED_SCOPES = [
    "sms:message:send\temail:message:send", "sms:message:send\nemail:message:send",
    "sms:message:send  email:message:send", " sms:message:send", "sms:message:send ",
    "sms:message:send,email:message:send", "\"sms:message:send\"", "sms:message:send\\",
    "'sms:message:send'", "sms:message:send\u00a0email:message:send", "ｓms:message:send",
    "sms:mеssage:send",  # Cyrillic е
    "sms:message:send\x00", "sms:message:send\x7f", "SMS:MESSAGE:SEND", " ", "  ",
    "sms:message:send\r\nemail:message:send", "x" * 300, " ".join(["sms:message:send"] * 201),
]


def test_TE16_malformed_scope(client, basic_client, get_token, subtests):
    client_id, secret = basic_client
    for requested in MALFORMED_SCOPES:
        with subtests.test(requested=requested[:60]):
            assert_oauth_error(get_token(client_id, secret, scope=requested), 400,
                               "invalid_scope")


def test_TE16_malformed_scope_as_raw_bytes(client, basic_client):
    client_id, secret = basic_client
    for body in (b"grant_type=client_credentials&scope=sms%3Amessage%3Asend%FF",
                 b"grant_type=client_credentials&scope=sms%3Amessage%3Asend%C3%28",
                 b"grant_type=client_credentials&scope=sms:message:send+email:message:send+"):
        response = post_form(client, body, basic_auth(client_id, secret))
        assert_oauth_error(response, 400, "invalid_scope")


# --- TE17 / TE18: response shapes ------------------------------------------------------------

def test_TE17_success_response(app, client, basic_client, get_token):
    client_id, secret = basic_client
    response = get_token(client_id, secret, scope="sms:message:send")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    body = response.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600 and isinstance(body["expires_in"], int)
    assert "refresh_token" not in body
    claims = verify_token(client, app, body["access_token"])
    assert claims["scope"] == body["scope"] == "sms:message:send"


ERROR_REQUESTS = {
    "get": lambda c, auth: c.get(TOKEN_URL, headers=auth),
    "json": lambda c, auth: c.post(TOKEN_URL, json=GRANT, headers=auth),
    "repeat": lambda c, auth: post_form(c, "grant_type=a&grant_type=b", auth),
    "query": lambda c, auth: post_form(c, "grant_type=client_credentials", auth,
                                       url=TOKEN_URL + "?x=1"),
    "no auth": lambda c, auth: post_form(c, "grant_type=client_credentials"),
    "bad auth": lambda c, auth: post_form(c, "grant_type=client_credentials",
                                          {"Authorization": "Basic Zm9vOmJhcg=="}),
    "grant": lambda c, auth: post_form(c, "grant_type=password", auth),
    "scope": lambda c, auth: post_form(c, "grant_type=client_credentials&scope=%22%5C", auth),
    "resource": lambda c, auth: post_form(c, "grant_type=client_credentials&resource=x", auth),
    "huge": lambda c, auth: post_form(c, "a=" + "b" * 70_000, auth),
}


def test_TE18_error_responses(client, basic_client, subtests):
    """JSON, a registered code, a description in the allowed charset, nothing internal."""
    client_id, secret = basic_client
    for case, send in ERROR_REQUESTS.items():
        with subtests.test(case=case):
            response = send(client, basic_auth(client_id, secret))
            assert 400 <= response.status_code < 500
            assert_oauth_error(response, response.status_code)
            assert response.headers["Cache-Control"] == "no-store"


# --- TE19: disabled clients and rotated secrets ----------------------------------------------

def test_TE19_disabled_client(app, client, basic_client, get_token):
    client_id, secret = basic_client
    assert get_token(client_id, secret).status_code == 200
    disable(app, client_id)
    before = table_counts(app)
    assert_oauth_error(get_token(client_id, secret), 401, "invalid_client")
    assert table_counts(app) == before


def test_TE19_rotated_secret_without_grace(app, client, basic_client, get_token):
    client_id, old = basic_client
    new = rotate(app, client_id)
    assert new != old
    assert_oauth_error(get_token(client_id, old), 401, "invalid_client")
    assert get_token(client_id, new).status_code == 200


def test_TE19_rotated_secret_with_grace(app, client, clock, basic_client, get_token):
    client_id, old = basic_client
    new = rotate(app, client_id, grace_seconds=600)
    assert get_token(client_id, old).status_code == 200
    assert get_token(client_id, new).status_code == 200
    clock.advance(599)
    assert get_token(client_id, old).status_code == 200
    clock.advance(2)
    assert_oauth_error(get_token(client_id, old), 401, "invalid_client")
    assert get_token(client_id, new).status_code == 200


def test_TE19_second_rotation_ends_the_grace(app, client, basic_client, get_token):
    client_id, first = basic_client
    second = rotate(app, client_id, grace_seconds=600)
    third = rotate(app, client_id)
    for secret in (first, second):
        assert_oauth_error(get_token(client_id, secret), 401, "invalid_client")
    assert get_token(client_id, third).status_code == 200


# --- TE20: the issuer never follows the request ----------------------------------------------

@pytest.mark.parametrize("headers", [
    {"Host": "evil.example"},
    {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"},
    {"Forwarded": "host=evil.example;proto=https"},
    {"Host": "evil.example", "X-Forwarded-Host": "evil2.example",
     "X-Forwarded-Server": "evil3.example", "X-Original-Host": "evil4.example"},
])
def test_TE20_host_headers_do_not_change_iss(app, client, basic_client, headers):
    client_id, secret = basic_client
    response = client.post(TOKEN_URL, data=GRANT, base_url="https://auth.example.test",
                           headers={**basic_auth(client_id, secret), **headers})
    if "Host" in headers:  # not a trusted host: refused before anything is built from it
        assert response.status_code == 400 and "access_token" not in response.get_json()
        return
    assert response.status_code == 200, response.get_json()
    claims = claims_of(response)
    assert claims["iss"] == app.config["ISSUER"] == "https://auth.example.test"
    assert claims["aud"] == app.config["DEFAULT_AUDIENCE"]
    metadata = client.get("/.well-known/oauth-authorization-server",
                          base_url="https://auth.example.test", headers=headers).get_json()
    assert "evil" not in str(metadata)


# --- TE21: client_id is the server's choice --------------------------------------------------

def test_TE21_client_id_server_generated(app, client, oauth_clients, get_token):
    """Clients cannot choose their client_id (RFC 9700 §4.15.1), so it cannot equal a ``sub``."""
    import inspect

    from authserver.credentials import clients as client_service

    created = [oauth_clients.create(scope="message:send", name="same name") for _ in range(5)]
    ids = {client_id for client_id, _ in created}
    assert len(ids) == 5
    assert all(len(cid) == 32 and set(cid) <= set("0123456789abcdef") for cid in ids)
    assert "client_id" not in inspect.signature(client_service.create_client).parameters
    for client_id, secret in created:
        claims = claims_of(get_token(client_id, secret))
        assert claims["sub"] == claims["client_id"] == client_id


# --- RFC 8707 resource, audience and lifetime -------------------------------------------------

@pytest.mark.security("AT06")
def test_resource_absent_gives_default_audience(app, client, basic_client, get_token):
    client_id, secret = basic_client
    claims = verify_token(client, app, get_token(client_id, secret).get_json()["access_token"])
    assert claims["aud"] == app.config["DEFAULT_AUDIENCE"] == "https://auth.example.test/api"
    assert claims["aud"] != client_id


def test_resource_default_audience_explicitly(app, client, basic_client, get_token):
    client_id, secret = basic_client
    response = get_token(client_id, secret, resource=app.config["DEFAULT_AUDIENCE"])
    assert claims_of(response)["aud"] == app.config["DEFAULT_AUDIENCE"]


@pytest.mark.security("AT06")
def test_resource_registered_audience(app, client, oauth_clients, get_token):
    client_id, secret = oauth_clients.create(scope="message:send", audiences=[OTHER_AUDIENCE])
    response = get_token(client_id, secret, resource=OTHER_AUDIENCE)
    assert response.status_code == 200
    claims = verify_token(client, app, response.get_json()["access_token"],
                          audience=OTHER_AUDIENCE)
    assert claims["aud"] == OTHER_AUDIENCE
    assert claims_of(get_token(client_id, secret))["aud"] == app.config["DEFAULT_AUDIENCE"]


UNREGISTERED_RESOURCES = [
    OTHER_AUDIENCE,                         # registered for another client only
    OTHER_AUDIENCE + "/",                   # exact match, no normalisation
    "https://OTHER-API.example.test",
    "https://auth.example.test/api/",
    "https://auth.example.test/api.evil",
    "{client_id}",                          # never the client_id
    "not a uri",
    "urn:x:y",
]


@pytest.mark.security("AT06")
def test_resource_not_registered(app, client, oauth_clients, get_token, subtests):
    oauth_clients.create(scope="message:send", audiences=[OTHER_AUDIENCE])
    client_id, secret = oauth_clients.create(scope="message:send")
    before = table_counts(app)
    for resource in UNREGISTERED_RESOURCES:
        with subtests.test(resource=resource):
            response = get_token(client_id, secret, resource=resource.format(client_id=client_id))
            assert_oauth_error(response, 400, "invalid_target")
    assert table_counts(app) == before


def test_resource_repeated_is_refused(client, oauth_clients):
    # RFC 8707 allows several resource parameters; we issue single-audience tokens and treat
    # a repeat like any other repeated parameter (RFC 6749 §3.2).
    client_id, secret = oauth_clients.create(scope="message:send", audiences=[OTHER_AUDIENCE])
    body = urlencode([("grant_type", "client_credentials"), ("resource", OTHER_AUDIENCE),
                      ("resource", "https://auth.example.test/api")])
    response = post_form(client, body, basic_auth(client_id, secret))
    assert response.status_code == 400
    assert response.get_json()["error"] in ("invalid_request", "invalid_target")


def test_lifetime_default_and_override(app, client, oauth_clients, get_token):
    default_id, default_secret = oauth_clients.create(scope="message:send")
    short_id, short_secret = oauth_clients.create(scope="message:send", token_ttl=600)
    for (cid, secret), lifetime in (((default_id, default_secret), 3600),
                                    ((short_id, short_secret), 600)):
        response = get_token(cid, secret)
        claims = claims_of(response)
        assert response.get_json()["expires_in"] == lifetime
        assert claims["exp"] - claims["iat"] == lifetime
        assert claims["nbf"] == claims["iat"]


def test_token_claims_follow_the_clock(app, client, clock, basic_client, get_token):
    client_id, secret = basic_client
    clock.advance(1000)
    claims = claims_of(get_token(client_id, secret))
    assert claims["iat"] == int(clock.now.timestamp())


# --- the platform's alias ---------------------------------------------------------------------

def test_alias_path(app, client, oauth_clients):
    client_id, secret = oauth_clients.create(scope="message:send",
                                             auth_method="client_secret_post")
    response = client.post("/auth/1/oauth2/token", data={**GRANT, "client_id": client_id,
                                                         "client_secret": secret,
                                                         "scope": "sms:message:send"})
    assert response.status_code == 200
    claims = verify_token(client, app, response.get_json()["access_token"])
    assert claims["sub"] == client_id and claims["scope"] == "sms:message:send"


def test_alias_path_is_as_strict(client, basic_client):
    client_id, secret = basic_client
    url = "/auth/1/oauth2/token"
    assert_oauth_error(client.get(url), 405)
    assert_oauth_error(client.post(url, json=GRANT, headers=basic_auth(client_id, secret)), 400,
                       "invalid_request")
    assert_oauth_error(post_form(client, "grant_type=client_credentials", url=url + "?a=b",
                                 headers=basic_auth(client_id, secret)), 400, "invalid_request")
    assert_oauth_error(post_form(client, "grant_type=client_credentials", url=url), 401,
                       "invalid_client")


# --- malformed, huge and hostile input --------------------------------------------------------

def test_huge_body_is_413(app, client, basic_client):
    client_id, secret = basic_client
    before = table_counts(app)
    for size in (70_000, 2_000_000):
        response = post_form(client, "grant_type=client_credentials&x=" + "a" * size,
                             basic_auth(client_id, secret))
        assert_oauth_error(response, 413, "invalid_request")
    assert table_counts(app) == before


def test_huge_body_without_content_length(client, basic_client):
    client_id, secret = basic_client
    body = b"grant_type=client_credentials&x=" + b"a" * 200_000

    response = client.post(TOKEN_URL, input_stream=io.BytesIO(body),
                           content_type=FORM, headers=basic_auth(client_id, secret),
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code in (400, 413)
    assert response.mimetype == "application/json"


def test_ten_thousand_parameters(client, basic_client):
    client_id, secret = basic_client
    names = [format(i, "x") for i in range(10_000)]
    body = "grant_type=client_credentials&" + "&".join(f"{name}=" for name in names)
    assert len(body) < 64 * 1024
    response = post_form(client, body, basic_auth(client_id, secret))
    assert response.status_code < 500
    # Unknown parameters are ignored (RFC 6749 §3.2): the request itself is fine.
    assert response.status_code == 200


def test_ten_thousand_repeats(client, basic_client):
    client_id, secret = basic_client
    response = post_form(client, "grant_type=client_credentials&" + "&".join(["a=1"] * 10_000),
                         basic_auth(client_id, secret))
    assert_oauth_error(response, 400, "invalid_request")


INVALID_BODIES = [
    b"grant_type=client_credentials\xff\xfe",
    b"grant_type=client_\xc3\x28credentials",
    b"\xff\xfe\xfd=\x80\x81&grant_type=client_credentials",
    b"grant_type=%ff%fe",
    b"grant_type=client_credentials&client_id=%00&client_secret=%00",
    b"%",
    b"&&&===",
    b"grant_type",
    b"=client_credentials",
    b"\x00" * 100,
]


def test_invalid_bytes_in_body(app, client, subtests):
    before = table_counts(app)
    for body in INVALID_BODIES:
        with subtests.test(body=body[:60]):
            response = post_form(client, body)
            assert 400 <= response.status_code < 500
            assert_oauth_error(response, response.status_code)
    assert table_counts(app) == before


GARBAGE_AUTHORIZATION = [
    "Basic", "Basic ", "Basic    ", "Basic !!!!", "Basic ====", "Basic a", "Basic Zm9v",
    "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),          # not UTF-8 after base64
    "Basic " + base64.b64encode(b"\xc3\x28:\xc3\x28").decode(),
    "Basic " + base64.b64encode(b"%ZZ:%ZZ").decode(),                # broken percent-encoding
    "Basic " + base64.b64encode(b"%00:%00").decode(),
    "Basic " + base64.b64encode(b"\x00\x00:\x00").decode(),
    "Basic " + base64.b64encode(b"a" * 5000 + b":" + b"b" * 5000).decode(),
    "Basic " + base64.b64encode(b":::").decode(),
    "Basic " + "A" * 60_000,
    "Basic Zm9v\u00e9YmFy",                                         # non-ASCII in the header
    "basic " + base64.b64encode(b"a:b").decode(),
    "Bearer abc", "Digest username=a", "App abc", "Negotiate", ",,,", "Basic,Basic",
]


def test_garbage_basic_headers(app, client, subtests):
    before = table_counts(app)
    for authorization in GARBAGE_AUTHORIZATION:
        with subtests.test(authorization=authorization[:60]):
            response = post_form(client, urlencode(GRANT), {"Authorization": authorization})
            assert_oauth_error(response, 401, "invalid_client")
    assert table_counts(app) == before


HOSTILE_CLIENT_IDS = ["\x00", "a\x00b", "%00", "x" * 65, "x" * 10_000, "' OR '1'='1", "é",
                      "\u2028"]


def test_hostile_client_ids(app, client, subtests):
    """NUL, overlong, SQL-ish and non-ASCII ids: invalid_client, never a driver error."""
    before = table_counts(app)
    for client_id in HOSTILE_CLIENT_IDS:
        with subtests.test(where="body", client_id=client_id[:20]):
            response = client.post(TOKEN_URL, data={**GRANT, "client_id": client_id,
                                                    "client_secret": "secret"})
            assert_oauth_error(response, 401, "invalid_client")
        with subtests.test(where="basic", client_id=client_id[:20]):
            response = post_form(client, urlencode(GRANT), basic_auth(client_id, "secret"))
            assert_oauth_error(response, 401, "invalid_client")
    assert table_counts(app) == before


# --- property: no input ever makes the endpoint fail ---------------------------------------

PARAM_NAMES = ["grant_type", "scope", "client_id", "client_secret", "resource",
               "client_assertion", "client_assertion_type", "audience", "x"]
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                    exclude_characters="\x7f"), max_size=200)


VALUES = ["client_credentials", "", "message:send", "sms:message:send",
          "https://auth.example.test/api", ASSERTION_TYPE, "\x00", "a\x00", "\ud7ff\x00é"]


@st.composite
def form_bodies(draw, client_id, secret):
    """Raw bytes, arbitrary parameters, or a plausible request with mutated credentials."""
    shape = draw(st.integers(0, 2))
    if shape == 0:
        return draw(st.binary(max_size=600))
    value = st.one_of(st.sampled_from(VALUES + [client_id, secret]), st.text(max_size=60))
    if shape == 1:
        pairs = draw(st.lists(st.tuples(st.sampled_from(PARAM_NAMES), value), max_size=6))
        if draw(st.booleans()):
            pairs.insert(draw(st.integers(0, len(pairs))), ("grant_type", "client_credentials"))
        return urlencode(pairs).encode()
    mutated = st.one_of(st.sampled_from([client_id, secret, client_id + "\x00", "\x00", "",
                                         client_id.upper(), client_id[:-1], "x" * 65]),
                        st.text(max_size=40))
    pairs = [("grant_type", "client_credentials"), ("client_id", draw(mutated)),
             ("client_secret", draw(mutated))]
    pairs += draw(st.lists(st.tuples(st.sampled_from(["scope", "resource", "x"]), value),
                           max_size=2, unique_by=lambda pair: pair[0]))
    return urlencode(draw(st.permutations(pairs))).encode()


@st.composite
def authorization_headers(draw, client_id, secret):
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return None
    if choice == 1:
        return basic_auth(client_id, secret)["Authorization"]
    if choice == 2:
        raw = draw(st.binary(max_size=120))
        return "Basic " + base64.b64encode(raw).decode()
    if choice == 3:
        user = draw(st.sampled_from([client_id, "", "x", "\x00", client_id + "\x00"]))
        password = draw(st.text(max_size=40))
        raw = f"{quote(user, safe='')}:{quote(password, safe='')}".encode()
        return "Basic " + base64.b64encode(raw).decode()
    return draw(header_text)


def check_never_fails(response) -> None:
    """The property: a 200 with an RFC 9068 token, or a registered JSON error, never a 5xx."""
    assert response.status_code < 500, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    payload = response.get_json()
    if response.status_code == 200:
        assert set(payload) == {"access_token", "token_type", "expires_in", "scope"}
        assert set(claims_of(response)) == TOKEN_CLAIMS
    else:
        assert payload["error"] in REGISTERED_ERRORS


PROPERTY_SETTINGS = settings(max_examples=100, deadline=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                    HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(data=st.data())
def test_property_form_body_never_fails(client, basic_client, data):
    client_id, secret = basic_client
    body = data.draw(form_bodies(client_id, secret), label="body")
    headers = data.draw(st.sampled_from([{}, {}, basic_auth(client_id, secret)]),
                        label="headers")
    check_never_fails(post_form(client, body, headers))


@PROPERTY_SETTINGS
@given(data=st.data())
def test_property_authorization_header_never_fails(client, basic_client, data):
    client_id, secret = basic_client
    authorization = data.draw(authorization_headers(client_id, secret), label="authorization")
    body = data.draw(st.sampled_from(["grant_type=client_credentials",
                                      "grant_type=client_credentials&scope=sms:message:send"]))
    headers = {} if authorization is None else {"Authorization": authorization}
    check_never_fails(post_form(client, body, headers))
