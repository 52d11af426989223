"""Web UI: what a credential can reach (issue 17, item 4).

The key and client pages list the endpoints the credential can call (``reach.endpoints``).
The create forms offer the reverse without JavaScript: "pick endpoints" is a page with a GET
form of checkboxes whose action is the create form itself; the create form then ticks the
narrowest scopes that reach the picked endpoints (``reach.least_privilege``).
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import render_template, request, url_for

from authserver.admin.ui.blueprint import account_id, bp
from authserver.reach import endpoints, least_privilege
from authserver.reach.resource_servers import all_resource_servers
from authserver.web.errors import ValidationError

#: The query parameter of picked endpoints: "SERVER METHOD PATH" (no part holds a space).
PICKED = "endpoint"
CREATE_VIEWS = {endpoints.API_KEY: "admin_ui.create_api_key",
                endpoints.OAUTH_CLIENT: "admin_ui.create_client"}
LIST_VIEWS = {endpoints.API_KEY: "admin_ui.api_keys", endpoints.OAUTH_CLIENT: "admin_ui.clients"}


def endpoint_value(server: str, route: dict) -> str:
    """A checkbox value naming one endpoint."""
    return f"{server} {route['method']} {route['path']}"


def picked_endpoints() -> list[dict]:
    """The endpoints named by the request's ``endpoint`` parameters (malformed ones are kept
    as unknown endpoints, so the service names them)."""
    found = []
    for value in request.args.getlist(PICKED)[:least_privilege.MAX_ENDPOINTS + 1]:
        server, _, rest = value.partition(" ")
        method, _, path = rest.partition(" ")
        found.append({"resourceServer": server, "method": method, "path": path})
    return found


def picked_scopes(kind: str) -> tuple[list[str], int] | None:
    """The narrowest scopes for the picked endpoints and how many were picked (None when
    none were); ValidationError names the endpoints that cannot be reached."""
    picked = picked_endpoints()
    if not picked:
        return None
    answer = least_privilege.narrowest_for_endpoints(picked, kind=kind,
                                                     account_id=account_id())
    return answer["scopes"], len(picked)


def pick_page(kind: str, errors: dict | None = None):
    """The "pick endpoints" page of a create form (400 with the errors of a bad pick)."""
    chosen = set(request.args.getlist(PICKED))
    servers = [{"name": record.name, "routes": [
        dict(route, value=endpoint_value(record.name, route),
             usable=route["apiKeys"] or kind != endpoints.API_KEY)
        for route in record.manifest["routes"]]} for record in all_resource_servers()]
    messages = [f"{label}: {message}" for label, found in (errors or {}).items()
                for message in found]
    body = render_template("reach/pick.html", kind=kind, servers=servers, chosen=chosen,
                           errors=messages, action=url_for(CREATE_VIEWS[kind]),
                           back=url_for(LIST_VIEWS[kind]))
    return body, 400 if errors else 200


def form_scopes(kind: str):
    """For a create form's GET: (scopes to tick, notice) from picked endpoints, or the pick
    page to answer instead when the pick cannot be reached."""
    try:
        found = picked_scopes(kind)
    except ValidationError as exc:
        return None, None, pick_page(kind, exc.errors)
    if found is None:
        return [], None, None
    scopes, count = found
    # url_for's own first parameter is called "endpoint": the query is joined here.
    again = url_for(request.endpoint.replace("create_", "pick_") + "_endpoints") + "?" + \
        urlencode([(PICKED, value) for value in request.args.getlist(PICKED)])
    return scopes, {"count": count, "scopes": scopes, "again": again}, None


@bp.get("/api-keys/new/endpoints")
def pick_api_key_endpoints():
    """Pick the endpoints a new API key must call."""
    return pick_page(endpoints.API_KEY)


@bp.get("/clients/new/endpoints")
def pick_client_endpoints():
    """Pick the endpoints a new OAuth client must call."""
    return pick_page(endpoints.OAUTH_CLIENT)


def key_reach(key_id: str) -> dict:
    """What the key can call, for its page."""
    return endpoints.explain_api_key(key_id, account_id())


def client_reach(client_id: str) -> dict:
    """What the client can call, for its page."""
    return endpoints.explain_client(client_id, account_id())
