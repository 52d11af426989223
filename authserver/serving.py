"""Running a Flask app factory under gunicorn (``authserver serve``, ``resource-demo serve``)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable

from flask import Flask
from gunicorn.app.base import BaseApplication


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


def _child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def run(factory: Callable[[], Flask], host: str, port: int, workers: int,
        access_log: bool = True) -> None:
    """Serve until SIGTERM; in-flight requests finish within the graceful timeout.

    Workers share Prometheus metrics through a fresh multiprocess directory.
    """
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="authserver-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        # Only the master registers this; a worker's exit must not remove the shared files.
        master = os.getpid()
        atexit.register(lambda: os.getpid() == master
                        and shutil.rmtree(metrics_dir, ignore_errors=True))
    options = {"bind": bind_address(host, port), "workers": workers, "worker_class": "sync",
               "graceful_timeout": 30, "timeout": 30, "child_exit": _child_exit,
               "accesslog": "-" if access_log else None,
               # Method and path only: a query string may carry credentials.
               "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'}
    GunicornApplication(options, factory).run()
