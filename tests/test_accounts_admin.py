"""The cross-account battery of the admin API (threat model AC01, AC03), on SQLite and PostgreSQL.

For every admin route, account B's caller tries account A's objects: every answer is exactly
the answer for an id that does not exist (status, body, headers; the same SQL statements, so
no timing that tells them apart), nothing of A changes, and listings and the audit log show
nothing of A. The platform account's callers reach A only by naming it (``accountId``), and
manage accounts with ``accounts:manage``. A test fails when a route is added without being
covered here.
"""

from __future__ import annotations

import re
import statistics
import time

import pytest
import sqlalchemy as sa
from credential_actions import sql_statements
from test_reach import demo_manifest
from test_admin_api import (  # noqa: F401 - fixtures used below
    Caller,
    envelope,
    forbidden,
    make_admin,
)

from authserver.credentials import api_keys, clients
from authserver.reach import resource_servers
from authserver.storage.db import db
from authserver.storage.models import Account, ApiKey, AuditEvent, Client

KEYS, CLIENTS, AUDIT, ACCOUNTS = ("/settings/2/api-keys", "/settings/2/oauth-clients",
                                  "/audit/1/logs", "/settings/2/accounts")
MANAGE = "account-management:manage"
UNKNOWN_KEY = "0123456789ABCDEF0123456789ABCDEF"
UNKNOWN_CLIENT = "0123456789abcdef0123456789abcdef"
UNKNOWN_ACCOUNT = "AAAAAAAAAAAAAAAAAAAAAA"
PER_REQUEST_HEADERS = {"X-Request-ID"}


@pytest.fixture
def accounts_world(app, tenants, make_admin):  # noqa: F811 - pytest fixture by name
    """Accounts A and B with a manager each (account-management:manage + sms:manage), one key
    and one client in A, and platform callers: a key manager and an account manager."""
    a, b = tenants.create("A"), tenants.create("B")
    world = {"a": a, "b": b, "platform": tenants.platform(),
             "a_admin": make_admin(f"{MANAGE} sms:manage", account_id=a),
             "b_admin": make_admin(f"{MANAGE} sms:manage", account_id=b),
             "platform_admin": make_admin(f"{MANAGE} sms:manage audit-logs:read"),
             "accounts_admin": make_admin("accounts:manage")}
    with app.app_context():
        key, _ = api_keys.create_api_key(name="a key", scopes=["sms:manage"], actor="test",
                                         account_id=a)
        client, _ = clients.create_client(name="a client", scope="sms:manage", actor="test",
                                          account_id=a)
        world["a_key"], world["a_client"] = key.id, client.client_id
        # A registered resource server (platform-wide), for the reach and narrowest routes.
        resource_servers.register_resource_server("demo", demo_manifest(), actor="test")
    return world


def snapshot(app, account_id: str) -> dict:
    """Every stored row of ``account_id`` (keys, clients, the account) and the audit count."""
    with app.app_context():
        rows = {}
        for model in (ApiKey, Client):
            rows[model.__tablename__] = sorted(
                repr(sorted(row.items())) for row in db.session.execute(
                    sa.select(model.__table__).where(model.__table__.c.account_id == account_id)
                ).mappings())
        rows["account"] = repr(sorted(db.session.execute(
            sa.select(Account.__table__).where(Account.id == account_id)).mappings().one().items()))
        rows["audit"] = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent))
        return rows


def assert_same_answer(other, none) -> None:
    """Two answers a caller cannot tell apart: status, body and headers (but the request id)."""
    assert other.status_code == none.status_code, (other.status_code, none.status_code)
    assert other.get_data() == none.get_data()
    same = {k: v for k, v in other.headers.items() if k not in PER_REQUEST_HEADERS}
    assert same == {k: v for k, v in none.headers.items() if k not in PER_REQUEST_HEADERS}


def normalized(statements: list[str]) -> list[str]:
    """SQL statements with literals and savepoint names blurred (the shapes that were run)."""
    return [re.sub(r"'[^']*'|\b\d+\b", "?", statement) for statement in statements]


def call(caller: Caller, method: str, path: str, body=None, **query):
    if method == "GET":
        return caller.get(path, query_string=query)
    if method == "PUT":
        return caller.put(path, body, query_string=query)
    if method == "PATCH":
        return caller.patch(path, body, query_string=query)
    if method == "DELETE":
        return caller.delete(path, query_string=query)
    return caller.post(path, body, query_string=query)


# Every admin route with an object id: (method, path with {id}, kind, body).
BY_ID = [
    ("GET", KEYS + "/{id}", "key", None),
    ("PUT", KEYS + "/{id}", "key", {"name": "taken over"}),
    ("PUT", KEYS + "/{id}", "key", {"enabled": False}),  # disable = revoke
    ("PUT", KEYS + "/{id}", "key", {"scopeGuids": ["sms:manage"]}),
    ("PATCH", KEYS + "/{id}", "key", {"name": "taken over"}),
    ("DELETE", KEYS + "/{id}", "key", None),
    ("GET", CLIENTS + "/{id}", "client", None),
    ("PUT", CLIENTS + "/{id}", "client", {
        "name": "taken over", "scopes": ["sms:manage"], "audiences": [], "tokenTtl": None,
        "authMethod": "client_secret_basic", "enabled": False}),
    ("PATCH", CLIENTS + "/{id}", "client", {"name": "taken over"}),
    ("PATCH", CLIENTS + "/{id}", "client", {"enabled": False}),
    ("DELETE", CLIENTS + "/{id}", "client", None),
    ("POST", CLIENTS + "/{id}/rotate-secret", "client", {}),
    ("GET", KEYS + "/{id}/reach", "key", None),
    ("GET", CLIENTS + "/{id}/reach", "client", None),
]
# Every admin route that acts in an account without naming an object.
IN_ACCOUNT = [
    ("GET", KEYS, None), ("POST", KEYS, {"name": "planted", "scopeGuids": ["sms:manage"]}),
    ("GET", CLIENTS, None),
    ("POST", CLIENTS, {"name": "planted", "scopes": ["sms:manage"]}),
    ("GET", AUDIT, None),
    ("POST", "/settings/2/scopes/narrowest", {"endpoints": [
        {"resourceServer": "demo", "method": "GET", "path": "/sms/3/logs"}]}),
]
ACCOUNT_ROUTES = [("GET", ACCOUNTS, None), ("POST", ACCOUNTS, {"name": "planted"}),
                  ("GET", ACCOUNTS + "/{id}", None), ("PUT", ACCOUNTS + "/{id}", {"enabled": False})]


def test_AC01_every_admin_route_is_covered_by_the_battery(app):
    covered = {(method, path.replace("{id}", "<id>")) for method, path, *_ in
               BY_ID + IN_ACCOUNT + ACCOUNT_ROUTES}
    covered |= {("GET", "/settings/2/scopes"), ("GET", "/openapi.json")}  # hold no account data
    # Resource servers are platform-wide: no account data; writes are the platform's only
    # (tests/test_reach.py::test_only_the_platform_registers).
    covered |= {("GET", "/settings/2/resource-servers"),
                ("GET", "/settings/2/resource-servers/<id>"),
                ("PUT", "/settings/2/resource-servers/<id>"),
                ("DELETE", "/settings/2/resource-servers/<id>")}
    routes = {(method, re.sub(r"<[^>]+>", "<id>", rule.rule)) for rule in app.url_map.iter_rules()
              if rule.rule.startswith(("/settings/", "/audit/", "/openapi"))
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes == covered


@pytest.mark.parametrize("method, path, kind, body", BY_ID,
                         ids=[f"{m} {p} {b}" for m, p, _, b in BY_ID])
def test_AC01_another_accounts_object_answers_like_no_object(app, accounts_world, method, path,
                                                             kind, body):
    b_admin = accounts_world["b_admin"]
    theirs = accounts_world["a_key" if kind == "key" else "a_client"]
    unknown = UNKNOWN_KEY if kind == "key" else UNKNOWN_CLIENT
    before = snapshot(app, accounts_world["a"])
    call(b_admin, "GET", path.split("/{id}")[0])  # warm: key and token caches filled
    with sql_statements(app) as other_sql:
        other = call(b_admin, method, path.format(id=theirs), body)
    with sql_statements(app) as none_sql:
        none = call(b_admin, method, path.format(id=unknown), body)
    assert other.status_code == 404 and other.get_json() == envelope("NOT_FOUND")
    assert_same_answer(other, none)
    assert normalized(other_sql) == normalized(none_sql)  # the same work: nothing to time
    assert snapshot(app, accounts_world["a"]) == before  # no effect
    # ... while its own account's caller reaches it.
    assert call(accounts_world["a_admin"], "GET", path.split("/{id}")[0] + f"/{theirs}"
                ).status_code == 200


@pytest.mark.parametrize("method, path, body", IN_ACCOUNT, ids=[f"{m} {p}" for m, p, _ in IN_ACCOUNT])
def test_AC01_naming_another_account_answers_like_no_account(app, accounts_world, method, path,
                                                             body):
    b_admin = accounts_world["b_admin"]
    before = snapshot(app, accounts_world["a"])
    other = call(b_admin, method, path, body, accountId=accounts_world["a"])
    none = call(b_admin, method, path, body, accountId=UNKNOWN_ACCOUNT)
    malformed = call(b_admin, method, path, body, accountId="../" + accounts_world["a"])
    assert other.status_code == 404 and other.get_json() == envelope("NOT_FOUND")
    assert_same_answer(other, none)
    assert_same_answer(other, malformed)
    assert snapshot(app, accounts_world["a"]) == before
    # The platform account's callers may name an account that exists (and only such).
    platform = accounts_world["platform_admin"]
    assert call(platform, method, path, body, accountId=UNKNOWN_ACCOUNT).status_code == 404
    assert call(platform, method, path, body,
                accountId=accounts_world["a"]).status_code in (200, 201)


def test_AC01_listings_and_audit_show_only_the_callers_account(app, accounts_world):
    b_admin = accounts_world["b_admin"]
    own = b_admin.post(KEYS, {"name": "b key", "scopeGuids": ["sms:manage"]}).get_json()
    keys = b_admin.get(KEYS).get_json()["apiKeys"]
    assert [key["id"] for key in keys] == [own["id"]]
    assert {key["accountId"] for key in keys} == {accounts_world["b"]}
    listed = b_admin.get(CLIENTS).get_json()["oauthClients"]
    assert {c["accountId"] for c in listed} == {accounts_world["b"]}
    assert accounts_world["a_client"] not in {c["clientId"] for c in listed}
    logs = b_admin.get(AUDIT, query_string={"size": 100}).get_json()["logs"]
    assert logs and {event["accountId"] for event in logs} == {accounts_world["b"]}
    # Filters do not reach across either.
    for query in ({"objectId": accounts_world["a_key"]}, {"objectType": "oauth-client"},
                  {"actor": "test"}):
        found = b_admin.get(AUDIT, query_string=query).get_json()["logs"]
        assert all(event["accountId"] == accounts_world["b"] for event in found)
    assert not b_admin.get(KEYS, query_string={"name": "a key"}).get_json()["apiKeys"]


def test_AC01_platform_caller_acts_in_a_named_account_and_the_audit_says_so(app, accounts_world):
    platform, a = accounts_world["platform_admin"], accounts_world["a"]
    created = platform.post(KEYS, {"name": "for A", "scopeGuids": ["sms:manage"]},
                            query_string={"accountId": a})
    assert created.status_code == 201 and created.get_json()["accountId"] == a
    key_id = created.get_json()["id"]
    # Without accountId the platform caller acts in its own account: A's key is not there.
    assert platform.get(f"{KEYS}/{key_id}").status_code == 404
    assert platform.get(f"{KEYS}/{key_id}", query_string={"accountId": a}).status_code == 200
    changed = platform.put(f"{KEYS}/{key_id}", {"name": "renamed"}, query_string={"accountId": a})
    assert changed.status_code == 200
    with app.app_context():
        events = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.object_id == key_id)
                                    .order_by(AuditEvent.id)).all()
    platform_id = accounts_world["platform"]
    assert [(e.action, e.account_id, e.actor_account_id) for e in events] == [
        ("create", a, platform_id), ("update", a, platform_id)]
    # A sees what happened to its key; the platform sees it in A's log and in its own.
    for viewer, query in ((accounts_world["a_admin"], {}), (platform, {"accountId": a}),
                          (platform, {})):
        logs = viewer.get(AUDIT, query_string={**query, "objectId": key_id}).get_json()["logs"]
        assert [(e["actorAccountId"], e["accountId"]) for e in logs] == [(platform_id, a)] * 2
    # The privilege rule holds across accounts too: nobody grants what it does not hold.
    assert platform.post(KEYS, {"name": "x", "scopeGuids": ["email:manage"]},
                         query_string={"accountId": a}).status_code == 403


def test_AC03_accounts_manage_is_refused_outside_the_platform_account(app, accounts_world):
    a_admin = accounts_world["a_admin"]
    for path, body in ((KEYS, {"name": "x", "scopeGuids": ["accounts:manage"]}),
                       (CLIENTS, {"name": "x", "scopes": ["accounts:manage"]})):
        refused = a_admin.post(path, body)
        assert refused.status_code in (400, 403)
    # Even a platform caller cannot put it into a customer account (a clear 400).
    platform = accounts_world["platform_admin"]
    with app.app_context():
        from authserver.credentials import clients as service
        service.update_client(platform.client_id, actor="test",
                              changes={"scopes": [MANAGE, "sms:manage", "accounts:manage"]})
    refused = platform.post(CLIENTS, {"name": "x", "scopes": ["accounts:manage"]},
                            query_string={"accountId": accounts_world["a"]})
    errors = refused.get_json()["requestError"]["serviceException"]["validationErrors"]
    assert refused.status_code == 400 and "platform account" in errors["scopes"][0]


@pytest.mark.parametrize("method, path, body", ACCOUNT_ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in ACCOUNT_ROUTES])
def test_AC01_AC03_customer_callers_cannot_reach_account_management(app, accounts_world, method,
                                                                    path, body):
    b_admin = accounts_world["b_admin"]
    before = snapshot(app, accounts_world["a"])
    other = call(b_admin, method, path.format(id=accounts_world["a"]), body)
    none = call(b_admin, method, path.format(id=UNKNOWN_ACCOUNT), body)
    assert other.status_code == 403
    assert other.get_json() == forbidden(["accounts:manage"], any_of=True)
    assert_same_answer(other, none)
    assert snapshot(app, accounts_world["a"]) == before


def test_accounts_endpoints_create_list_show_rename_disable_enable(app, accounts_world, client,
                                                                   oauth_clients, get_token):
    admin = accounts_world["accounts_admin"]
    created = admin.post(ACCOUNTS, {"name": "  Customer C  "})
    assert created.status_code == 201
    account = created.get_json()
    assert account["name"] == "Customer C" and account["enabled"] is True
    assert account["platform"] is False and re.fullmatch(r"[A-Za-z0-9]{22}", account["id"])
    listed = admin.get(ACCOUNTS, query_string={"size": 100}).get_json()
    assert listed["accounts"][0]["platform"] is True  # the platform account leads
    assert account["id"] in {row["id"] for row in listed["accounts"]}
    assert admin.get(ACCOUNTS, query_string={"enabled": "false"}).get_json()["accounts"] == []
    assert admin.get(f"{ACCOUNTS}/{account['id']}").get_json() == account
    assert admin.get(f"{ACCOUNTS}/{UNKNOWN_ACCOUNT}").status_code == 404

    sender = oauth_clients.create(scope="sms:manage", account_id=account["id"])
    assert get_token(*sender).status_code == 200
    renamed = admin.put(f"{ACCOUNTS}/{account['id']}", {"name": "C", "enabled": False})
    assert renamed.status_code == 200
    assert renamed.get_json()["enabled"] is False and renamed.get_json()["disabledAt"]
    assert get_token(*sender).status_code == 401  # stopped everywhere
    assert admin.put(f"{ACCOUNTS}/{account['id']}", {"enabled": True}).status_code == 200
    assert get_token(*sender).status_code == 200

    platform_id = accounts_world["platform"]
    refused = admin.put(f"{ACCOUNTS}/{platform_id}", {"enabled": False})
    assert refused.status_code == 400 and "platform account" in str(refused.get_json())
    for bad in ({}, {"name": ""}, {"enabled": "false"}, {"platform": True}, {"id": "x"}):
        assert admin.put(f"{ACCOUNTS}/{account['id']}", bad).status_code == 400, bad
    for bad in ({}, {"name": 5}, {"name": "x" * 201}, {"name": "ok", "enabled": False}):
        assert admin.post(ACCOUNTS, bad).status_code == 400, bad
    with app.app_context():
        actions = db.session.scalars(sa.select(AuditEvent.action).where(
            AuditEvent.object_id == account["id"]).order_by(AuditEvent.id)).all()
    assert actions == ["create", "disable", "enable"]


def test_accounts_manage_is_needed_for_account_endpoints(accounts_world):
    platform = accounts_world["platform_admin"]  # account-management:manage is not enough
    answer = platform.get(ACCOUNTS)
    assert answer.status_code == 403
    assert 'scope="accounts:manage"' in answer.headers["WWW-Authenticate"]


@pytest.mark.parametrize("kind", ["key", "client"])
def test_AC01_timing_of_another_accounts_id_matches_an_unknown_id(app, accounts_world, kind):
    """Interleaved GETs of another account's id and of an unknown one take the same time (the
    statements are the same, see above; this measures it). Compared: the fastest of each, and
    the lower quartiles, since load on a shared machine only ever adds time."""
    b_admin = accounts_world["b_admin"]
    path = KEYS if kind == "key" else CLIENTS
    theirs = accounts_world["a_key" if kind == "key" else "a_client"]
    unknown = UNKNOWN_KEY if kind == "key" else UNKNOWN_CLIENT
    samples = {theirs: [], unknown: []}
    for _ in range(3):  # warm up both paths
        b_admin.get(f"{path}/{theirs}"), b_admin.get(f"{path}/{unknown}")
    for _ in range(80):
        for object_id in (theirs, unknown):
            started = time.perf_counter()
            assert b_admin.get(f"{path}/{object_id}").status_code == 404
            samples[object_id].append(time.perf_counter() - started)
    for pick in (min, lambda values: statistics.quantiles(values, n=4)[0]):
        other, none = pick(samples[theirs]), pick(samples[unknown])
        assert abs(other - none) < max(0.3 * min(other, none), 0.002), (other, none)


@pytest.mark.parametrize("path, body", [
    (KEYS + "/{key}", {"accountId": "{b}"}), (CLIENTS + "/{client}", {"accountId": "{b}"}),
    (KEYS + "/{key}", {"account_id": "{b}"}), (CLIENTS + "/{client}", {"account_id": "{b}"})])
def test_AC01_records_never_move_between_accounts(app, accounts_world, path, body):
    """An account in a body is refused by name (AD03): keys and clients stay where they are."""
    a_admin = accounts_world["a_admin"]
    target = path.format(key=accounts_world["a_key"], client=accounts_world["a_client"])
    before = snapshot(app, accounts_world["a"])
    send = a_admin.put if path.startswith(KEYS) else a_admin.patch  # a client's PUT is whole
    refused = send(target, {name: value.format(b=accounts_world["b"])
                            for name, value in body.items()})
    assert refused.status_code == 400
    assert set(refused.get_json()["requestError"]["serviceException"]["validationErrors"]) \
        == set(body)
    assert snapshot(app, accounts_world["a"]) == before
    planted = a_admin.post(KEYS, {"name": "x", "scopeGuids": ["sms:manage"],
                                  "accountId": accounts_world["b"]})
    assert planted.status_code == 400
