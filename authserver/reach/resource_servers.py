"""Resource servers and the route manifests their guards export (``guard.routes()``,
``resource-demo routes --json``; format: ``resource_demo.guard.manifest``).

A manifest is checked whole before anything is stored: its shape by the pydantic model
``Manifest`` (also the admin API's schema), its scopes against the server's catalogue. A
registration replaces the previous manifest of that name in one transaction with its audit
event; resource servers are platform-wide (they serve every account), so the events belong
to the platform account.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Literal

import pydantic
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from authserver.accounts import registry as accounts
from authserver.clock import isoformat, utcnow
from authserver.credentials.clients import URI_RE
from authserver.scopes import current_catalogue
from authserver.storage import audit
from authserver.storage.audit import Actor
from authserver.storage.db import db, paginate
from authserver.storage.models import ResourceServer
from authserver.web.errors import NotFoundError, ValidationError
from resource_demo.guard.manifest import MANIFEST_VERSION

OBJECT_TYPE = "resource-server"
NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$"
NAME_RE = re.compile(NAME_PATTERN)
#: OpenAPI path syntax as the manifest writes it: literal segments and ``{param}``.
PATH_PATTERN = r"^/(?:[A-Za-z0-9._~!$&'()*+,;=:@%/-]|\{[A-Za-z_][A-Za-z0-9_]*\})*$"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_ROUTES = 1000
MAX_ROUTE_SCOPES = 50
MAX_AUDIENCES = 10
NAME_WORDS = ("1 to 64 lowercase letters, digits, '.', '_' or '-', starting and ending with a "
              "letter or digit")


def _scope_enum(schema: dict) -> None:
    """The scope names the running app knows (the OpenAPI document is built in a request)."""
    schema["items"] = {"type": "string", "enum": current_catalogue().names}


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class ManifestRoute(_Strict):
    """One protected route: the guard lets a credential in when it holds any one of
    ``scopes``; ``apiKeys: false`` refuses App keys whatever they hold."""

    method: Literal[METHODS]  # type: ignore[valid-type]
    path: Annotated[str, Field(min_length=1, max_length=512, pattern=PATH_PATTERN)]
    scopes: Annotated[list[Annotated[str, Field(max_length=128)]], Field(
        min_length=1, max_length=MAX_ROUTE_SCOPES, json_schema_extra=_scope_enum)]
    apiKeys: bool


class Manifest(_Strict):
    """A guard's route manifest, version 1 (``resource_demo.guard.manifest``)."""

    version: Literal[MANIFEST_VERSION]  # type: ignore[valid-type]
    audience: Annotated[str, Field(max_length=255, description="audiences[0].")]
    audiences: Annotated[list[Annotated[str, Field(max_length=255)]], Field(
        min_length=1, max_length=MAX_AUDIENCES,
        description="The audiences the resource server's guard accepts in JWTs.")]
    routes: Annotated[list[ManifestRoute], Field(max_length=MAX_ROUTES)]

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        problems = []
        if self.audience != self.audiences[0]:
            problems.append("audience must be the first of audiences")
        if any(URI_RE.fullmatch(value) is None for value in self.audiences):
            problems.append("audiences must be absolute URIs")
        if len(set(self.audiences)) != len(self.audiences):
            problems.append("audiences are listed more than once")
        seen = set()
        for route in self.routes:
            key = (route.method, route.path)
            if key in seen:
                problems.append(f"{route.method} {route.path} is listed more than once")
            seen.add(key)
            if len(set(route.scopes)) != len(route.scopes):
                problems.append(f"{route.method} {route.path} lists a scope more than once")
        if problems:
            raise ValueError("; ".join(problems[:5]))
        return self


def _label(location: tuple) -> str:
    """pydantic's error location as ``routes[3].method``."""
    label = ""
    for part in location:
        label += f"[{part}]" if isinstance(part, int) else (f".{part}" if label else str(part))
    return label[:100] or "manifest"


def parse_manifest(document: object) -> Manifest:
    """``document`` (parsed JSON) as a Manifest, or ValidationError naming each bad member."""
    if isinstance(document, Manifest):
        return document
    try:
        return Manifest.model_validate(document)
    except pydantic.ValidationError as exc:
        errors: dict[str, list[str]] = {}
        for error in exc.errors(include_url=False)[:20]:
            message = str(error["ctx"]["error"]) if error["type"] == "value_error" else \
                error["msg"][:1].lower() + error["msg"][1:]
            messages = errors.setdefault(_label(error["loc"]), [])
            if message not in messages:
                messages.append(message)
        raise ValidationError(errors) from None


def _check_scopes(manifest: Manifest) -> None:
    """Every scope a route accepts must be in this server's catalogue."""
    catalogue = current_catalogue()
    errors: dict[str, list[str]] = {}
    for index, route in enumerate(manifest.routes):
        unknown = catalogue.validate_names(route.scopes)
        if unknown:
            errors[f"routes[{index}].scopes"] = ["unknown scope: " + ", ".join(unknown[:10])]
        if len(errors) >= 20:
            break
    if errors:
        raise ValidationError(errors)


def normalised(manifest: Manifest) -> dict:
    """The stored form: routes sorted by path and method, scopes sorted (as the guard
    writes them), so the same routes always store the same document."""
    routes = sorted(({"method": route.method, "path": route.path,
                      "scopes": sorted(route.scopes), "apiKeys": route.apiKeys}
                     for route in manifest.routes),
                    key=lambda route: (route["path"], route["method"]))
    return {"version": manifest.version, "audience": manifest.audience,
            "audiences": list(manifest.audiences), "routes": routes}


def _audited(record: ResourceServer) -> dict:
    """What the audit trail keeps of a manifest: its audiences, size and digest."""
    text = json.dumps(record.manifest, sort_keys=True, separators=(",", ":"))
    return {"audiences": list(record.manifest["audiences"]),
            "routeCount": len(record.manifest["routes"]),
            "manifestSha256": hashlib.sha256(text.encode()).hexdigest()}


def check_name(name: object) -> bool:
    """True when ``name`` can name a resource server."""
    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None


def validate_name(name: object) -> str:
    """``name``, or ValidationError."""
    if not check_name(name):
        raise ValidationError({"name": [NAME_WORDS]})
    return name


def _query(name: str, for_update: bool = False) -> ResourceServer | None:
    query = sa.select(ResourceServer).where(ResourceServer.name == name)
    if for_update:
        query = query.with_for_update()
    return db.session.scalar(query)


def register_resource_server(name: object, manifest: object, *,
                             actor: Actor | str) -> tuple[ResourceServer, bool]:
    """Store ``manifest`` as resource server ``name`` (replacing its previous one); True
    when this created it. Validated whole first: nothing is written on any error, and an
    identical manifest writes nothing."""
    name = validate_name(name)
    parsed = parse_manifest(manifest)
    _check_scopes(parsed)
    document = normalised(parsed)
    actor = accounts.as_actor(actor)
    record = _query(name, for_update=True)
    created = record is None
    now = utcnow()
    if created:
        record = ResourceServer(name=name, manifest=document, created_at=now, updated_at=now)
        db.session.add(record)
        before = {}
    elif record.manifest == document:
        db.session.commit()
        return record, False
    else:
        before = _audited(record)
        record.manifest = document
        record.updated_at = now
    audit.record(actor, "create" if created else "update", OBJECT_TYPE, name, before,
                 _audited(record), account_id=accounts.platform_account_id())
    try:
        db.session.commit()
    except sa.exc.IntegrityError:  # registered by someone else meanwhile: replace theirs
        db.session.rollback()
        if not created:
            raise
        return register_resource_server(name, parsed, actor=actor)[0], False
    return record, created


def get_resource_server(name: object) -> ResourceServer:
    """The resource server named ``name``; NotFoundError for unknown and malformed names."""
    record = _query(name) if check_name(name) else None
    if record is None:
        raise NotFoundError(str(name)[:64])
    return record


def list_resource_servers(*, page: int = 0, size: int = 100) -> tuple[list[ResourceServer], int]:
    """A page of resource servers by name, and their number."""
    return paginate(sa.select(ResourceServer), ResourceServer.name, page=page, size=size)


def all_resource_servers() -> list[ResourceServer]:
    """Every resource server, by name (what a credential's reach is computed over)."""
    return list(db.session.scalars(sa.select(ResourceServer).order_by(ResourceServer.name)))


def delete_resource_server(name: object, *, actor: Actor | str) -> None:
    """Forget a resource server (its audit events stay)."""
    record = get_resource_server(name)
    actor = accounts.as_actor(actor)
    audit.record(actor, "delete", OBJECT_TYPE, record.name, _audited(record), {},
                 account_id=accounts.platform_account_id())
    db.session.delete(record)
    db.session.commit()


def summary(record: ResourceServer) -> dict:
    """A resource server in listings: name, audiences, number of routes, times."""
    return {"name": record.name, "audiences": list(record.manifest["audiences"]),
            "routeCount": len(record.manifest["routes"]),
            "createdAt": isoformat(record.created_at), "updatedAt": isoformat(record.updated_at)}


def describe(record: ResourceServer) -> dict:
    """A resource server with its whole manifest."""
    return {"name": record.name, "manifest": record.manifest,
            "createdAt": isoformat(record.created_at), "updatedAt": isoformat(record.updated_at)}
