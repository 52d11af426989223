"""The platform's error envelope: one vocabulary, one class per error, one byte rendering.

Body shape (what the platform's client libraries parse)::

    {"requestError":{"serviceException":{"messageId":"...","text":"...",
                                         "validationErrors":{"field":["..."]}}}}

This module is framework-neutral: the Flask and ASGI adapters turn an ``ApiError`` into a
response with ``body()`` and ``headers``; the authorization server renders its admin API's
errors with ``envelope_bytes`` so both give the same bytes for the same status.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from http import HTTPStatus

log = logging.getLogger(__name__)

HeadersLike = Mapping[str, str] | Iterable[tuple[str, str]]
MEDIA_TYPE = "application/json"

#: status -> (messageId, text): the platform's documented pairs and ours for the rest.
ENVELOPE_IDS: dict[int, tuple[str, str]] = {
    400: ("BAD_REQUEST", "Bad request"),
    401: ("UNAUTHORIZED", "Invalid login details"),
    403: ("FORBIDDEN", "Forbidden"),
    404: ("NOT_FOUND", "Not found"),
    405: ("METHOD_NOT_ALLOWED", "Method not allowed"),
    413: ("PAYLOAD_TOO_LARGE", "Request body too large"),
    415: ("UNSUPPORTED_MEDIA_TYPE", "Unsupported media type"),
    429: ("TOO_MANY_REQUESTS", "Too many requests"),
    500: ("GENERAL_ERROR", "Something went wrong. Please contact support."),
    503: ("SERVICE_UNAVAILABLE", "Service temporarily unavailable"),
}


def envelope_ids(status: int) -> tuple[str, str]:
    """The (messageId, text) pair for an HTTP status: the table, else the status phrase."""
    known = ENVELOPE_IDS.get(status)
    if known is not None:
        return known
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return ENVELOPE_IDS[500 if status >= 500 else 400]
    return phrase.upper().replace(" ", "_").replace("-", "_"), phrase.capitalize()


def envelope(message_id: str, text: str,
             validation_errors: Mapping[str, list[str]] | None = None) -> dict:
    """The envelope as a dict."""
    details: dict = {"messageId": message_id, "text": text}
    if validation_errors:
        details["validationErrors"] = dict(validation_errors)
    return {"requestError": {"serviceException": details}}


def envelope_bytes(status: int, validation_errors: Mapping[str, list[str]] | None = None) -> bytes:
    """The envelope for ``status`` as the bytes every part of the system sends."""
    return render(envelope(*envelope_ids(status), validation_errors))


def render(body: dict) -> bytes:
    """Compact, key-sorted, ASCII JSON: the body is byte-for-byte the documented one (and a
    lone surrogate echoed in a validation message cannot break the encoding)."""
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode("ascii")


class SourceUnavailable(Exception):
    """A credential source (keys, revocations, introspection) cannot answer now: 503, not 401."""


class ApiError(Exception):
    """An error rendered in the envelope; subclasses fix status, messageId and text."""

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
        items = headers.items() if isinstance(headers, Mapping) else (headers or ())
        self.headers: list[tuple[str, str]] = [(str(k), str(v)) for k, v in items]
        super().__init__(self.text)

    def has_header(self, name: str) -> bool:
        """True when a header ``name`` (any case) is set."""
        return any(key.lower() == name.lower() for key, _ in self.headers)

    def to_dict(self) -> dict:
        """Return the envelope as a dict."""
        return envelope(self.message_id, self.text, self.validation_errors)

    def body(self) -> bytes:
        """The rendered envelope."""
        return render(self.to_dict())


class BadRequest(ApiError):
    """400: the request is malformed or fails validation (see validationErrors)."""

    status_code = 400
    message_id, text = ENVELOPE_IDS[400]


class Unauthorized(ApiError):
    """401: no credential, or one that does not authenticate."""

    status_code = 401
    message_id, text = ENVELOPE_IDS[401]

    def __init__(self, text: str | None = None, **kwargs) -> None:
        super().__init__(text, **kwargs)
        # RFC 9110 §15.5.2: a 401 response MUST carry a WWW-Authenticate challenge.
        if not self.has_header("WWW-Authenticate"):
            self.headers.append(("WWW-Authenticate", "Bearer"))


class Forbidden(ApiError):
    """403: the credential is valid but holds none of the accepted scopes."""

    status_code = 403
    message_id, text = ENVELOPE_IDS[403]


class NotFound(ApiError):
    """404: no such resource."""

    status_code = 404
    message_id, text = ENVELOPE_IDS[404]


class TooManyRequests(ApiError):
    """429: rate limit exceeded."""

    status_code = 429
    message_id, text = ENVELOPE_IDS[429]


class ServiceUnavailable(ApiError):
    """503: a dependency is down; the client should retry after ``retry_after`` seconds."""

    status_code = 503
    message_id, text = ENVELOPE_IDS[503]

    def __init__(self, text: str | None = None, *, retry_after: int = 5, **kwargs) -> None:
        super().__init__(text, **kwargs)
        if not self.has_header("Retry-After"):
            self.headers.append(("Retry-After", str(retry_after)))


class GeneralError(ApiError):
    """500: anything unexpected; details go to the log, never to the client."""


_BY_STATUS: dict[int, type[ApiError]] = {
    cls.status_code: cls
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, TooManyRequests,
                ServiceUnavailable, GeneralError)
}


def error_for_status(status: int, headers: HeadersLike | None = None,
                     validation_errors: Mapping[str, list[str]] | None = None) -> ApiError:
    """The envelope error for an HTTP status (404, 405, 413, 415, ...) from a framework; a 400
    may name its fields (``validation_errors``), as the envelope allows."""
    known = _BY_STATUS.get(status)
    if known is not None:
        return known(headers=headers, validation_errors=validation_errors)
    message_id, text = envelope_ids(status)
    return ApiError(text, status_code=status, message_id=message_id, headers=headers)


def bearer_challenge(realm: str, **params: str) -> tuple[str, str]:
    """An RFC 6750 §3 ``WWW-Authenticate: Bearer`` header with ``realm`` first."""
    parts = [f'realm="{realm}"'] + [f'{name}="{value}"' for name, value in params.items()]
    return "WWW-Authenticate", "Bearer " + ", ".join(parts)


def dpop_challenge(realm: str, algorithms: Iterable[str], **params: str) -> tuple[str, str]:
    """An RFC 9449 §7.1 ``WWW-Authenticate: DPoP`` header: ``realm``, the error parameters,
    and ``algs``, the proof algorithms this server accepts."""
    parts = [f'realm="{realm}"'] + [f'{name}="{value}"' for name, value in params.items()]
    parts.append(f'algs="{" ".join(algorithms)}"')
    return "WWW-Authenticate", "DPoP " + ", ".join(parts)
