"""Web UI: the audit log, filtered by actor, object and time range, paged and sorted (newest
or oldest first)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from flask import render_template
from pydantic import Field

from authserver.accounts import registry as accounts
from authserver.admin.schemas import Direction, PageQuery, TextParam
from authserver.admin.ui import forms as forms
from authserver.admin.ui.blueprint import account_id, bp
from authserver.storage import audit

OBJECT_TYPES = (("api-key", "API key"), ("oauth-client", "OAuth client"),
                ("operator", "Operator"), ("account", "Account"))
OBJECT_PAGES = {"api-key": "admin_ui.edit_api_key", "oauth-client": "admin_ui.client_detail"}


class AuditPageQuery(PageQuery):
    """The audit page's query: the admin API's paging and text rules, the form's field names
    (dates are read by ``forms.parse_date`` and shown next to their fields)."""

    actor: TextParam = None
    object_type: Literal[tuple(value for value, _ in OBJECT_TYPES)] = None
    object_id: TextParam = None
    since: Annotated[str, Field(max_length=40)] = None
    until: Annotated[str, Field(max_length=40)] = None
    orderDirection: Direction = "DESC"


@bp.app_template_filter("audit_value")
def audit_value(value) -> str:
    """One recorded field value as text: lists joined, booleans and None spelled out."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "none"
    return str(value)


@bp.get("/audit")
def audit_log():
    """The account's audit trail (its records' events, and what its operators and clients
    did), with its filter form; each row names the actor's account and the record's."""
    query, size = forms.list_query(AuditPageQuery)
    filters = {name: (getattr(query, name) or "").strip()
               for name in ("actor", "object_type", "object_id", "since", "until")}
    errors: dict[str, list[str]] = {}
    bounds = {}
    for name in ("since", "until"):
        try:
            bounds[name] = forms.parse_date(filters[name])
        except ValueError:
            errors[name] = ["a date such as 2027-01-31"]
    if bounds.get("until") is not None:
        try:
            bounds["until"] += timedelta(days=1)  # the "to" date is inclusive
        except OverflowError:
            bounds["until"] = None  # 9999-12-31, the last day there is: no upper bound
    events, total = [], 0
    if not errors:
        events, total = audit.query_events(
            account_id=account_id(), actor=filters["actor"] or None,
            object_type=filters["object_type"] or None, object_id=filters["object_id"] or None,
            since=bounds["since"], until=bounds["until"], page=query.page, size=size,
            descending=query.orderDirection == "DESC")
    account_names = accounts.names([event.account_id for event in events]
                                   + [event.actor_account_id for event in events])
    return render_template("audit.html", events=[audit.describe(event) for event in events],
                           total=total, page=query.page, account_names=account_names,
                           page_size=size, filters=filters, errors=errors, query=query,
                           object_types=OBJECT_TYPES, object_pages=OBJECT_PAGES,
                           ), 400 if errors else 200
