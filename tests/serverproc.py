"""Running ``authserver`` as real processes for multi-process tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import requests

BIN = Path(sys.executable).parent
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresDatabase:
    """A fresh PostgreSQL database, dropped on ``drop()``."""

    def __init__(self):
        self.name = f"authserver_proc_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.name}"

    def drop(self) -> None:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc: field 4 of /proc/PID/stat, after
    the parenthesised command name)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def authserver(env: dict, *args: str, check: bool = True,
               input_text: str | None = None) -> subprocess.CompletedProcess:
    """Run one ``authserver`` CLI command to completion."""
    return subprocess.run([str(BIN / "authserver"), *args], env=env, capture_output=True,
                          text=True, timeout=120, check=check, input=input_text)


class ServerProcess:
    """``authserver serve`` on a free port; ``stop()`` sends SIGTERM and waits."""

    def __init__(self, env: dict, workers: int = 1, log_path: Path | None = None,
                 port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path, "wb") if log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [str(BIN / "authserver"), "serve", "--port", str(self.port),
             "--workers", str(workers)], env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30.0) -> "ServerProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"server exited with {self.process.returncode}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()  # no orphan server left behind a failed start
        raise TimeoutError(f"server did not become ready within {timeout:g} s")

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log is not subprocess.DEVNULL:
            self.log.close()
        return self.process.returncode


def server_env(instance: Path, **settings: str) -> dict:
    """The environment for a server process: the instance folder plus AUTHSERVER_* settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AUTHSERVER_")}
    env["AUTHSERVER_INSTANCE_PATH"] = str(instance)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    for name, value in settings.items():
        env[f"AUTHSERVER_{name}"] = value
    return env
