"""Web UI: Developer Tools -> API Keys (list, create, edit, disable, delete).

Every form follows Post/Redirect/Get: a POST that changes something answers 303 to a GET page,
so reloading never repeats it. A new key is kept for the session (``credentials.shown_once``)
and shown once by the page the create form redirects to. Disabling and deleting ask first,
on a page of their own (no JavaScript needed).
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for

from authserver.admin import schemas
from authserver.admin.ui import forms as forms
from authserver.admin.ui import reach as reach_ui
from authserver.admin.ui.blueprint import account_id, actor, bp, session_id
from authserver.clock import utcnow
from authserver.credentials import api_keys as api_key_service
from authserver.credentials import shown_once
from authserver.storage.models import ApiKey
from authserver.web.errors import NotFoundError, ValidationError

OBJECT_TYPE = "api-key"
#: Service field -> form field, to show each error next to its field.
FIELDS = {"name": "name", "scopeGuids": "scopes", "validTo": "expiration",
          "validFrom": "valid_from", "allowedIPs": "allowed_ips", "enabled": "enabled"}
#: Sortable columns of the list: admin API orderBy -> column title.
SORTABLE = {"name": "Name", "createdAt": "Creation date", "validTo": "Expiration date"}


def status(record: ApiKey) -> str:
    """Active, Disabled, Expired or Not yet valid."""
    now = utcnow()
    if not record.enabled:
        return "Disabled"
    if record.valid_to <= now:
        return "Expired"
    return "Active" if record.valid_from <= now else "Not yet valid"


def load(key_id: str) -> ApiKey:
    """The key of the current account (404 for another account's, like an unknown id)."""
    try:
        return api_key_service.get_api_key(key_id, account_id=account_id())
    except NotFoundError:
        abort(404)


def read_form() -> dict:
    return {"name": forms.text("name"), "expiration": forms.text("expiration"),
            "valid_from": forms.text("valid_from"), "allowed_ips": forms.text("allowed_ips"),
            "scopes": request.form.getlist("scopes")}


def render_form(template: str, form: dict, errors: dict, **context):
    body = render_template(template, form=form, errors=errors,
                           groups=forms.scope_picker(form["scopes"], account_id()), **context)
    return body, 400 if errors else 200


@bp.get("/api-keys")
def api_keys():
    """The API keys table: paged, searchable and sortable with the admin API's parameters."""
    query, size = forms.list_query(schemas.ApiKeyListQuery)
    rows, total = api_key_service.list_api_keys(
        account_id=account_id(), name=query.name, enabled=query.enabled, search=query.search,
        order_by=query.orderBy, descending=query.orderDirection == "DESC", page=query.page,
        size=size)
    keys = [dict(api_key_service.describe(row), status=status(row)) for row in rows]
    return render_template("api_keys/list.html", keys=keys, total=total, page=query.page,
                           page_size=size, query=query, sortable=SORTABLE)


@bp.route("/api-keys/new", methods=["GET", "POST"])
def create_api_key():
    """Create API key; success redirects to the page that shows the key once (UI08)."""
    if request.method == "GET":
        default_expiry = (utcnow() + api_key_service.DEFAULT_VALIDITY).date().isoformat()
        scopes, picked, refused = reach_ui.form_scopes(reach_ui.endpoints.API_KEY)
        if refused is not None:
            return refused
        form = {"name": "", "expiration": default_expiry, "valid_from": "", "allowed_ips": "",
                "scopes": scopes}
        return render_form("api_keys/new.html", form, {}, picked=picked)
    form = read_form()
    valid_from = forms.date_to_timestamp(form["valid_from"])
    if form["valid_from"].strip() == utcnow().date().isoformat():
        valid_from = None  # today: from now (the start of the day is before the key exists)
    try:
        record, secret = api_key_service.create_api_key(
            name=form["name"], scopes=form["scopes"], actor=actor(), account_id=account_id(),
            valid_from=valid_from, valid_to=forms.date_to_timestamp(form["expiration"]),
            allowed_ips=forms.entries(form["allowed_ips"]))
    except ValidationError as exc:
        return render_form("api_keys/new.html", form, forms.field_errors(exc.errors, FIELDS))
    shown_once.keep(session_id(), OBJECT_TYPE, record.id, secret)
    return redirect(url_for("admin_ui.api_key_secret", key_id=record.id), 303)


@bp.get("/api-keys/<key_id>/secret")
def api_key_secret(key_id: str):
    """The new key, shown on this page once; a reload says it cannot be shown again."""
    record = load(key_id)
    secret = shown_once.take(session_id(), OBJECT_TYPE, record.id)
    return render_template("api_keys/created.html", key=api_key_service.describe(record),
                           secret=secret)


@bp.route("/api-keys/<key_id>", methods=["GET", "POST"])
def edit_api_key(key_id: str):
    """Change a key's name, scopes, allowed addresses or validity window."""
    record = load(key_id)
    current = api_key_service.describe(record)
    current_from = record.valid_from.date().isoformat()
    current_expiry = record.valid_to.date().isoformat()
    if request.method == "GET":
        form = {"name": record.name, "expiration": current_expiry, "valid_from": current_from,
                "allowed_ips": "\n".join(current["allowedIPs"]), "scopes": current["scopeGuids"]}
        return render_form("api_keys/edit.html", form, {}, key=current, status=status(record),
                           reach=reach_ui.key_reach(record.id))
    form = read_form()
    changes = {"name": form["name"], "scopeGuids": form["scopes"],
               "allowedIPs": forms.entries(form["allowed_ips"])}
    # A date left as it was (or a blank start) keeps the exact stored instant.
    if form["valid_from"].strip() not in ("", current_from):
        changes["validFrom"] = forms.date_to_timestamp(form["valid_from"])
    if form["expiration"].strip() != current_expiry:
        changes["validTo"] = forms.date_to_timestamp(form["expiration"]) or ""
    try:
        api_key_service.update_api_key(key_id, actor=actor(), changes=changes,
                                       account_id=account_id())
    except ValidationError as exc:
        return render_form("api_keys/edit.html", form, forms.field_errors(exc.errors, FIELDS),
                           key=current, status=status(record),
                           reach=reach_ui.key_reach(record.id))
    flash(f"Saved the changes to API key “{form['name'].strip()}”.")
    return redirect(url_for("admin_ui.edit_api_key", key_id=record.id), 303)


def confirm_page(record: ApiKey, action: str):
    """The confirmation step of a destructive action (a page: works without JavaScript)."""
    return render_template("api_keys/confirm.html", key=api_key_service.describe(record),
                           action=action)


@bp.route("/api-keys/<key_id>/disable", methods=["GET", "POST"])
def disable_api_key(key_id: str):
    """Ask, then disable a key for good (the service refuses to enable it again)."""
    record = load(key_id)
    if request.method == "GET":
        return confirm_page(record, "disable")
    try:
        api_key_service.disable_api_key(record.id, actor=actor(), account_id=account_id())
    except ValidationError as exc:
        flash("; ".join(m for messages in exc.errors.values() for m in messages), "error")
    else:
        flash(f"API key “{record.name}” is disabled. Requests with it are refused "
              "within a few seconds.")
    return redirect(url_for("admin_ui.edit_api_key", key_id=record.id), 303)


@bp.route("/api-keys/<key_id>/delete", methods=["GET", "POST"])
def delete_api_key(key_id: str):
    """Ask, then delete a key (its audit trail stays)."""
    record = load(key_id)
    if request.method == "GET":
        return confirm_page(record, "delete")
    name = record.name
    api_key_service.delete_api_key(record.id, actor=actor(), account_id=account_id())
    flash(f"API key “{name}” is deleted. Requests with it are refused within a few seconds.")
    return redirect(url_for("admin_ui.api_keys"), 303)
