"""The admin API's "what can it reach" endpoints (issue 17): resource servers register the
route manifests their guards export, and any key or client is explained against them.

- ``/settings/2/resource-servers``: registering, replacing and removing need
  ``resource-servers:manage``, which only the platform account's credentials hold (no umbrella
  covers it); reading needs that or ``account-management:manage`` (customers pick endpoints
  from these lists).
- ``/settings/2/api-keys/{id}/reach``, ``/settings/2/oauth-clients/{id}/reach`` and
  ``/settings/2/scopes/narrowest``: ``account-management:manage``, inside the caller's account
  (or the one a platform caller names), like the rest of the key and client routes.
"""

from __future__ import annotations

from flask import Blueprint, Response, request, url_for

from authserver.accounts import tenancy
from authserver.admin import schemas
from authserver.admin.auth import (
    MANAGE_SCOPE,
    RESOURCE_SERVERS_SCOPE,
    current_caller,
    require_admin,
)
from authserver.admin.paging import paged_response
from authserver.admin.validation import read_body, read_json_object, read_query
from authserver.reach import endpoints, least_privilege
from authserver.reach import resource_servers as registry
from authserver.web.errors import ForbiddenError, ValidationError
from authserver.web.limits import hit
from authserver.web.text import check_request_text

WRITE_LIMIT = "ADMIN_WRITE_RATE_LIMIT"
ACCOUNT_PARAMETER = "accountId"

bp = Blueprint("admin_reach", __name__)
bp.before_request(check_request_text)


@bp.after_request
def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _platform_only() -> None:
    """Refuse a caller outside the platform account, whatever its scopes (in depth: only the
    platform account's credentials can hold resource-servers:manage)."""
    if not current_caller().platform:
        raise ForbiddenError("Only the platform account registers resource servers.")


def _account() -> str:
    """The account this request acts in (see ``admin.api._account``)."""
    given = request.args.getlist(ACCOUNT_PARAMETER)
    if len(given) > 1:
        raise ValidationError({ACCOUNT_PARAMETER: ["given more than once"]})
    caller = current_caller()
    return tenancy.target_account(caller.account_id, caller.platform,
                                  given[0] if given else None)


# -- resource servers ------------------------------------------------------------------------

@bp.get("/settings/2/resource-servers")
@require_admin(RESOURCE_SERVERS_SCOPE, MANAGE_SCOPE)
def list_resource_servers():
    """A page of the registered resource servers, by name."""
    query = read_query(schemas.ResourceServerListQuery)
    rows, total = registry.list_resource_servers(page=query.page, size=query.size)
    return paged_response("resourceServers", [registry.summary(row) for row in rows],
                          page=query.page, size=query.size, total=total, order_by="name",
                          direction="ASC")


@bp.get("/settings/2/resource-servers/<name>")
@require_admin(RESOURCE_SERVERS_SCOPE, MANAGE_SCOPE)
def get_resource_server(name: str):
    """One resource server with its manifest; 404 for unknown and malformed names."""
    read_query(schemas.EmptyQuery)
    return registry.describe(registry.get_resource_server(name))


@bp.put("/settings/2/resource-servers/<name>")
@require_admin(RESOURCE_SERVERS_SCOPE)
def put_resource_server(name: str):
    """Register or replace a resource server's manifest (201 when new, 200 when replaced)."""
    _platform_only()
    read_query(schemas.EmptyQuery)
    registry.validate_name(name)
    hit(WRITE_LIMIT, current_caller().client_id)
    manifest = registry.parse_manifest(read_json_object())
    record, created = registry.register_resource_server(name, manifest,
                                                        actor=current_caller().actor)
    if not created:
        return registry.describe(record)
    location = url_for("admin_reach.get_resource_server", name=record.name)
    return registry.describe(record), 201, {"Location": location}


@bp.delete("/settings/2/resource-servers/<name>")
@require_admin(RESOURCE_SERVERS_SCOPE)
def delete_resource_server(name: str):
    """Forget a resource server (its audit events stay); 204."""
    _platform_only()
    registry.get_resource_server(name)
    read_query(schemas.EmptyQuery)
    hit(WRITE_LIMIT, current_caller().client_id)
    registry.delete_resource_server(name, actor=current_caller().actor)
    return "", 204


# -- reach -----------------------------------------------------------------------------------

@bp.get("/settings/2/api-keys/<key_id>/reach")
@require_admin(MANAGE_SCOPE)
def api_key_reach(key_id: str):
    """The endpoints the key can call, by resource server."""
    account_id = _account()
    read_query(schemas.AccountQuery)
    return endpoints.explain_api_key(key_id, account_id)


@bp.get("/settings/2/oauth-clients/<client_id>/reach")
@require_admin(MANAGE_SCOPE)
def oauth_client_reach(client_id: str):
    """The endpoints the client can call, by resource server."""
    account_id = _account()
    read_query(schemas.AccountQuery)
    return endpoints.explain_client(client_id, account_id)


@bp.post("/settings/2/scopes/narrowest")
@require_admin(MANAGE_SCOPE)
def narrowest_scopes():
    """The narrowest scopes reaching the chosen endpoints (least privilege)."""
    account_id = _account()
    read_query(schemas.AccountQuery)
    body = read_body(schemas.NarrowestRequest)
    return least_privilege.narrowest_for_endpoints(
        [endpoint.model_dump() for endpoint in body.endpoints], kind=body.credentialKind,
        account_id=account_id)
