"""Rate limits: per client at the token endpoint, per address for failed client
authentication, per caller for introspection, admin writes and web sign-in.

Built on ``limits`` (the engine of Flask-Limiter) with fixed windows, used directly: the
limits here are checked at points Flask-Limiter's decorators cannot reach (after client
authentication, inside Authlib's flow), and its per-request hooks cost ~10 % of a request.
Counters live in RATELIMIT_STORAGE_URI: in-process for ``memory://``, Redis
(``redis://host:port``) to share them across processes and machines. If the store cannot
be reached the request is let through and a warning logged: a limiter outage must not
become an authorization outage.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import lru_cache

from flask import Flask, current_app, request
from limits import RateLimitItem, parse
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from .addresses import client_address

log = logging.getLogger(__name__)
EXTENSION_KEY = "authserver.limits"


class RateLimited(Exception):
    """A limit was exceeded; ``retry_after`` seconds until the window frees up."""

    def __init__(self, name: str, retry_after: int):
        super().__init__(name)
        self.name = name
        self.retry_after = retry_after


class LocalStorage(Storage):
    """Fixed-window counters in this process, expired lazily (no timer thread per event,
    unlike ``limits``' MemoryStorage, which starts one every 10 ms under load)."""

    STORAGE_SCHEME = ["authserver-local"]
    SWEEP_EVERY = 10_000

    def __init__(self, uri: str | None = None, **options):
        super().__init__(uri, **options)
        self._counters: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()
        self._writes = 0

    @property
    def base_exceptions(self):
        return ValueError

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()
        with self._lock:
            expires, count = self._counters.get(key, (0.0, 0))
            if expires <= now:
                expires, count = now + expiry, 0
            count += amount
            self._counters[key] = (expires, count)
            self._writes += 1
            if self._writes % self.SWEEP_EVERY == 0:
                self._counters = {k: v for k, v in self._counters.items() if v[0] > now}
        return count

    def get(self, key: str) -> int:
        expires, count = self._counters.get(key, (0.0, 0))
        return count if expires > time.time() else 0

    def get_expiry(self, key: str) -> float:
        expires, _ = self._counters.get(key, (0.0, 0))
        return expires if expires > time.time() else time.time()

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        with self._lock:
            count = len(self._counters)
            self._counters = {}
        return count

    def clear(self, key: str) -> None:
        with self._lock:
            self._counters.pop(key, None)


@lru_cache(maxsize=64)
def _parse(value: str) -> RateLimitItem:
    return parse(value)


def caller_address() -> str:
    """The caller's address (socket peer, or X-Forwarded-For from trusted proxies only)."""
    return client_address(request.remote_addr, request.headers.get("X-Forwarded-For"),
                          current_app.config["TRUSTED_PROXIES"]) or "unknown"


def _strategy() -> FixedWindowRateLimiter:
    return current_app.extensions[EXTENSION_KEY]


def _retry_after(item: RateLimitItem, keys: tuple[str, ...]) -> int:
    reset_at = _strategy().get_window_stats(item, *keys).reset_time
    return max(1, int(reset_at - time.time()) + 1)


def _apply(setting: str, key: tuple[str, ...], count: bool) -> None:
    value = current_app.config.get(setting)
    if not value:
        return
    item = _parse(value)
    keys = (current_app.config["RATELIMIT_KEY_PREFIX"], setting, *key)
    strategy = _strategy()
    try:
        allowed = strategy.hit(item, *keys) if count else strategy.test(item, *keys)
        if allowed:
            return
        retry_after = _retry_after(item, keys)
    except Exception as exc:  # noqa: BLE001 - any storage failure: fail open, loudly
        log.warning("rate-limit store unavailable (%s): letting the request through",
                    type(exc).__name__)
        return
    if count:
        from .observability import RATE_LIMITED

        RATE_LIMITED.labels(limit=setting).inc()
    raise RateLimited(setting, retry_after)


def hit(setting: str, *key: str) -> None:
    """Count one event against the limit named by config ``setting``; raise RateLimited."""
    _apply(setting, key, count=True)


def check(setting: str, *key: str) -> None:
    """Raise RateLimited if the limit is already exhausted, without counting an event."""
    _apply(setting, key, count=False)


def init_app(app: Flask) -> None:
    """Open the counter store named by RATELIMIT_STORAGE_URI."""
    uri = app.config["RATELIMIT_STORAGE_URI"]
    storage = LocalStorage() if uri.startswith("memory://") else storage_from_string(uri)
    app.extensions[EXTENSION_KEY] = FixedWindowRateLimiter(storage)
