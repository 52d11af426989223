"""Registering clients with ``dpop_bound_access_tokens`` (RFC 9449 §5.2) from the admin API,
the CLI and the web UI, and what the flag does at the token endpoint (threat model DP04)."""

from __future__ import annotations

import json
import re

import pytest
from dpop_support import DPoPKey, assert_dpop_error, request_token, token_url
from test_admin_api import CLIENTS, Caller, validation_errors
from ui_support import UI, create_operator

import authserver.admin.cli
from authserver.credentials import clients
from authserver.storage.models import AuditEvent

ADMIN_SCOPE = "account-management:manage sms:manage"


@pytest.fixture
def admin(app, client, oauth_clients, get_token):
    client_id, secret = oauth_clients.create(scope=ADMIN_SCOPE)
    # The admin API's own audience (AU01).
    token = get_token(client_id, secret, resource=app.config["ISSUER"]).get_json()["access_token"]
    return Caller(client, client_id, secret, token)


def registered_flag(app, client_id: str) -> bool:
    with app.app_context():
        return clients.get_client(client_id).dpop_bound_access_tokens


def test_DP04_admin_api_create_and_update(app, client, admin):
    created = admin.post(CLIENTS, {"name": "bound", "scopes": ["sms:message:send"],
                                   "dpopBoundAccessTokens": True})
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["dpopBoundAccessTokens"] is True
    credentials = (body["clientId"], body["clientSecret"])
    assert_dpop_error(request_token(client, credentials))
    key = DPoPKey("EdDSA")
    granted = request_token(client, credentials, key.proof("POST", token_url(app)))
    assert granted.get_json()["token_type"] == "DPoP"

    path = f"{CLIENTS}/{body['clientId']}"
    assert admin.get(path).get_json()["dpopBoundAccessTokens"] is True
    updated = admin.patch(path, {"dpopBoundAccessTokens": False})
    assert updated.status_code == 200 and updated.get_json()["dpopBoundAccessTokens"] is False
    assert request_token(client, credentials).get_json()["token_type"] == "Bearer"
    assert admin.patch(path, {"dpopBoundAccessTokens": True}).status_code == 200
    assert_dpop_error(request_token(client, credentials))
    with app.app_context():
        from sqlalchemy import select

        from authserver.storage.db import db
        events = db.session.scalars(select(AuditEvent).where(
            AuditEvent.object_id == body["clientId"]).order_by(AuditEvent.id)).all()
        changes = [event.changes for event in events if event.action == "update"]
        assert changes and "dpopBoundAccessTokens" in changes[-1]


def test_DP04_admin_api_default_and_type_checks(admin):
    created = admin.post(CLIENTS, {"name": "plain", "scopes": ["sms:message:send"]})
    assert created.get_json()["dpopBoundAccessTokens"] is False
    path = f"{CLIENTS}/{created.get_json()['clientId']}"
    for value in ("true", 1, None, [True]):
        assert "dpopBoundAccessTokens" in validation_errors(
            admin.patch(path, {"dpopBoundAccessTokens": value}))


def test_DP04_admin_api_openapi_documents_the_flag(client):
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    for name in ("OAuthClient", "OAuthClientCreate", "OAuthClientReplace", "OAuthClientPatch"):
        assert schemas[name]["properties"]["dpopBoundAccessTokens"]["type"] == "boolean"


def test_DP04_cli_create_and_update(app, client, runner):
    main = authserver.admin.cli.main
    result = runner.invoke(main, ["clients", "create", "--name", "svc", "--scope", "message:send",
                                  "--dpop-bound-access-tokens", "--json"])
    assert result.exit_code == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["dpopBoundAccessTokens"] is True
    credentials = (created["clientId"], created["clientSecret"])
    assert_dpop_error(request_token(client, credentials))

    result = runner.invoke(main, ["clients", "update", created["clientId"],
                                  "--no-dpop-bound-access-tokens", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["dpopBoundAccessTokens"] is False
    assert request_token(client, credentials).status_code == 200
    result = runner.invoke(main, ["clients", "update", created["clientId"],
                                  "--dpop-bound-access-tokens"])
    assert result.exit_code == 0 and "dpopBoundAccessTokens: True" in result.stdout
    assert registered_flag(app, created["clientId"]) is True

    plain = json.loads(runner.invoke(main, ["clients", "create", "--name", "p", "--scope",
                                            "message:send", "--json"]).stdout)
    assert plain["dpopBoundAccessTokens"] is False
    nothing = runner.invoke(main, ["clients", "update", plain["clientId"]])
    assert nothing.exit_code == 1 and "at least one change" in nothing.stderr
    unknown = runner.invoke(main, ["clients", "update", "nope", "--name", "x"])
    assert unknown.exit_code == 1 and "not found" in unknown.stderr


@pytest.fixture
def signed_in(app, client):
    app.config.update(UI_LOGIN_RATE_LIMIT="", UI_LOGIN_ADDRESS_RATE_LIMIT="")
    create_operator(app)
    ui = UI(client)
    assert ui.sign_in().status_code == 303
    return ui


def test_DP04_web_ui_create_and_toggle(app, client, signed_in):
    form = signed_in.client.get("/ui/clients/new").text
    assert 'name="dpop_bound_access_tokens"' in form
    response = signed_in.post("/ui/clients/new", {"name": "svc", "scopes": "message:send",
                                                  "auth_method": "client_secret_basic",
                                                  "dpop_bound_access_tokens": "true"})
    assert response.status_code == 303
    client_id = re.search(r"/ui/clients/([0-9a-f]+)/secret", response.headers["Location"]).group(1)
    assert registered_flag(app, client_id) is True
    detail = signed_in.client.get(f"/ui/clients/{client_id}").text
    assert "Required: tokens only with a DPoP proof" in detail

    toggled = signed_in.post(f"/ui/clients/{client_id}/dpop",
                             {"dpop_bound_access_tokens": "false"},
                             form_page=f"/ui/clients/{client_id}")
    assert toggled.status_code == 303
    assert registered_flag(app, client_id) is False
    assert "Optional: tokens are bound" in signed_in.client.get(f"/ui/clients/{client_id}").text
    signed_in.post(f"/ui/clients/{client_id}/dpop", {"dpop_bound_access_tokens": "true"},
                   form_page=f"/ui/clients/{client_id}")
    assert registered_flag(app, client_id) is True

    unchecked = signed_in.post("/ui/clients/new", {"name": "plain", "scopes": "message:send",
                                                   "auth_method": "client_secret_basic"})
    plain_id = re.search(r"/ui/clients/([0-9a-f]+)/secret",
                         unchecked.headers["Location"]).group(1)
    assert registered_flag(app, plain_id) is False
    assert signed_in.client.post("/ui/clients/unknown/dpop", data={
        "csrf_token": signed_in.token("/ui/clients"), "dpop_bound_access_tokens": "true"
    }).status_code == 404


def test_DP03_admin_api_refuses_a_bound_token_sent_as_bearer(app, client, oauth_clients):
    """The admin API is a protected resource too: a DPoP-bound token is no bearer token."""
    credentials = oauth_clients.create(scope=ADMIN_SCOPE)
    key = DPoPKey()
    admin_audience = app.config["ISSUER"]  # the admin API's own audience (AU01)
    bound = request_token(client, credentials, key.proof("POST", token_url(app)),
                          resource=admin_audience).get_json()
    assert bound["token_type"] == "DPoP"
    refused = client.get(CLIENTS, headers={"Authorization": f"Bearer {bound['access_token']}"})
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    bearer = request_token(client, credentials,
                           resource=admin_audience).get_json()["access_token"]
    assert client.get(CLIENTS, headers={"Authorization": f"Bearer {bearer}"}).status_code == 200
