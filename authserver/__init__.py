"""authserver: an OAuth 2.0 authorization server for machine-to-machine access."""

from __future__ import annotations

from flask import Flask

from authserver.config import instance_path_from_environment, load_config
from authserver.web.hosts import HostCheckedFlask


def create_app(test_config: dict | None = None, *, instance_path: str | None = None,
               default_issuer: str = "http://127.0.0.1:5000") -> Flask:
    """Create and wire the application; creates no folder, database, schema or key (see
    ``authserver init``). Raises ConfigurationError naming a setting that does not parse.

    ``instance_path`` overrides AUTHSERVER_INSTANCE_PATH; ``default_issuer`` is used when no
    configuration layer sets ``ISSUER``.
    """
    # Flask refusing unknown Host names, with our TRUSTED_HOSTS default (TE20).
    app = HostCheckedFlask(__name__,
                           instance_path=instance_path or instance_path_from_environment(),
                           instance_relative_config=True, template_folder="admin/ui/templates",
                           static_folder="admin/ui/static")
    load_config(app, test_config, default_issuer)

    from authserver import scopes
    from authserver.oauth2 import metadata as well_known
    from authserver.oauth2 import server as oauth2
    from authserver.oauth2 import views as oauth
    from authserver.observability import health as observability
    from authserver.storage import cache, db
    from authserver.web import errors, limits, transport

    db.init_app(app)
    cache.init_app(app)
    scopes.init_app(app)
    limits.init_app(app)
    oauth2.init_app(app)
    errors.init_app(app)
    observability.init_app(app)
    transport.init_app(app)
    from authserver.web.proxies import ForwardedHeaders

    app.wsgi_app = ForwardedHeaders(app.wsgi_app, app.config["TRUSTED_PROXIES"])
    app.register_blueprint(well_known.bp)
    app.register_blueprint(oauth.bp)
    from authserver.admin import ui as admin_ui

    admin_ui.init_app(app)
    from authserver.admin import api as admin_api

    app.register_blueprint(admin_api.bp)
    from authserver.admin import accounts as admin_accounts

    app.register_blueprint(admin_accounts.bp)
    from authserver.admin import reach as admin_reach

    app.register_blueprint(admin_reach.bp)
    return app
