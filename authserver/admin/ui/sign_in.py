"""Web UI: sign-in and sign-out (threat model UI03, UI04, UI09, UI11)."""

from __future__ import annotations

import hashlib
import logging

from flask import flash, g, redirect, render_template, request, session, url_for

from authserver.admin.ui.blueprint import bp, csrf_token, safe_next
from authserver.clock import utcnow
from authserver.credentials import operators, second_factor
from authserver.web import limits

log = logging.getLogger(__name__)

SIGN_IN_FAILED = "Incorrect username or password."
SIGN_IN_THROTTLED = "Too many sign-in attempts. Wait a minute and try again."
#: Session key of a sign-in whose password was right and whose second factor is awaited
#: (``sign_in_code``): the operator's row id, when, and where to go next.
PENDING_KEY = "pending_sign_in"


@bp.get("/")
def index():
    """The UI starts at the API keys."""
    return redirect(url_for("admin_ui.api_keys"))


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    """Sign-in form; success rotates the session and answers 303 (UI03, UI09, UI11)."""
    next_path = safe_next(request.values.get("next"))
    if request.method == "GET":
        if g.operator is not None:
            return redirect(next_path)
        return render_template("sign_in.html", next_path=next_path, username="")
    username = request.form.get("username", "")
    address = limits.caller_address()
    name = operators.normalize_username(username)
    try:
        # Attempts per address bound the password hashing any one address can cause.
        limits.hit("UI_LOGIN_ADDRESS_RATE_LIMIT", address)
        check_failures(name, address)
    except limits.RateLimited as exc:
        body = render_template("sign_in.html", next_path=next_path, username=username,
                               error=SIGN_IN_THROTTLED)
        return body, 429, {"Retry-After": str(exc.retry_after)}
    operator = operators.authenticate(username, request.form.get("password", ""))
    if operator is None:
        log.info("web UI: failed sign-in from %s", address)
        count_failure(name, address)
        return render_template("sign_in.html", next_path=next_path, username=username,
                               error=SIGN_IN_FAILED), 401
    if session.get("sid"):
        operators.end_session(session["sid"])
    session.clear()  # drop pre-login data and the pre-login CSRF token (UI03)
    if second_factor.is_enabled(operator):
        session[PENDING_KEY] = {"id": operator.id, "at": utcnow().timestamp(),
                                "next": next_path}
        csrf_token()
        return redirect(url_for("admin_ui.sign_in_code"), 303)
    session["sid"] = operators.start_session(operator)
    csrf_token()
    log.info("web UI: operator %s signed in", operator.username)
    return redirect(next_path, 303)


def _keys(name: str, address: str) -> tuple[str, str]:
    user = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return user, f"{user}:{address}"


def _under_attack(user: str) -> bool:
    """True while the username as a whole has failed too often (many addresses guessing)."""
    try:
        limits.check("UI_LOGIN_USERNAME_RATE_LIMIT", user)
    except limits.RateLimited:
        return True
    return False


def check_failures(name: str, address: str) -> None:
    """Threat model AV04: failures are counted per username *and* address, so guessing
    from one place never keeps the operator from signing in from another; a username
    failing from many places makes every address back off (a smaller limit), never lock."""
    user, pair = _keys(name, address)
    limits.check("UI_LOGIN_RATE_LIMIT", pair)
    if _under_attack(user):
        limits.check("UI_LOGIN_BACKOFF_RATE_LIMIT", pair)


def count_failure(name: str, address: str) -> None:
    """Count a failed sign-in; audit it when it exhausts a limit (once per window)."""
    user, pair = _keys(name, address)
    counted = [("UI_LOGIN_RATE_LIMIT", pair), ("UI_LOGIN_BACKOFF_RATE_LIMIT", pair),
               ("UI_LOGIN_USERNAME_RATE_LIMIT", user)]
    for setting, key in counted:
        try:
            limits.hit(setting, key)
        except limits.RateLimited:
            pass  # already exhausted: counted, and refused on the next attempt
    try:
        check_failures(name, address)
    except limits.RateLimited:
        operators.record_throttled_sign_in(name, address)


@bp.post("/sign-out")
def sign_out():
    """End the session on the server; the old cookie no longer works (UI04)."""
    operators.end_session(session.get("sid"))
    session.clear()
    flash("You have signed out.")
    return redirect(url_for("admin_ui.sign_in"), 303)
