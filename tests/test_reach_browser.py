"""What a credential can reach, in Debian's Chromium through Playwright (both backends): the
reach list on a key's and a client's page, and picking endpoints on the create form, which
ticks the narrowest scopes with a plain GET form (the CSP allows no inline script). An
axe-core run on these pages finds no serious or critical violation."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from test_reach import demo_manifest
from test_ui_browser import screenshot, sign_in
from ui_support import axe_violations, browser  # noqa: F401 - fixture

from authserver.credentials import api_keys, clients
from authserver.reach import resource_servers

@pytest.fixture
def page(browser, live_server):  # noqa: F811
    """A fresh profile, and the demo API registered for the live server's audience."""
    with live_server.app.app_context():
        resource_servers.register_resource_server("demo", demo_manifest(live_server.url),
                                                  actor="test")
    context = browser.new_context(viewport={"width": 1366, "height": 860})
    tab = context.new_page()
    tab.console_errors = []
    tab.on("console", lambda message: message.type == "error"
           and tab.console_errors.append(message.text))
    yield tab
    context.close()


def test_key_and_client_pages_list_what_they_reach(page, live_server):
    with live_server.app.app_context():
        key_id = api_keys.create_api_key(name="sender", scopes=["message:send"],
                                         actor="test")[0].id
        client_id = clients.create_client(name="svc", scope="message:send people:read",
                                          actor="test")[0].client_id
    sign_in(page, live_server)
    page.goto(f"{live_server.url}/ui/api-keys/{key_id}")
    section = page.get_by_role("region", name="What it can reach")
    expect(section).to_contain_text("5 of 13 endpoints")
    table = section.locator('table[data-reach-server="demo"]')
    for method, path in (("POST", "/sms/3/messages"), ("POST", "/sms/2/text/advanced"),
                         ("GET", "/sms/3/reports")):
        expect(table.locator(f'tr[data-endpoint="{method} {path}"]')).to_contain_text(
            "message:send")
    expect(table.locator('tr[data-endpoint="GET /sms/1/bulks"]')).to_have_count(0)
    section.scroll_into_view_if_needed()
    screenshot(page, "reach-api-key")
    assert axe_violations(page, "[data-reach]") == []

    page.goto(f"{live_server.url}/ui/clients/{client_id}")
    section = page.get_by_role("region", name="What it can reach")
    bulks = section.locator('tr[data-endpoint="GET /sms/1/bulks"]')
    expect(bulks).to_contain_text("sms:message:send")
    expect(bulks).to_contain_text("ask for it in the token request")
    expect(section.locator('tr[data-endpoint="GET /people/2/persons"]')).to_be_visible()
    assert axe_violations(page, "[data-reach]") == []
    assert page.console_errors == []


def test_pick_endpoints_then_create_a_key_with_the_narrowest_scopes(page, live_server):
    sign_in(page, live_server)
    page.get_by_role("link", name="Create API key").first.click()
    page.get_by_role("link", name="Pick the endpoints it must call").click()
    expect(page).to_have_url(re.compile(r"/ui/api-keys/new/endpoints$"))
    expect(page.get_by_role("heading", name="Pick the endpoints it must call")).to_be_visible()
    # the balance endpoint refuses API keys: it cannot be picked for a key
    expect(page.locator('input[value="demo GET /account/1/balance"]')).to_be_disabled()
    page.locator('input[value="demo POST /sms/3/messages"]').check()
    page.locator('input[value="demo GET /sms/3/logs"]').check()
    page.locator('input[value="demo GET /people/2/persons"]').check()
    screenshot(page, "reach-pick-endpoints", full_page=True)
    assert axe_violations(page, "main form") == []
    page.get_by_role("button", name="Tick the narrowest scopes").click()

    expect(page).to_have_url(re.compile(r"/ui/api-keys/new\?endpoint="))
    notice = page.locator("[data-picked]")
    expect(notice).to_contain_text("for the 3 endpoints you picked")
    for scope in ("people:read", "sms:logs:read", "sms:message:send"):
        expect(notice).to_contain_text(scope)
        expect(page.locator(f'input[name="scopes"][value="{scope}"]')).to_be_checked()
    expect(page.locator('input[name="scopes"]:checked')).to_have_count(3)
    assert axe_violations(page, "[data-picked]") == []
    page.get_by_label("Name").fill("least privilege")
    page.get_by_role("button", name="Create API key").click()
    expect(page).to_have_url(re.compile(r"/ui/api-keys/[0-9A-F]{32}/secret$"))
    key_id = re.search(r"/ui/api-keys/([0-9A-F]{32})/secret", page.url).group(1)

    page.goto(f"{live_server.url}/ui/api-keys/{key_id}")
    table = page.get_by_role("region", name="What it can reach").locator(
        'table[data-reach-server="demo"]')
    for endpoint in ("POST /sms/3/messages", "GET /sms/3/logs", "GET /people/2/persons"):
        expect(table.locator(f'tr[data-endpoint="{endpoint}"]')).to_be_visible()
    with live_server.app.app_context():
        assert sorted(api_keys.describe(api_keys.get_api_key(key_id))["scopeGuids"]) == [
            "people:read", "sms:logs:read", "sms:message:send"]
    assert page.console_errors == []


def test_pick_endpoints_for_a_client_at_375_px(page, live_server):
    page.set_viewport_size({"width": 375, "height": 800})
    sign_in(page, live_server)
    page.goto(f"{live_server.url}/ui/clients/new")
    page.get_by_role("link", name="Pick the endpoints it must call").click()
    expect(page.locator('input[value="demo GET /account/1/balance"]')).to_be_enabled()
    page.locator('input[value="demo GET /account/1/balance"]').check()
    page.locator('input[value="demo POST /whatsapp/1/message/text"]').check()
    page.locator('input[value="demo POST /sms/3/messages"]').check()
    # Nothing of the picker is wider than the phone's screen (the top navigation is the
    # page frame's, tests/test_ui_browser.py).
    right = page.evaluate("""() => Math.max(...[...document.querySelectorAll('main form, main form *')]
        .map(element => element.getBoundingClientRect().right))""")
    assert right <= 375, right
    screenshot(page, "reach-pick-endpoints-375", full_page=True)
    page.get_by_role("button", name="Tick the narrowest scopes").click()
    for scope in ("account-management:manage", "sms:message:send", "whatsapp:message:send"):
        expect(page.locator(f'input[name="scopes"][value="{scope}"]')).to_be_checked()
    expect(page.locator('input[name="scopes"]:checked')).to_have_count(3)
