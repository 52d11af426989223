"""authserver: an OAuth 2.0 authorization server for machine-to-machine access."""

from __future__ import annotations

import os

from flask import Flask

from .config import instance_path_from_environment, load_config


def create_app(test_config: dict | None = None, *, instance_path: str | None = None,
               default_issuer: str = "http://127.0.0.1:5000") -> Flask:
    """Create and wire the application; creates no schema and no keys (see ``authserver init``).

    ``instance_path`` overrides AUTHSERVER_INSTANCE_PATH; ``default_issuer`` is used when no
    configuration layer sets ``ISSUER``.
    """
    app = Flask(__name__, instance_path=instance_path or instance_path_from_environment(),
                instance_relative_config=True)
    load_config(app, test_config, default_issuer)
    os.makedirs(app.instance_path, exist_ok=True)

    from . import errors, limits, oauth2, observability, scopes
    from . import db
    from .views import oauth, well_known

    db.init_app(app)
    scopes.init_app(app)
    limits.init_app(app)
    oauth2.init_app(app)
    errors.init_app(app)
    observability.init_app(app)
    if app.config["TRUSTED_PROXIES"]:
        from .addresses import TrustedProxyScheme

        app.wsgi_app = TrustedProxyScheme(app.wsgi_app, app.config["TRUSTED_PROXIES"])
    app.register_blueprint(well_known.bp)
    app.register_blueprint(oauth.bp)
    from .views import admin_ui

    admin_ui.init_app(app)
    from .views import admin_api

    app.register_blueprint(admin_api.bp)
    return app
