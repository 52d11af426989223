"""Admin API conventions (issue 17): 201 + Location, PUT and PATCH semantics, DELETE, paging
headers, a 403 that names the missing scopes, and one casing everywhere.

Policies under test (authserver/admin/openapi.py states them):
- ``PUT /settings/2/api-keys/{id}``: present fields change, omitted ones stay, null refused;
- ``PUT /settings/2/oauth-clients/{id}``: the whole editable representation, every member;
- ``PATCH``: RFC 7396 merge patch (``application/merge-patch+json``), null removes a removable
  member, a patch that changes nothing records nothing;
- ``DELETE``: 204, then 404 everywhere, the credential stops working, the audit trail stays;
- lists: ``paging`` in the body, ``X-Total-Count`` and ``Link`` (RFC 8288) headers.
"""

from __future__ import annotations

import re

import pytest
from conftest import OAuthClients, basic_auth
from credential_actions import INACTIVE, introspect
from test_admin_api import (  # noqa: F401 - fixtures
    ADMIN_SCOPE,
    CLIENTS,
    KEYS,
    MANAGE,
    MERGE_PATCH,
    admin,
    audit_events,
    envelope,
    forbidden,
    make_admin,
    validation_errors,
)

from authserver.credentials import api_keys as api_key_service


SMS_API = "https://sms.example.test"


def links(response) -> dict[str, str]:
    """The ``Link`` header as rel -> URL."""
    return {rel: url for url, rel in re.findall(r'<([^>]*)>; rel="([a-z]+)"',
                                                response.headers["Link"])}


# -- 201 + Location --------------------------------------------------------------------------

def test_creates_answer_201_with_a_location_that_names_the_object(admin):
    created = admin.post(KEYS, {"name": "k", "scopeGuids": ["sms:message:send"]})
    assert created.status_code == 201
    assert created.headers["Location"] == f"{KEYS}/{created.get_json()['id']}"
    fetched = admin.get(created.headers["Location"]).get_json()
    assert fetched == {k: v for k, v in created.get_json().items() if k != "apiKeySecret"}

    registered = admin.post(CLIENTS, {"name": "c", "scopes": ["sms:manage"]})
    assert registered.status_code == 201
    body = registered.get_json()
    assert registered.headers["Location"] == f"{CLIENTS}/{body['clientId']}"
    assert admin.get(registered.headers["Location"]).get_json() == {
        k: v for k, v in body.items() if k != "clientSecret"}


# -- PUT on keys: the platform's partial update ----------------------------------------------

def test_key_put_changes_named_fields_and_keeps_omitted_ones(admin):
    key = admin.create_key(scopeGuids=["sms:message:send"], allowedIPs=["10.0.0.0/8"])
    response = admin.put(f"{KEYS}/{key['id']}", {"name": "renamed"})
    assert response.status_code == 200
    updated = response.get_json()
    assert updated["name"] == "renamed"
    for field in ("scopeGuids", "allowedIPs", "validFrom", "validTo", "enabled"):
        assert updated[field] == key[field], field
    # [] is a value, not an omission: no scopes, any address.
    emptied = admin.put(f"{KEYS}/{key['id']}", {"scopeGuids": [], "allowedIPs": []}).get_json()
    assert (emptied["scopeGuids"], emptied["allowedIPs"], emptied["name"]) == ([], [], "renamed")
    assert validation_errors(admin.put(f"{KEYS}/{key['id']}", {"allowedIPs": None})) == {
        "allowedIPs": ["must not be null"]}


def test_a_put_that_changes_nothing_records_nothing(app, admin):
    key = admin.create_key(scopeGuids=["sms:message:send"])
    assert admin.put(f"{KEYS}/{key['id']}", {"name": key["name"]}).status_code == 200
    assert [event.action for event in audit_events(app, key["id"])] == ["create"]


# -- PATCH (RFC 7396) ------------------------------------------------------------------------

def test_key_merge_patch(app, admin):
    key = admin.create_key(scopeGuids=["sms:message:send"], allowedIPs=["10.0.0.0/8"])
    path = f"{KEYS}/{key['id']}"
    patched = admin.patch(path, {"name": "patched", "scopeGuids": ["sms:logs:read"]})
    assert patched.status_code == 200, patched.get_data(as_text=True)
    body = patched.get_json()
    assert (body["name"], body["scopeGuids"], body["allowedIPs"]) == (
        "patched", ["sms:logs:read"], ["10.0.0.0/8"])
    # null removes a removable member: no allowlist = any address.
    assert admin.patch(path, {"allowedIPs": None}).get_json()["allowedIPs"] == []
    # null on a member that cannot be removed is refused, naming it; nothing changes.
    for field in ("name", "scopeGuids", "validTo", "enabled"):
        assert field in validation_errors(admin.patch(path, {field: None}))
    # An empty patch, or one that repeats stored values, changes and records nothing.
    assert admin.patch(path, {}).get_json() == admin.get(path).get_json()
    assert admin.patch(path, {"name": "patched"}).status_code == 200
    assert [event.action for event in audit_events(app, key["id"])] == [
        "create", "update", "update"]
    assert admin.patch(path, {"enabled": False}).get_json()["enabled"] is False
    assert "enabled" in validation_errors(admin.patch(path, {"enabled": True}))


@pytest.mark.parametrize("content_type", ["application/json", "text/plain",
                                          "application/json-patch+json"])
def test_patch_takes_only_merge_patch_documents(admin, content_type):
    key = admin.create_key()
    response = admin.http.patch(f"{KEYS}/{key['id']}", data='{"name": "x"}',
                                content_type=content_type, headers=admin.headers)
    assert (response.status_code, response.get_json()) == (
        415, envelope("UNSUPPORTED_MEDIA_TYPE"))
    assert admin.get(f"{KEYS}/{key['id']}").get_json()["name"] == "key"


@pytest.mark.parametrize("body, field", [
    ({"tokenTtl": "600"}, "tokenTtl"), ({"scopes": None}, "scopes"), ({"name": None}, "name"),
    ({"enabled": None}, "enabled"), ({"authMethod": None}, "authMethod"),
    ({"clientId": "x"}, "clientId"), ({"secret": "x"}, "secret"), ({"audiences": "x"}, "audiences"),
])
def test_client_merge_patch_is_strict(admin, body, field):
    client = admin.post(CLIENTS, {"name": "c", "scopes": ["sms:manage"]}).get_json()
    assert field in validation_errors(admin.patch(f"{CLIENTS}/{client['clientId']}", body))


def test_client_merge_patch_removes_lifetime_and_audiences(make_admin, get_token):
    admin = make_admin(audiences=[SMS_API])  # AU02: it may grant only audiences it has
    client = admin.post(CLIENTS, {"name": "c", "scopes": ["sms:manage"], "tokenTtl": 600,
                                  "audiences": [SMS_API]}).get_json()
    path = f"{CLIENTS}/{client['clientId']}"
    patched = admin.patch(path, {"tokenTtl": None, "audiences": None}).get_json()
    assert (patched["tokenTtl"], patched["audiences"]) == (None, [])
    token = get_token(client["clientId"], client["clientSecret"])
    assert token.get_json()["expires_in"] == 3600  # the server default again
    widened = admin.patch(path, {"scopes": ["sms:manage", MANAGE], "tokenTtl": 120}).get_json()
    assert (widened["scopes"], widened["tokenTtl"]) == (["sms:manage", MANAGE], 120)


def test_client_auth_method_can_change(admin, client):
    from credential_actions import AssertionSigner

    created = admin.post(CLIENTS, {"name": "c", "scopes": ["sms:manage"]}).get_json()
    path = f"{CLIENTS}/{created['clientId']}"
    post = admin.patch(path, {"authMethod": "client_secret_post"}).get_json()
    assert (post["authMethod"], post["hasSecret"]) == ("client_secret_post", True)
    form = {"grant_type": "client_credentials", "client_id": created["clientId"],
            "client_secret": created["clientSecret"]}
    assert client.post("/oauth2/token", data=form).status_code == 200

    # To private_key_jwt: a JWK Set is required, and the secret is dropped.
    assert "jwks" in validation_errors(admin.patch(path, {"authMethod": "private_key_jwt"}))
    signer = AssertionSigner()
    switched = admin.patch(path, {"authMethod": "private_key_jwt", "jwks": signer.jwks})
    assert switched.status_code == 200, switched.get_data(as_text=True)
    assert (switched.get_json()["hasSecret"], switched.get_json()["jwks"]) == (False, signer.jwks)
    assert client.post("/oauth2/token", data=form).status_code == 401

    # Back to a secret method: no secret until rotate-secret issues one (shown once).
    back = admin.patch(path, {"authMethod": "client_secret_basic"}).get_json()
    assert (back["hasSecret"], back["jwks"]) == (False, None)
    assert "jwks" in validation_errors(admin.patch(path, {"jwks": signer.jwks}))
    rotated = admin.post(f"{path}/rotate-secret").get_json()
    assert rotated["hasSecret"] is True
    token = client.post("/oauth2/token", data={"grant_type": "client_credentials"},
                        headers=basic_auth(created["clientId"], rotated["clientSecret"]))
    assert token.status_code == 200


def test_client_put_replaces_the_whole_representation(app, make_admin):
    admin = make_admin(audiences=[SMS_API])
    created = admin.post(CLIENTS, {"name": "c", "scopes": ["sms:manage"], "tokenTtl": 600,
                                   "audiences": [SMS_API]}).get_json()
    path = f"{CLIENTS}/{created['clientId']}"
    whole = {"name": "replaced", "scopes": ["sms:logs:read"], "audiences": [],
             "tokenTtl": None, "authMethod": "client_secret_basic", "enabled": True,
             "dpopBoundAccessTokens": False}
    for missing in whole:
        partial = {k: v for k, v in whole.items() if k != missing}
        assert validation_errors(admin.put(path, partial)) == {missing: ["is required"]}
    assert admin.get(path).get_json()["name"] == "c"  # nothing changed on the way
    replaced = admin.put(path, whole)
    assert replaced.status_code == 200
    body = replaced.get_json()
    assert {k: body[k] for k in whole} == whole
    assert admin.put(path, whole).status_code == 200  # idempotent: no second event
    assert [e.action for e in audit_events(app, created["clientId"])] == ["create", "update"]


# -- DELETE ----------------------------------------------------------------------------------

def test_delete_key(app, admin, client):
    key = admin.create_key(scopeGuids=["sms:message:send"])
    path = f"{KEYS}/{key['id']}"
    rs_id, rs_secret = OAuthClients(app).create(scope="tokens:introspect")
    before = introspect(client, key["apiKeySecret"], basic_auth(rs_id, rs_secret)).get_json()
    assert before["active"] is True
    deleted = admin.delete(path)
    assert (deleted.status_code, deleted.get_data()) == (204, b"")
    assert admin.get(path).status_code == 404
    assert admin.delete(path).status_code == 404
    assert admin.patch(path, {"name": "x"}).status_code == 404
    assert introspect(client, key["apiKeySecret"],
                      basic_auth(rs_id, rs_secret)).get_json() == INACTIVE
    events = audit_events(app, key["id"])
    assert [(e.action, e.actor) for e in events] == [("create", admin.actor),
                                                     ("delete", admin.actor)]
    assert events[1].changes["name"] == {"before": "key", "after": None}
    trail = admin.get(f"/audit/1/logs?objectId={key['id']}").get_json()["logs"]
    assert [e["action"] for e in trail] == ["delete", "create"]
    with app.app_context():
        assert api_key_service.list_api_keys()[1] == 0


def test_delete_client(app, admin, get_token):
    created = admin.post(CLIENTS, {"name": "c", "scopes": ["sms:manage"]}).get_json()
    path = f"{CLIENTS}/{created['clientId']}"
    assert get_token(created["clientId"], created["clientSecret"]).status_code == 200
    assert admin.delete(path).status_code == 204
    assert admin.get(path).status_code == 404
    refused = get_token(created["clientId"], created["clientSecret"])
    assert (refused.status_code, refused.get_json()["error"]) == (401, "invalid_client")
    assert [e.action for e in audit_events(app, created["clientId"])] == ["create", "delete"]


def test_a_deleted_admin_client_loses_the_admin_api_at_once(make_admin):
    first, second = make_admin(), make_admin()
    assert first.delete(f"{CLIENTS}/{second.client_id}").status_code == 204
    assert second.get(KEYS).status_code == 401


# -- 403 names the missing scopes ------------------------------------------------------------

def test_403_names_what_is_missing(make_admin):
    narrow = make_admin(f"{MANAGE} sms:message:send")
    response = narrow.post(KEYS, {"name": "k", "scopeGuids": ["sms:message:send",
                                                              "sms:logs:read", "message:send"]})
    assert (response.status_code, response.get_json()) == (
        403, forbidden(["sms:logs:read", "message:send"]))
    reader = make_admin("audit-logs:read")
    response = reader.get(KEYS)
    assert response.get_json() == forbidden([MANAGE], any_of=True)
    assert 'scope="account-management:manage"' in response.headers["WWW-Authenticate"]


def test_403_on_an_object_names_only_scopes_of_the_callers_account(make_admin):
    # Object scopes beyond the caller are named: the object is in the caller's own account.
    broad, narrow = make_admin(f"{MANAGE} message:send sms:manage"), make_admin(ADMIN_SCOPE)
    key = broad.create_key(scopeGuids=["message:send", "sms:logs:read"])
    response = narrow.delete(f"{KEYS}/{key['id']}")
    assert response.get_json() == forbidden(["message:send"])


# -- paging ----------------------------------------------------------------------------------

def test_lists_carry_the_total_and_link_headers(admin, clock):
    for n in range(5):
        admin.create_key(name=f"key {n}")
        clock.advance(1)
    first = admin.get(f"{KEYS}?size=2&name=key%201")
    assert first.headers["X-Total-Count"] == "1"
    page = admin.get(f"{KEYS}?size=2")
    assert page.headers["X-Total-Count"] == "5"
    assert page.get_json()["paging"]["totalCount"] == 5
    assert links(page) == {"first": f"{KEYS}?size=2&page=0", "next": f"{KEYS}?size=2&page=1",
                           "last": f"{KEYS}?size=2&page=2"}
    middle = admin.get(links(page)["next"])
    assert [k["name"] for k in middle.get_json()["apiKeys"]] == ["key 2", "key 3"]
    assert set(links(middle)) == {"first", "prev", "next", "last"}
    last = admin.get(links(page)["last"])
    assert set(links(last)) == {"first", "prev", "last"}
    assert [k["name"] for k in last.get_json()["apiKeys"]] == ["key 4"]
    logs = admin.get("/audit/1/logs?size=3")  # five keys and the caller itself were created
    assert logs.headers["X-Total-Count"] == "6" and "next" in links(logs)


def test_lists_search_and_order(admin, clock):
    for name in ("Billing", "alpha", "SMS sender"):
        admin.create_key(name=name)
        clock.advance(1)
    by_name = admin.get(f"{KEYS}?orderBy=name").get_json()
    assert [k["name"] for k in by_name["apiKeys"]] == ["Billing", "SMS sender", "alpha"]
    assert by_name["paging"]["orderBy"] == "name"
    newest = admin.get(f"{KEYS}?orderDirection=DESC").get_json()["apiKeys"]
    assert newest[0]["name"] == "SMS sender"
    found = admin.get(f"{KEYS}?search=sEnD").get_json()["apiKeys"]
    assert [k["name"] for k in found] == ["SMS sender"]
    assert admin.get(f"{KEYS}?search=%25").get_json()["apiKeys"] == []  # % is literal
    assert "orderBy" in validation_errors(admin.get(f"{KEYS}?orderBy=secretHash"))
    client = admin.post(CLIENTS, {"name": "Zed", "scopes": ["sms:manage"]}).get_json()
    found = admin.get(f"{CLIENTS}?search={client['clientId'][:8]}").get_json()["oauthClients"]
    assert [c["clientId"] for c in found] == [client["clientId"]]


# -- one casing ------------------------------------------------------------------------------

CAMEL = re.compile(r"^[a-z][A-Za-z0-9]*$")


def _keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def test_every_admin_answer_is_camel_case(admin):
    key = admin.create_key()
    client = admin.post(CLIENTS, {"name": "c", "scopes": ["sms:manage"]}).get_json()
    admin.patch(f"{CLIENTS}/{client['clientId']}", {"tokenTtl": 120})
    admin.post(f"{CLIENTS}/{client['clientId']}/rotate-secret", {"gracePeriod": 5})
    admin.delete(f"{KEYS}/{key['id']}")
    bodies = [admin.get(path).get_json() for path in (
        KEYS, CLIENTS, "/settings/2/scopes", "/audit/1/logs?size=100")]
    names = set().union(*(_keys(body) for body in bodies)) - {"before", "after"}
    # Audit change names are field names too; scope names are values, never keys.
    assert all(CAMEL.match(name) for name in names), sorted(n for n in names
                                                             if not CAMEL.match(n))
