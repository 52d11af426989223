"""The issuer's signing keys for the resource guard: a JWKS cache with refetch cooldown and stale-on-outage.

PyJWT's ``PyJWKClient`` is not used: it drops its cache when a refresh fails and refetches on every
unknown ``kid`` (SECURITY.md item 9). Keys are parsed once into ``jwt.PyJWK`` objects, cached by
``kid`` and swapped in as one immutable snapshot, so lookups take no lock.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jwt
import requests
import urllib3

logger = logging.getLogger(__name__)

METADATA_WELL_KNOWN = "/.well-known/oauth-authorization-server"

#: Members that only private or symmetric keys carry (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

#: (kty, crv) → the algorithms such a key may verify; the first is assumed when the JWK has no `alg`.
KEY_ALGORITHMS: Mapping[tuple[str, str | None], tuple[str, ...]] = {
    ("RSA", None): ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    ("EC", "P-256"): ("ES256",),
    ("EC", "P-384"): ("ES384",),
    ("OKP", "Ed25519"): ("EdDSA",),
}
ASYMMETRIC_ALGORITHMS = frozenset(alg for algs in KEY_ALGORITHMS.values() for alg in algs)
MIN_RSA_BITS = 2048

_ACCEPT = {"Accept": "application/jwk-set+json, application/json", "Accept-Encoding": "identity"}
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?=,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-store|no-cache)\s*(?=,|=|$)", re.IGNORECASE)


class JWKSError(Exception):
    """Base class of the key-lookup failures."""


class JWKSUnavailable(JWKSError):
    """No usable key set: cold start or last good set too stale, and the issuer cannot be reached (→ 503)."""


class UnknownKey(JWKSError):
    """The key set is healthy but has no usable key with this ``kid`` (→ 401 invalid_token)."""


class MetadataError(JWKSError):
    """The issuer's RFC 8414 metadata is wrong (``issuer`` mismatch, no ``jwks_uri``): misconfiguration."""


class _FetchFailed(Exception):
    """A fetch or its document failed; the reason is logged and the last good set kept."""


@dataclass(frozen=True)
class _Snapshot:
    keys: Mapping[str, jwt.PyJWK]
    fetched_at: float
    max_age: float


def check_http_url(url: str) -> None:
    """Raise ValueError unless ``url`` is an absolute http(s) URL (no other scheme is ever fetched)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")


def _get_document(
    session: requests.Session, url: str, *, timeout: float, max_bytes: int
) -> tuple[bytes, Mapping[str, str]]:
    """GET ``url`` streaming: ``timeout`` per network step and for the whole body, at most ``max_bytes``.

    Raises ``_FetchFailed`` on any network error, a non-200 status (redirects are not followed) or size.
    """
    deadline = time.monotonic() + timeout
    try:
        with session.get(
            url, headers=_ACCEPT, timeout=(timeout, timeout), stream=True, allow_redirects=False
        ) as response:
            if response.status_code != 200:
                raise _FetchFailed(f"HTTP {response.status_code}")
            declared = response.headers.get("Content-Length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
                raise _FetchFailed(f"body of {declared} bytes exceeds {max_bytes}")
            body = bytearray()
            while chunk := response.raw.read1(65536, decode_content=True):
                body += chunk
                if len(body) > max_bytes:
                    raise _FetchFailed(f"body exceeds {max_bytes} bytes")
                # A server dripping bytes never trips the per-read timeout: bound the whole body too.
                if time.monotonic() > deadline:
                    raise _FetchFailed(f"body not received within {timeout} s")
            return bytes(body), response.headers
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise _FetchFailed(f"{type(exc).__name__}: {exc}") from exc


def metadata_url(issuer: str) -> str:
    """RFC 8414 §3.1: the well-known path goes between the host and the issuer's path component."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, METADATA_WELL_KNOWN + path, "", ""))


def discover_metadata(
    issuer: str, session: requests.Session | None = None, timeout: float = 3.0
) -> dict[str, Any]:
    """Fetch the issuer's RFC 8414 metadata, checking ``issuer`` exactly and ``jwks_uri``.

    Raises ``JWKSUnavailable`` when the metadata cannot be fetched, ``MetadataError`` when it is wrong.
    """
    check_http_url(issuer)
    own_session = session is None
    session = session or requests.Session()
    try:
        body, _ = _get_document(session, metadata_url(issuer), timeout=timeout, max_bytes=1 << 20)
    except _FetchFailed as exc:
        raise JWKSUnavailable(f"authorization server metadata unavailable: {exc}") from exc
    finally:
        if own_session:
            session.close()
    try:
        metadata = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise MetadataError(f"metadata is not JSON: {exc}") from exc
    if not isinstance(metadata, dict):
        raise MetadataError("metadata is not a JSON object")
    # RFC 8414 §3.3: the issuer value returned MUST be identical to the issuer identifier used.
    if metadata.get("issuer") != issuer:
        raise MetadataError(f"metadata issuer {metadata.get('issuer')!r:.100} is not {issuer!r}")
    jwks_uri = metadata.get("jwks_uri")
    if not isinstance(jwks_uri, str):
        raise MetadataError("metadata has no jwks_uri")
    try:
        check_http_url(jwks_uri)
    except ValueError as exc:
        raise MetadataError(str(exc)) from exc
    if urlsplit(issuer).scheme == "https" and urlsplit(jwks_uri).scheme != "https":
        raise MetadataError(f"jwks_uri {jwks_uri!r} downgrades to http")
    return metadata


def discover_jwks_uri(
    issuer: str, session: requests.Session | None = None, timeout: float = 3.0
) -> str:
    """Return ``jwks_uri`` from the issuer's RFC 8414 metadata (see ``discover_metadata``)."""
    return discover_metadata(issuer, session, timeout)["jwks_uri"]


def parse_jwk(jwk: Any) -> jwt.PyJWK:
    """Turn one JWK into a verification key bound to one algorithm; raise ValueError to skip it.

    Accepts RSA ≥ 2048 bits, EC P-256/P-384 and OKP Ed25519 public signing keys only (SECURITY.md JW01/JW02).
    """
    if not isinstance(jwk, dict):
        raise ValueError("not a JSON object")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise ValueError("no kid")
    if PRIVATE_MEMBERS & jwk.keys():
        # RFC 7517 §9.2 / SECURITY.md item 11: a published set never holds private or symmetric material.
        raise ValueError(f"kid {kid!r} carries private members; the issuer's JWKS is misconfigured")
    kty = jwk.get("kty")
    allowed = KEY_ALGORITHMS.get((kty, None if kty == "RSA" else jwk.get("crv")))
    if allowed is None:
        raise ValueError(f"kid {kid!r}: unsupported key type {kty!r}/{jwk.get('crv')!r}")
    if jwk.get("use", "sig") != "sig":
        raise ValueError(f"kid {kid!r} is not a signing key")
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        raise ValueError(f"kid {kid!r} key_ops do not allow verify")
    # RFC 8725 §3.1: each key is used with exactly one algorithm.
    alg = jwk.get("alg", allowed[0])
    if alg not in allowed:
        raise ValueError(f"kid {kid!r}: alg {alg!r} does not fit a {kty} key")
    try:
        key = jwt.PyJWK(jwk, algorithm=alg)
    except (jwt.PyJWTError, TypeError, ValueError) as exc:
        raise ValueError(f"kid {kid!r}: {exc}") from exc
    if kty == "RSA" and key.key.key_size < MIN_RSA_BITS:
        raise ValueError(f"kid {kid!r}: RSA key of {key.key.key_size} bits")
    return key


def parse_jwks(body: bytes) -> dict[str, jwt.PyJWK]:
    """Parse a JWK Set document into usable keys by ``kid``; raise ValueError if the set is unusable."""
    try:
        document = json.loads(body.decode("utf-8"))
    except RecursionError as exc:
        raise ValueError("JWKS nested too deeply") from exc
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK Set (a JSON object with a keys list)")
    keys: dict[str, jwt.PyJWK] = {}
    duplicated: set[str] = set()
    for jwk in document["keys"]:
        try:
            key = parse_jwk(jwk)
        except ValueError as exc:
            logger.warning("JWKS key skipped: %s", exc)
            continue
        if key.key_id in keys:
            duplicated.add(key.key_id)
        keys[key.key_id] = key
    for kid in duplicated:
        # Two keys under one kid: refuse both rather than guess which one a token means.
        logger.warning("JWKS kid %r appears more than once; both keys skipped", kid)
        del keys[kid]
    if not keys:
        raise ValueError("JWK Set holds no usable signing key")
    return keys


class JWKSCache:
    """The issuer's public keys by ``kid``, refreshed after a max-age and kept through outages.

    Policies (DESIGN.md): refresh after ``max_age`` s, or the response's ``Cache-Control: max-age``
    clamped to ``max_age_bounds``; at most one fetch per ``refetch_cooldown`` s whatever triggers it
    (expiry, unknown ``kid``, cold start), one at a time across threads; on failure the last good set
    is served up to ``max_staleness`` s after it was fetched. Ages use ``clock`` (monotonic).
    """

    def __init__(
        self,
        jwks_uri: str,
        session: requests.Session | None = None,
        *,
        timeout: float = 3.0,
        max_age: float = 300.0,
        max_age_bounds: tuple[float, float] = (30.0, 3600.0),
        refetch_cooldown: float = 10.0,
        max_staleness: float = 24 * 3600.0,
        max_bytes: int = 1 << 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_http_url(jwks_uri)
        self.jwks_uri = jwks_uri
        self._own_session = session is None
        self._session = session or requests.Session()
        self.timeout = timeout
        self.max_age = max_age
        self.max_age_bounds = max_age_bounds
        self.refetch_cooldown = refetch_cooldown
        self.max_staleness = max_staleness
        self.max_bytes = max_bytes
        self._clock = clock
        self._snapshot: _Snapshot | None = None
        self._fetch_lock = threading.Lock()
        self._last_attempt: float | None = None
        self._last_error: str | None = None

    @property
    def kids(self) -> frozenset[str]:
        """The ``kid`` values currently cached (for diagnostics)."""
        snapshot = self._snapshot
        return frozenset(snapshot.keys) if snapshot else frozenset()

    def get_key(self, kid: str) -> jwt.PyJWK:
        """Return the verification key for ``kid``; raise ``UnknownKey`` or ``JWKSUnavailable``."""
        key = self._usable_snapshot().keys.get(kid)
        if key is not None:
            return key
        # An unknown kid may be a freshly rotated key (SECURITY.md RL2): refetch, at most once per cooldown.
        self._fetch(blocking=True)
        key = self._usable_snapshot().keys.get(kid)
        if key is not None:
            return key
        if self._last_error is not None:
            # The issuer may well know this kid; we cannot tell while it is unreachable.
            raise JWKSUnavailable(f"kid {kid[:64]!r} not cached and JWKS refresh failing: {self._last_error}")
        raise UnknownKey(f"no usable key with kid {kid[:64]!r}")

    def refresh(self) -> bool:
        """Fetch the set now unless a fetch happened within the cooldown; True if usable keys are cached."""
        self._fetch(blocking=True)
        snapshot = self._snapshot
        return snapshot is not None and self._clock() - snapshot.fetched_at < self.max_staleness

    def close(self) -> None:
        """Close the HTTP session if this cache created it."""
        if self._own_session:
            self._session.close()

    def _usable_snapshot(self) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is not None:
            age = self._clock() - snapshot.fetched_at
            if age < self.max_staleness:
                if age >= snapshot.max_age:
                    # Periodic refresh: one thread fetches, the others keep using the current keys.
                    self._fetch(blocking=False)
                return self._snapshot or snapshot
        self._fetch(blocking=True)
        snapshot = self._snapshot
        if snapshot is None or self._clock() - snapshot.fetched_at >= self.max_staleness:
            reason = self._last_error or "no key set fetched yet"
            raise JWKSUnavailable(f"no usable JWKS from {self.jwks_uri}: {reason}")
        return snapshot

    def _fetch(self, *, blocking: bool) -> None:
        if not self._fetch_lock.acquire(blocking=blocking):
            return
        try:
            now = self._clock()
            if self._last_attempt is not None and now - self._last_attempt < self.refetch_cooldown:
                return  # someone fetched (or failed to) moments ago: no thundering herd, no hot loop
            self._last_attempt = now
            try:
                body, headers = _get_document(
                    self._session, self.jwks_uri, timeout=self.timeout, max_bytes=self.max_bytes
                )
                keys = parse_jwks(body)
            except (_FetchFailed, ValueError) as exc:
                self._last_error = str(exc)
                self._log_failure(now)
                return
            if self._last_error is not None:
                logger.info("JWKS refresh from %s recovered", self.jwks_uri)
            self._last_error = None
            self._snapshot = _Snapshot(keys, fetched_at=now, max_age=self._max_age_of(headers))
        finally:
            self._fetch_lock.release()

    def _log_failure(self, now: float) -> None:
        snapshot = self._snapshot
        if snapshot is None:
            logger.warning("JWKS fetch from %s failed: %s", self.jwks_uri, self._last_error)
        else:
            logger.warning(
                "JWKS refresh from %s failed: %s; keeping %d keys fetched %.0f s ago (limit %.0f s)",
                self.jwks_uri, self._last_error, len(snapshot.keys),
                now - snapshot.fetched_at, self.max_staleness,
            )

    def _max_age_of(self, headers: Mapping[str, str]) -> float:
        low, high = self.max_age_bounds
        cache_control = headers.get("Cache-Control", "")
        if _NO_CACHE.search(cache_control):
            return low
        match = _MAX_AGE.search(cache_control)
        if match is None:
            return self.max_age
        return min(max(float(match.group(1)), low), high)
