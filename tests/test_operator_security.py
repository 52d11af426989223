"""An operator's own security in the web UI, on both backends: changing the password, the
TOTP second factor (RFC 6238) with recovery codes, and seeing and ending sessions."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import pytest
import sqlalchemy as sa
from ui_support import PASSWORD, UI, create_operator, csrf_from

from authserver.admin.cli import main
from authserver.credentials import operators, second_factor
from authserver.credentials.keyring import current_keyring
from authserver.storage.db import db
from authserver.storage.models import AuditEvent, Operator, OperatorRecoveryCode, OperatorSession

NO_LOGIN_LIMITS = {"UI_LOGIN_RATE_LIMIT": "", "UI_LOGIN_ADDRESS_RATE_LIMIT": ""}
NEW_PASSWORD = "a brand new passphrase 42"
SECRET_RE = re.compile(r'id="totp-secret" value="([A-Z2-7]+)"')
URI_RE = re.compile(r'id="totp-uri" value="([^"]+)"')
RECOVERY_RE = re.compile(r"<code>([a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4})</code>")
HANDLE_RE = re.compile(r'data-session="([0-9a-f]{16})"( data-current-session)?')


@pytest.fixture
def app_config():
    return dict(NO_LOGIN_LIMITS)


def signed_in(app, username: str = "alice", password: str = PASSWORD) -> UI:
    ui = UI(app.test_client())
    assert ui.sign_in(username, password).status_code == 303
    return ui


def operator_row(app, username: str = "alice") -> Operator:
    with app.app_context():
        operator = operators.get_operator(username)
        db.session.expunge(operator)
        return operator


def actions(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(sa.select(AuditEvent.action).where(
            AuditEvent.object_type == "operator").order_by(AuditEvent.id)))


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def enroll(app, ui: UI, clock) -> tuple[str, list[str]]:
    """Set up the second factor through the UI; returns the secret and the recovery codes."""
    response = ui.post("/ui/security/two-factor", form_page="/ui/security")
    assert response.status_code == 303
    response = ui.client.get(response.headers["Location"])
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    secret = SECRET_RE.search(response.text).group(1)
    code = pyotp.TOTP(secret).at(clock.now)
    response = ui.post("/ui/security/two-factor/confirm", {"code": code},
                       form_page="/ui/security")
    assert response.status_code == 303
    response = ui.client.get(response.headers["Location"])
    codes = RECOVERY_RE.findall(response.text)
    assert len(codes) == 10 == len(set(codes))
    return secret, codes


def code_at(secret: str, clock, steps: int) -> str:
    """The TOTP code ``steps`` time steps from the clock's now."""
    return pyotp.TOTP(secret).at(clock.now + timedelta(seconds=30 * steps))


def send_code(client, code: str):
    """The second step of sign-in: post ``code`` with the code page's CSRF token."""
    page = client.get("/ui/sign-in/code")
    assert page.status_code == 200, page.status_code
    return client.post("/ui/sign-in/code", data={"csrf_token": csrf_from(page.text),
                                                 "code": code})


# -- password --------------------------------------------------------------------------------

@pytest.mark.parametrize("current, new, field", [
    ("wrong password here", NEW_PASSWORD, "current_password"),
    ("", NEW_PASSWORD, "current_password"),
    (PASSWORD, "short", "password"),
    (PASSWORD, "x" * 257, "password"),
    (PASSWORD, PASSWORD, "password"),
    ("\x00" * 3, NEW_PASSWORD, None),  # refused by the UI's one text check (AD12)
])
def test_a_refused_password_change_changes_nothing(app, current, new, field):
    create_operator(app)
    other = signed_in(app)
    ui = signed_in(app)
    before = (operator_row(app).password_hash, count(app, AuditEvent),
              count(app, OperatorSession))
    response = ui.post("/ui/security/password", {"current_password": current, "password": new},
                       form_page="/ui/security/password")
    assert response.status_code == 400
    assert field is None or f'id="{field}-errors"' in response.text
    assert (operator_row(app).password_hash, count(app, AuditEvent),
            count(app, OperatorSession)) == before
    assert other.client.get("/ui/api-keys").status_code == 200


def test_UI14_changing_the_password_ends_every_other_session(app):
    create_operator(app)
    create_operator(app, "bob")
    other = signed_in(app)
    bobs = signed_in(app, "bob")
    ui = signed_in(app)
    response = ui.post("/ui/security/password", {"current_password": PASSWORD,
                                                 "password": NEW_PASSWORD},
                       form_page="/ui/security/password")
    assert response.status_code == 303 and response.headers["Location"] == "/ui/security"
    assert "1 other session ended" in ui.client.get("/ui/security").text
    assert ui.client.get("/ui/api-keys").status_code == 200
    assert other.client.get("/ui/api-keys").status_code == 303  # ended
    assert bobs.client.get("/ui/api-keys").status_code == 200  # somebody else's: untouched
    assert UI(app.test_client()).sign_in("alice", PASSWORD).status_code == 401
    assert signed_in(app, "alice", NEW_PASSWORD)
    stored = operator_row(app).password_hash
    assert stored.startswith("$argon2id$") and NEW_PASSWORD not in stored
    with app.app_context():
        event = db.session.scalars(sa.select(AuditEvent).where(
            AuditEvent.action == "change-password")).one()
        assert event.actor == "operator:alice"
        assert event.changes["sessionsEnded"] == {"before": None, "after": 1}
        assert "passwordChangedAt" in event.changes


@pytest.mark.parametrize("app_config", [{"UI_LOGIN_RATE_LIMIT": "3/hour",
                                         "UI_LOGIN_ADDRESS_RATE_LIMIT": ""}])
def test_UI14_guessing_the_current_password_is_throttled_like_sign_in(app, app_config):
    create_operator(app)
    ui = signed_in(app)
    for _ in range(3):
        assert ui.post("/ui/security/password", {"current_password": "not it at all",
                                                 "password": NEW_PASSWORD},
                       form_page="/ui/security/password").status_code == 400
    response = ui.post("/ui/security/password", {"current_password": PASSWORD,
                                                 "password": NEW_PASSWORD},
                       form_page="/ui/security/password")
    assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0
    with app.app_context():
        assert operators.authenticate("alice", PASSWORD) is not None


# -- second factor: enrollment -----------------------------------------------------------------

def test_UI15_enrollment_shows_the_secret_once_and_stores_it_encrypted(app, clock):
    create_operator(app)
    ui = signed_in(app)
    response = ui.post("/ui/security/two-factor", form_page="/ui/security")
    assert response.status_code == 303 and response.headers["Location"] == "/ui/security/two-factor"
    response = ui.client.get("/ui/security/two-factor")
    secret = SECRET_RE.search(response.text).group(1)
    uri = URI_RE.search(response.text).group(1).replace("&amp;", "&")
    reload = ui.client.get("/ui/security/two-factor")  # shown once
    assert secret not in reload.text and "cannot be shown again" in reload.text
    assert uri.startswith("otpauth://totp/authserver:alice?secret=" + secret)
    assert pyotp.parse_uri(uri).secret == secret
    assert len(secret) == 32  # 160 bits
    stored = operator_row(app)
    assert stored.totp_secret and secret.encode() not in stored.totp_secret
    assert stored.totp_confirmed_at is None
    with app.app_context():
        assert current_keyring().decrypt(f"operator-totp:{stored.id}",
                                         stored.totp_secret)[0] == secret.encode()
    page = ui.client.get("/ui/security").text
    assert secret not in page and 'data-two-factor="off"' in page

    wrong = f"{(int(pyotp.TOTP(secret).at(clock.now)) + 1) % 1000000:06d}"
    for code in (wrong, "", "12345", "abcdef", "1" * 65, "１２３４５６"):
        response = ui.post("/ui/security/two-factor/confirm", {"code": code},
                           form_page="/ui/security")
        assert response.status_code == 400, code
        assert secret not in response.text
    assert operator_row(app).totp_confirmed_at is None
    assert "enroll-2fa" not in actions(app)

    response = ui.post("/ui/security/two-factor/confirm",
                       {"code": pyotp.TOTP(secret).at(clock.now)}, form_page="/ui/security")
    assert response.headers["Location"] == "/ui/security/two-factor/recovery-codes"
    codes = RECOVERY_RE.findall(ui.client.get(response.headers["Location"]).text)
    assert len(codes) == 10
    reload = ui.client.get("/ui/security/two-factor/recovery-codes").text
    assert not RECOVERY_RE.findall(reload) and "cannot be shown again" in reload
    assert operator_row(app).totp_confirmed_at is not None
    with app.app_context():
        hashes = list(db.session.scalars(sa.select(OperatorRecoveryCode.code_hash)))
    assert len(hashes) == 10 and not {c.replace("-", "") for c in codes} & set(hashes)
    assert not any(code in ui.client.get("/ui/security").text for code in codes)
    assert actions(app)[-1] == "enroll-2fa"
    # On is on: a second set-up is refused until an owner resets it.
    assert ui.post("/ui/security/two-factor", form_page="/ui/security").status_code == 409


def test_confirming_without_a_set_up_is_400(app):
    create_operator(app)
    ui = signed_in(app)
    response = ui.post("/ui/security/two-factor/confirm", {"code": "123456"},
                       form_page="/ui/security")
    assert response.status_code == 400 and "start again" in response.text


def test_the_secret_is_bound_to_its_operator(app, clock):
    create_operator(app)
    create_operator(app, "bob")
    secret, _ = enroll(app, signed_in(app), clock)
    with app.app_context():
        alice, bob = operators.get_operator("alice"), operators.get_operator("bob")
        bob.totp_secret, bob.totp_confirmed_at = alice.totp_secret, alice.totp_confirmed_at
        db.session.commit()
        clock.advance(30)
        assert second_factor.verify(bob, pyotp.TOTP(secret).at(clock.now)) is False


# -- second factor: sign-in --------------------------------------------------------------------

def test_UI15_sign_in_asks_for_the_code_after_the_password(app, clock):
    create_operator(app)
    secret, _ = enroll(app, signed_in(app), clock)
    sessions = count(app, OperatorSession)
    client = app.test_client()
    ui = UI(client)
    response = ui.sign_in(next_path="/ui/audit")
    assert response.status_code == 303 and response.headers["Location"] == "/ui/sign-in/code"
    assert count(app, OperatorSession) == sessions  # no session before the second factor
    assert client.get("/ui/api-keys").status_code == 303
    assert send_code(client, "000000" if pyotp.TOTP(secret).at(clock.now) != "000000"
                     else "111111").status_code == 401
    clock.advance(30)  # the enrollment's code was used: the next step's code
    response = send_code(client, pyotp.TOTP(secret).at(clock.now))
    assert response.status_code == 303 and response.headers["Location"] == "/ui/audit"
    assert client.get("/ui/audit").status_code == 200
    assert count(app, OperatorSession) == sessions + 1

    # The same code again, in the same window, from another browser: refused (RFC 6238 §5.2).
    again = app.test_client()
    assert UI(again).sign_in().status_code == 303
    assert send_code(again, pyotp.TOTP(secret).at(clock.now)).status_code == 401
    # A code of the step before the last accepted one is refused too; the next one works.
    assert send_code(again, code_at(secret, clock, -1)).status_code == 401
    clock.advance(30)
    assert send_code(again, pyotp.TOTP(secret).at(clock.now)).status_code == 303


def test_one_step_of_clock_drift_is_accepted_two_are_not(app, clock):
    create_operator(app)
    secret, _ = enroll(app, signed_in(app), clock)
    clock.advance(300)
    client = app.test_client()
    assert UI(client).sign_in().status_code == 303
    assert send_code(client, code_at(secret, clock, 2)).status_code == 401
    assert send_code(client, code_at(secret, clock, 1)).status_code == 303


def test_the_code_step_expires_and_needs_the_password_first(app, clock):
    create_operator(app)
    secret, _ = enroll(app, signed_in(app), clock)
    client = app.test_client()
    response = client.get("/ui/sign-in/code")  # no password given
    assert response.status_code == 303 and response.headers["Location"] == "/ui/sign-in"
    assert UI(client).sign_in().status_code == 303
    clock.advance(301)
    page = client.post("/ui/sign-in/code", data={"code": pyotp.TOTP(secret).at(clock.now),
                                                 "csrf_token": "x"})
    assert page.status_code == 400  # the CSRF check comes first
    response = client.get("/ui/sign-in/code")
    assert response.status_code == 303 and response.headers["Location"] == "/ui/sign-in"


def test_UI15_a_recovery_code_works_once(app, clock):
    create_operator(app)
    _, codes = enroll(app, signed_in(app), clock)
    client = app.test_client()
    assert UI(client).sign_in().status_code == 303
    assert send_code(client, f"  {codes[0].upper().replace('-', '')} ").status_code == 303
    assert client.get("/ui/api-keys").status_code == 200
    assert actions(app)[-1] == "use-recovery-code"
    assert "9 unused recovery codes left" in client.get("/ui/security").text
    other = app.test_client()
    assert UI(other).sign_in().status_code == 303
    assert send_code(other, codes[0]).status_code == 401
    assert send_code(other, codes[1]).status_code == 303


@pytest.mark.parametrize("code", ["", " ", "0" * 6 + "\u0660", "12345", "1234567",
                                  "x" * 10_000, "abcd-efgh-ijkl", "'; DROP TABLE x; --",
                                  "１２３４５６", "\u00a0123456"])
def test_hostile_codes_are_401_never_500(app, clock, code):
    create_operator(app)
    enroll(app, signed_in(app), clock)
    client = app.test_client()
    assert UI(client).sign_in().status_code == 303
    response = send_code(client, code)
    assert response.status_code in (400, 401)
    assert client.get("/ui/api-keys").status_code == 303


@pytest.mark.parametrize("app_config", [{"UI_LOGIN_RATE_LIMIT": "3/hour",
                                         "UI_LOGIN_ADDRESS_RATE_LIMIT": ""}])
def test_UI15_codes_are_throttled_like_passwords_and_audited(app, clock, app_config):
    create_operator(app)
    secret, _ = enroll(app, signed_in(app), clock)
    clock.advance(30)
    client = app.test_client()
    assert UI(client).sign_in().status_code == 303
    right = pyotp.TOTP(secret).at(clock.now)
    wrong = "000000" if right != "000000" else "111111"
    for _ in range(3):
        assert send_code(client, wrong).status_code == 401
    response = send_code(client, right)
    assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0
    assert "sign-in-throttled" in actions(app)


def test_owner_and_cli_reset_the_second_factor(app, clock, runner):
    create_operator(app)
    create_operator(app, "bob")
    _, codes = enroll(app, signed_in(app, "bob"), clock)
    owner = signed_in(app)
    assert "Reset second factor" in owner.client.get("/ui/operators").text
    response = owner.post("/ui/operators/bob/reset-2fa", form_page="/ui/operators")
    assert response.status_code == 303
    assert operator_row(app, "bob").totp_secret is None
    assert count(app, OperatorRecoveryCode) == 0
    assert signed_in(app, "bob").client.get("/ui/api-keys").status_code == 200  # password only
    assert actions(app)[-1] == "reset-2fa"

    enroll(app, signed_in(app, "bob"), clock)
    result = runner.invoke(main, ["operators", "reset-2fa", "bob", "--json"])
    assert result.exit_code == 0 and '"twoFactor": false' in result.output
    assert signed_in(app, "bob")


# -- sessions ------------------------------------------------------------------------------------

def sessions_on(ui: UI) -> list[tuple[str, bool]]:
    page = ui.client.get("/ui/security")
    assert page.status_code == 200
    return [(handle, bool(current)) for handle, current in HANDLE_RE.findall(page.text)]


def test_UI16_an_operator_sees_and_ends_their_sessions(app, clock):
    create_operator(app)
    create_operator(app, "bob")
    laptop = signed_in(app)
    clock.advance(60)
    phone = signed_in(app)
    bob = signed_in(app, "bob")
    listed = sessions_on(phone)
    assert len(listed) == 2 and [current for _, current in listed] == [True, False]
    laptop_handle = listed[1][0]
    assert sessions_on(laptop) == [(listed[0][0], False), (laptop_handle, True)]

    # Somebody else's session, a made-up handle and a malformed one: 404, nothing ends.
    bobs_handle = sessions_on(bob)[0][0]
    for handle in (bobs_handle, "0" * 16, "zz", "a" * 64, "%2e%2e"):
        response = phone.post(f"/ui/security/sessions/{handle}/end", form_page="/ui/security")
        assert response.status_code == 404, handle
    assert bob.client.get("/ui/api-keys").status_code == 200

    response = phone.post(f"/ui/security/sessions/{laptop_handle}/end", form_page="/ui/security")
    assert response.status_code == 303 and response.headers["Location"] == "/ui/security"
    assert laptop.client.get("/ui/api-keys").status_code == 303  # its cookie is dead
    assert [current for _, current in sessions_on(phone)] == [True]
    assert actions(app)[-1] == "end-session"

    own = sessions_on(phone)[0][0]
    response = phone.post(f"/ui/security/sessions/{own}/end", form_page="/ui/security")
    assert response.status_code == 303 and response.headers["Location"] == "/ui/sign-in"
    assert phone.client.get("/ui/api-keys").status_code == 303
    assert count(app, OperatorSession) == 1  # bob's


def test_a_viewer_uses_every_self_service_page(app, clock):
    create_operator(app)
    with app.app_context():
        operators.create_operator(username="vera", password=PASSWORD, actor="test",
                                  role="viewer")
    vera = signed_in(app, "vera")
    enroll(app, vera, clock)
    handle = sessions_on(vera)[0][0]
    assert vera.post("/ui/security/password", {"current_password": PASSWORD,
                                               "password": NEW_PASSWORD},
                     form_page="/ui/security/password").status_code == 303
    assert vera.post(f"/ui/security/sessions/{handle}/end",
                     form_page="/ui/security").status_code == 303


def test_a_keyring_rollover_reencrypts_totp_secrets(app, clock):
    """``authserver encryption-key rotate`` calls this with the signing keys, in one commit."""
    from conftest import ENCRYPTION_KEY

    from authserver.credentials.keyring import generate_encryption_key

    create_operator(app)
    secret, _ = enroll(app, signed_in(app), clock)
    new_key = generate_encryption_key()
    app.config["ENCRYPTION_KEYS"] = [new_key, ENCRYPTION_KEY]
    with app.app_context():
        assert second_factor.reencrypt_secrets() == 1
        db.session.commit()
        assert second_factor.reencrypt_secrets() == 0
    app.config["ENCRYPTION_KEYS"] = [new_key]  # the old key has left the ring
    clock.advance(30)
    client = app.test_client()
    assert UI(client).sign_in().status_code == 303
    assert send_code(client, pyotp.TOTP(secret).at(clock.now)).status_code == 303
