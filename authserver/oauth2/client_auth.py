"""Client authentication and request strictness of the token, introspection and revocation
endpoints (RFC 6749 §2.3, §3.2; RFC 7523 lives in ``client_assertion``).

Authlib owns the protocol; this module fills its client-authentication hooks and closes the
gaps the threat model names: Authlib reads parameters from the query string too, does not
refuse duplicated parameters or two client-authentication methods, and decodes Basic
credentials without the form-urlencoding of Appendix B.
"""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import unquote_plus

from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Payload, FlaskOAuth2Request
from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from flask import request as flask_request

from authserver.web import limits

FORM_MIMETYPE = "application/x-www-form-urlencoded"
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]


class SlowDownError(OAuth2Error):
    """429 with Retry-After: a rate limit of threat model TE11/IN09 or the per-client quota."""

    error = "slow_down"
    status_code = 429

    def __init__(self, retry_after: int):
        super().__init__("Too many requests; retry later.")
        self.retry_after = retry_after

    def get_headers(self):
        return super().get_headers() + [("Retry-After", str(self.retry_after))]


def count_against(tests=(), hits=()) -> None:
    """Apply rate limits inside Authlib's flow, where errors must be OAuth2Errors
    (``limits.apply``: ``tests`` checked, ``hits`` counted, together)."""
    try:
        limits.apply(tests, hits)
    except limits.RateLimited as exc:
        raise SlowDownError(exc.retry_after) from None


class FormPayload(FlaskOAuth2Payload):
    """Request parameters from the form body only; the query string is never read."""

    @property
    def data(self):
        return self._request.form


class FormOnlyRequest(FlaskOAuth2Request):
    """Authlib's Flask request, reading its parameters through ``FormPayload``.

    Authlib's constructor builds ``request.url`` (an IRI decoding of the whole URL, ~30 µs)
    for its one use, OAuth2Request's https check, which reads only the scheme and the host:
    those are passed instead, with the path (these endpoints refuse a query string).
    """

    def __init__(self, request):
        OAuth2Request.__init__(self, request.method,
                               f"{request.scheme}://{request.host}{request.path}",
                               headers=request.headers)
        self._request = request
        self.payload = FormPayload(request)


def validate_form_request() -> None:
    """The RFC 6749 rules Authlib leaves open (threat model TE02, TE03, TE05, TE06).

    Applies to the token, introspection and revocation endpoints; raises InvalidRequestError.
    """
    http = flask_request._get_current_object()  # one context lookup, not one per use
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


def presented_client_id(request) -> str:
    """The client id a request claims (Basic user, form ``client_id`` or the assertion's
    ``sub``), unverified: a key for counting failed authentications, hashed to bound it."""
    claimed = _basic_credentials(request)[0] if _basic_credentials(request) else None
    if claimed is None:
        claimed = request.form.get("client_id")
    if claimed is None and request.form.get("client_assertion"):
        from authserver.oauth2.client_assertion import unverified_subject

        claimed = unverified_subject(request.form["client_assertion"])
    text = claimed if isinstance(claimed, str) else ""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _basic_credentials(request) -> tuple[str, str] | None:
    """(client_id, client_secret) from a Basic header, form-urlencoded before base64."""
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
    return unquote_plus(client_id), unquote_plus(client_secret)


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
    credentials = _basic_credentials(request)
    if credentials is None:
        return None
    return _authenticate_secret(query_client, *credentials, "client_secret_basic")


def authenticate_client_secret_post(query_client, request):
    """``client_secret_post``: ``client_id`` and ``client_secret`` in the form body."""
    form = request.form
    return _authenticate_secret(query_client, form.get("client_id"), form.get("client_secret"),
                                "client_secret_post")
