"""IP addresses: allowlist entries, matching, and the caller's address behind trusted proxies.

Policy (threat model AK06, AK07):
- entries are IPv4/IPv6 addresses or CIDR networks; leading-zero octets, zone ids (``%eth0``)
  and networks with host bits set are refused; IPv4-mapped IPv6 (``::ffff:a.b.c.d``) is
  stored and matched as the IPv4 address;
- the caller is the socket peer; ``X-Forwarded-For`` counts only when the peer is a
  configured trusted proxy, and then only the hops that trusted proxies appended.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_ALLOWED_IPS = 100


def parse_address(text: str) -> Address:
    """Parse one address strictly; raise ValueError for anything ambiguous."""
    if not isinstance(text, str) or "%" in text or len(text) > 64:
        raise ValueError("not an IP address")
    address = ipaddress.ip_address(text.strip())
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_network(text: str) -> Network:
    """Parse an address or CIDR network strictly (host bits must be zero)."""
    if not isinstance(text, str) or "%" in text or len(text) > 64:
        raise ValueError("not an IP address or CIDR range")
    text = text.strip()
    if "/" not in text:
        return ipaddress.ip_network(parse_address(text))
    host, _, prefix = text.partition("/")
    # ASCII digits only: str.isdigit() also admits Arabic-Indic digits, which int() reads.
    if not (prefix.isascii() and prefix.isdigit()) or (len(prefix) > 1 and prefix.startswith("0")):
        raise ValueError("bad prefix length")
    address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        if int(prefix) < 96:
            raise ValueError("an IPv4-mapped range needs a prefix of at least 96")
        return ipaddress.ip_network(f"{address.ipv4_mapped}/{int(prefix) - 96}", strict=True)
    return ipaddress.ip_network(text, strict=True)


def normalize_allowlist(entries: object) -> list[str]:
    """Validate allowlist entries; return their canonical strings (ValueError names the bad one)."""
    if entries is None:
        return []
    if not isinstance(entries, (list, tuple)) or len(entries) > MAX_ALLOWED_IPS:
        raise ValueError(f"a list of at most {MAX_ALLOWED_IPS} addresses or CIDR ranges")
    canonical = []
    for entry in entries:
        try:
            network = parse_network(entry)
        except ValueError:
            raise ValueError(f"invalid IP address or CIDR range: {str(entry)[:64]!r}") from None
        single = network.num_addresses == 1
        canonical.append(str(network.network_address) if single else str(network))
    return list(dict.fromkeys(canonical))


def covers_an_address_family(allowlist: Sequence[str]) -> bool:
    """True when the union of the (canonical) entries is all of IPv4 or all of IPv6."""
    networks = [parse_network(entry) for entry in allowlist]
    for version, everything in ((4, ipaddress.ip_network("0.0.0.0/0")),
                                (6, ipaddress.ip_network("::/0"))):
        family = [network for network in networks if network.version == version]
        if everything in ipaddress.collapse_addresses(family):
            return True
    return False


def address_allowed(allowlist: Sequence[str], address: str | None) -> bool:
    """True when ``address`` is inside one allowlist entry; an empty allowlist allows any."""
    if not allowlist:
        return True
    try:
        caller = parse_address(address or "")
    except ValueError:
        return False
    for entry in allowlist:
        try:
            if caller in parse_network(entry):
                return True
        except ValueError:
            continue
    return False


def client_address(peer: str | None, forwarded_for: str | None,
                   trusted_proxies: Iterable[str]) -> str | None:
    """The caller's address: the peer, or the right-most untrusted X-Forwarded-For hop.

    Walks X-Forwarded-For from the right while each hop (starting with the peer) is a
    trusted proxy; anything a client wrote further left is never believed.
    """
    trusted = [parse_network(entry) for entry in trusted_proxies]
    if not trusted or not forwarded_for:
        return peer

    def is_trusted(text: str | None) -> bool:
        try:
            address = parse_address(text or "")
        except ValueError:
            return False
        return any(address in network for network in trusted)

    current = peer
    hops = [hop.strip() for hop in forwarded_for.split(",")[-20:]]
    while hops and is_trusted(current):
        current = hops.pop()
    return current


def forwarded_origin(scheme: str, host: str, peer: str | None, forwarded_proto: str | None,
                     forwarded_host: str | None,
                     trusted_proxies: Iterable[str]) -> tuple[str, str]:
    """The scheme and host a client addressed: the request's own, or, when the peer is a
    trusted proxy, the ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` that proxy set (the
    last value of each: the one the nearest proxy appended)."""
    trusted = [parse_network(entry) for entry in trusted_proxies]
    if not trusted:
        return scheme, host
    try:
        address = parse_address(peer or "")
    except ValueError:
        return scheme, host
    if not any(address in network for network in trusted):
        return scheme, host
    if forwarded_proto:
        proto = forwarded_proto.split(",")[-1].strip().lower()
        if proto in ("http", "https"):
            scheme = proto
    if forwarded_host:
        host = forwarded_host.split(",")[-1].strip() or host
    return scheme, host


class TrustedProxyScheme:
    """WSGI middleware: believe ``X-Forwarded-Proto`` only from a trusted proxy peer.

    Behind a TLS-terminating proxy the request arrives as http; Authlib refuses OAuth over
    plain http on non-loopback addresses, so the scheme must come from the proxy, and only
    from a proxy the operator listed in TRUSTED_PROXIES (Werkzeug's ProxyFix trusts by hop
    count, whoever the peer is).
    """

    def __init__(self, wsgi_app, trusted_proxies: Iterable[str]):
        self.wsgi_app = wsgi_app
        self.trusted = [parse_network(entry) for entry in trusted_proxies]

    def __call__(self, environ, start_response):
        proto = environ.pop("HTTP_X_FORWARDED_PROTO", None)
        if proto in ("http", "https") and self._peer_trusted(environ.get("REMOTE_ADDR")):
            environ["wsgi.url_scheme"] = proto
        return self.wsgi_app(environ, start_response)

    def _peer_trusted(self, peer: str | None) -> bool:
        try:
            address = parse_address(peer or "")
        except ValueError:
            return False
        return any(address in network for network in self.trusted)
