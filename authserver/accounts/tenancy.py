"""Who may see and touch what across accounts (threat model AC01-AC04).

The rules every front-end and protocol endpoint shares:

- a caller acts inside its own account; another account's object answers exactly like one
  that does not exist (the lookups filter by account in the same single query);
- a caller of the platform account may name another account where an operation allows it
  (``accountId`` in the admin API, the web UI's account switcher), and its ``tokens:introspect``
  clients introspect every account;
- a credential of a disabled account is inactive, and an access token issued at or before its
  account's last disable stays refused after the account is enabled again.
"""

from __future__ import annotations

from datetime import datetime

from authserver.accounts import registry
from authserver.web.errors import NotFoundError


def target_account(caller_account_id: str, caller_platform: bool,
                   requested: str | None) -> str:
    """The account an operation acts in: the caller's own, or ``requested`` when the caller
    belongs to the platform account and that account exists. Any other request is answered
    as an account that does not exist (NotFoundError)."""
    if requested is None or requested == caller_account_id:
        return caller_account_id
    if not caller_platform:
        raise NotFoundError(str(requested)[:64])  # no query: nothing to time
    return registry.get_account(requested).id


def may_see(caller_account_id: str, caller_platform: bool, account_id: str) -> bool:
    """True when a caller of ``caller_account_id`` may learn about records of ``account_id``."""
    return caller_platform or caller_account_id == account_id


def token_account_id(claims: dict) -> str:
    """The account of an access token: its ``account_id`` claim; tokens issued before accounts
    existed belong to the platform account, as every record did then."""
    account_id = claims.get("account_id")
    return account_id if isinstance(account_id, str) else registry.platform_account_id()


def disabled_at_epoch(disabled_at: datetime | None) -> int | None:
    """An account's last disable as whole seconds since the epoch (the feed's ``disabled_at``)."""
    return int(disabled_at.timestamp()) if disabled_at is not None else None


def token_refused_by_account(iat: object, enabled: bool, disabled_at: datetime | None) -> bool:
    """True when the token's account refuses it: the account is disabled, or the token was
    issued at or before the account's last disable (whole seconds, as ``iat`` is)."""
    if not enabled:
        return True
    cutoff = disabled_at_epoch(disabled_at)
    if cutoff is None:
        return False
    return not isinstance(iat, (int, float)) or isinstance(iat, bool) or iat <= cutoff
