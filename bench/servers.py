"""The processes a benchmark run measures: authserver instances, the ceiling, databases, Redis.

Everything listens on 127.0.0.1 only. Servers are started through the console scripts
(``authserver serve``) exactly as an operator would, each in its own process group, and
stopped with SIGTERM to the gunicorn master we started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PG_ADMIN_DSN = f"host={HOST} port=5432 user=postgres dbname=postgres"
BENCH_DIR = Path(__file__).resolve().parent
#: Rate limits raised far above what a run can reach: the counting still happens on every
#: request (its cost is part of the figures), but no request is refused.
UNREACHABLE_LIMITS = {
    "AUTHSERVER_TOKEN_RATE_LIMIT": "100000000/second",
    "AUTHSERVER_INTROSPECTION_RATE_LIMIT": "100000000/second",
    "AUTHSERVER_AUTH_FAILURE_RATE_LIMIT": "100000000/second",
    "AUTHSERVER_AUTH_FAILURE_ADDRESS_RATE_LIMIT": "100000000/second",
}


class BenchError(RuntimeError):
    """The benchmark could not set something up; the message says what."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def console_script(name: str) -> str:
    """The console script next to this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise BenchError(f"console script {name!r} not found: run from the project's venv")
    return found


def _clean_environment() -> dict:
    env = dict(os.environ)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # each Server sets its own
    for name in list(env):
        if name.startswith(("AUTHSERVER_", "RESOURCE_DEMO_")):
            del env[name]
    return env


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14, 15 of proc(5)


class PostgresDatabase:
    """A fresh database on the local PostgreSQL (trust auth), dropped by ``drop()``."""

    def __init__(self, label: str):
        import psycopg

        self.name = f"authserver_bench_{label}_{uuid.uuid4().hex[:8]}"
        try:
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')
        except psycopg.Error as exc:
            raise BenchError(f"cannot create a PostgreSQL database on {HOST}:5432: {exc}") from exc

    @property
    def url(self) -> str:
        """SQLAlchemy URL for AUTHSERVER_SQLALCHEMY_DATABASE_URI."""
        return f"postgresql+psycopg://postgres@{HOST}:5432/{self.name}"

    @property
    def dsn(self) -> str:
        """libpq connection string (for the seeding code)."""
        return f"host={HOST} port=5432 user=postgres dbname={self.name}"

    def version(self) -> str:
        import psycopg

        with psycopg.connect(self.dsn) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]

    def backend_cpu_seconds(self) -> float:
        """CPU time used so far by the PostgreSQL backends connected to this database."""
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            pids = [row[0] for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.name,))]
        return sum(process_cpu_seconds(pid) for pid in pids)

    def drop(self) -> None:
        """Drop the database (FORCE: servers may still hold idle connections)."""
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class RedisServer:
    """A private ``redis-server`` on a free port (no persistence), so that its CPU time is
    this run's alone; ``stop()`` ends it."""

    def __init__(self, log_dir: Path):
        binary = shutil.which("redis-server")
        if not binary:
            raise BenchError("the production configuration needs redis-server on PATH")
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self._log = (log_dir / "redis.log").open("wb")
        self.process = subprocess.Popen(
            [binary, "--bind", HOST, "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--protected-mode", "yes"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise BenchError("redis-server did not answer within 20 s")

    def version(self) -> str:
        done = subprocess.run([shutil.which("redis-server"), "--version"], capture_output=True,
                              text=True)
        return done.stdout.split(" v=", 1)[-1].split()[0] if " v=" in done.stdout else "?"

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


class Instance:
    """One authserver instance folder (config, SQLite file or a PostgreSQL URL) and its CLI."""

    def __init__(self, root: Path, name: str, database: PostgresDatabase | None = None,
                 extra_env: dict | None = None, redis: RedisServer | None = None):
        self.name = name
        self.path = root / name
        self.path.mkdir(parents=True)
        self.database = database
        self.redis = redis
        self.env = _clean_environment()
        self.env["AUTHSERVER_INSTANCE_PATH"] = str(self.path)
        if database is not None:
            self.env["AUTHSERVER_SQLALCHEMY_DATABASE_URI"] = database.url
        if redis is not None:
            # Every instance keeps its own counters in the shared Redis, as hosts would.
            self.env["AUTHSERVER_RATELIMIT_STORAGE_URI"] = redis.url
            self.env["AUTHSERVER_RATELIMIT_KEY_PREFIX"] = f"bench-{name}"
        self.env.update(UNREACHABLE_LIMITS)
        self.env.update(extra_env or {})

    def cli(self, *args: str) -> str:
        """Run ``authserver ARGS`` for this instance; its stdout, or BenchError with stderr."""
        command = [console_script("authserver"), *args]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise BenchError(f"`authserver {' '.join(args)}` failed ({self.name}):\n"
                             f"{done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def init(self, alg: str = "RS256") -> None:
        """``authserver init --alg ALG``: secrets, schema, first signing keys."""
        self.cli("init", "--alg", alg)

    def create_client(self, name: str, scope: str, *options: str,
                      account: str | None = None) -> tuple[str, str]:
        """A client_secret_basic client (of ``account``, default the platform's; ``options``:
        more ``clients create`` flags); returns (client_id, client_secret)."""
        data = json.loads(self.cli("clients", "create", "--name", name, "--scope", scope,
                                   *options, *(("--account", account) if account else ()),
                                   "--json"))
        return data["clientId"], data["clientSecret"]

    def create_api_key(self, name: str, scope: str,
                       account: str | None = None) -> tuple[str, str]:
        """An API key (of ``account``, default the platform's); returns (id, secret)."""
        data = json.loads(self.cli("api-keys", "create", "--name", name, "--scope", scope,
                                   *(("--account", account) if account else ()), "--json"))
        return data["id"], data["apiKeySecret"]

    def create_account(self, name: str) -> str:
        """A customer account; returns its id."""
        return json.loads(self.cli("accounts", "create", "--name", name, "--json"))["id"]


class Server:
    """A gunicorn server we started; ``stop()`` ends it (and only it)."""

    def __init__(self, label: str, command: list[str], env: dict, port: int, log_dir: Path,
                 ready_path: str, database: PostgresDatabase | None = None,
                 redis: RedisServer | None = None):
        self.label = label
        self.database = database
        self.redis = redis
        self.port = port
        self.base_url = f"http://{HOST}:{port}"
        self.log_path = log_dir / f"{label}.log"
        self._log = self.log_path.open("wb")
        # A fresh metrics folder inside the run's temporary folder (removed with it).
        metrics = log_dir.parent / "metrics" / label
        metrics.mkdir(parents=True)
        env = dict(env, PROMETHEUS_MULTIPROC_DIR=str(metrics))
        self.process = subprocess.Popen(command, env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready(ready_path)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, path: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"{self.label} exited at start:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base_url + path, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise BenchError(f"{self.label} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log (for error messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def worker_pids(self) -> list[int]:
        """The gunicorn workers' process ids (children of the master we started)."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == self.process.pid:  # field 4 of proc(5): ppid
                pids.append(int(stat.parent.name))
        return pids

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the master and its current workers."""
        return sum(process_cpu_seconds(pid) for pid in [self.process.pid, *self.worker_pids()])

    def stop(self) -> None:
        """SIGTERM to the master (it stops its workers); SIGKILL to our group if it hangs."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()


def start_authserver(instance: Instance, log_dir: Path, workers: int = 2) -> Server:
    """``authserver serve`` for ``instance`` on a free port (issuer http://127.0.0.1:PORT)."""
    port = free_port()
    command = [console_script("authserver"), "serve", "--host", HOST, "--port", str(port),
               "--workers", str(workers)]
    return Server(f"authserver-{instance.name}", command, instance.env, port, log_dir,
                  "/.well-known/oauth-authorization-server", instance.database, instance.redis)


def start_ceiling(log_dir: Path, workers: int = 2) -> Server:
    """The trivial Flask app (``bench/ceiling.py``), served as ``authserver serve`` serves."""
    port = free_port()
    command = [sys.executable, str(BENCH_DIR / "ceiling.py"), "--host", HOST,
               "--port", str(port), "--workers", str(workers)]
    return Server("ceiling", command, _clean_environment(), port, log_dir, "/ceiling")
