"""The OpenAPI 3.1 document of the admin API, served at ``GET /openapi.json``.

Schemas are the pydantic models that validate the requests (``admin.schemas``); this module
only lays out the operations. Limits that depend on the running app (the scope enum, the
token lifetime cap, the validity cap) are filled in by the models' hooks when the document is
built. Policies the document states:

- Authentication: a bearer JWT from this server's token endpoint holding
  ``account-management:manage`` (audit logs: ``audit-logs:read`` also); API keys get 403.
- A caller never grants more than it holds: every scope it sets, and every scope of an object
  it changes, deletes or whose secret it rotates, must be covered by its own scopes
  (umbrella-aware), else 403. A 403 names the scopes in ``missingScopes``, and its
  ``description`` says whether any one of them (the operation's scopes) or each of them (scopes
  being granted or held by the object) is needed. A key created without ``scopeGuids`` gets the
  caller's scopes; a create needs at least one scope.
- Creates answer 201 with a ``Location`` header naming the new object. Deletes answer 204; the
  object is gone, its audit events stay.
- ``PUT /settings/2/api-keys/{id}`` keeps the platform's semantics: a field present in the body
  replaces the stored value, an omitted field keeps its stored value, null is refused, and at
  least one field is needed. ``scopeGuids: []`` leaves the key access to nothing;
  ``allowedIPs: []`` allows any address; ``enabled: false`` revokes the key for good (``true``
  on a disabled key is refused). ``PUT /settings/2/oauth-clients/{id}`` replaces the client's
  whole editable representation: every member is required (``jwks`` for private_key_jwt
  clients only).
- ``PATCH`` takes a JSON merge patch (RFC 7396, ``application/merge-patch+json``): a member
  sets its field, an omitted member keeps it, null removes it. Removable: a key's
  ``allowedIPs`` (= any address); a client's ``tokenTtl`` (= server default), ``audiences``
  (= none) and ``jwks``. A patch that changes nothing answers 200 and records nothing.
- A client's ``authMethod`` may change: to private_key_jwt with a ``jwks`` (its secrets are
  dropped); from private_key_jwt to a secret method the client has no secret
  (``hasSecret: false``) until rotate-secret issues one, shown once.
- Bodies are strict: a JSON object with only the listed fields, of the listed types, with no
  coercion (``"enabled": "false"``, ``"tokenTtl": 3600.0`` are 400: integers are written
  without a fraction); read-only and unknown fields are 400 naming the field; timestamps are
  RFC 3339. Query parameters must be known and given once.
- Lists are paged: ``page`` from 0 (past the end: an empty page), ``size`` 1..100. The body's
  ``paging`` and the ``X-Total-Count`` header give the total; the ``Link`` header (RFC 8288)
  names the ``first``, ``prev``, ``next`` and ``last`` pages.
- Accounts: a caller acts inside its own account. Another account's key, client or audit
  events answer exactly as ids that do not exist (the same 404). A caller of the platform
  account may name another account with the ``accountId`` query parameter (key and client
  operations, the audit log); anybody else naming one gets that 404. ``accounts:manage`` (the
  platform account only; no umbrella covers it) manages accounts under /settings/2/accounts.
- Unknown and malformed ids are the same 404. Every field name is camelCase (the CLI's
  ``--json`` and the audit trail use the same names).
- ``validTo`` is at most MAX_API_KEY_VALIDITY_DAYS from the time it is set; ``/0`` ranges in
  ``allowedIPs`` are refused (the empty list already allows any address).
- Creates, updates, deletes and rotations count against ADMIN_WRITE_RATE_LIMIT per caller (429).
"""

from __future__ import annotations

from flask import current_app
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from authserver.admin import schemas
from authserver.admin.validation import JSON, MERGE_PATCH
from authserver.config import admin_audience

REF = "#/components/schemas/{model}"
ERRORS = {
    400: "Bad request: `validationErrors` names each bad field or query parameter.",
    401: "Missing, invalid, expired or revoked bearer token.",
    403: "API key used, or a scope missing: `missingScopes` names the scopes.",
    404: "No such object (unknown, malformed and other accounts' ids alike), or an accountId "
         "the caller may not name.",
    413: "Request body larger than the server's limit.",
    415: "Request body of another media type than the one documented.",
    429: "Too many creates/updates/deletes/rotations by this caller.",
    500: "Unexpected server error.",
    503: "Database unavailable; retry after `Retry-After` seconds.",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.",
                               "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
CHALLENGE = {"WWW-Authenticate": {"description": "RFC 6750 challenge.",
                                  "schema": {"type": "string"}}}
LOCATION = {"Location": {"description": "The new object's URL (a path on this server).",
                         "schema": {"type": "string"}, "required": True}}
PAGING_HEADERS = {
    "Link": {"description": "RFC 8288 links to the first, prev, next and last pages.",
             "schema": {"type": "string"}, "required": True},
    "X-Total-Count": {"description": "Number of matching items on all pages.",
                      "schema": {"type": "string", "pattern": "^[0-9]+$"}, "required": True},
}
WRITE_ERRORS = (400, 404, 413, 415, 429)
RESOURCE_SERVERS_WRITE = (
    "Needs resource-servers:manage, which only credentials of the platform account hold; "
    "anybody else gets 403. The body is the manifest the resource server's guard exports "
    "(guard.routes(), `resource-demo routes --json`); it is checked whole (every scope in the "
    "catalogue) and replaces the stored one, or is refused with nothing written. The name: "
    + "lowercase letters, digits, '.', '_' and '-' (1 to 64).")
RESOURCE_SERVERS_READ = "Accepts resource-servers:manage or account-management:manage."
REACH = ("Every registered resource server with the endpoints this credential passes, by the "
         "guard's rule: one of the scopes it presents is among the route's accepted scopes, "
         "and API keys only where the route accepts them. A client presents any scope its "
         "allowed scopes cover (narrowed tokens) and only reaches resource servers accepting "
         "an audience its tokens can carry.")
NARROWEST = ("The scope set that reaches every chosen endpoint and grants least: fewest scopes "
             "granted counting what umbrellas cover, then fewest scopes; deterministic. 400 "
             "names endpoints that are not registered, that refuse API keys (credentialKind "
             "apiKey), or that only platform-only scopes reach (customer accounts).")
ACCOUNTS_ONLY = ("Needs accounts:manage, which only credentials of the platform account hold; "
                 "anybody else gets 403.")


class _Generator(GenerateJsonSchema):
    """JSON Schema without pydantic's titles and without ``default: null`` on optional
    members (omitted means "not given", which null would not say)."""

    def field_title_should_be_set(self, schema) -> bool:
        return False

    def generate(self, schema, mode="validation"):
        return _strip(super().generate(schema, mode))


def _strip(node):
    if isinstance(node, dict):
        return {key: _strip(value) for key, value in node.items()
                if not (key == "default" and value is None) and key != "title"}
    if isinstance(node, list):
        return [_strip(item) for item in node]
    return node


def _components() -> dict:
    _, top = models_json_schema([(model, "validation") for model in schemas.COMPONENTS],
                                ref_template=REF, union_format="primitive_type_array",
                                schema_generator=_Generator)
    return _strip(top["$defs"])


def _ref(model: type[BaseModel]) -> dict:
    return {"$ref": REF.format(model=model.__name__)}


def _query_parameters(model: type[BaseModel]) -> list[dict]:
    schema = model.model_json_schema(by_alias=True, union_format="primitive_type_array",
                                     schema_generator=_Generator)
    parameters = []
    for name, field_schema in schema.get("properties", {}).items():
        field_schema = dict(field_schema)
        description = field_schema.pop("description", "")
        parameters.append({"name": name, "in": "query", "required": False,
                           "schema": field_schema, "description": description})
    return parameters


def _error_responses(statuses) -> dict:
    responses = {}
    for status in sorted(set(statuses)):
        response = {"description": ERRORS[status],
                    "content": {JSON: {"schema": _ref(schemas.ErrorEnvelope)}}}
        if status in (429, 503):
            response["headers"] = RETRY_AFTER
        if status in (401, 403):
            response["headers"] = CHALLENGE
        responses[str(status)] = response
    return responses


def _operation(operation_id: str, summary: str, status: int, description: str,
               answer: type[BaseModel] | None, *, errors=(), query=schemas.EmptyQuery,
               path_parameter: str | None = None, body: type[BaseModel] | None = None,
               media_type: str = JSON, body_required: bool = True,
               headers: dict | None = None) -> dict:
    ok: dict = {"description": description}
    if answer is not None:
        ok["content"] = {JSON: {"schema": _ref(answer)}}
    if headers:
        ok["headers"] = headers
    operation: dict = {"operationId": operation_id, "summary": summary,
                       "responses": {str(status): ok,
                                     **_error_responses((401, 403, 500, 503, 400, *errors))}}
    parameters = _query_parameters(query)
    if path_parameter:
        parameters.insert(0, {"name": path_parameter, "in": "path", "required": True,
                              "schema": {"type": "string"}})
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {"required": body_required,
                                    "content": {media_type: {"schema": _ref(body)}}}
    return operation


def _created_too(operation: dict) -> dict:
    """A PUT that creates when the object is new: 201 with Location besides its 200."""
    ok = operation["responses"]["200"]
    operation["responses"]["201"] = {**ok, "description": "Registered.", "headers": LOCATION}
    return operation


def _paths() -> dict:
    # A key or a client, in the caller's account or the one it names.
    key = {"path_parameter": "apiKeyId", "query": schemas.AccountQuery}
    client = {"path_parameter": "clientId", "query": schemas.AccountQuery}
    return {
        "/settings/2/api-keys": {
            "get": _operation("listApiKeys", "List API keys (no secrets)", 200,
                              "A page of keys.", schemas.ApiKeyList, errors=(404,),
                              query=schemas.ApiKeyListQuery, headers=PAGING_HEADERS),
            "post": _operation("createApiKey", "Create an API key (only name required)", 201,
                               "The key, with its secret shown once.",
                               schemas.ApiKeyWithSecret, errors=(404, 413, 415, 429),
                               query=schemas.AccountQuery, body=schemas.ApiKeyCreate,
                               headers=LOCATION),
        },
        "/settings/2/api-keys/{apiKeyId}": {
            "get": _operation("getApiKey", "Get an API key (no secret)", 200, "The key.",
                              schemas.ApiKey, errors=(404,), **key),
            "put": _operation("updateApiKey", "Update an API key (omitted fields stay)", 200,
                              "The updated key.", schemas.ApiKey, errors=WRITE_ERRORS,
                              **key, body=schemas.ApiKeyUpdate),
            "patch": _operation("patchApiKey", "Merge-patch an API key (RFC 7396)", 200,
                                "The updated key.", schemas.ApiKey, errors=WRITE_ERRORS,
                                **key, body=schemas.ApiKeyPatch,
                                media_type=MERGE_PATCH),
            "delete": _operation("deleteApiKey", "Delete an API key (the audit trail stays)",
                                 204, "Deleted.", None, errors=(404, 429),
                                 **key),
        },
        "/settings/2/oauth-clients": {
            "get": _operation("listOAuthClients", "List OAuth clients (no secrets)", 200,
                              "A page of clients.", schemas.OAuthClientList, errors=(404,),
                              query=schemas.OAuthClientListQuery, headers=PAGING_HEADERS),
            "post": _operation("createOAuthClient", "Register an OAuth client", 201,
                               "The client, with its secret shown once.",
                               schemas.OAuthClientWithSecret, errors=(404, 413, 415, 429),
                               query=schemas.AccountQuery, body=schemas.OAuthClientCreate,
                               headers=LOCATION),
        },
        "/settings/2/oauth-clients/{clientId}": {
            "get": _operation("getOAuthClient", "Get an OAuth client (no secret)", 200,
                              "The client.", schemas.OAuthClient, errors=(404,),
                              **client),
            "put": _operation("replaceOAuthClient", "Replace an OAuth client's editable fields",
                              200, "The updated client.", schemas.OAuthClient,
                              errors=WRITE_ERRORS, **client,
                              body=schemas.OAuthClientReplace),
            "patch": _operation("patchOAuthClient", "Merge-patch an OAuth client (RFC 7396)",
                                200, "The updated client.", schemas.OAuthClient,
                                errors=WRITE_ERRORS, **client,
                                body=schemas.OAuthClientPatch, media_type=MERGE_PATCH),
            "delete": _operation("deleteOAuthClient",
                                 "Delete an OAuth client (the audit trail stays)", 204,
                                 "Deleted.", None, errors=(404, 429), **client),
        },
        "/settings/2/oauth-clients/{clientId}/rotate-secret": {
            "post": _operation("rotateOAuthClientSecret", "Issue a new client secret", 200,
                               "The client, with its new secret shown once.",
                               schemas.OAuthClientWithSecret, errors=WRITE_ERRORS,
                               **client, body=schemas.RotateSecret,
                               body_required=False),
        },
        "/settings/2/scopes": {
            "get": _operation("listScopes", "The scope catalogue by category", 200,
                              "The catalogue.", schemas.ScopeCatalogue),
        },
        "/settings/2/scopes/narrowest": {
            "post": {**_operation("narrowestScopes",
                                  "The narrowest scopes reaching chosen endpoints", 200,
                                  "The scopes.", schemas.NarrowestScopes,
                                  errors=(404, 413, 415, 429), query=schemas.AccountQuery,
                                  body=schemas.NarrowestRequest),
                     "description": NARROWEST},
        },
        "/settings/2/api-keys/{apiKeyId}/reach": {
            "get": {**_operation("getApiKeyReach", "What an API key can call", 200,
                                 "Its endpoints, by resource server.", schemas.Reach,
                                 errors=(404,), **key),
                    "description": REACH},
        },
        "/settings/2/oauth-clients/{clientId}/reach": {
            "get": {**_operation("getOAuthClientReach", "What an OAuth client can call", 200,
                                 "Its endpoints, by resource server.", schemas.Reach,
                                 errors=(404,), **client),
                    "description": REACH},
        },
        "/settings/2/resource-servers": {
            "get": {**_operation("listResourceServers", "List registered resource servers",
                                 200, "A page of resource servers, by name.",
                                 schemas.ResourceServerList,
                                 query=schemas.ResourceServerListQuery,
                                 headers=PAGING_HEADERS),
                    "description": RESOURCE_SERVERS_READ},
        },
        "/settings/2/resource-servers/{name}": {
            "get": {**_operation("getResourceServer", "Get a resource server's manifest", 200,
                                 "The resource server.", schemas.ResourceServer,
                                 errors=(404,), path_parameter="name"),
                    "description": RESOURCE_SERVERS_READ},
            "put": {**_created_too(_operation(
                "putResourceServer", "Register or replace a resource server's route manifest",
                200, "Replaced.", schemas.ResourceServer, errors=WRITE_ERRORS,
                path_parameter="name", body=schemas.Manifest)),
                    "description": RESOURCE_SERVERS_WRITE},
            "delete": {**_operation("deleteResourceServer", "Forget a resource server", 204,
                                    "Deleted.", None, errors=(404, 429),
                                    path_parameter="name"),
                       "description": RESOURCE_SERVERS_WRITE},
        },
        "/audit/1/logs": {
            "get": {**_operation("listAuditLogs", "The audit trail (newest first)", 200,
                                 "A page of events.", schemas.AuditLogList, errors=(404,),
                                 query=schemas.AuditQuery, headers=PAGING_HEADERS),
                    "description": "Accepts audit-logs:read or account-management:manage. "
                                   "The events about the account's records and those its "
                                   "callers caused."},
        },
        "/settings/2/accounts": {
            "get": {**_operation("listAccounts", "List accounts (oldest first)", 200,
                                 "A page of accounts.", schemas.AccountList,
                                 query=schemas.AccountListQuery, headers=PAGING_HEADERS),
                    "description": ACCOUNTS_ONLY},
            "post": {**_operation("createAccount", "Create a customer account", 201,
                                  "The account.", schemas.Account, errors=(413, 415, 429),
                                  body=schemas.AccountCreate, headers=LOCATION),
                     "description": ACCOUNTS_ONLY},
        },
        "/settings/2/accounts/{accountId}": {
            "get": {**_operation("getAccount", "Get an account", 200, "The account.",
                                 schemas.Account, errors=(404,), path_parameter="accountId"),
                    "description": ACCOUNTS_ONLY},
            "put": {**_operation("updateAccount", "Rename, disable or enable an account", 200,
                                 "The updated account.", schemas.Account, errors=WRITE_ERRORS,
                                 path_parameter="accountId", body=schemas.AccountUpdate),
                    "description": ACCOUNTS_ONLY},
        },
        "/openapi.json": {
            "get": {"operationId": "getOpenApiDocument", "summary": "This document",
                    "security": [],
                    "responses": {"200": {"description": "OpenAPI 3.1 document.",
                                          "content": {JSON: {"schema": {"type": "object"}}}}}},
        },
    }


def document() -> dict:
    """The OpenAPI 3.1 document for the current app (its catalogue and limits)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "authserver admin API", "version": "1",
                 "description": "Policies:\n" + __doc__.split("states:", 1)[1].strip()},
        "servers": [{"url": current_app.config["ISSUER"].rstrip("/")}],
        "security": [{"bearerAuth": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "An access token from POST /oauth2/token holding "
                               "account-management:manage (audit logs: audit-logs:read "
                               "also), requested with resource=" + admin_audience(
                                   current_app.config) + " (the admin API's own audience; "
                               "tokens for the resource servers' audience are refused with "
                               "401). API keys (Authorization: App) are refused with 403."}},
            "schemas": _components(),
        },
    }
