"""The scope catalogue and the umbrella table: threat model SC05-SC07, SC10, SC12, and the
operator's own catalogue file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authserver import create_app
from authserver.scopes import (
    ScopeError,
    current_catalogue,
    default_catalogue,
    has_required_scope,
    parse_scope,
)
from authserver.storage.db import db

#: docs/scopes.md "Names": the name syntax, copied so the module's regex is checked, not trusted.
NAME_SYNTAX = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*(?::[a-z0-9]+(?:-[a-z0-9]+)*){1,3}$")

#: Every name of the platform's public catalogue, by category, kept by hand (not read from
#: scopes.toml or docs/scopes.md, which is generated from it).
SCOPES_MD = """
sms:manage sms:message:send sms:inbound-message:read sms:logs:read mms:manage mms:message:send
mms:inbound-message:read mms:logs:read whatsapp:manage whatsapp:message:send
whatsapp:inbound-message:read whatsapp:logs:read whatsapp:conversions email:manage
email:message:send email:logs:read email:templates:manage viber-bm:manage viber-bm:message:send
viber-bm:logs:read viber-bot:manage viber-bot:message:send viber-bot:logs:read rcs:manage
rcs:message:send rcs:logs:read rcs:provision rbm-maap:manage rbm-maap:message:send calls:manage
calls:traffic:send calls:traffic:receive calls:traffic:record calls:configuration:manage
calls:logs:read calls:read calls:media:manage calls:recording:read calls:recording:delete
calls:bulk:manage voice-message:manage voice-message:message:send voice-message:logs:read
voice:logs:read voice-reports:read voice:recording:manage voice:recording:read
voice:recording:delete ivr:manage ivr:configuration:manage ivr:message:send clicktocall:manage
callrouting:manage numbermasking:manage markuplanguage:manage webrtc:manage
webrtc:configuration:manage webrtc:identity:manage webrtc:media:manage calllink:manage
calllink:configuration:manage calllink:link:manage mobile-app-messaging:manage
mobile-app-messaging:send mobile-app-messaging:inbound-message:read
mobile-app-messaging:logs:read mobile-app-messaging:sdk web-push:manage web-push:send
messenger:manage messenger:message:send messenger:logs:read instagram:manage
instagram:message:send instagram:logs:read tiktok:manage tiktok:message:send tiktok:logs:read
line:manage line:message:send kakao:manage kakao:message:send kakao:logs:read zalo:manage
zalo:message:send zalo:logs:read zalo-follower:manage apple-mfb:manage apple-mfb:message:send
apple-mfb:logs:read google-bm:manage google-bm:message:send google-bm:logs:read live-chat:manage
omni-failover:manage omni-failover:message:send omni-failover:logs:read
account-management:manage audit-logs:read billing:usage:view application-entity:manage
2fa:manage 2fa:pin:send 2fa:pin:manage 2fa:sdk messages-api:manage messages-api:message:send
numbers:manage numbers:recording:manage resource-request-hub:manage resource-request-hub:read
blocklist:manage catalogs:manage catalogs:read catalogs:use metrics:manage
sending-strategy:manage signals:manage subscriptions:manage branded-domains:manage
error-codes:read campaign-tags:manage campaign-tags:view saas:integrations:manage
saas:tiktok-ads:manage onboarding:manage mcp:provision number-lookup:manage number-lookup:send
number-lookup:logs:read number-activation-state:read mobile-identity:manage biometrics:manage
number-risk-score:manage conversations:manage conversations:read people:manage people:read
people:use flow:manage flow:read flow:use flow:control forms:manage forms:read forms:use
answers:manage answers:testing knowledge-base:manage knowledge-base:read
content-messages:manage content-messages:read insights:read moments:manage
moments:people:flow:manage ai:read ai:agents:manage ai:agents:view ai:agents:query web:sdk
web:tracking:sdk
""".split()
GENERAL = ["message:send", "inbound-message:read"]

CATALOGUE = default_catalogue()
NAMES = CATALOGUE.names


def expected_umbrellas(name: str, names: set[str]) -> set[str]:
    """docs/scopes.md "Umbrella scopes", restated independently of authserver.scopes."""
    product = name.split(":", 1)[0]
    expected = {name}
    if re.fullmatch(r"[a-z0-9-]+:message:send", name):
        expected.add("message:send")
    if re.fullmatch(r"[a-z0-9-]+:inbound-message:read", name):
        expected.add("inbound-message:read")
    if name != f"{product}:manage" and f"{product}:manage" in names:
        expected.add(f"{product}:manage")
    return expected & names


def implies(held: str, required: str) -> bool:
    """``held`` grants ``required``."""
    return CATALOGUE.covers([held], required)


# --- the catalogue ------------------------------------------------------------------------------

def test_catalogue_holds_every_scope_of_scopes_md():
    assert len(SCOPES_MD) == len(set(SCOPES_MD)) == 161
    # Ours beside the platform's: resource servers' introspection, account management and
    # registering resource servers' route manifests.
    assert set(SCOPES_MD + GENERAL + ["tokens:introspect", "accounts:manage",
                                      "resource-servers:manage"]) == set(NAMES)
    assert len(NAMES) >= 160 and len(NAMES) == len(set(NAMES))
    assert CATALOGUE.scopes["tokens:introspect"].category == "Platform"
    assert CATALOGUE.scopes["accounts:manage"].category == "Platform"


@pytest.mark.parametrize("platform_only", ["accounts:manage", "resource-servers:manage"])
def test_AC03_no_umbrella_covers_platform_only_scopes(platform_only):
    assert CATALOGUE.accepted_by(platform_only) == {platform_only}
    every_other = set(NAMES) - {platform_only}
    assert not CATALOGUE.covers(every_other, platform_only)
    assert CATALOGUE.scopes[platform_only].category == "Platform"


def test_catalogue_entries_are_well_formed():
    categories = {"General", "Channels", "Connectivity", "Platform", "Customer Engagement",
                  "Web SDK", "AI"}
    for name, entry in CATALOGUE.scopes.items():
        assert NAME_SYNTAX.match(name), name
        assert entry.name == name and entry.category in categories
        assert entry.description.strip(), name
    assert CATALOGUE.scopes["message:send"].category == "General"
    assert CATALOGUE.scopes["sms:message:send"].category == "Channels"
    assert CATALOGUE.scopes["web:sdk"].category == "Web SDK"
    assert CATALOGUE.scopes["ai:read"].category == "AI"
    assert CATALOGUE.scopes["web-push:send"].documented is False  # marked * in docs/scopes.md


@pytest.mark.parametrize("name", NAMES)
def test_umbrella_table_follows_the_rule(name):
    assert CATALOGUE.accepted_by(name) == expected_umbrellas(name, set(NAMES))


@pytest.mark.parametrize(("name", "accepted"), [
    ("sms:message:send", {"sms:message:send", "message:send", "sms:manage"}),
    ("sms:inbound-message:read", {"sms:inbound-message:read", "inbound-message:read",
                                  "sms:manage"}),
    ("sms:logs:read", {"sms:logs:read", "sms:manage"}),
    ("sms:manage", {"sms:manage"}),
    ("message:send", {"message:send"}),
    ("inbound-message:read", {"inbound-message:read"}),
    ("mobile-app-messaging:send", {"mobile-app-messaging:send", "mobile-app-messaging:manage"}),
    ("mobile-app-messaging:inbound-message:read", {"mobile-app-messaging:inbound-message:read",
                                                   "inbound-message:read",
                                                   "mobile-app-messaging:manage"}),
    ("calls:configuration:manage", {"calls:configuration:manage", "calls:manage"}),
    ("voice:recording:read", {"voice:recording:read"}),   # voice:recording:manage is no umbrella
    ("moments:people:flow:manage", {"moments:people:flow:manage", "moments:manage"}),
    ("web:sdk", {"web:sdk"}),
    ("tokens:introspect", {"tokens:introspect"}),
    ("audit-logs:read", {"audit-logs:read"}),  # account-management:manage is listed per endpoint
])
def test_umbrella_table_examples(name, accepted):
    assert CATALOGUE.accepted_by(name) == accepted


def test_umbrella_table_review_listing():
    table = CATALOGUE.umbrella_table()
    assert set(table) == {umbrella for name in NAMES
                          for umbrella in CATALOGUE.accepted_by(name) - {name}}
    assert "sms:message:send" in table["message:send"]
    assert "sms:logs:read" not in table["message:send"]
    assert sorted(table["sms:manage"]) == ["sms:inbound-message:read", "sms:logs:read",
                                           "sms:message:send"]


# --- SC05 / SC06 / SC07 / SC10 ------------------------------------------------------------------

NEAR_MISSES = {
    "message:send": ["message:sen", "message:send2", "message:sendx", "message", "message:",
                     ":send", "message:send:extra", "messages:send", "message::send",
                     "sms:message:send", "send", "message-send"],
    "sms:message:send": ["sms:message", "sms:message:sen", "sms:message:send:x", "sms",
                         "sms:", "sms:manage:x", "sms:logs:read", "email:message:send",
                         "sms:message:send-", "message:sms:send"],
}


@pytest.mark.parametrize(("required", "held"),
                         [(required, held) for required, values in NEAR_MISSES.items()
                          for held in values])
def test_SC05_exact_token_matching(required, held):
    try:
        names = parse_scope(held)
    except ScopeError:
        return  # malformed: can never be held
    assert not CATALOGUE.covers(names, required)
    assert not has_required_scope(names, CATALOGUE.accepted_by(required))


@pytest.mark.parametrize("held", [
    "Message:Send", "MESSAGE:SEND", "message:Send", "\uff4dessage:send",  # fullwidth m
    "m\u0435ssage:send",  # Cyrillic e
    "message\u02d0send", "message:send\u200b", "\u200bmessage:send", "message:se\u0301nd",
])
def test_SC06_case_sensitive_no_folding(held):
    with pytest.raises(ScopeError):
        parse_scope(held)
    assert not CATALOGUE.covers([held], "message:send")
    assert held not in CATALOGUE


@pytest.mark.parametrize("value", [
    "message:send,sms:message:send", "message:send;sms:message:send",
    "message:send\tsms:message:send", "message:send\nsms:message:send",
    "message:send\u00a0sms:message:send", "message:send\u2003sms:message:send",
    "message:send  sms:message:send", " message:send", "message:send ", "message:send\r",
])
def test_SC07_single_space_separator(value):
    with pytest.raises(ScopeError):
        parse_scope(value)


def test_SC07_parse_scope_splits_on_single_spaces():
    assert parse_scope("message:send sms:message:send") == ["message:send", "sms:message:send"]
    assert parse_scope("sms:logs:read sms:logs:read") == ["sms:logs:read"]
    assert parse_scope("") == [] and parse_scope(None) == []


@pytest.mark.parametrize("wildcard", ["*", "message:*", "sms:*", "*:manage", "sms:message:*",
                                      "*:message:send", "sms:%", "sms:.*", "sms:?anage"])
def test_SC10_no_wildcards(wildcard):
    with pytest.raises(ScopeError):
        parse_scope(wildcard)
    assert wildcard not in CATALOGUE
    assert not any(CATALOGUE.covers([wildcard], name) for name in NAMES)


# --- SC12: properties of the relation --------------------------------------------------------

def test_SC12_antisymmetry_exhaustive():
    for held in NAMES:
        for required in CATALOGUE.accepted_by(held) - {held}:
            # held is covered by required: the reverse must not hold
            assert not implies(held, required), (held, required)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(NAMES), st.sampled_from(NAMES), st.sampled_from(NAMES))
def test_SC12_transitive(a, b, c):
    if implies(a, b) and implies(b, c):
        assert implies(a, c)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(NAMES), st.sampled_from(NAMES))
def test_SC12_antisymmetric_and_reflexive(a, b):
    assert implies(a, a)
    if a != b and implies(a, b):
        assert not implies(b, a)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(NAMES), st.sampled_from(NAMES))
def test_SC12_coverage_flows_downward_only(a, b):
    """An umbrella has fewer segments than, or is the product's manage scope of, what it covers."""
    if a != b and implies(a, b):
        assert a in ("message:send", "inbound-message:read") \
            or (a == b.split(":", 1)[0] + ":manage")


# --- the operator's catalogue file ----------------------------------------------------------

OPERATOR_SCOPES = '''
[[scopes]]
name = "acme:manage"
category = "Platform"
group = "Acme"
description = "Everything Acme."

[[scopes]]
name = "acme:widgets:read"
category = "Platform"
group = "Acme"
description = "Read Acme widgets."

[[scopes]]
name = "acme:message:send"
category = "Channels"
group = "Acme"
description = "Send messages over Acme."
'''


def _app_with_instance_file(app, clock, text: str | bytes):
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)  # the app never makes it
    Path(app.instance_path, app.config["SCOPES_FILE"]).write_bytes(data)
    config = {key: app.config[key] for key in ("TESTING", "SQLALCHEMY_DATABASE_URI", "ISSUER",
                                               "ENCRYPTION_KEY", "SECRET_KEY")}
    return create_app({**config, "CLOCK": clock}, instance_path=app.instance_path)


def test_operator_file_adds_scopes(app, clock):
    from conftest import basic_auth

    operator_app = _app_with_instance_file(app, clock, OPERATOR_SCOPES)
    try:
        with operator_app.app_context():
            catalogue = current_catalogue()
            assert len(catalogue.names) == len(NAMES) + 3
            assert catalogue.accepted_by("acme:widgets:read") == {"acme:widgets:read",
                                                                  "acme:manage"}
            assert catalogue.accepted_by("acme:message:send") == {"acme:message:send",
                                                                  "acme:manage",
                                                                  "message:send"}
            from authserver.credentials import clients as client_service

            record, secret = client_service.create_client(name="acme", scope="acme:manage",
                                                          actor="test")
            client_id = record.client_id
        client = operator_app.test_client()
        metadata = client.get("/.well-known/oauth-authorization-server").get_json()
        assert "acme:widgets:read" in metadata["scopes_supported"]
        response = client.post("/oauth2/token", data={"grant_type": "client_credentials",
                                                       "scope": "acme:widgets:read"},
                               headers=basic_auth(client_id, secret))
        assert response.status_code == 200 and response.get_json()["scope"] == \
            "acme:widgets:read"
        # The shipped catalogue and the fixture's app are untouched.
        assert "acme:manage" not in default_catalogue()
        with app.app_context():
            assert "acme:manage" not in current_catalogue()
    finally:
        with operator_app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.mark.parametrize("text", [
    "[[scopes]\nname = 'x:y'",                                               # not TOML
    "[[scopes]]\nname = 'Acme:Read'\ncategory = 'Platform'\n",               # bad name
    "[[scopes]]\nname = 'acme'\ncategory = 'Platform'\n",                    # one segment
    "[[scopes]]\nname = 'acme:read'\ncategory = 'Marketing'\n",              # bad category
    "[[scopes]]\nname = 'acme:read'\n",                                      # no category
    "[[scopes]]\ncategory = 'Platform'\n",                                   # no name
    "[[scopes]]\nname = 'sms:manage'\ncategory = 'Channels'\n",              # redefines shipped
    "[[scopes]]\nname = 'acme:read'\ncategory = 'Platform'\n"
    "[[scopes]]\nname = 'acme:read'\ncategory = 'Platform'\n",               # twice
    "scopes = 'acme:read'\n",                                                # wrong shape
    "[scopes]\nname = 'acme:read'\ncategory = 'Platform'\n",                 # a table, not a list
    "scopes = [1, 2]\n",
    b"[[scopes]]\nname = 'acme:read'\ncategory = 'Platform'\ndescription = '\xff'\n",  # not UTF-8
])
def test_malformed_operator_file_fails_loudly(tmp_path, text):
    """create_app refuses the file with a ScopeError naming it (no half-loaded catalogue).

    No database is involved, so this runs once rather than per backend.
    """
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    (tmp_path / "scopes.toml").write_bytes(data)
    with pytest.raises(ScopeError) as caught:
        create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"},
                   instance_path=str(tmp_path))
    assert str(tmp_path / "scopes.toml") in str(caught.value)
