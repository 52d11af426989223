"""A private PostgreSQL cluster for fault tests (threat model RL1, RL6, RL7).

The cluster has its own data directory, port and socket directory, so a test can stop it,
kill it or freeze it (SIGSTOP) without touching the machine's main server. It is created
with ``initdb`` (trust authentication, loopback only) and driven with ``pg_ctl``; when the
tests run as root, every PostgreSQL program runs as the ``postgres`` OS user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg
from serverproc import child_pids, free_port


def postgres_bindir() -> Path | None:
    """The newest PostgreSQL server ``bin`` directory holding initdb and pg_ctl, if any."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                        key=lambda path: int(Path(path).parent.name)
                        if Path(path).parent.name.isdigit() else 0)
    for path in reversed(candidates):
        if (Path(path) / "initdb").exists() and (Path(path) / "pg_ctl").exists():
            return Path(path)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _run_as() -> list[str]:
    """The prefix that runs a PostgreSQL program as a non-root user (postgres refuses root)."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


class PrivateCluster:
    """``initdb`` + ``pg_ctl`` on a free port; ``destroy()`` removes everything it made."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        # Under /tmp, not pytest's tmp_path: that one is 0700 root and postgres cannot enter it,
        # and a Unix socket path must stay short.
        self.root = Path(tempfile.mkdtemp(prefix="authserver-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.host = "127.0.0.1"
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--no-sync")

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*_run_as(), str(self.bindir / program), *args],
                              capture_output=True, text=True, timeout=60, check=check)

    # --- life cycle ---------------------------------------------------------------------

    def start(self, listen: str = "127.0.0.1") -> None:
        """Start and wait until it accepts connections (on ``listen`` and its socket)."""
        self.host = listen
        options = (f"-p {self.port} -k {self.root} -c listen_addresses={listen} "
                   "-c max_connections=300")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", options, "start")

    def trust(self, network: str) -> None:
        """Let ``network`` (CIDR) connect without a password (before ``start``)."""
        with open(self.data / "pg_hba.conf", "a", encoding="utf-8") as hba:
            hba.write(f"host all all {network} trust\n")

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m mode`` (fast: disconnect clients; immediate: like a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop",
                  check=False)

    def running(self) -> bool:
        """True while ``pg_ctl status`` finds the postmaster."""
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def postmaster_pid(self) -> int:
        """The postmaster's pid (first line of postmaster.pid)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def pids(self) -> list[int]:
        """The postmaster and every process it forked (backends, background workers)."""
        root = self.postmaster_pid()
        return [root, *child_pids(root)]

    def freeze(self) -> None:
        """SIGSTOP the postmaster and its children: a hung database that still holds its port."""
        for pid in self.pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT whatever ``freeze`` stopped."""
        for pid in self.pids():
            os.kill(pid, signal.SIGCONT)

    def destroy(self) -> None:
        """Stop the cluster (as in a crash: nothing to keep) and remove its directory."""
        if (self.data / "postmaster.pid").exists():
            try:
                self.thaw()
            except (OSError, ValueError):
                pass
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # --- databases ----------------------------------------------------------------------

    def admin_dsn(self, dbname: str = "postgres") -> str:
        """A libpq DSN for the superuser over TCP."""
        return (f"host={self.host} port={self.port} user=postgres dbname={dbname} "
                "connect_timeout=5")

    def create_database(self) -> str:
        """A fresh database; returns its name."""
        name = f"authserver_fault_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def url(self, dbname: str) -> str:
        """The SQLAlchemy URL of ``dbname`` on this cluster."""
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{dbname}"

    def connections(self, dbname: str, excluding_application: str = "") -> int:
        """Client connections to ``dbname`` right now (pg_stat_activity), leaving out those
        whose application_name is ``excluding_application`` (when given)."""
        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            return conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND "
                "(%s = '' OR application_name <> %s)",
                (dbname, excluding_application, excluding_application)).fetchone()[0]

    def query(self, dbname: str, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows of one statement run in ``dbname`` (for checking invariants after a crash)."""
        with psycopg.connect(self.admin_dsn(dbname), autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()
