"""Accounts at a running resource guard, on Flask and on FastAPI (the contract suite), against a
live authorization server on SQLite and PostgreSQL (threat model AC02, AC04).

The principal exposes the credential's account; disabling an account is felt by a running guard
within the feed interval (measured, and reported in docs/security.md); enabling it again lets new
tokens in while tokens issued before the disable stay refused. The feed's account members are
versioned: a guard and a server of different versions still work together.
"""

from __future__ import annotations

import time

import jwt
import pytest
import requests
from guard_support import (  # noqa: F401  (fixtures)
    UNAUTHORIZED,
    auth_server,
    create_guarded_app,
    credentials,
    framework,
    guard_config,
    running,
    start,
    wait_for,
)

from authserver.accounts import registry as accounts
from resource_demo.guard.revocation import RevocationList
from resource_demo.guard.server_client import ServerUnavailable

#: DESIGN: a revoked JWT is refused within 5 s; the guard polls every 2 s by default.
FEED_LIMIT = 5.0


@pytest.fixture
def account(auth_server):
    """``account(name)``: a new customer account at the live server; ``account.set(id, on)``."""
    app = auth_server.app

    def create(name: str = "customer") -> str:
        with app.app_context():
            return accounts.create_account(name=name, actor="test").id

    def set_enabled(account_id: str, enabled: bool) -> None:
        with app.app_context():
            accounts.set_enabled(account_id, enabled, actor="test")

    create.set = set_enabled
    return create


def get(url: str, path: str, credential: str, scheme: str = "Bearer") -> requests.Response:
    return requests.get(url + path, headers={"Authorization": f"{scheme} {credential}"},
                        timeout=10)


def test_AC02_principal_carries_the_account(start, credentials, account, auth_server):
    app = start()
    a = account("A")
    token = credentials.jwt("sms:manage", fresh=True, account_id=a)
    key = credentials.api_key("sms:manage", fresh=True, account_id=a)
    assert get(app.url, "/account", token).json()["account_id"] == a
    assert get(app.url, "/account", key, "App").json()["account_id"] == a
    with auth_server.app.app_context():
        platform = accounts.platform_account_id()
    own = credentials.jwt("sms:manage", fresh=True)
    assert get(app.url, "/account", own).json()["account_id"] == platform


def test_AC04_running_guard_refuses_a_disabled_accounts_credentials_within_the_interval(
        start, credentials, account, request):
    app = start()  # GUARD_REVOCATION_POLL_SECONDS: default 2
    a, b = account("A"), account("B")
    token = credentials.jwt("sms:manage", fresh=True, account_id=a)
    key = credentials.api_key("sms:manage", fresh=True, account_id=a)
    other = credentials.jwt("sms:manage", fresh=True, account_id=b)
    for credential, scheme in ((token, "Bearer"), (key, "App"), (other, "Bearer")):
        assert get(app.url, "/sms", credential, scheme).status_code == 200

    disabled_at = time.monotonic()
    account.set(a, False)
    took_jwt = wait_for(lambda: get(app.url, "/sms", token).status_code == 401, FEED_LIMIT)
    took_key = wait_for(lambda: get(app.url, "/sms", key, "App").status_code == 401,
                        FEED_LIMIT + 0.5 - (time.monotonic() - disabled_at))
    refused = get(app.url, "/sms", token)
    assert refused.status_code == 401 and refused.text == UNAUTHORIZED
    assert get(app.url, "/sms", other).status_code == 200  # account B untouched
    request.node.user_properties.append(
        ("observed", f"disable -> JWT refused after {took_jwt:.2f} s, API key after "
                     f"{took_key:.2f} s more (limit {FEED_LIMIT:.0f} s, poll 2 s)"))
    assert took_jwt < FEED_LIMIT


def test_AC04_enabling_again_admits_new_tokens_only(start, credentials, account):
    app = start(GUARD_REVOCATION_POLL_SECONDS=0.5)
    a = account("A")
    client_id, secret = credentials.client("sms:manage", fresh=True, account_id=a)
    old = credentials.token_response(client_id, secret).json()["access_token"]
    account.set(a, False)
    wait_for(lambda: get(app.url, "/sms", old).status_code == 401, FEED_LIMIT)
    time.sleep(1.1)  # a new token's iat must be after the disable's second
    account.set(a, True)
    new = credentials.token_response(client_id, secret).json()["access_token"]
    assert jwt.decode(new, options={"verify_signature": False})["iat"] > \
        jwt.decode(old, options={"verify_signature": False})["iat"]
    wait_for(lambda: get(app.url, "/sms", new).status_code == 200, FEED_LIMIT)
    assert get(app.url, "/sms", old).status_code == 401  # issued before the disable


def test_AC04_a_guard_without_the_feed_check_relies_on_introspection(start, credentials,
                                                                     account):
    """GUARD_INTROSPECT_JWTS: the server's own answer refuses at once, no feed needed."""
    app = start(GUARD_INTROSPECT_JWTS=True, GUARD_REVOCATION_POLL_SECONDS=3600)
    a = account("A")
    token = credentials.jwt("sms:manage", fresh=True, account_id=a)
    assert get(app.url, "/sms", token).status_code == 200
    account.set(a, False)
    assert get(app.url, "/sms", token).status_code == 401


# -- version tolerance (no server needed) -----------------------------------------------------

def v1_page(**members) -> dict:
    return {"revocations": [], "cursor": 0, "has_more": False, **members}


def test_AC04_new_guard_with_a_version_1_server_keeps_working():
    revocations = RevocationList()
    assert revocations.accounts_cursor == 0  # it asks for account changes
    assert revocations.apply(v1_page()) is False
    assert revocations.follows_accounts is False and revocations.accounts_cursor is None
    assert not revocations.refuses_account({"account_id": "A" * 22, "iat": 1})


def test_AC04_account_changes_apply_latest_state_and_disable_time():
    revocations = RevocationList()
    revocations.apply(v1_page(version=2, accounts_cursor=3, accounts=[
        {"account_id": "a", "enabled": False, "disabled_at": 100},
        {"account_id": "b", "enabled": True, "disabled_at": 200}]))
    assert revocations.accounts_cursor == 3
    assert revocations.refuses_account({"account_id": "a", "iat": 500})  # disabled
    assert revocations.refuses_account({"account_id": "b", "iat": 200})  # issued before
    assert not revocations.refuses_account({"account_id": "b", "iat": 201})
    assert not revocations.refuses_account({"account_id": "c", "iat": 1})  # never changed
    assert not revocations.refuses_account({"iat": 1})  # a token from before accounts
    revocations.apply(v1_page(version=2, accounts_cursor=4, accounts=[
        {"account_id": "a", "enabled": True, "disabled_at": 100}]))
    assert not revocations.refuses_account({"account_id": "a", "iat": 101})


@pytest.mark.parametrize("accounts_member", [
    {"accounts": "x", "accounts_cursor": 1},
    {"accounts": [], "accounts_cursor": "1"},
    {"accounts": [{"account_id": "a", "enabled": "no"}], "accounts_cursor": 1},
    {"accounts": [{"account_id": 5, "enabled": False}], "accounts_cursor": 1},
    {"accounts": [{"account_id": "a", "enabled": False, "disabled_at": "x"}],
     "accounts_cursor": 1},
])
def test_AC04_malformed_account_changes_are_an_unavailable_feed(accounts_member):
    with pytest.raises(ServerUnavailable):
        RevocationList().apply(v1_page(version=2, **accounts_member))
