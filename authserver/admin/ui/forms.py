"""Form plumbing shared by the web UI pages: reading fields, the grouped scope picker, and
placing a service's ValidationError next to the form fields. No validation rules live here:
the services own them, the UI only converts browser input shapes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timezone

import pydantic
from flask import request
from werkzeug.datastructures import MultiDict

from authserver.accounts import registry as accounts
from authserver.admin.schemas import PageQuery
from authserver.admin.validation import errors_of, read_query
from authserver.credentials.updates import PLATFORM_ONLY_SCOPES
from authserver.scopes import current_catalogue
from authserver.web.errors import ValidationError

PAGE_SIZE = 50
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def text(name: str) -> str:
    """A form field as a string ("" when absent)."""
    return request.form.get(name, "")


def checkbox(name: str) -> bool:
    """A checkbox (or a hidden true/false field): True only for the value ``true``."""
    return request.form.get(name) == "true"


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
    """The ``page`` query parameter under the admin API's paging rule (ValidationError, a
    400 page, for anything else)."""
    try:
        return PageQuery.model_validate({"page": request.args.get("page", "0")}).page
    except pydantic.ValidationError as exc:
        raise ValidationError(errors_of(exc, "query")) from None


def list_query(model: type[pydantic.BaseModel]) -> tuple[pydantic.BaseModel, int]:
    """A list page's query parameters, read exactly as the admin API reads its lists
    (``search``, ``enabled``, ``orderBy``, ``orderDirection``, ``page``, ``size``; unknown or
    repeated ones are a ValidationError: a 400 page), and the page size (PAGE_SIZE unless
    ``size`` is given). The account comes from the session's switcher, never the URL."""
    # A GET form sends its empty fields too ("search="): empty means "no filter" here.
    args = MultiDict([(name, value) for name, value in request.args.items(multi=True)
                      if value != ""])
    query = read_query(model, args)
    if "accountId" in query.model_fields_set:
        raise ValidationError({"accountId": ["unknown query parameter (use the account "
                                             "switcher)"]})
    return query, query.size if "size" in query.model_fields_set else PAGE_SIZE


def field_errors(errors: Mapping[str, list[str]], fields: Mapping[str, str]) -> dict:
    """Service error fields (``scopeGuids``) renamed to form fields (``scopes``)."""
    placed: dict[str, list[str]] = {}
    for field, messages in errors.items():
        placed.setdefault(fields.get(field, "form"), []).extend(messages)
    return placed


def scope_picker(selected: Iterable[str], account_id: str | None = None) -> list[dict]:
    """The catalogue by UI category, each category split by product family, for the picker,
    with what each umbrella covers (the catalogue's umbrella table, the rule the token
    endpoint and the guards apply); platform-only scopes appear only for the platform
    account (threat model AC03)."""
    chosen = set(selected)
    hidden = frozenset() if account_id is None or account_id == accounts.platform_account_id() \
        else PLATFORM_ONLY_SCOPES
    catalogue = current_catalogue()
    covers = catalogue.umbrella_table()
    groups = []
    for category, entries in catalogue.by_category().items():
        families: dict[str, list[dict]] = {}
        for entry in entries:
            if entry.name in hidden:
                continue
            families.setdefault(entry.group or category, []).append({
                "name": entry.name, "description": entry.description,
                "id": re.sub(r"[^a-z0-9-]", "_", entry.name.lower()),
                "covers": [name for name in covers.get(entry.name, []) if name not in hidden]})
        scopes = [scope for family in families.values() for scope in family]
        groups.append({"name": category,
                       "id": "scopes-" + re.sub(r"[^a-z0-9]+", "-", category.lower()),
                       "families": families,
                       "selected": sum(scope["name"] in chosen for scope in scopes)})
    return groups
