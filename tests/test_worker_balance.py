"""Connections opened at once are spread over ``authserver serve``'s workers
(``authserver.web.serving``: gunicorn's ``reuse_port``).

Before the fix the workers shared one listening socket and whichever called accept() first got
the connection: a client opening its connections together (a proxy's keep-alive pool, a load
generator) could get all of them served by one worker on one core while the other idled (seen
in the benchmark as rounds at half the throughput and 40 % more CPU per request; here, of 16
connections one worker often held none). Now each worker listens on a socket of its own and
the kernel spreads connections over them.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from pathlib import Path

import pytest
from serverproc import ServerProcess, authserver, child_pids, server_env

CONNECTIONS = 32
#: Each worker's share of them, at least: the kernel hashes each connection to one worker's
#: socket, so two workers get fewer than 6 of 32 about once in 10,000 attempts.
AT_LEAST = 6
WORKERS = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = server_env(tmp_path_factory.mktemp("instance"))
    authserver(env, "init")
    process = ServerProcess(env, workers=WORKERS,
                            log_path=tmp_path_factory.mktemp("logs") / "serve.log")
    try:
        process.wait_ready()
        wait_until_every_worker_serves(process)
        yield process
    finally:
        process.stop()


def wait_until_every_worker_serves(process: ServerProcess, timeout: float = 30.0) -> None:
    """gunicorn answers once one worker is up; the others may still be loading the app.
    New connections, one at a time, until each worker has answered one."""
    deadline = time.monotonic() + timeout
    seen: set[int] = set()
    while len(seen) < WORKERS:
        assert time.monotonic() < deadline, f"workers serving: {seen}"
        connection = http.client.HTTPConnection("127.0.0.1", process.port, timeout=10)
        try:
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            inodes = established(process.port)
            seen.update(pid for pid in child_pids(process.process.pid) if held(pid, inodes))
        finally:
            connection.close()
        time.sleep(0.05)


def established(port: int) -> set[str]:
    """Socket inodes of the server side of established TCP connections on ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rpartition(":")[2], 16) == port and fields[3] == "01":
                inodes.add(fields[9])
    return inodes


def held(pid: int, inodes: set[str]) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count


@pytest.mark.parametrize("attempt", range(3))
def test_connections_opened_together_are_spread_over_the_workers(server, attempt):
    workers = child_pids(server.process.pid)
    assert len(workers) == WORKERS
    connections = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                   for _ in range(CONNECTIONS)]
    try:
        for connection in connections:
            connection.connect()
        for connection in connections:  # kept alive: each stays with the worker that took it
            connection.request("GET", "/healthz")
            answer = connection.getresponse()
            assert answer.status == 200 and json.loads(answer.read()) == {"status": "ok"}
        inodes = established(server.port)
        counts = sorted(held(pid, inodes) for pid in workers)
        assert sum(counts) == CONNECTIONS, counts
        assert counts[0] >= AT_LEAST, counts
    finally:
        for connection in connections:
            connection.close()
