"""Client service: create, list, show, disable and rotate secrets of OAuth clients.

The CLI, the admin API and the web UI call these functions; they validate, write the
change and its audit event in one transaction, and return model objects.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from authserver.accounts import registry as accounts
from authserver.clock import isoformat, utcnow
from authserver.credentials.hashing import hash_secret
from authserver.credentials.updates import (
    Updatable,
    update_record,
    validate_account_scopes,
    validate_grantable,
    validate_scopes,
)
from authserver.scopes import format_scope, parse_scope
from authserver.storage import audit
from authserver.storage.audit import Actor
from authserver.storage.cache import cache_rows, cached
from authserver.storage.db import db, matches, ordering, paginate, read_connection
from authserver.storage.models import Account, AuditEvent, Client
from authserver.web.errors import ForbiddenError, NotFoundError, ValidationError

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
SECRET_METHODS = ("client_secret_basic", "client_secret_post")
MAX_AUDIENCES = 10
URI_RE = re.compile(r"^(https?://[^\s/?#]+[^\s#]*|urn:[a-z0-9][a-z0-9-]{0,31}:\S+)$", re.I)
NAME_MAX = 200


def generate_client_secret() -> str:
    """A client secret with 256 random bits."""
    return secrets.token_urlsafe(32)


def validate_name(name: object, errors: dict) -> str | None:
    """A display name: 1-200 printable characters."""
    if not isinstance(name, str) or not name.strip():
        errors.setdefault("name", []).append("must not be empty")
        return None
    name = name.strip()
    if len(name) > NAME_MAX or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        errors.setdefault("name", []).append(f"at most {NAME_MAX} printable characters")
        return None
    return name


def validate_audiences_grantable(audiences: Iterable[str],
                                 held_audiences: Iterable[str] | None) -> None:
    """Raise ForbiddenError unless the caller may use every audience itself (threat model
    AU02: audiences are granted like scopes). ``None``: an unrestricted caller (CLI, UI)."""
    if held_audiences is None:
        return
    usable = set(held_audiences) | {current_app.config["DEFAULT_AUDIENCE"]}
    if not set(audiences) <= usable:
        raise ForbiddenError("An audience is not one the caller may use itself.")


def validate_audiences(value: object, errors: dict) -> list[str] | None:
    """Extra audiences a client may ask for with RFC 8707 ``resource``: absolute URIs."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_AUDIENCES:
        errors.setdefault("audiences", []).append(f"a list of at most {MAX_AUDIENCES} URIs")
        return None
    bad = [uri for uri in value if not isinstance(uri, str) or len(uri) > 255 or not URI_RE.match(uri)
           or any(ord(ch) < 32 or ord(ch) == 127 for ch in uri)]  # RFC 3986: no controls
    if bad:
        errors.setdefault("audiences", []).append("not an absolute URI")
        return None
    return list(dict.fromkeys(value))


def validate_token_ttl(value: object, errors: dict) -> int | None:
    """A lifetime override in seconds: 60 up to MAX_ACCESS_TOKEN_TTL."""
    if value is None:
        return None
    maximum = current_app.config["MAX_ACCESS_TOKEN_TTL"]
    if isinstance(value, bool) or not isinstance(value, int) or not 60 <= value <= maximum:
        errors.setdefault("tokenTtl", []).append(f"an integer from 60 to {maximum}")
        return None
    return value


def validate_jwks(value: object, errors: dict) -> dict | None:
    """A public JWK Set for private_key_jwt: asymmetric keys only, no private members."""
    from authserver.oauth2.client_assertion import parse_client_jwks

    try:
        return parse_client_jwks(value)
    except ValueError as exc:
        errors.setdefault("jwks", []).append(str(exc))
        return None


def describe(client: Client) -> dict:
    """The client as the admin API, the CLI's ``--json`` and the UI show it (camelCase; never
    a secret or its hash)."""
    return {
        "clientId": client.client_id,
        "accountId": client.account_id,
        "name": client.name,
        "scopes": parse_scope(client.scope),
        "audiences": list(client.audiences or []),
        "tokenTtl": client.token_ttl,
        "authMethod": client.auth_method,
        "jwks": client.jwks if client.auth_method == "private_key_jwt" else None,
        "dpopBoundAccessTokens": client.dpop_bound_access_tokens,
        "enabled": client.enabled,
        "hasSecret": client.secret_hash is not None,
        "previousSecretExpiresAt": isoformat(client.previous_secret_expires_at),
        "createdAt": isoformat(client.created_at),
        "updatedAt": isoformat(client.updated_at),
    }


def validate_flag(value: object, errors: dict, field: str) -> bool | None:
    """A true/false field (no coercion: "false" is not false)."""
    if not isinstance(value, bool):
        errors.setdefault(field, []).append("must be true or false")
        return None
    return value
def _audited(client: Client) -> dict:
    """What the audit trail keeps of a client: its fields, and of a JWK Set only the kids."""
    data = describe(client)
    data["jwksKids"] = _kids(data.pop("jwks"))
    return data


def create_client(*, name: str, scope, actor: Actor | str, token_ttl: int | None = None,
                  audiences: list[str] | None = None, auth_method: str = "client_secret_basic",
                  jwks: dict | None = None, dpop_bound_access_tokens: bool = False,
                  held_scopes: Iterable[str] | None = None,
                  held_audiences: Iterable[str] | None = None,
                  account_id: str | None = None) -> tuple[Client, str | None]:
    """Register a client in ``account_id`` (default: the platform account); returns it and its
    secret (None for private_key_jwt), shown once.

    ``dpop_bound_access_tokens`` (RFC 9449 §5.2): the client gets tokens only with a DPoP proof.
    With ``held_scopes`` / ``held_audiences`` (the caller's), every scope must be covered by
    them and every audience one the caller may use (else ForbiddenError).
    """
    account_id = accounts.resolve_account(account_id)
    actor = accounts.as_actor(actor)
    errors: dict[str, list[str]] = {}
    name = validate_name(name, errors)
    scopes = validate_scopes(scope, errors, "scopes")
    if scopes == []:
        errors.setdefault("scopes", []).append("at least one scope is required")
    validate_account_scopes(scopes, account_id, errors, "scopes")
    token_ttl = validate_token_ttl(token_ttl, errors)
    audiences = validate_audiences(audiences, errors)
    if auth_method not in AUTH_METHODS:
        errors.setdefault("authMethod", []).append("one of " + ", ".join(AUTH_METHODS))
    elif auth_method == "private_key_jwt":
        jwks = validate_jwks(jwks, errors)
    elif jwks is not None:
        errors.setdefault("jwks", []).append("only for private_key_jwt clients")
    dpop_bound = validate_flag(dpop_bound_access_tokens, errors, "dpopBoundAccessTokens")
    if errors:
        raise ValidationError(errors)
    validate_grantable(scopes, held_scopes)
    validate_audiences_grantable(audiences, held_audiences)
    secret = generate_client_secret() if auth_method in SECRET_METHODS else None
    now = utcnow()
    client = Client(client_id=secrets.token_hex(16), account_id=account_id, name=name,
                    scope=format_scope(scopes),
                    audiences=audiences, token_ttl=token_ttl, auth_method=auth_method,
                    secret_hash=hash_secret(secret) if secret else None,
                    jwks=jwks if auth_method == "private_key_jwt" else None,
                    dpop_bound_access_tokens=dpop_bound, enabled=True, created_at=now,
                    updated_at=now)
    db.session.add(client)
    audit.record(actor, "create", "oauth-client", client.client_id, after=_audited(client),
                 account_id=account_id)
    db.session.commit()
    return client, secret


def get_client(client_id: str, account_id: str | None = None) -> Client:
    """The client with ``client_id``, attached to the session; NotFoundError when none.

    With ``account_id``, a client of another account is not found either: the same single
    query answers both, so neither the answer nor its timing tells them apart (AC01).
    """
    client = None
    if _check_client_id(client_id):
        query = sa.select(Client).where(Client.client_id == client_id)
        if account_id is not None:
            query = query.where(Client.account_id == account_id)
        client = db.session.scalar(query)
    if client is None:
        raise NotFoundError(client_id)
    return client


def _check_client_id(client_id: object) -> bool:
    # PostgreSQL text cannot hold NUL: such an id would be a driver error (500), not a miss.
    return isinstance(client_id, str) and 0 < len(client_id) <= 64 and "\x00" not in client_id


_AUTH_LOOKUP: list[sa.Select] = []


def _auth_lookup() -> sa.Select:
    """The client row and its account's state, in one statement built once."""
    if not _AUTH_LOOKUP:
        clients, accounts_table = Client.__table__, Account.__table__
        _AUTH_LOOKUP.append(
            sa.select(clients, accounts_table.c.enabled.label("account_enabled"),
                      accounts_table.c.platform.label("account_platform"),
                      accounts_table.c.disabled_at.label("account_disabled_at"))
            .join(accounts_table, accounts_table.c.id == clients.c.account_id)
            .where(clients.c.client_id == sa.bindparam("value")).limit(1))
    return _AUTH_LOOKUP[0]


# A cached client carries its account's state: a change to either drops it everywhere.
cache_rows(Client, "clients", "client_id")
cache_rows(Account, "clients", None)


def query_client(client_id: object) -> Client | None:
    """Look a client up for authentication (a detached, read-only record; None if unknown).

    The record carries its account's state: ``account_enabled`` (a client of a disabled
    account authenticates nowhere), ``account_platform`` and ``account_disabled_at``.
    It is shared by this process's requests and kept in memory within the bounds of
    ``storage.cache`` (a change is in force everywhere within 1 s).
    """
    if not _check_client_id(client_id):
        return None
    return cached("clients", client_id, lambda: _read_client(client_id))


def _read_client(client_id: str) -> Client | None:
    """The client and its account's state, read with Core outside the ORM session, in one
    statement."""
    with read_connection() as connection:
        row = connection.execute(_auth_lookup(), {"value": client_id}).mappings().first()
    if row is None:
        return None
    row = dict(row)
    extra = {name: row.pop(name) for name in
             ("account_enabled", "account_platform", "account_disabled_at")}
    client = Client(**row)
    client.account_enabled = bool(extra["account_enabled"])
    client.account_platform = bool(extra["account_platform"])
    client.account_disabled_at = extra["account_disabled_at"]
    return client


#: List orders, under the admin API's names; the id breaks ties so pages never overlap.
ORDERS = {"createdAt": (Client.created_at, Client.id), "name": (Client.name, Client.id)}


def list_clients(*, account_id: str | None = None, enabled: bool | None = None,
                 name: str | None = None, search: str | None = None,
                 order_by: str = "createdAt", descending: bool = False, page: int = 0,
                 size: int = 100) -> tuple[list[Client], int]:
    """A page of clients (oldest first unless ordered otherwise) and the total count (of
    ``account_id``, or of all). ``name`` matches exactly; ``search`` is a case-insensitive
    part of the name or id.
    """
    query = sa.select(Client)
    if account_id is not None:
        query = query.where(Client.account_id == account_id)
    if enabled is not None:
        query = query.where(Client.enabled == enabled)
    if name:
        query = query.where(Client.name == name)
    if search:
        query = query.where(matches(search, Client.name, Client.client_id))
    return paginate(query, *ordering(ORDERS[order_by], descending), page=page, size=size)


def _jwks_rule(value: object, errors: dict, client: Client) -> dict | None:
    return None if value is None else validate_jwks(value, errors)


def _scopes_rule(value: object, errors: dict, client: Client) -> str | None:
    names = validate_scopes(value, errors, "scopes")
    validate_account_scopes(names, client.account_id, errors, "scopes")
    return None if names is None else format_scope(names)


def _auth_method_rule(value: object, errors: dict, client: Client) -> str | None:
    if value not in AUTH_METHODS:
        errors.setdefault("authMethod", []).append("one of " + ", ".join(AUTH_METHODS))
        return None
    return value


#: Updatable fields, under the admin API's names (the one vocabulary of every front-end).
UPDATABLE_FIELDS = {
    "name": Updatable("name", lambda value, errors, client: validate_name(value, errors)),
    "scopes": Updatable("scope", _scopes_rule),
    "audiences": Updatable("audiences",
                           lambda value, errors, client: validate_audiences(value, errors)),
    "tokenTtl": Updatable("token_ttl",
                          lambda value, errors, client: validate_token_ttl(value, errors)),
    "authMethod": Updatable("auth_method", _auth_method_rule),
    "enabled": Updatable("enabled",
                         lambda value, errors, client: validate_flag(value, errors, "enabled")),
    "dpopBoundAccessTokens": Updatable(
        "dpop_bound_access_tokens",
        lambda value, errors, client: validate_flag(value, errors, "dpopBoundAccessTokens")),
    "jwks": Updatable("jwks", _jwks_rule),
}


def _check_auth_method(client: Client, values: dict, errors: dict) -> None:
    """A private_key_jwt client needs a JWK Set and keeps no secret; a secret client keeps no
    JWK Set. Switching to a secret method leaves the client without a secret until
    ``rotate_secret`` issues one (a secret is only ever shown by the call that makes it)."""
    method = values.get("auth_method") or client.auth_method
    jwks = values["jwks"] if "jwks" in values else client.jwks
    if method == "private_key_jwt":
        if jwks is None and "jwks" not in errors:
            errors.setdefault("jwks", []).append("is required for private_key_jwt clients")
        if client.auth_method != "private_key_jwt":
            values.update(secret_hash=None, previous_secret_hash=None,
                          previous_secret_expires_at=None)
    elif values.get("jwks") is not None:
        errors.setdefault("jwks", []).append("only for private_key_jwt clients")
    elif client.jwks is not None:
        values["jwks"] = None  # switched away from private_key_jwt


def update_client(client_id: str, *, actor: Actor | str, changes: dict,
                  held_scopes: Iterable[str] | None = None,
                  held_audiences: Iterable[str] | None = None,
                  account_id: str | None = None) -> Client:
    """Change ``name``, ``scopes``, ``audiences``, ``tokenTtl``, ``authMethod``, ``enabled``,
    ``jwks`` or ``dpopBoundAccessTokens``; validated as a whole, audited, committed
    (``credentials.updates``). With ``account_id``, only a client of that account is found.

    With ``held_audiences``, the client's current and new audiences must be ones the caller
    may use (AU02). A client an operator disabled is enabled again only by an operator
    (AU02: an API client, actor ``client:…``, has less authority).
    """
    client = get_client(client_id, account_id)
    validate_audiences_grantable(client.audiences or [], held_audiences)
    new_audiences = validate_audiences(changes.get("audiences"), {}) \
        if "audiences" in changes else None
    validate_audiences_grantable(new_audiences or [], held_audiences)
    if changes.get("enabled") is True and not client.enabled \
            and str(actor).startswith("client:") and not _disabled_by_a_client(client.client_id):
        raise ForbiddenError("An operator disabled this client; only an operator can enable it.")
    return update_record(client, changes, fields=UPDATABLE_FIELDS, actor=actor,
                         held_scopes=held_scopes, object_type="oauth-client",
                         object_id=client.client_id, describe=_audited,
                         check=_check_auth_method)


def _disabled_by_a_client(client_id: str) -> bool:
    """True when the client's latest disable came from an API client (actor ``client:…``)."""
    actor = db.session.scalar(
        sa.select(AuditEvent.actor).where(AuditEvent.object_type == "oauth-client")
        .where(AuditEvent.object_id == client_id).where(AuditEvent.action == "disable")
        .order_by(AuditEvent.id.desc()).limit(1))
    return actor is not None and actor.startswith("client:")


def _kids(jwks: dict | None) -> list:
    """The ``kid`` of each registered public key (what the audit trail says about a JWKS)."""
    return [key.get("kid") for key in (jwks or {}).get("keys", []) if isinstance(key, dict)]


def disable_client(client_id: str, *, actor: Actor | str,
                   held_scopes: Iterable[str] | None = None,
                   account_id: str | None = None) -> Client:
    """Disable a client: it can no longer get tokens (its issued tokens live until ``exp``)."""
    return update_client(client_id, actor=actor, changes={"enabled": False},
                         held_scopes=held_scopes, account_id=account_id)


def delete_client(client_id: str, *, actor: Actor | str,
                  held_scopes: Iterable[str] | None = None,
                  account_id: str | None = None) -> None:
    """Delete a client for good; its audit trail stays. It gets no new tokens and the admin
    API refuses its tokens at once; tokens it already holds live until ``exp`` at resource
    servers that verify locally (revoke them by ``jti`` to end them sooner)."""
    actor = accounts.as_actor(actor)
    client = get_client(client_id, account_id)
    validate_grantable(parse_scope(client.scope), held_scopes)
    before = _audited(client)
    db.session.delete(client)
    audit.record(actor, "delete", "oauth-client", client.client_id, before, {},
                 account_id=client.account_id)
    db.session.commit()


def rotate_secret(client_id: str, *, actor: Actor | str, grace_seconds: int = 0,
                  held_scopes: Iterable[str] | None = None,
                  held_audiences: Iterable[str] | None = None,
                  account_id: str | None = None) -> tuple[Client, str]:
    """Issue a new secret; the previous one stays valid for ``grace_seconds`` (0 = not at all).

    With ``held_scopes`` / ``held_audiences``, the caller must cover the client's scopes and
    audiences: the new secret is its power.
    """
    actor = accounts.as_actor(actor)
    client = get_client(client_id, account_id)
    validate_grantable(parse_scope(client.scope), held_scopes)
    validate_audiences_grantable(client.audiences or [], held_audiences)
    if client.auth_method not in SECRET_METHODS:
        raise ValidationError({"authMethod": ["a private_key_jwt client has no secret"]})
    maximum = 30 * 86400
    if isinstance(grace_seconds, bool) or not isinstance(grace_seconds, int) \
            or not 0 <= grace_seconds <= maximum:
        raise ValidationError({"gracePeriod": [f"an integer from 0 to {maximum} seconds"]})
    secret = generate_client_secret()
    now = utcnow()
    if grace_seconds:
        client.previous_secret_hash = client.secret_hash
        client.previous_secret_expires_at = now + timedelta(seconds=grace_seconds)
    else:
        client.previous_secret_hash = client.previous_secret_expires_at = None
    client.secret_hash = hash_secret(secret)
    client.updated_at = now
    audit.record(actor, "rotate-secret", "oauth-client", client.client_id,
                 {"secretRotatedAt": None},
                 {"secretRotatedAt": isoformat(now), "gracePeriod": grace_seconds},
                 account_id=client.account_id)
    db.session.commit()
    return client, secret
