"""Forwarded headers, believed only from TRUSTED_PROXIES: the one place that reads them.

RFC 7239 ``Forwarded`` and the de-facto ``X-Forwarded-For``, ``-Proto`` and ``-Host`` are
taken into account only when the socket peer is a configured proxy (addresses or CIDR
ranges; threat model AK06, RFC 9700 §4.13). Werkzeug's ProxyFix trusts a hop count whoever
the peer is, so it is not used. The chain is walked from the right while each hop is a
trusted proxy: the first untrusted hop is the caller, and the scheme and host are the ones
the outermost trusted proxy saw. Every forwarded header is removed from the request after
this, so nothing further on can read an unvetted one. The issuer never comes from here: it
is configuration (TE20).
"""

from __future__ import annotations

from collections.abc import Iterable

from authserver.settings import ConfigurationError
from resource_demo.guard.addresses import parse_address, parse_network

FORWARDED_KEYS = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO",
                  "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT", "HTTP_X_REAL_IP")
MAX_HOPS = 20
UNKNOWN = "unknown"


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """RFC 7239 §4 elements, left to right, as {parameter: value} (quotes removed)."""
    elements = []
    for element in _split_outside_quotes(value, ",")[-MAX_HOPS:]:
        pairs = {}
        for pair in _split_outside_quotes(element, ";"):
            name, sep, raw = pair.strip().partition("=")
            if not sep:
                continue
            raw = raw.strip()
            if len(raw) >= 2 and raw[0] == raw[-1] == '"':
                raw = raw[1:-1].replace('\\"', '"')
            pairs[name.strip().lower()] = raw
        elements.append(pairs)
    return elements


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts, current, quoted = [], [], False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def node_address(node: str) -> str | None:
    """The address of an RFC 7239 §6 node (``1.2.3.4``, ``1.2.3.4:80``, ``[v6]:80``), or None
    for ``unknown``, obfuscated identifiers and anything else that is not an address."""
    node = node.strip()
    if node.startswith("["):
        node = node[1:].partition("]")[0]
    elif node.count(":") == 1:
        node = node.partition(":")[0]
    try:
        return str(parse_address(node))
    except ValueError:
        return None


class ForwardedHeaders:
    """WSGI middleware applying forwarded headers from trusted proxies, dropping the rest."""

    def __init__(self, wsgi_app, trusted_proxies: Iterable[str]):
        self.wsgi_app = wsgi_app
        self.trusted = []
        for entry in trusted_proxies:
            try:
                self.trusted.append(parse_network(entry))
            except ValueError:
                raise ConfigurationError(f"TRUSTED_PROXIES entry {entry!r} is not an address "
                                         "or CIDR range (host bits must be zero)") from None

    def is_trusted(self, address: str | None) -> bool:
        """True when ``address`` is inside TRUSTED_PROXIES."""
        try:
            parsed = parse_address(address or "")
        except ValueError:
            return False
        return any(parsed in network for network in self.trusted)

    def __call__(self, environ, start_response):
        headers = {key: environ.pop(key) for key in FORWARDED_KEYS if key in environ}
        if self.trusted and self.is_trusted(environ.get("REMOTE_ADDR")):
            self._apply(environ, headers)
        return self.wsgi_app(environ, start_response)

    def _apply(self, environ, headers: dict[str, str]) -> None:
        """Walk the hops from the right while they are trusted (the peer is)."""
        # The nearest proxy's -Proto and -Host (right-most) describe the request it got.
        proto = _rightmost(headers.get("HTTP_X_FORWARDED_PROTO"))
        host = _rightmost(headers.get("HTTP_X_FORWARDED_HOST"))
        if "HTTP_FORWARDED" in headers:
            hops = [(node_address(element.get("for", "")), element.get("proto"),
                     element.get("host"))
                    for element in parse_forwarded(headers["HTTP_FORWARDED"])]
        elif "HTTP_X_FORWARDED_FOR" in headers:
            hops = [(node_address(hop), proto, host)
                    for hop in headers["HTTP_X_FORWARDED_FOR"].split(",")[-MAX_HOPS:]]
        else:
            hops = []  # scheme and host only: the peer itself is the caller
        caller = environ.get("REMOTE_ADDR")
        while hops and self.is_trusted(caller):
            address, proto, host = hops.pop()
            caller = address or UNKNOWN
        environ["REMOTE_ADDR"] = caller
        if proto in ("http", "https"):
            environ["wsgi.url_scheme"] = proto
        if host and _valid_host(host):
            environ["HTTP_HOST"] = host


def _rightmost(value: str | None) -> str | None:
    if not value:
        return None
    return value.split(",")[-1].strip() or None


def _valid_host(host: str) -> bool:
    """A plausible Host value (no spaces, slashes or control characters), at most 255 chars."""
    return 0 < len(host) <= 255 and all(33 <= ord(c) < 127 and c not in "/\\@" for c in host)
