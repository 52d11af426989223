"""One validation for every text input of every surface (threat model AD12).

Every query parameter, form field and JSON string a request carries, on the admin API, the
web UI and the demo API (the CLI checks its arguments with ``text_problem``), is checked
before any view runs: text
that the database or an encoder cannot take is refused with 400 in the surface's own format,
naming the field, instead of failing deep inside as a 500. Refused: lone surrogates (not
encodable as UTF-8; JSON's ``\\ud800`` escapes and undecodable percent-escapes produce them)
and NUL (PostgreSQL text cannot hold it). Each service still applies its own rules (lengths,
syntax) on top.
"""

from __future__ import annotations

import json

from flask import request
from werkzeug.exceptions import BadRequest

MAX_DEPTH = 64


class BadText(BadRequest):
    """400: a field holds text no surface can store or encode; ``validation_errors`` names it."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.validation_errors = {field: [problem]}


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be taken as text, or None when it can."""
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (no lone surrogates)"
    return None


def _check(field: str, value: object, depth: int = 0) -> None:
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            raise BadText(_printable(field), problem)
    elif isinstance(value, dict) and depth < MAX_DEPTH:
        for key, item in value.items():
            _check(str(key), key)
            _check(f"{field}.{key}" if field else str(key), item, depth + 1)
    elif isinstance(value, list) and depth < MAX_DEPTH:
        for index, item in enumerate(value):
            _check(f"{field}[{index}]", item, depth + 1)


def _printable(field: str) -> str:
    """The field name as it can be shown (its own bad characters replaced)."""
    return field.encode("utf-8", "replace").decode("utf-8").replace("\x00", "?")[:100]


def check_request_text() -> None:
    """Refuse the request (BadText) when any of its text fields cannot be taken.

    A before-request hook of the admin API, the web UI and the demo API. The protocol
    endpoints keep their RFC answers instead (RFC 7662 and 7009: an unusable token is
    inactive, or revoked with 200), and take no text they would store.
    """
    for name, value in request.args.items(multi=True):
        _check(name, name)
        _check(name, value)
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        for name, value in request.form.items(multi=True):
            _check(name, name)
            _check(name, value)
    elif request.is_json:
        try:
            body = json.loads(request.get_data(cache=True))
        except (ValueError, RecursionError):
            return  # not JSON: the endpoint's own parser answers 400
        _check("", body)
