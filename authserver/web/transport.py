"""Headers every answer carries, whatever blueprint made it (threat model TE22, AD09).

- ``Strict-Transport-Security`` (RFC 6797) on answers to HTTPS requests: browsers and HTTP
  libraries that honour it stop trying plain HTTP to this host for ``HSTS_SECONDS``. It is
  never sent on a plain-HTTP answer (§7.2: a network attacker could have injected it). HTTPS
  counts as the request's own scheme or, from a trusted proxy, its ``X-Forwarded-Proto``
  (``authserver.web.proxies``).
- ``X-Content-Type-Options: nosniff``: a JSON answer is never sniffed into something a browser
  would run.

Plain-HTTP requests to the protocol endpoints are refused by Authlib (``insecure_transport``)
unless the host is a loopback address; this module only adds headers.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request


def init_app(app: Flask) -> None:
    app.after_request(_transport_headers)


def _transport_headers(response: Response) -> Response:
    headers = response.headers
    headers["X-Content-Type-Options"] = "nosniff"
    seconds = current_app.config["HSTS_SECONDS"]
    if seconds and request.scheme == "https":
        headers["Strict-Transport-Security"] = f"max-age={int(seconds)}"
    return response
