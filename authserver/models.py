"""Database models: one table per record kind of DESIGN.md's parts table."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy.orm import Mapped, mapped_column

from .clock import utcnow
from .db import UTCDateTime, db
from .hashing import check_secret


class Client(db.Model, ClientMixin):
    """An OAuth client: hashed secret(s), allowed scopes, lifetime, audiences, auth method.

    Implements Authlib's ClientMixin for the client-credentials grant only.
    """

    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    auth_method: Mapped[str] = mapped_column(sa.String(32), default="client_secret_basic")
    secret_hash: Mapped[str | None] = mapped_column(sa.String(64))
    previous_secret_hash: Mapped[str | None] = mapped_column(sa.String(64))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    jwks: Mapped[dict | None] = mapped_column(sa.JSON)
    scope: Mapped[str] = mapped_column(sa.Text, default="")
    audiences: Mapped[list] = mapped_column(sa.JSON, default=list)
    token_ttl: Mapped[int | None] = mapped_column(sa.Integer)
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str) -> str:
        return scope  # scope is decided by the grant, never silently narrowed here

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """A disabled client authenticates nowhere; others only with their registered method."""
        return self.enabled and method == self.auth_method

    def check_client_secret(self, client_secret: str) -> bool:
        """Current secret, or the previous one while its grace period lasts (constant time)."""
        current = check_secret(client_secret, self.secret_hash)
        previous = check_secret(client_secret, self.previous_secret_hash)
        in_grace = (self.previous_secret_expires_at is not None
                    and self.previous_secret_expires_at > utcnow())
        return current or (previous and in_grace)


class ApiKey(db.Model):
    """A static API key: only the secret's hash is stored, indexed for O(1) lookup."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    secret_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    scope: Mapped[str] = mapped_column(sa.Text, default="")
    allowed_ips: Mapped[list] = mapped_column(sa.JSON, default=list)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime())
    valid_to: Mapped[datetime] = mapped_column(UTCDateTime())
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_by: Mapped[str] = mapped_column(sa.String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SigningKey(db.Model):
    """A token-signing key: private part encrypted at rest, public JWK published.

    States: ``next`` (published, not yet signing), ``active`` (signing),
    ``retired`` (published until ``publish_until``, then dropped from the JWKS).
    """

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(sa.String(16))
    state: Mapped[str] = mapped_column(sa.String(16), index=True)
    private_key_encrypted: Mapped[bytes] = mapped_column(sa.LargeBinary)
    public_jwk: Mapped[dict] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    publish_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RevokedToken(db.Model):
    """A revoked JWT, keyed by ``jti`` (never the token string), kept until its ``exp``.

    ``id`` orders the revocation feed: resource servers ask for ids above a cursor.
    """

    __tablename__ = "revoked_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    jti: Mapped[str] = mapped_column(sa.String(128), unique=True)
    client_id: Mapped[str] = mapped_column(sa.String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SeenAssertion(db.Model):
    """A private_key_jwt assertion ``jti`` already used (RFC 7523 §3 item 7), shared by all workers."""

    __tablename__ = "seen_assertions"

    client_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    jti: Mapped[str] = mapped_column(sa.String(256), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class Operator(db.Model):
    """A person who signs in to the web UI; the password is hashed with a slow KDF."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OperatorSession(db.Model):
    """A server-side web UI session: sign-out deletes the row, so old cookies die."""

    __tablename__ = "operator_sessions"

    id_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    operator_id: Mapped[int] = mapped_column(sa.ForeignKey("operators.id", ondelete="CASCADE"),
                                             index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditEvent(db.Model):
    """One change to a credential, written in the same transaction as the change."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(sa.String(200), index=True)
    action: Mapped[str] = mapped_column(sa.String(64))
    object_type: Mapped[str] = mapped_column(sa.String(32))
    object_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    changes: Mapped[dict] = mapped_column(sa.JSON, default=dict)
