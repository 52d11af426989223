"""The route manifest: every protected route with its method, path and any-of scopes, as data.

Operator tools build on it (what can a credential reach). Version 1::

    {"version": 1, "audience": "https://auth.example.com/api",
     "audiences": ["https://auth.example.com/api"],
     "routes": [{"method": "POST", "path": "/sms/3/messages",
                 "scopes": ["message:send", "sms:manage", "sms:message:send"], "apiKeys": true}]}

Paths use OpenAPI's ``{param}`` syntax whatever the framework (Flask ``<int:id>``, Starlette
``{id:int}``); routes are sorted by path then method; scopes are sorted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

MANIFEST_VERSION = 1
_FLASK_PARAM = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")
_STARLETTE_PARAM = re.compile(r"\{([^{}:]+):[^{}]+\}")
IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})


def openapi_path(path: str) -> str:
    """A Flask or Starlette route path in OpenAPI's ``{param}`` syntax."""
    return _STARLETTE_PARAM.sub(r"{\1}", _FLASK_PARAM.sub(r"{\1}", path))


def route_entries(methods: Iterable[str], path: str, scopes: Iterable[str],
                  api_keys: bool) -> list[dict]:
    """One manifest entry per HTTP method of a protected route."""
    return [{"method": method, "path": openapi_path(path), "scopes": sorted(scopes),
             "apiKeys": bool(api_keys)}
            for method in sorted(set(methods) - IGNORED_METHODS)]


def manifest(audiences: Sequence[str], routes: Iterable[dict]) -> dict:
    """The versioned manifest document."""
    ordered = sorted(routes, key=lambda route: (route["path"], route["method"]))
    return {"version": MANIFEST_VERSION, "audience": audiences[0] if audiences else None,
            "audiences": list(audiences), "routes": ordered}
