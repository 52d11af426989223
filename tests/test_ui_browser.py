"""The operator web UI in a real browser: Debian's Chromium driven by Playwright, against a live
server on both database backends (the whole module takes well under a minute).

Playwright's own browser download is never used: CI installs ``chromium`` with apt-get.
Screenshots of the main pages go to test-artifacts/screenshots/ (ignored by git).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jwt
import pytest
import requests
import sqlalchemy as sa
from demo_support import serve
from playwright.sync_api import expect
from ui_support import (  # noqa: F401 - fixture
    HOSTILE_NAME, PASSWORD, browser, create_operator, submit)

from authserver.credentials import api_keys as api_key_service
from authserver.credentials import clients as client_service
from authserver.storage.db import db
from authserver.storage.models import ApiKey, AuditEvent, Client
from resource_demo.demo.app import create_app as create_demo_app
from resource_demo.guard.flask import ResourceGuard

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
SMS = {"messages": [{"destinations": [{"to": "41793026727"}], "content": {"text": "Hello"}}]}
#: The guard caches API-key introspection answers for at most 5 s (threat model policies: a
#: disabled key is refused within 5 s); one more second for polling and a busy machine.
REFUSAL_DEADLINE = 6.0


@pytest.fixture
def page(browser, live_server):
    """A fresh browser profile that may use the clipboard on the live server's origin."""
    context = browser.new_context(viewport={"width": 1366, "height": 860})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    tab = context.new_page()
    tab.dialogs = []

    def on_dialog(dialog):
        tab.dialogs.append(dialog.message)
        dialog.accept()

    tab.on("dialog", on_dialog)
    tab.console_errors = []
    # Script errors only: a 4xx page a test opens on purpose is logged as a failed load.
    tab.on("console", lambda message: message.type == "error"
           and not message.text.startswith("Failed to load resource")
           and tab.console_errors.append(message.text))
    yield tab
    context.close()


@pytest.fixture
def demo_api(live_server):
    """The demo resource server guarding its API with our server (introspecting API keys)."""
    with live_server.app.app_context():
        record, secret = client_service.create_client(name="demo api", scope="tokens:introspect",
                                                      actor="test")
        client_id = record.client_id
    # Short cache and poll intervals: these tests follow an edit from the UI to the resource
    # server; the guard's default bounds (4 s, 2 s) are the guard tests' subject.
    app = create_demo_app({"GUARD_ISSUER": live_server.url, "GUARD_CLIENT_ID": client_id,
                           "GUARD_CLIENT_SECRET": secret, "GUARD_API_KEY_CACHE_SECONDS": 1.0,
                           "GUARD_REVOCATION_POLL_SECONDS": 0.5})
    with serve(app) as url:
        yield url
    ResourceGuard.close(app)


def screenshot(page, name: str, full_page: bool = False) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def sign_in(page, live_server, shot: bool = False) -> None:
    create_operator(live_server.app)
    page.goto(live_server.url + "/")
    expect(page).to_have_url(live_server.url + "/ui/sign-in?next=/ui/")
    if shot:
        screenshot(page, "sign-in")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(live_server.url + "/ui/api-keys")


def nav(page, name: str) -> None:
    """Follow a link of the main navigation."""
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


def pick_scope(page, group: str, scope: str) -> None:
    """Open a category of the scope picker and tick one scope."""
    details = page.locator("details[data-scope-group]", has=page.locator(
        "summary .group-name", has_text=group))
    if details.get_attribute("open") is None:
        details.locator("summary").click()
    details.locator(f'input[value="{scope}"]').check()
    expect(details.locator("[data-scope-count]")).not_to_have_text("0 selected")


def copied_value(page, field_id: str) -> str:
    """Click the Copy button of a show-once field; return what reached the clipboard."""
    value = page.locator(f"#{field_id}").input_value()
    page.locator(f'[data-copy-target="{field_id}"]').click()
    expect(page.locator(f'[data-copy-status-for="{field_id}"]')).to_have_text(
        "Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == value
    return value


def wait_for_status(call, status: int, deadline: float = REFUSAL_DEADLINE) -> float:
    """Poll ``call()`` until it answers ``status``; return the seconds that took."""
    start = time.monotonic()
    while True:
        response = call()
        if response.status_code == status:
            return time.monotonic() - start
        assert time.monotonic() - start < deadline, (response.status_code, response.text)
        time.sleep(0.2)


def test_api_key_created_copied_used_and_disabled(page, live_server, demo_api):
    sign_in(page, live_server, shot=True)
    screenshot(page, "api-keys-empty")
    page.get_by_role("link", name="Create API key").first.click()
    page.get_by_label("Name").fill("SMS sender")
    expect(page.get_by_label("Expiration date")).not_to_have_value("")  # one year by default
    pick_scope(page, "Channels", "sms:message:send")
    pick_scope(page, "Customer Engagement", "people:read")
    expect(page.locator("[data-selected-scopes] code")).to_have_text(
        ["sms:message:send", "people:read"])
    screenshot(page, "create-api-key", full_page=True)
    page.get_by_role("button", name="Create API key").click()

    expect(page.get_by_text("It will not be shown again.")).to_be_visible()
    key = copied_value(page, "api-key-secret")
    assert key.startswith("asak_")
    screenshot(page, "api-key-created")
    page.get_by_role("link", name="I have copied the key").click()

    row = page.locator("table.data tbody tr", has_text="SMS sender")
    expect(row).to_contain_text("sms:message:send")
    expect(row).to_contain_text("people:read")
    expect(row.locator(".badge")).to_have_text("Active")
    assert key not in page.content()
    screenshot(page, "api-keys")

    send = lambda: requests.post(demo_api + "/sms/3/messages", json=SMS,  # noqa: E731
                                 headers={"Authorization": f"App {key}"}, timeout=10)
    assert send().status_code == 200

    submit(page, row.get_by_role("link", name="SMS sender"))
    screenshot(page, "edit-api-key", full_page=True)
    page.get_by_role("link", name="Disable API key").click()
    expect(page.locator("h1")).to_contain_text("Disable the API key")  # a step, no dialog
    assert send().status_code == 200
    page.get_by_role("button", name="Disable API key").click()
    expect(page.locator(".notice-ok")).to_contain_text("is disabled")
    assert page.dialogs == []
    expect(page.locator("h1 .badge")).to_have_text("Disabled")
    assert wait_for_status(send, 401) <= REFUSAL_DEADLINE

    nav(page, "Audit log")
    expect(page.locator("table.audit tbody tr").first).to_contain_text("operator:alice")
    screenshot(page, "audit-log")
    assert page.console_errors == []


def test_oauth_client_created_used_rotated_and_disabled(page, live_server):
    sign_in(page, live_server)
    nav(page, "OAuth clients")
    page.get_by_role("link", name="Create OAuth client").first.click()
    page.get_by_label("Name").fill("Billing service")
    page.get_by_label("Token lifetime in seconds").fill("600")
    pick_scope(page, "General", "message:send")
    pick_scope(page, "Platform", "billing:usage:view")
    screenshot(page, "create-client")
    page.get_by_role("button", name="Create OAuth client").click()

    expect(page.get_by_text("It will not be shown again.")).to_be_visible()
    client_id = page.locator("#client-id").input_value()
    secret = copied_value(page, "client-secret")
    screenshot(page, "client-created")

    def token(client_secret):
        return requests.post(live_server.url + "/oauth2/token", auth=(client_id, client_secret),
                             data={"grant_type": "client_credentials"}, timeout=10)

    answer = token(secret)
    assert answer.status_code == 200, answer.text
    assert answer.json()["expires_in"] == 600
    assert answer.json()["scope"] == "message:send billing:usage:view"

    submit(page, page.get_by_role("link", name="I have copied the secret"))
    screenshot(page, "client-detail", full_page=True)
    page.get_by_role("link", name="Rotate secret").click()
    page.get_by_role("button", name="Rotate secret").click()
    expect(page.get_by_text("New client secret")).to_be_visible()
    new_secret = page.locator("#client-secret").input_value()
    assert new_secret != secret
    assert token(secret).status_code == 401  # no grace period chosen
    assert token(new_secret).status_code == 200

    page.get_by_role("link", name="I have copied the secret").click()
    page.get_by_role("link", name="Disable OAuth client").click()
    page.get_by_role("button", name="Disable OAuth client").click()
    expect(page.locator(".notice-ok")).to_contain_text("can no longer get tokens")
    refused = token(new_secret)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"

    nav(page, "OAuth clients")
    expect(page.locator("tr", has_text="Billing service").locator(".badge")).to_have_text(
        "Disabled")
    screenshot(page, "clients")
    assert page.console_errors == []


def key_count(live_server) -> int:
    with live_server.app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(ApiKey))


def test_html_in_a_name_is_text_and_csrf_less_posts_are_refused(page, live_server):
    sign_in(page, live_server)
    page.goto(live_server.url + "/ui/api-keys/new")
    page.get_by_label("Name").fill(HOSTILE_NAME)
    pick_scope(page, "Web SDK", "web:sdk")
    page.get_by_role("button", name="Create API key").click()
    expect(page.get_by_text("It will not be shown again.")).to_be_visible()
    page.goto(live_server.url + "/ui/api-keys")
    expect(page.locator("td.name a")).to_have_text(HOSTILE_NAME)
    assert page.locator("td.name img, td.name script").count() == 0
    page.goto(live_server.url + "/ui/audit")
    expect(page.locator("ul.changes").first).to_contain_text(HOSTILE_NAME)
    assert page.dialogs == []  # no alert() ran anywhere
    screenshot(page, "hostile-name")

    # A POST without the token, from the page itself: refused, nothing created.
    before = key_count(live_server)
    status = page.evaluate("""async () => (await fetch('/ui/api-keys/new', {method: 'POST',
        body: new URLSearchParams({name: 'no token', scopes: 'sms:message:send'})})).status""")
    assert status == 400

    # A cross-origin form on the same site (another port: SameSite=Lax still sends the
    # cookie) that auto-submits to the UI: the missing token stops it.
    from flask import Flask

    attacker = Flask("attacker")
    target = live_server.url + "/ui/api-keys/new"

    @attacker.get("/")
    def lure():
        return (f'<form id="f" method="post" action="{target}">'
                '<input name="name" value="pwned"><input name="scopes" value="sms:message:send">'
                '</form><script>document.getElementById("f").submit()</script>')

    with serve(attacker) as attacker_url:
        page.goto(attacker_url)
        expect(page).to_have_url(target)
        expect(page.locator("h1")).to_have_text("Request refused")
    assert key_count(live_server) == before
    screenshot(page, "csrf-refused")


# -- issue 17: Post/Redirect/Get, edits, confirmations, lists ------------------------------------

def count_rows(live_server, model) -> int:
    with live_server.app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def token_request(live_server, client_id, secret, method="basic", **form):
    form.setdefault("grant_type", "client_credentials")
    if method == "basic":
        return requests.post(live_server.url + "/oauth2/token", auth=(client_id, secret),
                             data=form, timeout=10)
    return requests.post(live_server.url + "/oauth2/token", timeout=10,
                         data=dict(form, client_id=client_id, client_secret=secret))


def test_reloading_after_create_and_rotate_repeats_nothing(page, live_server):
    sign_in(page, live_server)
    page.goto(live_server.url + "/ui/api-keys/new")
    page.get_by_label("Name").fill("Reload me")
    pick_scope(page, "Channels", "sms:message:send")
    page.get_by_role("button", name="Create API key").click()
    expect(page.get_by_text("It will not be shown again.")).to_be_visible()
    key = page.locator("#api-key-secret").input_value()
    assert key not in page.url
    page.reload()  # a POST would be resent here without Post/Redirect/Get
    expect(page.get_by_text("cannot be shown again")).to_be_visible()
    assert key not in page.content() and page.locator("#api-key-secret").count() == 0
    page.go_back()
    page.go_forward()
    assert key not in page.content()
    assert count_rows(live_server, ApiKey) == 1
    page.goto(live_server.url + "/ui/api-keys")
    expect(page.locator("table.data tbody tr")).to_have_count(1)

    nav(page, "OAuth clients")
    page.get_by_role("link", name="Create OAuth client").first.click()
    page.get_by_label("Name").fill("Reloaded service")
    pick_scope(page, "General", "message:send")
    page.get_by_role("button", name="Create OAuth client").click()
    client_id = page.locator("#client-id").input_value()
    first = page.locator("#client-secret").input_value()
    page.reload()
    expect(page.get_by_text("cannot be shown again")).to_be_visible()
    assert count_rows(live_server, Client) == 1
    assert token_request(live_server, client_id, first).status_code == 200

    page.goto(live_server.url + f"/ui/clients/{client_id}")
    page.get_by_role("link", name="Rotate secret").click()
    expect(page.locator("h1")).to_contain_text("Rotate the secret of")
    assert token_request(live_server, client_id, first).status_code == 200  # asked, not done
    page.get_by_role("button", name="Rotate secret").click()
    expect(page.get_by_text("New client secret")).to_be_visible()
    second = page.locator("#client-secret").input_value()
    page.reload()
    expect(page.get_by_text("cannot be shown again")).to_be_visible()
    assert token_request(live_server, client_id, first).status_code == 401
    assert token_request(live_server, client_id, second).status_code == 200  # not rotated again
    with live_server.app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "rotate-secret")) == 1
    screenshot(page, "secret-after-reload")
    assert page.console_errors == []


def test_edited_client_gets_tokens_as_edited(page, live_server):
    with live_server.app.app_context():
        record, secret = client_service.create_client(name="Editable", scope="message:send",
                                                      actor="test")
        client_id = record.client_id
    assert token_request(live_server, client_id, secret).json()["expires_in"] == 3600
    sign_in(page, live_server)
    page.goto(live_server.url + f"/ui/clients/{client_id}")
    page.get_by_role("link", name="Edit OAuth client").click()
    page.get_by_label("Token lifetime in seconds").fill("600")
    page.get_by_label("Extra audiences").fill("https://reports.example.com")
    page.get_by_label("Client authentication").select_option("client_secret_post")
    details = page.locator("details[data-scope-group]", has=page.locator(
        "summary .group-name", has_text="General"))
    details.locator('input[value="message:send"]').uncheck()
    pick_scope(page, "Channels", "sms:message:send")
    pick_scope(page, "Customer Engagement", "people:read")
    screenshot(page, "edit-client", full_page=True)
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator(".notice-ok")).to_contain_text("Saved the changes")
    expect(page).to_have_url(live_server.url + f"/ui/clients/{client_id}")
    expect(page.locator("dl.facts")).to_contain_text("https://reports.example.com")

    assert token_request(live_server, client_id, secret).status_code == 401  # Basic: no more
    answer = token_request(live_server, client_id, secret, method="post",
                           resource="https://reports.example.com")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["expires_in"] == 600 and body["scope"] == "sms:message:send people:read"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "https://reports.example.com"
    refused = token_request(live_server, client_id, secret, method="post", scope="message:send")
    assert refused.json()["error"] == "invalid_scope"

    # Bad input: a 400 with the message next to the field; nothing changes.
    page.get_by_role("link", name="Edit OAuth client").click()
    page.get_by_label("Token lifetime in seconds").fill("5")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#token_ttl-errors")).to_be_visible()
    assert token_request(live_server, client_id, secret, method="post").json()[
        "expires_in"] == 600
    assert page.console_errors == []


def test_edited_key_allowlist_and_validity_apply_at_the_resource_server(page, live_server,
                                                                        demo_api):
    with live_server.app.app_context():
        record, key = api_key_service.create_api_key(name="Guarded", scopes="sms:message:send",
                                                     actor="test")
        key_id = record.id
    send = lambda: requests.post(demo_api + "/sms/3/messages", json=SMS,  # noqa: E731
                                 headers={"Authorization": f"App {key}"}, timeout=10)
    assert send().status_code == 200
    sign_in(page, live_server)
    page.goto(live_server.url + f"/ui/api-keys/{key_id}")

    def save():
        page.get_by_role("button", name="Save changes").click()
        expect(page.locator(".notice-ok")).to_contain_text("Saved the changes")

    page.get_by_label("Allowed IP addresses").fill("192.0.2.10\n198.51.100.0/24")
    save()
    assert wait_for_status(send, 401) <= REFUSAL_DEADLINE  # the demo sees 127.0.0.1
    page.get_by_label("Allowed IP addresses").fill("127.0.0.1")
    save()
    assert wait_for_status(send, 200) <= REFUSAL_DEADLINE

    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat()
    page.get_by_label("Valid from").fill(tomorrow)
    save()
    expect(page.locator("h1 .badge")).to_have_text("Not yet valid")
    assert wait_for_status(send, 401) <= REFUSAL_DEADLINE
    with live_server.app.app_context():
        shown = api_key_service.describe(api_key_service.get_api_key(key_id))
    assert shown["validFrom"] == f"{tomorrow}T00:00:00Z" and shown["allowedIPs"] == ["127.0.0.1"]
    assert page.console_errors == []


def test_confirmation_steps_cancel_disable_and_delete(page, live_server):
    with live_server.app.app_context():
        key, _ = api_key_service.create_api_key(name="Doomed key", scopes="sms:message:send",
                                                actor="test")
        key_id = key.id
        record, secret = client_service.create_client(name="Doomed client",
                                                      scope="message:send", actor="test")
        client_id = record.client_id
    sign_in(page, live_server)
    page.goto(live_server.url + f"/ui/api-keys/{key_id}")
    submit(page, page.get_by_role("link", name="Disable API key"))
    screenshot(page, "confirm-disable-key")
    page.get_by_role("link", name="Cancel").click()
    expect(page.locator("h1 .badge")).to_have_text("Active")
    page.get_by_role("link", name="Disable API key").click()
    page.get_by_role("button", name="Disable API key").click()
    expect(page.locator("h1 .badge")).to_have_text("Disabled")
    page.get_by_role("link", name="Delete API key").click()
    page.get_by_role("button", name="Delete API key").click()
    expect(page).to_have_url(live_server.url + "/ui/api-keys")
    expect(page.locator(".notice-ok")).to_contain_text("is deleted")
    expect(page.get_by_text("No API keys yet.")).to_be_visible()

    page.goto(live_server.url + f"/ui/clients/{client_id}")
    page.get_by_role("link", name="Delete OAuth client").click()
    assert token_request(live_server, client_id, secret).status_code == 200
    page.get_by_role("button", name="Delete OAuth client").click()
    expect(page).to_have_url(live_server.url + "/ui/clients")
    expect(page.locator(".notice-ok")).to_contain_text("is deleted")
    assert token_request(live_server, client_id, secret).status_code == 401
    page.goto(live_server.url + f"/ui/clients/{client_id}")
    expect(page.locator("h1")).to_have_text("Page not found")
    with live_server.app.app_context():  # the audit trail stays
        actions = set(db.session.scalars(sa.select(AuditEvent.action).where(
            AuditEvent.actor == "operator:alice")))
    assert {"disable", "delete"} <= actions
    assert page.dialogs == [] and page.console_errors == []


def test_lists_page_search_and_sort_in_the_browser(page, live_server):
    with live_server.app.app_context():
        for number in range(23):
            api_key_service.create_api_key(name=f"key {number:02d}", scopes="sms:message:send",
                                           actor="test")
    sign_in(page, live_server)
    page.goto(live_server.url + "/ui/api-keys?size=10")
    names = page.locator("td.name a")
    expect(names).to_have_count(10)
    expect(page.locator(".pager")).to_contain_text("Page 1 of 3")
    page.get_by_role("link", name="Next →").click()
    expect(page.locator(".pager")).to_contain_text("Page 2 of 3")
    expect(names.first).to_have_text("key 10")

    page.get_by_role("columnheader", name="Name").get_by_role("link").click()  # ascending
    page.get_by_role("columnheader", name="Name").get_by_role("link").click()  # descending
    expect(page.get_by_role("columnheader", name="Name")).to_have_attribute(
        "aria-sort", "descending")
    expect(names.first).to_have_text("key 22")
    expect(page.locator(".pager")).to_contain_text("Page 1 of 3")  # a new order starts over

    page.get_by_role("searchbox", name="Search").fill("KEY 1")
    page.get_by_role("button", name="Search").click()
    expect(names).to_have_text([f"key {n}" for n in range(19, 9, -1)])  # still descending
    assert "search=KEY+1" in page.url and "orderDirection=DESC" in page.url
    page.get_by_label("Status").select_option("false")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("No API keys match.")).to_be_visible()

    page.goto(live_server.url + "/ui/api-keys?orderBy=secretHash")
    expect(page.locator("h1")).to_have_text("Request refused")
    expect(page.locator(".problems")).to_contain_text("orderBy")
    screenshot(page, "bad-list-parameter")
    assert page.console_errors == []


def test_scope_picker_shows_what_an_umbrella_covers(page, live_server):
    sign_in(page, live_server)
    page.goto(live_server.url + "/ui/api-keys/new")
    covers = page.locator('[data-covers-for="message:send"]')
    pick_scope(page, "General", "message:send")
    expect(covers).to_contain_text("sms:message:send")
    expect(covers).to_contain_text("whatsapp:message:send")
    channels = page.locator("details[data-scope-group]", has=page.locator(
        "summary .group-name", has_text="Channels"))
    channels.locator("summary").click()
    sms = page.locator(".scope-entry", has=page.locator('input[value="sms:message:send"]'))
    expect(sms.locator("[data-included-by]")).to_have_text("Included in message:send")
    expect(page.locator("[data-selected-scopes]")).to_contain_text("includes 20 scopes")
    page.locator('input[value="message:send"]').uncheck()
    expect(sms.locator("[data-included-by]")).to_be_hidden()
    assert page.console_errors == []
