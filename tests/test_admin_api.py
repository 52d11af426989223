"""The operator admin REST API (issue 5; threat model AD01–AD07, AD10, RL5) over HTTP.

Policies under test (authserver/openapi.py states them for operators):
- callers: bearer JWTs of ours holding account-management:manage (audit: audit-logs:read too);
  App keys 403; missing/invalid/revoked/wrong-audience tokens 401;
- a caller never grants more than it holds: a scope it sets, or a scope of an object it
  changes or whose secret it rotates, that its own scopes do not cover is 403 FORBIDDEN;
- strict bodies: read-only/unknown fields and wrong JSON types are 400 naming the field;
- validTo at most MAX_API_KEY_VALIDITY_DAYS (730) from now; /0 ranges refused;
- unknown and malformed ids are the same 404; paging abuse is 400 or an empty page.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
import sqlalchemy as sa
from conftest import OAuthClients, basic_auth
from credential_actions import LEAK_MARKERS, iso, revoke
from demo_support import serve

from authserver.credentials import api_keys as api_key_service
from authserver.storage.db import db
from authserver.storage.models import ApiKey, AuditEvent, Client
from resource_demo.demo.app import create_app as create_demo_app
from resource_demo.guard.flask import ResourceGuard

KEYS = "/settings/2/api-keys"
CLIENTS = "/settings/2/oauth-clients"
AUDIT = "/audit/1/logs"
ACCOUNTS = "/settings/2/accounts"
MANAGE = "account-management:manage"
ADMIN_SCOPE = f"{MANAGE} sms:manage"
UNKNOWN_KEY_ID = "0123456789ABCDEF0123456789ABCDEF"
UNKNOWN_CLIENT_ID = "0123456789abcdef0123456789abcdef"
KEY_FIELDS = {"id", "accountId", "name", "scopeGuids", "validFrom", "validTo", "allowedIPs", "enabled",
              "createdAt", "lastUsedAt"}
CLIENT_FIELDS = {"clientId", "accountId", "name", "scopes", "audiences", "tokenTtl", "authMethod",
                 "jwks", "dpopBoundAccessTokens", "enabled", "hasSecret",
                 "previousSecretExpiresAt", "createdAt", "updatedAt"}
MERGE_PATCH = "application/merge-patch+json"


def envelope(message_id: str) -> dict:
    texts = {"BAD_REQUEST": "Bad request", "UNAUTHORIZED": "Invalid login details",
             "FORBIDDEN": "Forbidden", "NOT_FOUND": "Not found",
             "TOO_MANY_REQUESTS": "Too many requests",
             "PAYLOAD_TOO_LARGE": "Request body too large",
             "METHOD_NOT_ALLOWED": "Method not allowed",
             "UNSUPPORTED_MEDIA_TYPE": "Unsupported media type"}
    return {"requestError": {"serviceException": {"messageId": message_id,
                                                  "text": texts[message_id]}}}


def forbidden(missing: list[str], any_of: bool = False) -> dict:
    """The 403 envelope naming the scopes the caller lacks (any one of them, or each)."""
    body = envelope("FORBIDDEN")
    description = ("This operation needs one of these scopes: " if any_of else
                   "The caller's own scopes do not cover every one of these scopes: ")
    body["requestError"]["serviceException"].update(
        missingScopes=missing, description=description + ", ".join(missing))
    return body


def validation_errors(response) -> dict:
    """The 400 envelope's validationErrors (asserting the envelope's shape)."""
    assert response.status_code == 400, (response.status_code, response.get_data(as_text=True))
    exception = response.get_json()["requestError"]["serviceException"]
    assert (exception["messageId"], exception["text"]) == ("BAD_REQUEST", "Bad request")
    return exception["validationErrors"]


class Caller:
    """An OAuth client with a token, calling the admin API through Flask's test client."""

    def __init__(self, http, client_id: str, secret: str, token: str):
        self.http, self.client_id, self.secret, self.token = http, client_id, secret, token
        self.headers = {"Authorization": f"Bearer {token}"}
        self.actor = f"client:{client_id}"

    def get(self, path, **kwargs):
        return self.http.get(path, headers={**self.headers, **kwargs.pop("headers", {})},
                             **kwargs)

    def post(self, path, body=None, **kwargs):
        return self.http.post(path, json=body, headers={**self.headers,
                                                        **kwargs.pop("headers", {})}, **kwargs)

    def put(self, path, body=None, **kwargs):
        return self.http.put(path, json=body, headers={**self.headers,
                                                       **kwargs.pop("headers", {})}, **kwargs)

    def patch(self, path, body=None, **kwargs):
        """A JSON merge patch (RFC 7396)."""
        return self.http.patch(path, data=json.dumps(body), content_type=MERGE_PATCH,
                               headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs)

    def delete(self, path, **kwargs):
        return self.http.delete(path, headers={**self.headers, **kwargs.pop("headers", {})},
                                **kwargs)

    def create_key(self, **body):
        body.setdefault("name", "key")
        response = self.post(KEYS, body)
        assert response.status_code == 201, response.get_data(as_text=True)
        return response.get_json()


@pytest.fixture
def make_admin(client, oauth_clients, get_token):
    """``make_admin(scope)``: a client holding ``scope`` and a token with all of it."""

    def _make(scope: str = ADMIN_SCOPE, **kwargs) -> Caller:
        client_id, secret = oauth_clients.create(scope=scope, **kwargs)
        # The admin API's own audience (AU01): RFC 8707 resource = ADMIN_AUDIENCE.
        answer = get_token(client_id, secret, resource=client.application.config["ISSUER"])
        assert answer.status_code == 200, answer.get_json()
        return Caller(client, client_id, secret, answer.get_json()["access_token"])

    return _make


@pytest.fixture
def admin(make_admin):
    """A caller holding account-management:manage and sms:manage."""
    return make_admin()


def audit_events(app, object_id: str) -> list[AuditEvent]:
    with app.app_context():
        return db.session.scalars(sa.select(AuditEvent).where(AuditEvent.object_id == object_id)
                                  .order_by(AuditEvent.id)).all()


# -- the issue's "Done when" -----------------------------------------------------------------

@pytest.fixture
def live_admin(live_server):
    """A live-server caller: (clients factory, bearer headers, client_id)."""
    factory = OAuthClients(live_server.app)
    client_id, secret = factory.create(scope=ADMIN_SCOPE, name="automation")
    token = requests.post(live_server.url + "/oauth2/token",
                          data={"grant_type": "client_credentials",
                                "resource": live_server.app.config["ISSUER"]},
                          headers=basic_auth(client_id, secret), timeout=10).json()
    return factory, {"Authorization": f"Bearer {token['access_token']}"}, client_id


def test_done_when_key_lifecycle_over_http(live_server, live_admin):
    factory, headers, client_id = live_admin
    rs_id, rs_secret = factory.create(scope="tokens:introspect", name="demo resource server")
    demo_app = create_demo_app({"GUARD_ISSUER": live_server.url, "GUARD_CLIENT_ID": rs_id,
                                "GUARD_CLIENT_SECRET": rs_secret,
                                "GUARD_API_KEY_CACHE_SECONDS": 0})
    base = live_server.url
    sms = {"messages": [{"destinations": [{"to": "41793026727"}], "content": {"text": "hi"},
                         "sender": "demo"}]}
    try:
        with serve(demo_app) as demo:
            created = requests.post(base + KEYS, json={"name": "sender",
                                                       "scopeGuids": ["sms:message:send"]},
                                    headers=headers, timeout=10)
            assert created.status_code == 201
            key = created.json()
            secret = key.pop("apiKeySecret")
            assert set(key) == KEY_FIELDS and key["enabled"] is True
            listed = requests.get(base + KEYS, headers=headers, timeout=10)
            assert listed.status_code == 200
            assert [row["id"] for row in listed.json()["apiKeys"]] == [key["id"]]
            assert secret not in listed.text and "apiKeySecret" not in listed.text

            app_key = {"Authorization": f"App {secret}"}
            sent = requests.post(demo + "/sms/3/messages", json=sms, headers=app_key, timeout=10)
            assert sent.status_code == 200, sent.text
            refused = requests.get(base + KEYS, headers=app_key, timeout=10)
            assert (refused.status_code, refused.json()) == (403, envelope("FORBIDDEN"))

            disabled = requests.put(f"{base}{KEYS}/{key['id']}", json={"enabled": False},
                                    headers=headers, timeout=10)
            assert (disabled.status_code, disabled.json()["enabled"]) == (200, False)
            after = requests.post(demo + "/sms/3/messages", json=sms, headers=app_key,
                                  timeout=10)
            assert after.status_code == 401

            trail = requests.get(base + AUDIT, params={"objectId": key["id"]}, headers=headers,
                                 timeout=10)
            assert trail.status_code == 200
            logs = trail.json()["logs"]
            assert [(e["action"], e["actor"]) for e in logs] == [
                ("disable", f"client:{client_id}"), ("create", f"client:{client_id}")]
            assert logs[0]["changes"] == {"enabled": {"before": True, "after": False}}
            assert secret not in trail.text
    finally:
        ResourceGuard.close(demo_app)


# -- who may call (AD02, AD06) ---------------------------------------------------------------

ROUTES = [("GET", KEYS), ("POST", KEYS), ("GET", f"{KEYS}/{UNKNOWN_KEY_ID}"),
          ("PUT", f"{KEYS}/{UNKNOWN_KEY_ID}"), ("PATCH", f"{KEYS}/{UNKNOWN_KEY_ID}"),
          ("DELETE", f"{KEYS}/{UNKNOWN_KEY_ID}"), ("GET", CLIENTS), ("POST", CLIENTS),
          ("GET", f"{CLIENTS}/{UNKNOWN_CLIENT_ID}"), ("PUT", f"{CLIENTS}/{UNKNOWN_CLIENT_ID}"),
          ("PATCH", f"{CLIENTS}/{UNKNOWN_CLIENT_ID}"),
          ("DELETE", f"{CLIENTS}/{UNKNOWN_CLIENT_ID}"),
          ("POST", f"{CLIENTS}/{UNKNOWN_CLIENT_ID}/rotate-secret"),
          ("GET", "/settings/2/scopes"), ("GET", AUDIT)]


@pytest.mark.parametrize("method, path", ROUTES)
def test_AD02_no_credentials_is_401(client, method, path):
    response = client.open(path, method=method, json={"name": "x"})
    assert (response.status_code, response.get_json()) == (401, envelope("UNAUTHORIZED"))
    # RFC 6750 §3.1: no error code when no credentials were sent.
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="authserver-admin"'


@pytest.mark.parametrize("method, path", ROUTES)
def test_AD06_api_keys_are_refused_with_403(app, client, method, path):
    with app.app_context():
        _, secret = api_key_service.create_api_key(name="k", scopes=[MANAGE], actor="test")
    response = client.open(path, method=method, json={"name": "x"},
                           headers={"Authorization": f"App {secret}"})
    assert (response.status_code, response.get_json()) == (403, envelope("FORBIDDEN"))
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiKey)) == 1


@pytest.mark.parametrize("authorization", [
    "Bearer", "Bearer not-a-jwt", "Bearer a.b.c", "Basic dXNlcjpwYXNz", "Token abc", "bearer",
])
def test_AD02_invalid_credentials_are_401(client, authorization):
    response = client.get(KEYS, headers={"Authorization": authorization})
    assert (response.status_code, response.get_json()) == (401, envelope("UNAUTHORIZED"))


def test_AD02_basic_client_credentials_are_not_a_bearer_token(client, admin):
    response = client.get(KEYS, headers=basic_auth(admin.client_id, admin.secret))
    assert response.status_code == 401


def test_AD02_bearer_scheme_is_case_insensitive(client, admin):
    response = client.get(KEYS, headers={"Authorization": f"bearer {admin.token}"})
    assert response.status_code == 200


def test_AD02_two_authorization_headers_are_400(client, admin):
    headers = [("Authorization", f"Bearer {admin.token}"), ("Authorization", "App x")]
    assert client.get(KEYS, headers=headers).status_code == 400


def _non_canonical(token: str) -> list[str]:
    """Spellings of ``token`` whose bytes decode the same: padding, set unused bits."""
    head, payload, signature = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    variants = [f"{head}.{payload}.{signature}==", f"{head}.{payload}=.{signature}"]
    unused = {2: 0b1111, 3: 0b11}.get(len(signature) % 4)
    if unused:
        last = alphabet[alphabet.index(signature[-1]) | unused]
        variants.append(f"{head}.{payload}.{signature[:-1]}{last}")
    return variants


def test_item11_non_canonical_encodings_are_401(client, admin):
    """Non-canonical JWT encodings (threat model item 10): the admin API uses the guard's verifier,
    so a padded or bit-twiddled copy of a valid token is refused here as at every guard."""
    assert admin.get(KEYS).status_code == 200
    for variant in _non_canonical(admin.token):
        response = client.get(KEYS, headers={"Authorization": f"Bearer {variant}"})
        assert (response.status_code, response.get_json()) == (401, envelope("UNAUTHORIZED"))


def test_AD02_revoked_token_is_401(client, admin):
    assert revoke(client, admin.token, basic_auth(admin.client_id, admin.secret)).status_code == 200
    response = admin.get(KEYS)
    assert (response.status_code, response.get_json()) == (401, envelope("UNAUTHORIZED"))
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_AD02_expired_token_is_401(admin, clock):
    clock.advance(3600 + 31)
    assert admin.get(KEYS).status_code == 401


def test_AD02_disabled_client_token_is_401(app, admin):
    with app.app_context():
        from authserver.credentials import clients

        clients.disable_client(admin.client_id, actor="test")
    assert admin.get(KEYS).status_code == 401


def test_AD02_token_for_another_audience_is_401(client, oauth_clients, get_token):
    client_id, secret = oauth_clients.create(scope=MANAGE,
                                             audiences=["https://other.example.test/api"])
    answer = get_token(client_id, secret, resource="https://other.example.test/api")
    assert answer.status_code == 200, answer.get_json()
    token = answer.get_json()["access_token"]
    response = client.get(KEYS, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_AU01_a_token_for_the_api_audience_is_refused_by_the_admin_api(client, oauth_clients,
                                                                      get_token):
    """Issue 18 finding 4: a token every resource server accepts (the default audience)
    cannot be replayed at the admin API."""
    client_id, secret = oauth_clients.create(scope=ADMIN_SCOPE)
    answer = get_token(client_id, secret)
    assert answer.status_code == 200
    assert answer.get_json()["access_token"]
    response = client.get(KEYS, headers={"Authorization":
                                         f"Bearer {answer.get_json()['access_token']}"})
    assert (response.status_code, response.get_json()) == (401, envelope("UNAUTHORIZED"))
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("scope", [MANAGE, "audit-logs:read", ADMIN_SCOPE])
def test_AU01_admin_scope_holders_get_admin_audience_tokens_without_registering(
        app, client, oauth_clients, get_token, scope):
    client_id, secret = oauth_clients.create(scope=scope)
    answer = get_token(client_id, secret, resource=app.config["ISSUER"])
    assert answer.status_code == 200, answer.get_json()
    claims = json.loads(_b64url_decode(answer.get_json()["access_token"].split(".")[1]))
    assert claims["aud"] == app.config["ISSUER"]
    path = AUDIT if scope == "audit-logs:read" else KEYS
    response = client.get(path, headers={"Authorization":
                                         f"Bearer {answer.get_json()['access_token']}"})
    assert response.status_code == 200


@pytest.mark.parametrize("scope", ["sms:manage", "message:send", "tokens:introspect"])
def test_AU01_clients_without_an_admin_scope_cannot_get_admin_tokens(app, oauth_clients,
                                                                     get_token, scope):
    client_id, secret = oauth_clients.create(scope=scope)
    answer = get_token(client_id, secret, resource=app.config["ISSUER"])
    assert answer.status_code == 400 and answer.get_json()["error"] == "invalid_target"


@pytest.mark.parametrize("app_config", [{"ADMIN_AUDIENCE": "https://admin.example.test"}])
def test_AU01_admin_audience_is_configurable(app, client, oauth_clients, get_token):
    client_id, secret = oauth_clients.create(scope=ADMIN_SCOPE)
    issuer_token = get_token(client_id, secret, resource=app.config["ISSUER"])
    assert issuer_token.get_json()["error"] == "invalid_target"
    answer = get_token(client_id, secret, resource="https://admin.example.test")
    assert answer.status_code == 200, answer.get_json()
    response = client.get(KEYS, headers={"Authorization":
                                         f"Bearer {answer.get_json()['access_token']}"})
    assert response.status_code == 200


def _b64url_decode(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize("scope", ["audit-logs:read"])
def test_AD06_token_without_account_management_is_403(make_admin, scope):
    caller = make_admin(scope)
    for method, path in ROUTES:
        if path == AUDIT and scope == "audit-logs:read":
            continue
        response = caller.http.open(path, method=method, json={"name": "x"},
                                    headers=caller.headers)
        accepted = ["audit-logs:read", MANAGE] if path == AUDIT else [MANAGE]
        assert (response.status_code, response.get_json()) == (403, forbidden(accepted, True))
        assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_audit_logs_accept_audit_logs_read(make_admin):
    reader = make_admin("audit-logs:read")
    assert reader.get(AUDIT).status_code == 200
    assert reader.get(KEYS).status_code == 403


def test_narrowing_a_client_takes_effect_before_its_tokens_expire(app, admin):
    with app.app_context():
        from authserver.credentials import clients

        clients.update_client(admin.client_id, actor="test", changes={"scopes": [MANAGE]})
    response = admin.post(KEYS, {"name": "k", "scopeGuids": ["sms:message:send"]})
    assert (response.status_code, response.get_json()) == (403, forbidden(["sms:message:send"]))


# -- AD04: never grant more than you hold ----------------------------------------------------

ESCALATION = [
    # (caller's scopes, requested scopes, allowed?)
    (ADMIN_SCOPE, ["sms:message:send"], True),
    (ADMIN_SCOPE, ["sms:logs:read", "sms:inbound-message:read"], True),
    (ADMIN_SCOPE, ["sms:manage", MANAGE], True),
    (ADMIN_SCOPE, ["message:send"], False),
    (ADMIN_SCOPE, ["email:message:send"], False),
    (ADMIN_SCOPE, ["inbound-message:read"], False),
    (ADMIN_SCOPE, ["sms:message:send", "mms:message:send"], False),
    (f"{MANAGE} message:send", ["email:message:send", "sms:message:send"], True),
    (f"{MANAGE} message:send", ["sms:manage"], False),
    (f"{MANAGE} message:send", ["sms:logs:read"], False),
    (f"{MANAGE} sms:message:send", ["message:send"], False),
    (MANAGE, ["audit-logs:read"], False),
]


@pytest.mark.parametrize("held, requested, allowed", ESCALATION)
def test_AD04_create_key_scopes_must_be_covered(app, make_admin, held, requested, allowed):
    caller = make_admin(held)
    response = caller.post(KEYS, {"name": "k", "scopeGuids": requested})
    if allowed:
        assert response.status_code == 201
        assert response.get_json()["scopeGuids"] == requested
    else:
        exception = response.get_json()["requestError"]["serviceException"]
        assert response.status_code == 403
        assert exception["missingScopes"] and set(exception["missingScopes"]) <= set(requested)
        assert response.get_json() == forbidden(exception["missingScopes"])
        with app.app_context():
            assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiKey)) == 0


@pytest.mark.parametrize("held, requested, allowed", ESCALATION)
def test_AD04_update_key_scopes_must_be_covered(app, make_admin, held, requested, allowed):
    caller = make_admin(held)
    key = caller.create_key(scopeGuids=[MANAGE])
    response = caller.put(f"{KEYS}/{key['id']}", {"scopeGuids": requested, "name": "renamed"})
    assert response.status_code == (200 if allowed else 403)
    stored = caller.get(f"{KEYS}/{key['id']}").get_json()
    assert stored["scopeGuids"] == (requested if allowed else [MANAGE])
    assert stored["name"] == ("renamed" if allowed else "key")


@pytest.mark.parametrize("held, requested, allowed", ESCALATION)
def test_AD04_client_scopes_must_be_covered(make_admin, held, requested, allowed):
    caller = make_admin(held)
    response = caller.post(CLIENTS, {"name": "c", "scopes": requested})
    assert response.status_code == (201 if allowed else 403)
    created = caller.post(CLIENTS, {"name": "c2", "scopes": [MANAGE]}).get_json()
    response = caller.patch(f"{CLIENTS}/{created['clientId']}", {"scopes": requested})
    assert response.status_code == (200 if allowed else 403)


def test_key_created_without_scopes_gets_the_callers_scopes(admin):
    assert admin.create_key()["scopeGuids"] == [MANAGE, "sms:manage"]


def test_explicit_empty_scopes_means_access_to_nothing(admin):
    # Creating needs at least one scope (the service's rule for every front-end) ...
    assert "scopeGuids" in validation_errors(admin.post(KEYS, {"name": "k", "scopeGuids": []}))
    # ... an update may take them all away.
    key = admin.create_key(scopeGuids=["sms:message:send"])
    updated = admin.put(f"{KEYS}/{key['id']}", {"scopeGuids": []})
    assert (updated.status_code, updated.get_json()["scopeGuids"]) == (200, [])


def test_AD04_objects_broader_than_the_caller_cannot_be_changed(app, make_admin, get_token):
    broad = make_admin(f"{MANAGE} message:send")
    narrow = make_admin(ADMIN_SCOPE)
    key = broad.create_key(scopeGuids=["message:send"])
    client = broad.post(CLIENTS, {"name": "broad", "scopes": ["message:send"]}).get_json()
    for method, path, body in [
        ("PUT", f"{KEYS}/{key['id']}", {"enabled": False}),
        ("PUT", f"{KEYS}/{key['id']}", {"scopeGuids": ["sms:message:send"]}),
        ("PATCH", f"{KEYS}/{key['id']}", {"name": "mine now"}),
        ("DELETE", f"{KEYS}/{key['id']}", None),
        ("PATCH", f"{CLIENTS}/{client['clientId']}", {"name": "mine now"}),
        ("PUT", f"{CLIENTS}/{client['clientId']}", {
            "name": "mine now", "scopes": ["sms:message:send"], "audiences": [],
            "tokenTtl": None, "authMethod": "client_secret_basic", "enabled": True,
            "dpopBoundAccessTokens": False}),
        ("DELETE", f"{CLIENTS}/{client['clientId']}", None),
        ("POST", f"{CLIENTS}/{client['clientId']}/rotate-secret", {}),
    ]:
        content_type = MERGE_PATCH if method == "PATCH" else "application/json"
        response = narrow.http.open(path, method=method, headers=narrow.headers,
                                    data=None if body is None else json.dumps(body),
                                    content_type=content_type)
        assert (response.status_code, response.get_json()) == (403, forbidden(["message:send"]))
    # Reading is fine (no secrets), and the broad client's secret still works.
    assert narrow.get(f"{KEYS}/{key['id']}").get_json()["enabled"] is True
    assert get_token(client["clientId"], client["clientSecret"]).status_code == 200


# -- AD04/AD05 policies: widening and validity -----------------------------------------------

@pytest.mark.parametrize("allowlist", [["0.0.0.0/0"], ["::/0"], ["10.0.0.0/8", "0.0.0.0/0"],
                                       ["::ffff:0.0.0.0/96"]])
def test_AD04_any_address_ranges_are_refused(admin, allowlist):
    errors = validation_errors(admin.post(KEYS, {"name": "k", "allowedIPs": allowlist}))
    assert "empty list already allows any address" in errors["allowedIPs"][0]
    key = admin.create_key(allowedIPs=["10.0.0.0/8"])
    errors = validation_errors(admin.put(f"{KEYS}/{key['id']}", {"allowedIPs": allowlist}))
    assert list(errors) == ["allowedIPs"]
    assert admin.get(f"{KEYS}/{key['id']}").get_json()["allowedIPs"] == ["10.0.0.0/8"]


ANY_ADDRESS_UNIONS = [
    ["0.0.0.0/1", "128.0.0.0/1"],
    ["::/1", "8000::/1"],
    ["0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/2", "192.0.0.0/3", "224.0.0.0/3"],
    ["::ffff:0.0.0.0/97", "128.0.0.0/1"],
    ["10.0.0.1", "0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/2"],
]


@pytest.mark.parametrize("allowlist", ANY_ADDRESS_UNIONS)
def test_AD04_ranges_whose_union_is_any_address_are_refused(admin, allowlist):
    """Issue 18 finding 10: the rule is on the union of the entries, not on one prefix."""
    errors = validation_errors(admin.post(KEYS, {"name": "k", "allowedIPs": allowlist}))
    assert "empty list already allows any address" in errors["allowedIPs"][0]
    key = admin.create_key(allowedIPs=["10.0.0.0/8"])
    errors = validation_errors(admin.put(f"{KEYS}/{key['id']}", {"allowedIPs": allowlist}))
    assert list(errors) == ["allowedIPs"]


@pytest.mark.parametrize("allowlist", [["0.0.0.0/1"], ["0.0.0.0/1", "::/1"],
                                       ["0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/3"]])
def test_AD04_broad_ranges_that_leave_addresses_out_are_kept(admin, allowlist):
    assert admin.create_key(allowedIPs=allowlist)["allowedIPs"] == allowlist


def test_allowlists_can_be_set_and_cleared(admin):
    key = admin.create_key(allowedIPs=["192.0.2.0/24", "2001:db8::1"])
    assert key["allowedIPs"] == ["192.0.2.0/24", "2001:db8::1"]
    cleared = admin.put(f"{KEYS}/{key['id']}", {"allowedIPs": []})
    assert cleared.get_json()["allowedIPs"] == []


def test_AD04_validity_is_capped(admin, clock):
    limit = clock.now + timedelta(days=730)
    assert admin.create_key(validTo=iso(limit))["validTo"] == iso(limit)
    errors = validation_errors(admin.post(KEYS, {"name": "k",
                                                 "validTo": iso(limit + timedelta(seconds=1))}))
    assert errors == {"validTo": ["must be at most 730 days from now"]}
    key = admin.create_key()
    response = admin.put(f"{KEYS}/{key['id']}", {"validTo": iso(limit + timedelta(days=1))})
    assert list(validation_errors(response)) == ["validTo"]
    # A late validFrom cannot smuggle a long window in through the default one-year validTo.
    late = admin.post(KEYS, {"name": "k", "validFrom": iso(clock.now + timedelta(days=400))})
    assert list(validation_errors(late)) == ["validTo"]


@pytest.mark.parametrize("app_config", [{"MAX_API_KEY_VALIDITY_DAYS": 30}])
def test_validity_cap_is_configurable(admin, clock):
    response = admin.post(KEYS, {"name": "k"})  # the one-year default is now too long
    assert validation_errors(response) == {"validTo": ["must be at most 30 days from now"]}
    assert admin.create_key(validTo=iso(clock.now + timedelta(days=30)))["enabled"] is True


@pytest.mark.parametrize("body, field", [
    ({"validTo": "next tuesday"}, "validTo"),
    ({"validTo": "2027-01-01T00:00:00"}, "validTo"),
    ({"validFrom": "2000-01-01T00:00:00Z"}, "validFrom"),
    ({"allowedIPs": ["10.0.0.1/8"]}, "allowedIPs"),
    ({"scopeGuids": ["nope:unknown"]}, "scopeGuids"),
    ({"scopeGuids": ["Message:Send"]}, "scopeGuids"),
    ({"name": "   "}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"name": "tab\there"}, "name"),
])
def test_semantic_validation_names_the_field(admin, body, field):
    errors = validation_errors(admin.post(KEYS, {"name": "k", **body}))
    assert field in errors


# -- AD03: mass assignment and type confusion ------------------------------------------------

READ_ONLY = ["id", "createdAt", "secretHash", "apiKeySecret", "lastUsedAt", "clientSecret",
             "owner_id", "secret_hash", "key_hash", "created_at", "revoked", "is_admin",
             "clientId", "createdBy", "updatedAt", "owner", "prefix"]
UNKNOWN = ["scope", "scopes", "admin", "ENABLED", "Name", "", "__proto__"]


@pytest.mark.parametrize("field", READ_ONLY + UNKNOWN + ["enabled", "authMethod"])
def test_AD03_mass_assignment_is_refused_by_name(app, admin, field):
    key = admin.create_key()
    client = admin.post(CLIENTS, {"name": "c", "scopes": ["sms:manage"]}).get_json()
    key_path, client_path = f"{KEYS}/{key['id']}", f"{CLIENTS}/{client['clientId']}"
    expected = ["is read-only" if field in READ_ONLY else "unknown field"]
    errors = validation_errors(admin.post(KEYS, {"name": "k", field: "X" * 32}))
    assert errors == {field: expected}
    if field != "enabled":
        errors = validation_errors(admin.put(key_path, {"name": "renamed", field: "X" * 32}))
        assert errors == {field: expected}
    if field not in ("authMethod", "scopes"):
        errors = validation_errors(admin.post(CLIENTS, {"name": "c2", "scopes": ["sms:manage"],
                                                        field: "X"}))
        assert errors == {field: expected}
    errors = validation_errors(admin.patch(client_path, {"name": "renamed",
                                                         field: "private_key_jwt"}))
    # authMethod may change now, but not to private_key_jwt without a JWK Set.
    assert ("jwks" if field == "authMethod" else field) in errors
    # Nothing was created or changed.
    assert admin.get(key_path).get_json()["name"] == "key"
    assert admin.get(client_path).get_json()["name"] == "c"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiKey)) == 1
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Client)) == 2


KEY_TYPE_CONFUSION = [
    ({"enabled": "false"}, "enabled"), ({"enabled": 0}, "enabled"), ({"enabled": None}, "enabled"),
    ({"enabled": [False]}, "enabled"), ({"name": 123}, "name"), ({"name": None}, "name"),
    ({"name": ["k"]}, "name"), ({"name": {"$ne": ""}}, "name"),
    ({"scopeGuids": "sms:manage"}, "scopeGuids"), ({"scopeGuids": [1]}, "scopeGuids"),
    ({"scopeGuids": None}, "scopeGuids"), ({"scopeGuids": {"a": 1}}, "scopeGuids"),
    ({"allowedIPs": "10.0.0.1"}, "allowedIPs"), ({"allowedIPs": [167772161]}, "allowedIPs"),
    ({"validTo": 1893456000}, "validTo"), ({"validFrom": True}, "validFrom"),
]


@pytest.mark.parametrize("body, field", KEY_TYPE_CONFUSION)
def test_AD03_type_confusion_on_key_update(admin, body, field):
    key = admin.create_key(scopeGuids=["sms:message:send"], allowedIPs=["10.0.0.1"])
    assert field in validation_errors(admin.put(f"{KEYS}/{key['id']}", body))
    assert admin.get(f"{KEYS}/{key['id']}").get_json() == {k: v for k, v in key.items()
                                                            if k != "apiKeySecret"}


@pytest.mark.parametrize("body, field", [
    ({"tokenTtl": "3600"}, "tokenTtl"), ({"tokenTtl": 3600.0}, "tokenTtl"),
    ({"tokenTtl": True}, "tokenTtl"), ({"tokenTtl": 10**30}, "tokenTtl"),
    ({"audiences": "https://api.example.test"}, "audiences"), ({"scopes": "sms:manage"}, "scopes"),
    ({"authMethod": 1}, "authMethod"), ({"authMethod": "none"}, "authMethod"),
    ({"jwks": "keys"}, "jwks"), ({"scopes": []}, "scopes"), ({"scopes": ["x:y"]}, "scopes"),
    ({"tokenTtl": 59}, "tokenTtl"), ({"audiences": ["not a uri"]}, "audiences"),
    ({"dpopBoundAccessTokens": "true"}, "dpopBoundAccessTokens"),
    ({"dpopBoundAccessTokens": 1}, "dpopBoundAccessTokens"),
    ({"dpopBoundAccessTokens": None}, "dpopBoundAccessTokens"),
])
def test_AD03_type_confusion_on_client_create(admin, body, field):
    errors = validation_errors(admin.post(CLIENTS, {"name": "c", "scopes": ["sms:manage"],
                                                    **body}))
    assert field in errors


@pytest.mark.parametrize("data, content_type", [
    ("[]", "application/json"), ('"name"', "application/json"), ("null", "application/json"),
    ("{", "application/json"), ('{"name": "a", "name": "b"}', "application/json"),
    ('{"name": NaN}', "application/json"), ("[" * 5000 + "]" * 5000, "application/json"),
    ('{"name": 1' + "0" * 5000 + "}", "application/json"), (b"\xff\xfe", "application/json"),
    ("", "application/json"),
])
def test_AD03_malformed_bodies_are_400(admin, data, content_type):
    response = admin.http.post(KEYS, data=data, content_type=content_type,
                               headers=admin.headers)
    assert list(validation_errors(response)) == ["body"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
def test_non_json_bodies_are_415(admin, content_type):
    headers = dict(admin.headers)
    if content_type:
        headers["Content-Type"] = content_type
    response = admin.http.post(KEYS, data='{"name": "k"}', headers=headers)
    assert (response.status_code, response.get_json()) == (415,
                                                           envelope("UNSUPPORTED_MEDIA_TYPE"))


def test_empty_update_is_400(admin):
    key = admin.create_key()
    assert list(validation_errors(admin.put(f"{KEYS}/{key['id']}", {}))) == ["body"]


def test_disabled_key_cannot_be_enabled_again(admin):
    key = admin.create_key()
    assert admin.put(f"{KEYS}/{key['id']}", {"enabled": False}).status_code == 200
    assert "enabled" in validation_errors(admin.put(f"{KEYS}/{key['id']}", {"enabled": True}))


# -- AD05: body size, paging -----------------------------------------------------------------

def test_AD05_oversized_body_is_413(admin):
    response = admin.post(KEYS, {"name": "k", "allowedIPs": ["10.0.0.1"] * 20_000})
    assert (response.status_code, response.get_json()) == (413, envelope("PAYLOAD_TOO_LARGE"))


@pytest.mark.parametrize("query, field", [
    ("size=0", "size"), ("size=101", "size"), ("size=-1", "size"), ("size=1000000000000", "size"),
    ("size=abc", "size"), ("size=1.5", "size"), ("size=", "size"), ("size=%D9%A1", "size"),
    ("size=+5", "size"), ("size=5_0", "size"), ("size=%205", "size"), ("page=-1", "page"),
    ("page=x", "page"), ("page=1e3", "page"), ("page=99999999999999999999", "page"),
    ("size=10&size=20", "size"), ("owner_id=1", "owner_id"), ("enabled=yes", "enabled"),
    ("enabled=1", "enabled"), ("name=a%00b", "name"), ("name=", "name"),
    ("name=" + "n" * 201, "name"),
])
def test_AD05_paging_and_filter_abuse_is_400(admin, query, field):
    # On the audit path name/enabled are unknown parameters: still 400 naming them.
    for path in (KEYS, CLIENTS, AUDIT):
        assert field in validation_errors(admin.get(f"{path}?{query}"))


def test_RS14_token_in_the_query_beside_the_header_is_400(admin):
    """The guard's rule, shared by the admin API: two ways of sending a credential is
    invalid_request (RFC 6750 §2, §3.1), before any parameter is looked at."""
    for path in (KEYS, CLIENTS, AUDIT):
        response = admin.get(f"{path}?access_token=x")
        assert response.status_code == 400
        assert response.get_json() == envelope("BAD_REQUEST")
        assert response.headers["WWW-Authenticate"] == \
            'Bearer realm="authserver-admin", error="invalid_request"'


@pytest.mark.parametrize("path, items", [(KEYS, "apiKeys"), (CLIENTS, "oauthClients"),
                                         (AUDIT, "logs")])
def test_AD05_page_past_the_end_is_empty(admin, path, items):
    admin.create_key()
    response = admin.get(f"{path}?page=999999999&size=100")
    assert response.status_code == 200
    body = response.get_json()
    assert body[items] == [] and body["paging"]["page"] == 999999999
    assert body["paging"]["pageSize"] == 100 and body["paging"]["totalCount"] >= 1


def test_list_paging_and_filters(admin, clock):
    ids = []
    for n in range(5):
        ids.append(admin.create_key(name=f"k{n % 2}")["id"])
        clock.advance(1)
    admin.put(f"{KEYS}/{ids[0]}", {"enabled": False})
    page = admin.get(f"{KEYS}?size=2&page=1").get_json()
    assert [row["id"] for row in page["apiKeys"]] == ids[2:4]
    assert page["paging"] == {"page": 1, "pageSize": 2, "totalCount": 5, "totalPages": 3,
                              "orderBy": "createdAt", "orderDirection": "ASC"}
    named = admin.get(f"{KEYS}?name=k0").get_json()
    assert [row["id"] for row in named["apiKeys"]] == ids[0::2]
    enabled = admin.get(f"{KEYS}?name=k0&enabled=true").get_json()
    assert [row["id"] for row in enabled["apiKeys"]] == ids[2::2]
    disabled = admin.get(f"{KEYS}?enabled=false").get_json()
    assert [row["id"] for row in disabled["apiKeys"]] == ids[:1]


# -- AD01: id walking ------------------------------------------------------------------------

BAD_KEY_IDS = [UNKNOWN_KEY_ID, UNKNOWN_KEY_ID.lower(), UNKNOWN_KEY_ID[:-1], "1", "%00",
               "..%2F..%2Foauth2%2Ftoken", "' OR 1=1 --", "x" * 5000, "%E2%80%AE", "null"]
BAD_CLIENT_IDS = [UNKNOWN_CLIENT_ID, UNKNOWN_CLIENT_ID.upper(), "1", "%00", "a%00b", "x" * 65,
                  "x" * 5000, "' OR 1=1 --", "null"]


@pytest.mark.parametrize("key_id", BAD_KEY_IDS)
def test_AD01_unknown_and_malformed_key_ids_are_the_same_404(admin, key_id):
    admin.create_key()
    for response in (admin.get(f"{KEYS}/{key_id}"),
                     admin.put(f"{KEYS}/{key_id}", {"enabled": False})):
        assert (response.status_code, response.get_json()) == (404, envelope("NOT_FOUND"))


@pytest.mark.parametrize("client_id", BAD_CLIENT_IDS)
def test_AD01_unknown_and_malformed_client_ids_are_the_same_404(admin, client_id):
    for response in (admin.get(f"{CLIENTS}/{client_id}"),
                     admin.put(f"{CLIENTS}/{client_id}", {"enabled": False}),
                     admin.post(f"{CLIENTS}/{client_id}/rotate-secret", {})):
        assert (response.status_code, response.get_json()) == (404, envelope("NOT_FOUND"))


def test_AD01_key_ids_are_random(admin):
    ids = [admin.create_key()["id"] for _ in range(3)]
    assert len(set(ids)) == 3
    assert all(len(key_id) == 32 and key_id == key_id.upper() for key_id in ids)


# -- AD06: method override, AD10: inventory --------------------------------------------------

def test_AD06_method_override_headers_are_ignored(admin):
    key = admin.create_key()
    path = f"{KEYS}/{key['id']}"
    for header in ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"):
        got = admin.http.get(path, json={"enabled": False},
                             headers={**admin.headers, header: "PUT"})
        assert (got.status_code, got.get_json()["enabled"]) == (200, True)
        posted = admin.post(path, {"enabled": False}, headers={header: "PUT"})
        assert (posted.status_code, posted.get_json()) == (405, envelope("METHOD_NOT_ALLOWED"))
    assert admin.get(path).get_json()["enabled"] is True


def test_AD10_only_documented_admin_routes_exist(app, client):
    rules = {(rule.rule, method) for rule in app.url_map.iter_rules()
             for method in rule.methods - {"HEAD", "OPTIONS"}
             if rule.endpoint.startswith(("admin_api.", "admin_accounts.", "admin_reach."))}
    assert rules == {
        (KEYS, "GET"), (KEYS, "POST"), (f"{KEYS}/<key_id>", "GET"), (f"{KEYS}/<key_id>", "PUT"),
        (f"{KEYS}/<key_id>", "PATCH"), (f"{KEYS}/<key_id>", "DELETE"),
        (CLIENTS, "GET"), (CLIENTS, "POST"), (f"{CLIENTS}/<client_id>", "GET"),
        (f"{CLIENTS}/<client_id>", "PUT"), (f"{CLIENTS}/<client_id>", "PATCH"),
        (f"{CLIENTS}/<client_id>", "DELETE"), (f"{CLIENTS}/<client_id>/rotate-secret", "POST"),
        ("/settings/2/scopes", "GET"), (AUDIT, "GET"), ("/openapi.json", "GET"),
        (ACCOUNTS, "GET"), (ACCOUNTS, "POST"), (f"{ACCOUNTS}/<account_id>", "GET"),
        (f"{ACCOUNTS}/<account_id>", "PUT"), (f"{KEYS}/<key_id>/reach", "GET"),
        (f"{CLIENTS}/<client_id>/reach", "GET"), ("/settings/2/scopes/narrowest", "POST"),
        ("/settings/2/resource-servers", "GET"), ("/settings/2/resource-servers/<name>", "GET"),
        ("/settings/2/resource-servers/<name>", "PUT"),
        ("/settings/2/resource-servers/<name>", "DELETE")}
    documented = client.get("/openapi.json").get_json()["paths"]
    assert {(path, method.upper()) for path, item in documented.items() for method in item} == {
        (rule.replace("<key_id>", "{apiKeyId}").replace("<client_id>", "{clientId}")
         .replace("<account_id>", "{accountId}").replace("<name>", "{name}"), method)
        for rule, method in rules}


@pytest.mark.parametrize("path", ["/openapi", "/openapi.yaml", "/settings/1/api-keys",
                                  "/settings/3/api-keys", f"{KEYS}/", f"{KEYS}/x/secret",
                                  "/audit/1/logs/1", "/debug", "/console", "/admin",
                                  "/settings/2/oauth-clients/x/secret"])
def test_AD10_undocumented_paths_are_404(admin, path):
    assert admin.get(path).status_code == 404


@pytest.mark.parametrize("method, path", [("POST", f"{KEYS}/{UNKNOWN_KEY_ID}"),
                                          ("PATCH", KEYS), ("POST", f"{CLIENTS}/x"),
                                          ("DELETE", KEYS), ("PUT", KEYS),
                                          ("GET", f"{CLIENTS}/x/rotate-secret"),
                                          ("POST", "/settings/2/scopes"), ("DELETE", AUDIT)])
def test_other_methods_are_405_in_the_envelope(admin, method, path):
    response = admin.http.open(path, method=method, headers=admin.headers)
    assert (response.status_code, response.get_json()) == (405, envelope("METHOD_NOT_ALLOWED"))
    assert response.headers["Allow"]


# -- secrets shown once (AD03, threat model item 16) -----------------------------------------

def test_secrets_appear_only_in_create_and_rotate_answers(app, admin):
    key = admin.create_key()
    secret = key["apiKeySecret"]
    client = admin.post(CLIENTS, {"name": "c", "scopes": ["sms:manage"]}).get_json()
    rotated = admin.post(f"{CLIENTS}/{client['clientId']}/rotate-secret").get_json()
    secrets_ = [secret, client["clientSecret"], rotated["clientSecret"]]
    with app.app_context():
        hashes = list(db.session.scalars(sa.select(ApiKey.secret_hash)))
        hashes += [h for row in db.session.execute(sa.select(Client.secret_hash,
                                                             Client.previous_secret_hash))
                   for h in row if h]
    assert hashlib.sha256(secret.encode()).hexdigest() in hashes and len(hashes) >= 3
    texts = [admin.get(path).get_data(as_text=True) for path in (
        KEYS, f"{KEYS}/{key['id']}", CLIENTS, f"{CLIENTS}/{client['clientId']}", AUDIT,
        f"{AUDIT}?size=100")]
    for text in texts:
        for value in secrets_ + hashes:
            assert value not in text
        for word in ("apiKeySecret", "clientSecret", "secret_hash", "secretHash", "Hash"):
            assert word not in text


def test_create_answers_are_not_cached(admin):
    response = admin.post(KEYS, {"name": "k"})
    assert response.headers["Cache-Control"] == "no-store"


# -- OAuth clients ---------------------------------------------------------------------------

def test_client_lifecycle(make_admin, get_token, clock):
    # The caller may use the audience it grants (AU02).
    admin = make_admin(audiences=["https://sms.example.test"])
    created = admin.post(CLIENTS, {"name": "svc", "scopes": ["sms:message:send"],
                                   "tokenTtl": 600, "audiences": ["https://sms.example.test"]})
    assert created.status_code == 201
    body = created.get_json()
    secret = body.pop("clientSecret")
    assert set(body) == CLIENT_FIELDS
    assert (body["authMethod"], body["tokenTtl"], body["scopes"]) == (
        "client_secret_basic", 600, ["sms:message:send"])
    path = f"{CLIENTS}/{body['clientId']}"
    assert admin.get(path).get_json() == body
    token = get_token(body["clientId"], secret)
    assert (token.status_code, token.get_json()["expires_in"]) == (200, 600)

    updated = admin.patch(path, {"tokenTtl": None, "scopes": ["sms:logs:read"], "name": "svc2"})
    assert updated.status_code == 200
    assert (updated.get_json()["tokenTtl"], updated.get_json()["scopes"]) == (
        None, ["sms:logs:read"])

    rotated = admin.post(f"{path}/rotate-secret", {"gracePeriod": 60})
    assert rotated.status_code == 200
    new_secret = rotated.get_json()["clientSecret"]
    assert new_secret != secret and rotated.get_json()["previousSecretExpiresAt"]
    assert get_token(body["clientId"], secret).status_code == 200  # within the grace period
    assert get_token(body["clientId"], new_secret).status_code == 200
    clock.advance(61)
    assert get_token(body["clientId"], secret).status_code == 401
    no_grace = admin.post(f"{path}/rotate-secret")  # no body: gracePeriod 0
    assert no_grace.status_code == 200
    assert get_token(body["clientId"], new_secret).status_code == 401

    assert admin.patch(path, {"enabled": False}).get_json()["enabled"] is False
    assert get_token(body["clientId"], no_grace.get_json()["clientSecret"]).status_code == 401
    listed = admin.get(f"{CLIENTS}?enabled=false").get_json()["oauthClients"]
    assert [row["clientId"] for row in listed] == [body["clientId"]]


def test_private_key_jwt_client(admin):
    from credential_actions import AssertionSigner

    signer = AssertionSigner()
    created = admin.post(CLIENTS, {"name": "pk", "scopes": ["sms:manage"],
                                   "authMethod": "private_key_jwt", "jwks": signer.jwks})
    assert created.status_code == 201
    assert created.get_json()["clientSecret"] is None
    assert created.get_json()["jwks"] == signer.jwks
    path = f"{CLIENTS}/{created.get_json()['clientId']}"
    assert "authMethod" in validation_errors(admin.post(f"{path}/rotate-secret"))
    other = AssertionSigner(kid="client-key-2")
    assert admin.patch(path, {"jwks": other.jwks}).get_json()["jwks"] == other.jwks
    missing = admin.post(CLIENTS, {"name": "pk", "scopes": ["sms:manage"],
                                   "authMethod": "private_key_jwt"})
    assert "jwks" in validation_errors(missing)


@pytest.mark.parametrize("grace", [-1, 30 * 86400 + 1, "60", 1.5, None, True])
def test_rotate_grace_period_is_validated(admin, grace):
    client = admin.post(CLIENTS, {"name": "c", "scopes": ["sms:manage"]}).get_json()
    response = admin.post(f"{CLIENTS}/{client['clientId']}/rotate-secret", {"gracePeriod": grace})
    assert "gracePeriod" in validation_errors(response)


# -- the catalogue ---------------------------------------------------------------------------

def test_scope_catalogue(admin):
    response = admin.get("/settings/2/scopes")
    assert response.status_code == 200
    categories = response.get_json()["categories"]
    assert [c["name"] for c in categories][:3] == ["General", "Channels", "Connectivity"]
    scopes = {s["name"]: s for c in categories for s in c["scopes"]}
    assert len(scopes) > 100 and all(s["description"] for s in scopes.values())
    assert scopes["sms:message:send"]["coveredBy"] == ["message:send", "sms:manage"]
    assert scopes[MANAGE]["category"] == "Platform"
    assert "size" in validation_errors(admin.get("/settings/2/scopes?size=1"))


# -- AD07: audit trail and rate limits -------------------------------------------------------

def test_AD07_every_change_is_audited_with_before_and_after(app, admin):
    key = admin.create_key(scopeGuids=["sms:message:send"])
    admin.put(f"{KEYS}/{key['id']}", {"name": "renamed", "allowedIPs": ["10.0.0.0/8"]})
    admin.put(f"{KEYS}/{key['id']}", {"enabled": False})
    client = admin.post(CLIENTS, {"name": "c", "scopes": ["sms:manage"]}).get_json()
    admin.patch(f"{CLIENTS}/{client['clientId']}", {"tokenTtl": 120})
    admin.post(f"{CLIENTS}/{client['clientId']}/rotate-secret", {"gracePeriod": 10})
    admin.patch(f"{CLIENTS}/{client['clientId']}", {"enabled": False})

    key_events = audit_events(app, key["id"])
    assert [(e.actor, e.action) for e in key_events] == [
        (admin.actor, "create"), (admin.actor, "update"), (admin.actor, "disable")]
    assert key_events[1].changes == {
        "name": {"before": "key", "after": "renamed"},
        "allowedIPs": {"before": [], "after": ["10.0.0.0/8"]}}
    client_events = audit_events(app, client["clientId"])
    assert [(e.actor, e.action) for e in client_events] == [
        (admin.actor, "create"), (admin.actor, "update"), (admin.actor, "rotate-secret"),
        (admin.actor, "disable")]
    assert client_events[1].changes == {"tokenTtl": {"before": None, "after": 120}}
    assert client_events[2].changes["gracePeriod"] == {"before": None, "after": 10}

    logs = admin.get(f"{AUDIT}?actor={admin.actor}&size=100").get_json()
    assert [e["objectId"] for e in logs["logs"]] == [client["clientId"]] * 4 + [key["id"]] * 3
    assert logs["paging"]["orderDirection"] == "DESC"
    text = json.dumps(logs)
    for value in (key["apiKeySecret"], client["clientSecret"]):
        assert value not in text


def test_audit_filters(admin, clock):
    first = admin.create_key()
    clock.advance(60)
    middle = clock.now
    second = admin.create_key()
    newer = admin.get(f"{AUDIT}?from={iso(middle)}").get_json()["logs"]
    assert [e["objectId"] for e in newer] == [second["id"]]
    older = admin.get(f"{AUDIT}?to={iso(middle)}&objectType=api-key").get_json()["logs"]
    assert [e["objectId"] for e in older] == [first["id"]]
    assert admin.get(f"{AUDIT}?objectType=oauth-client&actor={admin.actor}").get_json()[
        "logs"] == []
    assert admin.get(f"{AUDIT}?objectId={first['id']}").get_json()["paging"]["totalCount"] == 1
    for bad in ("from=yesterday", "to=2027-01-01T00:00:00", "from=0001-01-01T00:00:00%2B01:00",
                "from=9999-12-31T23:59:59-01:00"):
        assert validation_errors(admin.get(f"{AUDIT}?{bad}"))


@pytest.mark.parametrize("app_config", [{"ADMIN_WRITE_RATE_LIMIT": "3/day"}])
def test_AD07_writes_are_rate_limited_per_caller(admin, make_admin):
    key = admin.create_key()
    admin.put(f"{KEYS}/{key['id']}", {"name": "renamed"})
    client = admin.post(CLIENTS, {"name": "c", "scopes": ["sms:manage"]})
    assert client.status_code == 201
    for response in (admin.post(KEYS, {"name": "k"}),
                     admin.put(f"{KEYS}/{key['id']}", {"name": "again"}),
                     admin.post(f"{CLIENTS}/{client.get_json()['clientId']}/rotate-secret")):
        assert (response.status_code, response.get_json()) == (429,
                                                               envelope("TOO_MANY_REQUESTS"))
        assert int(response.headers["Retry-After"]) > 0
    assert admin.get(KEYS).status_code == 200  # reads are not limited
    assert make_admin().post(KEYS, {"name": "k"}).status_code == 201  # another caller


def test_rate_limit_defaults_to_40_a_day():
    from authserver import config

    assert (config.ADMIN_WRITE_RATE_LIMIT, config.MAX_API_KEY_VALIDITY_DAYS) == ("40/day", 730)


# -- RL5: concurrent creates over real HTTP --------------------------------------------------

def test_RL5_concurrent_creates(live_server, live_admin):
    _, headers, _ = live_admin
    base = live_server.url

    def create(n: int):
        return requests.post(base + KEYS, json={"name": f"k{n}", "scopeGuids": ["sms:logs:read"]},
                             headers=headers, timeout=30)

    with ThreadPoolExecutor(max_workers=30) as pool:
        responses = list(pool.map(create, range(30)))
    assert [r.status_code for r in responses] == [201] * 30, [r.text for r in responses
                                                              if r.status_code != 201]
    bodies = [r.json() for r in responses]
    assert len({b["id"] for b in bodies}) == 30
    assert len({b["apiKeySecret"] for b in bodies}) == 30
    listed = requests.get(base + KEYS, params={"size": 100}, headers=headers, timeout=10).json()
    assert {row["id"] for row in listed["apiKeys"]} == {b["id"] for b in bodies}
    assert listed["paging"]["totalCount"] == 30
    with live_server.app.app_context():
        creates = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)
                                    .where(AuditEvent.object_type == "api-key"))
    assert creates == 30


def test_errors_never_leak_internals(admin):
    for response in (admin.get(f"{KEYS}/%00"), admin.get(f"{KEYS}?size=x"),
                     admin.post(KEYS, {"name": "k", "validTo": "9999-12-31T23:59:59-01:00"}),
                     admin.http.post(KEYS, data="{", content_type="application/json",
                                     headers=admin.headers)):
        text = response.get_data(as_text=True)
        assert response.status_code < 500
        text = text.replace("serviceException", "")  # the envelope's own member name
        assert not [marker for marker in LEAK_MARKERS if marker in text]


# -- NUL and other bytes PostgreSQL cannot store never reach the database --------------------

@pytest.mark.parametrize("path, body", [
    (KEYS, {"name": "a\u0000b"}),
    (KEYS, {"name": "k", "allowedIPs": ["10.0.0.1\u0000"]}),
    (KEYS, {"name": "k", "scopeGuids": ["sms:manage\u0000"]}),
    (KEYS, {"name": "k", "validTo": "2027-01-01T00:00:00\u0000Z"}),
    (CLIENTS, {"name": "c", "scopes": ["sms:manage"], "audiences": ["https://a\u0000b"]}),
    (CLIENTS, {"name": "c", "scopes": ["sms:manage"], "audiences": ["urn:x:\u0000"]}),
    (CLIENTS, {"name": "c", "scopes": ["sms:manage"], "authMethod": "private_key_jwt",
               "jwks": {"keys": [{"kty": "EC", "kid": "\u0000", "crv": "P-256", "x": "\u0000",
                                  "y": "\u0000"}]}}),
])
def test_nul_characters_are_400(admin, path, body):
    assert validation_errors(admin.post(path, body))


def test_nul_characters_in_filters_are_400(admin):
    for query in ("actor=a%00", "objectId=%00", "objectType=x%00"):
        assert validation_errors(admin.get(f"{AUDIT}?{query}"))


@pytest.mark.parametrize("value", ["2027-01-01T00:00:00Z\n", "20270101T000000Z",
                                   "2027-01-01T00:00Z", "2027-01-01", "2027-W01-1T00:00:00Z",
                                   "2027-01-01T00:00:00+0100", "２０２７-01-01T00:00:00Z"])
def test_timestamps_must_be_rfc3339(admin, value):
    assert list(validation_errors(admin.post(KEYS, {"name": "k", "validTo": value}))) == [
        "validTo"]
    assert list(validation_errors(admin.get(AUDIT, query_string={"from": value}))) == ["from"]


def test_size_with_trailing_newline_is_400(admin):
    assert list(validation_errors(admin.get(KEYS, query_string={"size": "5\n"}))) == ["size"]


# -- RL1: database unreachable ---------------------------------------------------------------

def test_RL1_database_down_is_503_in_the_envelope(tmp_path):
    from conftest import ENCRYPTION_KEY, ISSUER

    import authserver

    down = authserver.create_app(
        {"TESTING": True,
         "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://postgres@127.0.0.1:1/none",
         "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"connect_timeout": 2}},
         "ISSUER": ISSUER, "ENCRYPTION_KEY": ENCRYPTION_KEY, "SECRET_KEY": "test"},
        instance_path=str(tmp_path / "down"))
    token = ("eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiYXQrand0In0."
             "eyJpc3MiOiJodHRwczovL2F1dGguZXhhbXBsZS50ZXN0IiwianRpIjoiajEifQ.c2lnbmF0dXJl")
    try:
        for method, path in ROUTES:
            response = down.test_client().open(path, method=method, json={"name": "k"},
                                               headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 503, (method, path)
            exception = response.get_json()["requestError"]["serviceException"]
            assert exception["messageId"] == "SERVICE_UNAVAILABLE"
            assert int(response.headers["Retry-After"]) > 0
            assert "127.0.0.1" not in response.get_data(as_text=True)
    finally:
        with down.app_context():
            db.engine.dispose()


def test_unknown_query_parameters_are_400_everywhere(admin):
    key = admin.create_key()
    client = admin.post(CLIENTS, {"name": "c", "scopes": ["sms:manage"]}).get_json()
    for method, path in [("GET", f"{KEYS}/{key['id']}"), ("PUT", f"{KEYS}/{key['id']}"),
                         ("POST", KEYS), ("POST", CLIENTS), ("GET", "/settings/2/scopes"),
                         ("GET", f"{CLIENTS}/{client['clientId']}"),
                         ("PUT", f"{CLIENTS}/{client['clientId']}"),
                         ("PATCH", f"{CLIENTS}/{client['clientId']}"),
                         ("PATCH", f"{KEYS}/{key['id']}"), ("DELETE", f"{KEYS}/{key['id']}"),
                         ("DELETE", f"{CLIENTS}/{client['clientId']}"),
                         ("POST", f"{CLIENTS}/{client['clientId']}/rotate-secret")]:
        response = admin.http.open(f"{path}?owner_id=1", method=method, json={"name": "x"},
                                   headers=admin.headers)
        assert validation_errors(response) == {"owner_id": ["unknown query parameter"]}
    assert admin.get(f"{KEYS}/{key['id']}").get_json()["name"] == "key"


def test_AU01_admin_audience_equal_to_the_default_audience_is_refused_at_start(tmp_path):
    from authserver import create_app

    with pytest.raises(ValueError, match="ADMIN_AUDIENCE must differ"):
        create_app({"TESTING": True, "ISSUER": "https://auth.example.test",
                    "ADMIN_AUDIENCE": "https://auth.example.test/api"},
                   instance_path=str(tmp_path))


# -- AU02: audiences are granted like scopes (issue 18 finding 13) ------------------------------

PRIVATE_API = "https://billing.internal/api"


def test_AU02_a_caller_cannot_give_a_client_an_audience_it_cannot_use(admin, get_token):
    for body in ({"name": "c", "scopes": ["sms:message:send"], "audiences": [PRIVATE_API]},):
        refused = admin.post(CLIENTS, body)
        assert (refused.status_code, refused.get_json()) == (403, envelope("FORBIDDEN"))
    other = admin.post(CLIENTS, {"name": "c", "scopes": ["sms:message:send"]}).get_json()
    for client_id in (other["clientId"], admin.client_id):  # another client, and itself
        refused = admin.patch(f"{CLIENTS}/{client_id}", {"audiences": [PRIVATE_API]})
        assert (refused.status_code, refused.get_json()) == (403, envelope("FORBIDDEN"))
        assert admin.get(f"{CLIENTS}/{client_id}").get_json()["audiences"] == []
    # Nothing was granted: no token for the private API.
    answer = get_token(admin.client_id, admin.secret, resource=PRIVATE_API)
    assert answer.get_json()["error"] == "invalid_target"


def test_AU02_a_caller_grants_the_audiences_it_holds(app, make_admin):
    caller = make_admin(audiences=[PRIVATE_API])
    created = caller.post(CLIENTS, {"name": "c", "scopes": ["sms:message:send"],
                                    "audiences": [PRIVATE_API, app.config["DEFAULT_AUDIENCE"]]})
    assert created.status_code == 201, created.get_json()
    narrower = make_admin()
    # A client with an audience the caller cannot use is beyond it, like one with more scopes.
    refused = narrower.patch(f"{CLIENTS}/{created.get_json()['clientId']}", {"name": "renamed"})
    assert refused.status_code == 403


def test_AU02_a_client_disabled_by_an_operator_stays_disabled_for_api_callers(app, admin):
    from authserver.credentials import clients as client_service

    created = admin.post(CLIENTS, {"name": "c", "scopes": ["sms:message:send"]}).get_json()
    with app.app_context():
        client_service.disable_client(created["clientId"], actor="operator:alice")
    refused = admin.patch(f"{CLIENTS}/{created['clientId']}", {"enabled": True})
    assert (refused.status_code, refused.get_json()) == (403, envelope("FORBIDDEN"))
    assert admin.get(f"{CLIENTS}/{created['clientId']}").get_json()["enabled"] is False
    # Other changes are still allowed, and the operator can enable it again.
    assert admin.patch(f"{CLIENTS}/{created['clientId']}", {"name": "n"}).status_code == 200
    with app.app_context():
        client_service.update_client(created["clientId"], actor="operator:alice",
                                     changes={"enabled": True})
    # A client disabled through the API may be enabled again through the API.
    assert admin.patch(f"{CLIENTS}/{created['clientId']}", {"enabled": False}).status_code == 200
    assert admin.patch(f"{CLIENTS}/{created['clientId']}", {"enabled": True}).status_code == 200
