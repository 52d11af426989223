"""Web UI: an operator's own security: the second step of sign-in (a TOTP or recovery code),
changing their password, setting up the second factor, and their sessions.

All of these act on the signed-in operator only, so every role may use them
(``operators.SELF_SERVICE``). Codes are rate limited exactly like passwords (``sign_in``).
"""

from __future__ import annotations

import logging

from flask import flash, g, redirect, render_template, request, session, url_for

from authserver.admin.ui import forms as forms
from authserver.admin.ui.blueprint import bp, csrf_token, render_error, session_id
from authserver.admin.ui.sign_in import (
    PENDING_KEY,
    SIGN_IN_THROTTLED,
    check_failures,
    count_failure,
)
from authserver.clock import utcnow
from authserver.credentials import operators, second_factor, shown_once
from authserver.storage.db import db
from authserver.storage.models import Operator
from authserver.web import limits
from authserver.web.errors import ValidationError

log = logging.getLogger(__name__)

#: How long after the password the second factor may be given.
PENDING_SECONDS = 300
CODE_FAILED = "That code is not valid. Enter the current code from your authenticator app, " \
              "or an unused recovery code."
PASSWORD_FIELDS = {"currentPassword": "current_password", "password": "password"}
#: shown_once's object types: a new TOTP secret and the recovery codes, each for one page.
TOTP_SECRET, RECOVERY_CODES = "operator-totp", "operator-recovery-codes"


# --- sign-in, second step ------------------------------------------------------------------

def _pending() -> tuple[Operator | None, str]:
    """The operator whose password was right within PENDING_SECONDS, and where to go next."""
    pending = session.get(PENDING_KEY)
    if not isinstance(pending, dict) or not isinstance(pending.get("id"), int):
        return None, ""
    age = utcnow().timestamp() - float(pending.get("at") or 0)
    operator = db.session.get(Operator, pending["id"])
    if not 0 <= age <= PENDING_SECONDS or operator is None or not operator.enabled \
            or not second_factor.is_enabled(operator):
        return None, ""
    return operator, str(pending.get("next") or "")


@bp.route("/sign-in/code", methods=["GET", "POST"])
def sign_in_code():
    """After the password: a code from the authenticator, or a recovery code (single use)."""
    operator, next_path = _pending()
    if operator is None:
        session.pop(PENDING_KEY, None)
        flash("Sign in again.", "error")
        return redirect(url_for("admin_ui.sign_in"), 303)
    if request.method == "GET":
        return render_template("security/code.html")
    address = limits.caller_address()
    try:
        limits.hit("UI_LOGIN_ADDRESS_RATE_LIMIT", address)
        check_failures(operator.username, address)
    except limits.RateLimited as exc:
        return (render_template("security/code.html", error=SIGN_IN_THROTTLED), 429,
                {"Retry-After": str(exc.retry_after)})
    if not second_factor.verify(operator, forms.text("code")):
        log.info("web UI: wrong second factor from %s", address)
        count_failure(operator.username, address)
        return render_template("security/code.html", error=CODE_FAILED), 401
    session.clear()  # a new session id and CSRF token once both factors are in (UI03)
    session["sid"] = operators.start_session(operator)
    csrf_token()
    log.info("web UI: operator %s signed in with a second factor", operator.username)
    return redirect(next_path or url_for("admin_ui.index"), 303)


# --- password --------------------------------------------------------------------------------

@bp.route("/security/password", methods=["GET", "POST"])
def change_password():
    """Change the signed-in operator's password; their other sessions end."""
    if request.method == "GET":
        return render_template("security/password.html", errors={})
    address = limits.caller_address()
    try:  # the current password is guessed at the same rate as at sign-in, no faster
        check_failures(g.operator.username, address)
    except limits.RateLimited as exc:
        return (render_template("security/password.html", errors={},
                                error=SIGN_IN_THROTTLED), 429, {"Retry-After": str(exc.retry_after)})
    try:
        ended = operators.change_password(g.operator, current=forms.text("current_password"),
                                          new=forms.text("password"), session_id=session.get("sid"))
    except ValidationError as exc:
        if "currentPassword" in exc.errors:
            count_failure(g.operator.username, address)
        return render_template("security/password.html",
                               errors=forms.field_errors(exc.errors, PASSWORD_FIELDS)), 400
    flash("Your password is changed." + (f" {ended} other session{'s' if ended != 1 else ''} "
                                         "ended." if ended else ""))
    return redirect(url_for("admin_ui.security"), 303)


# --- overview, second factor, sessions ---------------------------------------------------------

@bp.get("/security")
def security():
    """The operator's password, second factor and sessions."""
    return render_template(
        "security/overview.html", two_factor=second_factor.is_enabled(g.operator),
        recovery_left=second_factor.remaining_recovery_codes(g.operator),
        sessions=operators.list_sessions(g.operator, session.get("sid")))


@bp.post("/security/two-factor")
def begin_two_factor():
    """A new TOTP secret; the page the form redirects to shows it once."""
    try:
        secret, _ = second_factor.begin_enrollment(g.operator)
    except ValidationError as exc:
        return render_error(409, "; ".join(m for ms in exc.errors.values() for m in ms))
    shown_once.keep(session_id(), TOTP_SECRET, g.operator.username, secret)
    return redirect(url_for("admin_ui.two_factor"), 303)


@bp.get("/security/two-factor")
def two_factor():
    """The new secret (once) and the form that confirms it with a first code."""
    if second_factor.is_enabled(g.operator):
        return redirect(url_for("admin_ui.security"), 303)
    secret = shown_once.take(session_id(), TOTP_SECRET, g.operator.username)
    uri = second_factor.provisioning_uri(g.operator, secret) if secret else None
    return render_template("security/enroll.html", secret=secret, uri=uri, errors={},
                           pending=g.operator.totp_secret is not None)


@bp.post("/security/two-factor/confirm")
def confirm_two_factor():
    """Turn the second factor on with a first code; the recovery codes are shown once, on the
    page the form redirects to."""
    try:
        codes = second_factor.confirm_enrollment(g.operator, forms.text("code"))
    except ValidationError as exc:
        return render_template("security/enroll.html", secret=None, uri=None,
                               errors=exc.errors, pending=g.operator.totp_secret is not None), 400
    shown_once.keep(session_id(), RECOVERY_CODES, g.operator.username, "\n".join(codes))
    return redirect(url_for("admin_ui.recovery_codes"), 303)


@bp.get("/security/two-factor/recovery-codes")
def recovery_codes():
    """The recovery codes, on this page once (a reload says they cannot be shown again)."""
    codes = shown_once.take(session_id(), RECOVERY_CODES, g.operator.username)
    return render_template("security/recovery_codes.html",
                           codes=codes.split("\n") if codes else None)


@bp.post("/security/sessions/<handle>/end")
def end_session(handle: str):
    """End one of the operator's own sessions (its cookie stops working at once)."""
    current = session.get("sid")
    current_handle = next((row["id"] for row in operators.list_sessions(g.operator, current)
                           if row["current"]), None)
    if not operators.end_operator_session(g.operator, handle):
        return render_error(404, "There is no such session (it may have ended already).")
    if handle == current_handle:
        session.clear()
        flash("This session has ended. Sign in again to continue.")
        return redirect(url_for("admin_ui.sign_in"), 303)
    flash("The session has ended.")
    return redirect(url_for("admin_ui.security"), 303)
