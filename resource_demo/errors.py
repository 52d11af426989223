"""The platform's legacy error envelope: one class per error, rendered in one place.

Body shape (what the platform's client libraries parse)::

    {"requestError": {"serviceException": {"messageId": "...", "text": "...",
                                           "validationErrors": {"field": ["..."]}}}}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from http import HTTPStatus

from flask import Flask, Response
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

HeadersLike = Mapping[str, str] | Iterable[tuple[str, str]]

# Headers of a Werkzeug HTTPException worth keeping when re-rendering it.
_KEPT_HEADERS = frozenset({"allow", "retry-after", "www-authenticate", "content-range"})


class ApiError(Exception):
    """An error rendered in the legacy envelope; subclasses fix status, messageId and text."""

    status_code: int = 500
    message_id: str = "GENERAL_ERROR"
    text: str = "Something went wrong. Please contact support."

    def __init__(
        self,
        text: str | None = None,
        *,
        validation_errors: Mapping[str, list[str]] | None = None,
        headers: HeadersLike | None = None,
        status_code: int | None = None,
        message_id: str | None = None,
    ) -> None:
        if text is not None:
            self.text = text
        if status_code is not None:
            self.status_code = status_code
        if message_id is not None:
            self.message_id = message_id
        self.validation_errors = dict(validation_errors) if validation_errors else None
        self.headers = Headers(headers) if headers else Headers()
        super().__init__(self.text)

    def to_dict(self) -> dict:
        """Return the envelope as a dict."""
        details: dict = {"messageId": self.message_id, "text": self.text}
        if self.validation_errors:
            details["validationErrors"] = self.validation_errors
        return {"requestError": {"serviceException": details}}

    def get_response(self) -> Response:
        """Render the envelope; compact JSON so the body is byte-for-byte the documented one."""
        body = json.dumps(self.to_dict(), separators=(",", ":"))
        return Response(body, self.status_code, headers=self.headers, mimetype="application/json")


class BadRequest(ApiError):
    """400: the request is malformed or fails validation (see validationErrors)."""

    status_code = 400
    message_id = "BAD_REQUEST"
    text = "Bad request"


class Unauthorized(ApiError):
    """401: no credential, or one that does not authenticate."""

    status_code = 401
    message_id = "UNAUTHORIZED"
    text = "Invalid login details"

    def __init__(self, text: str | None = None, **kwargs) -> None:
        super().__init__(text, **kwargs)
        # RFC 9110 §15.5.2: a 401 response MUST carry a WWW-Authenticate challenge.
        if "WWW-Authenticate" not in self.headers:
            self.headers.add("WWW-Authenticate", "Bearer")


class Forbidden(ApiError):
    """403: the credential is valid but holds none of the accepted scopes."""

    status_code = 403
    message_id = "FORBIDDEN"
    text = "Forbidden"


class NotFound(ApiError):
    """404: no such resource."""

    status_code = 404
    message_id = "NOT_FOUND"
    text = "Not found"


class TooManyRequests(ApiError):
    """429: rate limit exceeded."""

    status_code = 429
    message_id = "TOO_MANY_REQUESTS"
    text = "Too many requests"


class ServiceUnavailable(ApiError):
    """503: a dependency is down; the client should retry after ``retry_after`` seconds."""

    status_code = 503
    message_id = "SERVICE_UNAVAILABLE"
    text = "Service temporarily unavailable"

    def __init__(self, text: str | None = None, *, retry_after: int = 5, **kwargs) -> None:
        super().__init__(text, **kwargs)
        if "Retry-After" not in self.headers:
            self.headers.add("Retry-After", str(retry_after))


class GeneralError(ApiError):
    """500: anything unexpected; details go to the log, never to the client."""


_BY_STATUS: dict[int, type[ApiError]] = {
    cls.status_code: cls
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, TooManyRequests,
                ServiceUnavailable, GeneralError)
}


def from_http_exception(exc: HTTPException) -> ApiError:
    """Translate a Werkzeug HTTPException (404, 405, 413, 415, ...) into the envelope."""
    code = exc.code or 500
    headers = [(k, v) for k, v in exc.get_headers() if k.lower() in _KEPT_HEADERS]
    known = _BY_STATUS.get(code)
    if known is not None:
        return known(headers=headers)
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = exc.name
    return ApiError(
        phrase.capitalize(),
        status_code=code,
        message_id=phrase.upper().replace(" ", "_").replace("-", "_"),
        headers=headers,
    )


def _render_api_error(exc: ApiError) -> Response:
    return exc.get_response()


def _render_http_exception(exc: HTTPException) -> Response | HTTPException:
    if exc.code is None or exc.code < 400 or exc.response is not None:
        return exc  # redirects and ready-made responses pass through untouched
    return from_http_exception(exc).get_response()


def _render_unexpected(exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return GeneralError().get_response()


def register_error_handlers(app: Flask) -> None:
    """Render ApiError, Werkzeug HTTP errors and unexpected exceptions in the envelope."""
    app.register_error_handler(ApiError, _render_api_error)
    app.register_error_handler(HTTPException, _render_http_exception)
    app.register_error_handler(Exception, _render_unexpected)
