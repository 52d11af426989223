"""Managing keys and clients in the web UI (issue 17, item 1) through Flask's test client, on
SQLite and PostgreSQL: Post/Redirect/Get and secrets shown once after the redirect, edits
through the admin API's update path, confirmation steps, and the lists' paging, search and
sorting with the admin API's query parameters (a clear 400 page for bad ones, never a 500).

The browser side of the same flows is tests/test_ui_browser.py; CSRF on every form and
cross-account isolation of every route are the batteries of tests/test_ui_security.py and
tests/test_accounts_ui.py.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
from conftest import ENCRYPTION_KEY
from ui_support import app_config, create_operator, UI, ui  # noqa: F401 - fixtures

from authserver import create_app
from authserver.credentials import api_keys, clients, shown_once
from authserver.storage.db import db, downgrade_database, upgrade_database
from authserver.storage.models import ApiKey, AuditEvent, Client, ShownOnceSecret

KEY_RE = re.compile(r"asak_[0-9A-Za-z]{38}")
CLIENT_SECRET_RE = re.compile(r'id="client-secret" value="([^"]+)"')


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def audit_count(app) -> int:
    return count(app, AuditEvent)


def create_key(ui, name: str = "k", **fields) -> tuple[str, str]:
    """Create a key through the form; returns (its id, the page after the redirect)."""
    response = ui.post("/ui/api-keys/new", {"name": name, "scopes": "sms:message:send",
                                            **fields}, form_page="/ui/api-keys/new")
    assert response.status_code == 303, response.text
    key_id = re.fullmatch(r"/ui/api-keys/([0-9A-F]{32})/secret",
                          response.headers["Location"]).group(1)
    return key_id, ui.client.get(response.headers["Location"]).text


def create_client(ui, name: str = "svc", **fields) -> tuple[str, str]:
    form = {"name": name, "scopes": "message:send", "auth_method": "client_secret_basic",
            **fields}
    response = ui.post("/ui/clients/new", form, form_page="/ui/clients/new")
    assert response.status_code == 303, response.text
    client_id = re.fullmatch(r"/ui/clients/([0-9a-f]{32})/secret\?created=1",
                             response.headers["Location"]).group(1)
    return client_id, ui.client.get(response.headers["Location"]).text


# -- Post/Redirect/Get ---------------------------------------------------------------------------

def test_reloading_after_create_creates_nothing_and_shows_no_secret(app, ui):
    key_id, page = create_key(ui, "once")
    [secret] = KEY_RE.findall(page)
    events = audit_count(app)
    for _ in range(2):  # the browser's reload of the page it was redirected to
        again = ui.client.get(f"/ui/api-keys/{key_id}/secret")
        assert again.status_code == 200 and again.headers["Cache-Control"] == "no-store"
        assert KEY_RE.search(again.text) is None and "cannot be shown again" in again.text
    assert count(app, ApiKey) == 1 and audit_count(app) == events
    with app.app_context():
        assert api_keys.query_api_key(secret).id == key_id

    client_id, page = create_client(ui)
    assert CLIENT_SECRET_RE.search(page)
    again = ui.client.get(f"/ui/clients/{client_id}/secret?created=1")
    assert CLIENT_SECRET_RE.search(again.text) is None and "cannot be shown again" in again.text
    assert count(app, Client) == 1


def test_reloading_after_rotate_rotates_nothing(app, ui):
    client_id, page = create_client(ui)
    first = CLIENT_SECRET_RE.search(page).group(1)
    response = ui.post(f"/ui/clients/{client_id}/rotate-secret", {"grace_period": "3600"},
                       form_page=f"/ui/clients/{client_id}/rotate-secret")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/ui/clients/{client_id}/secret"
    second = CLIENT_SECRET_RE.search(ui.client.get(response.headers["Location"]).text).group(1)
    with app.app_context():
        hashes = clients.get_client(client_id).secret_hash
    events = audit_count(app)
    assert CLIENT_SECRET_RE.search(ui.client.get(response.headers["Location"]).text) is None
    with app.app_context():
        client = clients.get_client(client_id)
        assert client.secret_hash == hashes and client.check_client_secret(second)
        assert client.check_client_secret(first)  # the grace period chosen on the step
    assert audit_count(app) == events


@pytest.mark.parametrize("action", ["disable", "delete"])
@pytest.mark.parametrize("kind", ["key", "client"])
def test_destructive_actions_ask_first_then_redirect(app, ui, kind, action):
    object_id = (create_key(ui) if kind == "key" else create_client(ui))[0]
    base = f"/ui/api-keys/{object_id}" if kind == "key" else f"/ui/clients/{object_id}"
    step = ui.client.get(f"{base}/{action}")
    assert step.status_code == 200 and step.headers["Cache-Control"] == "no-store"
    assert re.search(rf'<form method="post" action="{base}/{action}"', step.text)
    assert 'name="csrf_token"' in step.text and "Cancel</a>" in step.text
    model = ApiKey if kind == "key" else Client
    assert count(app, model) == 1
    response = ui.post(f"{base}/{action}", form_page=f"{base}/{action}")
    assert response.status_code == 303
    landing = ui.client.get(response.headers["Location"])
    assert landing.status_code == 200 and "notice-ok" in landing.text
    with app.app_context():
        if action == "delete":
            assert count(app, model) == 0
            assert response.headers["Location"] == ("/ui/api-keys" if kind == "key"
                                                    else "/ui/clients")
        else:
            record = db.session.scalar(sa.select(model))
            assert record.enabled is False
    again = ui.post(f"{base}/{action}", form_page="/ui/api-keys")  # a resent POST
    assert again.status_code in (303, 404)


def test_edits_redirect_and_pass_through_the_admin_api_update_path(app, ui):
    client_id, _ = create_client(ui)
    form = {"name": "renamed", "scopes": ["sms:message:send", "people:read"],
            "token_ttl": "900", "audiences": "https://api.example.com\nurn:example:thing",
            "auth_method": "client_secret_post", "dpop_bound_access_tokens": "true"}
    response = ui.post(f"/ui/clients/{client_id}/edit", form,
                       form_page=f"/ui/clients/{client_id}/edit")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/ui/clients/{client_id}"
    assert "Saved the changes" in ui.client.get(response.headers["Location"]).text
    with app.app_context():
        shown = clients.describe(clients.get_client(client_id))
        [event] = db.session.scalars(sa.select(AuditEvent).where(
            AuditEvent.action == "update")).all()
    assert shown["name"] == "renamed" and shown["tokenTtl"] == 900
    assert shown["scopes"] == ["sms:message:send", "people:read"]
    assert shown["audiences"] == ["https://api.example.com", "urn:example:thing"]
    assert shown["authMethod"] == "client_secret_post" and shown["dpopBoundAccessTokens"]
    assert event.actor == "operator:alice"
    assert set(event.changes) - {"updatedAt"} == {"name", "scopes", "tokenTtl", "audiences",
                                                  "authMethod", "dpopBoundAccessTokens"}
    page = ui.client.get(f"/ui/clients/{client_id}/edit").text
    assert 'value="900"' in page and "urn:example:thing</textarea>" in page
    # Back to the server default lifetime, no audiences.
    form.update(token_ttl="", audiences="")
    ui.post(f"/ui/clients/{client_id}/edit", form, form_page=f"/ui/clients/{client_id}/edit")
    with app.app_context():
        client = clients.get_client(client_id)
        assert client.token_ttl is None and client.audiences == []


@pytest.mark.parametrize("field, value, error_field", [
    ("token_ttl", "5", "token_ttl"), ("token_ttl", "ten", "token_ttl"),
    ("audiences", "not a uri", "audiences"), ("auth_method", "none", "auth_method"),
    ("auth_method", "private_key_jwt", "auth_method"), ("name", " ", "name"),
    ("scopes", "no:such:scope", "scopes")])
def test_client_edit_refuses_bad_input_with_400_and_changes_nothing(app, ui, field, value,
                                                                     error_field):
    client_id, _ = create_client(ui)
    with app.app_context():
        before = clients.describe(clients.get_client(client_id))
    events = audit_count(app)
    form = {"name": "svc", "scopes": "message:send", "auth_method": "client_secret_basic",
            field: value}
    response = ui.post(f"/ui/clients/{client_id}/edit", form,
                       form_page=f"/ui/clients/{client_id}/edit")
    assert response.status_code == 400
    assert f'id="{error_field}-errors"' in response.text and "Nothing was saved" in response.text
    with app.app_context():
        assert clients.describe(clients.get_client(client_id)) == before
    assert audit_count(app) == events


def test_key_edit_changes_allowed_ips_and_validity_window(app, ui, clock):
    key_id, _ = create_key(ui)
    start = (clock.now + timedelta(days=2)).date().isoformat()
    end = (clock.now + timedelta(days=30)).date().isoformat()
    form = {"name": "k", "scopes": "sms:message:send", "allowed_ips": "192.0.2.0/24\n10.1.2.3",
            "valid_from": start, "expiration": end}
    response = ui.post(f"/ui/api-keys/{key_id}", form, form_page=f"/ui/api-keys/{key_id}")
    assert response.status_code == 303 and response.headers["Location"] == f"/ui/api-keys/{key_id}"
    page = ui.client.get(response.headers["Location"]).text
    assert "Not yet valid" in page and "Saved the changes" in page
    with app.app_context():
        shown = api_keys.describe(api_keys.get_api_key(key_id))
    assert shown["allowedIPs"] == ["192.0.2.0/24", "10.1.2.3"]
    assert shown["validFrom"] == f"{start}T00:00:00Z" and shown["validTo"] == f"{end}T00:00:00Z"
    bad = ui.post(f"/ui/api-keys/{key_id}", dict(form, valid_from=end, expiration=start),
                  form_page=f"/ui/api-keys/{key_id}")
    assert bad.status_code == 400 and 'id="expiration-errors"' in bad.text
    bad = ui.post(f"/ui/api-keys/{key_id}", dict(form, allowed_ips="0.0.0.0/0"),
                  form_page=f"/ui/api-keys/{key_id}")
    assert bad.status_code == 400 and 'id="allowed_ips-errors"' in bad.text
    with app.app_context():
        assert api_keys.describe(api_keys.get_api_key(key_id)) == shown


# -- secrets shown once: whose, for how long -----------------------------------------------------

def test_a_kept_secret_is_only_for_the_session_that_made_it(app, ui):
    create_operator(app, "bob")
    bob = UI(app.test_client())
    assert bob.sign_in("bob").status_code == 303
    response = ui.post("/ui/api-keys/new", {"name": "mine", "scopes": "sms:message:send"},
                       form_page="/ui/api-keys/new")
    location = response.headers["Location"]
    seen = bob.client.get(location)  # same account, another session
    assert seen.status_code == 200 and KEY_RE.search(seen.text) is None
    assert KEY_RE.search(ui.client.get(location).text)  # still there for its own session


def test_a_kept_secret_expires_and_ends_with_the_session(app, ui, clock):
    response = ui.post("/ui/api-keys/new", {"name": "late", "scopes": "sms:message:send"},
                       form_page="/ui/api-keys/new")
    clock.advance(shown_once.KEEP_FOR.total_seconds() + 1)
    assert KEY_RE.search(ui.client.get(response.headers["Location"]).text) is None
    assert count(app, ShownOnceSecret) == 0

    clock.advance(-shown_once.KEEP_FOR.total_seconds() - 1)
    ui.post("/ui/api-keys/new", {"name": "left", "scopes": "sms:message:send"},
            form_page="/ui/api-keys/new")
    assert count(app, ShownOnceSecret) == 1
    ui.post("/ui/sign-out")  # never shown: dropped with the session
    assert count(app, ShownOnceSecret) == 0


# -- lists: paging, search and sorting with the admin API's parameters -----------------------

def names_in(page: str) -> list[str]:
    return re.findall(r'<td class="name"><a href="[^"]+">([^<]+)</a>', page)


@pytest.mark.parametrize("path", ["/ui/api-keys", "/ui/clients"])
def test_lists_are_paged_searchable_and_sortable(app, ui, clock, path):
    for name in ("bravo", "alpha", "charlie", "alpha two"):
        clock.advance(1)
        (create_key if path == "/ui/api-keys" else create_client)(ui, name)
    assert names_in(ui.client.get(path).text) == ["bravo", "alpha", "charlie", "alpha two"]
    page = ui.client.get(path, query_string={"orderBy": "name", "orderDirection": "DESC"}).text
    assert names_in(page) == ["charlie", "bravo", "alpha two", "alpha"]
    assert 'aria-sort="descending"' in page
    page = ui.client.get(path, query_string={"search": "ALPHA", "orderBy": "name"}).text
    assert names_in(page) == ["alpha", "alpha two"] and "2 match" in page
    page = ui.client.get(path, query_string={"size": "1", "page": "2", "orderBy": "name"}).text
    assert names_in(page) == ["bravo"] and "Page 3 of 4" in page
    assert "page=3" in page and "page=1" in page  # next and previous keep the order
    page = ui.client.get(path, query_string={"search": "", "enabled": "", "page": "0"}).text
    assert len(names_in(page)) == 4  # a filter form's empty fields mean "no filter"
    page = ui.client.get(path, query_string={"enabled": "false"}).text
    assert names_in(page) == [] and "match." in page


@pytest.mark.parametrize("path", ["/ui/api-keys", "/ui/clients", "/ui/audit"])
@pytest.mark.parametrize("query, field", [
    ("orderBy=secret", "orderBy"), ("orderDirection=sideways", "orderDirection"),
    ("page=-1", "page"), ("page=1e3", "page"), ("size=0", "size"), ("size=101", "size"),
    ("enabled=maybe", "enabled"), ("bogus=1", "bogus"), ("page=1&page=2", "page"),
    ("accountId=AAAAAAAAAAAAAAAAAAAAAA", "accountId"), ("search=%01", "search")])
def test_bad_list_parameters_are_a_clear_400_page(ui, path, query, field):
    audit_forms = {"enabled": ("object_type=maybe", "object_type"),
                   "search": ("actor=%01", "actor")}
    if path == "/ui/audit" and field in audit_forms:
        query, field = audit_forms[field]
    response = ui.client.get(f"{path}?{query}")
    assert response.status_code == 400, response.status_code
    assert "text/html" in response.headers["Content-Type"]
    assert "Request refused" in response.text and f"<code>{field}</code>" in response.text
    assert response.headers["Cache-Control"] == "no-store"


def test_audit_log_sorts_oldest_first(app, ui, clock):
    first, _ = create_key(ui, "first")
    clock.advance(60)
    second, _ = create_key(ui, "second")
    newest = ui.client.get("/ui/audit").text
    oldest = ui.client.get("/ui/audit?orderDirection=ASC").text
    assert newest.index(second) < newest.index(first)
    assert oldest.index(first) < oldest.index(second) and "oldest first" in oldest


# -- the scope picker --------------------------------------------------------------------------

def test_scope_picker_shows_what_an_umbrella_covers_from_the_catalogue(app, ui):
    from authserver.scopes import current_catalogue

    page = ui.client.get("/ui/api-keys/new").text
    with app.app_context():
        table = current_catalogue().umbrella_table()
    covered = re.search(r'data-covers-for="message:send"[^>]*>(.*?)</', page, re.S)
    assert covered, "message:send has no list of the scopes it covers"
    shown = re.search(r'data-scope-covers="([^"]*)"[^>]*value="message:send"', page)
    assert shown and shown.group(1).split() == table["message:send"]
    assert "sms:message:send" in table["message:send"]
    assert "whatsapp:message:send" in covered.group(1) or "sms:message:send" in covered.group(1)


# -- migration 0005 ----------------------------------------------------------------------------

def test_shown_once_migration_both_ways(empty_database, tmp_path):
    app = create_app({"SQLALCHEMY_DATABASE_URI": empty_database, "ENCRYPTION_KEY": ENCRYPTION_KEY,
                      "SECRET_KEY": "migration-test"}, instance_path=str(tmp_path / "instance"))
    with app.app_context():
        upgrade_database("0004")
        assert "shown_once_secrets" not in sa.inspect(db.engine).get_table_names()
        upgrade_database("0005")
        assert "shown_once_secrets" in sa.inspect(db.engine).get_table_names()
        downgrade_database("0004")
        assert "shown_once_secrets" not in sa.inspect(db.engine).get_table_names()
        upgrade_database("head")
        db.engine.dispose()
