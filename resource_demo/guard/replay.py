"""Replay stores for DPoP proof ``jti``s (RFC 9449 §11.1): one process, or Redis for many.

A proof may be accepted once. Several workers or hosts behind one URL only keep that promise
through a store they share: Redis here (``SET NX`` with an expiry), or the authorization
server's database (``authserver.oauth2.dpop``). The in-process store is correct for a single
worker only.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from resource_demo.guard.errors import SourceUnavailable

DEFAULT_MAX_ENTRIES = 200_000


class ReplayStoreUnavailable(SourceUnavailable):
    """The shared store cannot be reached or is full: refuse (503), never accept unchecked."""


class MemoryReplayStore:
    """``jti`` keys in this process until they expire; bounded, and refusing when full."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES,
                 clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_use(self, key: str, expires_at: float) -> bool:
        """Record ``key`` until ``expires_at``; False if it is already recorded."""
        now = self._clock()
        with self._lock:
            seen = self._entries.get(key)
            if seen is not None and seen > now:
                return False
            if len(self._entries) >= self.max_entries:
                self._entries = {k: v for k, v in self._entries.items() if v > now}
                if len(self._entries) >= self.max_entries:
                    # Forgetting a live entry would let its proof be replayed: fail closed.
                    raise ReplayStoreUnavailable("the replay store is full")
            self._entries[key] = expires_at
            return True


class RedisReplayStore:
    """``jti`` keys in Redis, shared by every worker and host using the same URL and prefix."""

    def __init__(self, url: str, prefix: str = "dpop", clock: Callable[[], float] = time.time,
                 socket_timeout: float = 2.0) -> None:
        import redis  # optional: only deployments that configure Redis need the package

        self._redis = redis.Redis.from_url(url, socket_timeout=socket_timeout,
                                           socket_connect_timeout=socket_timeout)
        self._errors = (redis.RedisError, OSError)
        self.prefix = prefix
        self._clock = clock

    def first_use(self, key: str, expires_at: float) -> bool:
        """``SET key NX PX ttl``: exactly one caller across all processes gets True."""
        ttl_ms = max(1000, int((expires_at - self._clock()) * 1000))
        try:
            return bool(self._redis.set(f"{self.prefix}:{key}", b"1", nx=True, px=ttl_ms))
        except self._errors as exc:
            raise ReplayStoreUnavailable(type(exc).__name__) from None

    def ping(self) -> bool:
        """True when the store answers."""
        try:
            return bool(self._redis.ping())
        except self._errors:
            return False


class AsyncMemoryReplayStore(MemoryReplayStore):
    """The in-process store for ASGI apps (no I/O: the lock is held for microseconds)."""

    async def first_use(self, key: str, expires_at: float) -> bool:  # type: ignore[override]
        return MemoryReplayStore.first_use(self, key, expires_at)


class AsyncRedisReplayStore:
    """``RedisReplayStore`` for ASGI apps, on ``redis.asyncio`` (one client per event loop)."""

    def __init__(self, url: str, prefix: str = "dpop", clock: Callable[[], float] = time.time,
                 socket_timeout: float = 2.0) -> None:
        import redis  # optional, as above

        self.url, self.prefix, self._clock = url, prefix, clock
        self._timeout = socket_timeout
        self._errors = (redis.RedisError, OSError)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client = None

    def _redis(self):
        import redis.asyncio

        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._loop = loop
            self._client = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout)
        return self._client

    async def first_use(self, key: str, expires_at: float) -> bool:
        """``SET key NX PX ttl``, awaited."""
        ttl_ms = max(1000, int((expires_at - self._clock()) * 1000))
        try:
            return bool(await self._redis().set(f"{self.prefix}:{key}", b"1", nx=True, px=ttl_ms))
        except self._errors as exc:
            raise ReplayStoreUnavailable(type(exc).__name__) from None
