"""Per-process caches of hot rows (OAuth clients, API keys), invalidated in every process
and host.

The client of every token and introspection request, and the API key being introspected, are
read from memory instead of the database. A change to a cached row reaches every process within a second:

- the process that writes it drops its own entry when the transaction commits;
- on PostgreSQL the same transaction sends ``NOTIFY authserver_cache, '<table>:<key>'``,
  delivered at commit (never before the change is visible), and a listener thread in every
  process drops the entry. Entries are trusted only while that listener has shown, by a
  round trip at most ``LEASE`` seconds old, that it is connected: a dropped or silent
  connection cannot leave a stale entry in use (lookups go to the database until it is back);
- without a listener (SQLite: one host, no channel) an entry lives at most 1 s.

``CREDENTIAL_CACHE_SECONDS`` is the backstop lifetime of an entry; 0 turns the cache off.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Hashable

import sqlalchemy as sa
from flask import Flask, current_app, has_app_context
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

EXTENSION_KEY = "authserver.storage.cache"
CHANNEL = "authserver_cache"
#: The listener's connection as pg_stat_activity shows it.
APPLICATION_NAME = "authserver-cache-listener"
#: Without a listener (or while it is not proven connected), entries live at most this long.
UNNOTIFIED_SECONDS = 1.0
#: The listener's round trip interval, and how old its last one may be for entries to count.
PING_SECONDS = 0.25
LEASE_SECONDS = 0.75
MAX_ENTRIES = 10_000
_MISSING = object()


class RowCache:
    """key -> row for a bounded time, dropped on invalidation.

    ``generation`` moves on every invalidation: a row read from the database before an
    invalidation it raced with is not stored (it may predate the change).
    """

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[float, object]] = {}
        self._lock = threading.Lock()
        self.generation = 0

    def get(self, key: Hashable, max_age: float) -> object:
        """The row cached under ``key`` if younger than ``max_age`` seconds, else _MISSING."""
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry[0] >= max_age:
            return _MISSING
        return entry[1]

    def put(self, key: Hashable, row: object, generation: int, read_at: float) -> None:
        """Store ``row`` (read at ``read_at``) unless an invalidation happened since."""
        with self._lock:
            if generation != self.generation:
                return
            if len(self._entries) >= self.max_entries and key not in self._entries:
                self._entries.pop(next(iter(self._entries)))  # the oldest insertion
            self._entries[key] = (read_at, row)

    def invalidate(self, key: Hashable | None = None) -> None:
        """Drop ``key`` (every entry when None)."""
        with self._lock:
            self.generation += 1
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)


class Listener:
    """``LISTEN authserver_cache`` on a dedicated PostgreSQL connection, in a daemon thread
    of this process; forwards each notification to the hub and renews the lease."""

    def __init__(self, hub: CacheHub, connect: Callable[[], object]):
        self.hub = hub
        self.connect = connect
        self.alive_at = float("-inf")  # monotonic time the last good round trip was sent
        self.pid = os.getpid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="authserver-cache-listener",
                                        daemon=True)
        self._thread.start()

    def running(self) -> bool:
        return self.pid == os.getpid() and self._thread.is_alive() and not self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        backoff = PING_SECONDS
        while not self._stop.is_set():
            try:
                with self.connect() as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    # Anything cached before LISTEN took effect may have missed a change.
                    self.hub.invalidate_all()
                    backoff = PING_SECONDS
                    self._listen(conn)
            except Exception as exc:  # noqa: BLE001 - any failure: drop the lease, reconnect
                self.alive_at = float("-inf")
                if not self._stop.is_set():
                    log.warning("cache invalidation listener lost its connection (%s); "
                                "lookups go to the database until it is back",
                                type(exc).__name__)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)
        self.alive_at = float("-inf")

    def _listen(self, conn) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            conn.execute("SELECT 1")
            # Notifications that arrived before the answer were sent before it: handle
            # them before the lease says "everything up to ``sent`` is known".
            for notify in conn.notifies(timeout=0):
                self.hub.deliver(notify.payload)
            self.alive_at = sent
            for notify in conn.notifies(timeout=PING_SECONDS):
                self.hub.deliver(notify.payload)


class CacheHub:
    """This app's row caches and the way their invalidations arrive."""

    def __init__(self, app: Flask):
        self.caches: dict[str, RowCache] = {}
        self.max_age = float(app.config["CREDENTIAL_CACHE_SECONDS"])
        self.notify = app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql")
        self.listener: Listener | None = None
        self._lock = threading.Lock()

    def cache(self, name: str) -> RowCache:
        cache = self.caches.get(name)
        if cache is None:
            cache = self.caches.setdefault(name, RowCache())
        return cache

    def deliver(self, payload: str) -> None:
        """A notification: ``<cache>:<key>`` (an empty key: the whole cache)."""
        name, _, key = payload.partition(":")
        self.drop(name, key)

    def drop(self, name: str, key: str) -> None:
        cache = self.caches.get(name)
        if cache is not None:
            cache.invalidate(key or None)

    def invalidate_all(self) -> None:
        for cache in list(self.caches.values()):
            cache.invalidate()

    def trusted_age(self) -> float:
        """How old an entry may be right now."""
        if not self.notify:
            return min(self.max_age, UNNOTIFIED_SECONDS)
        listener = self.listener
        if listener is None or not listener.running():
            self._start_listener()
            return 0.0
        if time.monotonic() - listener.alive_at > LEASE_SECONDS:
            return 0.0  # not proven connected: the database answers
        return self.max_age

    def _start_listener(self) -> None:
        from authserver.storage.db import db

        engine = db.engine
        with self._lock:
            if self.listener is not None and self.listener.running():
                return
            self.listener = Listener(self, _connector(engine))
            sa.event.listen(engine, "engine_disposed", self._on_dispose, once=True)

    def _on_dispose(self, engine) -> None:
        listener = self.listener
        if listener is not None:
            listener.stop()
        self.invalidate_all()

    def close(self) -> None:
        """Stop the listener (tests; the process's end stops it anyway)."""
        if self.listener is not None:
            self.listener.stop()


def _connector(engine: sa.Engine) -> Callable[[], object]:
    """A function opening an autocommit psycopg connection like the engine's."""
    import psycopg

    args, params = engine.dialect.create_connect_args(engine.url)
    params = dict(params, **current_app.config["SQLALCHEMY_ENGINE_OPTIONS"].get(
        "connect_args", {}))
    params["application_name"] = APPLICATION_NAME
    return lambda: psycopg.connect(*args, autocommit=True, **params)


def _hub() -> CacheHub | None:
    return current_app.extensions.get(EXTENSION_KEY) if has_app_context() else None


def cached(name: str, key: Hashable, load: Callable[[], object]) -> object:
    """The row ``load()`` returns for ``key``, from this process's cache when it may be
    trusted. Misses (None) are not cached: a new row is found at once."""
    hub = _hub()
    if hub is None or hub.max_age <= 0:
        return load()
    cache = hub.cache(name)
    max_age = hub.trusted_age()
    if max_age > 0:
        row = cache.get(key, max_age)
        if row is not _MISSING:
            return row
    generation, read_at = cache.generation, time.monotonic()
    row = load()
    if row is not None and max_age > 0:
        cache.put(key, row, generation, read_at)
    return row


# --- invalidation on write ---------------------------------------------------------------

#: model class -> [(cache name, attribute holding the key, or None: any change drops all)]
CACHED_MODELS: dict[type, list[tuple[str, str | None]]] = {}
_PENDING = "authserver.cache.pending"


def cache_rows(model: type, name: str, key_attribute: str | None) -> None:
    """Declare that rows of ``model`` are cached under ``name`` by ``key_attribute``; with
    None, that entries of ``name`` depend on rows of ``model`` (a change drops them all)."""
    specs = CACHED_MODELS.setdefault(model, [])
    if (name, key_attribute) not in specs:
        specs.append((name, key_attribute))


def _changed(session: Session) -> set[tuple[str, str]]:
    found = set()
    for obj in (*session.new, *session.dirty, *session.deleted):
        for name, attribute in CACHED_MODELS.get(type(obj), ()):
            found.add((name, "" if attribute is None else str(getattr(obj, attribute))))
    return found


@sa.event.listens_for(Session, "before_flush")
def _before_flush(session: Session, flush_context, instances) -> None:
    changed = _changed(session)
    if not changed:
        return
    session.info.setdefault(_PENDING, set()).update(changed)
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # Delivered when (and only if) this transaction commits.
        for name, key in changed:
            connection.execute(sa.text("SELECT pg_notify(:channel, :payload)"),
                               {"channel": CHANNEL, "payload": f"{name}:{key}"})


@sa.event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    hub = _hub()
    if pending and hub is not None:
        for name, key in pending:
            hub.drop(name, key)


@sa.event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


def init_app(app: Flask) -> None:
    """This app's caches (the listener starts with the first lookup, in the process that
    serves: gunicorn's workers, never the master that forks them)."""
    app.extensions[EXTENSION_KEY] = CacheHub(app)
