"""The Authlib authorization server: the client-credentials grant (RFC 6749 §4.4) issuing
RFC 9068 JWTs, and the wiring of client authentication, introspection and revocation.

Authlib tells an unknown client from a wrong secret in its error descriptions; this server
answers both the same way (threat model TE09).
"""

from __future__ import annotations

from authlib.integrations.flask_oauth2 import AuthorizationServer as _FlaskAuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Request, grants
from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidScopeError, OAuth2Error
from flask import Flask, current_app, g
from flask import request as flask_request

from authserver.config import admin_audience
from authserver.credentials.clients import query_client
from authserver.oauth2.client_assertion import authenticate_private_key_jwt
from authserver.oauth2.client_auth import (
    CLIENT_AUTH_METHODS,
    FormOnlyRequest,
    authenticate_client_secret_basic,
    authenticate_client_secret_post,
    count_against,
    presented_client_id,
    validate_form_request,
)
from authserver.oauth2.dpop import nonce_headers, validate_token_request_proof
from authserver.oauth2.introspection import (
    IntrospectionEndpoint,
    RevocationEndpoint,
    RevocationFeedEndpoint,
)
from authserver.oauth2.key_fingerprints import KeyFingerprintsEndpoint
from authserver.oauth2.tokens import encode_access_token
from authserver.observability.metrics import AUTH_FAILURES, TOKENS_ISSUED
from authserver.scopes import (
    ADMIN_SCOPES,
    ScopeError,
    current_catalogue,
    format_scope,
    parse_scope,
)
from authserver.web import limits


class InvalidTargetError(OAuth2Error):
    """RFC 8707 §2: the requested ``resource`` is not one this client may get tokens for."""

    error = "invalid_target"


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    """RFC 6749 §4.4 issuing RFC 9068 JWTs, with our scope and audience policy."""

    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def validate_requested_scope(self) -> None:
        """No scope -> every allowed scope; otherwise each must be covered, or ``invalid_scope``.

        RFC 6749 §3.1: a parameter sent without a value is treated as omitted (TE04).
        Nothing is silently dropped (threat model policies).
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
        """RFC 8707 ``resource``: the default audience, one registered for the client, or
        the admin API's (ADMIN_AUDIENCE) for a client holding an admin scope (AU01)."""
        config = current_app.config
        default = config["DEFAULT_AUDIENCE"]
        resource = self.request.payload.data.get("resource")
        if not resource:
            return default
        if resource == admin_audience(config):
            catalogue = current_catalogue()
            allowed = parse_scope(self.client.scope)
            if any(catalogue.covers(allowed, scope) for scope in ADMIN_SCOPES):
                return resource
        elif resource == default or resource in (self.client.audiences or []):
            return resource
        raise InvalidTargetError("The requested resource is not allowed for this client.")

    def validate_token_request(self) -> None:
        super().validate_token_request()
        # Only authenticated requests count against a client's quota, so nobody can
        # exhaust another client's quota by sending its client_id with a wrong secret.
        count_against(hits=[("TOKEN_RATE_LIMIT", (self.client.client_id,))])
        self.request.audience = self.validate_requested_audience()
        # RFC 9449 §5: a DPoP proof binds the token to its key (last: it uses up the proof).
        self.request.dpop_jkt = validate_token_request_proof(self.client)

    def create_token_response(self):
        """Sign the JWT directly: Authlib's token generators see neither ``resource`` nor
        the audience, and default ``aud`` to the client_id (threat model item 3)."""
        token = encode_access_token(self.client, parse_scope(self.request.scope),
                                    self.request.audience, jkt=self.request.dpop_jkt)
        TOKENS_ISSUED.labels(outcome="issued").inc()
        return 200, token, self.TOKEN_RESPONSE_HEADER + nonce_headers()


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
            response = self.handle_error_response(None, error)
        else:
            response = super().create_token_response(oauth_request)
        if response.status_code != 200:
            TOKENS_ISSUED.labels(outcome="refused").inc()
        return response

    def create_endpoint_response(self, name, request=None):
        try:
            oauth_request = self._strict_request()
        except OAuth2Error as error:
            return self.handle_error_response(None, error)
        return super().create_endpoint_response(name, oauth_request)

    def authenticate_client(self, request, methods, endpoint="token"):
        """One answer for unknown client, wrong secret and bad assertion (threat model TE09).

        Credentials are always checked (a fast hash or one signature, one indexed read):
        a client whose credentials verify is never refused because others failed from its
        address (AV02). Failures are counted per address and claimed client id, and per
        address; past either limit they are answered 429 (RFC 6749 §2.3.1, TE11). Both
        counters are counted in one step (one Redis round trip).
        """
        try:
            client = super().authenticate_client(request, methods, endpoint)
        except InvalidClientError:
            AUTH_FAILURES.labels(endpoint=endpoint).inc()
            address = limits.caller_address()
            count_against(hits=[("AUTH_FAILURE_ADDRESS_RATE_LIMIT", (address,)),
                                ("AUTH_FAILURE_RATE_LIMIT",
                                 (address, presented_client_id(request)))])
            raise InvalidClientError(status_code=401,
                                     description="Client authentication failed.") from None
        g.client_id = client.client_id  # for the access log
        return client


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
        authorization.register_grant(ClientCredentialsGrant)
        for endpoint in (IntrospectionEndpoint, RevocationEndpoint, RevocationFeedEndpoint,
                         KeyFingerprintsEndpoint):
            authorization.register_endpoint(endpoint)
