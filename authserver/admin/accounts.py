"""The admin API's account endpoints: ``/settings/2/accounts`` (issue 13).

Only callers of the platform account holding ``accounts:manage`` get in (no umbrella covers
that scope, and only the platform account's credentials can hold it, threat model AC03).
Bodies and queries follow the rest of the admin API (``admin.validation`` through the models
of ``admin.schemas``); errors use its envelope.
"""

from __future__ import annotations

from flask import Blueprint, Response, url_for

from authserver.accounts import registry as accounts
from authserver.admin import schemas
from authserver.admin.auth import ACCOUNTS_SCOPE, current_caller, require_admin
from authserver.admin.paging import paged_response
from authserver.admin.validation import changes_of, read_body, read_query
from authserver.web.errors import ForbiddenError, ValidationError
from authserver.web.limits import hit

bp = Blueprint("admin_accounts", __name__)

WRITE_LIMIT = "ADMIN_WRITE_RATE_LIMIT"


@bp.after_request
def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _platform_only() -> None:
    """Refuse a caller outside the platform account, whatever its scopes (AC03, in depth)."""
    if not current_caller().platform:
        raise ForbiddenError("Only the platform account manages accounts.")


def render_account(account) -> dict:
    """An account in the admin API's shape."""
    return accounts.describe(account)


@bp.get("/settings/2/accounts")
@require_admin(ACCOUNTS_SCOPE)
def list_accounts():
    """A page of accounts, oldest first (the platform account leads); filters ``name``,
    ``enabled``."""
    _platform_only()
    query = read_query(schemas.AccountListQuery)
    rows, total = accounts.list_accounts(name=query.name, enabled=query.enabled,
                                         page=query.page, size=query.size)
    return paged_response("accounts", [render_account(row) for row in rows], page=query.page,
                          size=query.size, total=total, order_by="createdAt", direction="ASC")


@bp.post("/settings/2/accounts")
@require_admin(ACCOUNTS_SCOPE)
def create_account():
    """Create a customer account (enabled)."""
    _platform_only()
    read_query(schemas.EmptyQuery)
    hit(WRITE_LIMIT, current_caller().client_id)
    body = read_body(schemas.AccountCreate)
    account = accounts.create_account(name=body.name, actor=current_caller().actor)
    location = url_for("admin_accounts.get_account", account_id=account.id)
    return render_account(account), 201, {"Location": location}


@bp.get("/settings/2/accounts/<account_id>")
@require_admin(ACCOUNTS_SCOPE)
def get_account(account_id: str):
    """One account; 404 for unknown and malformed ids alike."""
    _platform_only()
    read_query(schemas.EmptyQuery)
    return render_account(accounts.get_account(account_id))


@bp.put("/settings/2/accounts/<account_id>")
@require_admin(ACCOUNTS_SCOPE)
def update_account(account_id: str):
    """Rename, disable (``enabled: false``: stops it everywhere) or enable an account."""
    _platform_only()
    accounts.get_account(account_id)  # 404 before counting or parsing
    read_query(schemas.EmptyQuery)
    hit(WRITE_LIMIT, current_caller().client_id)
    body = changes_of(read_body(schemas.AccountUpdate))
    if not body:
        raise ValidationError({"body": ["name at least one field to change"]})
    account = accounts.update_account(account_id, actor=current_caller().actor, **body)
    return render_account(account)
