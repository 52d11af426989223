"""What a credential can reach (issue 17, item 4): registering resource servers' route
manifests through the admin API, explaining keys and clients against them, and the narrowest
scopes for chosen endpoints. On SQLite and PostgreSQL (the ``app`` fixture)."""

from __future__ import annotations

import copy
import json

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from test_admin_api import Caller, forbidden, make_admin, validation_errors  # noqa: F401

from authserver.credentials import api_keys as api_key_service
from authserver.storage.db import db
from authserver.storage.models import AuditEvent, ResourceServer
from resource_demo.demo.cli import main as demo_cli
from resource_demo.guard.principal import API_KEY, Principal, check_scopes
from resource_demo.guard.errors import Forbidden

SERVERS = "/settings/2/resource-servers"
NARROWEST = "/settings/2/scopes/narrowest"
MANAGE = "account-management:manage"
REGISTRAR = "resource-servers:manage"
ISSUER = "https://auth.example.test"
SMS_FOR_MESSAGE_SEND = {("POST", "/sms/3/messages"), ("POST", "/sms/2/text/advanced"),
                        ("GET", "/sms/3/reports")}


def demo_manifest(issuer: str = ISSUER) -> dict:
    """What ``resource-demo routes --json`` prints for the demo API."""
    result = CliRunner().invoke(demo_cli, ["routes", "--json", "--issuer", issuer])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture
def registrar(make_admin):
    """A platform caller that registers resource servers (and manages keys)."""
    return make_admin(f"{REGISTRAR} {MANAGE} message:send sms:manage people:manage "
                      "forms:manage inbound-message:read email:manage")


@pytest.fixture
def demo(registrar):
    """The demo API registered as ``demo``."""
    response = registrar.put(f"{SERVERS}/demo", demo_manifest())
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def stored(app) -> tuple[int, int]:
    """(resource servers, their audit events)."""
    with app.app_context():
        servers = db.session.scalar(sa.select(sa.func.count()).select_from(ResourceServer))
        events = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent).where(
            AuditEvent.object_type == "resource-server"))
        return servers, events


# -- registration ----------------------------------------------------------------------------

def test_register_replace_list_and_delete_are_audited(app, registrar):
    manifest = demo_manifest()
    created = registrar.put(f"{SERVERS}/demo", manifest)
    assert created.status_code == 201 and created.headers["Location"] == f"{SERVERS}/demo"
    body = created.get_json()
    assert body["name"] == "demo" and body["manifest"] == manifest  # the guard's order kept
    assert registrar.get(created.headers["Location"]).get_json() == body

    again = registrar.put(f"{SERVERS}/demo", manifest)  # the same manifest: nothing written
    assert again.status_code == 200 and again.get_json() == body
    assert stored(app) == (1, 1)

    shuffled = copy.deepcopy(manifest)
    shuffled["routes"].reverse()
    for route in shuffled["routes"]:
        route["scopes"].reverse()
    assert registrar.put(f"{SERVERS}/demo", shuffled).get_json() == body  # same routes
    assert stored(app) == (1, 1)

    changed = copy.deepcopy(manifest)
    changed["routes"] = changed["routes"][:3]
    replaced = registrar.put(f"{SERVERS}/demo", changed)
    assert replaced.status_code == 200 and len(replaced.get_json()["manifest"]["routes"]) == 3
    registrar.put(f"{SERVERS}/other", manifest)

    listing = registrar.get(f"{SERVERS}?size=1")
    assert listing.status_code == 200 and listing.headers["X-Total-Count"] == "2"
    (row,) = listing.get_json()["resourceServers"]
    assert row["name"] == "demo" and row["routeCount"] == 3
    assert row["audiences"] == [ISSUER + "/api"]
    assert 'rel="next"' in listing.headers["Link"]

    assert registrar.delete(f"{SERVERS}/demo").status_code == 204
    assert registrar.get(f"{SERVERS}/demo").status_code == 404
    assert registrar.delete(f"{SERVERS}/demo").status_code == 404
    with app.app_context():
        events = db.session.scalars(sa.select(AuditEvent).where(
            AuditEvent.object_id == "demo").order_by(AuditEvent.id)).all()
        assert [event.action for event in events] == ["create", "update", "delete"]
        assert {event.actor for event in events} == {registrar.actor}
        assert events[1].changes["routeCount"] == {"before": 13, "after": 3}
        assert set(events[0].changes) == {"audiences", "routeCount", "manifestSha256"}


def test_only_the_platform_registers(app, make_admin, tenants):
    manager = make_admin(f"{MANAGE} sms:manage")
    response = manager.put(f"{SERVERS}/demo", demo_manifest())
    assert response.status_code == 403
    assert response.get_json() == forbidden([REGISTRAR], any_of=True)
    customer = make_admin(MANAGE, account_id=tenants.create())
    assert customer.put(f"{SERVERS}/demo", demo_manifest()).status_code == 403
    assert customer.delete(f"{SERVERS}/demo").status_code == 403
    assert stored(app) == (0, 0)
    # resource-servers:manage is granted in the platform account only, like accounts:manage
    from authserver.credentials import clients as client_service
    from authserver.web.errors import ValidationError

    with app.app_context(), pytest.raises(ValidationError) as refused:
        client_service.create_client(name="x", scope=REGISTRAR, actor="test",
                                     account_id=tenants.create("other"))
    assert "platform account" in str(refused.value)


def test_reading_needs_either_scope(demo, make_admin, tenants):
    customer = make_admin(MANAGE, account_id=tenants.create())
    assert customer.get(f"{SERVERS}/demo").status_code == 200
    assert customer.get(SERVERS).get_json()["paging"]["totalCount"] == 1
    assert make_admin("audit-logs:read").get(SERVERS).status_code == 403


def _route(**changes) -> dict:
    route = {"method": "GET", "path": "/sms/3/logs", "scopes": ["sms:logs:read"],
             "apiKeys": True}
    route.update(changes)
    return route


def _manifest(*routes, **changes) -> dict:
    manifest = {"version": 1, "audience": ISSUER + "/api", "audiences": [ISSUER + "/api"],
                "routes": list(routes) or [_route()]}
    manifest.update(changes)
    return manifest


HOSTILE = {
    "not an object": [1, 2],
    "version 2": _manifest(version=2),
    "version as text": _manifest(version="1"),
    "unknown member": _manifest(extra=True),
    "no routes member": {k: v for k, v in _manifest().items() if k != "routes"},
    "HEAD": _manifest(_route(method="HEAD")),
    "lowercase method": _manifest(_route(method="get")),
    "relative path": _manifest(_route(path="sms/3/logs")),
    "path with a space": _manifest(_route(path="/sms/3 logs")),
    "path with a newline": _manifest(_route(path="/sms/\n")),
    "path too long": _manifest(_route(path="/" + "a" * 600)),
    "bad parameter": _manifest(_route(path="/sms/{1x}")),
    "no scopes": _manifest(_route(scopes=[])),
    "unknown scope": _manifest(_route(scopes=["sms:logs:read", "nope:read"])),
    "scope not a string": _manifest(_route(scopes=[7])),
    "scope repeated": _manifest(_route(scopes=["sms:logs:read", "sms:logs:read"])),
    "route repeated": _manifest(_route(), _route(scopes=["sms:manage"])),
    "apiKeys as text": _manifest(_route(apiKeys="yes")),
    "route with extra member": _manifest(_route(why="not")),
    "audience not the first": _manifest(audience="https://else.example/api"),
    "audience not a URI": _manifest(audience="api", audiences=["api"]),
    "no audiences": _manifest(audience=None, audiences=[]),
    "too many scopes": _manifest(_route(scopes=["sms:logs:read"] * 51)),
    "deep nesting": _manifest(_route(scopes=[[[[["x"]]]]])),
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_manifests_are_400_and_write_nothing(app, registrar, body):
    response = registrar.put(f"{SERVERS}/demo", body)
    errors = validation_errors(response)
    assert errors and all(isinstance(messages, list) for messages in errors.values())
    assert stored(app) == (0, 0)


def test_hostile_manifest_keeps_the_stored_one(app, registrar, demo):
    response = registrar.put(f"{SERVERS}/demo", _manifest(_route(scopes=["nope:read"])))
    assert validation_errors(response) == {"routes[0].scopes": ["unknown scope: nope:read"]}
    assert registrar.get(f"{SERVERS}/demo").get_json() == demo
    assert stored(app) == (1, 1)


@pytest.mark.parametrize("raw, status", [
    (b'{"version": 1, "version": 1}', 400), (b'{"version": NaN}', 400), (b"[", 400),
    (b"x" * 70_000, 413)])
def test_bodies_that_are_not_one_json_object(app, registrar, raw, status):
    response = registrar.http.put(f"{SERVERS}/demo", data=raw, content_type="application/json",
                                  headers=registrar.headers)
    assert response.status_code == status
    assert stored(app) == (0, 0)


@pytest.mark.parametrize("name", ["Demo", "-demo", "demo-", "a" * 65, "de mo", "dé"])
def test_bad_names(app, registrar, name):
    response = registrar.put(f"{SERVERS}/{name}", demo_manifest())
    assert "name" in validation_errors(response)
    assert registrar.get(f"{SERVERS}/{name}").status_code == 404
    assert stored(app) == (0, 0)


# -- reach -----------------------------------------------------------------------------------

def reach_of(caller: Caller, path: str) -> dict:
    response = caller.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def endpoints_of(answer: dict, name: str = "demo") -> dict:
    (group,) = [group for group in answer["resourceServers"] if group["name"] == name]
    return {(e["method"], e["path"]): e for e in group["endpoints"]}


def test_key_reach_is_the_guards_check(app, registrar, demo):
    """For keys of several scope sets, the listed endpoints are exactly the manifest routes
    the guard's own ``check_scopes`` lets an App key through."""
    routes = demo["manifest"]["routes"]
    for scopes in (["message:send"], ["sms:manage"], [MANAGE], ["sms:logs:read", "people:read"],
                   ["inbound-message:read", "forms:read", "email:manage"]):
        key = registrar.create_key(scopeGuids=scopes)
        listed = endpoints_of(reach_of(registrar, f"/settings/2/api-keys/{key['id']}/reach"))
        principal = Principal(subject="k", kind=API_KEY, client_id="k",
                              scopes=frozenset(scopes))
        passing = set()
        for route in routes:
            try:
                check_scopes(principal, route["scopes"], realm="api",
                             allow_api_keys=route["apiKeys"])
                passing.add((route["method"], route["path"]))
            except Forbidden:
                pass
        assert set(listed) == passing, scopes
        for endpoint in listed.values():
            assert endpoint["defaultToken"] is True
            assert set(endpoint["scopes"]) <= set(scopes)


def test_key_with_message_send_reaches_the_sms_endpoints(app, registrar, demo):
    key = registrar.create_key(scopeGuids=["message:send"])
    answer = reach_of(registrar, f"/settings/2/api-keys/{key['id']}/reach")
    assert answer["credential"] == {"kind": "apiKey", "id": key["id"], "name": "key",
                                    "scopes": ["message:send"], "active": True}
    listed = endpoints_of(answer)
    assert SMS_FOR_MESSAGE_SEND <= set(listed)
    assert ("GET", "/sms/1/bulks") not in listed  # lists sms:message:send, not message:send
    assert ("GET", "/sms/3/logs") not in listed


def test_account_endpoint_refuses_keys_but_not_clients(app, registrar, demo, oauth_clients):
    key = registrar.create_key(scopeGuids=[MANAGE])
    assert ("GET", "/account/1/balance") not in endpoints_of(
        reach_of(registrar, f"/settings/2/api-keys/{key['id']}/reach"))
    client_id, _ = oauth_clients.create(scope=MANAGE)
    assert ("GET", "/account/1/balance") in endpoints_of(
        reach_of(registrar, f"/settings/2/oauth-clients/{client_id}/reach"))


def test_client_reach_counts_narrowed_tokens(app, registrar, demo, oauth_clients, get_token):
    client_id, secret = oauth_clients.create(scope="message:send")
    listed = endpoints_of(reach_of(registrar, f"/settings/2/oauth-clients/{client_id}/reach"))
    bulks = listed[("GET", "/sms/1/bulks")]
    assert bulks == {"method": "GET", "path": "/sms/1/bulks", "scopes": ["sms:message:send"],
                     "defaultToken": False}
    assert listed[("POST", "/sms/3/messages")]["defaultToken"] is True
    # and the token endpoint does grant the narrower scope it names
    answer = get_token(client_id, secret, scope="sms:message:send")
    assert answer.status_code == 200 and answer.get_json()["scope"] == "sms:message:send"


def test_client_reach_needs_an_audience_the_server_accepts(app, registrar, oauth_clients):
    other = "https://sms.example.test/api"
    registrar.put(f"{SERVERS}/elsewhere", _manifest(audience=other, audiences=[other]))
    plain, _ = oauth_clients.create(scope="sms:logs:read")
    answer = reach_of(registrar, f"/settings/2/oauth-clients/{plain}/reach")
    (group,) = answer["resourceServers"]
    assert group["audienceAccepted"] is False and group["endpoints"] == []
    registered, _ = oauth_clients.create(scope="sms:logs:read", audiences=[other])
    (group,) = reach_of(registrar,
                        f"/settings/2/oauth-clients/{registered}/reach")["resourceServers"]
    assert group["audienceAccepted"] is True and len(group["endpoints"]) == 1
    key = registrar.create_key(scopeGuids=["sms:logs:read"])  # keys have no audience
    (group,) = reach_of(registrar, f"/settings/2/api-keys/{key['id']}/reach")["resourceServers"]
    assert group["audienceAccepted"] is True and len(group["endpoints"]) == 1


def test_reach_is_account_partitioned(app, registrar, demo, make_admin, tenants, oauth_clients):
    customer_account = tenants.create()
    customer = make_admin(f"{MANAGE} sms:manage", account_id=customer_account)
    theirs = registrar.create_key(scopeGuids=["sms:manage"])
    client_id, _ = oauth_clients.create(scope="sms:manage")
    for path in (f"/settings/2/api-keys/{theirs['id']}/reach",
                 f"/settings/2/oauth-clients/{client_id}/reach",
                 "/settings/2/api-keys/0123456789ABCDEF0123456789ABCDEF/reach",
                 "/settings/2/oauth-clients/nope/reach"):
        assert customer.get(path).status_code == 404, path
    own = customer.create_key(scopeGuids=["sms:manage"])
    assert endpoints_of(reach_of(customer, f"/settings/2/api-keys/{own['id']}/reach"))
    # the platform names the customer's account
    assert registrar.get(f"/settings/2/api-keys/{own['id']}/reach").status_code == 404
    assert reach_of(registrar, f"/settings/2/api-keys/{own['id']}/reach"
                    f"?accountId={customer_account}")["credential"]["id"] == own["id"]


def test_inactive_key_is_said_so(app, registrar, demo):
    key = registrar.create_key(scopeGuids=["message:send"])
    registrar.put(f"/settings/2/api-keys/{key['id']}", {"enabled": False})
    answer = reach_of(registrar, f"/settings/2/api-keys/{key['id']}/reach")
    assert answer["credential"]["active"] is False
    assert SMS_FOR_MESSAGE_SEND <= set(endpoints_of(answer))


def test_reach_without_resource_servers(app, registrar):
    key = registrar.create_key(scopeGuids=["message:send"])
    assert reach_of(registrar, f"/settings/2/api-keys/{key['id']}/reach")[
        "resourceServers"] == []


# -- narrowest scopes ------------------------------------------------------------------------

def narrowest(caller: Caller, endpoints, kind: str | None = None, query: str = ""):
    body = {"endpoints": [{"resourceServer": "demo", "method": method, "path": path}
                          for method, path in endpoints]}
    if kind:
        body["credentialKind"] = kind
    return caller.post(NARROWEST + query, body)


@pytest.mark.parametrize("chosen, scopes", [
    ([("POST", "/sms/3/messages")], ["sms:message:send"]),
    ([("POST", "/sms/3/messages"), ("GET", "/sms/1/bulks")], ["sms:message:send"]),
    ([("POST", "/sms/3/messages"), ("POST", "/whatsapp/1/message/text")],
     ["sms:message:send", "whatsapp:message:send"]),
    ([("POST", "/sms/3/messages"), ("GET", "/sms/3/logs")], ["sms:logs:read",
                                                             "sms:message:send"]),
    ([("PUT", "/sms/1/bulks/status"), ("GET", "/sms/3/logs")], ["sms:manage"]),
    ([("GET", "/forms/1/forms"), ("GET", "/people/2/persons")], ["forms:read", "people:read"]),
])
def test_narrowest_scopes_for_demo_endpoints(registrar, demo, chosen, scopes):
    response = narrowest(registrar, chosen)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"scopes": scopes}


def test_narrowest_refusals(registrar, demo, make_admin, tenants):
    keys_refused = narrowest(registrar, [("GET", "/account/1/balance")], "apiKey")
    assert validation_errors(keys_refused) == {
        "endpoints[0]": ["this endpoint refuses API keys"]}
    assert narrowest(registrar, [("GET", "/account/1/balance")]).get_json() == {
        "scopes": [MANAGE]}
    unknown = narrowest(registrar, [("GET", "/sms/3/logs"), ("GET", "/nope")])
    assert validation_errors(unknown) == {"endpoints[1]": ["no such endpoint is registered"]}
    assert "endpoints" in validation_errors(registrar.post(NARROWEST, {"endpoints": []}))
    assert "credentialKind" in validation_errors(
        narrowest(registrar, [("GET", "/sms/3/logs")], "robot"))
    assert make_admin("audit-logs:read").post(NARROWEST, {"endpoints": []}).status_code == 403


def test_narrowest_leaves_out_platform_only_scopes_for_customers(app, registrar, make_admin,
                                                                 tenants):
    registrar.put(f"{SERVERS}/ops", _manifest(
        _route(path="/ops", scopes=["accounts:manage"]),
        _route(path="/mixed", scopes=["accounts:manage", "sms:logs:read"])))
    body = {"endpoints": [{"resourceServer": "ops", "method": "GET", "path": "/mixed"}]}
    assert registrar.post(NARROWEST, body).get_json() == {"scopes": ["sms:logs:read"]}
    customer = make_admin(MANAGE, account_id=tenants.create())
    assert customer.post(NARROWEST, body).get_json() == {"scopes": ["sms:logs:read"]}
    body["endpoints"][0]["path"] = "/ops"
    assert registrar.post(NARROWEST, body).get_json() == {"scopes": ["accounts:manage"]}
    assert validation_errors(customer.post(NARROWEST, body)) == {
        "endpoints[0]": ["only platform-account credentials can reach this endpoint"]}


def test_narrowest_scopes_create_a_key_that_passes(app, registrar, demo):
    chosen = [("POST", "/sms/3/messages"), ("GET", "/sms/3/logs"),
              ("GET", "/people/2/persons")]
    scopes = narrowest(registrar, chosen, "apiKey").get_json()["scopes"]
    key = registrar.create_key(scopeGuids=scopes)
    listed = endpoints_of(reach_of(registrar, f"/settings/2/api-keys/{key['id']}/reach"))
    assert set(chosen) <= set(listed)


def test_key_scopes_are_read_fresh(app, registrar, demo):
    key = registrar.create_key(scopeGuids=["sms:logs:read"])
    with app.app_context():
        api_key_service.update_api_key(key["id"], actor="test",
                                       changes={"scopeGuids": ["people:read"]},
                                       held_scopes=None)
    listed = endpoints_of(reach_of(registrar, f"/settings/2/api-keys/{key['id']}/reach"))
    assert set(listed) == {("GET", "/people/2/persons")}
