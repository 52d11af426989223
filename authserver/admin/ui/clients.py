"""Web UI: OAuth clients (list, create, edit, rotate the secret, disable, delete).

Post/Redirect/Get throughout: a new client secret (at creation or rotation) is kept for the
session (``credentials.shown_once``) and shown once by the page the form redirects to.
Rotating, disabling and deleting ask first, on a page of their own (no JavaScript needed).
Edits go through ``credentials.clients.update_client``, the admin API's update path.
"""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for

from authserver.admin import schemas
from authserver.admin.ui import forms as forms
from authserver.admin.ui import reach as reach_ui
from authserver.admin.ui.blueprint import account_id, actor, bp, session_id
from authserver.credentials import clients as client_service
from authserver.credentials import shown_once
from authserver.storage.models import Client
from authserver.web.errors import NotFoundError, ValidationError

OBJECT_TYPE = "oauth-client"
#: Service field -> form field.
FIELDS = {"name": "name", "scopes": "scopes", "tokenTtl": "token_ttl",
          "authMethod": "auth_method", "jwks": "auth_method", "gracePeriod": "grace_period",
          "audiences": "audiences", "dpopBoundAccessTokens": "dpop_bound_access_tokens"}
#: Methods the forms offer; private_key_jwt clients need a JWK Set (CLI and admin API).
FORM_AUTH_METHODS = client_service.SECRET_METHODS
GRACE_PERIODS = ((0, "None: the old secret stops working now"), (3600, "1 hour"),
                 (86400, "24 hours"), (7 * 86400, "7 days"))
#: Sortable columns of the list: admin API orderBy -> column title.
SORTABLE = {"name": "Name", "createdAt": "Creation date"}


def load(client_id: str) -> Client:
    """The client of the current account (404 for another account's, like an unknown id)."""
    try:
        return client_service.get_client(client_id, account_id())
    except NotFoundError:
        abort(404)


def read_form() -> dict:
    return {"name": forms.text("name"), "token_ttl": forms.text("token_ttl"),
            "auth_method": forms.text("auth_method"), "scopes": request.form.getlist("scopes"),
            "audiences": forms.text("audiences"),
            "dpop_bound_access_tokens": forms.checkbox("dpop_bound_access_tokens")}


def render_form(template: str, form: dict, errors: dict, auth_methods=FORM_AUTH_METHODS,
                **context):
    body = render_template(template, form=form, errors=errors,
                           groups=forms.scope_picker(form["scopes"], account_id()),
                           auth_methods=auth_methods,
                           default_ttl=current_app.config["ACCESS_TOKEN_TTL"],
                           max_ttl=current_app.config["MAX_ACCESS_TOKEN_TTL"], **context)
    return body, 400 if errors else 200


@bp.get("/clients")
def clients():
    """The OAuth clients table: paged, searchable and sortable with the admin API's
    parameters."""
    query, size = forms.list_query(schemas.OAuthClientListQuery)
    rows, total = client_service.list_clients(
        account_id=account_id(), name=query.name, enabled=query.enabled, search=query.search,
        order_by=query.orderBy, descending=query.orderDirection == "DESC", page=query.page,
        size=size)
    return render_template("clients/list.html",
                           clients=[client_service.describe(row) for row in rows],
                           total=total, page=query.page, page_size=size, query=query,
                           sortable=SORTABLE, default_ttl=current_app.config["ACCESS_TOKEN_TTL"])


@bp.route("/clients/new", methods=["GET", "POST"])
def create_client():
    """Register a client; success redirects to the page that shows its secret once (UI08)."""
    if request.method == "GET":
        scopes, picked, refused = reach_ui.form_scopes(reach_ui.endpoints.OAUTH_CLIENT)
        if refused is not None:
            return refused
        return render_form("clients/new.html", {
            "name": "", "token_ttl": "", "auth_method": FORM_AUTH_METHODS[0], "scopes": scopes,
            "audiences": "", "dpop_bound_access_tokens": False}, {}, picked=picked)
    form = read_form()
    try:
        client, secret = client_service.create_client(
            name=form["name"], scope=form["scopes"], actor=actor(), account_id=account_id(),
            token_ttl=forms.optional_int(form["token_ttl"]), auth_method=form["auth_method"],
            audiences=forms.entries(form["audiences"]),
            dpop_bound_access_tokens=form["dpop_bound_access_tokens"])
    except ValidationError as exc:
        return render_form("clients/new.html", form, forms.field_errors(exc.errors, FIELDS))
    shown_once.keep(session_id(), OBJECT_TYPE, client.client_id, secret)
    return redirect(url_for("admin_ui.client_secret", client_id=client.client_id,
                            created="1"), 303)


@bp.get("/clients/<client_id>/secret")
def client_secret(client_id: str):
    """A new client secret, shown on this page once; a reload says it cannot be shown
    again."""
    client = load(client_id)
    secret = shown_once.take(session_id(), OBJECT_TYPE, client.client_id)
    return render_template("clients/secret.html", client=client_service.describe(client),
                           secret=secret, created=request.args.get("created") == "1")


@bp.get("/clients/<client_id>")
def client_detail(client_id: str):
    """One client, with its edit, rotate-secret, disable and delete actions."""
    client = load(client_id)
    return render_template("clients/detail.html", client=client_service.describe(client),
                           has_secret=client.auth_method in client_service.SECRET_METHODS,
                           default_ttl=current_app.config["ACCESS_TOKEN_TTL"],
                           reach=reach_ui.client_reach(client.client_id))


@bp.route("/clients/<client_id>/edit", methods=["GET", "POST"])
def edit_client(client_id: str):
    """Change a client's name, scopes, token lifetime, audiences, authentication method and
    DPoP binding (one update, validated as a whole by the service the admin API uses)."""
    client = load(client_id)
    current = client_service.describe(client)
    methods = FORM_AUTH_METHODS + ((client.auth_method,)
                                   if client.auth_method not in FORM_AUTH_METHODS else ())
    if request.method == "GET":
        form = {"name": client.name, "token_ttl": str(client.token_ttl or ""),
                "auth_method": client.auth_method, "scopes": current["scopes"],
                "audiences": "\n".join(current["audiences"]),
                "dpop_bound_access_tokens": client.dpop_bound_access_tokens}
        return render_form("clients/edit.html", form, {}, methods, client=current)
    form = read_form()
    changes = {"name": form["name"], "scopes": form["scopes"],
               "tokenTtl": forms.optional_int(form["token_ttl"]),
               "audiences": forms.entries(form["audiences"]), "authMethod": form["auth_method"],
               "dpopBoundAccessTokens": form["dpop_bound_access_tokens"]}
    had_secret = client.secret_hash is not None
    try:
        client = client_service.update_client(client.client_id, actor=actor(),
                                              account_id=account_id(), changes=changes)
    except ValidationError as exc:
        return render_form("clients/edit.html", form, forms.field_errors(exc.errors, FIELDS),
                           methods, client=current)
    message = f"Saved the changes to OAuth client “{client.name}”."
    if client.auth_method in client_service.SECRET_METHODS and client.secret_hash is None \
            and not had_secret:
        message += " It has no secret yet: rotate the secret to issue one."
    flash(message)
    return redirect(url_for("admin_ui.client_detail", client_id=client.client_id), 303)


@bp.route("/clients/<client_id>/rotate-secret", methods=["GET", "POST"])
def rotate_client_secret(client_id: str):
    """Ask (with the grace period), then issue a new secret and redirect to the page that
    shows it once."""
    client = load(client_id)
    if request.method == "GET":
        return render_template("clients/confirm.html", client=client_service.describe(client),
                               action="rotate", grace_periods=GRACE_PERIODS)
    try:
        client, secret = client_service.rotate_secret(
            client.client_id, actor=actor(), account_id=account_id(),
            grace_seconds=forms.optional_int(forms.text("grace_period")) or 0)
    except ValidationError as exc:
        flash("; ".join(m for messages in exc.errors.values() for m in messages), "error")
        return redirect(url_for("admin_ui.client_detail", client_id=client.client_id), 303)
    shown_once.keep(session_id(), OBJECT_TYPE, client.client_id, secret)
    return redirect(url_for("admin_ui.client_secret", client_id=client.client_id), 303)


@bp.post("/clients/<client_id>/dpop")
def client_dpop(client_id: str):
    """Require (or stop requiring) DPoP proofs for the client's token requests (RFC 9449 §5.2)."""
    client = load(client_id)
    required = forms.checkbox("dpop_bound_access_tokens")
    client_service.update_client(client.client_id, actor=actor(), account_id=account_id(),
                                 changes={"dpopBoundAccessTokens": required})
    flash(f"Client “{client.name}” " + ("now needs a DPoP proof for every token."
                                         if required else "no longer needs DPoP proofs."))
    return redirect(url_for("admin_ui.client_detail", client_id=client.client_id), 303)


@bp.route("/clients/<client_id>/disable", methods=["GET", "POST"])
def disable_client(client_id: str):
    """Ask, then disable a client: no new tokens from then on."""
    client = load(client_id)
    if request.method == "GET":
        return render_template("clients/confirm.html", client=client_service.describe(client),
                               action="disable")
    client_service.disable_client(client.client_id, actor=actor(), account_id=account_id())
    flash(f"Client “{client.name}” is disabled: it can no longer get tokens.")
    return redirect(url_for("admin_ui.client_detail", client_id=client.client_id), 303)


@bp.route("/clients/<client_id>/delete", methods=["GET", "POST"])
def delete_client(client_id: str):
    """Ask, then delete a client (its audit trail stays)."""
    client = load(client_id)
    if request.method == "GET":
        return render_template("clients/confirm.html", client=client_service.describe(client),
                               action="delete")
    name = client.name
    client_service.delete_client(client.client_id, actor=actor(), account_id=account_id())
    flash(f"OAuth client “{name}” is deleted: it can no longer get tokens.")
    return redirect(url_for("admin_ui.clients"), 303)
