"""The current time, injectable through ``app.config["CLOCK"]`` for tests."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from flask import current_app, has_app_context


def utcnow() -> datetime:
    """Return the current aware UTC time (or the configured test clock's)."""
    if has_app_context():
        clock = current_app.config.get("CLOCK")
        if clock is not None:
            return clock()
    return datetime.now(timezone.utc)


def epoch() -> int:
    """Return the current time as whole seconds since the epoch."""
    return int(utcnow().timestamp())


def isoformat(value: datetime | None) -> str | None:
    """Format an aware datetime as ISO 8601 UTC with a trailing ``Z``."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


#: The one input syntax for timestamps on every surface (admin API, CLI, web UI, demo API):
#: an RFC 3339 date-time with ``Z`` or a numeric offset (``+00:00``). A time without a zone is
#: refused everywhere, never guessed as UTC or local time.
TIMESTAMP_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}"
                          r"(?:\.[0-9]{1,9})?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$")


def parse_isoformat(value: object) -> datetime:
    """Parse a timestamp of ``TIMESTAMP_RE`` into aware UTC; ValueError for anything else
    (no zone, another syntax, out of range)."""
    if not isinstance(value, str) or TIMESTAMP_RE.fullmatch(value) is None:
        raise ValueError("not an RFC 3339 timestamp with Z or an offset")
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        return datetime.fromisoformat(text).astimezone(timezone.utc)
    except (ValueError, OverflowError):  # e.g. month 13, or beyond year 9999 once in UTC
        raise ValueError("timestamp out of range") from None
