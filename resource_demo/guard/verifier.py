"""RFC 9068 §4 validation of JWT access tokens: the one verifier of the guard and the server.

PyJWT verifies the signature and the claim shapes it knows; the checks where PyJWT is lax or that
RFC 9068 adds (``typ``, ``crit``, one algorithm per key, canonical base64url, strict JSON,
``client_id``, ``scope`` type, time with an injectable clock) are explicit here, each beside the
MUST it enforces. Keys come from a key source (``keys.KeySource``): the guard's JWKS cache, or
the authorization server's own published keys read from its database.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import jwt

from resource_demo.guard.keys import ASYMMETRIC_ALGORITHMS, KeySource, UnknownKey
from resource_demo.guard.lru import LRUCache

#: RFC 9068 §2.2: claims every access token carries.
REQUIRED_CLAIMS = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti")
#: RFC 9068 §4 / RFC 7515 §4.1.9: accepted ``typ`` values, compared case-insensitively.
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
DEFAULT_ALGORITHMS = ("RS256", "ES256", "EdDSA")
MAX_NUMERIC_DATE = 253402300799  # 9999-12-31T23:59:59Z: anything later is garbage, not a date

_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#: unpadded length mod 4 -> the bits of the last character that carry no data (must be zero)
_UNUSED_BITS = {0: 0, 2: 0b1111, 3: 0b11}
# Time checks are ours (PyJWT reads the wall clock, which tests and RL4 need to inject).
_PYJWT_OPTIONS: Any = {
    "require": list(REQUIRED_CLAIMS),
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_iss": True,
    "verify_aud": True,
    "verify_sub": True,
    "verify_jti": True,
    "enforce_minimum_key_length": True,
}


class InvalidToken(Exception):
    """The bearer token is unacceptable (RFC 6750 §3.1 ``invalid_token``); ``reason`` is for logs only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        # RFC 7519 §4 / RFC 7515 §5.2: reject duplicate member names rather than pick one.
        raise ValueError("duplicate member name")
    return members


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:20]}")
    return value


def _reject_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON (RFC 8259 §6)")


def loads_strict(data: bytes) -> Any:
    """Parse UTF-8 JSON (RFC 7519 §7.2), refusing duplicate names, NaN/Infinity and out-of-range floats."""
    return json.loads(
        data.decode("utf-8"),
        object_pairs_hook=_unique_members,
        parse_constant=_reject_constant,
        parse_float=_finite_float,
    )


class _StrictPyJWT(jwt.PyJWT):
    """PyJWT with the strict JSON parser for the payload (``_decode_payload`` is its documented hook)."""

    def _decode_payload(self, decoded: dict[str, Any]) -> dict[str, Any]:
        try:
            payload = loads_strict(decoded["payload"])
        except (ValueError, RecursionError) as exc:
            raise jwt.DecodeError(f"invalid payload: {exc}") from exc
        if not isinstance(payload, dict):
            raise jwt.DecodeError("payload is not a JSON object")
        return payload


@dataclass(frozen=True)
class _Verified:
    """A verified token as remembered: its key, its claims and its time claims."""

    kid: str
    claims: dict[str, Any]
    times: tuple[float, float | None, float]  # exp, nbf (if any), iat


class AccessTokenVerifier:
    """Validates RFC 9068 access tokens from one issuer for this resource server's audiences.

    ``audiences=None`` accepts any well-formed ``aud`` and leaves the audience to the caller
    (the authorization server's introspection answers for every audience it issues).
    """

    def __init__(
        self,
        issuer: str,
        audiences: str | Iterable[str] | None,
        keys: KeySource,
        leeway: float = 30,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        max_token_bytes: int = 8192,
        clock: Callable[[], float] = time.time,
        verified_cache_size: int = 10_000,
    ) -> None:
        if not isinstance(issuer, str) or not issuer:
            raise ValueError("issuer must be a non-empty string")
        if audiences is None:
            self.audiences: tuple[str, ...] | None = None
        else:
            self.audiences = (audiences,) if isinstance(audiences, str) else tuple(audiences)
            if not self.audiences or not all(isinstance(a, str) and a for a in self.audiences):
                raise ValueError("audiences must be non-empty strings")
        self.algorithms = frozenset(algorithms)
        # RFC 8725 §3.1-3.2 / RFC 9068 §4: asymmetric algorithms only, never none or HMAC.
        if not self.algorithms or not self.algorithms <= ASYMMETRIC_ALGORITHMS:
            raise ValueError(f"algorithms must be among {sorted(ASYMMETRIC_ALGORITHMS)}")
        if leeway < 0 or max_token_bytes <= 0:
            raise ValueError("leeway must be >= 0 and max_token_bytes > 0")
        self.issuer = issuer
        self.keys = keys
        self.leeway = leeway
        self.max_token_bytes = max_token_bytes
        self._clock = clock
        self._jwt = _StrictPyJWT()
        # token -> what a later request needs of a token whose signature and claims verified
        self._verified: LRUCache[str, _Verified] = LRUCache(verified_cache_size)
        self._options = dict(_PYJWT_OPTIONS, verify_aud=self.audiences is not None)

    def verify(self, token: str) -> dict[str, Any]:
        """Return the claims of a valid access token (RFC 9068 §4); raise ``InvalidToken`` otherwise.

        ``KeysUnavailable`` passes through: the issuer's keys cannot be had, which is not the token's fault.
        A token verified before is not decoded again: its key must still be in the JWKS (so a key
        removed from the set stops its tokens, JW05) and its time claims are checked again on
        this clock (expiry included). The other claims were checked when it was first verified
        and are part of the signed token, so they cannot have changed since.
        """
        cached = self._verified.get(token)
        if cached is not None:
            try:
                self.keys.get_key(cached.kid)
                self._check_times(*cached.times)
            except UnknownKey as exc:
                self._verified.pop(token)
                raise InvalidToken(str(exc)) from exc
            except InvalidToken:
                self._verified.pop(token)
                raise
            return cached.claims
        claims, kid = self._verify_signed(token)
        self._verified.put(token, _Verified(kid, claims, _times(claims)))
        return claims

    def _verify_signed(self, token: str) -> tuple[dict[str, Any], str]:
        header = self.validate_header(token)
        try:
            key = self.keys.get_key(header["kid"])
        except UnknownKey as exc:
            raise InvalidToken(str(exc)) from exc
        # RFC 8725 §3.1: the key fixes the algorithm; the token header cannot choose another.
        if key.algorithm_name != header["alg"]:
            raise InvalidToken(f"alg {header['alg']} does not match the key's {key.algorithm_name}")
        try:
            claims = self._jwt.decode(
                token,
                key=key,
                algorithms=[key.algorithm_name],
                options=self._options,
                issuer=self.issuer,
                audience=list(self.audiences) if self.audiences is not None else None,
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"{type(exc).__name__}: {exc}") from exc
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:
            raise InvalidToken(f"undecodable token: {type(exc).__name__}") from exc
        self.validate_claims(claims)
        return claims, header["kid"]

    def kid_of(self, token: str) -> str:
        """The ``kid`` a token names (from the verified cache, else its checked header)."""
        cached = self._verified.get(token)
        return cached.kid if cached is not None else self.validate_header(token)["kid"]

    def validate_header(self, token: str) -> dict[str, Any]:
        """Check size, shape and the JOSE header (``typ``, ``alg``, ``kid``, ``crit``); return the header."""
        if not isinstance(token, str):
            raise InvalidToken("token is not a string")
        # threat model item 18: bound the work before any decoding.
        if len(token) > self.max_token_bytes or not token.isascii():
            raise InvalidToken(f"token longer than {self.max_token_bytes} bytes or not ASCII")
        segments = token.split(".")
        if len(segments) != 3:
            raise InvalidToken("not a JWS compact serialization (three segments)")
        # RFC 7515 §2, §7.1: every segment is base64url without padding, in its one canonical
        # spelling (no padding, no set unused bits): threat model item 10.
        if not all(_canonical_base64url(segment) for segment in segments):
            raise InvalidToken("segment is not canonical unpadded base64url")
        header = self._decode_header(segments[0])
        # RFC 7515 §4.1.11: a critical extension we do not understand MUST be rejected; we understand none.
        if "crit" in header:
            raise InvalidToken("crit header present")
        # RFC 9068 §4: the RS MUST verify typ is at+jwt or application/at+jwt (missing typ is refused too).
        typ = header.get("typ")
        if not isinstance(typ, str) or not typ.isascii() or typ.lower() not in ACCESS_TOKEN_TYPES:
            raise InvalidToken(f"typ {typ!r:.40} is not at+jwt")
        # RFC 9068 §4 / RFC 8725 §3.1: only allowlisted asymmetric algorithms, never none.
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidToken(f"alg {alg!r:.40} not allowed")
        # RFC 8725 §3.10: the key comes from the issuer's JWKS by kid only; jku, x5u, jwk, x5c are ignored.
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("kid missing")
        return header

    def validate_claims(self, claims: dict[str, Any]) -> None:
        """Check the RFC 9068 §4 claim rules on verified claims with this verifier's clock and leeway."""
        # RFC 9068 §4: iss MUST exactly match the issuer identifier (string compare, no arrays).
        if not isinstance(claims.get("iss"), str) or claims["iss"] != self.issuer:
            raise InvalidToken("iss is not our issuer")
        # RFC 9068 §4: aud MUST contain this resource server's identifier (exact string compare).
        aud = claims.get("aud")
        aud_values = [aud] if isinstance(aud, str) else aud
        if not isinstance(aud_values, list) or not aud_values or not all(
                isinstance(a, str) and a for a in aud_values):
            raise InvalidToken("aud is not a string or array of strings")
        if self.audiences is not None and not any(a in self.audiences for a in aud_values):
            raise InvalidToken("aud does not name this resource server")
        self._check_times(*_times(claims))
        # RFC 9068 §2.2: sub, client_id and jti are strings.
        for name in ("sub", "client_id", "jti"):
            if not isinstance(claims.get(name), str) or not claims[name]:
                raise InvalidToken(f"{name} is not a non-empty string")
        # RFC 9068 §2.2.3 / threat model policy: scope is a space-delimited string; anything else is refused.
        if "scope" in claims and not isinstance(claims["scope"], str):
            raise InvalidToken("scope is not a string")

    def _check_times(self, exp: float, nbf: float | None, iat: float) -> None:
        """The time claims against this verifier's clock, with its leeway."""
        now = self._clock()
        # RFC 9068 §4: the current time MUST be before exp (with our leeway, 30 s by policy).
        if now >= exp + self.leeway:
            raise InvalidToken("token expired")
        # RFC 7519 §4.1.5: not before nbf.
        if nbf is not None and nbf > now + self.leeway:
            raise InvalidToken("token not yet valid (nbf)")
        # threat model RS06 (policy): iat in the future beyond leeway is refused.
        if iat > now + self.leeway:
            raise InvalidToken("token issued in the future (iat)")

    def _decode_header(self, segment: str) -> dict[str, Any]:
        if len(segment) % 4 == 1:
            raise InvalidToken("header is not base64url")
        try:
            header = loads_strict(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        except (ValueError, RecursionError) as exc:
            raise InvalidToken(f"header is not JSON: {type(exc).__name__}") from exc
        # RFC 7515 §4: the JOSE header is a JSON object.
        if not isinstance(header, dict):
            raise InvalidToken("header is not a JSON object")
        return header


def _canonical_base64url(segment: str) -> bool:
    """True for unpadded base64url whose last character sets no unused bits (RFC 4648 §3.5)."""
    if not _BASE64URL.fullmatch(segment) or len(segment) % 4 == 1:
        return False
    unused = _UNUSED_BITS[len(segment) % 4]
    return not unused or not segment or _ALPHABET.index(segment[-1]) & unused == 0


def audiences_of(claims: dict[str, Any]) -> list[str]:
    """The ``aud`` claim as a list (a verified token's ``aud`` is a string or strings)."""
    aud = claims.get("aud")
    return [aud] if isinstance(aud, str) else list(aud) if isinstance(aud, list) else []


def _times(claims: dict[str, Any]) -> tuple[float, float | None, float]:
    """The time claims ``exp``, ``nbf`` (None when absent) and ``iat``, each a NumericDate."""
    nbf = _numeric_date(claims, "nbf") if "nbf" in claims else None
    return _numeric_date(claims, "exp"), nbf, _numeric_date(claims, "iat")


def _numeric_date(claims: dict[str, Any], name: str) -> float:
    """RFC 7519 §2 NumericDate: a finite number of seconds, not a bool or string, in a sane range."""
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidToken(f"{name} is not a NumericDate")
    if not 0 <= value <= MAX_NUMERIC_DATE:
        raise InvalidToken(f"{name} out of range")
    return value
