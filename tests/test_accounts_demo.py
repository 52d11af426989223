"""The demo API's data is partitioned by account (threat model AC05), on SQLite and PostgreSQL.

Account A sends, schedules and receives messages; account B's credentials (JWTs and API keys)
try every endpoint that reads or changes stored data, with A's real message and bulk ids: B
sees nothing of A, guessed ids answer exactly like unknown ones (404), and nothing of A changes.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import requests
from guard_support import (  # noqa: F401  (fixtures)
    auth_server,
    credentials,
    guard_config,
    running,
)

from authserver.accounts import registry as accounts
from resource_demo.demo.app import create_app as create_demo_app
from resource_demo.demo.storage import AccountStores, DemoStore, seed_inbound

KINDS = ("jwt", "api_key")
SCHEME = {"jwt": "Bearer", "api_key": "App"}
SCOPES = "sms:manage inbound-message:read"


@pytest.fixture
def stores():
    return AccountStores(DemoStore)


@pytest.fixture
def demo(auth_server, credentials, stores):
    """The demo API behind the real guard, over HTTP."""
    app = create_demo_app(guard_config(auth_server, credentials), store=stores)
    with running(app) as url:
        yield url


@pytest.fixture
def two_accounts(auth_server):
    with auth_server.app.app_context():
        return (accounts.create_account(name="A", actor="test").id,
                accounts.create_account(name="B", actor="test").id)


class Caller:
    """Requests to the demo with one credential."""

    def __init__(self, url: str, header: str):
        self.url, self.headers = url, {"Authorization": header}

    def __call__(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, self.url + path, headers=self.headers, timeout=10,
                                **kwargs)


def caller(demo, credentials, kind: str, account_id: str) -> Caller:
    scopes = SCOPES + (" account-management:manage" if kind == "jwt" else "")  # + balance
    credential = credentials.credential(kind, scopes, fresh=True, account_id=account_id)
    return Caller(demo, f"{SCHEME[kind]} {credential}")


@pytest.mark.parametrize("kind", KINDS)
def test_AC05_another_accounts_messages_bulks_and_balance_stay_out_of_reach(
        demo, credentials, two_accounts, stores, kind):
    a_id, b_id = two_accounts
    a, b = caller(demo, credentials, kind, a_id), caller(demo, credentials, kind, b_id)
    sent = a("POST", "/sms/3/messages", json={"messages": [
        {"destinations": [{"to": "41793026727"}], "content": {"text": "for A only"}}]})
    assert sent.status_code == 200
    message_id = sent.json()["messages"][0]["messageId"]
    send_at = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    bulk = a("POST", "/sms/3/messages", json={
        "messages": [{"destinations": [{"to": "41793026728"}], "content": {"text": "later"}}],
        "options": {"schedule": {"bulkId": "a-bulk", "sendAt": send_at}}})
    assert bulk.status_code == 200
    seed_inbound(stores.for_account(a_id), sender="385911234567", to="447860099299",
                 text="to A")
    a_balance = a("GET", "/account/1/balance") if kind == "jwt" else None

    # B reads nothing of A's, whatever it asks for.
    assert b("GET", "/sms/3/logs", params={"messageId": message_id}).json()["results"] == []
    assert b("GET", "/sms/3/logs").json()["results"] == []
    assert b("GET", "/sms/3/reports").json()["results"] == []
    assert b("GET", "/sms/1/inbox/reports").json()["results"] == []
    # A guessed (real) bulk id of A answers exactly like an unknown one.
    for method, path, body in (("GET", "/sms/1/bulks", None),
                               ("PUT", "/sms/1/bulks/status", {"status": "CANCELED"})):
        other = b(method, path, params={"bulkId": "a-bulk"}, json=body)
        unknown = b(method, path, params={"bulkId": "no-such-bulk"}, json=body)
        assert other.status_code == unknown.status_code == 404
        assert other.content == unknown.content
    # B may use the same bulk id for its own (no "already exists" oracle).
    reuse = b("POST", "/sms/3/messages", json={
        "messages": [{"destinations": [{"to": "41793026729"}], "content": {"text": "B's"}}],
        "options": {"schedule": {"bulkId": "a-bulk", "sendAt": send_at}}})
    assert reuse.status_code == 200

    # Nothing of A changed: its bulk still pending, its log, report and inbound message there.
    assert a("GET", "/sms/1/bulks", params={"bulkId": "a-bulk"}).status_code == 200
    assert [r["messageId"] for r in a("GET", "/sms/3/logs").json()["results"]][-1] == message_id
    assert [r["messageId"] for r in a("GET", "/sms/3/reports").json()["results"]] == [message_id]
    assert [m["text"] for m in a("GET", "/sms/1/inbox/reports").json()["results"]] == ["to A"]
    if kind == "jwt":  # balance refuses API keys; each account has its own
        b_balance = b("GET", "/account/1/balance")
        assert a_balance.json()["balance"] == 99.98 and b_balance.json()["balance"] == 99.99


def test_AC05_stores_are_bounded_by_account_count():
    stores = AccountStores(DemoStore, max_accounts=2)
    first = stores.for_account("one")
    stores.for_account("two")
    assert stores.for_account("one") is first  # used again: kept
    stores.for_account("three")  # "two" is the least recently used
    assert stores.for_account("one") is first
    assert stores.for_account(None) is stores.for_account("")
