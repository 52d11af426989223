"""Operators in a real browser (Debian's Chromium through Playwright, against a live server on
both database backends): roles, the one-time password, the TOTP second factor with recovery
codes, password changes and sessions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyotp
import pytest
from playwright.sync_api import expect
from test_ui_browser import nav, pick_scope, screenshot
from ui_support import (  # noqa: F401 - fixture
    PASSWORD, axe_violations, browser, create_operator, submit)

NEW_PASSWORD = "a brand new passphrase 42"


@pytest.fixture
def contexts(browser, live_server):  # noqa: F811
    """New browser profiles on demand (``contexts()`` -> a page), each closed at the end."""
    opened = []

    def new_page():
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        opened.append(context)
        tab = context.new_page()
        tab.console_errors = []
        tab.on("console", lambda message: message.type == "error"
               and tab.console_errors.append(message.text))
        tab.on("dialog", lambda dialog: dialog.accept())
        return tab

    yield new_page
    for context in opened:
        context.close()


def sign_in(page, live_server, username: str = "alice", password: str = PASSWORD) -> None:
    """Fill in the sign-in form (whatever comes next: a page, a code, a new password)."""
    page.goto(live_server.url + "/ui/sign-in")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    submit(page, page.get_by_role("button", name="Sign in"))


def open_security(page) -> None:
    page.locator(".signout a.who").click()
    expect(page.get_by_role("heading", name="Your security")).to_be_visible()


def code_in(secret: str, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(datetime.now(timezone.utc) + timedelta(seconds=30 * steps))


def test_owner_creates_a_viewer_who_cannot_write(contexts, live_server):
    create_operator(live_server.app)
    owner = contexts()
    sign_in(owner, live_server)
    expect(owner).to_have_url(live_server.url + "/ui/api-keys")
    nav(owner, "Operators")
    owner.get_by_label("New operator's username").fill("vera")
    owner.get_by_label("Role", exact=True).select_option("viewer")
    owner.get_by_role("button", name="Create operator").click()
    expect(owner.get_by_text("It will not be shown again.")).to_be_visible()
    temporary = owner.locator("#temporary-password").input_value()
    screenshot(owner, "operator-created")
    owner.get_by_role("link", name="Back to the operators").click()
    row = owner.locator("tr[data-operator=vera]")
    expect(row.get_by_label("Role of vera")).to_have_value("viewer")
    assert temporary not in owner.content()

    viewer = contexts()
    sign_in(viewer, live_server, "vera", temporary)
    expect(viewer).to_have_url(live_server.url + "/ui/security/password")
    viewer.get_by_label("Current password").fill(temporary)
    viewer.get_by_label("New password").fill(NEW_PASSWORD)
    viewer.get_by_role("button", name="Change password").click()
    expect(viewer.get_by_role("heading", name="Your security")).to_be_visible()

    nav(viewer, "Operators")
    expect(viewer.get_by_role("button", name="Create operator")).to_have_count(0)
    viewer.goto(live_server.url + "/ui/api-keys/new")
    viewer.get_by_label("Name").fill("not allowed")
    pick_scope(viewer, "Channels", "sms:message:send")
    viewer.get_by_role("button", name="Create API key").click()
    expect(viewer.get_by_role("heading", name="Error 403")).to_be_visible()
    expect(viewer.get_by_text("Your role (viewer) does not allow you to make changes")
           ).to_be_visible()
    screenshot(viewer, "viewer-refused")
    nav(viewer, "API keys")
    expect(viewer.get_by_text("not allowed")).to_have_count(0)
    # A viewer is not offered what it may not do (the server refuses it either way).
    expect(viewer.get_by_role("link", name="Create API key")).to_have_count(0)
    assert owner.console_errors == []
    # The refused POST itself is the one resource that failed to load.
    assert [m for m in viewer.console_errors if "status of 403" not in m] == []


def test_totp_enrollment_sign_in_with_a_code_and_a_recovery_code_once(contexts, live_server):
    create_operator(live_server.app)
    page = contexts()
    sign_in(page, live_server)
    open_security(page)
    page.get_by_role("button", name="Set up a second factor").click()
    expect(page.get_by_text("It will not be shown again.")).to_be_visible()
    secret = page.locator("#totp-secret").input_value()
    assert page.locator("#totp-uri").input_value().startswith("otpauth://totp/")
    page.get_by_label("Code shown by your app").fill(code_in(secret))
    page.get_by_role("button", name="Turn on").click()
    # all_inner_texts() does not wait: first the page that shows the codes.
    expect(page.locator("[data-recovery-codes] code")).to_have_count(10)
    codes = page.locator("[data-recovery-codes] code").all_inner_texts()
    assert len(set(codes)) == 10
    screenshot(page, "recovery-codes")
    page.get_by_role("link", name="I have stored the codes").click()
    expect(page.locator("[data-two-factor]")).to_have_attribute("data-two-factor", "on")
    page.get_by_role("button", name="Sign out").click()

    # Password, then a code (the next time step: the enrollment used this one).
    sign_in(page, live_server)
    expect(page).to_have_url(live_server.url + "/ui/sign-in/code")
    page.get_by_label("Code").fill(code_in(secret, 1))
    page.get_by_role("button", name="Verify").click()
    expect(page).to_have_url(live_server.url + "/ui/api-keys")
    page.get_by_role("button", name="Sign out").click()

    # A recovery code instead, once.
    for attempt in range(2):
        sign_in(page, live_server)
        page.get_by_label("Code").fill(codes[0])
        page.get_by_role("button", name="Verify").click()
        if attempt == 0:
            expect(page).to_have_url(live_server.url + "/ui/api-keys")
            open_security(page)
            expect(page.get_by_text("9 unused recovery codes left")).to_be_visible()
            page.get_by_role("button", name="Sign out").click()
        else:
            expect(page.locator("#code-error")).to_contain_text("not valid")
            expect(page).to_have_url(live_server.url + "/ui/sign-in/code")
    # The refused second use (a 401 page) is the one resource that failed to load.
    assert [m for m in page.console_errors if "status of 401" not in m] == []


def test_password_change_ends_the_other_session(contexts, live_server):
    create_operator(live_server.app)
    laptop, phone = contexts(), contexts()
    for page in (laptop, phone):
        sign_in(page, live_server)
        expect(page).to_have_url(live_server.url + "/ui/api-keys")
    open_security(phone)
    phone.get_by_role("link", name="Change password").click()
    phone.get_by_label("Current password").fill(PASSWORD)
    phone.get_by_label("New password").fill(NEW_PASSWORD)
    phone.get_by_role("button", name="Change password").click()
    expect(phone.locator(".notice-ok")).to_contain_text("1 other session ended")
    laptop.reload()
    expect(laptop).to_have_url(live_server.url + "/ui/sign-in?next=/ui/api-keys")
    nav(phone, "API keys")
    expect(phone).to_have_url(live_server.url + "/ui/api-keys")


def test_list_and_end_a_session(contexts, live_server):
    create_operator(live_server.app)
    laptop, phone = contexts(), contexts()
    for page in (laptop, phone):
        sign_in(page, live_server)
        expect(page).to_have_url(live_server.url + "/ui/api-keys")
    open_security(phone)
    rows = phone.locator("table.sessions tbody tr")
    expect(rows).to_have_count(2)
    current = phone.locator("tr[data-current-session]")
    expect(current).to_contain_text("this session")
    screenshot(phone, "sessions")
    other = phone.locator("table.sessions tbody tr:not([data-current-session])")
    other.get_by_role("button", name="End session").click()
    expect(phone.locator(".notice-ok")).to_contain_text("The session has ended")
    expect(rows).to_have_count(1)
    laptop.reload()
    expect(laptop).to_have_url(live_server.url + "/ui/sign-in?next=/ui/api-keys")
    assert phone.console_errors == []


def check_page(page, name: str, problems: dict) -> None:
    """No serious axe finding and no sideways scrolling at this width; a screenshot."""
    found = axe_violations(page)
    if page.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1"):
        found.append("wider than the window")
    if found:
        problems[name] = found
    screenshot(page, f"operators-{name}-{page.viewport_size['width']}", full_page=True)


@pytest.mark.parametrize("width", [1280, 375])
def test_operator_pages_are_accessible_and_fit_a_phone(contexts, live_server, width):
    create_operator(live_server.app)
    page = contexts()
    page.set_viewport_size({"width": width, "height": 800})
    problems: dict[str, list[str]] = {}
    sign_in(page, live_server)
    page.goto(live_server.url + "/ui/operators")
    check_page(page, "list", problems)
    page.get_by_label("New operator's username").fill("vera")
    submit(page, page.get_by_role("button", name="Create operator"))
    check_page(page, "one-time-password", problems)
    page.goto(live_server.url + "/ui/operators/vera/reset-password")
    check_page(page, "confirm-reset-password", problems)
    page.goto(live_server.url + "/ui/security/password")
    check_page(page, "password", problems)
    page.goto(live_server.url + "/ui/security")
    check_page(page, "security", problems)
    submit(page, page.get_by_role("button", name="Set up a second factor"))
    check_page(page, "enroll", problems)
    page.get_by_label("Code shown by your app").fill("000000")
    submit(page, page.get_by_role("button", name="Turn on"))
    check_page(page, "enroll-error", problems)
    submit(page, page.get_by_role("button", name="Start again with a new key"))
    secret = page.locator("#totp-secret").input_value()
    page.get_by_label("Code shown by your app").fill(code_in(secret))
    submit(page, page.get_by_role("button", name="Turn on"))
    check_page(page, "recovery-codes", problems)
    submit(page, page.get_by_role("link", name="I have stored the codes"))
    submit(page, page.get_by_role("button", name="Sign out"))
    sign_in(page, live_server)
    check_page(page, "code", problems)
    assert problems == {}
