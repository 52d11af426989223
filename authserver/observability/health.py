"""Health and readiness probes, the metrics endpoint, and request-id access logs."""

from __future__ import annotations

import logging
import re
import secrets
import time

from flask import Blueprint, Flask, Response, abort, current_app, g, jsonify, request

from authserver.observability.logs import ACCESS_LOGGER
from authserver.observability.metrics import LATENCY, exposition, method_label
from authserver.observability.readiness import readiness

log = logging.getLogger(ACCESS_LOGGER)
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

bp = Blueprint("observability", __name__)


@bp.get("/healthz")
def healthz():
    """Alive: the process answers (no dependency is checked)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Ready: database, schema at head, signing key decryptable, Redis (when configured).

    503 names the failing checks' causes (never an address or a secret)."""
    ready, checks = readiness()
    if ready:
        return jsonify(status="ready", checks=checks)
    retry = str(current_app.config["RETRY_AFTER_SECONDS"])
    response = jsonify(status="unavailable", checks=checks)
    response.status_code = 503
    response.headers["Retry-After"] = retry
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/metrics")
def metrics():
    """Prometheus exposition of this server's metrics (all workers under gunicorn)."""
    body, content_type = exposition()
    return Response(body, mimetype=content_type)


def _start_request() -> None:
    context = g._get_current_object()  # one context lookup per hook, not one per use
    context.request_started = time.perf_counter()
    incoming = request.headers.get("X-Request-ID", "")
    context.request_id = incoming if REQUEST_ID_RE.match(incoming) else secrets.token_hex(8)


#: What a separate metrics listener (METRICS_BIND) serves; everything else is 404 there.
METRICS_LISTENER_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})


def _on_metrics_listener(bind: str) -> bool:
    """True when this request arrived on the METRICS_BIND listener (gunicorn names the
    listener's own address in SERVER_NAME and SERVER_PORT)."""
    from authserver.web.serving import parse_bind

    host, port = parse_bind(bind)
    return (request.environ.get("SERVER_PORT") == str(port)
            and (host in ("0.0.0.0", "::") or request.environ.get("SERVER_NAME") == host))


def _separate_metrics_listener() -> None:
    """With METRICS_BIND, /metrics only on that listener, and only the probes beside it."""
    bind = current_app.config["METRICS_BIND"]
    if not bind:
        return
    on_metrics_listener = _on_metrics_listener(bind)
    if request.path == "/metrics" and not on_metrics_listener:
        abort(404)
    if on_metrics_listener and request.path not in METRICS_LISTENER_PATHS:
        abort(404)


def _finish_request(response: Response) -> Response:
    context, http = g._get_current_object(), request._get_current_object()
    elapsed = time.perf_counter() - context.get("request_started", time.perf_counter())
    endpoint = http.url_rule.rule if http.url_rule else "unmatched"
    LATENCY.labels(endpoint=endpoint, method=method_label(http.method)).observe(elapsed)
    response.headers["X-Request-ID"] = context.get("request_id", "")
    if current_app.config.get("ACCESS_LOG"):
        # Path only: query strings and bodies may carry credentials and are never logged.
        log.info("request", extra={
            "request_id": context.get("request_id"), "method": http.method, "route": endpoint,
            "path": http.path, "status": response.status_code,
            "latency_ms": round(elapsed * 1000, 2), "client": context.get("client_id"),
            "remote": http.remote_addr})
    return response


def init_app(app: Flask) -> None:
    """Register health, readiness and metrics endpoints and the request hooks."""
    if app.config["ACCESS_LOG"]:
        # A logger left at WARNING would drop every access line (ACCESS_LOG switches it).
        logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)
    app.register_blueprint(bp)
    app.before_request(_start_request)
    app.before_request(_separate_metrics_listener)
    app.after_request(_finish_request)
