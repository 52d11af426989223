"""Operator roles (owner, admin, viewer) in the web UI and the ``authserver operators``
commands: every write checked on the server, the last owner kept, password resets, audit."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa
from ui_support import HOSTILE_NAME, PASSWORD, UI, csrf_from

from authserver.admin.cli import main
from authserver.admin.ui.operators import SELF_SERVICE
from authserver.credentials import api_keys, clients, operators
from authserver.storage.db import db
from authserver.storage.models import ApiKey, AuditEvent, Client, Operator, OperatorSession

NO_LOGIN_LIMITS = {"UI_LOGIN_RATE_LIMIT": "", "UI_LOGIN_ADDRESS_RATE_LIMIT": ""}
TEMPORARY_RE = re.compile(r'id="temporary-password" value="([^"]+)"')
NEW_PASSWORD = "a brand new passphrase 42"


@pytest.fixture
def app_config():
    return dict(NO_LOGIN_LIMITS)


def cli(runner, *args, input=None):
    """Run ``authserver operators ARGS``."""
    return runner.invoke(main, ["operators", *args], input=input)


def make(app, username: str, role: str | None = None, account_id: str | None = None) -> None:
    with app.app_context():
        operators.create_operator(username=username, password=PASSWORD, actor="test",
                                  role=role, account_id=account_id)


def signed_in(app, username: str) -> UI:
    ui = UI(app.test_client())
    assert ui.sign_in(username).status_code == 303
    return ui


def snapshot(app) -> dict:
    """Everything a refused request must leave as it was."""
    with app.app_context():
        return {
            "operators": sorted((o.username, o.role, o.enabled, o.password_hash,
                                 o.must_change_password, o.totp_confirmed_at)
                                for o in db.session.scalars(sa.select(Operator))),
            "keys": sorted((k.id, k.name, k.enabled) for k in db.session.scalars(
                sa.select(ApiKey))),
            "clients": sorted((c.client_id, c.enabled, c.secret_hash)
                              for c in db.session.scalars(sa.select(Client))),
            "audit": db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)),
            "sessions": db.session.scalar(sa.select(sa.func.count())
                                          .select_from(OperatorSession)),
        }


def audit_actions(app) -> list[tuple[str, str, dict]]:
    with app.app_context():
        return [(e.actor, e.action, e.changes) for e in db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.object_type == "operator")
            .order_by(AuditEvent.id))]


def role_of(app, username: str) -> str:
    with app.app_context():
        return operators.get_operator(username).role


# -- the model ---------------------------------------------------------------------------------

def test_first_operator_of_an_account_is_its_owner_later_ones_admins(app, tenants):
    customer = tenants.create("Acme")
    make(app, "alice")
    make(app, "bob")
    make(app, "carol", account_id=customer)
    make(app, "dave", role="viewer", account_id=customer)
    assert [role_of(app, name) for name in ("alice", "bob", "carol", "dave")] == [
        "owner", "admin", "owner", "viewer"]


@pytest.mark.parametrize("role", ["", "Owner", "root", "owner ", None if False else "viewer\x00",
                                  HOSTILE_NAME])
def test_unknown_roles_are_refused(app, role):
    with app.app_context(), pytest.raises(operators.ValidationError) as raised:
        operators.create_operator(username="alice", password=PASSWORD, actor="test", role=role)
    assert "role" in raised.value.errors


# -- CLI -----------------------------------------------------------------------------------------

def test_cli_roles_list_and_audit(app, runner):
    assert cli(runner, "create", "--username", "alice", "--password-stdin",
               input=PASSWORD + "\n").exit_code == 0
    created = cli(runner, "create", "--username", "bob", "--password-stdin", "--role", "viewer",
                  "--json", input=PASSWORD + "\n")
    assert created.exit_code == 0, created.output
    row = json.loads(created.output)
    assert row["role"] == "viewer" and row["twoFactor"] is False
    assert set(row) == {"username", "accountId", "role", "enabled", "twoFactor",
                        "mustChangePassword", "passwordChangedAt", "createdAt"}

    result = cli(runner, "set-role", "BOB", "admin", "--json")
    assert result.exit_code == 0 and json.loads(result.output)["role"] == "admin"
    listed = json.loads(cli(runner, "list", "--json").output)
    assert [(r["username"], r["role"]) for r in listed] == [("alice", "owner"), ("bob", "admin")]
    text = cli(runner, "list").output
    assert re.search(r"^alice\s+\S+\s+owner\s+enabled", text, re.M)
    assert ("cli", "set-role", {"role": {"before": "viewer", "after": "admin"}}) \
        in audit_actions(app)


def test_cli_refuses_bad_roles_and_unknown_operators(app, runner):
    make(app, "alice")
    result = cli(runner, "set-role", "alice", "root")
    assert result.exit_code == 2 and "root" in result.output
    for args in (("set-role", "nobody", "viewer"), ("reset-password", "nobody"),
                 ("reset-2fa", "nobody"), ("disable", "nobody")):
        result = cli(runner, *args)
        assert result.exit_code == 1 and "error: not found" in result.output, args
    assert "Traceback" not in result.output


def test_UI13_the_last_owner_is_never_demoted_or_disabled(app, runner):
    make(app, "alice")
    make(app, "bob", role="admin")
    before = snapshot(app)
    for args in (("set-role", "alice", "viewer"), ("set-role", "alice", "admin"),
                 ("disable", "alice")):
        result = cli(runner, *args)
        assert result.exit_code == 1 and "last owner" in result.output, args
    assert snapshot(app) == before

    assert cli(runner, "set-role", "bob", "owner").exit_code == 0
    assert cli(runner, "set-role", "alice", "viewer").exit_code == 0
    assert cli(runner, "disable", "bob").exit_code == 1  # now bob is the last owner
    assert role_of(app, "bob") == "owner"


def test_a_disabled_owner_does_not_count_as_the_other_owner(app, runner):
    make(app, "alice")
    make(app, "bob", role="owner")
    assert cli(runner, "disable", "bob").exit_code == 0
    result = cli(runner, "set-role", "alice", "admin")
    assert result.exit_code == 1 and "last owner" in result.output


def test_owners_of_another_account_do_not_count(app, runner, tenants):
    customer = tenants.create("Acme")
    make(app, "alice")
    make(app, "carol", account_id=customer)
    assert cli(runner, "set-role", "carol", "admin").exit_code == 1
    assert cli(runner, "set-role", "alice", "admin").exit_code == 1


def test_UI14_cli_reset_password_prints_a_one_time_password_and_forces_a_change(app, runner, client):
    make(app, "alice")
    ui = signed_in(app, "alice")
    result = cli(runner, "reset-password", "alice")
    assert result.exit_code == 0, result.output
    temporary = re.search(r"temporary password: (\S+)", result.output).group(1)
    assert len(temporary) >= 20
    with app.app_context():
        assert operators.authenticate("alice", PASSWORD) is None
        assert operators.authenticate("alice", temporary) is not None
        assert db.session.scalar(sa.select(sa.func.count()).select_from(OperatorSession)) == 0
    # The old session is dead; the temporary password leads to the change form first.
    assert ui.client.get("/ui/api-keys").status_code == 303
    again = UI(client)
    assert again.sign_in("alice", temporary).status_code == 303
    response = client.get("/ui/api-keys")
    assert response.status_code == 303 and response.headers["Location"] == "/ui/security/password"
    assert client.post("/ui/api-keys/new", data={"csrf_token": csrf_from(
        client.get("/ui/security/password").text), "name": "k",
        "scopes": "sms:message:send"}).headers["Location"] == "/ui/security/password"
    token = again.token("/ui/security/password")
    response = client.post("/ui/security/password", data={
        "csrf_token": token, "current_password": temporary, "password": NEW_PASSWORD})
    assert response.status_code == 303
    assert client.get("/ui/api-keys").status_code == 200
    with app.app_context():
        operator = operators.get_operator("alice")
        assert not operator.must_change_password and operator.password_changed_at
    actions = [action for _, action, _ in audit_actions(app)]
    assert actions[-2:] == ["reset-password", "change-password"]
    assert temporary not in json.dumps(audit_actions(app))


def test_cli_reset_password_from_stdin_and_json(app, runner):
    make(app, "alice")
    result = cli(runner, "reset-password", "alice", "--password-stdin", "--json",
                 input="chosen by the admin 1\n")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["mustChangePassword"] is True and "temporaryPassword" not in data
    with app.app_context():
        assert operators.authenticate("alice", "chosen by the admin 1") is not None
    generated = json.loads(cli(runner, "reset-password", "alice", "--json").output)
    assert len(generated["temporaryPassword"]) == operators.TEMPORARY_LENGTH
    short = cli(runner, "reset-password", "alice", "--password-stdin", input="short\n")
    assert short.exit_code == 1 and "error: password:" in short.output
    with app.app_context():
        assert operators.authenticate("alice", generated["temporaryPassword"]) is not None


# -- web UI: who may write what -----------------------------------------------------------------

def write_routes(app) -> list[tuple[str, str]]:
    """Every POST route of the web UI except an operator's self-service ones, with dummy
    arguments (the role check comes before the view looks at them)."""
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin_ui.") or "POST" not in rule.methods:
            continue
        if rule.endpoint in SELF_SERVICE:
            continue
        path = rule.rule
        for argument in rule.arguments:
            path = path.replace(f"<{argument}>", "x").replace(f"<path:{argument}>", "x")
        path = re.sub(r"<[^>]+>", "x", path)
        routes.append((rule.endpoint, path))
    assert len(routes) >= 10
    return sorted(routes)


def test_UI12_a_viewer_reads_every_page_but_every_write_is_403(app):
    make(app, "alice")
    make(app, "vera", role="viewer")
    with app.app_context():
        key_id = api_keys.create_api_key(name="key", scopes="sms:message:send",
                                         actor="test")[0].id
        client_id = clients.create_client(name="svc", scope="message:send",
                                          actor="test")[0].client_id
    viewer = signed_in(app, "vera")
    for page in ("/ui/api-keys", f"/ui/api-keys/{key_id}", "/ui/clients",
                 f"/ui/clients/{client_id}", "/ui/audit", "/ui/operators",
                 "/ui/security"):
        response = viewer.client.get(page)
        assert response.status_code == 200, page
    assert "Create operator" not in viewer.client.get("/ui/operators").text
    # Nor is a viewer offered the credential writes the server would refuse.
    offered = {page: viewer.client.get(page).text for page in (
        "/ui/api-keys", f"/ui/api-keys/{key_id}", "/ui/clients", f"/ui/clients/{client_id}")}
    for page, text in offered.items():
        for action in ("Create API key", "Create OAuth client", "Edit OAuth client",
                       "Rotate secret", "Require DPoP", "Disable API key", "Delete API key",
                       "Disable OAuth client", "Delete OAuth client"):
            assert action not in text, (page, action)
    admin = signed_in(app, "alice")
    assert "Delete OAuth client" in admin.client.get(f"/ui/clients/{client_id}").text
    assert "Create API key" in admin.client.get("/ui/api-keys").text
    before = snapshot(app)
    token = viewer.token("/ui/api-keys")
    data = {"csrf_token": token, "name": "x", "scopes": "sms:message:send", "role": "owner",
            "username": "mallory"}
    for endpoint, path in write_routes(app):
        response = viewer.client.post(path, data=data)
        assert response.status_code == 403, (endpoint, path, response.status_code)
        assert "viewer" in response.text
    # The same forms with real identifiers.
    for path in (f"/ui/api-keys/{key_id}/disable", f"/ui/clients/{client_id}/disable",
                 "/ui/operators/alice/role", "/ui/operators/vera/role"):
        assert viewer.client.post(path, data=data).status_code == 403, path
    assert snapshot(app) == before
    assert viewer.client.get("/ui/api-keys").status_code == 200  # still signed in


def test_UI12_an_admin_changes_credentials_but_not_operators(app):
    make(app, "alice")
    make(app, "adam", role="admin")
    admin = signed_in(app, "adam")
    response = admin.post("/ui/api-keys/new", {"name": "by admin", "scopes": "sms:message:send"})
    assert response.status_code in (200, 303)
    with app.app_context():
        assert db.session.scalar(sa.select(ApiKey.name)) == "by admin"
    before = snapshot(app)
    for path, data in (("/ui/operators/new", {"username": "eve", "role": "owner"}),
                       ("/ui/operators/adam/role", {"role": "owner"}),
                       ("/ui/operators/alice/disable", {}),
                       ("/ui/operators/alice/reset-password", {}),
                       ("/ui/operators/alice/reset-2fa", {})):
        response = admin.post(path, data, form_page="/ui/operators")
        assert response.status_code == 403, path
        assert "manage operators" in response.text
    assert snapshot(app) == before


def test_an_owner_creates_a_viewer_who_signs_in_with_the_one_time_password(app):
    make(app, "alice")
    owner = signed_in(app, "alice")
    response = owner.post("/ui/operators/new", {"username": "Vera", "role": "viewer"},
                          form_page="/ui/operators")
    # Post/Redirect/Get: the password is on the page the form redirects to, once.
    assert response.status_code == 303
    page = response.headers["Location"]
    assert page == "/ui/operators/vera/one-time-password"
    response = owner.client.get(page)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    temporary = TEMPORARY_RE.search(response.text).group(1)
    assert role_of(app, "vera") == "viewer"
    again = owner.client.get(page)
    assert temporary not in again.text and "cannot be shown again" in again.text
    assert temporary not in owner.client.get("/ui/operators").text
    assert temporary not in UI(owner.client).cookie()

    vera = UI(app.test_client())
    assert vera.sign_in("vera", temporary).status_code == 303
    assert vera.client.get("/ui/audit").headers["Location"] == "/ui/security/password"
    response = vera.post("/ui/security/password", {"current_password": temporary,
                                                   "password": NEW_PASSWORD},
                         form_page="/ui/security/password")
    assert response.status_code == 303
    assert vera.client.get("/ui/audit").status_code == 200
    assert vera.post("/ui/api-keys/new", {"name": "x", "scopes": "sms:message:send"},
                     form_page="/ui/security").status_code == 403
    events = audit_actions(app)
    assert ("operator:alice", "create") == events[-2][:2]
    assert events[-2][2]["role"] == {"before": None, "after": "viewer"}
    assert events[-1][:2] == ("operator:vera", "change-password")


def test_owner_changes_roles_disables_and_enables_in_the_ui(app):
    make(app, "alice")
    make(app, "bob", role="viewer")
    owner = signed_in(app, "alice")
    bob = signed_in(app, "bob")
    response = owner.post("/ui/operators/bob/role", {"role": "owner"}, form_page="/ui/operators")
    assert response.status_code == 303 and role_of(app, "bob") == "owner"
    assert "bob is now owner" in owner.client.get("/ui/operators").text
    assert owner.post("/ui/operators/bob/disable", form_page="/ui/operators").status_code == 303
    assert bob.client.get("/ui/api-keys").status_code == 303  # bob's session ended
    assert owner.post("/ui/operators/bob/enable", form_page="/ui/operators").status_code == 303
    assert signed_in(app, "bob").client.get("/ui/operators").status_code == 200
    assert [action for _, action, _ in audit_actions(app)][-3:] == ["set-role", "disable",
                                                                   "enable"]


def test_UI13_an_owner_cannot_demote_or_disable_the_last_owner_in_the_ui(app):
    make(app, "alice")
    owner = signed_in(app, "alice")
    before = snapshot(app)
    for path, data in (("/ui/operators/alice/role", {"role": "admin"}),
                       ("/ui/operators/alice/role", {"role": "viewer"}),
                       ("/ui/operators/alice/disable", {})):
        response = owner.post(path, data, form_page="/ui/operators")
        assert response.status_code == 409, path
        assert "last owner" in response.text
    assert snapshot(app) == before


@pytest.mark.parametrize("data, field", [
    ({"username": "", "role": "viewer"}, "username"),
    ({"username": HOSTILE_NAME, "role": "viewer"}, "username"),
    ({"username": "a" * 300, "role": "viewer"}, "username"),
    ({"username": "eve", "role": "superuser"}, "role"),
    ({"username": "eve"}, "role"),
    ({"username": "alice", "role": "viewer"}, "username"),
])
def test_hostile_operator_forms_are_400_and_write_nothing(app, data, field):
    make(app, "alice")
    owner = signed_in(app, "alice")
    before = snapshot(app)
    response = owner.post("/ui/operators/new", data, form_page="/ui/operators")
    assert response.status_code == 400
    assert f'id="{field}-errors"' in response.text
    assert "<script>" not in response.text
    for path, form in (("/ui/operators/alice/role", {"role": HOSTILE_NAME}),
                       ("/ui/operators/alice/role", {}),
                       ("/ui/operators/alice/role", {"role": "viewer\u200b"})):
        assert owner.post(path, form, form_page="/ui/operators").status_code == 400
    assert snapshot(app) == before


def test_another_accounts_operators_are_not_found(app, tenants):
    customer = tenants.create("Acme")
    make(app, "alice")
    make(app, "carol", account_id=customer)
    make(app, "cody", role="viewer", account_id=customer)
    carol = signed_in(app, "carol")
    assert "alice" not in carol.client.get("/ui/operators").text
    before = snapshot(app)
    for path in ("/ui/operators/alice/role", "/ui/operators/alice/disable",
                 "/ui/operators/alice/reset-password", "/ui/operators/alice/reset-2fa",
                 "/ui/operators/nobody/role", "/ui/operators/%00/role"):
        response = carol.post(path, {"role": "viewer"}, form_page="/ui/operators")
        assert response.status_code in (400, 404), path
    assert snapshot(app) == before
    assert carol.post("/ui/operators/cody/role", {"role": "admin"},
                      form_page="/ui/operators").status_code == 303


@pytest.mark.parametrize("path", ["/ui/operators/new", "/ui/operators/bob/role",
                                  "/ui/operators/bob/disable", "/ui/operators/bob/reset-password",
                                  "/ui/operators/bob/reset-2fa", "/ui/security/password",
                                  "/ui/security/two-factor", "/ui/security/two-factor/confirm",
                                  "/ui/security/sessions/0123456789abcdef/end"])
def test_UI01_new_forms_need_the_csrf_token(app, path):
    make(app, "alice")
    make(app, "bob", role="viewer")
    owner = signed_in(app, "alice")
    before = snapshot(app)
    for token in (None, "", "forged"):
        data = {"username": "eve", "role": "owner", "current_password": PASSWORD,
                "password": NEW_PASSWORD}
        if token is not None:
            data["csrf_token"] = token
        response = owner.client.post(path, data=data)
        assert response.status_code == 400 and "did not come from this site" in response.text
    assert snapshot(app) == before


def test_owner_resets_a_password_in_the_ui(app):
    make(app, "alice")
    make(app, "bob")
    bob = signed_in(app, "bob")
    owner = signed_in(app, "alice")
    response = owner.post("/ui/operators/bob/reset-password", form_page="/ui/operators")
    assert response.status_code == 303
    temporary = TEMPORARY_RE.search(owner.client.get(response.headers["Location"]).text).group(1)
    # Another session of the same owner does not get it.
    assert "cannot be shown again" in signed_in(app, "alice").client.get(
        "/ui/operators/bob/one-time-password").text
    assert bob.client.get("/ui/api-keys").status_code == 303
    with app.app_context():
        assert operators.authenticate("bob", temporary).must_change_password


@pytest.mark.parametrize("action", ["disable", "reset-password", "reset-2fa"])
def test_destructive_actions_ask_first_on_a_page_of_their_own(app, action):
    make(app, "alice")
    make(app, "bob", role="admin")
    owner = signed_in(app, "alice")
    before = snapshot(app)
    page = owner.client.get(f"/ui/operators/bob/{action}")
    assert page.status_code == 200 and 'class="button danger"' in page.text
    assert f'action="/ui/operators/bob/{action}"' in page.text
    assert snapshot(app) == before  # asking changes nothing
    assert signed_in(app, "bob").client.get("/ui/operators/alice/disable").status_code == 403
    assert owner.client.get(f"/ui/operators/nobody/{action}").status_code == 404
    response = owner.client.post(f"/ui/operators/bob/{action}",
                                 data={"csrf_token": csrf_from(page.text)})
    assert response.status_code == 303
