"""The server's scope catalogue: the shipped one plus the operator's instance file.

The rule itself (name syntax, umbrellas, any-of) lives in ``resource_demo.guard.scopes``, the
one home the token endpoint, introspection, the admin API and every resource guard share.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, current_app

from resource_demo.guard.scopes import (  # noqa: F401 - the rule, re-exported for the server
    CATEGORIES,
    MAX_SCOPES,
    Catalogue,
    Scope,
    ScopeError,
    check_scope_name,
    default_catalogue,
    format_scope,
    has_required_scope,
    load_file,
    parse_scope,
    shipped_entries,
)

EXTENSION_KEY = "authserver.scopes"
#: Scopes the admin API accepts: a client holding one may ask for ADMIN_AUDIENCE tokens.
ADMIN_SCOPES = ("account-management:manage", "audit-logs:read", "accounts:manage",
                "resource-servers:manage")


def init_app(app: Flask) -> None:
    """Build the app's catalogue: the shipped file plus the instance folder's, if present."""
    extra = Path(app.instance_path) / app.config["SCOPES_FILE"]
    if extra.is_file():
        entries = load_file(extra)
        try:
            app.extensions[EXTENSION_KEY] = Catalogue(shipped_entries() + entries)
        except ScopeError as exc:  # a name defined twice: say which file did it
            raise ScopeError(f"{extra}: {exc}") from exc
    else:
        app.extensions[EXTENSION_KEY] = default_catalogue()


def current_catalogue() -> Catalogue:
    """The catalogue of the current app."""
    return current_app.extensions[EXTENSION_KEY]
