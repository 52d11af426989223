"""Rate limits (Flask-Limiter): per client at the token endpoint, per address for failed
client authentication, per caller for introspection and admin writes.

Counters live in RATELIMIT_STORAGE_URI: memory for one process, Redis to share them
across processes and machines. If the store cannot be reached the request is let through
and a warning logged: a limiter outage must not become an authorization outage.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, current_app, request
from flask_limiter import Limiter
from limits import parse

from .addresses import client_address

log = logging.getLogger(__name__)


def caller_address() -> str:
    """The caller's address (socket peer, or X-Forwarded-For from trusted proxies only)."""
    return client_address(request.remote_addr, request.headers.get("X-Forwarded-For"),
                          current_app.config["TRUSTED_PROXIES"]) or "unknown"


limiter = Limiter(key_func=caller_address, headers_enabled=False, swallow_errors=True)


class RateLimited(Exception):
    """A limit was exceeded; ``retry_after`` seconds until the window frees up."""

    def __init__(self, name: str, retry_after: int):
        super().__init__(name)
        self.name = name
        self.retry_after = retry_after


def _limit(setting: str):
    value = current_app.config.get(setting)
    return parse(value) if value else None


def hit(setting: str, *key: str) -> None:
    """Count one event against the limit named by config ``setting``; raise RateLimited."""
    item = _limit(setting)
    if item is None:
        return
    try:
        allowed = limiter.limiter.hit(item, setting, *key)
        if allowed:
            return
        reset_at = limiter.limiter.get_window_stats(item, setting, *key).reset_time
    except Exception as exc:  # noqa: BLE001 - any storage failure: fail open, loudly
        log.warning("rate-limit store unavailable (%s): letting the request through",
                    type(exc).__name__)
        return
    from .observability import RATE_LIMITED

    RATE_LIMITED.labels(limit=setting).inc()
    raise RateLimited(setting, max(1, int(reset_at - time.time()) + 1))


def check(setting: str, *key: str) -> None:
    """Raise RateLimited if the limit is already exhausted, without counting an event."""
    item = _limit(setting)
    if item is None:
        return
    try:
        if limiter.limiter.test(item, setting, *key):
            return
        reset_at = limiter.limiter.get_window_stats(item, setting, *key).reset_time
    except Exception as exc:  # noqa: BLE001 - see hit()
        log.warning("rate-limit store unavailable (%s)", type(exc).__name__)
        return
    raise RateLimited(setting, max(1, int(reset_at - time.time()) + 1))


def init_app(app: Flask) -> None:
    """Bind Flask-Limiter (it reads RATELIMIT_* settings from app.config)."""
    limiter.init_app(app)
