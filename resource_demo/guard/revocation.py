"""Revoked JWTs at a resource guard: the server's revocation feed, followed in the background.

Policy (threat model AV06, RV04): each process polls the feed every ``interval``
seconds, so a revoked token is refused within that interval. While the feed cannot be read
the list keeps what it had; once the last good poll is older than ``max_outage`` seconds
(default 60) tokens get 503 (fail closed) unless ``fail_open`` is set, and before the first
good poll of a process there is nothing to serve from, so tokens get 503 too.

From feed version 2 the list also follows account changes (threat model AC04): a token whose
``account_id`` names a disabled account is refused, and so is one issued (``iat``) at or before
its account's last disable, within the same interval. Against a version-1 server there are no
account changes to follow, and the guard says so once in its log.

``RevocationList`` holds the state; ``follow`` runs the poller in a thread (WSGI apps, started
again after a fork), ``afollow`` as a task on the running event loop (ASGI apps).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable

from resource_demo.guard.errors import SourceUnavailable
from resource_demo.guard.server_client import (
    AsyncAuthorizationServerClient,
    AuthorizationServerClient,
    AccountState,
    ServerUnavailable,
    feed_accounts,
    feed_entries,
)

log = logging.getLogger(__name__)


class FeedUnavailable(SourceUnavailable):
    """The revocation feed has not been read recently enough to trust the list (→ 503)."""


class RevocationList:
    """Revoked ``jti``s and how fresh they are; ``check(jti)`` is the guard's revocation source."""

    def __init__(self, interval: float = 2.0, max_outage: float = 60.0, *, fail_open: bool = False,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.max_outage = max_outage
        self.fail_open = fail_open
        self.clock = clock
        self.monotonic = monotonic
        self._revoked: dict[str, int] = {}
        self._cursor = 0
        self._accounts: dict[str, AccountState] = {}
        self._accounts_cursor = 0
        self.follows_accounts = True  # until a version-1 server answers without them
        self.last_success: float | None = None
        self.last_error: str | None = None

    def __contains__(self, jti: object) -> bool:
        return jti in self._revoked

    @property
    def cursor(self) -> int:
        """The feed position this list has read up to."""
        return self._cursor

    @property
    def accounts_cursor(self) -> int | None:
        """The account-change position read up to (None: the server sends no account changes)."""
        return self._accounts_cursor if self.follows_accounts else None

    def apply(self, page: object) -> bool:
        """Take one feed page; drop entries that have expired; True when more pages follow."""
        entries, cursor, has_more = feed_entries(page)
        accounts = feed_accounts(page)
        now = self.clock()
        revoked = {**self._revoked, **entries}
        # A token expired longer ago than any verifier's leeway can never be accepted again.
        self._revoked = {jti: exp for jti, exp in revoked.items() if exp > now - 60}
        self._cursor = max(self._cursor, cursor)
        if accounts is None:
            if self.follows_accounts:
                log.warning("revocation feed has no account changes (server older than feed "
                            "version 2): tokens of disabled accounts are not refused here")
            self.follows_accounts = False
        else:
            changes, accounts_cursor = accounts
            self._accounts = {**self._accounts, **changes}
            self._accounts_cursor = max(self._accounts_cursor, accounts_cursor)
        return has_more

    def refuses_account(self, claims: dict) -> bool:
        """True when the token's account refuses it: disabled, or the token was issued at or
        before the account's last disable (AC04). Call after ``check`` (the list is fresh)."""
        state = self._accounts.get(claims.get("account_id"))
        if state is None:
            return False
        enabled, disabled_at = state
        if not enabled:
            return True
        iat = claims.get("iat")
        return disabled_at is not None and (not isinstance(iat, (int, float)) or iat <= disabled_at)

    def succeeded(self) -> None:
        """Record a complete poll."""
        if self.last_error is not None:
            log.info("revocation feed recovered")
        self.last_success, self.last_error = self.monotonic(), None

    def failed(self, exc: Exception) -> None:
        """Record a failed poll (the list keeps what it had)."""
        self.last_error = str(exc)
        log.warning("revocation feed unavailable: %s", exc)

    def check(self, jti: str) -> bool:
        """True when ``jti`` is revoked; ``FeedUnavailable`` when the list cannot be trusted."""
        if self.last_success is None:
            raise FeedUnavailable(f"revocation feed not read yet: {self.last_error or 'starting'}")
        outage = self.monotonic() - self.last_success
        if outage > self.max_outage:
            if not self.fail_open:
                raise FeedUnavailable(
                    f"revocation feed not read for {outage:.0f} s (limit {self.max_outage:.0f} s)")
        return jti in self._revoked


class FeedFollower:
    """Polls the feed into a ``RevocationList`` from a daemon thread (one per process)."""

    def __init__(self, revocations: RevocationList, server: AuthorizationServerClient,
                 first_poll_wait: float | None = None):
        self.revocations = revocations
        self.server = server
        self.first_poll_wait = server.timeout + 1 if first_poll_wait is None else first_poll_wait
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._first_attempt = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> None:
        """Read every page after the cursor."""
        try:
            while self.revocations.apply(self.server.revocations(
                    self.revocations.cursor, self.revocations.accounts_cursor)):
                pass
        except ServerUnavailable as exc:
            self.revocations.failed(exc)
        else:
            self.revocations.succeeded()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._first_attempt.set()
            self._stop.wait(self.revocations.interval)

    def ensure_started(self) -> None:
        """Start the follower in this process (again after a fork, e.g. in gunicorn workers)
        and wait, once, for its first poll (bounded by the HTTP timeout)."""
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._pid = os.getpid()
                    self._first_attempt = threading.Event()
                    self._thread = threading.Thread(target=self._run, name="revocation-feed",
                                                    daemon=True)
                    self._thread.start()
        if not self._first_attempt.is_set():  # after the first poll: no lock, no wait
            self._first_attempt.wait(self.first_poll_wait)

    def check(self, jti: str) -> bool:
        """The guard's revocation source: start following if needed, then ask the list."""
        self.ensure_started()
        return self.revocations.check(jti)

    def stop(self) -> None:
        """Stop the follower thread and wait for a poll under way (bounded by the HTTP
        timeout), so the HTTP client can be closed after it."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.server.timeout + 1)


class AsyncFeedFollower:
    """Polls the feed into a ``RevocationList`` as a task on the app's event loop."""

    def __init__(self, revocations: RevocationList, server: AsyncAuthorizationServerClient):
        self.revocations = revocations
        self.server = server
        self._task: asyncio.Task | None = None
        self._first_attempt: asyncio.Event | None = None

    async def poll(self) -> None:
        """Read every page after the cursor."""
        try:
            while self.revocations.apply(await self.server.revocations(
                    self.revocations.cursor, self.revocations.accounts_cursor)):
                pass
        except ServerUnavailable as exc:
            self.revocations.failed(exc)
        else:
            self.revocations.succeeded()

    async def _run(self, first_attempt: asyncio.Event) -> None:
        while True:
            await self.poll()
            first_attempt.set()
            await asyncio.sleep(self.revocations.interval)

    async def ensure_started(self) -> None:
        """Start the poller on the running loop (again if its loop or task ended), and wait,
        once, for its first poll."""
        task = self._task
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            self._first_attempt = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(self._first_attempt))
        if not self._first_attempt.is_set():
            try:
                await asyncio.wait_for(self._first_attempt.wait(), self.server.timeout + 1)
            except TimeoutError:
                pass

    async def check(self, jti: str) -> bool:
        """The guard's revocation source: start following if needed, then ask the list."""
        await self.ensure_started()
        return self.revocations.check(jti)

    async def stop(self) -> None:
        """Cancel the poller task."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, RuntimeError):
                pass
