"""Helpers for the fault-injection tests (tests/test_faults.py): server processes on a fixed
port, their worker pids and memory, credentials made through the service layer, HTTP calls
that never hang, and a bounded load runner."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import requests
from pgcluster import PrivateCluster
from serverproc import BIN, ServerProcess, free_port, server_env

from authserver import create_app
from authserver.credentials import api_keys
from authserver.credentials import clients as client_service
from authserver.credentials import signing_keys as keys
from authserver.storage.db import db, upgrade_database

ENCRYPTION_KEY = base64.urlsafe_b64encode(b"f" * 32).decode()
#: Every limit off: these tests measure faults and load, not the limiter.
NO_RATE_LIMITS = {name: "" for name in ("TOKEN_RATE_LIMIT", "AUTH_FAILURE_RATE_LIMIT",
                                        "INTROSPECTION_RATE_LIMIT", "ADMIN_WRITE_RATE_LIMIT",
                                        "AUTH_FAILURE_ADDRESS_RATE_LIMIT")}
#: application_name of this process's own connections (left out of connection counts).
TEST_APPLICATION = "fault-tests"
#: SQLALCHEMY_ENGINE_OPTIONS that ping a pooled connection before each use (RL1 compares).
PRE_PING = json.dumps({"pool_pre_ping": True})
SMS = {"messages": [{"destinations": [{"to": "41793026727"}], "content": {"text": "hi"},
                     "sender": "demo"}]}


def settings(database_url: str, **extra: str) -> dict:
    """AUTHSERVER_* settings for a server or CLI on ``database_url``."""
    return {"SQLALCHEMY_DATABASE_URI": database_url, "ENCRYPTION_KEY": ENCRYPTION_KEY,
            "SECRET_KEY": "fault-tests", **NO_RATE_LIMITS, **extra}


class Server(ServerProcess):
    """``authserver serve`` on a port chosen by the caller (so ISSUER can name it up front)."""

    def __init__(self, env: dict, *, port: int | None = None, workers: int = 1,
                 log_path: Path | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [str(BIN / "authserver"), "serve", "--port", str(self.port),
             "--workers", str(workers)], env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def worker_pids(self) -> list[int]:
        """The gunicorn workers (children of the master)."""
        return children(self.process.pid)

    def kill(self) -> None:
        """kill -9 the master, then its workers (the master first, so it cannot fork new
        ones): no graceful shutdown, no finally blocks."""
        for pid in [self.process.pid, *self.worker_pids()]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(10)
        if self.log is not subprocess.DEVNULL:
            self.log.close()


class DemoServer:
    """``resource-demo serve`` (gunicorn) in front of an issuer."""

    def __init__(self, issuer: str, client_id: str, client_secret: str, *, workers: int = 2,
                 log_path: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESOURCE_DEMO")}
        env["RESOURCE_DEMO_CLIENT_SECRET"] = client_secret
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [str(BIN / "resource-demo"), "serve", "--port", str(self.port), "--workers",
             str(workers), "--issuer", issuer, "--client-id", client_id],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30.0) -> "DemoServer":
        try:
            wait_until(lambda: _answers(self.url + "/healthz"), timeout, self.process)
        except BaseException:
            self.stop()  # no orphan server left behind a failed start
            raise
        return self

    def worker_pids(self) -> list[int]:
        return children(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log is not subprocess.DEVNULL:
            self.log.close()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def wait_until(predicate: Callable[[], bool], timeout: float,
               process: subprocess.Popen | None = None, interval: float = 0.1) -> float:
    """Poll ``predicate``; return the seconds it took, or raise TimeoutError."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    raise TimeoutError(f"not true within {timeout} s")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            continue
    return found


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def token(url: str, client_id: str, secret: str, timeout: float = 10,
          **form: str) -> requests.Response:
    """POST /oauth2/token, client_secret_basic (``resource=`` the issuer for the admin API)."""
    return requests.post(url + "/oauth2/token",
                         data={"grant_type": "client_credentials", **form},
                         auth=(client_id, secret), timeout=timeout)


def bearer(value: str) -> dict:
    """An Authorization header carrying a bearer token."""
    return {"Authorization": f"Bearer {value}"}


def parallel(function, items, threads: int) -> list:
    """``function`` over ``items`` in ``threads`` threads; the results in order."""
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(function, items))


def post_form(url: str, path: str, form: dict, auth: tuple[str, str],
              timeout: float = 10) -> requests.Response:
    """POST a form to a protocol endpoint with Basic auth."""
    return requests.post(url + path, data=form, auth=auth, timeout=timeout)


def send_sms(demo_url: str, scheme: str, credential: str,
             timeout: float = 10) -> requests.Response:
    """POST /sms/3/messages on the demo with ``scheme credential``."""
    return requests.post(demo_url + "/sms/3/messages", json=SMS, timeout=timeout,
                         headers={"Authorization": f"{scheme} {credential}"})


def server_settings_env(instance: Path, database_url: str, **extra: str) -> dict:
    """The environment of a server process or CLI on ``database_url``."""
    return server_env(instance, **settings(database_url, **extra))


class Load:
    """``workers`` threads calling ``step(worker_index)`` until ``stop()`` or the deadline;
    every exception a step raises is kept (bounded) for the assertion."""

    def __init__(self, workers: int, step: Callable[[int], None], seconds: float):
        self.step = step
        self.deadline = time.monotonic() + seconds
        self.stopped = threading.Event()
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="load")
        self._futures = [self._pool.submit(self._run, index) for index in range(workers)]

    def _run(self, index: int) -> None:
        while not self.stopped.is_set() and time.monotonic() < self.deadline:
            try:
                self.step(index)
            except Exception as exc:  # noqa: BLE001 - every failure is reported by the test
                with self._lock:
                    if len(self.errors) < 50:
                        self.errors.append(exc)

    def stop(self) -> None:
        self.stopped.set()

    def join(self) -> None:
        for future in self._futures:
            future.result()
        self._pool.shutdown()


@contextmanager
def load(workers: int, step: Callable[[int], None], seconds: float):
    """Run a ``Load`` for the duration of the block (and at most ``seconds``)."""
    running = Load(workers, step, seconds)
    try:
        yield running
    finally:
        running.stop()
        running.join()


class Deployment:
    """A fresh, migrated database with signing keys on the private cluster; servers on it; and
    an app in this process (``config`` on top) for setup through the service layer, as the
    CLI would do it."""

    def __init__(self, cluster: PrivateCluster, tmp: Path, issuer: str, **config):
        self.cluster = cluster
        self.tmp = tmp
        self.issuer = issuer
        self.dbname = cluster.create_database()
        self.url = cluster.url(self.dbname)
        self.app = create_app(
            {**settings(self.url), "ISSUER": issuer,
             "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "connect_args": {
                 "connect_timeout": 2, "application_name": TEST_APPLICATION}}, **config},
            instance_path=str(tmp / "setup-instance"))
        with self.app.app_context():
            upgrade_database()
            keys.ensure_signing_keys()
        self.servers: list[Server] = []

    def env(self, name: str, **extra: str) -> dict:
        """Environment of a server or CLI process named ``name`` on this database."""
        return server_settings_env(self.tmp / f"instance-{name}", self.url, ISSUER=self.issuer,
                                   **extra)

    def server(self, name: str, *, port: int | None = None, workers: int = 1,
               **extra: str) -> Server:
        """Start ``authserver serve`` and wait until /healthz answers."""
        server = Server(self.env(name, **extra), port=port, workers=workers,
                        log_path=self.tmp / f"{name}.log")
        self.servers.append(server)
        server.wait_ready()
        return server

    def client(self, scope: str, **options) -> tuple[str, str]:
        """Register a client through the service layer; (client_id, secret)."""
        with self.app.app_context():
            record, secret = client_service.create_client(name="fault", scope=scope,
                                                          actor="test", **options)
            return record.client_id, secret

    def api_key(self, scope: str) -> str:
        """Create an API key through the service layer; its secret."""
        with self.app.app_context():
            return api_keys.create_api_key(name="fault", scopes=scope, actor="test")[1]

    def rotate(self) -> str:
        """Rotate the signing keys (what ``authserver signing-keys rotate`` does); new kid."""
        with self.app.app_context():
            return keys.rotate_signing_keys().kid

    def close(self) -> None:
        """Kill the servers; leave the cluster running for the next test."""
        if not self.cluster.running():
            self.cluster.start()
        for server in self.servers:
            if server.process.poll() is None:
                server.kill()
        with self.app.app_context():
            db.session.remove()
            db.engine.dispose()


class Blackhole:
    """A port that accepts TCP connections into its backlog and never answers: a database
    that is hung rather than refusing."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()
