"""What an API key or an OAuth client can call, endpoint by endpoint, at every registered
resource server.

The guard's check, applied to each route of each manifest: a credential gets in when one of
the scopes it presents is among the route's accepted scopes (any-of; the route's list already
holds the umbrellas its guard resolved), and an App key only where ``apiKeys`` is true.

- An API key presents exactly its scopes.
- A client presents the scopes of its token: all its allowed scopes when it asks for none,
  or any scope they cover (umbrella-aware, as the token endpoint grants) when it narrows. So
  a client reaches a route when its allowed scopes cover one accepted scope; ``defaultToken``
  says whether a token requested without ``scope`` already does. Its JWTs must also carry an
  audience the resource server accepts: the default audience, one registered for the client,
  or the admin API's (for a client holding an admin scope), as ``oauth2.server`` grants.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import current_app

from authserver.accounts import registry as accounts
from authserver.config import admin_audience
from authserver.credentials import api_keys, clients
from authserver.reach.resource_servers import all_resource_servers
from authserver.scopes import ADMIN_SCOPES, Catalogue, current_catalogue, parse_scope
from authserver.web.errors import NotFoundError

API_KEY = "apiKey"
OAUTH_CLIENT = "oauthClient"


def _account_enabled(account_id: str) -> bool:
    return accounts.get_account(account_id).enabled


def client_audiences(client, catalogue: Catalogue) -> set[str]:
    """Every audience the client's tokens can carry (``oauth2.server``'s rule)."""
    config = current_app.config
    audiences = {config["DEFAULT_AUDIENCE"], *(client.audiences or [])}
    allowed = parse_scope(client.scope)
    if any(catalogue.covers(allowed, scope) for scope in ADMIN_SCOPES):
        audiences.add(admin_audience(config))
    return audiences


def _endpoint(route: dict, presentable: list[str], default_token: bool) -> dict:
    return {"method": route["method"], "path": route["path"], "scopes": presentable,
            "defaultToken": default_token}


def key_reach(held: Iterable[str], manifest: dict) -> list[dict]:
    """The routes of ``manifest`` an API key holding ``held`` passes (guard: any-of, App
    keys only where accepted)."""
    held = frozenset(held)
    found = []
    for route in manifest["routes"]:
        presentable = sorted(held.intersection(route["scopes"]))
        if route["apiKeys"] and presentable:
            found.append(_endpoint(route, presentable, True))
    return found


def client_reach(allowed: Iterable[str], manifest: dict, catalogue: Catalogue) -> list[dict]:
    """The routes of ``manifest`` a client with ``allowed`` scopes can get a token for."""
    allowed = list(allowed)
    found = []
    for route in manifest["routes"]:
        presentable = sorted(scope for scope in route["scopes"]
                             if catalogue.covers(allowed, scope))
        if presentable:
            found.append(_endpoint(route, presentable,
                                   not set(allowed).isdisjoint(route["scopes"])))
    return found


def _grouped(reach_of, audiences: set[str] | None) -> list[dict]:
    """One group per registered resource server, by name."""
    groups = []
    for record in all_resource_servers():
        manifest = record.manifest
        accepted = audiences is None or not audiences.isdisjoint(manifest["audiences"])
        groups.append({"name": record.name, "audiences": list(manifest["audiences"]),
                       "audienceAccepted": accepted,
                       "endpoints": reach_of(manifest) if accepted else [],
                       "routeCount": len(manifest["routes"])})
    return groups


def explain_api_key(key_id: str, account_id: str | None = None) -> dict:
    """What the key ``key_id`` can call (NotFoundError for another account's key)."""
    record = api_keys.get_api_key(key_id, account_id=account_id)
    held = parse_scope(record.scope)
    record.account_enabled = _account_enabled(record.account_id)
    credential = {"kind": API_KEY, "id": record.id, "name": record.name, "scopes": held,
                  "active": api_keys.is_active(record)}
    return {"credential": credential,
            "resourceServers": _grouped(lambda manifest: key_reach(held, manifest), None)}


def explain_client(client_id: str, account_id: str | None = None) -> dict:
    """What the client ``client_id`` can call (NotFoundError for another account's client)."""
    client = clients.get_client(client_id, account_id)
    catalogue = current_catalogue()
    allowed = parse_scope(client.scope)
    credential = {"kind": OAUTH_CLIENT, "id": client.client_id, "name": client.name,
                  "scopes": allowed,
                  "active": client.enabled and _account_enabled(client.account_id)}
    return {"credential": credential,
            "resourceServers": _grouped(lambda manifest: client_reach(allowed, manifest,
                                                                      catalogue),
                                        client_audiences(client, catalogue))}


def explain(credential_id: str, account_id: str | None = None) -> dict:
    """An API key's or a client's reach, whichever ``credential_id`` names."""
    if api_keys.KEY_ID_RE.fullmatch(credential_id or ""):
        try:
            return explain_api_key(credential_id, account_id)
        except NotFoundError:
            pass
    return explain_client(credential_id, account_id)
