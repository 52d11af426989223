"""Accounts in the web UI (issue 13, item 7; threat model AC01), through Flask's test client on
SQLite and PostgreSQL.

Operators belong to an account and see only its keys, clients and audit events: every UI page
that names an object, opened by account B's operator with account A's id, answers exactly like
an id that does not exist and changes nothing. Operators of the platform account get an account
switcher (the current account is on every page) and create, disable and enable accounts. Audit
rows show the actor and the account. A test fails when a UI route is added without being
covered here.
"""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from ui_support import PASSWORD, UI

from authserver.accounts import registry as accounts
from authserver.credentials import api_keys, clients, operators
from authserver.storage.db import db
from authserver.storage.models import Account, ApiKey, AuditEvent, Client

UNKNOWN_KEY = "0123456789ABCDEF0123456789ABCDEF"
UNKNOWN_CLIENT = "0123456789abcdef0123456789abcdef"
UNKNOWN_ACCOUNT = "AAAAAAAAAAAAAAAAAAAAAA"
PER_REQUEST_HEADERS = {"X-Request-ID", "Set-Cookie"}


@pytest.fixture
def app_config():
    return {"UI_LOGIN_RATE_LIMIT": "", "UI_LOGIN_ADDRESS_RATE_LIMIT": ""}


@pytest.fixture
def world(app, tenants):
    """Accounts A and B, an operator in each and one in the platform account; a key and a
    client in A (and their audit events)."""
    a, b = tenants.create("Alpha"), tenants.create("Bravo")
    with app.app_context():
        for username, account_id in (("ann", a), ("bob", b), ("root", None)):
            operators.create_operator(username=username, password=PASSWORD, actor="test",
                                      account_id=account_id)
        key, _ = api_keys.create_api_key(name="alpha key", scopes=["sms:manage"], actor="test",
                                         account_id=a)
        client, _ = clients.create_client(name="alpha client", scope="sms:manage",
                                          actor="test", account_id=a)
        ids = {"key": key.id, "client": client.client_id}
    return {"a": a, "b": b, "platform": tenants.platform(), **ids}


def signed_in(app, username: str) -> UI:
    ui = UI(app.test_client())
    assert ui.sign_in(username).status_code == 303
    return ui


def snapshot(app, account_id: str) -> dict:
    with app.app_context():
        rows = {}
        for model in (ApiKey, Client):
            table = model.__table__
            rows[table.name] = sorted(repr(sorted(row.items())) for row in db.session.execute(
                sa.select(table).where(table.c.account_id == account_id)).mappings())
        rows["account"] = repr(db.session.get(Account, account_id).enabled)
        rows["audit"] = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent))
        return rows


def assert_same_page(other, none) -> None:
    assert other.status_code == none.status_code
    assert other.get_data() == none.get_data()
    assert ({k: v for k, v in other.headers.items() if k not in PER_REQUEST_HEADERS}
            == {k: v for k, v in none.headers.items() if k not in PER_REQUEST_HEADERS})


#: Every UI route that names an object: (method, path, kind of id, form).
BY_ID = [
    ("GET", "/ui/api-keys/{id}", "key", None),
    ("POST", "/ui/api-keys/{id}", "key", {"name": "taken", "scopes": "sms:manage",
                                          "expiration": "", "allowed_ips": ""}),
    ("GET", "/ui/api-keys/{id}/secret", "key", None),
    ("GET", "/ui/api-keys/{id}/disable", "key", None),
    ("POST", "/ui/api-keys/{id}/disable", "key", {}),
    ("GET", "/ui/api-keys/{id}/delete", "key", None),
    ("POST", "/ui/api-keys/{id}/delete", "key", {}),
    ("GET", "/ui/clients/{id}", "client", None),
    ("GET", "/ui/clients/{id}/secret", "client", None),
    ("GET", "/ui/clients/{id}/edit", "client", None),
    ("POST", "/ui/clients/{id}/edit", "client", {"name": "taken", "scopes": "sms:manage",
                                                 "auth_method": "client_secret_basic"}),
    ("GET", "/ui/clients/{id}/rotate-secret", "client", None),
    ("POST", "/ui/clients/{id}/rotate-secret", "client", {"grace_period": "0"}),
    ("GET", "/ui/clients/{id}/disable", "client", None),
    ("POST", "/ui/clients/{id}/disable", "client", {}),
    ("GET", "/ui/clients/{id}/delete", "client", None),
    ("POST", "/ui/clients/{id}/delete", "client", {}),
    ("POST", "/ui/clients/{id}/dpop", "client", {"dpop_bound_access_tokens": "on"}),
    ("POST", "/ui/accounts/{id}/switch", "account", {}),
    ("GET", "/ui/accounts/{id}/disable", "account", None),
    ("POST", "/ui/accounts/{id}/disable", "account", {}),
    ("POST", "/ui/accounts/{id}/enable", "account", {}),
    ("POST", "/ui/operators/{id}/role", "operator", {"role": "viewer"}),
    ("POST", "/ui/operators/{id}/disable", "operator", {}),
    ("POST", "/ui/operators/{id}/enable", "operator", {}),
    ("POST", "/ui/operators/{id}/reset-password", "operator", {}),
    ("POST", "/ui/operators/{id}/reset-2fa", "operator", {}),
    ("GET", "/ui/operators/{id}/one-time-password", "operator", None),
    ("GET", "/ui/operators/{id}/disable", "operator", None),
    ("GET", "/ui/operators/{id}/reset-password", "operator", None),
    ("GET", "/ui/operators/{id}/reset-2fa", "operator", None),
]
#: The other UI routes, and what the battery checks for them.
OTHER_ROUTES = {
    ("GET", "/ui/"), ("GET", "/ui/sign-in"), ("POST", "/ui/sign-in"), ("POST", "/ui/sign-out"),
    ("GET", "/ui/api-keys"), ("GET", "/ui/api-keys/new"), ("POST", "/ui/api-keys/new"),
    ("GET", "/ui/clients"), ("GET", "/ui/clients/new"), ("POST", "/ui/clients/new"),
    ("GET", "/ui/audit"), ("GET", "/ui/accounts"), ("POST", "/ui/accounts/new"),
    ("GET", "/ui/<id>"), ("POST", "/ui/<id>"),  # the UI's own 404 page for unknown paths
    ("GET", "/ui/operators"), ("POST", "/ui/operators/new"),
    # Picking endpoints for a new key or client: no ids; the registered resource servers are
    # platform-wide (tests/test_reach_ui.py).
    ("GET", "/ui/api-keys/new/endpoints"), ("GET", "/ui/clients/new/endpoints"),
    # An operator's own password, second factor and sessions (tests/test_operator_security.py:
    # a session handle only ever finds the signed-in operator's own sessions).
    ("GET", "/ui/sign-in/code"), ("POST", "/ui/sign-in/code"), ("GET", "/ui/security"),
    ("GET", "/ui/security/password"), ("POST", "/ui/security/password"),
    ("POST", "/ui/security/two-factor"), ("POST", "/ui/security/two-factor/confirm"),
    ("GET", "/ui/security/two-factor"), ("GET", "/ui/security/two-factor/recovery-codes"),
    ("POST", "/ui/security/sessions/<id>/end"),
}


def test_AC01_every_ui_route_is_covered_by_the_battery(app):
    routes = {(method, re.sub(r"<[^>]+>", "<id>", rule.rule)) for rule in app.url_map.iter_rules()
              if rule.endpoint.startswith("admin_ui.")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    covered = {(method, path.replace("{id}", "<id>")) for method, path, *_ in BY_ID}
    assert routes == covered | OTHER_ROUTES


@pytest.mark.parametrize("method, path, kind, form", BY_ID, ids=[f"{m} {p}" for m, p, *_ in BY_ID])
def test_AC01_another_accounts_object_is_a_page_that_does_not_exist(app, world, method, path,
                                                                    kind, form):
    bob = signed_in(app, "bob")
    theirs = {"key": world["key"], "client": world["client"], "account": world["a"],
              "operator": "ann"}[kind]
    unknown = {"key": UNKNOWN_KEY, "client": UNKNOWN_CLIENT, "account": UNKNOWN_ACCOUNT,
               "operator": "nobody"}[kind]
    before = snapshot(app, world["a"])

    def send(object_id):
        target = path.format(id=object_id)
        return bob.client.get(target) if method == "GET" else bob.post(target, form)

    other, none = send(theirs), send(unknown)
    assert other.status_code == 404
    assert_same_page(other, none)
    assert snapshot(app, world["a"]) == before
    if kind not in ("account", "operator"):  # A's own operator reaches it
        ann = signed_in(app, "ann")
        assert ann.client.get(path.split("/{id}")[0] + f"/{theirs}").status_code == 200


def test_AC01_lists_and_audit_show_only_the_operators_account(app, world):
    bob = signed_in(app, "bob")
    created = bob.post("/ui/api-keys/new", {"name": "bravo key", "scopes": "sms:manage",
                                            "expiration": "", "allowed_ips": ""},
                       form_page="/ui/api-keys/new")
    assert created.status_code == 303
    keys, clients_page, log = (bob.client.get(path).text
                               for path in ("/ui/api-keys", "/ui/clients", "/ui/audit"))
    assert "bravo key" in keys and "alpha key" not in keys and world["key"] not in keys
    assert "alpha client" not in clients_page and world["client"] not in clients_page
    assert world["key"] not in log and world["client"] not in log and "Bravo" in log
    with app.app_context():
        own = db.session.scalar(sa.select(ApiKey).where(ApiKey.name == "bravo key"))
    assert own.account_id == world["b"]
    # Accounts pages do not exist for a customer's operator, and platform-only scopes are not
    # offered to its accounts.
    assert bob.client.get("/ui/accounts").status_code == 404
    assert "accounts:manage" not in bob.client.get("/ui/api-keys/new").text
    assert 'data-current-account="' + world["b"] in keys and "/ui/accounts" not in keys


def test_platform_operator_switches_accounts_and_sees_which_on_every_page(app, world):
    root = signed_in(app, "root")
    for path in ("/ui/api-keys", "/ui/clients", "/ui/audit", "/ui/accounts"):
        page = root.client.get(path).text
        assert f'data-current-account="{world["platform"]}"' in page, path
        assert "/ui/accounts" in page
    assert "alpha key" not in root.client.get("/ui/api-keys").text  # its own account first
    assert "accounts:manage" in root.client.get("/ui/api-keys/new").text

    switched = root.post(f"/ui/accounts/{world['a']}/switch", form_page="/ui/accounts")
    assert switched.status_code == 303
    for path in ("/ui/api-keys", "/ui/clients", "/ui/audit"):
        page = root.client.get(path).text
        assert f'data-current-account="{world["a"]}"' in page and "Alpha" in page, path
    assert "alpha key" in root.client.get("/ui/api-keys").text
    assert root.client.get(f"/ui/api-keys/{world['key']}").status_code == 200
    assert "accounts:manage" not in root.client.get("/ui/api-keys/new").text

    # A change made there belongs to A, and the audit says who did it from where.
    edit = root.client.get(f"/ui/api-keys/{world['key']}").text
    expiration = re.search(r'name="expiration" value="([^"]*)"', edit).group(1)
    renamed = root.post(f"/ui/api-keys/{world['key']}", {
        "name": "renamed by root", "scopes": "sms:manage", "expiration": expiration,
        "allowed_ips": ""}, form_page=f"/ui/api-keys/{world['key']}")
    assert renamed.status_code == 303
    with app.app_context():
        event = db.session.scalars(sa.select(AuditEvent).where(
            AuditEvent.object_id == world["key"]).order_by(AuditEvent.id.desc())).first()
    assert (event.actor, event.account_id, event.actor_account_id) == (
        "operator:root", world["a"], world["platform"])
    ann_log = signed_in(app, "ann").client.get("/ui/audit").text
    row = ann_log[ann_log.index("operator:root"):]
    assert "from Platform" in row[:400] and "Alpha" in row[:600]


def test_platform_operator_creates_disables_and_enables_accounts(app, world, get_token,
                                                                  oauth_clients):
    root = signed_in(app, "root")
    created = root.post("/ui/accounts/new", {"name": "Charlie"}, form_page="/ui/accounts")
    assert created.status_code == 303
    with app.app_context():
        charlie = db.session.scalar(sa.select(Account).where(Account.name == "Charlie"))
    assert f'data-current-account="{charlie.id}"' in root.client.get("/ui/api-keys").text
    bad = root.post("/ui/accounts/new", {"name": " "}, form_page="/ui/accounts")
    assert bad.status_code == 400 and "must not be empty" in bad.text

    sender = oauth_clients.create(scope="sms:manage", account_id=world["a"])
    step = root.client.get(f"/ui/accounts/{world['a']}/disable")  # asks first, changes nothing
    assert step.status_code == 200 and "Disable account</button>" in step.text
    assert get_token(*sender).status_code == 200
    assert root.post(f"/ui/accounts/{world['a']}/disable",
                     form_page="/ui/accounts").status_code == 303
    assert get_token(*sender).status_code == 401
    ann = UI(app.test_client())
    assert ann.sign_in("ann").status_code == 401  # its operators cannot sign in either
    assert root.post(f"/ui/accounts/{world['a']}/enable",
                     form_page="/ui/accounts").status_code == 303
    assert get_token(*sender).status_code == 200
    refused = root.post(f"/ui/accounts/{world['platform']}/disable", form_page="/ui/accounts")
    assert refused.status_code == 303
    with app.app_context():
        assert accounts.get_account(world["platform"]).enabled is True


def test_AC04_disabling_an_account_ends_its_operators_sessions(app, world, tenants):
    ann = signed_in(app, "ann")
    assert ann.client.get("/ui/api-keys").status_code == 200
    tenants.set_enabled(world["a"], False)
    answer = ann.client.get("/ui/api-keys")
    assert answer.status_code == 303 and answer.headers["Location"].startswith("/ui/sign-in")


def test_a_chosen_account_is_forgotten_at_sign_out(app, world):
    root = signed_in(app, "root")
    root.post(f"/ui/accounts/{world['a']}/switch", form_page="/ui/accounts")
    root.post("/ui/sign-out")
    assert root.sign_in("root").status_code == 303
    assert f'data-current-account="{world["platform"]}"' in root.client.get("/ui/api-keys").text
