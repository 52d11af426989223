"""Verification keys: JWK parsing bound to one algorithm per key, and the key-source contract.

A key source answers ``get_key(kid)`` with a ``jwt.PyJWK`` or raises ``UnknownKey`` (the set is
healthy but has no such key: the token's fault) or ``KeysUnavailable`` (the keys cannot be had
right now: not the token's fault, 503). The guard's source is its JWKS cache (``jwks``); the
authorization server's is its own database of published keys. No HTTP here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Protocol

import jwt

from resource_demo.guard.errors import SourceUnavailable

logger = logging.getLogger(__name__)

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


class JWKSError(Exception):
    """Base class of the key-lookup failures."""


class JWKSUnavailable(JWKSError, SourceUnavailable):
    """No usable key set: cold start or last good set too stale, and the issuer cannot be reached (→ 503)."""


KeysUnavailable = JWKSUnavailable


class UnknownKey(JWKSError):
    """The key set is healthy but has no usable key with this ``kid`` (→ 401 invalid_token)."""


class MetadataError(JWKSError):
    """The issuer's RFC 8414 metadata is wrong (``issuer`` mismatch, no ``jwks_uri``): misconfiguration."""


class KeySource(Protocol):
    """Where a verifier gets the issuer's public keys."""

    def get_key(self, kid: str) -> jwt.PyJWK:
        """The key for ``kid``; raise ``UnknownKey`` or ``KeysUnavailable``."""
        ...


class KeySet:
    """A fixed set of keys by ``kid`` (a key source that never fetches)."""

    def __init__(self, keys: Mapping[str, jwt.PyJWK]):
        self.keys = dict(keys)

    def get_key(self, kid: str) -> jwt.PyJWK:
        """The key for ``kid`` or ``UnknownKey``."""
        key = self.keys.get(kid)
        if key is None:
            raise UnknownKey(f"no usable key with kid {kid[:64]!r}")
        return key


def parse_jwk(jwk: Any) -> jwt.PyJWK:
    """Turn one JWK into a verification key bound to one algorithm; raise ValueError to skip it.

    Accepts RSA ≥ 2048 bits, EC P-256/P-384 and OKP Ed25519 public signing keys only (threat model JW01/JW02).
    """
    if not isinstance(jwk, dict):
        raise ValueError("not a JSON object")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise ValueError("no kid")
    if PRIVATE_MEMBERS & jwk.keys():
        # RFC 7517 §9.2 / threat model item 11: a published set never holds private or symmetric material.
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
