"""Web UI security (SECURITY.md 1.11, UI01-UI11) through Flask's test client, on both backends."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from authserver import api_keys, audit, clients, operators
from authserver.db import db
from authserver.models import ApiKey, AuditEvent, Client, OperatorSession
from authserver.views import ui_api_keys
from authserver.views.admin_ui import SIGN_IN_FAILED, SIGN_IN_THROTTLED
from ui_support import COOKIE, HOSTILE_NAME, PASSWORD, UI, create_operator, csrf_from

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; "
       "form-action 'self'; base-uri 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY",
                    "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}
NO_LOGIN_LIMITS = {"UI_LOGIN_RATE_LIMIT": "", "UI_LOGIN_ADDRESS_RATE_LIMIT": ""}
KEY_RE = re.compile(r"asak_[0-9A-Za-z]{38}")
CLIENT_SECRET_RE = re.compile(r'id="client-secret" value="([^"]+)"')


@pytest.fixture
def app_config():
    """Sign-in throttling off, except in the tests that parametrize it."""
    return dict(NO_LOGIN_LIMITS)


@pytest.fixture
def ui(app, client):
    create_operator(app)
    return UI(client)


@pytest.fixture
def signed_in(ui):
    assert ui.sign_in().status_code == 303
    return ui


@pytest.fixture
def objects(app):
    """One API key and one OAuth client, created outside the UI."""
    with app.app_context():
        key, _ = api_keys.create_api_key(name="key", scopes="sms:message:send", actor="test")
        client, _ = clients.create_client(name="svc", scope="message:send", actor="test")
        return {"key": key.id, "client": client.client_id}


def snapshot(app) -> dict:
    """Everything a refused request must leave as it was."""
    with app.app_context():
        return {
            "keys": sorted((k.id, k.name, k.scope, k.enabled, k.valid_to)
                           for k in db.session.scalars(sa.select(ApiKey))),
            "clients": sorted((c.client_id, c.enabled, c.secret_hash)
                              for c in db.session.scalars(sa.select(Client))),
            "audit": db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)),
            "sessions": db.session.scalar(sa.select(sa.func.count()).select_from(OperatorSession)),
        }


def session_count(app) -> int:
    return snapshot(app)["sessions"]


def assert_sent_to_sign_in(response):
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/ui/sign-in")


# -- UI01: CSRF on every state change, none through GET ---------------------------------------

ACTIONS = {
    "sign-out": (lambda o: "/ui/sign-out", {}),
    "create-key": (lambda o: "/ui/api-keys/new", {"name": "x", "scopes": "sms:message:send"}),
    "edit-key": (lambda o: f"/ui/api-keys/{o['key']}", {"name": "renamed",
                                                        "scopes": "people:read"}),
    "disable-key": (lambda o: f"/ui/api-keys/{o['key']}/disable", {}),
    "create-client": (lambda o: "/ui/clients/new", {"name": "x", "scopes": "message:send",
                                                    "auth_method": "client_secret_basic"}),
    "rotate-secret": (lambda o: f"/ui/clients/{o['client']}/rotate-secret", {"grace_period": "0"}),
    "disable-client": (lambda o: f"/ui/clients/{o['client']}/disable", {}),
}


def other_sessions_token(app) -> str:
    """A valid CSRF token of somebody else's signed-in session."""
    create_operator(app, "mallory")
    other = UI(app.test_client())
    assert other.sign_in("mallory").status_code == 303
    return other.token("/ui/api-keys")


@pytest.mark.parametrize("variant", ["missing", "empty", "foreign", "stale"])
@pytest.mark.parametrize("action", list(ACTIONS))
def test_state_changing_posts_need_this_sessions_csrf_token(app, signed_in, objects, action,
                                                             variant):
    path, data = ACTIONS[action][0](objects), dict(ACTIONS[action][1])
    if variant == "foreign":
        data["csrf_token"] = other_sessions_token(app)
    elif variant == "stale":  # the token of this browser's previous session
        data["csrf_token"] = signed_in.token("/ui/api-keys")
        signed_in.post("/ui/sign-out")
        assert signed_in.sign_in().status_code == 303
    elif variant == "empty":
        data["csrf_token"] = ""
    before = snapshot(app)

    response = signed_in.client.post(path, data=data)

    assert response.status_code == 400
    assert "did not come from this site" in response.text
    assert snapshot(app) == before
    assert signed_in.client.get("/ui/api-keys").status_code == 200  # still signed in


def test_sign_in_needs_the_forms_csrf_token(app, client):
    create_operator(app)
    credentials = {"username": "alice", "password": PASSWORD}
    assert client.post("/ui/sign-in", data=credentials).status_code == 400
    other = UI(app.test_client())
    response = client.post("/ui/sign-in", data=dict(credentials, csrf_token=other.token()))
    assert response.status_code == 400
    assert session_count(app) == 0
    assert_sent_to_sign_in(client.get("/ui/api-keys"))


@pytest.mark.parametrize("path", ["/ui/sign-out", "/ui/api-keys/{key}/disable",
                                  "/ui/clients/{client}/disable",
                                  "/ui/clients/{client}/rotate-secret"])
def test_get_changes_nothing(app, signed_in, objects, path):
    before = snapshot(app)
    response = signed_in.client.get(path.format(**objects))
    assert response.status_code in (404, 405)
    assert snapshot(app) == before
    assert signed_in.client.get("/ui/api-keys").status_code == 200


# -- UI02, UI03, UI04, UI05: cookie, fixation, sign-out, timeouts -------------------------------

def test_session_cookie_is_httponly_samesite_lax_and_secure_on_https(app, client):
    create_operator(app)
    response = UI(client).sign_in()
    [cookie] = [c for c in response.headers.getlist("Set-Cookie") if c.startswith(COOKIE + "=")]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back

    https = app.test_client()
    page = https.get("/ui/sign-in", base_url="https://localhost")
    assert "Secure" in page.headers["Set-Cookie"]
    response = https.post("/ui/sign-in", base_url="https://localhost",
                          data={"csrf_token": csrf_from(page.text), "username": "alice",
                                "password": PASSWORD})
    assert response.status_code == 303
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_sign_in_rotates_the_session_and_drops_pre_login_data(app, ui):
    pre_login_token = ui.token()
    pre_login_cookie = ui.cookie()
    response = ui.sign_in()
    assert response.status_code == 303  # UI11: never 307
    assert any(c.startswith(COOKIE + "=") for c in response.headers.getlist("Set-Cookie"))
    assert ui.cookie() != pre_login_cookie
    assert ui.token("/ui/api-keys") != pre_login_token

    before = snapshot(app)
    response = ui.post("/ui/api-keys/new", {"name": "x", "scopes": "sms:message:send"},
                       token=pre_login_token)
    assert response.status_code == 400  # the pre-login CSRF token died with the old session
    assert snapshot(app) == before

    ui.set_cookie(pre_login_cookie)  # a cookie planted before sign-in signs nobody in
    assert_sent_to_sign_in(ui.client.get("/ui/api-keys"))


def test_signing_in_again_ends_the_previous_session(app, signed_in):
    first = signed_in.cookie()
    response = signed_in.post("/ui/sign-in", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 303
    assert session_count(app) == 1
    signed_in.set_cookie(first)
    assert_sent_to_sign_in(signed_in.client.get("/ui/api-keys"))


def test_sign_out_kills_the_old_cookie_on_the_server(app, signed_in):
    old_cookie = signed_in.cookie()
    old_token = signed_in.token("/ui/api-keys")
    response = signed_in.post("/ui/sign-out")
    assert response.status_code == 303 and response.headers["Location"] == "/ui/sign-in"
    assert session_count(app) == 0

    signed_in.set_cookie(old_cookie)  # replay the pre-sign-out cookie
    assert_sent_to_sign_in(signed_in.client.get("/ui/api-keys"))
    signed_in.set_cookie(old_cookie)
    before = snapshot(app)
    response = signed_in.post("/ui/api-keys/new", {"name": "x", "scopes": "sms:message:send"},
                              token=old_token)
    assert_sent_to_sign_in(response)
    assert snapshot(app) == before


def test_idle_timeout(app, signed_in, clock):
    idle = app.config["UI_IDLE_TIMEOUT"]
    assert idle == 30 * 60
    for _ in range(3):  # activity keeps the session alive
        clock.advance(idle - 1)
        assert signed_in.client.get("/ui/api-keys").status_code == 200
    clock.advance(idle)
    assert_sent_to_sign_in(signed_in.client.get("/ui/api-keys"))
    assert session_count(app) == 0


def test_absolute_timeout_even_when_active(app, signed_in, clock):
    idle, lifetime = app.config["UI_IDLE_TIMEOUT"], app.config["UI_SESSION_LIFETIME"]
    assert lifetime == 12 * 3600
    elapsed = 0
    while elapsed + idle - 60 < lifetime:
        clock.advance(idle - 60)
        elapsed += idle - 60
        assert signed_in.client.get("/ui/api-keys").status_code == 200
    clock.advance(lifetime - elapsed)
    assert_sent_to_sign_in(signed_in.client.get("/ui/api-keys"))
    assert session_count(app) == 0


def test_disabling_an_operator_ends_their_sessions(app, signed_in):
    with app.app_context():
        operators.set_enabled("alice", False, actor="test")
    assert_sent_to_sign_in(signed_in.client.get("/ui/api-keys"))
    assert signed_in.sign_in().status_code == 401


# -- UI10, UI11: redirects ---------------------------------------------------------------------

@pytest.mark.parametrize("next_path", [
    "https://evil.example/", "//evil.example/", "///evil.example/", "/\\evil.example",
    "\\\\evil.example", "javascript:alert(1)", "http:/ui/api-keys", "/ui/\r\nX-Evil: 1",
    "/settings/api-keys", "ui/clients", " /ui/clients",
])
def test_next_must_be_a_same_origin_ui_path(ui, next_path):
    response = ui.sign_in(next_path=next_path)
    assert response.status_code == 303
    assert response.headers["Location"] == "/ui/api-keys"


def test_next_to_a_ui_page_is_followed(ui):
    assert_sent_to_sign_in(ui.client.get("/ui/clients?page=0"))
    assert "next=/ui/clients?page%3D0" in ui.client.get("/ui/clients?page=0").headers["Location"]
    response = ui.sign_in(next_path="/ui/clients?page=0")
    assert response.status_code == 303
    assert response.headers["Location"] == "/ui/clients?page=0"


# -- UI06, UI07, UI08: headers, escaping, show-once ---------------------------------------------

ANONYMOUS_PAGES = ["/", "/ui", "/ui/", "/ui/sign-in", "/ui/api-keys", "/ui/no-such-page",
                   "/static/ui.css", "/static/ui.js"]
SIGNED_IN_PAGES = ["/ui/", "/ui/api-keys", "/ui/api-keys/new", "/ui/clients", "/ui/clients/new",
                   "/ui/audit", "/ui/audit?since=yesterday", "/ui/no-such-page",
                   "/ui/api-keys/0123456789ABCDEF0123456789ABCDEF", "/ui/clients/nope",
                   "/ui/sign-in"]


def assert_ui_headers(response):
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.status_code)
    if response.mimetype == "text/html":
        assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ANONYMOUS_PAGES)
def test_headers_on_pages_before_sign_in(ui, path):
    response = ui.client.get(path)
    response.close()  # static files are streamed
    assert_ui_headers(response)


@pytest.mark.parametrize("path", SIGNED_IN_PAGES)
def test_headers_on_signed_in_and_error_pages(signed_in, path):
    response = signed_in.client.get(path)
    assert response.status_code in (200, 302, 400, 404)
    assert_ui_headers(response)


def test_headers_on_refusals_and_failures(app, ui, monkeypatch):
    assert_ui_headers(ui.client.post("/ui/sign-in", data={"username": "a", "password": "b"}))
    assert_ui_headers(ui.sign_in(password="wrong password"))
    assert ui.sign_in().status_code == 303
    assert_ui_headers(ui.client.post("/ui/api-keys/new", data={"name": "x"}))

    def broken(**kwargs):
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(ui_api_keys.api_key_service, "list_api_keys", broken)
    response = ui.client.get("/ui/api-keys")
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert "connection refused" not in response.text
    assert_ui_headers(response)

    def crash(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(ui_api_keys.api_key_service, "list_api_keys", crash)
    response = ui.client.get("/ui/api-keys")
    assert response.status_code == 500 and "boom" not in response.text
    assert_ui_headers(response)


def assert_escaped(body: str):
    assert HOSTILE_NAME not in body
    assert "<script>alert" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(" in body


def test_names_with_html_render_as_text(app, signed_in):
    response = signed_in.post("/ui/api-keys/new", {"name": HOSTILE_NAME,
                                                   "scopes": "sms:message:send"})
    assert response.status_code == 200
    assert_escaped(response.text)
    response = signed_in.post("/ui/clients/new", {"name": HOSTILE_NAME, "scopes": "message:send",
                                                  "auth_method": "client_secret_basic"})
    assert_escaped(response.text)
    with app.app_context():
        key_id = db.session.scalar(sa.select(ApiKey.id))
        client_id = db.session.scalar(sa.select(Client.client_id))
    for path in ("/ui/api-keys", f"/ui/api-keys/{key_id}", "/ui/clients",
                 f"/ui/clients/{client_id}", "/ui/audit"):
        assert_escaped(signed_in.client.get(path).text)
    response = signed_in.post(f"/ui/api-keys/{key_id}/disable")
    assert_escaped(signed_in.client.get(response.headers["Location"]).text)  # flash message
    # Names that fail validation are echoed into the form, escaped too.
    response = signed_in.post("/ui/api-keys/new", {"name": HOSTILE_NAME})
    assert response.status_code == 400
    assert_escaped(response.text)


def test_username_is_echoed_escaped_on_failed_sign_in(ui):
    response = ui.sign_in(username=HOSTILE_NAME)
    assert response.status_code == 401
    assert_escaped(response.text)


def secret_leaks(response, secret: str, app) -> list[str]:
    """Places other than the page body where ``secret`` shows up."""
    leaks = [name for name, value in response.headers.items() if secret in value]
    cookie = response.headers.get("Set-Cookie", "")
    if cookie.startswith(COOKIE + "=") and "=;" not in cookie:
        value = cookie.split(";")[0].split("=", 1)[1]
        data = app.session_interface.get_signing_serializer(app).loads(value)
        if secret in repr(data):
            leaks.append("session")
    return leaks


def test_new_api_key_is_shown_once_and_only_in_the_page(app, signed_in):
    response = signed_in.post("/ui/api-keys/new", {"name": "once", "scopes": "sms:message:send"})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert "Location" not in response.headers
    [secret] = set(KEY_RE.findall(response.text))
    assert "will not be shown again" in response.text
    assert secret_leaks(response, secret, app) == []
    with app.app_context():
        record = api_keys.query_api_key(secret)
        assert record is not None and record.name == "once"
    for path in ("/ui/api-keys", f"/ui/api-keys/{record.id}", "/ui/audit"):
        page = signed_in.client.get(path)
        assert secret not in page.text and secret_leaks(page, secret, app) == []


def test_client_secret_is_shown_once_at_creation_and_rotation(app, signed_in):
    response = signed_in.post("/ui/clients/new", {"name": "svc", "scopes": "message:send",
                                                  "token_ttl": "600",
                                                  "auth_method": "client_secret_post"})
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert "Location" not in response.headers
    secret = CLIENT_SECRET_RE.search(response.text).group(1)
    client_id = re.search(r'id="client-id" value="([^"]+)"', response.text).group(1)
    assert secret_leaks(response, secret, app) == []
    with app.app_context():
        client = clients.get_client(client_id)
        assert client.check_client_secret(secret) and client.token_ttl == 600
        assert client.auth_method == "client_secret_post"

    response = signed_in.post(f"/ui/clients/{client_id}/rotate-secret", {"grace_period": "0"})
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    new_secret = CLIENT_SECRET_RE.search(response.text).group(1)
    assert new_secret != secret and secret_leaks(response, new_secret, app) == []
    with app.app_context():
        client = clients.get_client(client_id)
        assert client.check_client_secret(new_secret) and not client.check_client_secret(secret)
    for path in ("/ui/clients", f"/ui/clients/{client_id}", "/ui/audit"):
        body = signed_in.client.get(path).text
        assert secret not in body and new_secret not in body


# -- UI09: sign-in answers and throttling --------------------------------------------------------

def test_unknown_user_wrong_password_and_disabled_account_look_the_same(app, ui):
    create_operator(app, "carol")
    with app.app_context():
        operators.set_enabled("carol", False, actor="test")
    answers = set()
    for username, password in (("alice", "wrong password"), ("nobody", PASSWORD),
                               ("carol", PASSWORD)):
        response = ui.sign_in(username, password)
        body = response.text.replace(f'value="{username}"', 'value="USER"')
        answers.add((response.status_code, body, response.headers.get("Location")))
        assert SIGN_IN_FAILED in response.text
    assert len(answers) == 1
    assert next(iter(answers))[0] == 401
    assert session_count(app) == 0


def test_unknown_user_costs_one_password_hash_like_a_known_one(app, ui, monkeypatch):
    assert not operators.password_hasher.check_needs_rehash(operators.DUMMY_HASH)
    verified = []
    real_check = operators.check_password
    monkeypatch.setattr(operators, "check_password",
                        lambda password, stored: verified.append(stored) or real_check(password,
                                                                                        stored))
    ui.sign_in("nobody", PASSWORD)
    ui.sign_in("alice", "wrong password")
    assert verified[0] == operators.DUMMY_HASH and verified[1] != operators.DUMMY_HASH
    assert len(verified) == 2

    # Wall-clock check, interleaved and taking the fastest of each (load on the machine only
    # ever adds time): both answers cost one Argon2 verification.
    times: dict[str, list[float]] = {"nobody": [], "alice": []}
    for _ in range(7):
        for username in times:
            start = time.perf_counter()
            ui.sign_in(username, "wrong password")
            times[username].append(time.perf_counter() - start)
    unknown, wrong = min(times["nobody"]), min(times["alice"])
    assert 0.5 < unknown / wrong < 2.0, (unknown, wrong)


MOVING = {"RATELIMIT_STRATEGY": "moving-window"}


@pytest.mark.parametrize("app_config", [dict(MOVING, UI_LOGIN_RATE_LIMIT="3/hour",
                                             UI_LOGIN_ADDRESS_RATE_LIMIT="")])
def test_sign_in_is_throttled_per_username_with_identical_answers(app, ui, app_config):
    create_operator(app, "bob")
    throttled = set()
    for username in ("alice", "nobody"):
        for _ in range(3):
            assert ui.sign_in(username, "wrong password").status_code == 401
        response = ui.sign_in(username, PASSWORD)  # even the right password waits
        assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0
        assert SIGN_IN_THROTTLED in response.text
        throttled.add((response.status_code,
                       response.text.replace(f'value="{username}"', 'value="USER"')))
    assert len(throttled) == 1
    assert ui.sign_in("ALICE ", PASSWORD).status_code == 429  # same account, other spelling
    assert ui.sign_in("bob", PASSWORD).status_code == 303  # other accounts are not locked


@pytest.mark.parametrize("app_config", [dict(MOVING, UI_LOGIN_RATE_LIMIT="",
                                             UI_LOGIN_ADDRESS_RATE_LIMIT="4/hour")])
def test_sign_in_is_throttled_per_address(app, ui, app_config):
    for username in ("u1", "u2", "u3", "u4"):
        assert ui.sign_in(username, "wrong password").status_code == 401
    assert ui.sign_in("alice", PASSWORD).status_code == 429
    other_address = app.test_client()
    other_address.environ_base["REMOTE_ADDR"] = "192.0.2.9"
    assert UI(other_address).sign_in().status_code == 303


@pytest.mark.parametrize("app_config", [dict(MOVING, UI_LOGIN_RATE_LIMIT="2/second",
                                             UI_LOGIN_ADDRESS_RATE_LIMIT="")])
def test_lockout_is_temporary(app, ui, app_config):
    for _ in range(2):
        assert ui.sign_in("alice", "wrong password").status_code == 401
    assert ui.sign_in().status_code == 429
    time.sleep(1.1)
    assert ui.sign_in().status_code == 303


# -- forms: service validation next to the fields; edits; audit ------------------------------------

def field_errors(body: str) -> dict[str, str]:
    return dict(re.findall(r'<ul class="field-errors" id="([^"]+)-errors">(.*?)</ul>', body, re.S))


def test_api_key_validation_errors_are_shown_next_to_their_fields(app, signed_in):
    before = snapshot(app)
    response = signed_in.post("/ui/api-keys/new", {"name": " ", "expiration": "2001-01-01",
                                                   "allowed_ips": "10.0.0.1/8"})
    assert response.status_code == 400
    errors = field_errors(response.text)
    assert set(errors) == {"name", "expiration", "allowed_ips", "scopes"}
    assert "at least one scope is required" in errors["scopes"]
    assert "10.0.0.1/8" in errors["allowed_ips"]
    assert 'aria-invalid="true"' in response.text
    assert ">10.0.0.1/8</textarea>" in response.text  # what was typed is kept
    assert snapshot(app) == before


def test_client_validation_errors_are_shown_next_to_their_fields(app, signed_in):
    before = snapshot(app)
    response = signed_in.post("/ui/clients/new", {"name": "svc", "token_ttl": "ten",
                                                  "auth_method": "client_secret_basic"})
    assert response.status_code == 400
    errors = field_errors(response.text)
    assert set(errors) == {"token_ttl", "scopes"}
    assert "at least one scope is required" in errors["scopes"]
    assert snapshot(app) == before


def test_create_api_key_defaults_to_one_year_and_takes_scopes_from_two_groups(app, signed_in,
                                                                               clock):
    page = signed_in.client.get("/ui/api-keys/new").text
    default_day = (clock.now + api_keys.DEFAULT_VALIDITY).date().isoformat()
    assert f'name="expiration" value="{default_day}"' in page
    for group in ("General", "Channels", "Connectivity", "Platform", "Customer Engagement",
                  "Web SDK", "AI"):
        assert f'<span class="group-name">{group}</span>' in page
    response = signed_in.post("/ui/api-keys/new", {
        "name": "two groups", "expiration": default_day, "allowed_ips": "192.0.2.0/24, 10.0.0.1",
        "scopes": ["sms:message:send", "people:read"]})
    assert response.status_code == 200
    with app.app_context():
        [record] = db.session.scalars(sa.select(ApiKey)).all()
        shown = api_keys.describe(record)
    assert shown["scopeGuids"] == ["sms:message:send", "people:read"]
    assert shown["allowedIPs"] == ["192.0.2.0/24", "10.0.0.1"]
    assert shown["validTo"] == f"{default_day}T00:00:00Z"


def test_edit_api_key(app, signed_in, objects, clock):
    with app.app_context():
        original_valid_to = api_keys.get_api_key(objects["key"]).valid_to
    page = signed_in.client.get(f"/ui/api-keys/{objects['key']}").text
    expiration = re.search(r'name="expiration" value="([^"]+)"', page).group(1)
    response = signed_in.post(f"/ui/api-keys/{objects['key']}", {
        "name": "renamed", "expiration": expiration, "allowed_ips": "198.51.100.7",
        "scopes": ["email:message:send", "people:read"]})
    assert response.status_code == 303
    with app.app_context():
        record = api_keys.get_api_key(objects["key"])
        assert record.name == "renamed" and record.scope == "email:message:send people:read"
        assert record.allowed_ips == ["198.51.100.7"]
        assert record.valid_to == original_valid_to  # an unchanged date keeps the instant
    new_day = (clock.now + timedelta(days=400)).date().isoformat()
    response = signed_in.post(f"/ui/api-keys/{objects['key']}", {
        "name": "renamed", "expiration": new_day, "scopes": "people:read"})
    assert response.status_code == 303, field_errors(response.text)
    with app.app_context():
        record = api_keys.get_api_key(objects["key"])
        assert api_keys.describe(record)["validTo"] == f"{new_day}T00:00:00Z"
        assert record.allowed_ips == []

    response = signed_in.post(f"/ui/api-keys/{objects['key']}/disable")
    assert response.status_code == 303
    page = signed_in.client.get(response.headers["Location"]).text
    assert "disabled for good" in page and "Disable API key</button>" not in page
    with app.app_context():
        assert not api_keys.get_api_key(objects["key"]).enabled


def test_disable_client(app, signed_in, objects):
    response = signed_in.post(f"/ui/clients/{objects['client']}/disable")
    assert response.status_code == 303
    with app.app_context():
        assert not clients.get_client(objects["client"]).enabled
    page = signed_in.client.get(response.headers["Location"]).text
    assert "This client is disabled." in page and "Rotate secret</button>" not in page


def test_audit_log_records_the_operator_and_filters(app, signed_in, objects, clock):
    clock.advance(60)
    signed_in.post(f"/ui/api-keys/{objects['key']}/disable")
    clock.advance(60)
    signed_in.post(f"/ui/clients/{objects['client']}/disable")
    with app.app_context():
        events, _ = audit.query_events(actor="operator:alice")
    assert [e.object_id for e in events] == [objects["client"], objects["key"]]  # newest first

    body = signed_in.client.get("/ui/audit").text
    assert body.index(objects["client"]) < body.index(objects["key"])  # newest first
    body = signed_in.client.get("/ui/audit", query_string={"actor": "operator:alice",
                                                           "object_type": "api-key"}).text
    assert objects["key"] in body and objects["client"] not in body
    body = signed_in.client.get("/ui/audit", query_string={"object_id": objects["client"]}).text
    assert objects["client"] in body and objects["key"] not in body
    tomorrow = (clock.now + timedelta(days=1)).date().isoformat()
    body = signed_in.client.get("/ui/audit", query_string={"since": tomorrow}).text
    assert "No audit events match." in body
    response = signed_in.client.get("/ui/audit", query_string={"until": "31/12/2030"})
    assert response.status_code == 400 and "until" in field_errors(response.text)
