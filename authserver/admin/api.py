"""The operator admin REST API: API keys, OAuth clients, the scope catalogue, the audit trail,
and the OpenAPI document that describes them.

Each view authenticates the caller (``admin.auth``), reads its input through a pydantic model
(``admin.validation``, ``admin.schemas``), calls one service function and renders the result.
Errors use the platform's envelope (the renderer picks it for every path under /settings/ and
/audit/). The conventions (201 + Location, PUT/PATCH/DELETE, paging headers, what a 403
names) are stated in ``admin.openapi``, which publishes them.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, url_for

from authserver.accounts import tenancy
from authserver.admin import openapi, schemas
from authserver.admin.auth import AUDIT_SCOPE, MANAGE_SCOPE, current_caller, require_admin
from authserver.admin.merge_patch import patch_changes
from authserver.admin.paging import paged_response
from authserver.admin.validation import MERGE_PATCH, changes_of, read_body, read_query
from authserver.credentials import api_keys, clients
from authserver.scopes import current_catalogue
from authserver.storage import audit
from authserver.web.errors import ValidationError
from authserver.web.limits import hit
from authserver.web.text import check_request_text

bp = Blueprint("admin_api", __name__)
bp.before_request(check_request_text)  # one text validation for every surface (AD12)

WRITE_LIMIT = "ADMIN_WRITE_RATE_LIMIT"
#: Query parameter naming the account a platform caller acts in (default: its own).
ACCOUNT_PARAMETER = "accountId"
#: The editable fields of each record under the admin API's names, and what a merge patch's
#: null sets a removable one to (RFC 7396: null removes the member).
KEY_EDITABLE = ("name", "scopeGuids", "allowedIPs", "validFrom", "validTo", "enabled")
KEY_REMOVED = {"allowedIPs": []}
CLIENT_EDITABLE = ("name", "scopes", "audiences", "tokenTtl", "authMethod", "enabled", "jwks",
                   "dpopBoundAccessTokens")
CLIENT_REMOVED = {"tokenTtl": None, "audiences": [], "jwks": None}


@bp.after_request
def _no_store(response: Response) -> Response:
    # Create and rotate answers carry secrets; nothing here is worth caching anyway.
    response.headers["Cache-Control"] = "no-store"
    return response


def _count_write() -> None:
    """Count a create/update/delete/rotate against the caller's limit (429 past it)."""
    hit(WRITE_LIMIT, current_caller().client_id)


def _account() -> str:
    """The account this request acts in: the caller's own or, for a caller of the platform
    account, the one named by ``accountId``. Any other ``accountId`` (malformed, unknown, or
    named by a customer's caller) is answered like an id that does not exist (AC01)."""
    given = request.args.getlist(ACCOUNT_PARAMETER)
    if len(given) > 1:
        raise ValidationError({ACCOUNT_PARAMETER: ["given more than once"]})
    caller = current_caller()
    return tenancy.target_account(caller.account_id, caller.platform,
                                  given[0] if given else None)


def _named_account() -> dict:
    """The ``accountId`` this request named, for URLs that must name it too (Location)."""
    given = request.args.get(ACCOUNT_PARAMETER)
    return {ACCOUNT_PARAMETER: given} if given else {}


def _editable(data: dict, fields: tuple[str, ...]) -> dict:
    return {name: data[name] for name in fields}


# -- API keys --------------------------------------------------------------------------------

def _key_with_secret(record, secret: str) -> dict:
    data = api_keys.describe(record)
    return {"id": data.pop("id"), "apiKeySecret": secret, **data}


@bp.get("/settings/2/api-keys")
@require_admin(MANAGE_SCOPE)
def list_api_keys():
    """A page of the account's API keys; filters ``name`` (exact), ``search``, ``enabled``."""
    account_id = _account()
    query = read_query(schemas.ApiKeyListQuery)
    rows, total = api_keys.list_api_keys(
        account_id=account_id, name=query.name, enabled=query.enabled, search=query.search,
        order_by=query.orderBy, descending=query.orderDirection == "DESC", page=query.page,
        size=query.size)
    return paged_response("apiKeys", [api_keys.describe(row) for row in rows], page=query.page,
                          size=query.size, total=total, order_by=query.orderBy,
                          direction=query.orderDirection)


@bp.post("/settings/2/api-keys")
@require_admin(MANAGE_SCOPE)
def create_api_key():
    """Create a key in the account; the secret is in this answer only (``apiKeySecret``)."""
    account_id = _account()
    read_query(schemas.AccountQuery)
    _count_write()
    body = read_body(schemas.ApiKeyCreate)
    caller = current_caller()
    record, secret = api_keys.create_api_key(
        name=body.name, scopes=body.scopeGuids, valid_from=body.validFrom,
        valid_to=body.validTo, allowed_ips=body.allowedIPs, actor=caller.actor,
        held_scopes=caller.scopes, account_id=account_id)
    location = url_for("admin_api.get_api_key", key_id=record.id, **_named_account())
    return _key_with_secret(record, secret), 201, {"Location": location}


@bp.get("/settings/2/api-keys/<key_id>")
@require_admin(MANAGE_SCOPE)
def get_api_key(key_id: str):
    """One key (never its secret); 404 for unknown, malformed and other accounts' ids alike."""
    account_id = _account()
    read_query(schemas.AccountQuery)
    return api_keys.describe(api_keys.get_api_key(key_id, account_id=account_id))


def _update_key(key_id: str, account_id: str, changes: dict) -> dict:
    """Apply ``changes`` as the caller (who may grant only scopes it holds); the new key."""
    caller = current_caller()
    return api_keys.describe(api_keys.update_api_key(
        key_id, actor=caller.actor, changes=changes, held_scopes=caller.scopes,
        account_id=account_id))


@bp.put("/settings/2/api-keys/<key_id>")
@require_admin(MANAGE_SCOPE)
def update_api_key(key_id: str):
    """The platform's update: named fields change, omitted ones stay; ``enabled: false``
    revokes for good."""
    account_id = _account()
    api_keys.get_api_key(key_id, account_id=account_id)  # 404 before counting or parsing
    read_query(schemas.AccountQuery)
    _count_write()
    changes = changes_of(read_body(schemas.ApiKeyUpdate))
    if not changes:
        raise ValidationError({"body": ["name at least one field to change"]})
    return _update_key(key_id, account_id, changes)


@bp.patch("/settings/2/api-keys/<key_id>")
@require_admin(MANAGE_SCOPE)
def patch_api_key(key_id: str):
    """A JSON merge patch (RFC 7396) of the key's editable fields."""
    account_id = _account()
    current = api_keys.describe(api_keys.get_api_key(key_id, account_id=account_id))
    read_query(schemas.AccountQuery)
    _count_write()
    patch = changes_of(read_body(schemas.ApiKeyPatch, media_type=MERGE_PATCH))
    changes = patch_changes(_editable(current, KEY_EDITABLE), patch, KEY_REMOVED)
    return _update_key(key_id, account_id, changes)


@bp.delete("/settings/2/api-keys/<key_id>")
@require_admin(MANAGE_SCOPE)
def delete_api_key(key_id: str):
    """Delete a key for good (its audit trail stays); 204."""
    account_id = _account()
    api_keys.get_api_key(key_id, account_id=account_id)
    read_query(schemas.AccountQuery)
    _count_write()
    caller = current_caller()
    api_keys.delete_api_key(key_id, actor=caller.actor, held_scopes=caller.scopes,
                            account_id=account_id)
    return "", 204


# -- OAuth clients ---------------------------------------------------------------------------

@bp.get("/settings/2/oauth-clients")
@require_admin(MANAGE_SCOPE)
def list_oauth_clients():
    """A page of the account's clients; filters ``name`` (exact), ``search``, ``enabled``."""
    account_id = _account()
    query = read_query(schemas.OAuthClientListQuery)
    rows, total = clients.list_clients(
        account_id=account_id, name=query.name, enabled=query.enabled, search=query.search,
        order_by=query.orderBy, descending=query.orderDirection == "DESC", page=query.page,
        size=query.size)
    return paged_response("oauthClients", [clients.describe(row) for row in rows],
                          page=query.page, size=query.size, total=total,
                          order_by=query.orderBy, direction=query.orderDirection)


@bp.post("/settings/2/oauth-clients")
@require_admin(MANAGE_SCOPE)
def create_oauth_client():
    """Register a client in the account; its secret (``clientSecret``) is in this answer only."""
    account_id = _account()
    read_query(schemas.AccountQuery)
    _count_write()
    body = read_body(schemas.OAuthClientCreate)
    caller = current_caller()
    client, secret = clients.create_client(
        name=body.name, scope=body.scopes, token_ttl=body.tokenTtl, audiences=body.audiences,
        auth_method=body.authMethod, jwks=body.jwks,
        dpop_bound_access_tokens=body.dpopBoundAccessTokens, actor=caller.actor,
        held_scopes=caller.scopes, held_audiences=caller.audiences, account_id=account_id)
    location = url_for("admin_api.get_oauth_client", client_id=client.client_id,
                       **_named_account())
    return {"clientSecret": secret, **clients.describe(client)}, 201, {"Location": location}


@bp.get("/settings/2/oauth-clients/<client_id>")
@require_admin(MANAGE_SCOPE)
def get_oauth_client(client_id: str):
    """One client (never its secret); 404 for unknown and other accounts' ids alike."""
    account_id = _account()
    read_query(schemas.AccountQuery)
    return clients.describe(clients.get_client(client_id, account_id))


def _update_client(client_id: str, account_id: str, changes: dict) -> dict:
    """Apply ``changes`` as the caller (who may grant only the scopes and audiences it holds);
    the new client."""
    caller = current_caller()
    return clients.describe(clients.update_client(
        client_id, actor=caller.actor, changes=changes, held_scopes=caller.scopes,
        held_audiences=caller.audiences, account_id=account_id))


@bp.put("/settings/2/oauth-clients/<client_id>")
@require_admin(MANAGE_SCOPE)
def replace_oauth_client(client_id: str):
    """Replace the client's editable representation (every member required)."""
    account_id = _account()
    clients.get_client(client_id, account_id)  # 404 before counting or parsing
    read_query(schemas.AccountQuery)
    _count_write()
    changes = read_body(schemas.OAuthClientReplace).model_dump()
    return _update_client(client_id, account_id, changes)


@bp.patch("/settings/2/oauth-clients/<client_id>")
@require_admin(MANAGE_SCOPE)
def patch_oauth_client(client_id: str):
    """A JSON merge patch (RFC 7396) of the client's editable fields."""
    account_id = _account()
    current = clients.describe(clients.get_client(client_id, account_id))
    read_query(schemas.AccountQuery)
    _count_write()
    patch = changes_of(read_body(schemas.OAuthClientPatch, media_type=MERGE_PATCH))
    changes = patch_changes(_editable(current, CLIENT_EDITABLE), patch, CLIENT_REMOVED)
    return _update_client(client_id, account_id, changes)


@bp.delete("/settings/2/oauth-clients/<client_id>")
@require_admin(MANAGE_SCOPE)
def delete_oauth_client(client_id: str):
    """Delete a client for good (its audit trail stays); 204."""
    account_id = _account()
    clients.get_client(client_id, account_id)
    read_query(schemas.AccountQuery)
    _count_write()
    caller = current_caller()
    clients.delete_client(client_id, actor=caller.actor, held_scopes=caller.scopes,
                          account_id=account_id)
    return "", 204


@bp.post("/settings/2/oauth-clients/<client_id>/rotate-secret")
@require_admin(MANAGE_SCOPE)
def rotate_oauth_client_secret(client_id: str):
    """New secret, shown once; the old one lives on for ``gracePeriod`` seconds (default 0)."""
    account_id = _account()
    clients.get_client(client_id, account_id)
    read_query(schemas.AccountQuery)
    _count_write()
    body = read_body(schemas.RotateSecret, optional=True)
    caller = current_caller()
    client, secret = clients.rotate_secret(client_id, actor=caller.actor,
                                           grace_seconds=body.gracePeriod,
                                           held_scopes=caller.scopes,
                                           held_audiences=caller.audiences, account_id=account_id)
    return {"clientSecret": secret, **clients.describe(client)}


# -- scopes and audit ------------------------------------------------------------------------

@bp.get("/settings/2/scopes")
@require_admin(MANAGE_SCOPE)
def list_scopes():
    """The scope catalogue by UI category: descriptions, covering umbrellas, covered scopes."""
    read_query(schemas.EmptyQuery)
    catalogue = current_catalogue()
    covers = catalogue.umbrella_table()
    return {"categories": [
        {"name": category, "scopes": [
            {**entry.as_dict(),
             "coveredBy": sorted(catalogue.accepted_by(entry.name) - {entry.name}),
             "covers": covers.get(entry.name, [])}
            for entry in entries]}
        for category, entries in catalogue.by_category().items()]}


@bp.get("/audit/1/logs")
@require_admin(AUDIT_SCOPE, MANAGE_SCOPE)
def list_audit_logs():
    """The account's audit events, newest first; filters from/to, actor, objectId and
    objectType."""
    account_id = _account()
    query = read_query(schemas.AuditQuery)
    rows, total = audit.query_events(
        account_id=account_id, since=query.since, until=query.until, actor=query.actor,
        object_id=query.objectId, object_type=query.objectType, page=query.page,
        size=query.size)
    return paged_response("logs", [audit.describe(row) for row in rows], page=query.page,
                          size=query.size, total=total, order_by="occurredAt",
                          direction="DESC")


# -- the document ----------------------------------------------------------------------------

@bp.get("/openapi.json")
def openapi_document():
    """The OpenAPI 3.1 description of this API (public: it holds no data)."""
    return jsonify(openapi.document())
