"""Health, readiness, Prometheus metrics and request-id structured logs.

Under ``authserver serve`` the workers share metrics through prometheus-client's
multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by ``serving.run``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from .db import db
from .errors import UNAVAILABLE_ERRORS, unavailable_response

log = logging.getLogger("authserver.access")
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

TOKENS_ISSUED = Counter("authserver_tokens_issued_total", "Token requests by client and outcome",
                        ["client_id", "outcome"])
INTROSPECTIONS = Counter("authserver_introspections_total", "Introspections by credential kind "
                         "and answer", ["kind", "active"])
AUTH_FAILURES = Counter("authserver_client_auth_failures_total",
                        "Failed client authentications", ["endpoint"])
RATE_LIMITED = Counter("authserver_rate_limited_total", "Requests refused by a rate limit",
                       ["limit"])
LATENCY = Histogram("authserver_request_duration_seconds", "Request latency by endpoint",
                    ["endpoint", "method"],
                    buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))

bp = Blueprint("observability", __name__)


@bp.get("/healthz")
def healthz():
    """Alive: the process answers (no dependency is checked)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Ready: the database answers a trivial query."""
    try:
        db.session.execute(sa.text("SELECT 1"))
    except UNAVAILABLE_ERRORS:
        db.session.rollback()
        return unavailable_response()
    return jsonify(status="ready")


@bp.get("/metrics")
def metrics():
    """Prometheus exposition of this server's metrics (all workers under gunicorn)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        from prometheus_client import REGISTRY

        body = generate_latest(REGISTRY)
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


def _start_request() -> None:
    g.request_started = time.perf_counter()
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if REQUEST_ID_RE.match(incoming) else secrets.token_hex(8)


def _finish_request(response: Response) -> Response:
    elapsed = time.perf_counter() - g.get("request_started", time.perf_counter())
    endpoint = request.url_rule.rule if request.url_rule else "unmatched"
    LATENCY.labels(endpoint=endpoint, method=request.method).observe(elapsed)
    response.headers["X-Request-ID"] = g.get("request_id", "")
    if current_app.config.get("ACCESS_LOG"):
        # Path only: query strings and bodies may carry credentials and are never logged.
        log.info(json.dumps({"request_id": g.get("request_id"), "method": request.method,
                             "path": request.path, "status": response.status_code,
                             "ms": round(elapsed * 1000, 2),
                             "client_id": g.get("client_id")}))
    return response


def init_app(app: Flask) -> None:
    """Register health, readiness and metrics endpoints and the request hooks."""
    app.register_blueprint(bp)
    app.before_request(_start_request)
    app.after_request(_finish_request)
