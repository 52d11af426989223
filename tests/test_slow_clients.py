"""Slow and idle clients against ``authserver serve`` (issue 18 finding 3, threat model AV03).

Before the fix two connections that sent half a request froze both default (sync) workers
for 30 s. Here 50 connections are held open for the whole test, half of them idle and half
trickling a request one header line at a time (slowloris), while a normal client keeps asking
for tokens: every one of its requests must be answered, quickly.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time

import pytest
import requests
from serverproc import ServerProcess, authserver, server_env

SLOW_CONNECTIONS = 50
DURATION = 12.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``authserver serve`` with its default worker settings, on SQLite."""
    env = server_env(tmp_path_factory.mktemp("instance"), TOKEN_RATE_LIMIT="1000/second")
    authserver(env, "init")
    created = json.loads(authserver(env, "clients", "create", "--name", "svc", "--scope",
                                    "message:send", "--json").stdout)
    process = ServerProcess(env, log_path=tmp_path_factory.mktemp("logs") / "serve.log")
    try:
        process.wait_ready()
        yield process, (created["clientId"], created["clientSecret"])
    finally:
        process.stop()


def _hold(port: int, trickle: bool, stop: threading.Event, opened: list) -> None:
    """One slow connection: idle, or a token request sent a header line every second."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return
    opened.append(sock)
    try:
        if trickle:
            sock.sendall(b"POST /oauth2/token HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        line = 0
        while not stop.wait(1.0):
            if trickle:
                sock.sendall(f"X-Slow-{line}: {'a' * 10}\r\n".encode())
                line += 1
    except OSError:
        pass  # the server dropped us: that is allowed
    finally:
        sock.close()


def test_AV03_fifty_slow_connections_never_stop_normal_clients(server):
    process, (client_id, secret) = server
    stop = threading.Event()
    opened: list[socket.socket] = []
    holders = [threading.Thread(target=_hold, args=(process.port, i % 2 == 0, stop, opened),
                                daemon=True) for i in range(SLOW_CONNECTIONS)]
    for holder in holders:
        holder.start()
    time.sleep(1.0)  # every slow connection is open and has sent what it sends first
    assert len(opened) == SLOW_CONNECTIONS
    latencies, failures = [], []
    deadline = time.monotonic() + DURATION
    session = requests.Session()  # kept-alive connections take the same path
    try:
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                answer = session.post(process.url + "/oauth2/token",
                                      data={"grant_type": "client_credentials"},
                                      auth=(client_id, secret), timeout=5)
                if answer.status_code != 200:
                    failures.append(answer.status_code)
            except requests.RequestException as exc:
                failures.append(type(exc).__name__)
            latencies.append(time.monotonic() - started)
            time.sleep(0.1)
    finally:
        stop.set()
        for holder in holders:
            holder.join(5)
    assert failures == []
    assert len(latencies) >= 20
    assert max(latencies) < 2.0, sorted(latencies)[-5:]


def test_AV03_a_request_sent_in_pieces_is_served(server):
    process, (client_id, secret) = server
    body = "grant_type=client_credentials"
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    head = (f"POST /oauth2/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Basic {basic}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", process.port), timeout=10) as sock:
        for piece in (head[:20], head[20:], body[:10], body[10:]):
            sock.sendall(piece.encode())
            time.sleep(0.3)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_AV03_a_client_that_never_finishes_its_request_is_dropped(server):
    from authserver.web.workers import REQUEST_READ_TIMEOUT

    process, _ = server
    with socket.create_connection(("127.0.0.1", process.port), timeout=30) as sock:
        sock.sendall(b"POST /oauth2/token HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        assert sock.recv(65536) == b""  # closed by the server
    assert time.monotonic() - started < REQUEST_READ_TIMEOUT + 3


@pytest.mark.parametrize(("data", "complete"), [
    (b"GET / HTTP/1.1\r\nHost: x\r\n", False),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabc", False),
    (b"POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\nabcde", True),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 9\r\n\r\n", True),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", False),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", True),
    (b"x" * (1 << 20), True),
])
def test_request_complete(data, complete):
    from authserver.web.workers import request_complete

    assert request_complete(data) is complete
