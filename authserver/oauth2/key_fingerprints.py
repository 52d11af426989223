"""The API-key fingerprint set that resource servers follow (threat model AV01).

A fingerprint is the first 8 bytes of the SHA-256 of a key, which is the start of the hash the
server already stores; so every key ever issued has one, whatever its format. A guard that
holds the set of usable keys' fingerprints refuses a forged or unknown key locally, without
spending the authorization server's time: a flood of well-formed keys never reaches it.

``POST /oauth2/api-key-fingerprints`` (clients holding ``tokens:introspect``), form parameter
``version`` (the previous answer's): ``{"version": str, "unchanged": true}`` when nothing that
matters changed, else ``{"version": str, "fingerprints": base64url of the sorted 8-byte
fingerprints}``. The version moves on every insert (the row count) and every update (the
latest ``updated_at``); a stale entry (a key disabled since) is harmless, since the guard
still asks the server about every key that passes the set.

A follower of a customer account gets its own account's keys only, and a version computed over
them: nothing about other accounts' keys or their activity (threat model AC01). The platform
account's followers get every account's.
"""

from __future__ import annotations

import base64
from datetime import timedelta

import sqlalchemy as sa
from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Error, TokenEndpoint

from authserver.clock import utcnow
from authserver.oauth2.client_auth import CLIENT_AUTH_METHODS
from authserver.oauth2.presented import holds_introspect_scope
from authserver.storage.db import db
from authserver.storage.models import ApiKey

FINGERPRINT_BYTES = 8
#: Keys that expired longer ago than this leave the set (validTo can still be extended).
EXPIRED_KEPT = timedelta(days=1)


class FingerprintsForbidden(OAuth2Error):
    """The client authenticated but does not hold ``tokens:introspect``."""

    error = "unauthorized_client"
    status_code = 403


def fingerprint_of_hash(secret_hash: str) -> bytes:
    """The fingerprint of a key from its stored SHA-256 hex digest."""
    return bytes.fromhex(secret_hash[:FINGERPRINT_BYTES * 2])


def _of_account(query: sa.Select, account_id: str | None) -> sa.Select:
    return query if account_id is None else query.where(ApiKey.account_id == account_id)


def current_version(account_id: str | None = None) -> str:
    """A value that changes whenever a key (of ``account_id``, or any) is created or changed."""
    count, latest = db.session.execute(_of_account(
        sa.select(sa.func.count(), sa.func.max(ApiKey.updated_at)), account_id)).one()
    return f"{count}.{int(latest.timestamp() * 1_000_000) if latest else 0}"


def usable_fingerprints(account_id: str | None = None) -> bytes:
    """The sorted fingerprints of enabled keys (of ``account_id``, or any) not long expired,
    concatenated."""
    hashes = db.session.scalars(_of_account(
        sa.select(ApiKey.secret_hash).where(ApiKey.enabled.is_(True))
        .where(ApiKey.valid_to > utcnow() - EXPIRED_KEPT), account_id))
    return b"".join(sorted({fingerprint_of_hash(value) for value in hashes}))


class KeyFingerprintsEndpoint(TokenEndpoint):
    """``POST /oauth2/api-key-fingerprints`` for resource servers (see the module doc)."""

    ENDPOINT_NAME = "api_key_fingerprints"
    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def create_endpoint_response(self, request):
        client = self.authenticate_endpoint_client(request)
        if not holds_introspect_scope(client):
            raise FingerprintsForbidden("The client may not read the key fingerprints.")
        known = request.form.get("version") or ""
        if len(known) > 64:
            raise InvalidRequestError("'version' must be one from a previous answer.")
        only = None if client.account_platform else client.account_id
        version = current_version(only)
        if known == version:
            body = {"version": version, "unchanged": True}
        else:
            encoded = base64.urlsafe_b64encode(usable_fingerprints(only)).decode()
            body = {"version": version, "fingerprints": encoded}
        db.session.commit()
        return 200, body, default_json_headers
