"""The operator admin REST API (issue 5): API keys, OAuth clients, the scope catalogue, the audit
trail, and the OpenAPI document that describes them.

Each view authenticates the caller (``admin_auth``), parses its input strictly (``admin_input``),
calls one service function and renders the result. Errors use the platform's envelope (the
renderer picks it for every path under /settings/ and /audit/). Policies: authserver/openapi.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import Blueprint, Response, jsonify

from .. import api_keys, audit, clients, openapi
from ..admin_auth import AUDIT_SCOPE, MANAGE_SCOPE, current_caller, require_admin
from ..admin_input import (
    Field,
    json_body,
    parse_bool,
    parse_paging,
    parse_text,
    parse_time,
    query_args,
)
from ..clock import isoformat
from ..errors import ValidationError
from ..limits import hit
from ..models import Client
from ..scopes import current_catalogue, parse_scope

bp = Blueprint("admin_api", __name__)

KEY_CREATE = {"name": Field("string", required=True), "scopeGuids": Field("string-list"),
              "allowedIPs": Field("string-list"), "validFrom": Field("timestamp"),
              "validTo": Field("timestamp")}
KEY_UPDATE = {"name": Field("string"), "scopeGuids": Field("string-list"),
              "allowedIPs": Field("string-list"), "validFrom": Field("timestamp"),
              "validTo": Field("timestamp"), "enabled": Field("boolean")}
CLIENT_CREATE = {"name": Field("string", required=True),
                 "scopes": Field("string-list", required=True),
                 "tokenTtl": Field("integer", nullable=True), "audiences": Field("string-list"),
                 "authMethod": Field("string"), "jwks": Field("object")}
CLIENT_UPDATE = {"name": Field("string"), "scopes": Field("string-list"),
                 "tokenTtl": Field("integer", nullable=True), "audiences": Field("string-list"),
                 "enabled": Field("boolean"), "jwks": Field("object")}
#: API field -> keyword of clients.update_client.
CLIENT_FIELDS = {"name": "name", "scopes": "scope", "tokenTtl": "token_ttl",
                 "audiences": "audiences", "enabled": "enabled", "jwks": "jwks"}
#: Field names the client service reports errors under -> the API's names.
CLIENT_ERROR_FIELDS = {service: api for api, service in CLIENT_FIELDS.items()}
ROTATE = {"gracePeriod": Field("integer")}
WRITE_LIMIT = "ADMIN_WRITE_RATE_LIMIT"


@bp.after_request
def _no_store(response: Response) -> Response:
    # Create and rotate answers carry secrets; nothing here is worth caching anyway.
    response.headers["Cache-Control"] = "no-store"
    return response


def _count_write() -> None:
    """Count a create/update/rotate against the caller's limit (429 past it)."""
    hit(WRITE_LIMIT, current_caller().client_id)


def _non_empty(body: dict) -> dict:
    if not body:
        raise ValidationError({"body": ["name at least one field to change"]})
    return body


@contextmanager
def _client_field_names() -> Iterator[None]:
    """Report the client service's validation errors under the API's field names."""
    try:
        yield
    except ValidationError as exc:
        raise ValidationError({CLIENT_ERROR_FIELDS.get(field, field): messages
                               for field, messages in exc.errors.items()}) from None


def render_client(client: Client) -> dict:
    """A client in the admin API's camelCase shape (never its secret or hashes)."""
    return {
        "clientId": client.client_id,
        "name": client.name,
        "scopes": parse_scope(client.scope),
        "audiences": list(client.audiences or []),
        "tokenTtl": client.token_ttl,
        "authMethod": client.auth_method,
        "jwks": client.jwks if client.auth_method == "private_key_jwt" else None,
        "enabled": client.enabled,
        "previousSecretExpiresAt": isoformat(client.previous_secret_expires_at),
        "createdAt": isoformat(client.created_at),
        "updatedAt": isoformat(client.updated_at),
    }


# -- API keys --------------------------------------------------------------------------------

@bp.get("/settings/2/api-keys")
@require_admin(MANAGE_SCOPE)
def list_api_keys():
    """A page of API keys, oldest first; filters ``name`` (exact) and ``enabled``."""
    args = query_args({"name", "enabled", "page", "size"})
    paging = parse_paging(args)
    rows, total = api_keys.list_api_keys(name=parse_text(args, "name"),
                                         enabled=parse_bool(args, "enabled"),
                                         page=paging.page, size=paging.size)
    return jsonify(apiKeys=[api_keys.describe(row) for row in rows],
                   paging=paging.render(total, "createdAt", "ASC"))


@bp.post("/settings/2/api-keys")
@require_admin(MANAGE_SCOPE)
def create_api_key():
    """Create a key; the secret is in this answer only (``apiKeySecret``)."""
    query_args(())
    _count_write()
    body = json_body(KEY_CREATE)
    caller = current_caller()
    record, secret = api_keys.create_api_key(
        name=body["name"], scopes=body.get("scopeGuids"), valid_from=body.get("validFrom"),
        valid_to=body.get("validTo"), allowed_ips=body.get("allowedIPs"), actor=caller.actor,
        held_scopes=caller.scopes)
    data = api_keys.describe(record)
    return {"id": data.pop("id"), "apiKeySecret": secret, **data}, 201


@bp.get("/settings/2/api-keys/<key_id>")
@require_admin(MANAGE_SCOPE)
def get_api_key(key_id: str):
    """One key (never its secret); 404 for unknown and malformed ids alike."""
    query_args(())
    return api_keys.describe(api_keys.get_api_key(key_id))


@bp.put("/settings/2/api-keys/<key_id>")
@require_admin(MANAGE_SCOPE)
def update_api_key(key_id: str):
    """Change the named fields; ``enabled: false`` revokes for good."""
    api_keys.get_api_key(key_id)  # 404 before counting or parsing
    query_args(())
    _count_write()
    changes = _non_empty(json_body(KEY_UPDATE))
    caller = current_caller()
    record = api_keys.update_api_key(key_id, actor=caller.actor, changes=changes,
                                     held_scopes=caller.scopes)
    return api_keys.describe(record)


# -- OAuth clients ---------------------------------------------------------------------------

@bp.get("/settings/2/oauth-clients")
@require_admin(MANAGE_SCOPE)
def list_oauth_clients():
    """A page of clients, oldest first; filters ``name`` (exact) and ``enabled``."""
    args = query_args({"name", "enabled", "page", "size"})
    paging = parse_paging(args)
    rows, total = clients.list_clients(name=parse_text(args, "name"),
                                       enabled=parse_bool(args, "enabled"),
                                       page=paging.page, size=paging.size)
    return jsonify(oauthClients=[render_client(row) for row in rows],
                   paging=paging.render(total, "createdAt", "ASC"))


@bp.post("/settings/2/oauth-clients")
@require_admin(MANAGE_SCOPE)
def create_oauth_client():
    """Register a client; its secret (``clientSecret``) is in this answer only."""
    query_args(())
    _count_write()
    body = json_body(CLIENT_CREATE)
    caller = current_caller()
    with _client_field_names():
        client, secret = clients.create_client(
            name=body["name"], scope=body["scopes"], token_ttl=body.get("tokenTtl"),
            audiences=body.get("audiences"),
            auth_method=body.get("authMethod", "client_secret_basic"), jwks=body.get("jwks"),
            actor=caller.actor, held_scopes=caller.scopes)
    return {"clientSecret": secret, **render_client(client)}, 201


@bp.get("/settings/2/oauth-clients/<client_id>")
@require_admin(MANAGE_SCOPE)
def get_oauth_client(client_id: str):
    """One client (never its secret)."""
    query_args(())
    return render_client(clients.get_client(client_id))


@bp.put("/settings/2/oauth-clients/<client_id>")
@require_admin(MANAGE_SCOPE)
def update_oauth_client(client_id: str):
    """Change the named fields; ``authMethod`` is fixed at registration."""
    clients.get_client(client_id)
    query_args(())
    _count_write()
    body = _non_empty(json_body(CLIENT_UPDATE))
    caller = current_caller()
    changes = {CLIENT_FIELDS[name]: value for name, value in body.items()}
    with _client_field_names():
        client = clients.update_client(client_id, actor=caller.actor,
                                       held_scopes=caller.scopes, **changes)
    return render_client(client)


@bp.post("/settings/2/oauth-clients/<client_id>/rotate-secret")
@require_admin(MANAGE_SCOPE)
def rotate_oauth_client_secret(client_id: str):
    """New secret, shown once; the old one lives on for ``gracePeriod`` seconds (default 0)."""
    clients.get_client(client_id)
    query_args(())
    _count_write()
    body = json_body(ROTATE, optional=True)
    caller = current_caller()
    client, secret = clients.rotate_secret(client_id, actor=caller.actor,
                                           grace_seconds=body.get("gracePeriod", 0),
                                           held_scopes=caller.scopes)
    return {"clientSecret": secret, **render_client(client)}


# -- scopes and audit ------------------------------------------------------------------------

@bp.get("/settings/2/scopes")
@require_admin(MANAGE_SCOPE)
def list_scopes():
    """The scope catalogue by UI category, with descriptions and covering umbrellas."""
    query_args(())
    catalogue = current_catalogue()
    return {"categories": [
        {"name": category, "scopes": [
            {**entry.as_dict(),
             "coveredBy": sorted(catalogue.accepted_by(entry.name) - {entry.name})}
            for entry in entries]}
        for category, entries in catalogue.by_category().items()]}


@bp.get("/audit/1/logs")
@require_admin(AUDIT_SCOPE, MANAGE_SCOPE)
def list_audit_logs():
    """Audit events, newest first; filters from/to, actor, objectId and objectType."""
    args = query_args({"from", "to", "actor", "objectId", "objectType", "page", "size"})
    paging = parse_paging(args)
    rows, total = audit.query_events(
        since=parse_time(args, "from"), until=parse_time(args, "to"),
        actor=parse_text(args, "actor"), object_id=parse_text(args, "objectId"),
        object_type=parse_text(args, "objectType"), page=paging.page, size=paging.size)
    return jsonify(logs=[audit.describe(row) for row in rows],
                   paging=paging.render(total, "occurredAt", "DESC"))


# -- the document ----------------------------------------------------------------------------

@bp.get("/openapi.json")
def openapi_document():
    """The OpenAPI 3.1 description of this API (public: it holds no data)."""
    return jsonify(openapi.document())
