"""The gunicorn worker of ``authserver serve``: threads that never wait for a slow client
(threat model AV03).

Gunicorn's sync worker gives a whole process to one connection until its request has
arrived, so two clients sending half a request stop two workers (slowloris). Its gthread
worker only moves the wait to a thread, and a request trickled in a byte at a time still
holds one. This worker reads each request, head and body, in the event loop, without
blocking, and hands it to a thread only once it is complete: a slow or idle client costs a
socket, never a thread, and is dropped when its request is not complete within
``REQUEST_READ_TIMEOUT`` seconds. The threads then parse from memory and run the app.

It subclasses gunicorn's ``ThreadWorker`` and overrides its documented event-loop steps
(``accept``, ``on_client_socket_readable``, ``murder_pending``, ``handle``); pyproject pins
the gunicorn major version it was written against.
"""

from __future__ import annotations

import errno
import re
import selectors
import time
from collections import deque
from functools import partial

from gunicorn.workers.gthread import TConn, ThreadWorker

#: Seconds a client has to send a whole request (head and body) once it has connected or
#: once its previous request was answered.
REQUEST_READ_TIMEOUT = 10.0
#: Requests larger than this are handed over when this much has arrived (the app's own
#: body limit then answers 413); protocol requests are a few hundred bytes.
MAX_BUFFERED = 1 << 20
_CONTENT_LENGTH = re.compile(rb"^content-length:[ \t]*(\d{1,12})[ \t]*\r?$", re.I | re.M)
_CHUNKED = re.compile(rb"^transfer-encoding:.*chunked", re.I | re.M)


def request_complete(data: bytes) -> bool:
    """True when ``data`` holds a whole HTTP/1.1 request: the head, and the body its
    Content-Length (or chunked encoding) announces. Malformed heads count as complete:
    the parser answers them with 400."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return len(data) >= MAX_BUFFERED
    head, body = data[:end + 2], data[end + 4:]
    if _CHUNKED.search(head):
        return body.endswith(b"0\r\n\r\n") or len(data) >= MAX_BUFFERED
    lengths = _CONTENT_LENGTH.findall(head)
    if len(lengths) != 1:
        return True  # none: no body; several: the parser refuses the request
    return len(body) >= int(lengths[0]) or len(data) >= MAX_BUFFERED


class BufferingThreadWorker(ThreadWorker):
    """gthread, except that the event loop reads a request whole before a thread takes it."""

    def init_process(self):
        self.reading: deque[TConn] = deque()  # ordered by deadline (one timeout for all)
        super().init_process()

    def accept(self, listener):
        """Accept a connection and start reading its first request in the event loop."""
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self._read_request(TConn(self.cfg, client_sock, client_addr, listener.getsockname()))

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection's next request is read like a first one."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._read_request(conn)

    def _read_request(self, conn: TConn) -> None:
        conn.sock.setblocking(False)
        conn.received = bytearray()
        conn.read_deadline = time.monotonic() + REQUEST_READ_TIMEOUT
        self.reading.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_bytes, conn))

    def _on_bytes(self, conn: TConn, _sock) -> None:
        try:
            chunk = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:  # the client went away
            self._forget(conn)
            return
        conn.received += chunk
        if request_complete(conn.received):
            self.poller.unregister(conn.sock)
            self.reading.remove(conn)
            conn.data_ready = True
            self.enqueue_req(conn)

    def _forget(self, conn: TConn) -> None:
        try:
            self.poller.unregister(conn.sock)
        except (OSError, KeyError, ValueError):
            pass  # already unregistered
        try:
            self.reading.remove(conn)
        except ValueError:
            pass
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self):
        """Also drop connections whose request did not arrive in time."""
        super().murder_pending()
        now = time.monotonic()
        while self.reading and self.reading[0].read_deadline <= now:
            self._forget(self.reading[0])

    def handle(self, conn):
        """Parse the request from what the event loop received, then serve it."""
        received = getattr(conn, "received", None)
        if received:
            conn.received = None
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(bytes(received))
        return super().handle(conn)
