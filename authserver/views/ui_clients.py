"""Web UI: OAuth clients (list, create and rotate with a show-once secret page, disable)."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for

from .. import clients as client_service
from ..errors import NotFoundError, ValidationError
from ..models import Client
from . import ui_forms as forms
from .admin_ui import actor, bp

#: Service field -> form field.
FIELDS = {"name": "name", "scope": "scopes", "tokenTtl": "token_ttl",
          "authMethod": "auth_method", "gracePeriod": "grace_period"}
#: Methods the form offers; private_key_jwt clients need a JWK Set (CLI and admin API).
FORM_AUTH_METHODS = client_service.SECRET_METHODS
GRACE_PERIODS = ((0, "None: the old secret stops working now"), (3600, "1 hour"),
                 (86400, "24 hours"), (7 * 86400, "7 days"))


def load(client_id: str) -> Client:
    try:
        return client_service.get_client(client_id)
    except NotFoundError:
        abort(404)


def render_form(form: dict, errors: dict):
    body = render_template("clients/new.html", form=form, errors=errors,
                           groups=forms.scope_picker(form["scopes"]),
                           auth_methods=FORM_AUTH_METHODS,
                           default_ttl=current_app.config["ACCESS_TOKEN_TTL"],
                           max_ttl=current_app.config["MAX_ACCESS_TOKEN_TTL"])
    return body, 400 if errors else 200


@bp.get("/clients")
def clients():
    """The OAuth clients table."""
    page = forms.page_number()
    rows, total = client_service.list_clients(page=page, size=forms.PAGE_SIZE)
    return render_template("clients/list.html", clients=[client_service.describe(row) for row in rows],
                           total=total, page=page, page_size=forms.PAGE_SIZE,
                           default_ttl=current_app.config["ACCESS_TOKEN_TTL"])


@bp.route("/clients/new", methods=["GET", "POST"])
def create_client():
    """Register a client; its secret is rendered once, in this POST's own answer (UI08)."""
    if request.method == "GET":
        return render_form({"name": "", "token_ttl": "", "auth_method": FORM_AUTH_METHODS[0],
                            "scopes": []}, {})
    form = {"name": forms.text("name"), "token_ttl": forms.text("token_ttl"),
            "auth_method": forms.text("auth_method"), "scopes": request.form.getlist("scopes")}
    try:
        client, secret = client_service.create_client(
            name=form["name"], scope=form["scopes"], actor=actor(),
            token_ttl=forms.optional_int(form["token_ttl"]), auth_method=form["auth_method"])
    except ValidationError as exc:
        return render_form(form, forms.field_errors(exc.errors, FIELDS))
    return render_template("clients/secret.html", client=client_service.describe(client),
                           secret=secret, created=True)


@bp.get("/clients/<client_id>")
def client_detail(client_id: str):
    """One client, with the rotate-secret and disable actions."""
    client = load(client_id)
    return render_template("clients/detail.html", client=client_service.describe(client),
                           has_secret=client.auth_method in client_service.SECRET_METHODS,
                           grace_periods=GRACE_PERIODS,
                           default_ttl=current_app.config["ACCESS_TOKEN_TTL"])


@bp.post("/clients/<client_id>/rotate-secret")
def rotate_client_secret(client_id: str):
    """Issue a new secret, shown once in this answer."""
    client = load(client_id)
    try:
        client, secret = client_service.rotate_secret(
            client.client_id, actor=actor(),
            grace_seconds=forms.optional_int(forms.text("grace_period")) or 0)
    except ValidationError as exc:
        flash("; ".join(m for messages in exc.errors.values() for m in messages), "error")
        return redirect(url_for("admin_ui.client_detail", client_id=client.client_id), 303)
    return render_template("clients/secret.html", client=client_service.describe(client),
                           secret=secret, created=False)


@bp.post("/clients/<client_id>/disable")
def disable_client(client_id: str):
    """Disable a client: no new tokens from now on."""
    client = load(client_id)
    client_service.disable_client(client.client_id, actor=actor())
    flash(f"Client “{client.name}” is disabled: it can no longer get tokens.")
    return redirect(url_for("admin_ui.client_detail", client_id=client.client_id), 303)
