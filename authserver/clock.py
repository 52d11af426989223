"""The current time, injectable through ``app.config["CLOCK"]`` for tests."""

from __future__ import annotations

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


def parse_isoformat(value: str) -> datetime:
    """Parse ISO 8601 with ``Z`` or an offset; naive values are refused (ValueError)."""
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("not an ISO 8601 timestamp")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError("timestamp needs a UTC offset or Z")
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("timestamp out of range") from None
