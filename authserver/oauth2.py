"""The Authlib authorization server: grant, client authentication and request strictness.

Authlib owns the protocol; this module fills its hooks and closes the gaps SECURITY.md
names: Authlib reads parameters from the query string too, does not refuse duplicated
parameters or two client-authentication methods at the token endpoint, and tells an
unknown client from a wrong secret in its error descriptions.
"""

from __future__ import annotations

import base64
from urllib.parse import unquote_plus

from authlib.integrations.flask_oauth2 import AuthorizationServer as _FlaskAuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Payload, FlaskOAuth2Request
from authlib.oauth2.rfc6749 import OAuth2Request, grants
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
)
from flask import Flask, current_app
from flask import request as flask_request

from . import limits
from .client_assertion import authenticate_private_key_jwt
from .clients import query_client
from .observability import AUTH_FAILURES, TOKENS_ISSUED
from .scopes import ScopeError, current_catalogue, format_scope, parse_scope
from .tokens import encode_access_token

FORM_MIMETYPE = "application/x-www-form-urlencoded"
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]


class InvalidTargetError(OAuth2Error):
    """RFC 8707 §2: the requested ``resource`` is not one this client may get tokens for."""

    error = "invalid_target"


class SlowDownError(OAuth2Error):
    """429 with Retry-After: a rate limit of SECURITY.md TE11/IN09 or the per-client quota."""

    error = "slow_down"
    status_code = 429

    def __init__(self, retry_after: int):
        super().__init__("Too many requests; retry later.")
        self.retry_after = retry_after

    def get_headers(self):
        return super().get_headers() + [("Retry-After", str(self.retry_after))]


def count_against(setting: str, *key: str, test_only: bool = False) -> None:
    """Apply a rate limit inside Authlib's flow, where errors must be OAuth2Errors."""
    try:
        (limits.check if test_only else limits.hit)(setting, *key)
    except limits.RateLimited as exc:
        raise SlowDownError(exc.retry_after) from None


class FormPayload(FlaskOAuth2Payload):
    """Request parameters from the form body only; the query string is never read."""

    @property
    def data(self):
        return self._request.form


class FormOnlyRequest(FlaskOAuth2Request):
    """Authlib's Flask request, reading its parameters through ``FormPayload``."""

    def __init__(self, request):
        super().__init__(request)
        self.payload = FormPayload(request)


def validate_form_request() -> None:
    """The RFC 6749 rules Authlib leaves open (SECURITY.md TE02, TE03, TE05, TE06).

    Applies to the token, introspection and revocation endpoints; raises InvalidRequestError.
    """
    http = flask_request
    if http.mimetype != FORM_MIMETYPE:
        raise InvalidRequestError("The request body must be application/x-www-form-urlencoded.")
    # Werkzeug drops a form that is not UTF-8 silently; say what is wrong instead.
    try:
        http.get_data(cache=True).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequestError("The request body must be UTF-8.") from None
    # §2.3.1: client credentials MUST NOT be in the URI; these endpoints take no query at all.
    if http.query_string:
        raise InvalidRequestError("Parameters must be sent in the request body, not the URI.")
    # §3.2: request and response parameters MUST NOT be included more than once.
    for name, values in http.form.lists():
        if len(values) > 1:
            raise InvalidRequestError("A parameter is repeated.")
    # §2.3: the client MUST NOT use more than one authentication method in each request.
    basic = http.headers.get("Authorization", "").split(" ", 1)[0].lower() == "basic"
    if basic + ("client_secret" in http.form) + ("client_assertion" in http.form) > 1:
        raise InvalidRequestError("More than one client authentication method was used.")


def _authenticate_secret(query_client, client_id, client_secret, method):
    if not client_id or not client_secret:
        return None
    client = query_client(client_id)
    if client is None or not client.check_endpoint_auth_method(method, "token"):
        return None
    return client if client.check_client_secret(client_secret) else None


def authenticate_client_secret_basic(query_client, request):
    """``client_secret_basic``: Basic credentials, form-urlencoded before base64 (§2.3.1).

    Parsed here rather than with Authlib's ``extract_basic_authorization``, which decodes
    with ``unquote`` and so keeps a ``+`` that Appendix B's encoding turns into a space.
    """
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    client_id, separator, client_secret = decoded.partition(":")
    if not separator:
        return None
    return _authenticate_secret(query_client, unquote_plus(client_id),
                                unquote_plus(client_secret), "client_secret_basic")


def authenticate_client_secret_post(query_client, request):
    """``client_secret_post``: ``client_id`` and ``client_secret`` in the form body."""
    form = request.form
    return _authenticate_secret(query_client, form.get("client_id"), form.get("client_secret"),
                                "client_secret_post")


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    """RFC 6749 §4.4 issuing RFC 9068 JWTs, with our scope and audience policy."""

    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def validate_requested_scope(self) -> None:
        """No scope -> every allowed scope; otherwise each must be covered, or ``invalid_scope``.

        RFC 6749 §3.1: a parameter sent without a value is treated as omitted (TE04).
        Nothing is silently dropped (DESIGN.md policy).
        """
        catalogue = current_catalogue()
        allowed = parse_scope(self.client.scope)
        requested = self.request.payload.data.get("scope")
        if not requested:
            granted = allowed
        else:
            try:
                granted = parse_scope(requested)
            except ScopeError as exc:
                raise InvalidScopeError("The requested scope is malformed.") from exc
            for name in granted:
                if name not in catalogue or not catalogue.covers(allowed, name):
                    raise InvalidScopeError("The requested scope is not allowed for this client.")
        self.request.scope = format_scope(granted)

    def validate_requested_audience(self) -> str:
        """RFC 8707 ``resource``: the default audience or one registered for the client."""
        default = current_app.config["DEFAULT_AUDIENCE"]
        resource = self.request.payload.data.get("resource")
        if not resource:
            return default
        if resource != default and resource not in (self.client.audiences or []):
            raise InvalidTargetError("The requested resource is not allowed for this client.")
        return resource

    def validate_token_request(self) -> None:
        super().validate_token_request()
        # Only authenticated requests count against a client's quota, so nobody can
        # exhaust another client's quota by sending its client_id with a wrong secret.
        count_against("TOKEN_RATE_LIMIT", self.client.client_id)
        self.request.audience = self.validate_requested_audience()

    def create_token_response(self):
        """Sign the JWT directly: Authlib's token generators see neither ``resource`` nor
        the audience, and default ``aud`` to the client_id (SECURITY.md item 3)."""
        token = encode_access_token(self.client, parse_scope(self.request.scope),
                                    self.request.audience)
        TOKENS_ISSUED.labels(client_id=self.client.client_id, outcome="issued").inc()
        return 200, token, self.TOKEN_RESPONSE_HEADER


class AuthorizationServer(_FlaskAuthorizationServer):
    """Flask AuthorizationServer with form-only, strict requests and uniform client errors."""

    def create_oauth2_request(self, request):
        if isinstance(request, OAuth2Request):
            return request
        return FormOnlyRequest(flask_request)

    def _strict_request(self):
        oauth_request = FormOnlyRequest(flask_request)  # Authlib refuses non-TLS, non-loopback
        validate_form_request()
        return oauth_request

    def create_token_response(self, request=None):
        try:
            oauth_request = self._strict_request()
        except OAuth2Error as error:
            return self.handle_error_response(None, error)
        return super().create_token_response(oauth_request)

    def create_endpoint_response(self, name, request=None):
        try:
            oauth_request = self._strict_request()
        except OAuth2Error as error:
            return self.handle_error_response(None, error)
        return super().create_endpoint_response(name, oauth_request)

    def authenticate_client(self, request, methods, endpoint="token"):
        """One answer for unknown client, wrong secret and bad assertion (SECURITY.md TE09);
        failures are counted per caller address and throttled (RFC 6749 §2.3.1, TE11)."""
        address = limits.caller_address()
        count_against("AUTH_FAILURE_RATE_LIMIT", address, test_only=True)
        try:
            return super().authenticate_client(request, methods, endpoint)
        except InvalidClientError:
            AUTH_FAILURES.labels(endpoint=endpoint).inc()
            count_against("AUTH_FAILURE_RATE_LIMIT", address)
            raise InvalidClientError(status_code=401,
                                     description="Client authentication failed.") from None


authorization = AuthorizationServer()


def init_app(app: Flask) -> None:
    """Bind the server to the app and register the grant and client-auth methods."""
    authorization.init_app(app, query_client=query_client)
    authorization.register_client_auth_method("client_secret_basic",
                                              authenticate_client_secret_basic)
    authorization.register_client_auth_method("client_secret_post",
                                              authenticate_client_secret_post)
    authorization.register_client_auth_method("private_key_jwt", authenticate_private_key_jwt)
    if not authorization._token_grants:
        from .introspection import (
            IntrospectionEndpoint,
            RevocationEndpoint,
            RevocationFeedEndpoint,
        )

        authorization.register_grant(ClientCredentialsGrant)
        for endpoint in (IntrospectionEndpoint, RevocationEndpoint, RevocationFeedEndpoint):
            authorization.register_endpoint(endpoint)
