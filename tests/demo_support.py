"""Helpers for the demo API tests, including a STAND-IN for the real guard.

``HeaderScopesGuard`` is not the guard: it trusts the Authorization header to *name* the
caller's scopes (``App sms:manage,people:read`` or ``Bearer sms:manage``) and applies the
any-of rule without umbrellas. Replace it with ``resource_demo.guard`` once that lands;
no test expectation about bodies or status codes depends on it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from flask import Flask, request
from werkzeug.serving import make_server

from resource_demo.errors import Forbidden, Unauthorized

SCHEMES = ("App", "Bearer")


class HeaderScopesGuard:
    """Stand-in guard: scopes come straight from ``Authorization: App|Bearer s1,s2``."""

    def require_scope(self, scope: str) -> Callable[[Callable], Callable]:
        """Accept exactly ``scope`` (the real guard also accepts its umbrellas)."""
        return self.require_any_scope(scope)

    def require_any_scope(self, *scopes: str) -> Callable[[Callable], Callable]:
        """Let a caller in if it holds at least one of ``scopes``."""
        accepted = frozenset(scopes)

        def decorator(view: Callable) -> Callable:
            @functools.wraps(view)
            def guarded(*args, **kwargs):
                if not held_scopes() & accepted:
                    challenge = f'Bearer error="insufficient_scope", scope="{" ".join(scopes)}"'
                    raise Forbidden(headers={"WWW-Authenticate": challenge})
                return view(*args, **kwargs)

            return guarded

        return decorator


def held_scopes() -> frozenset[str]:
    """The scopes named by the request's Authorization header; 401 without one."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme not in SCHEMES or not credential.strip():
        raise Unauthorized()
    return frozenset(s.strip() for s in credential.split(",") if s.strip())


class FakeClock:
    """A settable UTC clock for DemoStore."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        """Move time forward, e.g. ``advance(minutes=5)``."""
        self.now += timedelta(**delta)


@contextmanager
def serve(app: Flask) -> Iterator[str]:
    """Serve ``app`` over real HTTP on 127.0.0.1 (a free port) in a thread; yield its URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()
