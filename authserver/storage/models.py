"""Database models: one table per record kind (docs/architecture.md)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy.orm import Mapped, mapped_column

from authserver.clock import utcnow
from authserver.credentials.hashing import check_secret
from authserver.storage.db import UTCDateTime, db

#: An account id: 22 characters of [A-Za-z0-9] (about 131 random bits).
ACCOUNT_ID_LENGTH = 22


def account_column(*, index: bool = True) -> Mapped[str]:
    """The account a record belongs to (never changes once written)."""
    return mapped_column(sa.String(32), sa.ForeignKey("accounts.id"), index=index)


class Account(db.Model):
    """A tenant: every client, API key, operator and audit event belongs to exactly one.

    ``platform`` is True for the one platform account (made by ``authserver init``) and
    NULL for every other, so a unique index allows a single platform account.
    ``disabled_at`` is the last time the account was disabled: tokens issued until then stay
    refused after it is enabled again. ``feed_seq`` orders the account feed guards follow:
    every enable or disable moves the account to the end of it.
    """

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    platform: Mapped[bool | None] = mapped_column(sa.Boolean, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    feed_seq: Mapped[int | None] = mapped_column(sa.Integer, unique=True)


class Client(db.Model, ClientMixin):
    """An OAuth client: hashed secret(s), allowed scopes, lifetime, audiences, auth method.

    Implements Authlib's ClientMixin for the client-credentials grant only.
    """

    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    account_id: Mapped[str] = account_column()
    name: Mapped[str] = mapped_column(sa.String(200))
    auth_method: Mapped[str] = mapped_column(sa.String(32), default="client_secret_basic")
    secret_hash: Mapped[str | None] = mapped_column(sa.String(64))
    previous_secret_hash: Mapped[str | None] = mapped_column(sa.String(64))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    jwks: Mapped[dict | None] = mapped_column(sa.JSON)
    scope: Mapped[str] = mapped_column(sa.Text, default="")
    audiences: Mapped[list] = mapped_column(sa.JSON, default=list)
    token_ttl: Mapped[int | None] = mapped_column(sa.Integer)
    #: RFC 9449 §5.2: every token request must carry a DPoP proof (tokens are always bound).
    dpop_bound_access_tokens: Mapped[bool] = mapped_column(sa.Boolean, default=False,
                                                           server_default=sa.false())
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    #: Set by the authentication lookup (``clients.query_client``), which reads the account
    #: with the client; unknown (False) on records loaded any other way, so a client whose
    #: account was not looked at authenticates nowhere.
    account_enabled = False
    account_platform = False
    account_disabled_at = None

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
        """A disabled client, or one of a disabled account, authenticates nowhere; others only
        with their registered method."""
        return self.enabled and self.account_enabled and method == self.auth_method

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
    account_id: Mapped[str] = account_column()
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

    #: Set by the authentication lookup (``api_keys.query_api_key``); unknown (False) on
    #: records loaded any other way.
    account_enabled = False


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
    account_id: Mapped[str] = mapped_column(sa.String(32), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SeenAssertion(db.Model):
    """A private_key_jwt assertion ``jti`` already used (RFC 7523 §3 item 7), shared by all workers."""

    __tablename__ = "seen_assertions"

    client_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    jti: Mapped[str] = mapped_column(sa.String(256), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class SeenDPoPProof(db.Model):
    """A DPoP proof already used at the token endpoint (RFC 9449 §11.1), shared by all workers.

    ``key`` is the SHA-256 of the proof key's thumbprint and the ``jti`` (§11.1: store a hash),
    kept while the proof could still be accepted.
    """

    __tablename__ = "seen_dpop_proofs"

    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class Operator(db.Model):
    """A person who signs in to the web UI; the password is hashed with a slow KDF.

    ``role`` is ``owner``, ``admin`` or ``viewer`` within the account. ``must_change_password``
    is set by a password reset: the next sign-in leads to the change-password form first.
    ``totp_secret`` is the RFC 6238 secret encrypted with the keyring; the second factor is
    on once ``totp_confirmed_at`` is set, and ``totp_last_step`` is the last time step a code
    was accepted for (a code is never accepted twice).
    """

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(100), unique=True)
    account_id: Mapped[str] = account_column()
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    role: Mapped[str] = mapped_column(sa.String(16))
    must_change_password: Mapped[bool] = mapped_column(sa.Boolean, default=False,
                                                       server_default=sa.false())
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    totp_secret: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    totp_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    totp_last_step: Mapped[int | None] = mapped_column(sa.BigInteger)


class OperatorRecoveryCode(db.Model):
    """A single-use recovery code for an operator's second factor, stored as its SHA-256."""

    __tablename__ = "operator_recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    operator_id: Mapped[int] = mapped_column(sa.ForeignKey("operators.id", ondelete="CASCADE"),
                                             index=True)
    code_hash: Mapped[str] = mapped_column(sa.String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OperatorSession(db.Model):
    """A server-side web UI session: sign-out deletes the row, so old cookies die."""

    __tablename__ = "operator_sessions"

    id_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    operator_id: Mapped[int] = mapped_column(sa.ForeignKey("operators.id", ondelete="CASCADE"),
                                             index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ShownOnceSecret(db.Model):
    """A new secret waiting to be shown once on the page a web UI form redirects to.

    It belongs to the operator's server-side session (deleted with it), is encrypted with the
    keyring like signing keys, and is deleted by the request that shows it.
    """

    __tablename__ = "shown_once_secrets"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_hash: Mapped[str] = mapped_column(
        sa.ForeignKey("operator_sessions.id_hash", ondelete="CASCADE"), index=True)
    object_type: Mapped[str] = mapped_column(sa.String(32))
    object_id: Mapped[str] = mapped_column(sa.String(64))
    secret_encrypted: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class AuditEvent(db.Model):
    """One change to a record, written in the same transaction as the change.

    ``account_id`` is the account of the changed record, ``actor_account_id`` the account
    of whoever changed it (they differ when the platform acts inside a customer account).
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(sa.String(200), index=True)
    account_id: Mapped[str] = account_column()
    actor_account_id: Mapped[str] = account_column()
    action: Mapped[str] = mapped_column(sa.String(64))
    object_type: Mapped[str] = mapped_column(sa.String(32))
    object_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    changes: Mapped[dict] = mapped_column(sa.JSON, default=dict)


class ResourceServer(db.Model):
    """A resource server's route manifest, as its guard exports it (issue 17): what each
    credential can reach is computed from these. Platform-wide: it serves every account."""

    __tablename__ = "resource_servers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    manifest: Mapped[dict] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
