"""The guard's settings, read once from a mapping of ``GUARD_*`` names and checked before start.

Every adapter reads the same names (Flask: ``app.config``; ASGI: keyword arguments or a mapping).
A setting that is missing, misspelt or unsafe stops the application at start with a message
naming it (``GuardConfigurationError``), never a traceback at the first request.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from resource_demo.guard.addresses import parse_network
from resource_demo.guard.dpop import DEFAULT_ALGORITHMS, SUPPORTED_ALGORITHMS, ProofChecker

log = logging.getLogger("resource_demo.guard")

#: The server answers from its own credential cache for at most 1 s after a change: 4 s here
#: keeps a disabled key refused within 5 s end to end (threat model AK05).
MAX_API_KEY_CACHE_SECONDS = 4.0
LOOPBACK_NAMES = ("localhost", "localhost.")

#: name -> (default, what it is); the configuration reference of docs/guard.md.
SETTINGS: dict[str, tuple[Any, str]] = {
    "GUARD_ISSUER": (None, "the authorization server's issuer URL (required; https outside loopback)"),
    "GUARD_AUDIENCES": (None, "audiences this API accepts (default: [issuer + '/api'])"),
    "GUARD_CLIENT_ID": (None, "the guard's own client, holding tokens:introspect"),
    "GUARD_CLIENT_SECRET": (None, "its secret"),
    "GUARD_REVOCATION_CHECK": (True, "follow the revocation feed (False: revoked JWTs stay accepted)"),
    "GUARD_REVOCATION_POLL_SECONDS": (2.0, "seconds between feed polls"),
    "GUARD_REVOCATION_MAX_OUTAGE": (60.0, "seconds without a good poll before JWTs get 503"),
    "GUARD_REVOCATION_FAIL_OPEN": (False, "keep accepting JWTs past the outage window (not advised)"),
    "GUARD_INTROSPECT_JWTS": (False, "ask the server about every JWT (revocation at once)"),
    "GUARD_API_KEY_CACHE_SECONDS": (4.0, "how long an API-key introspection answer is reused (<= 4)"),
    "GUARD_API_KEY_FINGERPRINTS": (True, "follow the server's set of usable API keys and refuse "
                                         "others locally (threat model AV01)"),
    "GUARD_TRUSTED_PROXIES": ((), "proxies (addresses or CIDR ranges) whose X-Forwarded-For counts"),
    "GUARD_JWKS_REFETCH_COOLDOWN": (10.0, "seconds between JWKS fetches for an unknown kid"),
    "GUARD_HTTP_TIMEOUT": (3.0, "seconds for each call to the authorization server"),
    "GUARD_LEEWAY": (30.0, "clock leeway in seconds"),
    "GUARD_REALM": ("api", "the realm of WWW-Authenticate challenges"),
    "GUARD_RETRY_AFTER": (5, "Retry-After seconds of a 503"),
    "GUARD_CLOCK": (None, "epoch-seconds clock (tests)"),
    "GUARD_DPOP": (True, "accept DPoP-bound tokens with the DPoP scheme (RFC 9449); bound tokens "
                         "sent as Bearer are refused either way"),
    "GUARD_DPOP_ALGS": (DEFAULT_ALGORITHMS, "JWS algorithms accepted in DPoP proofs"),
    "GUARD_DPOP_MAX_AGE": (60.0, "seconds a proof's iat may lie in the past (plus GUARD_LEEWAY)"),
    "GUARD_DPOP_REPLAY_STORE": (None, "redis:// URL of the proof jti store every worker shares "
                                      "(unset: this process only, correct with one worker)"),
    "GUARD_DPOP_NONCES": (False, "require a server nonce in every proof (RFC 9449 §9)"),
    "GUARD_DPOP_NONCE_SECRET": (None, "HMAC key of the nonces, the same in every worker "
                                      "(unset: random per process)"),
    "GUARD_DPOP_NONCE_LIFETIME": (300.0, "seconds a nonce stays usable"),
    "GUARD_PUBLIC_URL": (None, "the API's public URL (https://api.example.com): a DPoP proof's "
                               "htu must name it plus the request path; unset: the request's "
                               "own origin (Host, or a trusted proxy's X-Forwarded-*)"),
}


class GuardConfigurationError(RuntimeError):
    """The guard cannot start with these settings; the message names the setting to fix."""


def is_loopback(host: str | None) -> bool:
    """True for localhost and loopback addresses (where plain http is acceptable)."""
    if not host:
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _number(config: Mapping[str, Any], name: str, *, positive: bool = True) -> float:
    value = config.get(name, SETTINGS[name][0])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (
            positive and value == 0):
        raise GuardConfigurationError(f"{name} must be a {'positive' if positive else 'non-negative'}"
                                      f" number of seconds, not {value!r}")
    return float(value)


def _flag(config: Mapping[str, Any], name: str) -> bool:
    value = config.get(name, SETTINGS[name][0])
    if not isinstance(value, bool):
        raise GuardConfigurationError(f"{name} must be True or False, not {value!r}")
    return value


@dataclass(frozen=True)
class GuardSettings:
    """Checked guard settings."""

    issuer: str
    audiences: tuple[str, ...]
    client_id: str | None
    client_secret: str | None
    revocation_check: bool
    revocation_poll_seconds: float
    revocation_max_outage: float
    revocation_fail_open: bool
    introspect_jwts: bool
    api_key_cache_seconds: float
    api_key_fingerprints: bool
    trusted_proxies: tuple[str, ...]
    jwks_refetch_cooldown: float
    http_timeout: float
    leeway: float
    realm: str
    retry_after: int
    clock: Callable[[], float]
    dpop: bool = True
    dpop_algs: tuple[str, ...] = DEFAULT_ALGORITHMS
    dpop_max_age: float = 60.0
    dpop_replay_store: str | None = None
    dpop_nonces: bool = False
    dpop_nonce_secret: bytes | None = None
    dpop_nonce_lifetime: float = 300.0
    public_url: str | None = None

    @property
    def has_credentials(self) -> bool:
        """True when the guard can introspect and read the feed."""
        return self.client_id is not None

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> GuardSettings:
        """Check ``GUARD_*`` settings; raise ``GuardConfigurationError`` naming what to fix."""
        unknown = sorted(name for name in config if isinstance(name, str)
                         and name.startswith("GUARD_") and name not in SETTINGS)
        if unknown:
            raise GuardConfigurationError(
                f"unknown guard setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
        issuer = _issuer(config.get("GUARD_ISSUER"))
        audiences = config.get("GUARD_AUDIENCES") or (issuer.rstrip("/") + "/api",)
        if isinstance(audiences, str):
            audiences = (audiences,)
        audiences = tuple(audiences)
        if not all(isinstance(a, str) and a for a in audiences):
            raise GuardConfigurationError("GUARD_AUDIENCES must be a list of non-empty strings")
        client_id, secret = config.get("GUARD_CLIENT_ID"), config.get("GUARD_CLIENT_SECRET")
        if bool(client_id) != bool(secret):
            raise GuardConfigurationError(
                "GUARD_CLIENT_ID and GUARD_CLIENT_SECRET go together: set both or neither")
        if client_id is not None and not (isinstance(client_id, str) and isinstance(secret, str)):
            raise GuardConfigurationError("GUARD_CLIENT_ID and GUARD_CLIENT_SECRET must be strings")
        revocation_check = _flag(config, "GUARD_REVOCATION_CHECK")
        introspect_jwts = _flag(config, "GUARD_INTROSPECT_JWTS")
        if not client_id and (revocation_check or introspect_jwts):
            raise GuardConfigurationError(
                "the guard needs GUARD_CLIENT_ID and GUARD_CLIENT_SECRET (a client holding "
                "tokens:introspect) to follow the revocation feed and check API keys; without "
                "them revoked tokens would stay accepted. Set them, or switch revocation "
                "checking off explicitly with GUARD_REVOCATION_CHECK=False.")
        proxies = config.get("GUARD_TRUSTED_PROXIES") or ()
        if isinstance(proxies, str) or not all(isinstance(p, str) for p in proxies):
            raise GuardConfigurationError("GUARD_TRUSTED_PROXIES must be a list of addresses or "
                                          "CIDR ranges")
        for proxy in proxies:
            try:
                parse_network(proxy)
            except ValueError as exc:
                raise GuardConfigurationError(
                    f"GUARD_TRUSTED_PROXIES entry {proxy!r} is not an address or CIDR range: {exc}"
                ) from None
        realm = config.get("GUARD_REALM", "api")
        if not isinstance(realm, str) or not realm or not realm.isprintable() or '"' in realm \
                or "\\" in realm:
            raise GuardConfigurationError("GUARD_REALM must be printable text without quotes")
        clock = config.get("GUARD_CLOCK") or time.time
        if not callable(clock):
            raise GuardConfigurationError("GUARD_CLOCK must be a callable returning epoch seconds")
        settings = cls(
            issuer=issuer, audiences=audiences, client_id=client_id or None,
            client_secret=secret or None, revocation_check=revocation_check,
            revocation_poll_seconds=_number(config, "GUARD_REVOCATION_POLL_SECONDS"),
            revocation_max_outage=_number(config, "GUARD_REVOCATION_MAX_OUTAGE"),
            revocation_fail_open=_flag(config, "GUARD_REVOCATION_FAIL_OPEN"),
            introspect_jwts=introspect_jwts,
            api_key_cache_seconds=min(_number(config, "GUARD_API_KEY_CACHE_SECONDS",
                                              positive=False), MAX_API_KEY_CACHE_SECONDS),
            api_key_fingerprints=_flag(config, "GUARD_API_KEY_FINGERPRINTS"),
            trusted_proxies=tuple(proxies),
            jwks_refetch_cooldown=_number(config, "GUARD_JWKS_REFETCH_COOLDOWN", positive=False),
            http_timeout=_number(config, "GUARD_HTTP_TIMEOUT"),
            leeway=_number(config, "GUARD_LEEWAY", positive=False),
            realm=realm, retry_after=int(_number(config, "GUARD_RETRY_AFTER")), clock=clock,
            public_url=_public_url(config.get("GUARD_PUBLIC_URL")), **_dpop_settings(config))
        settings.warn()
        return settings

    def warn(self) -> None:
        """Log, once at start, what these settings switch off."""
        if not self.revocation_check:
            log.warning("resource guard: revocation checking is OFF (GUARD_REVOCATION_CHECK="
                        "False): revoked JWTs stay accepted until they expire")
        if not self.has_credentials:
            log.warning("resource guard: no GUARD_CLIENT_ID: API keys (App) are refused")
        if self.revocation_fail_open:
            log.warning("resource guard: GUARD_REVOCATION_FAIL_OPEN: JWTs stay accepted while "
                        "the revocation feed is down")
        if self.dpop and self.dpop_replay_store is None:
            log.warning("resource guard: DPoP proofs are remembered in this process only (no "
                        "GUARD_DPOP_REPLAY_STORE): a proof replayed to another worker is "
                        "accepted; this is correct with one worker only")
        if self.dpop and self.dpop_nonces and self.dpop_nonce_secret is None:
            log.warning("resource guard: DPoP nonces without GUARD_DPOP_NONCE_SECRET: each "
                        "process has its own key, so a nonce works only at the worker that "
                        "issued it")

    def proof_checker(self, *, asynchronous: bool = False) -> ProofChecker | None:
        """The DPoP proof checker these settings describe (None with ``GUARD_DPOP=False``):
        a Redis or in-process ``jti`` store, blocking or awaited, and the nonces."""
        if not self.dpop:
            return None
        from resource_demo.guard import replay
        from resource_demo.guard.nonces import Nonces

        if self.dpop_replay_store is not None:
            kind = replay.AsyncRedisReplayStore if asynchronous else replay.RedisReplayStore
            store = kind(self.dpop_replay_store, prefix=f"guard-dpop:{self.audiences[0]}",
                         clock=self.clock)
        else:
            kind = replay.AsyncMemoryReplayStore if asynchronous else replay.MemoryReplayStore
            store = kind(clock=self.clock)
        nonces = None
        if self.dpop_nonces:
            secret = self.dpop_nonce_secret or secrets.token_bytes(32)
            nonces = Nonces(secret, lifetime=int(self.dpop_nonce_lifetime), clock=self.clock)
        return ProofChecker(replay=store, algorithms=self.dpop_algs, max_age=self.dpop_max_age,
                            leeway=self.leeway, nonces=nonces, clock=self.clock)


def _dpop_settings(config: Mapping[str, Any]) -> dict:
    """The GUARD_DPOP_* settings, checked."""
    algs = config.get("GUARD_DPOP_ALGS", DEFAULT_ALGORITHMS)
    if isinstance(algs, str) or not algs or not all(
            isinstance(alg, str) and alg in SUPPORTED_ALGORITHMS for alg in algs):
        raise GuardConfigurationError(
            f"GUARD_DPOP_ALGS must list asymmetric algorithms among "
            f"{', '.join(sorted(SUPPORTED_ALGORITHMS))}, not {algs!r}")
    store = config.get("GUARD_DPOP_REPLAY_STORE")
    if store is not None and not (isinstance(store, str)
                                  and store.startswith(("redis://", "rediss://", "unix://"))):
        raise GuardConfigurationError("GUARD_DPOP_REPLAY_STORE must be a redis:// URL")
    secret = config.get("GUARD_DPOP_NONCE_SECRET")
    if isinstance(secret, str):
        secret = secret.encode()
    if secret is not None and (not isinstance(secret, bytes) or len(secret) < 16):
        raise GuardConfigurationError("GUARD_DPOP_NONCE_SECRET must be at least 16 bytes")
    lifetime = _number(config, "GUARD_DPOP_NONCE_LIFETIME")
    if lifetime < 2:
        raise GuardConfigurationError("GUARD_DPOP_NONCE_LIFETIME must be at least 2 seconds")
    return {"dpop": _flag(config, "GUARD_DPOP"), "dpop_algs": tuple(algs),
            "dpop_max_age": _number(config, "GUARD_DPOP_MAX_AGE"), "dpop_replay_store": store,
            "dpop_nonces": _flag(config, "GUARD_DPOP_NONCES"), "dpop_nonce_secret": secret,
            "dpop_nonce_lifetime": lifetime}


def _public_url(value: object) -> str | None:
    """The API's public URL: scheme, host, optional port and path prefix; no trailing slash."""
    if value is None:
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname \
            or parts.query or parts.fragment or parts.username or parts.password:
        raise GuardConfigurationError(f"GUARD_PUBLIC_URL {value!r} is not an http(s) URL without "
                                      "credentials, query or fragment")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise GuardConfigurationError(f"GUARD_PUBLIC_URL {value!r} uses plain http outside "
                                      "loopback; use https")
    return value.rstrip("/")


def _issuer(value: object) -> str:
    if not value:
        raise GuardConfigurationError(
            "GUARD_ISSUER (the authorization server's issuer URL) is required")
    if not isinstance(value, str):
        raise GuardConfigurationError(f"GUARD_ISSUER must be a URL string, not {value!r}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        # RFC 8414 §2: an https URL with no query or fragment.
        raise GuardConfigurationError(f"GUARD_ISSUER {value!r} is not an http(s) URL without "
                                      "query or fragment")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise GuardConfigurationError(
            f"GUARD_ISSUER {value!r} uses plain http outside loopback: tokens and the guard's "
            "own credentials would travel in clear; use https")
    return value
