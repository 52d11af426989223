"""JSON log lines (python-json-logger) for the server, its access log and gunicorn's own log.

Every line is one JSON object with ``time``, ``level``, ``logger`` and ``message``; lines
written while a request is handled carry its ``request_id`` (the X-Request-ID the caller
sent, if well-formed, else a new one; returned in the response). The access log is one line
per request: request id, method, route, path, status, latency, client and caller address;
never a query string, a body or a header value (they may carry credentials, threat model
AK10).
"""

from __future__ import annotations

import logging
import sys

from flask import g, has_request_context
from gunicorn import glogging
from pythonjsonlogger.json import JsonFormatter

ACCESS_LOGGER = "authserver.access"
RENAMED = {"levelname": "level", "name": "logger"}


class RequestContext(logging.Filter):
    """Adds the current request's id to every record logged while it is handled."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id") and has_request_context():
            record.request_id = g.get("request_id")
        return True


def json_formatter() -> JsonFormatter:
    """The one format of every log line."""
    return JsonFormatter("{levelname}{name}{message}", style="{", rename_fields=RENAMED,
                         timestamp="time")


def json_handler(stream=None) -> logging.Handler:
    """A stream handler (stderr by default) writing JSON lines with the request id."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter())
    handler.addFilter(RequestContext())
    handler.authserver_json = True
    return handler


def configure_logging(level: str = "INFO", access_log: bool = False) -> None:
    """Send every logger's records to stderr as JSON lines (replacing our earlier handler)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "authserver_json", False):
            root.removeHandler(handler)
    root.addHandler(json_handler())
    root.setLevel(level.upper())
    # Alembic reports its context at INFO whenever /readyz reads the schema's revision.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # The access log is switched by ACCESS_LOG alone, whatever LOG_LEVEL says.
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO if access_log else logging.WARNING)


class GunicornJsonLogger(glogging.Logger):
    """gunicorn's logger writing the same JSON lines; its access log (when enabled) has the
    same fields as ours, without the route and client it cannot know."""

    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(json_formatter())

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        request_id = next((value for name, value in resp.headers
                           if name.lower() == "x-request-id"), None)
        self.access_log.info("request", extra={
            "request_id": request_id, "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"), "status": resp.status_code,
            "latency_ms": round(request_time.total_seconds() * 1000, 2),
            "remote": environ.get("REMOTE_ADDR")})
