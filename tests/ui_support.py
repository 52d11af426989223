"""Helpers for the web UI tests: operator accounts, CSRF tokens and a signed-in test client."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from unittest import mock

import pytest

from authserver.credentials import operators

PASSWORD = "correct horse battery staple"
#: Sign-in throttling off: for modules that sign in for (nearly) every test.
NO_LOGIN_LIMITS = {"UI_LOGIN_RATE_LIMIT": "", "UI_LOGIN_ADDRESS_RATE_LIMIT": ""}
COOKIE = "authserver_ui"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
#: Debian's Chromium, driven by Playwright (its own browser download does not work here).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: axe-core, pinned in tests/package.json and installed by ``npm ci --prefix tests``.
AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
#: The axe impacts that fail an accessibility test.
BLOCKING = ("serious", "critical")
HOSTILE_NAME = '<script>alert("x")</script><img src=x onerror=alert(1)>&amp; "quoted"'


#: password -> its Argon2id hash, made once per test process (see create_operator).
_HASHES: dict[str, str] = {}


def _hash_once(password: str) -> str:
    if password not in _HASHES:
        _HASHES[password] = operators.password_hasher.hash(password)
    return _HASHES[password]


def create_operator(app, username: str = "alice", password: str = PASSWORD) -> None:
    """Create an enabled operator account.

    The password's Argon2id hash (salt included) is made once per process and reused: a
    hash costs ~45 ms of CPU, and hundreds of UI tests create an operator. Signing in still
    verifies the password against it with the production parameters; the tests of hashing
    itself (UI09, tests/test_operator_security.py) call the service directly."""
    with app.app_context(), mock.patch.object(operators, "hash_password", _hash_once):
        operators.create_operator(username=username, password=password, actor="test")


def csrf_from(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = CSRF_RE.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


class UI:
    """Drives the web UI through Flask's test client, as a browser would."""

    def __init__(self, client):
        self.client = client

    def token(self, path: str = "/ui/sign-in") -> str:
        """GET ``path`` and return its form's CSRF token."""
        response = self.client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        return csrf_from(response.text)

    def sign_in(self, username: str = "alice", password: str = PASSWORD, next_path=None):
        """Fill in and post the sign-in form; returns the POST's response."""
        data = {"csrf_token": self.token(), "username": username, "password": password}
        if next_path is not None:
            data["next"] = next_path
        return self.client.post("/ui/sign-in", data=data)

    def post(self, path: str, data: dict | None = None, *, token: str | None = None,
             form_page: str = "/ui/api-keys"):
        """POST a form with the current session's CSRF token (or the given one)."""
        data = dict(data or {})
        data["csrf_token"] = token if token is not None else self.token(form_page)
        return self.client.post(path, data=data)

    def cookie(self) -> str | None:
        """The current value of the UI's session cookie."""
        cookie = self.client.get_cookie(COOKIE)
        return cookie.value if cookie else None

    def set_cookie(self, value: str) -> None:
        """Replace the UI's session cookie (replaying an old one)."""
        self.client.set_cookie(COOKIE, value)


# Fixtures for modules that sign in for every test: ``from ui_support import app_config, ui``.

@pytest.fixture
def app_config():
    """The app without sign-in throttling."""
    return dict(NO_LOGIN_LIMITS)


@pytest.fixture
def ui(app, client):
    """A test client signed in to the web UI as alice, the account's owner."""
    create_operator(app)
    signed_in = UI(client)
    assert signed_in.sign_in().status_code == 303
    return signed_in


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium for one module's tests (each test opens its own context)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "install Chromium: apt-get install chromium"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                              headless=True)
        yield chromium
        chromium.close()


def submit(page, control) -> None:
    """Click a control that leaves the page (a form's button, a link) and wait until the page
    it leads to has loaded: a check run right after a bare click can meet the old page, or a
    document that is being replaced."""
    with page.expect_navigation():
        control.click()


@functools.lru_cache(maxsize=1)
def _axe_source() -> str:
    assert AXE.is_file(), "run: npm ci --prefix tests"
    return AXE.read_text("utf-8")


def axe_violations(page, within: str | None = None) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now (only inside the
    CSS selector ``within``, if given). axe is evaluated through the DevTools protocol, so
    the page keeps its real Content Security Policy; its source (half a megabyte) is sent
    only to a document that does not have it yet."""
    if not page.evaluate("() => Boolean(window.axe)"):
        page.evaluate("source => { (0, eval)(source); }", _axe_source())
    found = page.evaluate("""async (within) => {
        const context = within ? {include: [[within]]} : document;
        const result = await window.axe.run(context, {resultTypes: ["violations"]});
        return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 3).map(n => n.target.join(" ") + " " + n.failureSummary)}));
    }""", within)
    return [f"{v['impact']} {v['id']}: {v['help']} at {v['nodes']}" for v in found
            if v["impact"] in BLOCKING]
