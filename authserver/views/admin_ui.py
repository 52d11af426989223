"""The operator web UI under ``/ui/``: sessions, CSRF, security headers and sign-in.

The pages themselves live in ``ui_api_keys``, ``ui_clients`` and ``ui_audit`` and call the
same service functions as the CLI and the admin API. SECURITY.md 1.11 (UI01-UI11):

- the browser holds Flask's signed session cookie with a random session id (``sid``) and a
  CSRF token; the database holds only the id's SHA-256 (``operators``), so sign-out and the
  idle/absolute timeouts are enforced on the server and a replayed cookie is dead;
- at sign-in the whole cookie session is dropped and a new id and CSRF token issued;
- every POST under ``/ui/`` needs the session's CSRF token; GET changes nothing;
- every UI answer, error pages included, carries CSP, X-Frame-Options, Referrer-Policy,
  nosniff and ``Cache-Control: no-store``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from urllib.parse import urlsplit

from flask import (Blueprint, Flask, Response, current_app, flash, g, has_request_context,
                   redirect, render_template, request, session, url_for)
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException, NotFound

from .. import limits, operators
from ..clock import isoformat
from ..errors import UNAVAILABLE_ERRORS

log = logging.getLogger(__name__)

bp = Blueprint("admin_ui", __name__, url_prefix="/ui")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_ENDPOINTS = frozenset({"admin_ui.sign_in"})
CSRF_FIELD = "csrf_token"
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; "
                           "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
SIGN_IN_FAILED = "Incorrect username or password."
SIGN_IN_THROTTLED = "Too many sign-in attempts. Wait a minute and try again."


class UISessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, marked Secure on HTTPS requests even if not configured."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or (
            has_request_context() and request.is_secure)


def is_ui_path(path: str) -> bool:
    """True for pages and assets of the web UI (they get the UI's security headers)."""
    return path == "/" or path == "/ui" or path.startswith(("/ui/", "/static/"))


# --- sessions and CSRF ----------------------------------------------------------------------

@bp.app_template_global()
def csrf_token() -> str:
    """The session's CSRF token (created on first use); put in every form."""
    if CSRF_FIELD not in session:
        session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return session[CSRF_FIELD]


def check_csrf() -> bool:
    """True when the request carries this session's CSRF token (SECURITY.md UI01)."""
    expected = session.get(CSRF_FIELD)
    sent = request.form.get(CSRF_FIELD)
    return (isinstance(expected, str) and isinstance(sent, str)
            and hmac.compare_digest(expected.encode(), sent.encode()))


def actor() -> str:
    """The audit actor of the signed-in operator."""
    return f"operator:{g.operator.username}"


def safe_next(value: object) -> str:
    """``value`` if it is a same-origin path inside the UI, else the API keys page (UI10)."""
    default = url_for("admin_ui.api_keys")
    if not isinstance(value, str) or not value.startswith("/ui/") or len(value) > 2000:
        return default
    if "\\" in value or any(ord(ch) < 33 or ord(ch) == 127 for ch in value):
        return default
    parts = urlsplit(value)
    return default if parts.scheme or parts.netloc else value


@bp.before_request
def load_session():
    """Resume the server-side session, check CSRF on POST, send strangers to sign-in."""
    sid = session.get("sid")
    g.operator = operators.resume_session(sid) if sid else None
    if request.method not in SAFE_METHODS and not check_csrf():
        log.warning("web UI: refused a %s to %s without a valid CSRF token",
                    request.method, request.path)
        return render_error(400, "This form has expired or did not come from this site. "
                                 "Go back, reload the page and try again.")
    if sid and g.operator is None:
        session.clear()  # a dead session (signed out, timed out): forget it entirely
    if g.operator is None and request.endpoint not in PUBLIC_ENDPOINTS:
        target = request.full_path.rstrip("?") if request.method in SAFE_METHODS else None
        return redirect(url_for("admin_ui.sign_in", next=target), 303)
    return None


@bp.after_app_request
def add_security_headers(response: Response) -> Response:
    """CSP, anti-framing and no-store on every UI answer, error pages included (UI06, UI08)."""
    if is_ui_path(request.path):
        for name, value in SECURITY_HEADERS.items():
            response.headers[name] = value
        if not request.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_template_global()
def static_url(filename: str) -> str:
    """URL of a UI asset."""
    return url_for("static", filename=filename)


@bp.app_template_filter("utc")
def format_utc(value) -> str:
    """A timestamp as ``2027-01-31 12:00 UTC`` (empty for None)."""
    text = isoformat(value) if value is not None and not isinstance(value, str) else value
    return f"{text[:10]} {text[11:16]} UTC" if text else ""


@bp.app_context_processor
def ui_context() -> dict:
    """The signed-in operator for every UI template."""
    return {"current_operator": g.get("operator")}


# --- pages ----------------------------------------------------------------------------------

def render_error(status: int, message: str) -> tuple[str, int]:
    """The UI's error page."""
    return render_template("error.html", status=status, message=message), status


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
    try:
        limits.hit("UI_LOGIN_ADDRESS_RATE_LIMIT", limits.caller_address())
        name = operators.normalize_username(username)
        limits.hit("UI_LOGIN_RATE_LIMIT", hashlib.sha256(name.encode()).hexdigest()[:32])
    except limits.RateLimited as exc:
        body = render_template("sign_in.html", next_path=next_path, username=username,
                               error=SIGN_IN_THROTTLED)
        return body, 429, {"Retry-After": str(exc.retry_after)}
    operator = operators.authenticate(username, request.form.get("password", ""))
    if operator is None:
        log.info("web UI: failed sign-in from %s", limits.caller_address())
        return render_template("sign_in.html", next_path=next_path, username=username,
                               error=SIGN_IN_FAILED), 401
    if session.get("sid"):
        operators.end_session(session["sid"])
    session.clear()  # drop pre-login data and the pre-login CSRF token (UI03)
    session["sid"] = operators.start_session(operator)
    csrf_token()
    log.info("web UI: operator %s signed in", operator.username)
    return redirect(next_path, 303)


@bp.post("/sign-out")
def sign_out():
    """End the session on the server; the old cookie no longer works (UI04)."""
    operators.end_session(session.get("sid"))
    session.clear()
    flash("You have signed out.")
    return redirect(url_for("admin_ui.sign_in"), 303)


@bp.route("/<path:unknown>", methods=["GET", "POST"])
def not_found(unknown: str):
    """Unknown UI paths get the UI's 404 page (with its headers)."""
    raise NotFound()


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException):
    return render_error(error.code or 500, error.description or error.name)


@bp.errorhandler(Exception)
def unexpected_error(error: Exception):
    if isinstance(error, UNAVAILABLE_ERRORS):
        log.error("web UI: database unavailable: %s", type(error).__name__)
        body, status = render_error(503, "The service is temporarily unavailable. "
                                         "Try again in a few seconds.")
        return body, status, {"Retry-After": str(current_app.config["RETRY_AFTER_SECONDS"])}
    log.exception("web UI: unhandled error on %s %s", request.method, request.path)
    return render_error(500, "Something went wrong. The error has been logged.")


def root():
    """``/`` leads to the web UI."""
    return redirect(url_for("admin_ui.index"))


def init_app(app: Flask) -> None:
    """Register the UI blueprint, its cookie session and ``/``."""
    app.session_interface = UISessionInterface()
    app.register_blueprint(bp)
    app.add_url_rule("/", endpoint="root", view_func=root)


from . import ui_api_keys, ui_audit, ui_clients  # noqa: E402,F401 - attach their views to bp
