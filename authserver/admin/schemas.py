"""The admin API's request and response models (pydantic v2).

One definition does two jobs: it checks the shape of a request (``admin.validation``) and it
is the schema the OpenAPI document publishes (``admin.openapi``), so the two cannot drift.
Models are strict: JSON types are never coerced (``"enabled": "false"``, ``"tokenTtl": 3600.0``
are refused) and unknown fields are refused by name (threat model AD03). Rules that need the
database, the catalogue or the clock (scope names, validity windows, CIDR syntax, what the
caller may grant) stay in the services that every front-end shares; the schema states them
through ``json_schema_extra`` hooks that read the running app when the document is built.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from flask import current_app
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

from authserver.clock import TIMESTAMP_RE, parse_isoformat
from authserver.credentials.clients import AUTH_METHODS, MAX_AUDIENCES, NAME_MAX
from authserver.reach import least_privilege
from authserver.reach.resource_servers import METHODS, NAME_PATTERN, Manifest, ManifestRoute
from authserver.scopes import current_catalogue
from authserver.storage.models import ACCOUNT_ID_LENGTH
from resource_demo.guard.addresses import MAX_ALLOWED_IPS

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
MAX_PAGE = 999_999_999
TEXT_MAX = 200
MAX_GRACE_SECONDS = 30 * 86400
#: Printable text with at least one non-space character (what the services accept as a name).
NAME_PATTERN = "^[^\\x00-\\x1f\\x7f]*[^\\s\\x00-\\x1f\\x7f][^\\x00-\\x1f\\x7f]*$"
TEXT_PATTERN = "^[^\\x00-\\x1f\\x7f]+$"
TIMESTAMP_WORDS = "an RFC 3339 timestamp such as 2027-01-31T12:00:00Z"


class Strict(BaseModel):
    """Base of every request model: no coercion, no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid")


# -- field types -----------------------------------------------------------------------------

def _timestamp(value: str) -> str:
    if TIMESTAMP_RE.fullmatch(value) is None:
        raise ValueError(f"must be {TIMESTAMP_WORDS}")
    return value


def _scope_items(schema: dict) -> None:
    """The scope enum and count come from the catalogue the app runs with."""
    names = current_catalogue().names
    schema["items"] = {"type": "string", "enum": names}
    schema["maxItems"] = len(names)


def _max_ttl(schema: dict) -> None:
    for option in schema.get("anyOf", [schema]):
        if option.get("type") == "integer":
            option["maximum"] = current_app.config["MAX_ACCESS_TOKEN_TTL"]


def _valid_to(schema: dict) -> None:
    days = current_app.config["MAX_API_KEY_VALIDITY_DAYS"]
    schema["format"] = "date-time"
    schema["description"] = (f"After validFrom; at most {days} days from the time it is set "
                             "(default at creation: validFrom + 365 days).")


Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX, json_schema_extra={
    "pattern": NAME_PATTERN, "description": "Display name: printable text, not blank."})]
Timestamp = Annotated[str, AfterValidator(_timestamp), Field(json_schema_extra={
    "format": "date-time",
    "description": "RFC 3339 with Z or an offset; UTC on output (2027-01-31T12:00:00Z)."})]
ScopeList = Annotated[list[str], Field(json_schema_extra=_scope_items, description=(
    "Scope names from GET /settings/2/scopes; each must be covered by the caller's own "
    "scopes (umbrella-aware)."))]
AllowedIPs = Annotated[list[Annotated[str, Field(max_length=64)]], Field(
    max_length=MAX_ALLOWED_IPS, description="IPv4/IPv6 addresses or CIDR ranges (host bits "
    "zero); [] allows any address; /0 ranges are refused.")]
Audiences = Annotated[list[Annotated[str, Field(max_length=255)]], Field(
    max_length=MAX_AUDIENCES, description="Extra audiences (absolute URIs) the client may "
    "request with RFC 8707 `resource`.")]
ValidTo = Annotated[str, AfterValidator(_timestamp), Field(json_schema_extra=_valid_to)]
TokenTtl = Annotated[int, Field(ge=60, json_schema_extra=_max_ttl)]
AuthMethod = Literal[AUTH_METHODS]  # type: ignore[valid-type]
DpopBound = Annotated[bool, Field(description=(
    "RFC 9449 §5.2: token requests without a DPoP proof are refused; every token is bound to "
    "the proof's key."))]
Jwks = Annotated[dict[str, Any], Field(json_schema_extra={
    "description": "Public JWK Set (private_key_jwt clients only).",
    "properties": {"keys": {"type": "array", "items": {"type": "object"}}},
    "required": ["keys"]})]


# -- API keys --------------------------------------------------------------------------------

class ApiKeyCreate(Strict):
    """POST /settings/2/api-keys: only ``name`` is required."""

    name: Name
    scopeGuids: Annotated[ScopeList, Field(min_length=1, description=(
        "Omitted: the caller's own scopes. Each must be covered by the caller's own scopes."))
                          ] = None
    allowedIPs: AllowedIPs = None
    validFrom: Annotated[Timestamp, Field(description="Not before now (default: now).")] = None
    validTo: ValidTo = None


class ApiKeyUpdate(Strict):
    """PUT /settings/2/api-keys/{id} with the platform's semantics: every field is optional
    and an omitted field keeps its current value; at least one field; null is refused."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    name: Name = None
    scopeGuids: Annotated[ScopeList, Field(description=(
        "Replaces the scopes; [] leaves the key access to nothing."))] = None
    allowedIPs: AllowedIPs = None
    validFrom: Timestamp = None
    validTo: ValidTo = None
    enabled: Annotated[bool, Field(description="false revokes the key for good.")] = None


class ApiKeyPatch(Strict):
    """PATCH /settings/2/api-keys/{id}: a JSON merge patch (RFC 7396). A member sets its field,
    an omitted one keeps it, null removes it: only ``allowedIPs`` can be removed (= [])."""

    name: Name = None
    scopeGuids: ScopeList = None
    allowedIPs: AllowedIPs | None = None
    validFrom: Timestamp = None
    validTo: ValidTo = None
    enabled: bool = None


# -- OAuth clients ---------------------------------------------------------------------------

class OAuthClientCreate(Strict):
    """POST /settings/2/oauth-clients."""

    name: Name
    scopes: Annotated[ScopeList, Field(min_length=1)]
    tokenTtl: Annotated[TokenTtl | None, Field(description=(
        "Token lifetime in seconds; null or omitted: the server default."))] = None
    audiences: Audiences = None
    authMethod: AuthMethod = "client_secret_basic"
    jwks: Jwks = None
    dpopBoundAccessTokens: DpopBound = False


class OAuthClientReplace(Strict):
    """PUT /settings/2/oauth-clients/{clientId}: the whole editable representation; every
    member is required (``jwks`` only for private_key_jwt)."""

    name: Name
    scopes: ScopeList
    audiences: Audiences
    tokenTtl: Annotated[TokenTtl | None, Field(description="null: the server default.")]
    authMethod: Annotated[AuthMethod, Field(description=(
        "Switching to private_key_jwt needs jwks and drops the secrets; switching from it "
        "leaves the client without a secret until rotate-secret issues one."))]
    enabled: bool
    jwks: Jwks | None = None
    dpopBoundAccessTokens: DpopBound


class OAuthClientPatch(Strict):
    """PATCH /settings/2/oauth-clients/{clientId}: a JSON merge patch (RFC 7396). Null
    removes a member: ``tokenTtl`` (server default), ``audiences`` ([]), ``jwks``."""

    name: Name = None
    scopes: ScopeList = None
    audiences: Audiences | None = None
    tokenTtl: TokenTtl | None = None
    authMethod: AuthMethod = None
    enabled: bool = None
    jwks: Jwks | None = None
    dpopBoundAccessTokens: DpopBound = None


class RotateSecret(Strict):
    """POST /settings/2/oauth-clients/{clientId}/rotate-secret (the body is optional)."""

    gracePeriod: Annotated[int, Field(ge=0, le=MAX_GRACE_SECONDS, description=(
        "Seconds the previous secret stays valid."))] = 0


# -- query strings ---------------------------------------------------------------------------

def _digits(maximum: int, minimum: int = 0):
    """A query integer: plain ASCII digits only ("+5", "5_0", " 5", "1e3" are refused)."""
    words = f"an integer from {minimum} to {maximum}"

    def parse(value: object) -> int:
        if not isinstance(value, str) or not value.isascii() or not value.isdigit() \
                or len(value) > 9 or not minimum <= int(value) <= maximum:
            raise ValueError(words)
        return int(value)

    return BeforeValidator(parse)


def _true_false(value: object) -> bool:
    if value not in ("true", "false"):
        raise ValueError("true or false")
    return value == "true"


def _query_time(value: object) -> datetime:
    try:
        return parse_isoformat(value)
    except ValueError:
        raise ValueError(TIMESTAMP_WORDS) from None


def _printable(value: str) -> str:
    if not value or len(value) > TEXT_MAX or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError(f"1 to {TEXT_MAX} printable characters")
    return value


Page = Annotated[int, Field(ge=0, le=MAX_PAGE, description=(
    "Page number from 0; past the last page the list is empty.")), _digits(MAX_PAGE)]
Size = Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE, description="Page size."),
                 _digits(MAX_PAGE_SIZE, 1)]
FlagParam = Annotated[bool, BeforeValidator(_true_false)]
TextParam = Annotated[str, AfterValidator(_printable), Field(
    min_length=1, max_length=TEXT_MAX, json_schema_extra={"pattern": TEXT_PATTERN})]
TimeParam = Annotated[datetime, BeforeValidator(_query_time)]
Direction = Literal["ASC", "DESC"]


class PageQuery(Strict):
    """Paging of every list."""

    page: Page = 0
    size: Size = DEFAULT_PAGE_SIZE


class AccountQuery(Strict):
    """Key, client and audit operations: the account to act in."""

    accountId: Annotated[str, Field(max_length=64, description=(
        "The account to act in (default: the caller's). Only callers of the platform account "
        "may name another one; any other value is answered 404."))] = None


class CredentialListQuery(PageQuery, AccountQuery):
    """Filters and order of the key and client lists."""

    name: Annotated[TextParam, Field(description="Exact name.")] = None
    search: Annotated[TextParam, Field(description=(
        "Case-insensitive part of the name or id."))] = None
    enabled: Annotated[FlagParam, Field(description=(
        "Only enabled (true) or disabled (false)."))] = None
    orderDirection: Annotated[Direction, Field(description="Default: ASC.")] = "ASC"


class ApiKeyListQuery(CredentialListQuery):
    orderBy: Annotated[Literal["createdAt", "name", "validTo"], Field(
        description="Default: createdAt.")] = "createdAt"


class OAuthClientListQuery(CredentialListQuery):
    orderBy: Annotated[Literal["createdAt", "name"], Field(
        description="Default: createdAt.")] = "createdAt"


class AuditQuery(PageQuery, AccountQuery):
    """Filters of the audit trail (newest first)."""

    since: Annotated[TimeParam, Field(alias="from", description=(
        "Events at or after this time."))] = None
    until: Annotated[TimeParam, Field(alias="to", description="Events before this time.")] = None
    actor: Annotated[TextParam, Field(description=(
        "Exact actor, e.g. client:<client_id>, cli, operator:<name>."))] = None
    objectId: Annotated[TextParam, Field(description="Exact object id.")] = None
    objectType: Annotated[TextParam, Field(description=(
        "api-key, oauth-client or operator."))] = None


class EmptyQuery(Strict):
    """Operations that take no query parameters."""


class AccountListQuery(PageQuery):
    """Filters of the account list."""

    name: Annotated[TextParam, Field(description="Exact name.")] = None
    enabled: Annotated[FlagParam, Field(description=(
        "Only enabled (true) or disabled (false)."))] = None


class AccountCreate(Strict):
    """POST /settings/2/accounts."""

    name: Name


class AccountUpdate(Strict):
    """PUT /settings/2/accounts/{accountId}: named fields change, at least one."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    name: Name = None
    enabled: Annotated[bool, Field(description=(
        "false stops the account everywhere; the platform account cannot be disabled."))] = None


class ResourceServerListQuery(PageQuery):
    """Paging of the resource servers (by name)."""


class EndpointRef(Strict):
    """One endpoint of a registered resource server."""

    resourceServer: Annotated[str, Field(max_length=64, json_schema_extra={
        "pattern": NAME_PATTERN})]
    method: Literal[METHODS]  # type: ignore[valid-type]
    path: Annotated[str, Field(min_length=1, max_length=512)]


class NarrowestRequest(Strict):
    """POST /settings/2/scopes/narrowest: endpoints to reach, and for which credential."""

    endpoints: Annotated[list[EndpointRef], Field(
        min_length=1, max_length=least_privilege.MAX_ENDPOINTS)]
    credentialKind: Annotated[Literal["apiKey", "oauthClient"], Field(description=(
        "apiKey: endpoints that refuse API keys are refused (400)."))] = "oauthClient"


# -- responses -------------------------------------------------------------------------------

class Out(BaseModel):
    """Base of response models: every member is always present, nothing else is."""

    model_config = ConfigDict(extra="forbid")


OutTime = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
AccountId = Annotated[str, Field(pattern=f"^[A-Za-z0-9]{{{ACCOUNT_ID_LENGTH}}}$",
                                 description="Opaque account id.")]


class Paging(Out):
    page: Annotated[int, Field(ge=0)]
    pageSize: Annotated[int, Field(ge=1)]
    totalCount: Annotated[int, Field(ge=0)]
    totalPages: Annotated[int, Field(ge=0)]
    orderBy: str
    orderDirection: Direction


class ApiKey(Out):
    id: Annotated[str, Field(pattern="^[0-9A-F]{32}$")]
    accountId: AccountId
    name: str
    scopeGuids: list[str]
    validFrom: OutTime
    validTo: OutTime
    allowedIPs: list[str]
    enabled: bool
    createdAt: OutTime
    lastUsedAt: OutTime | None


class ApiKeyWithSecret(ApiKey):
    apiKeySecret: Annotated[str, Field(pattern="^asak_[0-9A-Za-z]{38}$",
                                       description="Shown in this answer only.")]


class ApiKeyList(Out):
    apiKeys: list[ApiKey]
    paging: Paging


class OAuthClient(Out):
    clientId: str
    accountId: AccountId
    name: str
    scopes: list[str]
    audiences: list[str]
    tokenTtl: int | None
    authMethod: AuthMethod
    jwks: dict[str, Any] | None
    dpopBoundAccessTokens: bool
    enabled: bool
    hasSecret: Annotated[bool, Field(description=(
        "False for private_key_jwt clients, and for a client switched to a secret method "
        "until rotate-secret issues one."))]
    previousSecretExpiresAt: OutTime | None
    createdAt: OutTime
    updatedAt: OutTime


class OAuthClientWithSecret(OAuthClient):
    clientSecret: Annotated[str | None, Field(description=(
        "Shown in this answer only; null for private_key_jwt clients."))]


class OAuthClientList(Out):
    oauthClients: list[OAuthClient]
    paging: Paging


class ScopeEntry(Out):
    name: str
    category: str
    group: str
    description: str
    documented: bool
    coveredBy: list[str]
    covers: Annotated[list[str], Field(description=(
        "The narrower scopes this umbrella grants too (empty for other scopes)."))]


class ScopeCategory(Out):
    name: str
    scopes: list[ScopeEntry]


class ScopeCatalogue(Out):
    categories: list[ScopeCategory]


class AuditChange(Out):
    before: Any
    after: Any


class AuditEvent(Out):
    id: int
    occurredAt: OutTime
    actor: str
    actorAccountId: AccountId
    accountId: AccountId
    action: str
    objectType: str
    objectId: str
    changes: dict[str, AuditChange]


class AuditLogList(Out):
    logs: list[AuditEvent]
    paging: Paging


class Account(Out):
    id: AccountId
    name: str
    enabled: bool
    platform: bool
    createdAt: OutTime
    disabledAt: Annotated[OutTime | None, Field(description=(
        "The last disable: tokens issued until then stay refused after the account is "
        "enabled again."))]


class AccountList(Out):
    accounts: list[Account]
    paging: Paging


class ResourceServerSummary(Out):
    name: str
    audiences: list[str]
    routeCount: Annotated[int, Field(ge=0)]
    createdAt: OutTime
    updatedAt: OutTime


class ResourceServerList(Out):
    resourceServers: list[ResourceServerSummary]
    paging: Paging


class ResourceServer(Out):
    name: str
    manifest: Manifest
    createdAt: OutTime
    updatedAt: OutTime


class ReachEndpoint(Out):
    method: str
    path: str
    scopes: Annotated[list[str], Field(description=(
        "The route's accepted scopes this credential can present."))]
    defaultToken: Annotated[bool, Field(description=(
        "True when the credential passes as it is: an API key, or a client's token requested "
        "without scope. False: the client must ask for one of scopes (it is covered by an "
        "umbrella the client holds that the route does not list)."))]


class ReachGroup(Out):
    name: str
    audiences: list[str]
    audienceAccepted: Annotated[bool, Field(description=(
        "For clients: whether its tokens can carry an audience this resource server accepts "
        "(if not, it reaches none of its endpoints). Always true for API keys."))]
    endpoints: list[ReachEndpoint]
    routeCount: Annotated[int, Field(ge=0)]


class ReachCredential(Out):
    kind: Literal["apiKey", "oauthClient"]
    id: str
    name: str
    scopes: list[str]
    active: Annotated[bool, Field(description=(
        "False: disabled, outside its validity window, or of a disabled account; it reaches "
        "nothing now, and endpoints says what its scopes would reach."))]


class Reach(Out):
    credential: ReachCredential
    resourceServers: list[ReachGroup]


class NarrowestScopes(Out):
    scopes: Annotated[list[str], Field(description=(
        "The narrowest scope set reaching every chosen endpoint (sorted)."))]


class ServiceException(BaseModel):
    messageId: str
    text: str
    validationErrors: dict[str, list[str]] = None
    missingScopes: Annotated[list[str], Field(description=(
        "On 403: the scopes the caller lacks (see description for any-of or all-of)."))] = None
    description: str = None


class RequestError(BaseModel):
    serviceException: ServiceException


class ErrorEnvelope(BaseModel):
    """The platform's error body."""

    model_config = ConfigDict(extra="forbid")

    requestError: RequestError


#: Every model the document publishes, by its component name.
COMPONENTS = (ErrorEnvelope, Paging, ApiKey, ApiKeyWithSecret, ApiKeyList, ApiKeyCreate,
              ApiKeyUpdate, ApiKeyPatch, OAuthClient, OAuthClientWithSecret, OAuthClientList,
              OAuthClientCreate, OAuthClientReplace, OAuthClientPatch, RotateSecret,
              ScopeCatalogue, AuditLogList, Account, AccountList, AccountCreate, AccountUpdate,
              Manifest, ManifestRoute, ResourceServer, ResourceServerList, Reach,
              NarrowestRequest, NarrowestScopes)
