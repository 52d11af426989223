"""Strict parsing of admin API input: JSON bodies, query parameters and paging.

Policy (SECURITY.md AD03, AD05): a body is one JSON object with only the fields the operation
names, each of its declared type, with no coercion (``"enabled": "false"`` is refused); fields
that are read-only or unknown are refused by name; query parameters are known, single and
well-formed. Anything else is 400 BAD_REQUEST naming the field, never a 500.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from flask import request
from werkzeug.exceptions import UnsupportedMediaType

from .clock import parse_isoformat
from .errors import ValidationError

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
PAGE_RE = re.compile(r"^[0-9]{1,9}$")
#: RFC 3339 date-time (what the document's ``format: date-time`` promises), checked before
#: ``datetime.fromisoformat``, which also reads odd forms (basic format, stray characters).
TIMESTAMP_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}"
                          r"(?:\.[0-9]{1,9})?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$")
TEXT_MAX = 200
#: Fields the server sets; naming them in a body is refused with "read-only".
READ_ONLY = frozenset({
    "id", "apiKeySecret", "secret", "secretHash", "secret_hash", "keyHash", "key_hash",
    "prefix", "createdAt", "created_at", "updatedAt", "updated_at", "lastUsedAt",
    "last_used_at", "createdBy", "created_by", "owner", "ownerId", "owner_id", "clientId",
    "client_id", "clientSecret", "client_secret", "previousSecretExpiresAt", "revoked",
    "revokedAt", "revoked_at", "isAdmin", "is_admin",
})

# Declared JSON types: name -> check.
_TYPES = {
    "string": lambda value: isinstance(value, str),
    "boolean": lambda value: isinstance(value, bool),
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "object": lambda value: isinstance(value, dict),
    "string-list": lambda value: isinstance(value, list)
    and all(isinstance(item, str) for item in value),
    "timestamp": lambda value: isinstance(value, str) and TIMESTAMP_RE.fullmatch(value) is not None,
}
_TYPE_WORDS = {"string": "a string", "boolean": "true or false", "integer": "an integer",
               "object": "a JSON object", "string-list": "a list of strings",
               "timestamp": "an RFC 3339 timestamp such as 2027-01-31T12:00:00Z"}


@dataclass(frozen=True)
class Field:
    """One body field: its JSON type, whether null is allowed, whether it must be present."""

    type: str
    nullable: bool = False
    required: bool = False


@dataclass(frozen=True)
class Paging:
    """A requested page: ``page`` from 0, ``size`` 1..100."""

    page: int
    size: int

    def render(self, total: int, order_by: str, direction: str) -> dict:
        """The response's ``paging`` object."""
        return {"page": self.page, "pageSize": self.size, "totalCount": total,
                "totalPages": math.ceil(total / self.size), "orderBy": order_by,
                "orderDirection": direction}


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    names = [name for name, _ in pairs]
    if len(names) != len(set(names)):
        raise ValueError("duplicate member name")
    return dict(pairs)


def json_body(fields: Mapping[str, Field], *, optional: bool = False) -> dict:
    """The request's JSON object, checked against ``fields`` (ValidationError names each bad one).

    With ``optional``, an empty body means ``{}``. Oversized bodies are 413 (MAX_CONTENT_LENGTH).
    """
    data = request.get_data(cache=True)
    if optional and not data.strip():
        return {}
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("The body must be application/json.")
    try:
        body = json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # JSONDecodeError, bad UTF-8, huge ints, deep nesting
        raise ValidationError({"body": ["not a valid JSON document"]}) from None
    if not isinstance(body, dict):
        raise ValidationError({"body": ["must be a JSON object"]})
    errors: dict[str, list[str]] = {}
    for name, value in body.items():
        field = fields.get(name)
        label = name[:64]
        if field is None:
            errors[label] = ["is read-only" if name in READ_ONLY else "unknown field"]
        elif value is None and not field.nullable:
            errors[label] = ["must not be null"]
        elif value is not None and not _TYPES[field.type](value):
            errors[label] = [f"must be {_TYPE_WORDS[field.type]}"]
    for name, field in fields.items():
        if field.required and name not in body:
            errors[name] = ["is required"]
    if errors:
        raise ValidationError(errors)
    return body


def query_args(allowed: Iterable[str]) -> dict[str, str]:
    """The query parameters, each known and given once (ValidationError otherwise)."""
    allowed = set(allowed)
    errors: dict[str, list[str]] = {}
    values: dict[str, str] = {}
    for name in request.args:
        given = request.args.getlist(name)
        label = name[:64]
        if name not in allowed:
            errors[label] = ["unknown query parameter"]
        elif len(given) > 1:
            errors[label] = ["given more than once"]
        else:
            values[name] = given[0]
    if errors:
        raise ValidationError(errors)
    return values


def parse_paging(args: Mapping[str, str]) -> Paging:
    """``page`` (0..999999999) and ``size`` (1..100) from the query; an empty page past the end."""
    errors: dict[str, list[str]] = {}
    page = size = None
    raw_page = args.get("page", "0")
    if PAGE_RE.fullmatch(raw_page):
        page = int(raw_page)
    else:
        errors["page"] = ["an integer from 0 to 999999999"]
    raw_size = args.get("size", str(DEFAULT_PAGE_SIZE))
    if PAGE_RE.fullmatch(raw_size) and 1 <= int(raw_size) <= MAX_PAGE_SIZE:
        size = int(raw_size)
    else:
        errors["size"] = [f"an integer from 1 to {MAX_PAGE_SIZE}"]
    if errors:
        raise ValidationError(errors)
    return Paging(page, size)


def parse_bool(args: Mapping[str, str], name: str) -> bool | None:
    """``true``/``false`` (exactly) or None when absent."""
    value = args.get(name)
    if value is None:
        return None
    if value not in ("true", "false"):
        raise ValidationError({name: ["true or false"]})
    return value == "true"


def parse_text(args: Mapping[str, str], name: str) -> str | None:
    """A filter value: 1-200 printable characters, or None when absent."""
    value = args.get(name)
    if value is None:
        return None
    if not value or len(value) > TEXT_MAX or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValidationError({name: [f"1 to {TEXT_MAX} printable characters"]})
    return value


def parse_time(args: Mapping[str, str], name: str) -> datetime | None:
    """An ISO 8601 timestamp with ``Z`` or an offset, or None when absent."""
    value = args.get(name)
    if value is None:
        return None
    try:
        if not TIMESTAMP_RE.fullmatch(value):
            raise ValueError(value)
        return parse_isoformat(value)
    except (ValueError, TypeError, OverflowError):
        raise ValidationError({name: [_TYPE_WORDS["timestamp"]]}) from None
