"""The demo API application: the guard plus the platform-shaped endpoints of ``api``."""

from __future__ import annotations

from flask import Flask, jsonify

from resource_demo.demo.api import create_blueprint
from resource_demo.demo.storage import AccountStores
from resource_demo.guard.flask import ResourceGuard, register_error_handlers


def create_app(config: dict | None = None, store: AccountStores | None = None) -> Flask:
    """Create the demo API; ``config`` must hold at least ``GUARD_ISSUER``. ``store`` holds the
    accounts' data (default: a fresh, empty one)."""
    app = Flask(__name__)
    app.config.update(JSON_SORT_KEYS=False)
    app.config.from_prefixed_env("RESOURCE_DEMO")
    if config:
        app.config.update(config)
    guard = ResourceGuard(app)  # checks the GUARD_* settings (GuardConfigurationError)
    register_error_handlers(app)
    app.register_blueprint(create_blueprint(guard, store))

    @app.get("/healthz")
    def healthz():
        """Unprotected liveness answer (also the benchmark's ceiling)."""
        return jsonify(status="ok")

    return app
