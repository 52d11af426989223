"""Request validation for the demo API: typed field reads, JSON bodies, query-argument filters.

Violations are collected field by field and raised as one 400 ``BAD_REQUEST`` envelope whose
``validationErrors`` name each field (the shape the platform's client libraries parse).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from flask import request
from werkzeug.exceptions import UnsupportedMediaType

from authserver.clock import parse_isoformat
from resource_demo.guard.errors import BadRequest

#: The platform's documented spelling of an offset without a colon (``...000+0000``).
_PLATFORM_OFFSET = re.compile(r"([+-][0-9]{2})([0-9]{2})$")


def parse_timestamp(value: str) -> datetime | None:
    """The server's one timestamp rule (RFC 3339, a zone required), also taking the platform's
    ``+0000`` offset spelling; None if invalid."""
    try:
        return parse_isoformat(_PLATFORM_OFFSET.sub(r"\1:\2", value))
    except ValueError:
        return None


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean", dict: "an object",
               list: "an array"}


class Fields:
    """Collects validation errors field by field, then raises one BadRequest naming them."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def fail(self, path: str, message: str) -> None:
        """Record one violation of ``path``."""
        self.errors.setdefault(path, []).append(message)

    def check(self) -> None:
        """Raise BadRequest (400, validationErrors) if any field failed."""
        if self.errors:
            raise BadRequest(validation_errors=self.errors)

    def get(self, obj: Any, key: str, kind: type, *, at: str = "", required: bool = False,
            max_len: int | None = None, choices: Iterable[str] | None = None) -> Any:
        """Read ``obj[key]`` as ``kind``; on a violation record it and return None."""
        path = f"{at}.{key}" if at else key
        value = obj.get(key) if isinstance(obj, dict) else None
        if value is None:
            if required:
                self.fail(path, "must not be null")
            return None
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            self.fail(path, f"must be {_TYPE_NAMES[kind]}")
            return None
        if isinstance(value, str | list):
            if required and not (value.strip() if isinstance(value, str) else value):
                blank = "must not be blank" if isinstance(value, str) else "must not be empty"
                self.fail(path, blank)
                return None
            if max_len is not None and len(value) > max_len:
                self.fail(path, f"size must be at most {max_len}")
                return None
        if choices is not None and value not in choices:
            self.fail(path, "must be one of: " + ", ".join(choices))
            return None
        return value

    def timestamp(self, obj: Any, key: str, *, at: str = "") -> datetime | None:
        """Read an ISO 8601 date-time string."""
        raw = self.get(obj, key, str, at=at)
        moment = parse_timestamp(raw) if raw is not None else None
        if raw is not None and moment is None:
            self.fail(f"{at}.{key}" if at else key, "must be an ISO 8601 date-time with Z or an offset")
        return moment

    def arg_int(self, name: str, default: int, low: int, high: int) -> int:
        """Read an integer query argument within [low, high]."""
        raw = request.args.get(name)
        if raw is None:
            return default
        if not re.fullmatch(r"-?[0-9]{1,9}", raw):
            self.fail(name, "must be an integer")
            return default
        if not low <= int(raw) <= high:
            self.fail(name, f"must be between {low} and {high}")
            return default
        return int(raw)

    def arg(self, name: str, *, required: bool = False,
            choices: Iterable[str] | None = None) -> str | None:
        """Read a string query argument."""
        return self.get(request.args.to_dict(), name, str, required=required, choices=choices)

    def arg_timestamp(self, name: str) -> datetime | None:
        """Read an ISO 8601 query argument."""
        return self.timestamp(request.args.to_dict(), name)


def read_json_object() -> dict:
    """The request body as a JSON object; 415, 413 or 400 in the envelope otherwise."""
    if not request.is_json:
        raise UnsupportedMediaType()
    raw = request.get_data(cache=False)  # 413 past the body limit
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested arrays
        raise BadRequest() from None
    if not isinstance(body, dict):
        raise BadRequest(validation_errors={"body": ["must be a JSON object"]})
    return body


def arg_filters(getters: dict[str, Callable[[Any], Any]]) -> Callable[[Any], bool]:
    """A predicate over the query arguments present; repeated or comma-separated = any of."""
    tests = []
    for name, getter in getters.items():
        wanted = {v for raw in request.args.getlist(name) for v in raw.split(",") if v}
        if wanted:
            tests.append((getter, wanted))
    return lambda item: all(getter(item) in wanted for getter, wanted in tests)

