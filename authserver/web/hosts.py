"""Which Host names the server answers to (Flask's ``TRUSTED_HOSTS``; threat model TE20).

Unset, TRUSTED_HOSTS is the issuer's host plus the loopback names and addresses, read at each
request (so a changed ISSUER counts at once). Flask then refuses any other Host with 400
before routing: nothing is built from an untrusted Host, not even a slash-merging redirect.
The probes (``/healthz``, ``/readyz``, ``/metrics``) are exempt: load balancers and scrapers
call them by address. Werkzeug's list cannot hold IPv6 literals, so those are matched here.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

from flask import Flask, Request
from werkzeug.exceptions import SecurityError

LOOPBACK = ("localhost", "127.0.0.1", "::1")
UNCHECKED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def trusted_hosts(config) -> list[str]:
    """TRUSTED_HOSTS, or its default: the issuer's host and the loopback names."""
    if config.get("TRUSTED_HOSTS") is not None:
        return list(config["TRUSTED_HOSTS"])
    return list(_default_hosts(config["ISSUER"]))


@lru_cache(maxsize=16)
def _default_hosts(issuer: str) -> tuple[str, ...]:
    """The issuer's host and the loopback names (parsed once per issuer, not per request)."""
    issuer_host = urlsplit(issuer).hostname
    return tuple(host for host in (issuer_host, *LOOPBACK) if host)


class HostCheckedRequest(Request):
    """Flask's request; its ``trusted_hosts`` skip the probes and match IPv6 literals."""

    _trusted: list[str] | None = None

    @property
    def trusted_hosts(self) -> list[str] | None:
        hosts = self._trusted
        if not hosts or self.path in UNCHECKED_PATHS:
            return None
        header = self.environ.get("HTTP_HOST", "")
        if header.startswith("[") and header[1:].partition("]")[0] in hosts:
            return None  # a listed IPv6 literal, which werkzeug's matching cannot express
        return hosts

    @trusted_hosts.setter
    def trusted_hosts(self, value: list[str] | None) -> None:
        self._trusted = value


class HostCheckedFlask(Flask):
    """Flask with TRUSTED_HOSTS defaulting to ``trusted_hosts(config)`` at every request."""

    request_class = HostCheckedRequest

    def create_url_adapter(self, request):
        if request is None:
            return super().create_url_adapter(request)
        request.trusted_hosts = trusted_hosts(self.config)
        try:
            return super().create_url_adapter(request)
        except SecurityError:
            # Werkzeug's description repeats the Host; an error never echoes request input.
            raise SecurityError("The Host header names a host this server does not serve.") \
                from None
