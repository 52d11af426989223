"""The admin API's OpenAPI 3.1 document (issue 5): its shape, and schemathesis against it.

Schemathesis generates schema-valid and schema-invalid requests for every operation and checks
that the server never answers 5xx, that every status, content type, header and body it sends is
the documented one, that invalid input is refused, and that auth is not ignored. The
"positive data must be accepted" check is left out on purpose: the server validates more than a
schema can say (scopes the caller holds, validity relative to now, CIDR syntax).
"""

from __future__ import annotations

import json
import weakref

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from authserver.credentials import api_keys
from authserver.reach import resource_servers
from authserver.scopes import default_catalogue

ENVELOPE = "#/components/schemas/ErrorEnvelope"


def demo_manifest() -> dict:
    """The demo API's route manifest (``resource-demo routes --json``)."""
    from click.testing import CliRunner

    from resource_demo.demo.cli import main as demo_cli

    result = CliRunner().invoke(demo_cli, ["routes", "--json", "--issuer",
                                           "https://auth.example.test"])
    return json.loads(result.output)
LISTS = ("/settings/2/api-keys", "/settings/2/oauth-clients", "/audit/1/logs",
         "/settings/2/resource-servers")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection,
          ignored_auth, unsupported_method]


@pytest.fixture
def bearer(app, oauth_clients, get_token):
    """Authorization header of a caller holding the whole catalogue (so creates can succeed)."""
    client_id, secret = oauth_clients.create(scope=" ".join(default_catalogue().names),
                                             name="schemathesis")
    answer = get_token(client_id, secret, resource=app.config["ISSUER"])  # ADMIN_AUDIENCE
    assert answer.status_code == 200, answer.get_json()
    return {"Authorization": f"Bearer {answer.get_json()['access_token']}"}


@pytest.fixture
def existing_ids(app, oauth_clients, tenants):
    """Path parameters naming a real key, client and account, so updates reach the services."""
    client_id, _ = oauth_clients.create(scope="sms:manage", name="target")
    with app.app_context():
        record, _ = api_keys.create_api_key(name="target", scopes=["sms:manage"], actor="test")
        resource_servers.register_resource_server("target", demo_manifest(), actor="test")
        return {"apiKeyId": record.id, "clientId": client_id,
                "accountId": tenants.create("target"), "name": "target"}


OPERATIONS = [("GET", "/settings/2/api-keys"), ("POST", "/settings/2/api-keys"),
              ("GET", "/settings/2/api-keys/{apiKeyId}"),
              ("PUT", "/settings/2/api-keys/{apiKeyId}"),
              ("PATCH", "/settings/2/api-keys/{apiKeyId}"),
              ("DELETE", "/settings/2/api-keys/{apiKeyId}"),
              ("GET", "/settings/2/oauth-clients"), ("POST", "/settings/2/oauth-clients"),
              ("GET", "/settings/2/oauth-clients/{clientId}"),
              ("PUT", "/settings/2/oauth-clients/{clientId}"),
              ("PATCH", "/settings/2/oauth-clients/{clientId}"),
              ("DELETE", "/settings/2/oauth-clients/{clientId}"),
              ("POST", "/settings/2/oauth-clients/{clientId}/rotate-secret"),
              ("GET", "/settings/2/scopes"), ("GET", "/audit/1/logs"),
              ("GET", "/settings/2/accounts"), ("POST", "/settings/2/accounts"),
              ("GET", "/settings/2/accounts/{accountId}"),
              ("PUT", "/settings/2/accounts/{accountId}"), ("GET", "/openapi.json"),
              ("GET", "/settings/2/api-keys/{apiKeyId}/reach"),
              ("GET", "/settings/2/oauth-clients/{clientId}/reach"),
              ("POST", "/settings/2/scopes/narrowest"), ("GET", "/settings/2/resource-servers"),
              ("GET", "/settings/2/resource-servers/{name}"),
              ("PUT", "/settings/2/resource-servers/{name}"),
              ("DELETE", "/settings/2/resource-servers/{name}")]


# schemathesis.pytest.from_fixture() needs a pytest-private attribute that pytest 9.2 dropped
# (request.node._nodeid), so each operation runs through the Python API under Hypothesis here.
# The document itself takes no input that could be made invalid: positive only.
RUNS = [pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
        for method, path in OPERATIONS for mode in GenerationMode
        if path != "/openapi.json" or mode is GenerationMode.POSITIVE]


#: The loaded document per app (~70 ms a load; the module's tests share one app per backend).
_SCHEMAS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def loaded_schema(app):
    if app not in _SCHEMAS:
        _SCHEMAS[app] = schemathesis.openapi.from_wsgi("/openapi.json", app)
    return _SCHEMAS[app]


@pytest.mark.parametrize("method, path, mode", RUNS)
def test_schemathesis(app, bearer, existing_ids, method, path, mode):
    operation = loaded_schema(app)[path][method]
    names = {parameter.name for parameter in operation.path_parameters}
    ids = {name: value for name, value in existing_ids.items() if name in names}

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=ids or None))
    @settings(max_examples=25, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def check(case):
        # A made-up query parameter whose value is an empty array goes on the wire as nothing
        # at all; schemathesis still counts the request as schema-violating (a false positive).
        assume(not any(value == [] for value in (case.query or {}).values()))
        case.call_and_validate(headers=bearer, checks=CHECKS)

    check()


# -- the document itself ---------------------------------------------------------------------

def test_document_shape(client):
    response = client.get("/openapi.json")
    assert {(method.upper(), path) for path, item in response.get_json()["paths"].items()
            for method in item} == set(OPERATIONS)
    assert response.status_code == 200 and response.mimetype == "application/json"
    document = response.get_json()
    assert document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        **document["components"]["securitySchemes"]["bearerAuth"],
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert document["security"] == [{"bearerAuth": []}]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            if path == "/openapi.json":
                assert operation["security"] == []
                continue
            for status in ("401", "403", "500", "503"):
                assert status in responses, (method, path, status)
            for status, response in responses.items():
                if int(status) >= 400:
                    schema_ = response["content"]["application/json"]["schema"]
                    assert schema_ == {"$ref": ENVELOPE}, (method, path, status)
            assert responses["503"]["headers"]["Retry-After"]
            if method in ("post", "put", "patch"):
                assert "429" in responses and "413" in responses and "400" in responses
            if method in ("put", "patch", "delete"):
                assert "429" in responses
            if "{" in path:
                assert "404" in responses
            if "201" in responses:  # creates name the new object
                assert responses["201"]["headers"]["Location"]["required"] is True
            if method == "get" and path in LISTS:
                assert {"Link", "X-Total-Count"} <= set(responses["200"]["headers"])
            if method == "patch":
                assert list(operation["requestBody"]["content"]) == [
                    "application/merge-patch+json"]


def test_document_names_every_scope_and_policy(client, app):
    document = client.get("/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    enum = schemas["ApiKeyCreate"]["properties"]["scopeGuids"]["items"]["enum"]
    assert enum == default_catalogue().names
    assert "730 days" in schemas["ApiKeyUpdate"]["properties"]["validTo"]["description"]
    for name in ("ApiKey", "OAuthClient", "ApiKeyCreate", "ApiKeyUpdate", "ApiKeyPatch",
                 "OAuthClientCreate", "OAuthClientReplace", "OAuthClientPatch"):
        assert schemas[name]["additionalProperties"] is False
    for name in ("ApiKey", "OAuthClient"):
        assert not {"apiKeySecret", "clientSecret", "secretHash"} & set(schemas[name]["properties"])
