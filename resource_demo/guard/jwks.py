"""The issuer's signing keys for the resource guard: a JWKS cache with refetch cooldown and stale-on-outage.

PyJWT's ``PyJWKClient`` is not used: it drops its cache when a refresh fails and refetches on every
unknown ``kid`` (threat model RL3). Keys are parsed once into ``jwt.PyJWK`` objects, cached by
``kid`` and swapped in as one immutable snapshot, so lookups take no lock.

``JWKSCache`` fetches with a blocking ``httpx.Client`` (WSGI apps); ``AsyncJWKSCache`` with an
``httpx.AsyncClient`` (ASGI apps: ``await ensure(kid)`` before verifying, never blocking the event
loop). Both share one policy (``_KeyCachePolicy``): what to fetch when, and what an outage keeps.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx
import jwt

from resource_demo.guard.keys import (  # noqa: F401 - re-exported: the JWKS vocabulary
    ASYMMETRIC_ALGORITHMS,
    KEY_ALGORITHMS,
    MIN_RSA_BITS,
    PRIVATE_MEMBERS,
    JWKSError,
    JWKSUnavailable,
    MetadataError,
    UnknownKey,
    parse_jwk,
    parse_jwks,
)

logger = logging.getLogger(__name__)

METADATA_WELL_KNOWN = "/.well-known/oauth-authorization-server"
MAX_DOCUMENT_BYTES = 1 << 20

_ACCEPT = {"Accept": "application/jwk-set+json, application/json", "Accept-Encoding": "identity"}
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?=,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-store|no-cache)\s*(?=,|=|$)", re.IGNORECASE)


class FetchFailed(Exception):
    """A fetch or its document failed; the reason is logged and the last good set kept."""


_FetchFailed = FetchFailed


@dataclass(frozen=True)
class _Snapshot:
    keys: Mapping[str, jwt.PyJWK]
    fetched_at: float
    max_age: float


def check_http_url(url: str) -> None:
    """Raise ValueError unless ``url`` is an absolute http(s) URL (no other scheme is ever fetched)."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")


def _check_status(response: httpx.Response, max_bytes: int) -> None:
    if response.status_code != 200:
        raise FetchFailed(f"HTTP {response.status_code}")
    # We asked for identity: a compressed body could inflate past any limit we check.
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise FetchFailed(f"Content-Encoding {encoding[:20]!r} refused")
    declared = response.headers.get("Content-Length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise FetchFailed(f"body of {declared} bytes exceeds {max_bytes}")


def _add_chunk(body: bytearray, chunk: bytes, max_bytes: int, deadline: float, timeout: float) -> None:
    body += chunk
    if len(body) > max_bytes:
        raise FetchFailed(f"body exceeds {max_bytes} bytes")
    # A server dripping bytes never trips the per-read timeout: bound the whole body too.
    if time.monotonic() > deadline:
        raise FetchFailed(f"body not received within {timeout} s")


def get_document(client: httpx.Client, url: str, *, timeout: float,
                 max_bytes: int = MAX_DOCUMENT_BYTES) -> tuple[bytes, Mapping[str, str]]:
    """GET ``url``: ``timeout`` per network step and for the whole body, at most ``max_bytes``.

    Raises ``FetchFailed`` on any network error, a non-200 status (redirects are not followed) or size.
    """
    deadline = time.monotonic() + timeout
    try:
        with client.stream("GET", url, headers=_ACCEPT, timeout=timeout,
                           follow_redirects=False) as response:
            _check_status(response, max_bytes)
            body = bytearray()
            for chunk in response.iter_raw():
                _add_chunk(body, chunk, max_bytes, deadline, timeout)
            return bytes(body), response.headers
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
        raise FetchFailed(f"{type(exc).__name__}: {exc}") from exc


async def aget_document(client: httpx.AsyncClient, url: str, *, timeout: float,
                        max_bytes: int = MAX_DOCUMENT_BYTES) -> tuple[bytes, Mapping[str, str]]:
    """``get_document`` without blocking the event loop."""
    deadline = time.monotonic() + timeout
    try:
        with anyio.fail_after(timeout):
            async with client.stream("GET", url, headers=_ACCEPT, timeout=timeout,
                                     follow_redirects=False) as response:
                _check_status(response, max_bytes)
                body = bytearray()
                async for chunk in response.aiter_raw():
                    _add_chunk(body, chunk, max_bytes, deadline, timeout)
                return bytes(body), response.headers
    except TimeoutError as exc:
        raise FetchFailed(f"body not received within {timeout} s") from exc
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
        raise FetchFailed(f"{type(exc).__name__}: {exc}") from exc


def metadata_url(issuer: str) -> str:
    """RFC 8414 §3.1: the well-known path goes between the host and the issuer's path component."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, METADATA_WELL_KNOWN + path, "", ""))


def check_metadata(issuer: str, body: bytes) -> dict[str, Any]:
    """Parse RFC 8414 metadata and check ``issuer`` and ``jwks_uri``; raise ``MetadataError``."""
    try:
        metadata = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise MetadataError(f"metadata is not JSON: {exc}") from exc
    if not isinstance(metadata, dict):
        raise MetadataError("metadata is not a JSON object")
    # RFC 8414 §3.3: the issuer value returned MUST be identical to the issuer identifier used.
    if metadata.get("issuer") != issuer:
        raise MetadataError(f"metadata issuer {metadata.get('issuer')!r:.100} is not {issuer!r}")
    jwks_uri = metadata.get("jwks_uri")
    if not isinstance(jwks_uri, str):
        raise MetadataError("metadata has no jwks_uri")
    try:
        check_http_url(jwks_uri)
    except ValueError as exc:
        raise MetadataError(str(exc)) from exc
    if urlsplit(issuer).scheme == "https" and urlsplit(jwks_uri).scheme != "https":
        raise MetadataError(f"jwks_uri {jwks_uri!r} downgrades to http")
    return metadata


def _client(client: httpx.Client | None) -> tuple[httpx.Client, bool]:
    return (client, False) if client is not None else (httpx.Client(), True)


def discover_metadata(issuer: str, client: httpx.Client | None = None,
                      timeout: float = 3.0) -> dict[str, Any]:
    """Fetch the issuer's RFC 8414 metadata, checking ``issuer`` exactly and ``jwks_uri``.

    Raises ``JWKSUnavailable`` when the metadata cannot be fetched, ``MetadataError`` when it is wrong.
    """
    check_http_url(issuer)
    client, own = _client(client)
    try:
        body, _ = get_document(client, metadata_url(issuer), timeout=timeout)
    except FetchFailed as exc:
        raise JWKSUnavailable(f"authorization server metadata unavailable: {exc}") from exc
    finally:
        if own:
            client.close()
    return check_metadata(issuer, body)


async def adiscover_metadata(issuer: str, client: httpx.AsyncClient,
                             timeout: float = 3.0) -> dict[str, Any]:
    """``discover_metadata`` without blocking the event loop."""
    check_http_url(issuer)
    try:
        body, _ = await aget_document(client, metadata_url(issuer), timeout=timeout)
    except FetchFailed as exc:
        raise JWKSUnavailable(f"authorization server metadata unavailable: {exc}") from exc
    return check_metadata(issuer, body)


def discover_jwks_uri(issuer: str, client: httpx.Client | None = None, timeout: float = 3.0) -> str:
    """Return ``jwks_uri`` from the issuer's RFC 8414 metadata (see ``discover_metadata``)."""
    return discover_metadata(issuer, client, timeout)["jwks_uri"]


class _KeyCachePolicy:
    """What a JWKS cache holds and when it fetches, without the fetching itself.

    Policies (threat model RL2, RL3): refresh after ``max_age`` s, or the response's
    ``Cache-Control: max-age`` clamped to ``max_age_bounds``; at most one fetch per
    ``refetch_cooldown`` s whatever triggers it (expiry, unknown ``kid``, cold start); on failure
    the last good set is served up to ``max_staleness`` s after it was fetched. Ages use ``clock``
    (monotonic).
    """

    def __init__(
        self,
        jwks_uri: str,
        *,
        timeout: float = 3.0,
        max_age: float = 300.0,
        max_age_bounds: tuple[float, float] = (30.0, 3600.0),
        refetch_cooldown: float = 10.0,
        max_staleness: float = 24 * 3600.0,
        max_bytes: int = MAX_DOCUMENT_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_http_url(jwks_uri)
        self.jwks_uri = jwks_uri
        self.timeout = timeout
        self.max_age = max_age
        self.max_age_bounds = max_age_bounds
        self.refetch_cooldown = refetch_cooldown
        self.max_staleness = max_staleness
        self.max_bytes = max_bytes
        self._clock = clock
        self._snapshot: _Snapshot | None = None
        self._last_attempt: float | None = None
        self._last_error: str | None = None

    @property
    def kids(self) -> frozenset[str]:
        """The ``kid`` values currently cached (for diagnostics)."""
        snapshot = self._snapshot
        return frozenset(snapshot.keys) if snapshot else frozenset()

    def _fresh_enough(self, snapshot: _Snapshot | None) -> bool:
        return snapshot is not None and self._clock() - snapshot.fetched_at < self.max_staleness

    def _due(self, snapshot: _Snapshot) -> bool:
        return self._clock() - snapshot.fetched_at >= snapshot.max_age

    def _start_attempt(self) -> float | None:
        """The attempt's time, or None within the cooldown (no herd, no hot loop)."""
        now = self._clock()
        if self._last_attempt is not None and now - self._last_attempt < self.refetch_cooldown:
            return None
        self._last_attempt = now
        return now

    def _store(self, now: float, body: bytes, headers: Mapping[str, str]) -> None:
        keys = parse_jwks(body)
        if self._last_error is not None:
            logger.info("JWKS refresh from %s recovered", self.jwks_uri)
        self._last_error = None
        self._snapshot = _Snapshot(keys, fetched_at=now, max_age=self._max_age_of(headers))
        logger.debug("JWKS from %s: kids %s", self.jwks_uri, sorted(keys))

    def _failed(self, now: float, exc: Exception) -> None:
        self._last_error = str(exc)
        snapshot = self._snapshot
        if snapshot is None:
            logger.warning("JWKS fetch from %s failed: %s", self.jwks_uri, self._last_error)
        else:
            logger.warning(
                "JWKS refresh from %s failed: %s; keeping %d keys fetched %.0f s ago (limit %.0f s)",
                self.jwks_uri, self._last_error, len(snapshot.keys),
                now - snapshot.fetched_at, self.max_staleness,
            )

    def lookup(self, kid: str) -> jwt.PyJWK:
        """The cached key for ``kid`` without fetching; ``UnknownKey`` or ``JWKSUnavailable``."""
        snapshot = self._snapshot
        if not self._fresh_enough(snapshot):
            reason = self._last_error or "no key set fetched yet"
            raise JWKSUnavailable(f"no usable JWKS from {self.jwks_uri}: {reason}")
        key = snapshot.keys.get(kid)
        if key is not None:
            return key
        if self._last_error is not None:
            # The issuer may well know this kid; we cannot tell while it is unreachable.
            raise JWKSUnavailable(f"kid {kid[:64]!r} not cached and JWKS refresh failing: {self._last_error}")
        raise UnknownKey(f"no usable key with kid {kid[:64]!r}")

    def _max_age_of(self, headers: Mapping[str, str]) -> float:
        low, high = self.max_age_bounds
        cache_control = headers.get("Cache-Control", "")
        if _NO_CACHE.search(cache_control):
            return low
        match = _MAX_AGE.search(cache_control)
        if match is None:
            return self.max_age
        return min(max(float(match.group(1)), low), high)


class JWKSCache(_KeyCachePolicy):
    """The issuer's public keys by ``kid`` for threaded (WSGI) apps; fetches block the caller.

    One fetch at a time across threads; a periodic refresh is done by one thread while the
    others keep using the current keys.
    """

    def __init__(self, jwks_uri: str, client: httpx.Client | None = None, **options: Any) -> None:
        super().__init__(jwks_uri, **options)
        self._client, self._own_client = _client(client)
        self._fetch_lock = threading.Lock()

    def get_key(self, kid: str) -> jwt.PyJWK:
        """Return the verification key for ``kid``; raise ``UnknownKey`` or ``JWKSUnavailable``."""
        snapshot = self._snapshot
        if self._fresh_enough(snapshot):
            if self._due(snapshot):
                self._fetch(blocking=False)
            if kid in self._snapshot.keys:
                return self._snapshot.keys[kid]
        # Cold, too stale, or an unknown kid that may be a freshly rotated key (RL2):
        # refetch, at most once per cooldown.
        self._fetch(blocking=True)
        return self.lookup(kid)

    def refresh(self) -> bool:
        """Fetch the set now unless a fetch happened within the cooldown; True if usable keys are cached."""
        self._fetch(blocking=True)
        return self._fresh_enough(self._snapshot)

    def close(self) -> None:
        """Close the HTTP client if this cache created it."""
        if self._own_client:
            self._client.close()

    def _fetch(self, *, blocking: bool) -> None:
        if not self._fetch_lock.acquire(blocking=blocking):
            return
        try:
            now = self._start_attempt()
            if now is None:
                return
            try:
                body, headers = get_document(self._client, self.jwks_uri, timeout=self.timeout,
                                             max_bytes=self.max_bytes)
                self._store(now, body, headers)
            except (FetchFailed, ValueError) as exc:
                self._failed(now, exc)
        finally:
            self._fetch_lock.release()


class AsyncJWKSCache(_KeyCachePolicy):
    """The issuer's public keys for ASGI apps: ``await ensure(kid)``, then ``get_key(kid)``.

    ``ensure`` does whatever fetching the same policy asks for (cold start, unknown ``kid``,
    expiry in the background); ``get_key`` only reads the cached snapshot, so a verifier can use
    it synchronously on the event loop.
    """

    def __init__(self, jwks_uri: str,
                 client: httpx.AsyncClient | Callable[[], httpx.AsyncClient] | None = None,
                 **options: Any) -> None:
        super().__init__(jwks_uri, **options)
        if client is None:
            client = httpx.AsyncClient()
        self._client = (lambda: client) if isinstance(client, httpx.AsyncClient) else client
        self._lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._background: asyncio.Task | None = None

    async def ensure(self, kid: str) -> None:
        """Fetch when ``kid`` cannot be answered from the cache (subject to the cooldown)."""
        snapshot = self._snapshot
        if self._fresh_enough(snapshot):
            if self._due(snapshot) and (self._background is None or self._background.done()):
                # Periodic refresh in the background: this request keeps the current keys.
                self._background = asyncio.get_running_loop().create_task(self._fetch())
            if kid in snapshot.keys:
                return
        await self._fetch()

    def get_key(self, kid: str) -> jwt.PyJWK:
        """The cached key for ``kid`` (no fetching); ``UnknownKey`` or ``JWKSUnavailable``."""
        return self.lookup(kid)

    async def aclose(self) -> None:
        """Stop a background refresh."""
        if self._background is not None:
            self._background.cancel()

    async def _fetch(self) -> None:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock[0] is not loop:
            self._lock = (loop, asyncio.Lock())  # a lock belongs to one event loop
        async with self._lock[1]:
            now = self._start_attempt()
            if now is None:
                return
            try:
                body, headers = await aget_document(self._client(), self.jwks_uri,
                                                    timeout=self.timeout, max_bytes=self.max_bytes)
                self._store(now, body, headers)
            except (FetchFailed, ValueError) as exc:
                self._failed(now, exc)
