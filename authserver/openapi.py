"""The OpenAPI 3.1 document of the admin API, served at ``GET /openapi.json``.

Built in Python rather than shipped as a data file so that limits (page size, name length,
allowlist size, auth methods, validity policy) and the scope enum come from the code and
the catalogue that enforce them and cannot drift. Policies the document states:

- Authentication: a bearer JWT from this server's token endpoint holding
  ``account-management:manage`` (audit logs: ``audit-logs:read`` also); API keys get 403.
- A caller never grants more than it holds: every scope it sets, and every scope of an object
  it changes or whose secret it rotates, must be covered by its own scopes (umbrella-aware),
  else 403. A key created without ``scopeGuids`` gets the caller's scopes; a create needs at
  least one scope, an update with ``[]`` leaves the key access to nothing. Clients must name
  their ``scopes`` (at least one).
- Bodies are strict: a JSON object with only the listed fields, of the listed types, with no
  coercion (``"enabled": "false"``, ``"tokenTtl": 3600.0`` are 400: integers are written
  without a fraction); read-only and unknown fields are 400 naming the field; timestamps are
  RFC 3339. PUT changes only the fields it names (at least one). Query parameters must be
  known and given once; ``size`` is 1..100, ``page`` from 0 (past the end: an empty page).
- Unknown and malformed ids are the same 404. Client fields are camelCase; a client's scopes
  are the list ``scopes``. ``authMethod`` is fixed at registration.
- ``validTo`` is at most MAX_API_KEY_VALIDITY_DAYS from the time it is set; ``/0`` ranges in
  ``allowedIPs`` are refused (the empty list already allows any address).
- Creates, updates and rotations count against ADMIN_WRITE_RATE_LIMIT per caller (429).
"""

from __future__ import annotations

from flask import current_app

from .addresses import MAX_ALLOWED_IPS
from .admin_input import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, TEXT_MAX
from .clients import AUTH_METHODS, MAX_AUDIENCES
from .scopes import current_catalogue

JSON = "application/json"
ERRORS = {
    400: "Bad request: `validationErrors` names each bad field or query parameter.",
    401: "Missing, invalid, expired or revoked bearer token.",
    403: "API key used, scope missing, or a scope beyond the caller's own.",
    404: "No such object (unknown and malformed ids alike).",
    413: "Request body larger than the server's limit.",
    415: "Request body is not application/json.",
    429: "Too many creates/updates/rotations by this caller.",
    500: "Unexpected server error.",
    503: "Database unavailable; retry after `Retry-After` seconds.",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.",
                               "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
CHALLENGE = {"WWW-Authenticate": {"description": "RFC 6750 challenge.",
                                  "schema": {"type": "string"}}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict, required: list[str] | None = None, **extra) -> dict:
    schema = {"type": "object", "properties": properties, "additionalProperties": False, **extra}
    if required:
        schema["required"] = required
    return schema


def _error_responses(*statuses: int) -> dict:
    responses = {}
    for status in statuses:
        response = {"description": ERRORS[status],
                    "content": {JSON: {"schema": _ref("ErrorEnvelope")}}}
        if status in (429, 503):
            response["headers"] = RETRY_AFTER
        if status in (401, 403):
            response["headers"] = CHALLENGE
        responses[str(status)] = response
    return responses


def _operation(operation_id: str, summary: str, ok: tuple[int, str, str], *,
               errors: tuple[int, ...], parameters: list | None = None,
               body: str | None = None, body_required: bool = True) -> dict:
    status, description, schema = ok
    operation = {"operationId": operation_id, "summary": summary,
                 "responses": {str(status): {"description": description,
                                             "content": {JSON: {"schema": _ref(schema)}}},
                               **_error_responses(401, 403, 500, 503, *errors)}}
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = {"required": body_required,
                                    "content": {JSON: {"schema": _ref(body)}}}
    return operation


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def _path(name: str, schema: dict) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema}


PAGING_PARAMETERS = [
    _query("page", {"type": "integer", "minimum": 0, "maximum": 999_999_999, "default": 0},
           "Page number from 0; past the last page the list is empty."),
    _query("size", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE,
                    "default": DEFAULT_PAGE_SIZE}, "Page size."),
]
TEXT = {"type": "string", "minLength": 1, "maxLength": TEXT_MAX,
        "pattern": "^[^\\x00-\\x1f\\x7f]+$"}
FILTERS = [_query("name", TEXT, "Exact name."),
           _query("enabled", {"type": "boolean"}, "Only enabled (true) or disabled (false).")]
TIMESTAMP = {"type": "string", "format": "date-time",
             "description": "RFC 3339, UTC on output (2027-01-31T12:00:00Z); offsets are "
                            "accepted on input."}
NULLABLE_TIMESTAMP = {**TIMESTAMP, "type": ["string", "null"]}


def _schemas() -> dict:
    scope_names = current_catalogue().names
    scope = {"type": "string", "enum": scope_names}
    max_days = current_app.config["MAX_API_KEY_VALIDITY_DAYS"]
    name = {"type": "string", "minLength": 1, "maxLength": TEXT_MAX,
            "pattern": "^[^\\x00-\\x1f\\x7f]*[^\\s\\x00-\\x1f\\x7f][^\\x00-\\x1f\\x7f]*$"}
    scope_list = {"type": "array", "items": scope, "maxItems": len(scope_names),
                  "description": "Scope names from GET /settings/2/scopes; each must be covered "
                                 "by the caller's own scopes. `[]` = access to nothing."}
    allowed_ips = {"type": "array", "maxItems": MAX_ALLOWED_IPS,
                   "items": {"type": "string", "maxLength": 64},
                   "description": "IPv4/IPv6 addresses or CIDR ranges (host bits zero); "
                                  "empty = any address; /0 ranges are refused."}
    valid_to = {**TIMESTAMP, "description": f"After validFrom; at most {max_days} days from now "
                                            "(default: validFrom + 365 days)."}
    api_key = {
        "id": {"type": "string", "pattern": "^[0-9A-F]{32}$"},
        "name": {"type": "string"},
        "scopeGuids": {"type": "array", "items": {"type": "string"}},
        "validFrom": TIMESTAMP, "validTo": TIMESTAMP,
        "allowedIPs": {"type": "array", "items": {"type": "string"}},
        "enabled": {"type": "boolean"},
        "createdAt": TIMESTAMP, "lastUsedAt": NULLABLE_TIMESTAMP,
    }
    key_fields = list(api_key)
    secret_key = {"apiKeySecret": {"type": "string", "pattern": "^asak_[0-9A-Za-z]{38}$",
                                   "description": "Shown in this answer only."}}
    jwks = {"type": "object", "description": "Public JWK Set (private_key_jwt clients only).",
            "properties": {"keys": {"type": "array", "items": {"type": "object"}}},
            "required": ["keys"]}
    token_ttl = {"type": ["integer", "null"], "minimum": 60,
                 "maximum": current_app.config["MAX_ACCESS_TOKEN_TTL"],
                 "description": "Token lifetime in seconds; null = the server default."}
    audiences = {"type": "array", "maxItems": MAX_AUDIENCES,
                 "items": {"type": "string", "maxLength": 255},
                 "description": "Extra audiences (absolute URIs) the client may request."}
    client = {
        "clientId": {"type": "string"}, "name": {"type": "string"},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "audiences": {"type": "array", "items": {"type": "string"}},
        "tokenTtl": {"type": ["integer", "null"]},
        "authMethod": {"type": "string", "enum": list(AUTH_METHODS)},
        "jwks": {"type": ["object", "null"]},
        "enabled": {"type": "boolean"},
        "previousSecretExpiresAt": NULLABLE_TIMESTAMP,
        "createdAt": TIMESTAMP, "updatedAt": TIMESTAMP,
    }
    client_fields = list(client)
    paging = _object({"page": {"type": "integer", "minimum": 0},
                      "pageSize": {"type": "integer", "minimum": 1},
                      "totalCount": {"type": "integer", "minimum": 0},
                      "totalPages": {"type": "integer", "minimum": 0},
                      "orderBy": {"type": "string"},
                      "orderDirection": {"type": "string", "enum": ["ASC", "DESC"]}},
                     ["page", "pageSize", "totalCount", "totalPages", "orderBy",
                      "orderDirection"])
    scope_entry = _object({"name": {"type": "string"}, "category": {"type": "string"},
                           "group": {"type": "string"}, "description": {"type": "string"},
                           "documented": {"type": "boolean"},
                           "coveredBy": {"type": "array", "items": {"type": "string"}}},
                          ["name", "category", "group", "description", "documented",
                           "coveredBy"])
    audit_event = _object({"id": {"type": "integer"}, "occurredAt": TIMESTAMP,
                           "actor": {"type": "string"}, "action": {"type": "string"},
                           "objectType": {"type": "string"}, "objectId": {"type": "string"},
                           "changes": {"type": "object", "additionalProperties": _object(
                               {"before": {}, "after": {}}, ["before", "after"])}},
                          ["id", "occurredAt", "actor", "action", "objectType", "objectId",
                           "changes"])
    return {
        "ErrorEnvelope": _object({"requestError": _object({"serviceException": _object(
            {"messageId": {"type": "string"}, "text": {"type": "string"},
             "validationErrors": {"type": "object", "additionalProperties": {
                 "type": "array", "items": {"type": "string"}}}},
            ["messageId", "text"])}, ["serviceException"])}, ["requestError"]),
        "Paging": paging,
        "ApiKey": _object(api_key, key_fields),
        "ApiKeyWithSecret": _object({**secret_key, **api_key}, ["apiKeySecret", *key_fields]),
        "ApiKeyList": _object({"apiKeys": {"type": "array", "items": _ref("ApiKey")},
                               "paging": _ref("Paging")}, ["apiKeys", "paging"]),
        "ApiKeyCreate": _object({"name": name, "scopeGuids": {
            **scope_list, "minItems": 1,
            "description": "Omitted: the caller's own scopes. Each must be covered by the "
                           "caller's own scopes."}, "allowedIPs": allowed_ips,
            "validFrom": {**TIMESTAMP, "description": "Not before now (default: now)."},
            "validTo": valid_to}, ["name"]),
        "ApiKeyUpdate": _object({"name": name, "scopeGuids": scope_list,
                                 "allowedIPs": allowed_ips, "validFrom": TIMESTAMP,
                                 "validTo": valid_to,
                                 "enabled": {"type": "boolean", "description":
                                             "false revokes the key for good."}},
                                minProperties=1),
        "OAuthClient": _object(client, client_fields),
        "OAuthClientWithSecret": _object(
            {"clientSecret": {"type": ["string", "null"],
                              "description": "Shown in this answer only; null for "
                                             "private_key_jwt clients."}, **client},
            ["clientSecret", *client_fields]),
        "OAuthClientList": _object({"oauthClients": {"type": "array",
                                                     "items": _ref("OAuthClient")},
                                    "paging": _ref("Paging")}, ["oauthClients", "paging"]),
        "OAuthClientCreate": _object({
            "name": name, "scopes": {**scope_list, "minItems": 1},
            "tokenTtl": token_ttl, "audiences": audiences,
            "authMethod": {"type": "string", "enum": list(AUTH_METHODS),
                           "default": "client_secret_basic",
                           "description": "Fixed at registration."},
            "jwks": jwks}, ["name", "scopes"]),
        "OAuthClientUpdate": _object({"name": name, "scopes": scope_list, "tokenTtl": token_ttl,
                                      "audiences": audiences, "enabled": {"type": "boolean"},
                                      "jwks": jwks}, minProperties=1),
        "RotateSecret": _object({"gracePeriod": {
            "type": "integer", "minimum": 0, "maximum": 30 * 86400, "default": 0,
            "description": "Seconds the previous secret stays valid."}}),
        "ScopeCatalogue": _object({"categories": {"type": "array", "items": _object(
            {"name": {"type": "string"}, "scopes": {"type": "array", "items": scope_entry}},
            ["name", "scopes"])}}, ["categories"]),
        "AuditLogList": _object({"logs": {"type": "array", "items": audit_event},
                                 "paging": _ref("Paging")}, ["logs", "paging"]),
    }


def _paths() -> dict:
    key_id = _path("apiKeyId", {"type": "string"})
    client_id = _path("clientId", {"type": "string"})
    audit_filters = [
        _query("from", TIMESTAMP, "Events at or after this time."),
        _query("to", TIMESTAMP, "Events before this time."),
        _query("actor", TEXT, "Exact actor, e.g. client:<client_id>, cli, operator:<name>."),
        _query("objectId", TEXT, "Exact object id (API key id or client id)."),
        _query("objectType", TEXT, "api-key or oauth-client."),
    ]
    return {
        "/settings/2/api-keys": {
            "get": _operation("listApiKeys", "List API keys (oldest first, no secrets)",
                              (200, "A page of keys.", "ApiKeyList"), errors=(400,),
                              parameters=FILTERS + PAGING_PARAMETERS),
            "post": _operation("createApiKey", "Create an API key (only name required)",
                               (201, "The key, with its secret shown once.",
                                "ApiKeyWithSecret"),
                               errors=(400, 413, 415, 429), body="ApiKeyCreate"),
        },
        "/settings/2/api-keys/{apiKeyId}": {
            "get": _operation("getApiKey", "Get an API key (no secret)",
                              (200, "The key.", "ApiKey"), errors=(400, 404),
                              parameters=[key_id]),
            "put": _operation("updateApiKey", "Update an API key (enabled=false revokes)",
                              (200, "The updated key.", "ApiKey"),
                              errors=(400, 404, 413, 415, 429), parameters=[key_id],
                              body="ApiKeyUpdate"),
        },
        "/settings/2/oauth-clients": {
            "get": _operation("listOAuthClients", "List OAuth clients (oldest first, no secrets)",
                              (200, "A page of clients.", "OAuthClientList"), errors=(400,),
                              parameters=FILTERS + PAGING_PARAMETERS),
            "post": _operation("createOAuthClient", "Register an OAuth client",
                               (201, "The client, with its secret shown once.",
                                "OAuthClientWithSecret"),
                               errors=(400, 413, 415, 429), body="OAuthClientCreate"),
        },
        "/settings/2/oauth-clients/{clientId}": {
            "get": _operation("getOAuthClient", "Get an OAuth client (no secret)",
                              (200, "The client.", "OAuthClient"), errors=(400, 404),
                              parameters=[client_id]),
            "put": _operation("updateOAuthClient", "Update an OAuth client",
                              (200, "The updated client.", "OAuthClient"),
                              errors=(400, 404, 413, 415, 429), parameters=[client_id],
                              body="OAuthClientUpdate"),
        },
        "/settings/2/oauth-clients/{clientId}/rotate-secret": {
            "post": _operation("rotateOAuthClientSecret", "Issue a new client secret",
                               (200, "The client, with its new secret shown once.",
                                "OAuthClientWithSecret"),
                               errors=(400, 404, 413, 415, 429), parameters=[client_id],
                               body="RotateSecret", body_required=False),
        },
        "/settings/2/scopes": {
            "get": _operation("listScopes", "The scope catalogue by category",
                              (200, "The catalogue.", "ScopeCatalogue"), errors=(400,)),
        },
        "/audit/1/logs": {
            "get": {**_operation("listAuditLogs", "The audit trail (newest first)",
                                 (200, "A page of events.", "AuditLogList"), errors=(400,),
                                 parameters=audit_filters + PAGING_PARAMETERS),
                    "description": "Accepts audit-logs:read or account-management:manage."},
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
                               "also). API keys (Authorization: App) are refused with 403."}},
            "schemas": _schemas(),
        },
    }
