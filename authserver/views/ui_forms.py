"""Form plumbing shared by the web UI pages: reading fields, the grouped scope picker, and
placing a service's ValidationError next to the form fields. No validation rules live here:
the services own them, the UI only converts browser input shapes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timezone

from flask import request

from ..scopes import current_catalogue

PAGE_SIZE = 50
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def text(name: str) -> str:
    """A form field as a string ("" when absent)."""
    return request.form.get(name, "")


def entries(value: str) -> list[str]:
    """Entries of a textarea, one per line or separated by commas or spaces."""
    return [item for item in re.split(r"[\s,]+", value) if item]


def optional_int(value: str) -> int | str | None:
    """An integer field: None when blank, an int when it is one, else the raw text (which the
    service then refuses with its own message)."""
    value = value.strip()
    if not value:
        return None
    return int(value) if value.isascii() and value.isdigit() and len(value) < 12 else value


def date_to_timestamp(value: str) -> str | None:
    """A date input (``2027-01-31``) as the ISO timestamp of its start in UTC; other text is
    passed through unchanged for the service to judge; blank is None."""
    value = value.strip()
    if not value:
        return None
    return f"{value}T00:00:00Z" if DATE_RE.match(value) else value


def parse_date(value: str) -> datetime | None:
    """A filter date as the UTC start of that day; ValueError for anything else."""
    value = value.strip()
    if not value:
        return None
    return datetime.combine(date.fromisoformat(value), time(), tzinfo=timezone.utc)


def page_number() -> int:
    """The ``page`` query parameter (0-based, bad values read as 0)."""
    value = request.args.get("page", "0")
    return min(int(value), 10**6) if value.isascii() and value.isdigit() else 0


def field_errors(errors: Mapping[str, list[str]], fields: Mapping[str, str]) -> dict:
    """Service error fields (``scopeGuids``) renamed to form fields (``scopes``)."""
    placed: dict[str, list[str]] = {}
    for field, messages in errors.items():
        placed.setdefault(fields.get(field, "form"), []).extend(messages)
    return placed


def scope_picker(selected: Iterable[str]) -> list[dict]:
    """The catalogue by UI category, each category split by product family, for the picker."""
    chosen = set(selected)
    groups = []
    for category, scopes in current_catalogue().by_category().items():
        families: dict[str, list] = {}
        for entry in scopes:
            families.setdefault(entry.group or category, []).append(entry)
        groups.append({"name": category,
                       "id": "scopes-" + re.sub(r"[^a-z0-9]+", "-", category.lower()),
                       "families": families,
                       "selected": sum(entry.name in chosen for entry in scopes)})
    return groups
