"""What the guard asks of the authorization server: metadata, introspection, the revocation feed.

Every call has a short timeout; any failure to get an answer raises ``ServerUnavailable``,
which the guard turns into 503 (never 401 for a credential that may be good).
``AuthorizationServerClient`` blocks (WSGI apps); ``AsyncAuthorizationServerClient`` awaits
(ASGI apps). Both send the guard's own client credentials with ``client_secret_basic``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx

from resource_demo.guard.errors import SourceUnavailable
from resource_demo.guard.jwks import (
    JWKSUnavailable,
    MetadataError,
    adiscover_metadata,
    discover_metadata,
)

log = logging.getLogger(__name__)
MAX_RESPONSE_BYTES = 1 << 20
#: The fingerprint set is 8 bytes a key (in base64): room for about five million keys.
MAX_FINGERPRINTS_BYTES = 64 << 20
#: The server answers 429 at introspection only for credentials that are not active (its
#: budget is spent by inactive answers alone, threat model AV01): a refusal, not an outage.
THROTTLED_INACTIVE = {"active": False}
MAX_API_KEY_CACHE_ENTRIES = 10_000


class ServerUnavailable(SourceUnavailable):
    """The authorization server could not be asked (down, slow, misconfigured)."""


def basic_credentials(client_id: str, client_secret: str) -> str:
    """``Authorization: Basic`` for client_secret_basic: form-urlencoded first (RFC 6749 §2.3.1)."""
    raw = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class _ServerClientBase:
    """Request building and answer checking shared by the blocking and the async client."""

    def __init__(self, issuer: str, client_id: str | None, client_secret: str | None,
                 *, timeout: float = 3.0):
        self.issuer = issuer
        self.timeout = timeout
        self.auth = (basic_credentials(client_id, client_secret or "")
                     if client_id else None)
        self._metadata: dict | None = None

    @property
    def has_credentials(self) -> bool:
        """True when the guard can authenticate to the server (introspection, feed)."""
        return self.auth is not None

    def _endpoint(self, endpoint_name: str, metadata: dict) -> str:
        if self.auth is None:
            raise ServerUnavailable("the guard has no client credentials for the server")
        url = metadata.get(endpoint_name)
        if not isinstance(url, str):
            raise ServerUnavailable(f"the server metadata has no {endpoint_name}")
        return url

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self.auth, "Accept": "application/json"}

    @staticmethod
    def _answer(endpoint_name: str, response: httpx.Response,
                max_bytes: int = MAX_RESPONSE_BYTES) -> dict:
        if endpoint_name == "introspection_endpoint" and response.status_code == 429:
            return THROTTLED_INACTIVE
        if response.status_code != 200 or len(response.content) > max_bytes:
            # 401/403 here means our own credentials are wrong: not the caller's fault.
            log.warning("%s answered HTTP %s", endpoint_name, response.status_code)
            raise ServerUnavailable(f"{endpoint_name}: HTTP {response.status_code}")
        try:
            body = json.loads(response.content)
        except (ValueError, RecursionError) as exc:
            raise ServerUnavailable(f"{endpoint_name}: not JSON") from exc
        if not isinstance(body, dict):
            raise ServerUnavailable(f"{endpoint_name}: not a JSON object")
        return body

    @staticmethod
    def _introspection(body: dict) -> dict:
        # RFC 7662 §2.2: only a real boolean true is active.
        return body if body.get("active") is True else {"active": False}

    @staticmethod
    def _metadata_failed(exc: Exception) -> ServerUnavailable:
        if isinstance(exc, MetadataError):
            log.error("authorization server metadata is wrong: %s", exc)
        return ServerUnavailable(str(exc))


class AuthorizationServerClient(_ServerClientBase):
    """Talks to one issuer with this resource server's own client credentials (blocking)."""

    def __init__(self, issuer: str, client_id: str | None, client_secret: str | None,
                 *, timeout: float = 3.0, client: httpx.Client | None = None):
        super().__init__(issuer, client_id, client_secret, timeout=timeout)
        self.http = client or httpx.Client()
        self._lock = threading.Lock()

    def metadata(self) -> dict:
        """RFC 8414 metadata, fetched once (the issuer is checked for exact equality)."""
        if self._metadata is None:
            with self._lock:
                if self._metadata is None:
                    try:
                        self._metadata = discover_metadata(self.issuer, self.http, self.timeout)
                    except (JWKSUnavailable, MetadataError) as exc:
                        raise self._metadata_failed(exc) from exc
        return self._metadata

    def _post(self, endpoint_name: str, form: dict, max_bytes: int = MAX_RESPONSE_BYTES) -> dict:
        url = self._endpoint(endpoint_name, self.metadata())
        try:
            response = self.http.post(url, data=form, headers=self._headers(),
                                      timeout=self.timeout, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise ServerUnavailable(f"{endpoint_name}: {type(exc).__name__}") from exc
        return self._answer(endpoint_name, response, max_bytes)

    def introspect(self, token: str) -> dict:
        """RFC 7662 introspection of ``token``; the answer's ``active`` is a real boolean."""
        return self._introspection(self._post("introspection_endpoint", {"token": token}))

    def revocations(self, after: int, accounts_after: int | None = None) -> dict:
        """One page of the revocation feed after ``after`` (and, from feed version 2, of the
        account changes after ``accounts_after``)."""
        return self._post("revocation_feed_endpoint", feed_form(after, accounts_after))

    def api_key_fingerprints(self, version: str) -> dict:
        """The usable API keys' fingerprints, or ``unchanged`` since ``version`` (AV01)."""
        return self._post("api_key_fingerprints_endpoint", {"version": version},
                          MAX_FINGERPRINTS_BYTES)

    def close(self) -> None:
        """Close the HTTP client."""
        self.http.close()


class AsyncAuthorizationServerClient(_ServerClientBase):
    """``AuthorizationServerClient`` for ASGI apps (``httpx.AsyncClient``, or a callable giving
    the client for the running event loop)."""

    def __init__(self, issuer: str, client_id: str | None, client_secret: str | None,
                 *, timeout: float = 3.0,
                 client: httpx.AsyncClient | Callable[[], httpx.AsyncClient] | None = None):
        super().__init__(issuer, client_id, client_secret, timeout=timeout)
        self._client = async_client_source(client)

    @property
    def http(self) -> httpx.AsyncClient:
        """The HTTP client for the running event loop."""
        return self._client()

    async def metadata(self) -> dict:
        """RFC 8414 metadata, fetched once."""
        if self._metadata is None:
            try:
                self._metadata = await adiscover_metadata(self.issuer, self.http, self.timeout)
            except (JWKSUnavailable, MetadataError) as exc:
                raise self._metadata_failed(exc) from exc
        return self._metadata

    async def _post(self, endpoint_name: str, form: dict) -> dict:
        url = self._endpoint(endpoint_name, await self.metadata())
        try:
            response = await self.http.post(url, data=form, headers=self._headers(),
                                            timeout=self.timeout, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise ServerUnavailable(f"{endpoint_name}: {type(exc).__name__}") from exc
        return self._answer(endpoint_name, response)

    async def introspect(self, token: str) -> dict:
        """RFC 7662 introspection of ``token``."""
        return self._introspection(await self._post("introspection_endpoint", {"token": token}))

    async def revocations(self, after: int, accounts_after: int | None = None) -> dict:
        """One page of the revocation feed after ``after`` (and of account changes)."""
        return await self._post("revocation_feed_endpoint", feed_form(after, accounts_after))

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()


def async_client_source(
        client: httpx.AsyncClient | Callable[[], httpx.AsyncClient] | None,
) -> Callable[[], httpx.AsyncClient]:
    """A callable giving the async HTTP client to use (one given, a factory, or a new one)."""
    if client is None:
        client = httpx.AsyncClient()
    if isinstance(client, httpx.AsyncClient):
        return lambda: client
    return client


class ApiKeyCache:
    """Introspection answers for API keys, by SHA-256 of the key, for at most ``ttl`` seconds."""

    def __init__(self, ttl: float, max_entries: int = MAX_API_KEY_CACHE_ENTRIES):
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, dict]] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: dict[str, asyncio.Future] = {}

    @staticmethod
    def _digest(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    def _lookup(self, digest: str, now: float) -> dict | None:
        with self._lock:
            entry = self._entries.get(digest)
            return entry[1] if entry is not None and entry[0] > now else None

    def _store(self, digest: str, now: float, answer: dict) -> None:
        with self._lock:
            self._entries[digest] = (now + self.ttl, answer)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def get(self, key: str, fetch: Callable[[str], dict]) -> dict:
        """The cached answer for ``key`` or a fresh one from ``fetch``."""
        digest, now = self._digest(key), time.monotonic()
        answer = self._lookup(digest, now)
        if answer is None:
            answer = fetch(key)
            self._store(digest, now, answer)
        return answer

    async def aget(self, key: str, fetch: Callable[[str], Awaitable[dict]]) -> dict:
        """``get`` with an awaitable ``fetch``; concurrent misses for one key on one event loop
        share a single introspection (an async server has many requests in flight at once)."""
        digest, now = self._digest(key), time.monotonic()
        answer = self._lookup(digest, now)
        if answer is not None:
            return answer
        loop = asyncio.get_running_loop()
        pending = self._pending.get(digest)
        if pending is not None and pending.get_loop() is loop:
            return await asyncio.shield(pending)
        future = self._pending[digest] = loop.create_future()
        try:
            answer = await fetch(key)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters (if any) get it, nobody else must
            raise
        finally:
            if self._pending.get(digest) is future:
                del self._pending[digest]
        self._store(digest, now, answer)
        future.set_result(answer)
        return answer


def feed_form(after: int, accounts_after: int | None) -> dict[str, str]:
    """The feed request: the revocation cursor, and the account cursor when following accounts
    (a version-1 server ignores the extra parameter and sends no ``accounts``)."""
    form = {"after": str(after)}
    if accounts_after is not None:
        form["accounts_after"] = str(accounts_after)
    return form


#: One account's state in the feed: enabled, and its last disable (epoch seconds) or None.
AccountState = tuple[bool, "int | None"]


def feed_accounts(page: Any) -> tuple[dict[str, AccountState], int] | None:
    """The (account_id -> state, accounts_cursor) of one feed page, or None when the server does
    not send account changes (feed version 1); ``ServerUnavailable`` if malformed."""
    if not isinstance(page, dict) or "accounts" not in page:
        return None
    entries, cursor = page.get("accounts"), page.get("accounts_cursor")
    if not isinstance(entries, list) or not isinstance(cursor, int) or isinstance(cursor, bool):
        raise ServerUnavailable("revocation feed: unexpected account changes")
    states: dict[str, AccountState] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("account_id"), str) \
                or not isinstance(entry.get("enabled"), bool):
            raise ServerUnavailable("revocation feed: unexpected account entry")
        disabled_at = entry.get("disabled_at")
        if disabled_at is not None and (not isinstance(disabled_at, int)
                                        or isinstance(disabled_at, bool)):
            raise ServerUnavailable("revocation feed: unexpected account entry")
        states[entry["account_id"]] = (entry["enabled"], disabled_at)
    return states, cursor


def feed_entries(page: Any) -> tuple[dict[str, int], int, bool]:
    """The (jti -> exp, cursor, has_more) of one feed page; ``ServerUnavailable`` if malformed."""
    entries = page.get("revocations") if isinstance(page, dict) else None
    cursor = page.get("cursor") if isinstance(page, dict) else None
    if not isinstance(entries, list) or not isinstance(cursor, int) or isinstance(cursor, bool):
        raise ServerUnavailable("revocation feed: unexpected answer")
    revoked = {entry["jti"]: entry["exp"] for entry in entries
               if isinstance(entry, dict) and isinstance(entry.get("jti"), str)
               and isinstance(entry.get("exp"), int)}
    return revoked, cursor, bool(page.get("has_more"))
