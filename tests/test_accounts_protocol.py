"""Accounts at the protocol endpoints: tokens carry their account, introspection and revocation
stay inside it, a disabled account stops everywhere, and the feed tells guards about it
(threat model AC01-AC04), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import jwt
import pytest
import sqlalchemy as sa
from credential_actions import (
    INACTIVE,
    assert_clean_error,
    feed,
    introspect,
    make_caller,
    revoke,
    row_count,
)

from authserver.credentials import api_keys
from authserver.storage.db import db
from authserver.storage.models import ApiKey


@pytest.fixture
def world(app, tenants, oauth_clients):
    """Two customer accounts A and B beside the platform, each with a sender, a key manager,
    a resource server client (tokens:introspect) and an API key; and the platform's own
    resource server client."""
    a, b = tenants.create("A"), tenants.create("B")
    found = {"platform": tenants.platform(), "a": a, "b": b,
             "platform_rs": make_caller(oauth_clients, "tokens:introspect", name="platform rs")}
    for name, account_id in (("a", a), ("b", b)):
        found[f"{name}_sender"] = make_caller(oauth_clients, "sms:message:send",
                                              account_id=account_id)
        # The manager holds the keys' scopes: changing a key needs them (AD04).
        found[f"{name}_manager"] = make_caller(oauth_clients,
                                               "account-management:manage sms:manage",
                                               account_id=account_id)
        found[f"{name}_rs"] = make_caller(oauth_clients, "tokens:introspect",
                                          account_id=account_id)
        with app.app_context():
            record, secret = api_keys.create_api_key(name=f"{name} key", scopes=["sms:manage"],
                                                     actor="test", account_id=account_id)
            found[f"{name}_key_id"], found[f"{name}_key"] = record.id, secret
    return found


def claims_of(token: str) -> dict:
    """A token's claims, unverified (the server checked it; the test reads it)."""
    return jwt.decode(token, options={"verify_signature": False})


def _token(get_token, caller, **form) -> str:
    answer = get_token(caller.client_id, caller.secret, **form)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["access_token"]


def test_AC02_tokens_and_introspection_carry_the_clients_account(client, world, get_token):
    token = _token(get_token, world["a_sender"])
    assert claims_of(token)["account_id"] == world["a"]
    for rs in (world["a_rs"], world["platform_rs"]):
        assert introspect(client, token, rs.auth).get_json()["account_id"] == world["a"]
        key = introspect(client, world["a_key"], rs.auth).get_json()
        assert key["active"] is True and key["account_id"] == world["a"]
    platform_token = _token(get_token, world["platform_rs"])
    assert claims_of(platform_token)["account_id"] == world["platform"]


@pytest.mark.parametrize("kind", ["jwt", pytest.param("api_key",
                                                      marks=pytest.mark.security("AC01", "IN08"))])
def test_AC01_introspection_by_another_account_is_inactive(client, world, get_token, kind):
    credential = _token(get_token, world["a_sender"]) if kind == "jwt" else world["a_key"]
    assert introspect(client, credential, world["a_rs"].auth).get_json()["active"] is True
    answer = introspect(client, credential, world["b_rs"].auth)
    assert answer.status_code == 200 and answer.get_json() == INACTIVE
    # The platform's resource servers introspect every account (DESIGN: resource servers).
    assert introspect(client, credential, world["platform_rs"].auth).get_json()["active"]


def test_AC01_revoking_another_accounts_key_is_refused_like_an_untouchable_key(
        app, client, world, oauth_clients):
    untouchable = make_caller(oauth_clients, "sms:manage", account_id=world["b"])
    own_refusal = revoke(client, world["b_key"], untouchable.auth)
    other = revoke(client, world["a_key"], world["b_manager"].auth)
    body = assert_clean_error(other, 400, "invalid_grant")
    assert body == own_refusal.get_json() and other.status_code == own_refusal.status_code
    per_request = {"X-Request-ID"}
    assert ({k: v for k, v in other.headers.items() if k not in per_request}
            == {k: v for k, v in own_refusal.headers.items() if k not in per_request})
    events = row_count(app, "audit_events")
    with app.app_context():
        assert db.session.get(ApiKey, world["a_key_id"]).enabled is True  # no effect
    assert introspect(client, world["a_key"], world["a_rs"].auth).get_json()["active"] is True
    # Its own account's manager can.
    assert revoke(client, world["a_key"], world["a_manager"].auth).status_code == 200
    assert introspect(client, world["a_key"], world["a_rs"].auth).get_json() == INACTIVE
    assert row_count(app, "audit_events") == events + 1


def test_AC01_a_jwt_is_revoked_only_by_its_own_client(client, world, get_token):
    token = _token(get_token, world["a_sender"])
    for caller in (world["b_manager"], world["b_sender"], world["platform_rs"]):
        assert_clean_error(revoke(client, token, caller.auth), 400, "invalid_grant")
    assert introspect(client, token, world["a_rs"].auth).get_json()["active"] is True


def test_AC04_disabled_account_stops_tokens_keys_and_introspection(
        client, world, tenants, get_token):
    token = _token(get_token, world["a_sender"])
    unknown = get_token("0" * 32, "not a secret")
    tenants.set_enabled(world["a"], False)

    refused = get_token(world["a_sender"].client_id, world["a_sender"].secret)
    assert_clean_error(refused, 401, "invalid_client")
    assert refused.get_json() == unknown.get_json()  # like a client that does not exist
    rs = world["platform_rs"]
    assert introspect(client, token, rs.auth).get_json() == INACTIVE
    assert introspect(client, world["a_key"], rs.auth).get_json() == INACTIVE
    # Its resource server cannot even authenticate any more; account B is untouched.
    assert_clean_error(introspect(client, token, world["a_rs"].auth), 401, "invalid_client")
    assert introspect(client, world["b_key"], world["b_rs"].auth).get_json()["active"] is True
    assert get_token(world["b_sender"].client_id, world["b_sender"].secret).status_code == 200


def test_AC04_enabling_again_restores_clients_and_keys_but_not_old_tokens(
        client, world, tenants, get_token, clock):
    old = _token(get_token, world["a_sender"])
    tenants.set_enabled(world["a"], False)
    clock.advance(2)
    tenants.set_enabled(world["a"], True)
    clock.advance(1)
    new = _token(get_token, world["a_sender"])
    rs = world["platform_rs"]
    assert introspect(client, new, rs.auth).get_json()["active"] is True
    assert introspect(client, world["a_key"], rs.auth).get_json()["active"] is True
    assert introspect(client, old, rs.auth).get_json() == INACTIVE  # issued before the disable


def test_AC04_admin_api_refuses_a_disabled_accounts_token(app, client, world, tenants,
                                                           get_token):
    # The admin API's own audience (AU01).
    token = _token(get_token, world["a_manager"], resource=app.config["ISSUER"])
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/settings/2/api-keys", headers=headers).status_code == 200
    tenants.set_enabled(world["a"], False)
    assert client.get("/settings/2/api-keys", headers=headers).status_code == 401
    tenants.set_enabled(world["a"], True)
    assert client.get("/settings/2/api-keys", headers=headers).status_code == 401  # still old


def test_AC04_feed_version_2_lists_account_changes_once_each(client, world, tenants):
    rs = world["platform_rs"]
    v1 = feed(client, rs.auth).get_json()
    assert v1["version"] == 2 and "accounts" not in v1  # version-1 followers see what they knew
    start = feed(client, rs.auth, accounts_after="0").get_json()
    assert start["accounts"] == [] and start["accounts_cursor"] == 0

    tenants.set_enabled(world["a"], False)
    tenants.set_enabled(world["b"], False)
    tenants.set_enabled(world["a"], True)
    page = feed(client, rs.auth, accounts_after="0").get_json()
    assert [(e["account_id"], e["enabled"]) for e in page["accounts"]] == [
        (world["b"], False), (world["a"], True)]  # each once, at its latest change
    assert all(isinstance(e["disabled_at"], int) for e in page["accounts"])
    later = feed(client, rs.auth, accounts_after=str(page["accounts_cursor"])).get_json()
    assert later["accounts"] == [] and later["accounts_cursor"] == page["accounts_cursor"]


def test_AC01_a_customer_feed_follower_sees_only_its_account(client, world, tenants, get_token):
    a_token = _token(get_token, world["a_sender"])
    b_token = _token(get_token, world["b_sender"])
    assert revoke(client, a_token, world["a_sender"].auth).status_code == 200
    assert revoke(client, b_token, world["b_sender"].auth).status_code == 200
    tenants.set_enabled(world["a"], False)
    tenants.set_enabled(world["a"], True)
    tenants.set_enabled(world["b"], False)
    tenants.set_enabled(world["b"], True)

    seen = feed(client, world["a_rs"].auth, accounts_after="0").get_json()
    assert [e["jti"] for e in seen["revocations"]] == [claims_of(a_token)["jti"]]
    assert [e["account_id"] for e in seen["accounts"]] == [world["a"]]
    everything = feed(client, world["platform_rs"].auth, accounts_after="0").get_json()
    assert len(everything["revocations"]) == 2
    assert {e["account_id"] for e in everything["accounts"]} == {world["a"], world["b"]}


@pytest.mark.parametrize("cursor", ["-1", "x", "²", "1" * 19])
def test_feed_account_cursor_is_validated(client, world, cursor):
    answer = feed(client, world["platform_rs"].auth, accounts_after=cursor)
    assert_clean_error(answer, 400, "invalid_request")


def test_AC03_accounts_manage_only_in_the_platform_account(app, world, oauth_clients):
    from authserver.credentials import clients
    from authserver.web.errors import ValidationError

    platform_manager = make_caller(oauth_clients, "accounts:manage")  # allowed
    assert platform_manager.client_id
    with app.app_context():
        with pytest.raises(ValidationError) as refused:
            clients.create_client(name="x", scope="accounts:manage sms:manage", actor="test",
                                  account_id=world["a"])
        assert "platform account" in refused.value.errors["scopes"][0]
        with pytest.raises(ValidationError) as refused:
            api_keys.create_api_key(name="x", scopes=["accounts:manage"], actor="test",
                                    account_id=world["a"])
        assert "platform account" in refused.value.errors["scopeGuids"][0]
        with pytest.raises(ValidationError):
            clients.update_client(world["a_sender"].client_id, actor="test",
                                  changes={"scopes": ["accounts:manage"]})
        with pytest.raises(ValidationError):
            api_keys.update_api_key(world["a_key_id"], actor="test",
                                    changes={"scopeGuids": ["accounts:manage"]})
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiKey)) == 2


#: Protocol and public routes, and which test above covers each across accounts.
PROTOCOL_ROUTES = {
    ("POST", "/oauth2/token"): "AC02 tokens carry their client's account; AC04 disabled",
    ("POST", "/auth/1/oauth2/token"): "the same view as /oauth2/token",
    ("POST", "/oauth2/introspect"): "AC01 introspection by another account; AC04",
    ("POST", "/oauth2/revoke"): "AC01 revoking another account's key or JWT",
    ("POST", "/oauth2/revocations"): "AC01 a customer feed follower; AC04 feed version 2",
    ("POST", "/oauth2/api-key-fingerprints"): "AC01 a customer follower sees its own keys",
    ("GET", "/.well-known/oauth-authorization-server"): "no account data",
    ("GET", "/.well-known/jwks.json"): "no account data",
    ("GET", "/healthz"): "no account data", ("GET", "/readyz"): "no account data",
    ("GET", "/metrics"): "no account data (labels: outcome, kind, endpoint, route, method)",
    ("GET", "/"): "redirect to the web UI (tests/test_accounts_ui.py)",
    ("GET", "/static/<path:filename>"): "UI assets",
}


def test_AC01_every_protocol_route_is_covered(app):
    """A new route outside the admin API and the web UI fails here until it is placed."""
    routes = {(method, rule.rule) for rule in app.url_map.iter_rules()
              if not rule.endpoint.startswith(("admin_ui.", "admin_api.", "admin_accounts.",
                                               "admin_reach."))
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes == set(PROTOCOL_ROUTES)


def test_AC01_the_auth1_token_path_is_the_same_endpoint(client, world):
    caller = world["a_sender"]
    answer = client.post("/auth/1/oauth2/token", data={"grant_type": "client_credentials"},
                         headers=caller.auth)
    assert answer.status_code == 200
    assert claims_of(answer.get_json()["access_token"])["account_id"] == world["a"]


def test_AC01_key_fingerprints_of_a_customer_follower_are_its_own(client, world, app):
    import base64

    from authserver.oauth2.key_fingerprints import fingerprint_of_hash
    from authserver.storage.models import ApiKey as Key

    def fingerprints(caller, **form):
        answer = client.post("/oauth2/api-key-fingerprints", data=form, headers=caller.auth,
                             content_type="application/x-www-form-urlencoded")
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()

    with app.app_context():
        hashes = {row.id: row.secret_hash for row in db.session.scalars(sa.select(Key))}
    mine = fingerprints(world["a_rs"])
    got = base64.urlsafe_b64decode(mine["fingerprints"])
    assert got == fingerprint_of_hash(hashes[world["a_key_id"]])  # A's one key, not B's
    everything = base64.urlsafe_b64decode(fingerprints(world["platform_rs"])["fingerprints"])
    assert len(everything) == 8 * 2
    # B's activity does not move A's version.
    assert revoke(client, world["b_key"], world["b_manager"].auth).status_code == 200
    assert fingerprints(world["a_rs"], version=mine["version"]) == {
        "version": mine["version"], "unchanged": True}
