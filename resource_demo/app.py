"""The demo API application: the guard plus the platform-shaped endpoints of ``api``."""

from __future__ import annotations

from flask import Flask, jsonify

from .api import create_blueprint
from .errors import register_error_handlers
from .guard import ResourceGuard
from .storage import DemoStore


def create_app(config: dict | None = None, store: DemoStore | None = None) -> Flask:
    """Create the demo API; ``config`` must hold at least ``GUARD_ISSUER``."""
    app = Flask(__name__)
    app.config.update(JSON_SORT_KEYS=False)
    app.config.from_prefixed_env("RESOURCE_DEMO")
    if config:
        app.config.update(config)
    if not app.config.get("GUARD_ISSUER"):
        raise RuntimeError("GUARD_ISSUER (the authorization server's issuer) is required")
    guard = ResourceGuard(app)
    register_error_handlers(app)
    app.register_blueprint(create_blueprint(guard, store))

    @app.get("/healthz")
    def healthz():
        """Unprotected liveness answer (also the benchmark's ceiling)."""
        return jsonify(status="ok")

    return app
