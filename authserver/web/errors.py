"""Error classes and the one place that renders them.

Protocol endpoints answer in RFC 6749 §5.2 JSON (``error``, ``error_description``); the admin
API in the platform's envelope, whose vocabulary and bytes belong to the guard library
(``resource_demo.guard.errors``: the same status gives the same bytes at the server and at every
resource guard). A database that cannot be reached is a 503 with ``Retry-After`` in either
format, never a 400/401 (threat model RL1).
"""

from __future__ import annotations

import logging

from authlib.oauth2.rfc6749.errors import OAuth2Error
from flask import Flask, Response, current_app, json, request
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException

from resource_demo.guard.errors import ApiError, envelope, envelope_bytes, envelope_ids, render

log = logging.getLogger(__name__)

ENVELOPE_PREFIXES = ("/settings/", "/audit/")
OAUTH_CODES = {400: "invalid_request", 401: "invalid_client", 404: "not_found",
               405: "invalid_request", 413: "invalid_request", 415: "invalid_request",
               429: "slow_down", 503: "temporarily_unavailable", 500: "server_error"}


class ValidationError(ValueError):
    """Bad input to a service function, naming each bad field."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("; ".join(f"{field}: {', '.join(msgs)}" for field, msgs in errors.items()))
        self.errors = errors


class NotFoundError(LookupError):
    """A service function was asked for an object that does not exist."""


class UnauthorizedError(PermissionError):
    """No valid credential (admin API); 401 with the given WWW-Authenticate challenge."""

    def __init__(self, description: str = "Unauthorized", headers: dict | None = None):
        super().__init__(description)
        self.description = description
        self.headers = headers or {}


class ForbiddenError(PermissionError):
    """The caller may not do this (e.g. grant a scope it does not hold itself); 403.

    ``missing_scopes`` names the scopes the caller lacks; the admin envelope shows them with
    the description (which says whether any one of them or all of them are needed).
    """

    def __init__(self, description: str = "Forbidden", headers: dict | None = None,
                 missing_scopes: list[str] | None = None):
        super().__init__(description)
        self.description = description
        self.headers = headers or {}
        self.missing_scopes = missing_scopes


class ServiceUnavailable(Exception):
    """A dependency (the database) cannot be reached; answered with 503 + Retry-After."""


#: Exceptions that mean "the database cannot be reached right now".
UNAVAILABLE_ERRORS = (OperationalError, InterfaceError, PoolTimeoutError, ServiceUnavailable)


class TemporarilyUnavailableError(OAuth2Error):
    """RFC 6749 §4.1.2.1 ``temporarily_unavailable``, with HTTP 503 (RFC 7009 §2.2.1)."""

    error = "temporarily_unavailable"
    status_code = 503

    def get_headers(self):
        headers = super().get_headers()
        headers.append(("Retry-After", str(current_app.config["RETRY_AFTER_SECONDS"])))
        return headers


def wants_envelope() -> bool:
    """True for the admin API, whose clients parse the platform's envelope."""
    return request.path.startswith(ENVELOPE_PREFIXES)


def error_response(status: int, description: str, headers: dict | None = None,
                   validation_errors: dict | None = None,
                   details: dict | None = None) -> Response:
    """Render an error in the current endpoint's documented format (``details``: extra
    members of the envelope's service exception, such as a 403's ``missingScopes``)."""
    if wants_envelope() and details:
        body = envelope(*envelope_ids(status), validation_errors)
        body["requestError"]["serviceException"].update(details)
        body = render(body)
    elif wants_envelope():
        body = envelope_bytes(status, validation_errors)
    else:
        body = json.dumps({"error": OAUTH_CODES.get(status, "invalid_request"),
                           "error_description": description})
    response = Response(body, status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def unavailable_response() -> Response:
    """503 with Retry-After; the body never names the database or its address."""
    retry = str(current_app.config["RETRY_AFTER_SECONDS"])
    return error_response(503, "The service is temporarily unavailable.", {"Retry-After": retry})


def _handle_http_exception(error: HTTPException) -> Response:
    headers = {}
    if error.code == 405 and getattr(error, "valid_methods", None):
        headers["Allow"] = ", ".join(error.valid_methods)
    return error_response(error.code or 500, error.description or error.name, headers,
                          validation_errors=getattr(error, "validation_errors", None))


def _handle_database_error(error: Exception) -> Response:
    log.error("database unavailable: %s", type(error).__name__)
    return unavailable_response()


def _handle_validation_error(error: ValidationError) -> Response:
    return error_response(400, str(error), validation_errors=error.errors)


def _handle_not_found(error: NotFoundError) -> Response:
    return error_response(404, "Not found.")


def _handle_forbidden(error: ForbiddenError) -> Response:
    details = None
    if error.missing_scopes:
        # Only scope names: the caller's own, or those of an object in its own account.
        details = {"missingScopes": error.missing_scopes, "description": error.description}
    return error_response(403, error.description, error.headers, details=details)


def _handle_unauthorized(error: UnauthorizedError) -> Response:
    return error_response(401, error.description, error.headers)


def _handle_api_error(error: ApiError) -> Response:
    """The guard library's errors (the admin API authenticates with the guard's path)."""
    response = error_response(error.status_code, error.text, validation_errors=error.validation_errors)
    for name, value in error.headers:
        response.headers.add(name, value)  # one WWW-Authenticate per scheme (Bearer, DPoP)
    return response


def _handle_rate_limited(error) -> Response:
    return error_response(429, "Too many requests.", {"Retry-After": str(error.retry_after)})


def _handle_key_configuration(error: Exception) -> Response:
    log.error("signing keys unusable: %s", error)
    return unavailable_response()


def _handle_unexpected(error: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500, "The server could not complete the request.")


def init_app(app: Flask) -> None:
    """Register the renderers."""
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(ValidationError, _handle_validation_error)
    app.register_error_handler(NotFoundError, _handle_not_found)
    app.register_error_handler(ForbiddenError, _handle_forbidden)
    app.register_error_handler(UnauthorizedError, _handle_unauthorized)
    app.register_error_handler(ApiError, _handle_api_error)
    from authserver.web.limits import RateLimited

    app.register_error_handler(RateLimited, _handle_rate_limited)
    for exc in UNAVAILABLE_ERRORS:
        app.register_error_handler(exc, _handle_database_error)
    from authserver.credentials.signing_keys import KeyConfigurationError

    app.register_error_handler(KeyConfigurationError, _handle_key_configuration)
    app.register_error_handler(Exception, _handle_unexpected)
