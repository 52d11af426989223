"""``authserver serve``: the app under gunicorn."""

from __future__ import annotations

from gunicorn.app.base import BaseApplication


class GunicornApplication(BaseApplication):
    """Gunicorn with the app factory called in each worker (no shared state before fork)."""

    def __init__(self, options: dict, default_issuer: str):
        self.options = options
        self.default_issuer = default_issuer
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from . import create_app

        return create_app(default_issuer=self.default_issuer)


def run(host: str, port: int, workers: int) -> None:
    """Serve until SIGTERM; in-flight requests finish within the graceful timeout."""
    display_host = f"[{host}]" if ":" in host else host
    options = {"bind": f"{display_host}:{port}", "workers": workers, "worker_class": "sync",
               "graceful_timeout": 30, "timeout": 30, "accesslog": "-",
               "access_log_format": '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'}
    GunicornApplication(options, default_issuer=f"http://{display_host}:{port}").run()
