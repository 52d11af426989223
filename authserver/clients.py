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

from . import audit
from .clock import isoformat, utcnow
from .db import db, read_one
from .errors import ForbiddenError, NotFoundError, ValidationError
from .hashing import hash_secret
from .models import Client
from .scopes import ScopeError, current_catalogue, format_scope, parse_scope

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
SECRET_METHODS = ("client_secret_basic", "client_secret_post")
MAX_AUDIENCES = 10
URI_RE = re.compile(r"^(https?://[^\s/?#]+[^\s#]*|urn:[a-z0-9][a-z0-9-]{0,31}:\S+)$", re.I)
NAME_MAX = 200
UPDATABLE = ("name", "scope", "audiences", "token_ttl", "enabled", "jwks")


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


def validate_scopes(value: object, errors: dict, field: str = "scope") -> list[str] | None:
    """Scope names from a space-separated string or a list; each must be in the catalogue."""
    try:
        if isinstance(value, str):
            names = parse_scope(value)
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            names = parse_scope(" ".join(value)) if value else []
        else:
            raise ScopeError("must be a list of scope names")
    except ScopeError as exc:
        errors.setdefault(field, []).append(str(exc))
        return None
    unknown = current_catalogue().validate_names(names)
    if unknown:
        errors.setdefault(field, []).append("unknown scope: " + ", ".join(unknown[:10]))
        return None
    return names


def validate_grantable(names: Iterable[str], held_scopes: Iterable[str] | None) -> None:
    """Raise ForbiddenError unless ``held_scopes`` cover every name (umbrella-aware).

    SECURITY.md AD04: a caller can never grant more than it holds. ``None`` means an
    unrestricted caller (the CLI, run by whoever holds the database).
    """
    if held_scopes is None:
        return
    held = frozenset(held_scopes)
    catalogue = current_catalogue()
    if any(not catalogue.covers(held, name) for name in names):
        raise ForbiddenError("A scope is not covered by the caller's own scopes.")


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
    from .client_assertion import parse_client_jwks

    try:
        return parse_client_jwks(value)
    except ValueError as exc:
        errors.setdefault("jwks", []).append(str(exc))
        return None


def describe(client: Client) -> dict:
    """The client's non-secret fields (audit trail, CLI and API output)."""
    return {
        "client_id": client.client_id,
        "name": client.name,
        "scope": client.scope,
        "audiences": list(client.audiences or []),
        "token_ttl": client.token_ttl,
        "auth_method": client.auth_method,
        "enabled": client.enabled,
        "created_at": isoformat(client.created_at),
        "updated_at": isoformat(client.updated_at),
    }


def create_client(*, name: str, scope, actor: str, token_ttl: int | None = None,
                  audiences: list[str] | None = None, auth_method: str = "client_secret_basic",
                  jwks: dict | None = None,
                  held_scopes: Iterable[str] | None = None) -> tuple[Client, str | None]:
    """Register a client; returns it and its secret (None for private_key_jwt), shown once.

    With ``held_scopes`` (the caller's), every scope must be covered by them (else ForbiddenError).
    """
    errors: dict[str, list[str]] = {}
    name = validate_name(name, errors)
    scopes = validate_scopes(scope, errors)
    if scopes == []:
        errors.setdefault("scope", []).append("at least one scope is required")
    token_ttl = validate_token_ttl(token_ttl, errors)
    audiences = validate_audiences(audiences, errors)
    if auth_method not in AUTH_METHODS:
        errors.setdefault("authMethod", []).append("one of " + ", ".join(AUTH_METHODS))
    elif auth_method == "private_key_jwt":
        jwks = validate_jwks(jwks, errors)
    elif jwks is not None:
        errors.setdefault("jwks", []).append("only for private_key_jwt clients")
    if errors:
        raise ValidationError(errors)
    validate_grantable(scopes, held_scopes)
    secret = generate_client_secret() if auth_method in SECRET_METHODS else None
    now = utcnow()
    client = Client(client_id=secrets.token_hex(16), name=name, scope=format_scope(scopes),
                    audiences=audiences, token_ttl=token_ttl, auth_method=auth_method,
                    secret_hash=hash_secret(secret) if secret else None,
                    jwks=jwks if auth_method == "private_key_jwt" else None,
                    enabled=True, created_at=now, updated_at=now)
    db.session.add(client)
    audit.record(actor, "create", "oauth-client", client.client_id, after=describe(client))
    db.session.commit()
    return client, secret


def get_client(client_id: str) -> Client:
    """The client with ``client_id``, attached to the session; NotFoundError when none."""
    client = None
    if _check_client_id(client_id):
        client = db.session.scalar(sa.select(Client).where(Client.client_id == client_id))
    if client is None:
        raise NotFoundError(client_id)
    return client


def _check_client_id(client_id: object) -> bool:
    # PostgreSQL text cannot hold NUL: such an id would be a driver error (500), not a miss.
    return isinstance(client_id, str) and 0 < len(client_id) <= 64 and "\x00" not in client_id


def query_client(client_id: object) -> Client | None:
    """Look a client up for authentication (a detached, read-only record; None if unknown)."""
    if not _check_client_id(client_id):
        return None
    return read_one(Client, "client_id", client_id)


def list_clients(*, enabled: bool | None = None, name: str | None = None,
                 page: int = 0, size: int = 100) -> tuple[list[Client], int]:
    """A page of clients, oldest first, and the total count."""
    query = sa.select(Client)
    if enabled is not None:
        query = query.where(Client.enabled == enabled)
    if name:
        query = query.where(Client.name == name)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    rows = db.session.scalars(query.order_by(Client.id).offset(page * size).limit(size)).all()
    return list(rows), total


def update_client(client_id: str, *, actor: str, held_scopes: Iterable[str] | None = None,
                  **changes) -> Client:
    """Change name, scope, audiences, token_ttl, enabled or jwks; audited.

    With ``held_scopes``, the client's current and new scopes must be covered by them.
    """
    unknown = sorted(set(changes) - set(UPDATABLE))
    if unknown:
        raise ValidationError({field: ["cannot be set"] for field in unknown})
    client = get_client(client_id)
    validate_grantable(parse_scope(client.scope), held_scopes)
    before = describe(client) | {"jwks_kids": _kids(client.jwks)}
    errors: dict[str, list[str]] = {}
    new_scopes: list[str] = []
    if "name" in changes:
        client.name = validate_name(changes["name"], errors) or client.name
    if "scope" in changes:
        scopes = validate_scopes(changes["scope"], errors)
        if scopes is not None:
            client.scope = format_scope(scopes)
            new_scopes = scopes
    if "audiences" in changes:
        audiences = validate_audiences(changes["audiences"], errors)
        if audiences is not None:
            client.audiences = audiences
    if "token_ttl" in changes:
        client.token_ttl = validate_token_ttl(changes["token_ttl"], errors)
    if "enabled" in changes:
        if not isinstance(changes["enabled"], bool):
            errors.setdefault("enabled", []).append("must be true or false")
        else:
            client.enabled = changes["enabled"]
    if "jwks" in changes:
        if client.auth_method != "private_key_jwt":
            errors.setdefault("jwks", []).append("only for private_key_jwt clients")
        else:
            client.jwks = validate_jwks(changes["jwks"], errors) or client.jwks
    if errors:
        db.session.rollback()
        raise ValidationError(errors)
    try:
        validate_grantable(new_scopes, held_scopes)
    except ForbiddenError:
        db.session.rollback()
        raise
    client.updated_at = utcnow()
    action = "disable" if before["enabled"] and not client.enabled else "update"
    audit.record(actor, action, "oauth-client", client.client_id, before,
                 describe(client) | {"jwks_kids": _kids(client.jwks)})
    db.session.commit()
    return client


def _kids(jwks: dict | None) -> list:
    """The ``kid`` of each registered public key (what the audit trail says about a JWKS)."""
    return [key.get("kid") for key in (jwks or {}).get("keys", []) if isinstance(key, dict)]


def disable_client(client_id: str, *, actor: str) -> Client:
    """Disable a client: it can no longer get tokens (its issued tokens live until ``exp``)."""
    return update_client(client_id, actor=actor, enabled=False)


def rotate_secret(client_id: str, *, actor: str, grace_seconds: int = 0,
                  held_scopes: Iterable[str] | None = None) -> tuple[Client, str]:
    """Issue a new secret; the previous one stays valid for ``grace_seconds`` (0 = not at all).

    With ``held_scopes``, the caller must cover the client's scopes: the new secret is its power.
    """
    client = get_client(client_id)
    validate_grantable(parse_scope(client.scope), held_scopes)
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
                 {"secret_rotated_at": None},
                 {"secret_rotated_at": isoformat(now), "grace_seconds": grace_seconds})
    db.session.commit()
    return client, secret
