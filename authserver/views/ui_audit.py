"""Web UI: the audit log, newest first, filtered by actor, object and time range."""

from __future__ import annotations

from datetime import timedelta

from flask import render_template, request

from .. import audit
from . import ui_forms as forms
from .admin_ui import bp

OBJECT_TYPES = (("api-key", "API key"), ("oauth-client", "OAuth client"),
                ("operator", "Operator"))
OBJECT_PAGES = {"api-key": "admin_ui.edit_api_key", "oauth-client": "admin_ui.client_detail"}


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
    """The audit trail with its filter form."""
    filters = {name: request.args.get(name, "").strip()
               for name in ("actor", "object_type", "object_id", "since", "until")}
    errors: dict[str, list[str]] = {}
    bounds = {}
    for name in ("since", "until"):
        try:
            bounds[name] = forms.parse_date(filters[name])
        except ValueError:
            errors[name] = ["a date such as 2027-01-31"]
    if bounds.get("until") is not None:
        bounds["until"] += timedelta(days=1)  # the "to" date is inclusive
    page = forms.page_number()
    events, total = [], 0
    if not errors:
        events, total = audit.query_events(
            actor=filters["actor"] or None, object_type=filters["object_type"] or None,
            object_id=filters["object_id"] or None, since=bounds["since"],
            until=bounds["until"], page=page, size=forms.PAGE_SIZE)
    return render_template("audit.html", events=events, total=total, page=page,
                           page_size=forms.PAGE_SIZE, filters=filters, errors=errors,
                           object_types=OBJECT_TYPES, object_pages=OBJECT_PAGES,
                           ), 400 if errors else 200
