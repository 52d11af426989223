"""The demo API with a pass-through guard: the benchmark's "unprotected send" baseline.

Same blueprint, store, error handlers and gunicorn setup as ``resource-demo serve``; the
only difference is that no credential is read or checked, so protected/unprotected
isolates what the guard costs. Benchmark use only: it serves every endpoint to anyone.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask, jsonify

from authserver.serving import run
from resource_demo.api import create_blueprint
from resource_demo.errors import register_error_handlers


class PassThroughGuard:
    """Satisfies the blueprint's ``Guard`` protocol without checking anything."""

    def require_any_scope(self, *scopes: str,
                          allow_api_keys: bool = True) -> Callable[[Callable], Callable]:
        return lambda view: view


def create_app() -> Flask:
    """``resource_demo.app.create_app`` minus the guard."""
    app = Flask("resource_demo")
    app.config.update(JSON_SORT_KEYS=False)
    register_error_handlers(app)
    app.register_blueprint(create_blueprint(PassThroughGuard()))

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    run(partial(create_app), args.host, args.port, args.workers)


if __name__ == "__main__":
    main()
