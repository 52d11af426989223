"""Property-based tests (Hypothesis): hostile input never makes a 5xx, never writes, never passes.

- The protocol endpoints (token, introspection, revocation) with arbitrary form bodies, repeated
  keys, values up to and past the 64 KiB cap and arbitrary headers: never a 5xx, always JSON, and
  no row written (threat model TE18, item 18). tests/test_token_endpoint.py checks the token
  endpoint's answers; this module adds the database and the other two endpoints.
- ``parse_scope`` and ``Catalogue.covers`` on arbitrary strings (TE16, SC05-SC07).
- API key parsing: any object is refused without an exception, every mutation of a valid key
  is refused, every valid key passes (AK02).
- The guard's Authorization header parsing through a guarded demo endpoint (RS11-RS16, AK09).

Every property counts the examples it tried (``cases``) for the report (tests/report_plugin.py).
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from urllib.parse import quote, urlencode

import pytest
import requests
from conftest import OAuthClients, basic_auth
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from oauth_support import table_counts

from authserver.credentials import api_keys
from authserver.scopes import ScopeError, default_catalogue, format_scope, parse_scope
from resource_demo.demo.app import create_app as create_demo_app
from resource_demo.guard.flask import ResourceGuard

PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])
PURE = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

#: docs/scopes.md name syntax, always matched in full (fullmatch), so the module's regex is checked,
#: not trusted.
NAME_SYNTAX = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*(?::[a-z0-9]+(?:-[a-z0-9]+)*){1,3}")
#: docs/scopes.md "API keys": prefix, 32 base62 random characters, a 6-character base62
#: CRC-32 of them.
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
LEAK_MARKERS = ("Traceback", "File \"", "site-packages", "sqlalchemy", "psycopg", "SELECT ")
#: What a WSGI server can hand the app as a header value: latin-1, no CR, LF or NUL.
HEADER_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                             exclude_characters="\x7f") | st.just("\t")
HEADER_TEXT = st.text(HEADER_CHARS, max_size=300)
FORM_TYPE = "application/x-www-form-urlencoded"
PROTOCOL_PATHS = ("/oauth2/token", "/auth/1/oauth2/token", "/oauth2/introspect",
                  "/oauth2/revoke")
PARAM_NAMES = ("grant_type", "scope", "client_id", "client_secret", "client_assertion",
               "client_assertion_type", "resource", "audience", "token", "token_type_hint")
#: A written row would show in these counts; seen_assertions is the one table a refused
#: private_key_jwt request may legitimately touch (replay protection).
MAY_CHANGE = {"seen_assertions"}


class Cases:
    """How many examples a property tried; recorded as ``cases`` for the report."""

    def __init__(self):
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


#: What each property feeds its subject, for the report's "input" column.
INPUTS = {
    "test_TE18_protocol_endpoints_never_5xx_and_never_write":
        "token/introspect/revoke: raw bytes or form pairs (unknown and repeated keys, unicode, "
        "control characters, values up to 70 000 characters), real or mangled credentials, "
        "arbitrary Authorization and Content-Type, query strings",
    "test_TE16_SC07_parse_scope_accepts_exactly_the_syntax":
        "arbitrary unicode, and strings over a scope-like alphabet with tabs, NBSP, commas, "
        "homoglyphs",
    "test_TE16_scope_round_trip": "lists of syntactically valid scope names",
    "test_SC05_covers_never_raises_and_matches_exactly":
        "held lists of catalogue names and arbitrary strings; catalogue or arbitrary scope",
    "test_AK02_key_format_check_never_raises":
        "text, bytes, numbers, None, lists, dicts, prefixed near-keys",
    "test_AK02_valid_keys_always_pass": "keys built from random base62 parts",
    "test_AK02_every_mutation_of_a_valid_key_is_refused":
        "one substitution, deletion, insertion, swap, truncation, extension or prefix change",
    "test_RS14_RS16_AK09_guard_header_parsing_never_500":
        "1-3 Authorization headers: latin-1 text, any scheme, JWT-shaped garbage, well-formed "
        "unknown keys, mangled real JWTs and keys; ?access_token / ?api_key",
}


@pytest.fixture
def cases(request):
    """A counter each property calls once per example; recorded when the test ends."""
    counter = Cases()
    yield counter
    request.node.user_properties.append(("cases", counter.count))
    if request.node.originalname in INPUTS:
        request.node.user_properties.append(("input", INPUTS[request.node.originalname]))


# --- protocol endpoints: no 5xx, JSON, nothing written ----------------------------------------

@pytest.fixture
def known(app, oauth_clients):
    """Real credentials the strategies mix in, so some requests get past client auth."""
    basic = oauth_clients.create(scope="message:send")
    post = oauth_clients.create(scope="tokens:introspect", auth_method="client_secret_post")
    with app.app_context():
        _, key = api_keys.create_api_key(name="k", scopes="sms:message:send", actor="test")
    return {"basic": basic, "post": post, "api_key": key}


def one_in(n: int):
    """True about once in ``n`` draws (st.integers would favour its bounds)."""
    return st.sampled_from([False] * (n - 1) + [True])


def huge_values():
    """Values around the 64 KiB body cap (MAX_CONTENT_LENGTH), one or four UTF-8 bytes wide."""
    return st.builds(lambda char, size: char * size,
                     st.sampled_from(["a", "%", "é", "\U0001F600", "\x00"]),
                     st.integers(min_value=15_000, max_value=70_000))


@st.composite
def forms(draw, known, path: str):
    """A body: raw bytes; arbitrary pairs; or a plausible request for ``path`` with real or
    mutated credentials, extra pairs, repeated keys, control characters and huge values."""
    basic_id, basic_secret = known["basic"]
    post_id, post_secret = known["post"]
    value = st.one_of(
        st.sampled_from(["client_credentials", "", "message:send", "sms:message:send",
                         basic_id, basic_secret, post_id, post_secret, known["api_key"],
                         "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]),
        st.text(max_size=80),
        st.text(st.characters(max_codepoint=0x1F), max_size=20),
        huge_values())
    name = st.one_of(st.sampled_from(PARAM_NAMES), st.text(max_size=20))
    shape = draw(st.integers(0, 4))
    if shape == 0:
        return draw(st.binary(max_size=2000))
    pairs = draw(st.lists(st.tuples(name, value), max_size=6))
    if shape >= 3:
        base = [("grant_type", "client_credentials")] if path.endswith("token") \
            else [("token", draw(value))]
        if draw(st.booleans()):
            base += [("client_id", draw(st.sampled_from([post_id, basic_id]) | value)),
                     ("client_secret", draw(st.sampled_from([post_secret]) | value))]
        pairs = base + draw(st.lists(st.tuples(name, value), max_size=2))
    if pairs and draw(one_in(4)):
        pairs += draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=3))
    return urlencode(draw(st.permutations(pairs))).encode()


@st.composite
def header_sets(draw, known):
    """Authorization (arbitrary, Basic of arbitrary bytes, or real), Content-Type, query."""
    basic_id, basic_secret = known["basic"]
    authorization = None if draw(st.booleans()) else draw(st.one_of(
        st.just(basic_auth(basic_id, basic_secret)["Authorization"]),
        st.binary(max_size=200).map(lambda raw: "Basic " + base64.b64encode(raw).decode()),
        st.tuples(st.sampled_from([basic_id, "", "\x00"]), st.text(max_size=60)).map(
            lambda pair: "Basic " + base64.b64encode(
                f"{quote(pair[0], safe='')}:{quote(pair[1], safe='')}".encode()).decode()),
        st.tuples(st.sampled_from(["Basic", "Bearer", "App", "basic", "Digest", ""]),
                  HEADER_TEXT).map(" ".join),
        HEADER_TEXT))
    content_type = FORM_TYPE if not draw(one_in(4)) else draw(st.one_of(
        st.sampled_from([FORM_TYPE + "; charset=latin-1", "application/json",
                         "multipart/form-data", "text/plain", ""]), HEADER_TEXT))
    headers = [("Content-Type", content_type)]
    if authorization is not None:
        headers.append(("Authorization", authorization))
    if draw(st.integers(0, 9)) == 0:
        headers.append(("Authorization", draw(HEADER_TEXT)))
    query = "" if not draw(one_in(8)) else urlencode({"client_secret": draw(st.text())})
    return headers, query


def assert_json_answer(response) -> dict:
    """Never a 5xx; always a JSON object; nothing that looks like a trace or a query."""
    text = response.get_data(as_text=True)
    assert response.status_code < 500, text[:500]
    assert response.mimetype == "application/json", (response.status_code, text[:200])
    body = json.loads(text)
    assert isinstance(body, dict)
    assert not any(marker in text for marker in LEAK_MARKERS), text[:500]
    return body


@PROPERTY
@given(data=st.data())
def test_TE18_protocol_endpoints_never_5xx_and_never_write(app, client, known, cases, data):
    """Arbitrary bodies and headers at token, introspection and revocation: 4xx JSON (or a
    token for real credentials), and every table but seen_assertions unchanged."""
    cases()
    path = data.draw(st.sampled_from(PROTOCOL_PATHS), label="path")
    body = data.draw(forms(known, path), label="body")
    headers, query = data.draw(header_sets(known), label="headers")
    before = table_counts(app)
    response = client.post(path + ("?" + query if query else ""), data=body, headers=headers)
    event(f"{path}: {response.status_code}")
    body_json = assert_json_answer(response)
    if response.status_code == 200 and path.endswith("token"):
        assert body_json["token_type"] == "Bearer"
    after = table_counts(app)
    assert {name: count for name, count in after.items() if name not in MAY_CHANGE} == \
        {name: count for name, count in before.items() if name not in MAY_CHANGE}


@pytest.mark.parametrize("size", [64 * 1024 - 200, 64 * 1024 + 1, 1024 * 1024])
def test_TE18_body_at_and_past_the_cap(app, client, known, size):
    """The 64 KiB cap: just under is parsed (and refused as a request), past it is 413 JSON."""
    body = b"grant_type=client_credentials&scope=" + b"a" * (size - 36)
    before = table_counts(app)
    response = client.post("/oauth2/token", data=body, content_type=FORM_TYPE,
                           headers=basic_auth(*known["basic"]))
    assert_json_answer(response)
    assert response.status_code == (413 if size > 64 * 1024 else 400)
    assert table_counts(app) == before


# --- scopes -----------------------------------------------------------------------------------

SCOPE_ALPHABET = st.sampled_from("abz09:- \t\n\r\x00\u00a0\u3000,;*.ÄеＡ")
_word = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789"), min_size=1, max_size=8)
_segment = st.lists(_word, min_size=1, max_size=3).map("-".join)
valid_names = st.lists(_segment, min_size=2, max_size=4).map(":".join)
CATALOGUE = default_catalogue()
CATALOGUE_NAMES = CATALOGUE.names
#: Valid names joined by almost-right separators, with almost-right ends.
near_valid = st.tuples(
    st.lists(st.one_of(valid_names, st.sampled_from(CATALOGUE_NAMES)), min_size=1, max_size=4),
    st.sampled_from([" ", " ", "  ", "\t", "\n", ",", "\u00a0", "\r\n"]),
    st.sampled_from(["", "", " ", "\n", "\t", "\r", "\x00", ":", "-"]),
).map(lambda parts: parts[1].join(parts[0]) + parts[2])
scope_text = st.one_of(st.text(SCOPE_ALPHABET, max_size=60), st.text(max_size=60), near_valid)


@PURE
@given(scope_text)
def test_TE16_SC07_parse_scope_accepts_exactly_the_syntax(cases, value):
    """Anything: ScopeError, or the space-split names, each following the syntax, in order,
    without repeats."""
    cases()
    names = value.split(" ")
    well_formed = len(names) <= 200 and all(
        NAME_SYNTAX.fullmatch(name) and len(name) <= 128 for name in names)
    if value == "":
        assert parse_scope(value) == []
    elif well_formed:
        assert parse_scope(value) == list(dict.fromkeys(names))
    else:
        with pytest.raises(ScopeError):
            parse_scope(value)


@pytest.mark.parametrize("value", ["sms:manage\n", "message:send\n",
                                   "sms:logs:read\n sms:manage"])
def test_TE16_scope_name_with_trailing_newline_is_refused(value):
    """A newline is not in the scope syntax, at the end of a name either."""
    with pytest.raises(ScopeError):
        parse_scope(value)


@PURE
@given(st.lists(valid_names, min_size=1, max_size=20))
def test_TE16_scope_round_trip(cases, names):
    """format_scope then parse_scope gives the names back (first occurrence kept)."""
    cases()
    assert parse_scope(format_scope(names)) == list(dict.fromkeys(names))


@PURE
@given(st.lists(st.one_of(st.sampled_from(CATALOGUE_NAMES), scope_text), max_size=6),
       st.one_of(st.sampled_from(CATALOGUE_NAMES), scope_text))
def test_SC05_covers_never_raises_and_matches_exactly(cases, held, scope):
    """covers() answers a bool for any strings; a held string covers ``scope`` only when it
    is ``scope`` itself or a catalogue umbrella of it: no prefix, substring or case games."""
    cases()
    try:
        answer = CATALOGUE.covers(held, scope)
    except ScopeError:
        return
    assert isinstance(answer, bool)
    expected = any(h == scope or (h in CATALOGUE and h in CATALOGUE.accepted_by(scope))
                   for h in held)
    assert answer == expected
    for h in held:
        if h != scope and h not in CATALOGUE:
            assert not CATALOGUE.covers([h], scope)


# --- API keys ---------------------------------------------------------------------------------

def _checksum(random_part: str) -> str:
    number = zlib.crc32(random_part.encode())
    digits = []
    for _ in range(6):
        number, digit = divmod(number, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits))


random_parts = st.text(st.sampled_from(BASE62), min_size=32, max_size=32)
valid_keys = random_parts.map(lambda part: api_keys.PREFIX + part + _checksum(part))


@PURE
@given(st.one_of(st.text(), st.binary(), st.integers(), st.none(), st.floats(),
                 st.lists(st.text(), max_size=3), st.dictionaries(st.text(), st.text()),
                 st.text(st.sampled_from(BASE62 + "_a"), min_size=40, max_size=46)
                 .map(lambda text: api_keys.PREFIX + text)))
def test_AK02_key_format_check_never_raises(cases, value):
    """Any object: a bool, never an exception; only strings of the documented shape pass."""
    cases()
    answer = api_keys.check_api_key_format(value)
    assert isinstance(answer, bool)
    if answer:
        assert isinstance(value, str) and re.fullmatch(r"asak_[0-9A-Za-z]{38}", value)


@PURE
@given(valid_keys)
def test_AK02_valid_keys_always_pass(cases, key):
    cases()
    assert api_keys.check_api_key_format(key)


@st.composite
def mutations(draw, key: str, characters=st.characters()) -> str:
    """One edit of ``key``: substitute, delete, insert, swap neighbours, truncate, extend,
    change the case of the prefix."""
    kind = draw(st.sampled_from(["substitute", "delete", "insert", "swap", "truncate",
                                 "extend", "prefix"]))
    at = draw(st.integers(0, len(key) - 1))
    char = draw(st.one_of(st.sampled_from(BASE62), characters))
    if kind == "substitute":
        assume(char != key[at])
        return key[:at] + char + key[at + 1:]
    if kind == "delete":
        return key[:at] + key[at + 1:]
    if kind == "insert":
        return key[:at] + char + key[at:]
    if kind == "swap":
        at = min(at, len(key) - 2)
        assume(key[at] != key[at + 1])
        return key[:at] + key[at + 1] + key[at] + key[at + 2:]
    if kind == "truncate":
        return key[:at]
    if kind == "extend":
        return key + draw(st.text(characters, min_size=1, max_size=5))
    return key.replace(api_keys.PREFIX, draw(st.sampled_from(["ASAK_", "Asak_", "asak-",
                                                             "asak", "sak_"])), 1)


@PURE
@given(st.data())
def test_AK02_every_mutation_of_a_valid_key_is_refused(cases, data):
    """The CRC-32 catches every single edit: refused before any database lookup."""
    cases()
    key = data.draw(valid_keys, label="key")
    mutated = data.draw(mutations(key), label="mutated")
    assert mutated != key
    assert not api_keys.check_api_key_format(mutated)


# --- the guard's Authorization header, through a guarded endpoint ------------------------------

@pytest.fixture
def guarded(live_server):
    """The demo API's test client, its guard pointed at ``live_server``; real credentials."""
    clients = OAuthClients(live_server.app)
    rs_id, rs_secret = clients.create(scope="tokens:introspect")
    client_id, secret = clients.create(scope="message:send")
    token = requests.post(live_server.url + "/oauth2/token", headers=basic_auth(client_id, secret),
                          data={"grant_type": "client_credentials"}, timeout=10)
    assert token.status_code == 200, token.text
    with live_server.app.app_context():
        _, key = api_keys.create_api_key(name="k", scopes="sms:message:send", actor="t")
    demo = create_demo_app({"GUARD_ISSUER": live_server.url, "GUARD_CLIENT_ID": rs_id,
                            "GUARD_CLIENT_SECRET": rs_secret})
    yield demo.test_client(), token.json()["access_token"], key
    ResourceGuard.close(demo)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                           max_leaves=8)
jwt_shaped = st.tuples(json_values, json_values, st.binary(max_size=64)).map(
    lambda parts: ".".join([_b64(json.dumps(parts[0]).encode()),
                            _b64(json.dumps(parts[1]).encode()), _b64(parts[2])]))


@st.composite
def authorization_values(draw, token: str, key: str) -> tuple[str, bool]:
    """(header value, derived from a valid credential?)."""
    kind = draw(st.integers(0, 5))
    scheme = draw(st.sampled_from(["Bearer", "bearer", "BEARER", "App", "app", "Basic", "",
                                   "Bearer  ", "Token"]))
    if kind == 0:
        return draw(HEADER_TEXT), False
    if kind == 1:
        return f"{scheme} {draw(HEADER_TEXT)}", False
    if kind == 2:
        return f"{scheme} {draw(jwt_shaped)}", False
    if kind == 3:
        return f"{scheme} {draw(valid_keys)}", False
    credential = token if kind == 4 else key
    mutated = draw(mutations(credential, HEADER_CHARS)) if draw(st.booleans()) else credential
    return f"{scheme} {mutated}", True


@PROPERTY
@given(data=st.data())
def test_RS14_RS16_AK09_guard_header_parsing_never_500(guarded, cases, data):
    """One to three Authorization headers of anything (plus maybe ``?access_token=``):
    400, 401, 403 or 503 in the envelope; 200 only for a credential derived from a real one."""
    cases()
    client, token, key = guarded
    values = data.draw(st.lists(authorization_values(token, key), min_size=1, max_size=3),
                       label="authorization")
    query = data.draw(st.sampled_from(["", "", "?access_token=x", "?api_key=" + key]))
    headers = [("Authorization", value) for value, _ in values]
    response = client.post("/sms/3/messages" + query, headers=headers,
                           json={"messages": [{"destinations": [{"to": "41793026727"}],
                                               "content": {"text": "hi"}}]})
    event(f"status {response.status_code}")
    text = response.get_data(as_text=True)
    derived = len(values) == 1 and values[0][1] and not query
    allowed = {400, 401, 403, 503} | ({200} if derived else set())
    assert response.status_code in allowed, (response.status_code, text[:300])
    assert response.mimetype == "application/json"
    if response.status_code != 200:
        assert set(json.loads(text)) == {"requestError"}
    if response.status_code == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
