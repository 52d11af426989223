"""The web UI's blueprint: server-side sessions, CSRF, security headers and error pages.

The pages live beside it (``sign_in``, ``api_keys``, ``clients``, ``audit``) and call the
same service functions as the CLI and the admin API. Threat model 1.11 (UI01-UI11):

- the browser holds Flask's signed session cookie with a random session id (``sid``) and a
  CSRF token; the database holds only the id's SHA-256 (``operators``), so sign-out and the
  idle/absolute timeouts are enforced on the server and a replayed cookie is dead;
- at sign-in the whole cookie session is dropped and a new id and CSRF token issued;
- every POST under ``/ui/`` needs the session's CSRF token; GET changes nothing;
- every UI answer, error pages included, carries CSP, X-Frame-Options, Referrer-Policy,
  nosniff and ``Cache-Control: no-store``.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    has_request_context,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException, NotFound

from authserver.accounts import registry as accounts
from authserver.clock import isoformat
from authserver.credentials import operators
from authserver.storage.audit import Actor
from authserver.web.errors import UNAVAILABLE_ERRORS, NotFoundError, ValidationError
from authserver.web.text import check_request_text

log = logging.getLogger(__name__)

bp = Blueprint("admin_ui", __name__, url_prefix="/ui")
bp.before_request(check_request_text)  # one text validation for every surface (AD12)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_ENDPOINTS = frozenset({"admin_ui.sign_in", "admin_ui.sign_in_code"})
CSRF_FIELD = "csrf_token"
#: The session's chosen account (operators of the platform account only).
ACCOUNT_KEY = "account_id"
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; "
                           "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


class UISessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, for the web UI only, marked Secure on HTTPS requests
    even if not configured.

    Other paths (protocol endpoints, admin API) get Flask's null session: no cookie is read,
    verified or written there, which is also most of what the session would cost them.
    """

    def open_session(self, app: Flask, request):
        if not is_ui_path(request.path):
            return None  # Flask then uses make_null_session(): empty, refuses writes
        return super().open_session(app, request)

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
    """True when the request carries this session's CSRF token (threat model UI01)."""
    expected = session.get(CSRF_FIELD)
    sent = request.form.get(CSRF_FIELD)
    return (isinstance(expected, str) and isinstance(sent, str)
            and hmac.compare_digest(expected.encode(), sent.encode()))


def actor() -> Actor:
    """The audit actor of the signed-in operator, acting from the operator's own account."""
    return Actor(f"operator:{g.operator.username}", g.operator.account_id)


def session_id() -> str:
    """The signed-in operator's session identifier (what server-side session data hangs on)."""
    return session["sid"]


def account_id() -> str:
    """The account the pages show and change: the operator's own, or for an operator of the
    platform account the one chosen with the account switcher (threat model AC01)."""
    return g.account.id


def _acting_account(operator):
    """The operator's account, or the platform operator's chosen one (if it still exists)."""
    own = accounts.get_account(operator.account_id)
    chosen = session.get(ACCOUNT_KEY)
    if not own.platform or not chosen or chosen == own.id:
        return own, own
    try:
        return own, accounts.get_account(chosen)
    except NotFoundError:
        session.pop(ACCOUNT_KEY, None)
        return own, own


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
    g.own_account = g.account = None
    if g.operator is not None:
        g.own_account, g.account = _acting_account(g.operator)
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
    """The signed-in operator and the account the pages are about, for every UI template."""
    own = g.get("own_account")
    return {"current_operator": g.get("operator"), "current_account": g.get("account"),
            "platform_operator": bool(own is not None and own.platform)}


# --- pages ----------------------------------------------------------------------------------

def render_error(status: int, message: str,
                 problems: dict[str, list[str]] | None = None) -> tuple[str, int]:
    """The UI's error page (``problems``: the bad fields and what is wrong with each)."""
    return render_template("error.html", status=status, message=message,
                           problems=problems or {}), status


@bp.route("/<path:unknown>", methods=["GET", "POST"])
def not_found(unknown: str):
    """Unknown UI paths get the UI's 404 page (with its headers)."""
    raise NotFound()


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException):
    return render_error(error.code or 500, error.description or error.name)


@bp.errorhandler(ValidationError)
def bad_input(error: ValidationError):
    """Bad query parameters (a hand-edited list URL): a 400 page naming each, never a 500."""
    return render_error(400, "This page's address has parameters the page does not accept. "
                             "Change or remove them and try again.", error.errors)


@bp.errorhandler(Exception)
def unexpected_error(error: Exception):
    if isinstance(error, UNAVAILABLE_ERRORS):
        log.error("web UI: database unavailable: %s", type(error).__name__)
        body, status = render_error(503, "The service is temporarily unavailable. "
                                         "Try again in a few seconds.")
        return body, status, {"Retry-After": str(current_app.config["RETRY_AFTER_SECONDS"])}
    log.exception("web UI: unhandled error on %s %s", request.method, request.path)
    return render_error(500, "Something went wrong. The error has been logged.")
