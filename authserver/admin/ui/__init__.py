"""The operator web UI under ``/ui/``: one blueprint, its pages, and the app wiring."""

from __future__ import annotations

from flask import Flask, redirect, url_for

from authserver.admin.ui import (  # noqa: F401 - attach their views
    accounts,
    api_keys,
    audit,
    clients,
    operators,
    reach,
    security,
    sign_in,
)
from authserver.admin.ui.blueprint import UISessionInterface, bp


def root():
    """``/`` leads to the web UI."""
    return redirect(url_for("admin_ui.index"))


def init_app(app: Flask) -> None:
    """Register the UI blueprint, its cookie session and ``/``."""
    app.session_interface = UISessionInterface()
    app.register_blueprint(bp)
    app.add_url_rule("/", endpoint="root", view_func=root)
