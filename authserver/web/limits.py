"""Rate limits: per client at the token endpoint, per address for failed client
authentication, per caller for introspection, admin writes and web sign-in.

Built on ``limits`` (the engine of Flask-Limiter) with fixed windows, used directly: the
limits here are checked at points Flask-Limiter's decorators cannot reach (after client
authentication, inside Authlib's flow), and its per-request hooks cost ~10 % of a request.
Counters live in RATELIMIT_STORAGE_URI: in-process for ``memory://``, Redis
(``redis://host:port``) to share them across processes and machines. In-process counters
are not shared, so with N worker processes (``RATELIMIT_WORKERS``, set by ``authserver
serve --workers N``) each enforces 1/N of every limit (at least 1): together they never
grant more than the configured limit (threat model AV05), at the price of a client whose
requests all land on one worker getting 1/N of it. A killed worker's counters are lost. If the store cannot
be reached the request is let through and a warning logged: a limiter outage must not
become an authorization outage.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from functools import lru_cache

from flask import Flask, current_app, request
from limits import RateLimitItem, parse
from limits.storage import RedisStorage, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter


log = logging.getLogger(__name__)
EXTENSION_KEY = "authserver.web.limits"
SHARE_KEY = "authserver.web.limits.share"


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
def _parse(value: str, share: int = 1) -> RateLimitItem:
    """The limit ``value``, or this process's 1/``share`` of it (at least one event)."""
    item = parse(value)
    if share <= 1:
        return item
    return type(item)(max(1, item.amount // share), item.multiples, item.namespace)


def caller_address() -> str:
    """The caller's address: the socket peer, or what trusted proxies forwarded
    (``authserver.web.proxies`` has already decided)."""
    return request.remote_addr or "unknown"


def _strategy() -> FixedWindowRateLimiter:
    return current_app.extensions[EXTENSION_KEY]


def _retry_after(item: RateLimitItem, keys: tuple[str, ...]) -> int:
    reset_at = _strategy().get_window_stats(item, *keys).reset_time
    return max(1, int(reset_at - time.time()) + 1)


def _limit(setting: str, key: tuple[str, ...]) -> tuple[RateLimitItem, tuple[str, ...]] | None:
    value = current_app.config.get(setting)
    if not value:
        return None
    return (_parse(value, current_app.extensions[SHARE_KEY]),
            (current_app.config["RATELIMIT_KEY_PREFIX"], setting, *key))


def _counts(storage: Storage, tests: list, hits: list) -> list[int]:
    """Current counts of ``tests`` and new counts of ``hits`` (fixed windows), in one round
    trip when the counters are in Redis (a pipeline), else from this process's store."""
    if isinstance(storage, RedisStorage):
        # Imported here: redis-py costs every process (each CLI command too) ~45 ms to
        # import, and only deployments with Redis counters use it.
        from redis.exceptions import NoScriptError

        try:
            return _redis_counts(storage, tests, hits)
        except NoScriptError:  # a restarted or flushed Redis: load the script, once more
            storage.get_connection().script_load(storage.SCRIPT_INCR_EXPIRE)
            return _redis_counts(storage, tests, hits)
    return ([storage.get(item.key_for(*keys)) for item, keys in tests]
            + [storage.incr(item.key_for(*keys), item.get_expiry()) for item, keys in hits])


#: Each thread's own connection per Redis connection pool (and process: a fork starts anew).
_connections = threading.local()


def _thread_connection(storage: RedisStorage):
    """This thread's connection to the counters' Redis: redis-py's own ``Connection``, made
    with the pool's settings and kept by the thread, so that a request checks nothing out of
    the pool and back (a pipeline's checkout polls the socket and takes locks: about a fifth of
    what a production token request spends on its counters)."""
    pool = storage.get_connection().connection_pool
    held = getattr(_connections, "by_pool", None)
    if held is None or _connections.pid != os.getpid():
        held = _connections.by_pool = weakref.WeakKeyDictionary()
        _connections.pid = os.getpid()
    connection = held.get(pool)
    if connection is None:
        connection = held[pool] = pool.connection_class(**pool.connection_kwargs)
    return connection


def _redis_counts(storage: RedisStorage, tests: list, hits: list) -> list[int]:
    commands = [("GET", storage.prefixed_key(item.key_for(*keys))) for item, keys in tests]
    # limits' own INCR-and-set-expiry script (so its readers see the same keys), by hash.
    commands += [("EVALSHA", storage.lua_incr_expire.sha, 1,
                  storage.prefixed_key(item.key_for(*keys)), item.get_expiry(), 1)
                 for item, keys in hits]
    connection = _thread_connection(storage)
    try:
        # One round trip: every command written at once, then every answer read.
        connection.send_packed_command(connection.pack_commands(commands))
        answers = [connection.read_response() for _ in commands]
    except BaseException:
        # An error answer leaves the others unread: start the next request on a new socket.
        connection.disconnect()
        raise
    return [int(value or 0) for value in answers]


def apply(tests: list[tuple[str, tuple[str, ...]]] = (),
          hits: list[tuple[str, tuple[str, ...]]] = ()) -> None:
    """Check the limits ``tests`` (without counting) and count one event against ``hits``,
    together; raise RateLimited for the first one exceeded. Each entry is (config setting,
    key parts); a setting that is empty is no limit."""
    tests = [limit for limit in (_limit(s, k) for s, k in tests) if limit]
    hits_named = [(s, limit) for s, limit in ((s, _limit(s, k)) for s, k in hits) if limit]
    if not tests and not hits_named:
        return
    strategy = _strategy()
    try:
        counts = _counts(strategy.storage, tests, [limit for _, limit in hits_named])
        exceeded = None
        for (item, keys), count in zip(tests, counts):
            if count >= item.amount:
                exceeded = (None, item, keys)
                break
        if exceeded is None:
            for (setting, (item, keys)), count in zip(hits_named, counts[len(tests):]):
                if count > item.amount:
                    exceeded = (setting, item, keys)
                    break
        if exceeded is None:
            return
        setting, item, keys = exceeded
        retry_after = _retry_after(item, keys)
    except Exception as exc:  # noqa: BLE001 - any storage failure: fail open, loudly
        log.warning("rate-limit store unavailable (%s): letting the request through",
                    type(exc).__name__)
        return
    if setting is not None:
        from authserver.observability.metrics import RATE_LIMITED

        RATE_LIMITED.labels(limit=setting).inc()
    raise RateLimited(setting or keys[1], retry_after)


def hit(setting: str, *key: str) -> None:
    """Count one event against the limit named by config ``setting``; raise RateLimited."""
    apply(hits=[(setting, key)])


def check(setting: str, *key: str) -> None:
    """Raise RateLimited if the limit is already exhausted, without counting an event."""
    apply(tests=[(setting, key)])


def shared_store_reachable() -> bool | None:
    """None for the in-process store; otherwise whether the shared store (Redis) answers."""
    if current_app.config["RATELIMIT_STORAGE_URI"].startswith("memory://"):
        return None
    try:
        return bool(_strategy().storage.check())
    except Exception:  # noqa: BLE001 - any failure of the store means "not reachable"
        return False


def init_app(app: Flask) -> None:
    """Open the counter store named by RATELIMIT_STORAGE_URI."""
    uri = app.config["RATELIMIT_STORAGE_URI"]
    local = uri.startswith("memory://")
    storage = LocalStorage() if local else storage_from_string(uri)
    app.extensions[EXTENSION_KEY] = FixedWindowRateLimiter(storage)
    # In-process counters: this worker enforces its share of each limit (AV05).
    app.extensions[SHARE_KEY] = max(1, int(app.config["RATELIMIT_WORKERS"])) if local else 1
