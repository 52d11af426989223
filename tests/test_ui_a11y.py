"""Accessibility and small screens (issue 17, item 1): every web UI page, in Debian's Chromium
through Playwright against a live server.

- axe-core (pinned in tests/package.json, installed by ``npm ci --prefix tests``) finds no
  serious or critical violation on any page, at desktop width and at 375 px;
- at 375 px (a small phone) no page scrolls sideways: ``scrollWidth <= 375``; each page's
  screenshot at that width is saved in test-artifacts/a11y/ and checked to exist.

axe is evaluated through the DevTools protocol, so the pages keep their real Content Security
Policy (no ``bypass_csp``): what is checked is what operators get.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect
from test_reach import demo_manifest
from ui_support import PASSWORD, axe_violations, browser, create_operator  # noqa: F401 - fixture

from authserver.accounts import registry as accounts
from authserver.credentials import api_keys, clients
from authserver.reach import resource_servers
from authserver.storage.audit import Actor

ROOT = Path(__file__).resolve().parent
SHOTS = ROOT.parent / "test-artifacts" / "a11y"
PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1280, "height": 860}


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=DESKTOP)
    tab = context.new_page()
    tab.console_errors = []
    # Script errors only: the 4xx pages visited on purpose are logged as failed loads.
    tab.on("console", lambda message: message.type == "error"
           and not message.text.startswith("Failed to load resource")
           and tab.console_errors.append(message.text))
    yield tab
    context.close()


def check_page(page, name: str) -> list[str]:
    """axe at desktop width and at 375 px; no sideways scrolling at 375 px; a screenshot.
    Returns what is wrong (every page is checked before the test fails)."""
    problems = [f"{name}: {found}" for found in axe_violations(page)]
    page.set_viewport_size(PHONE)
    problems += [f"{name} at 375 px: {found}" for found in axe_violations(page)]
    width = page.evaluate("document.documentElement.scrollWidth")
    if width > PHONE["width"]:
        problems.append(f"{name}: {width} px wide at 375 px")
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / f"{name}.png"
    shot.unlink(missing_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.is_file() and shot.stat().st_size > 0, shot
    page.set_viewport_size(DESKTOP)
    return problems


@pytest.fixture
def world(live_server):
    """An operator of the platform account, a customer account, and one key and one client
    (each with a long name and every field filled, the widest a row gets)."""
    create_operator(live_server.app)
    with live_server.app.app_context():
        customer = accounts.create_account(name="Customer account with a rather long name",
                                           actor="test")
        key, _ = api_keys.create_api_key(
            name="Reporting key for the nightly export job", actor="test",
            scopes=["sms:message:send", "people:read", "whatsapp:manage", "email:manage",
                    "calls:manage"],
            allowed_ips=["192.0.2.0/24", "2001:db8::/32", "198.51.100.77"])
        client, _ = clients.create_client(
            name="Billing service of the finance department", scope="message:send people:read",
            audiences=["https://billing.api.example.com/v2/resources"], token_ttl=900,
            actor=Actor("operator:alice", accounts.platform_account_id()))
        # A registered resource server: key and client pages list what they reach.
        resource_servers.register_resource_server("demo", demo_manifest(live_server.url),
                                                  actor="test")
        return {"key": key.id, "client": client.client_id, "account": customer.id}


def sign_in(page, live_server) -> None:
    page.goto(live_server.url + "/ui/sign-in")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(live_server.url + "/ui/api-keys")


def test_every_page_passes_axe_and_fits_375_px(page, live_server, world):
    url = live_server.url
    problems = []
    page.goto(url + "/ui/sign-in")
    problems += check_page(page, "sign-in")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#sign-in-error")).to_be_visible()
    problems += check_page(page, "sign-in-failed")
    sign_in(page, live_server)

    key, client = world["key"], world["client"]
    pages = {
        "api-keys": "/ui/api-keys",
        "api-keys-searched": "/ui/api-keys?search=nothing-matches&orderBy=name",
        "api-key-new": "/ui/api-keys/new",
        "api-key-edit": f"/ui/api-keys/{key}",
        "api-key-disable": f"/ui/api-keys/{key}/disable",
        "api-key-delete": f"/ui/api-keys/{key}/delete",
        "api-key-secret-gone": f"/ui/api-keys/{key}/secret",
        "clients": "/ui/clients?orderBy=name&orderDirection=DESC",
        "client-new": "/ui/clients/new",
        "client-detail": f"/ui/clients/{client}",
        "client-edit": f"/ui/clients/{client}/edit",
        "client-rotate": f"/ui/clients/{client}/rotate-secret",
        "client-disable": f"/ui/clients/{client}/disable",
        "client-delete": f"/ui/clients/{client}/delete",
        "client-secret-gone": f"/ui/clients/{client}/secret",
        "audit": "/ui/audit",
        "audit-bad-date": "/ui/audit?since=31/12/2030",
        "accounts": "/ui/accounts",
        "account-disable": f"/ui/accounts/{world['account']}/disable",
        "operators": "/ui/operators",
        "security": "/ui/security",
        "password": "/ui/security/password",
        "api-key-pick-endpoints": "/ui/api-keys/new/endpoints",
        "api-key-new-picked": "/ui/api-keys/new?endpoint=demo+POST+/sms/3/messages"
                              "&endpoint=demo+GET+/people/2/persons",
        "api-key-pick-refused": "/ui/api-keys/new?endpoint=demo+GET+/account/1/balance",
        "client-pick-endpoints": "/ui/clients/new/endpoints",
        "error-404": "/ui/no-such-page",
        "error-400": "/ui/api-keys?orderBy=secret",
    }
    for name, path in pages.items():
        page.goto(url + path)
        problems += check_page(page, name)

    # Forms in the states operators see them in: errors next to the fields, a scope group
    # open with an umbrella ticked, a secret shown once.
    page.goto(url + "/ui/api-keys/new")
    page.get_by_role("button", name="Create API key").click()
    expect(page.locator(".field-errors").first).to_be_visible()
    problems += check_page(page, "api-key-new-errors")
    page.goto(url + "/ui/clients/new")
    page.locator("summary", has_text="General").click()
    page.locator('input[value="message:send"]').check()
    page.locator("summary", has_text="Channels").click()
    expect(page.locator(".scope-entry", has=page.locator('input[value="sms:message:send"]'))
           .locator("[data-included-by]")).to_have_text("Included in message:send")
    problems += check_page(page, "client-new-umbrella")
    page.get_by_label("Name").fill("Phone-sized client")
    page.get_by_role("button", name="Create OAuth client").click()
    expect(page.locator("#client-secret")).to_be_visible()
    problems += check_page(page, "client-created")
    (SHOTS / "problems.txt").write_text("\n".join(problems) + "\n", "utf-8")
    assert problems == [], f"{len(problems)} problems, listed in {SHOTS / 'problems.txt'}"
    assert page.console_errors == []


def test_the_secret_page_fits_375_px_with_the_secret(page, live_server, world):
    """The show-once page at phone width, with the longest thing it holds: a new key."""
    sign_in(page, live_server)
    page.set_viewport_size(PHONE)
    page.goto(live_server.url + "/ui/api-keys/new")
    page.get_by_label("Name").fill("Phone key")
    page.locator("summary", has_text="Channels").click()
    page.locator('input[value="sms:message:send"]').check()
    page.get_by_role("button", name="Create API key").click()
    expect(page.locator("#api-key-secret")).to_be_visible()
    assert check_page(page, "api-key-created") == []
