"""Web UI: Developer Tools -> API Keys (list, create with a show-once page, edit, disable)."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for

from .. import api_keys as api_key_service
from ..clock import utcnow
from ..errors import NotFoundError, ValidationError
from ..models import ApiKey
from . import ui_forms as forms
from .admin_ui import actor, bp

#: Service field -> form field, to show each error next to its field.
FIELDS = {"name": "name", "scopeGuids": "scopes", "validTo": "expiration",
          "validFrom": "expiration", "allowedIPs": "allowed_ips", "enabled": "enabled"}


def status(record: ApiKey) -> str:
    """Active, Disabled, Expired or Not yet valid."""
    now = utcnow()
    if not record.enabled:
        return "Disabled"
    if record.valid_to <= now:
        return "Expired"
    return "Active" if record.valid_from <= now else "Not yet valid"


def load(key_id: str) -> ApiKey:
    try:
        return api_key_service.get_api_key(key_id)
    except NotFoundError:
        abort(404)


def read_form() -> dict:
    return {"name": forms.text("name"), "expiration": forms.text("expiration"),
            "allowed_ips": forms.text("allowed_ips"), "scopes": request.form.getlist("scopes")}


def render_form(template: str, form: dict, errors: dict, **context):
    body = render_template(template, form=form, errors=errors,
                           groups=forms.scope_picker(form["scopes"]), **context)
    return body, 400 if errors else 200


@bp.get("/api-keys")
def api_keys():
    """The API keys table."""
    page = forms.page_number()
    rows, total = api_key_service.list_api_keys(page=page, size=forms.PAGE_SIZE)
    keys = [dict(api_key_service.describe(row), status=status(row)) for row in rows]
    return render_template("api_keys/list.html", keys=keys, total=total, page=page,
                           page_size=forms.PAGE_SIZE)


@bp.route("/api-keys/new", methods=["GET", "POST"])
def create_api_key():
    """Create API key; the secret is rendered once, in this POST's own answer (UI08)."""
    if request.method == "GET":
        default_expiry = (utcnow() + api_key_service.DEFAULT_VALIDITY).date().isoformat()
        form = {"name": "", "expiration": default_expiry, "allowed_ips": "", "scopes": []}
        return render_form("api_keys/new.html", form, {})
    form = read_form()
    try:
        record, secret = api_key_service.create_api_key(
            name=form["name"], scopes=form["scopes"], actor=actor(),
            valid_to=forms.date_to_timestamp(form["expiration"]),
            allowed_ips=forms.entries(form["allowed_ips"]))
    except ValidationError as exc:
        return render_form("api_keys/new.html", form, forms.field_errors(exc.errors, FIELDS))
    return render_template("api_keys/created.html", key=api_key_service.describe(record),
                           secret=secret)


@bp.route("/api-keys/<key_id>", methods=["GET", "POST"])
def edit_api_key(key_id: str):
    """Change a key's name, scopes, allowed addresses or expiration date."""
    record = load(key_id)
    current = api_key_service.describe(record)
    current_expiry = record.valid_to.date().isoformat()
    if request.method == "GET":
        form = {"name": record.name, "expiration": current_expiry,
                "allowed_ips": "\n".join(current["allowedIPs"]), "scopes": current["scopeGuids"]}
        return render_form("api_keys/edit.html", form, {}, key=current, status=status(record))
    form = read_form()
    changes = {"name": form["name"], "scopeGuids": form["scopes"],
               "allowedIPs": forms.entries(form["allowed_ips"])}
    if form["expiration"].strip() != current_expiry:  # keep the exact instant unless changed
        changes["validTo"] = forms.date_to_timestamp(form["expiration"]) or ""
    try:
        api_key_service.update_api_key(key_id, actor=actor(), changes=changes)
    except ValidationError as exc:
        return render_form("api_keys/edit.html", form, forms.field_errors(exc.errors, FIELDS),
                           key=current, status=status(record))
    flash(f"Saved the changes to API key “{form['name'].strip()}”.")
    return redirect(url_for("admin_ui.api_keys"), 303)


@bp.post("/api-keys/<key_id>/disable")
def disable_api_key(key_id: str):
    """Disable a key for good (the service refuses to enable it again)."""
    record = load(key_id)
    try:
        api_key_service.disable_api_key(record.id, actor=actor())
    except ValidationError as exc:
        flash("; ".join(m for messages in exc.errors.values() for m in messages), "error")
    else:
        flash(f"API key “{record.name}” is disabled. Requests with it are refused "
              "within a few seconds.")
    return redirect(url_for("admin_ui.edit_api_key", key_id=record.id), 303)

