"""A deadline for every database transaction on PostgreSQL (threat model RL1).

A database that hangs without refusing (frozen host, stopped postmaster, lost packets on a
live link) blocks a pooled connection's read forever: connect_timeout covers only new
connections and statement_timeout is enforced by the hung server itself. The watchdog
notes each connection when the pool hands it out; one thread per process shuts down the
socket of any connection held past DB_REQUEST_TIMEOUT, so the blocked call raises
OperationalError and the request is answered 503 with Retry-After.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import sqlalchemy as sa
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)
POLL_SECONDS = 0.25


class ConnectionWatchdog:
    """Deadlines of checked-out connections; a daemon thread enforces them."""

    def __init__(self):
        self._deadlines: dict[int, tuple[object, float]] = {}
        self._lock = threading.Lock()
        self._pid: int | None = None

    def watch(self, engine: Engine, timeout: float, ping: bool = False) -> None:
        """Give every connection of ``engine`` ``timeout`` seconds per checkout.

        ``ping`` replaces SQLAlchemy's pool_pre_ping, whose ping runs before the checkout
        event and so outside any deadline: here the ping runs under the deadline, and a
        failed ping makes the pool retry with a fresh connection (DisconnectionError).
        """

        def on_checkout(dbapi_connection, record, proxy):
            self._ensure_thread()
            with self._lock:
                self._deadlines[id(dbapi_connection)] = (dbapi_connection,
                                                         time.monotonic() + timeout)
            if ping:
                try:
                    cursor = dbapi_connection.cursor()
                    cursor.execute("SELECT 1")
                    cursor.close()
                    # End the transaction the ping opened: the connection is handed out as
                    # the pool had it (a read in autocommit may be asked of it next).
                    dbapi_connection.rollback()
                except Exception as exc:  # noqa: BLE001 - any driver error: a dead connection
                    with self._lock:
                        self._deadlines.pop(id(dbapi_connection), None)
                    raise sa.exc.DisconnectionError(type(exc).__name__) from exc

        def on_checkin(dbapi_connection, record):
            with self._lock:
                self._deadlines.pop(id(dbapi_connection), None)

        sa.event.listen(engine, "checkout", on_checkout)
        sa.event.listen(engine, "checkin", on_checkin)

    def _ensure_thread(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._deadlines.clear()  # a forked child inherits none of the parent's checkouts
            threading.Thread(target=self._run, name="db-watchdog", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(POLL_SECONDS)
            now = time.monotonic()
            with self._lock:
                overdue = [conn for conn, deadline in self._deadlines.values() if deadline < now]
                for conn in overdue:
                    self._deadlines.pop(id(conn), None)
            for conn in overdue:
                _sever(conn)


def _sever(dbapi_connection) -> None:
    """Shut the connection's socket down under the blocked call (psycopg 3). A connection
    the driver already knows is lost has no socket left to shut (psycopg raises its
    OperationalError for ``pgconn.socket``): nothing to do, and the watchdog thread goes on."""
    try:
        fd = dbapi_connection.pgconn.socket
        duplicate = socket.socket(fileno=os.dup(fd))
    except Exception:  # noqa: BLE001 - lost, closed or not a psycopg connection
        return
    try:
        duplicate.shutdown(socket.SHUT_RDWR)
        log.error("database transaction exceeded DB_REQUEST_TIMEOUT: connection severed")
    except OSError:
        pass
    finally:
        duplicate.close()


watchdog = ConnectionWatchdog()
