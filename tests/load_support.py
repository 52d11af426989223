"""Load harnesses of tests/test_faults.py: minting and presenting tokens while keys rotate
(RL2), and a server + demo + 200 clients for the concurrency levels of RL7."""

from __future__ import annotations

import threading
import time
from collections import Counter

import jwt
from fault_support import (
    TEST_APPLICATION,
    DemoServer,
    Deployment,
    Server,
    rss_kib,
    send_sms,
    token,
)
from pgcluster import PrivateCluster
from serverproc import free_port


class RotationLoad:
    """Threads minting tokens at two servers and presenting each new token and the oldest
    token they minted to the guard; every answer that is not 200 is a refused valid token."""

    def __init__(self, servers: list[Server], demo_url: str, client: tuple[str, str]):
        self.servers = servers
        self.demo_url = demo_url
        self.client = client
        self.lock = threading.Lock()
        self.first_success: float | None = None
        self.first_success_at = 0.0
        self.refused: list[tuple[int, str, float]] = []  # status, kid, s after first 200
        self.statuses: Counter = Counter()
        self.kids: Counter = Counter()
        self.oldest: dict[int, str] = {}
        self.turn = 0

    def step(self, worker: int) -> None:
        with self.lock:
            self.turn += 1
            server = self.servers[self.turn % len(self.servers)]
        minted = token(server.url, *self.client)
        assert minted.status_code == 200, minted.text
        access_token = minted.json()["access_token"]
        kid = jwt.get_unverified_header(access_token)["kid"]
        self.oldest.setdefault(worker, access_token)
        for presented in (access_token, self.oldest[worker]):
            answer = send_sms(self.demo_url, "Bearer", presented)
            with self.lock:
                self.statuses[answer.status_code] += 1
                if answer.status_code != 200:
                    since = (0.0 if self.first_success is None
                             else time.monotonic() - self.first_success)
                    self.refused.append((answer.status_code,
                                         jwt.get_unverified_header(presented)["kid"],
                                         round(since, 2)))
                elif self.first_success is None:
                    self.first_success = time.monotonic()
                    self.first_success_at = time.time()  # for log records' times
        with self.lock:
            self.kids[kid] += 1


class LoadStack:
    """A server with three workers, the demo with two, 200 clients; RSS and connections."""

    def __init__(self, cluster: PrivateCluster, tmp_path):
        port = free_port()
        self.deployment = Deployment(cluster, tmp_path, f"http://127.0.0.1:{port}")
        self.server = self.deployment.server("load", port=port, workers=3)
        self.clients = [self.deployment.client("message:send") for _ in range(200)]
        introspector = self.deployment.client("tokens:introspect")
        self.demo = DemoServer(self.server.url, *introspector,
                               log_path=tmp_path / "demo.log").wait_ready()
        self.jtis: set[str] = set()
        for client in self.clients[:20]:  # warm every worker before the baseline
            send_sms(self.demo.url, "Bearer", token(self.server.url, *client).json()
                     ["access_token"])
        self.baseline = {pid: rss_kib(pid) for pid in self.server.worker_pids()}

    def connections(self) -> int:
        """The server's connections to the database (this process's own left out)."""
        return self.deployment.cluster.connections(self.deployment.dbname, TEST_APPLICATION)

    def close(self) -> None:
        self.demo.stop()
        self.deployment.close()
