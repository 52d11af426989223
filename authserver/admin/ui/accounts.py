"""Web UI: accounts, for operators of the platform account (list, create, disable, enable, and
the account switcher that chooses which account the other pages show and change)."""

from __future__ import annotations

from flask import abort, flash, g, redirect, render_template, request, session, url_for

from authserver.accounts import registry as account_service
from authserver.admin.ui import forms as forms
from authserver.admin.ui.blueprint import ACCOUNT_KEY, actor, bp
from authserver.storage.models import Account
from authserver.web.errors import NotFoundError, ValidationError


def _platform_only() -> None:
    """The accounts pages exist only for operators of the platform account (others: 404)."""
    if not g.own_account.platform:
        abort(404)


def _load(account_id: str) -> Account:
    _platform_only()
    try:
        return account_service.get_account(account_id)
    except NotFoundError:
        abort(404)


def _render(form: dict, errors: dict, status: int = 200):
    page = forms.page_number()
    rows, total = account_service.list_accounts(page=page, size=forms.PAGE_SIZE)
    body = render_template("accounts.html", accounts=rows, total=total, page=page,
                           page_size=forms.PAGE_SIZE, form=form, errors=errors)
    return body, status


@bp.get("/accounts")
def accounts():
    """Every account, the platform account first, with the create form."""
    _platform_only()
    return _render({"name": ""}, {})


@bp.post("/accounts/new")
def create_account():
    """Create a customer account and switch to it."""
    _platform_only()
    form = {"name": forms.text("name")}
    try:
        account = account_service.create_account(name=form["name"], actor=actor())
    except ValidationError as exc:
        return _render(form, exc.errors, 400)
    session[ACCOUNT_KEY] = account.id
    flash(f"Created account “{account.name}”; you are now working in it.")
    return redirect(url_for("admin_ui.api_keys"), 303)


@bp.post("/accounts/<account_id>/switch")
def switch_account(account_id: str):
    """Work in another account: every page shows and changes that account's records."""
    account = _load(account_id)
    session[ACCOUNT_KEY] = account.id
    flash(f"You are now working in account “{account.name}”.")
    return redirect(url_for("admin_ui.api_keys"), 303)


def _set_enabled(account_id: str, enabled: bool):
    account = _load(account_id)
    try:
        account_service.set_enabled(account.id, enabled, actor=actor())
    except ValidationError as exc:
        flash("; ".join(m for messages in exc.errors.values() for m in messages), "error")
    else:
        flash(f"Account “{account.name}” is {'enabled' if enabled else 'disabled'}."
              + ("" if enabled else " Its clients, keys, tokens and operators stop working "
                                    "within a few seconds."))
    return redirect(url_for("admin_ui.accounts"), 303)


@bp.route("/accounts/<account_id>/disable", methods=["GET", "POST"])
def disable_account(account_id: str):
    """Ask (a page of its own, no JavaScript needed), then disable an account everywhere
    (the platform account cannot be disabled)."""
    if request.method == "GET":
        return render_template("account_disable.html", account=_load(account_id))
    return _set_enabled(account_id, False)


@bp.post("/accounts/<account_id>/enable")
def enable_account(account_id: str):
    """Enable an account again (tokens issued before it was disabled stay refused)."""
    return _set_enabled(account_id, True)
