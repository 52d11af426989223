"""Web UI: the account's operators and what each role may do.

Every signed-in operator reads every page. Writes are checked here, on the server, for every
POST of the UI (a form left out of a page is no protection against a direct POST): an
operator's own session, password and second factor are theirs to change whatever their role;
managing operators needs the ``owner`` role; every other write (keys, clients, accounts) needs
``admin`` or ``owner``. An operator whose password was reset is led to the change-password
form before anything else.
"""

from __future__ import annotations

import logging

from flask import abort, flash, g, redirect, render_template, request, url_for

from authserver.admin.ui import forms as forms
from authserver.admin.ui.blueprint import (
    SAFE_METHODS,
    account_id,
    actor,
    bp,
    render_error,
    session_id,
)
from authserver.credentials import operators as operator_service
from authserver.credentials import second_factor, shown_once
from authserver.storage.models import Operator
from authserver.web.errors import NotFoundError, ValidationError

log = logging.getLogger(__name__)

#: Writes every signed-in operator may make: their own session, password and second factor,
#: and which account the pages show (a read).
SELF_SERVICE = frozenset({
    "admin_ui.sign_in", "admin_ui.sign_in_code", "admin_ui.sign_out", "admin_ui.not_found",
    "admin_ui.change_password", "admin_ui.begin_two_factor", "admin_ui.confirm_two_factor",
    "admin_ui.end_session", "admin_ui.switch_account"})
#: Writes that manage the account's operators: owners only.
OPERATOR_WRITES = frozenset({
    "admin_ui.create_operator", "admin_ui.set_operator_role", "admin_ui.disable_operator",
    "admin_ui.enable_operator", "admin_ui.reset_operator_password",
    "admin_ui.reset_operator_two_factor"})
#: shown_once's object type for a one-time password waiting for its page.
ONE_TIME_PASSWORD = "operator-password"
#: What an operator who must change their password may still reach.
WHILE_CHANGING_PASSWORD = frozenset({"admin_ui.change_password", "admin_ui.sign_out",
                                     "admin_ui.sign_in", "admin_ui.sign_in_code"})
ROLE_DESCRIPTIONS = {
    operator_service.OWNER: "manages the account's operators, keys and clients",
    operator_service.ADMIN: "manages keys and clients",
    operator_service.VIEWER: "reads everything, changes nothing",
}


@bp.before_request
def check_role():
    """The role check for every write, after ``load_session`` found the operator."""
    operator = g.get("operator")
    if operator is None or request.endpoint is None:
        return None
    if operator.must_change_password and request.endpoint not in WHILE_CHANGING_PASSWORD \
            and not request.path.startswith("/static/"):
        flash("Choose a new password before you continue.", "error")
        return redirect(url_for("admin_ui.change_password"), 303)
    if request.method in SAFE_METHODS or request.endpoint in SELF_SERVICE:
        return None
    needed = (operator_service.OPERATORS if request.endpoint in OPERATOR_WRITES
              else operator_service.CREDENTIALS)
    if operator_service.has_permission(operator, needed):
        return None
    log.warning("web UI: %s (%s) refused a %s to %s", operator.username, operator.role,
                request.method, request.path)
    what = "manage operators" if needed == operator_service.OPERATORS else "make changes"
    return render_error(403, f"Your role ({operator.role}) does not allow you to {what}. "
                             "An owner of the account can change your role.")


@bp.app_context_processor
def role_context() -> dict:
    """What the signed-in operator may do, for templates that show or hide their forms."""
    operator = g.get("operator")
    return {
        "may_change": bool(operator and operator_service.has_permission(
            operator, operator_service.CREDENTIALS)),
        "may_manage_operators": bool(operator and operator_service.has_permission(
            operator, operator_service.OPERATORS)),
    }


def _load(username: str) -> Operator:
    try:
        return operator_service.get_operator(username, account_id())
    except NotFoundError:
        abort(404)


def _render(form: dict, errors: dict, status: int = 200):
    rows = operator_service.list_operators(account_id())
    body = render_template("operators/list.html", operators=rows, roles=operator_service.ROLES,
                           role_descriptions=ROLE_DESCRIPTIONS, form=form, errors=errors,
                           describe=operator_service.describe)
    return body, status


def _message(exc: ValidationError) -> str:
    return "; ".join(m for messages in exc.errors.values() for m in messages)


@bp.get("/operators")
def operators():
    """The account's operators; owners also get the forms that manage them."""
    return _render({"username": "", "role": operator_service.VIEWER}, {})


@bp.post("/operators/new")
def create_operator():
    """Create an operator with a one-time password (changed at first sign-in); the page the
    form redirects to shows the password once."""
    form = {"username": forms.text("username"), "role": forms.text("role")}
    password = operator_service.generate_temporary_password()
    try:
        operator = operator_service.create_operator(
            username=form["username"], password=password, role=form["role"], actor=actor(),
            account_id=account_id(), must_change_password=True)
    except ValidationError as exc:
        return _render(form, exc.errors, 400)
    return _show_once(operator, password)


def _show_once(operator: Operator, password: str):
    shown_once.keep(session_id(), ONE_TIME_PASSWORD, operator.username, password)
    return redirect(url_for("admin_ui.one_time_password", username=operator.username), 303)


@bp.get("/operators/<username>/one-time-password")
def one_time_password(username: str):
    """A new or reset operator's one-time password, shown on this page once (a reload says it
    cannot be shown again)."""
    operator = _load(username)
    password = shown_once.take(session_id(), ONE_TIME_PASSWORD, operator.username)
    return render_template("operators/password.html", operator=operator, password=password)


@bp.post("/operators/<username>/role")
def set_operator_role(username: str):
    """Give an operator another role (never leaving the account without an owner)."""
    operator = _load(username)
    try:
        operator_service.set_role(operator.username, forms.text("role"), actor=actor(),
                                  account_id=account_id())
    except ValidationError as exc:
        flash(_message(exc), "error")
        # A role that exists but cannot be given now (the last owner) is a conflict.
        status = 409 if forms.text("role") in operator_service.ROLES else 400
        return _render({"username": "", "role": operator_service.VIEWER}, {}, status)
    flash(f"{operator.username} is now {operator.role}.")
    return redirect(url_for("admin_ui.operators"), 303)


#: What each confirmation page asks and the button that does it.
CONFIRMATIONS = {
    "disable": ("Disable {name}?", "They can no longer sign in, and their sessions end at once. "
                "An owner can enable them again.", "Disable operator"),
    "reset-password": ("Reset the password of {name}?", "They get a one-time password, shown "
                       "to you once, and choose their own when they next sign in. Their sessions "
                       "end at once.", "Reset password"),
    "reset-2fa": ("Turn off the second factor of {name}?", "They sign in with their password "
                  "alone until they set it up again; their recovery codes stop working.",
                  "Reset second factor"),
}


def _confirm_page(operator: Operator, action: str):
    """The confirmation step of a destructive action (a page: works without JavaScript); only
    owners get it, as only they can confirm."""
    if not operator_service.has_permission(g.operator, operator_service.OPERATORS):
        return render_error(403, f"Your role ({g.operator.role}) does not allow you to manage "
                                 "operators.")
    title, text, button = CONFIRMATIONS[action]
    return render_template("operators/confirm.html", operator=operator, action=action,
                           title=title.format(name=operator.username), text=text, button=button)


def _set_enabled(username: str, enabled: bool):
    operator = _load(username)
    try:
        operator_service.set_enabled(operator.username, enabled, actor=actor(),
                                     account_id=account_id())
    except ValidationError as exc:
        flash(_message(exc), "error")
        return _render({"username": "", "role": operator_service.VIEWER}, {}, 409)
    flash(f"{operator.username} is {'enabled' if enabled else 'disabled'}."
          + ("" if enabled else " Their sessions have ended."))
    return redirect(url_for("admin_ui.operators"), 303)


@bp.route("/operators/<username>/disable", methods=["GET", "POST"])
def disable_operator(username: str):
    """Ask, then disable an operator and end their sessions (never the last owner)."""
    if request.method == "GET":
        return _confirm_page(_load(username), "disable")
    return _set_enabled(username, False)


@bp.post("/operators/<username>/enable")
def enable_operator(username: str):
    """Let a disabled operator sign in again."""
    return _set_enabled(username, True)


@bp.route("/operators/<username>/reset-password", methods=["GET", "POST"])
def reset_operator_password(username: str):
    """Ask, then give an operator a one-time password (shown once, after the redirect); their
    sessions end."""
    operator = _load(username)
    if request.method == "GET":
        return _confirm_page(operator, "reset-password")
    operator, password = operator_service.reset_password(operator.username, actor=actor(),
                                                         account_id=account_id())
    return _show_once(operator, password)


@bp.route("/operators/<username>/reset-2fa", methods=["GET", "POST"])
def reset_operator_two_factor(username: str):
    """Ask, then turn an operator's second factor off (they sign in with the password and may
    enroll again)."""
    operator = _load(username)
    if request.method == "GET":
        return _confirm_page(operator, "reset-2fa")
    second_factor.reset(operator.username, actor=actor(), account_id=account_id())
    flash(f"The second factor of {operator.username} is off; they can set it up again.")
    return redirect(url_for("admin_ui.operators"), 303)
