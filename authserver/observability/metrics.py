"""Prometheus metric families of the server (one place; request hooks and endpoints record them).

Every label has a small, fixed set of values (no client ids, paths or methods as sent), so
no caller can grow the exposition; the families are listed in docs/operations.md.

Under ``authserver serve`` the workers share metrics through prometheus-client's
multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by ``authserver.web.serving.run``).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

TOKENS_ISSUED = Counter("authserver_tokens_issued_total",
                        "Token requests by outcome (issued or refused)", ["outcome"])
INTROSPECTIONS = Counter("authserver_introspections_total", "Introspections by credential kind "
                         "and answer", ["kind", "active"])
AUTH_FAILURES = Counter("authserver_client_auth_failures_total",
                        "Failed client authentications", ["endpoint"])
RATE_LIMITED = Counter("authserver_rate_limited_total", "Requests refused by a rate limit",
                       ["limit"])
LATENCY = Histogram("authserver_request_duration_seconds",
                    "Request latency by route (the URL rule, or 'unmatched') and method",
                    ["endpoint", "method"],
                    buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))


#: Methods recorded by name; anything else a caller invents is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """``method`` if it is a standard one, else "other" (bounded label values)."""
    return method if method in METHODS else "other"


def exposition() -> tuple[bytes, str]:
    """The Prometheus text exposition of every worker's metrics, and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
