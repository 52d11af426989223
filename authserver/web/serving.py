"""Running a Flask app factory under gunicorn (``authserver serve``, ``resource-demo serve``)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable

from flask import Flask
from gunicorn.app.base import BaseApplication

from authserver.web.workers import BufferingThreadWorker

#: Threads per worker process: requests are short and mostly CPU (signing, hashing); a few
#: threads cover database and Redis round trips.
THREADS = 4


class GunicornApplication(BaseApplication):
    """Gunicorn calling ``factory`` in each worker (nothing shared before the fork)."""

    def __init__(self, options: dict, factory: Callable[[], Flask]):
        self.options = options
        self.factory = factory
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        return self.factory()


def bind_address(host: str, port: int) -> str:
    """host:port, with IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_bind(text: str) -> tuple[str, int]:
    """"host:port" or "[v6]:port" -> (host, port); ValueError naming what is wrong."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isascii() or not port.isdigit() \
            or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not host:port")
    return host, int(port)


def _child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def share_metrics_between_workers() -> None:
    """Give the workers a fresh Prometheus multiprocess directory (before any metric is
    created in this process: prometheus-client picks its mode at import)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="authserver-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        # Only the master registers this; a worker's exit must not remove the shared files.
        master = os.getpid()
        atexit.register(lambda: os.getpid() == master
                        and shutil.rmtree(metrics_dir, ignore_errors=True))


def run(factory: Callable[[], Flask], host: str, port: int, workers: int,
        access_log: bool = True, trusted_proxies: list[str] | None = None,
        extra_binds: list[str] | None = None) -> None:
    """Serve until SIGTERM; in-flight requests finish within the graceful timeout.

    Workers share Prometheus metrics through a fresh multiprocess directory. gunicorn
    believes X-Forwarded-Proto only from ``trusted_proxies`` (the app's TRUSTED_PROXIES;
    gunicorn's own default would trust 127.0.0.1). ``access_log`` is gunicorn's, in the
    same JSON lines as every other log line.
    """
    share_metrics_between_workers()
    # A request is read whole by the worker's event loop before a thread serves it: slow or
    # idle clients hold sockets, never threads (threat model AV03; see web.workers).
    # reuse_port: each worker listens on a socket of its own (SO_REUSEPORT) and the kernel
    # spreads new connections over them. On one shared socket, whichever worker called
    # accept() first got the connection: a client opening its connections together (a
    # proxy's keep-alive pool) could land them all on one worker, serving on one core while
    # the others idled (tests/test_worker_balance.py).
    options = {"bind": [bind_address(host, port), *(extra_binds or [])], "workers": workers,
               "reuse_port": True,
               "worker_class": BufferingThreadWorker, "threads": THREADS,
               "graceful_timeout": 30, "timeout": 30, "child_exit": _child_exit,
               "accesslog": "-" if access_log else None,
               "logger_class": "authserver.observability.logs.GunicornJsonLogger",
               "forwarded_allow_ips": ",".join(trusted_proxies or [])}
    GunicornApplication(options, factory).run()
