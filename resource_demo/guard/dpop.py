"""DPoP proofs (RFC 9449): checking a proof JWT (§4.3), the JWK thumbprint a token is bound to
(RFC 7638, §6.1), the access-token hash ``ath`` (§4.2) and ``htu`` normalisation.

One checker serves both sides: the authorization server at its token endpoint and the resource
guard in front of protected endpoints. It holds no per-request state itself: the ``jti`` replay
store and the nonce source are given to it (``resource_demo.guard.replay``), so every worker and
host can share them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import jwt
from jwt.algorithms import OKPAlgorithm

from resource_demo.guard.lru import LRUCache
from resource_demo.guard.verifier import loads_strict

#: RFC 9449 §4.2 / RFC 7515 §4.1.9: the proof's ``typ`` (media types compare case-insensitively).
PROOF_TYPES = frozenset({"dpop+jwt", "application/dpop+jwt"})
#: Asymmetric JWS algorithms this checker can verify (RFC 9449 §4.2: never none, never a MAC).
#: ``Ed25519`` is RFC 9864's fully-specified name for EdDSA on Ed25519 (oauth4webapi sends it).
SUPPORTED_ALGORITHMS = frozenset({"ES256", "ES384", "ES512", "RS256", "RS384", "RS512",
                                  "PS256", "PS384", "PS512", "EdDSA", "Ed25519"})
DEFAULT_ALGORITHMS = ("ES256", "ES384", "RS256", "PS256", "EdDSA", "Ed25519")
#: The key type (and curve) each algorithm needs: the proof's header cannot pair them otherwise.
_KEY_SHAPES = {"ES256": ("EC", "P-256"), "ES384": ("EC", "P-384"), "ES512": ("EC", "P-521"),
               "RS256": ("RSA", None), "RS384": ("RSA", None), "RS512": ("RSA", None),
               "PS256": ("RSA", None), "PS384": ("RSA", None), "PS512": ("RSA", None),
               "EdDSA": ("OKP", ("Ed25519", "Ed448")), "Ed25519": ("OKP", ("Ed25519",))}
#: RFC 7638 §3.2: the required members of each key type, the only ones a thumbprint hashes.
THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"),
                      "OKP": ("crv", "kty", "x")}
#: RFC 7517/7518: members that only a private (or symmetric) key has (RFC 9449 §4.3 item 7).
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
MAX_PROOF_BYTES = 8192
MAX_JTI_LENGTH = 256  # §11.1: refuse unnecessarily large jti values
MAX_HTU_LENGTH = 2048
MIN_RSA_BITS, MAX_RSA_BITS = 2048, 8192
MAX_RSA_EXPONENT = 2**32  # a huge public exponent makes every verification slow
#: RFC 9449 §4.1 / RFC 9110 §11.2 token68, and a compact JWS: three unpadded base64url parts.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Characters left as they are when a decoded request path is percent-encoded again
#: (RFC 3986 pchar and "/"; "%" stays too, in case a server left an escape in place).
PATH_SAFE = "/:@!$&'()*+,;=-._~%"


class InvalidProof(Exception):
    """The DPoP proof is unacceptable (``invalid_dpop_proof``); ``reason`` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UseNonce(Exception):
    """The proof lacks a current server nonce (§8, §9 ``use_dpop_nonce``): send a fresh one."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeyMismatch(Exception):
    """The proof is valid but made with another key than the token is bound to (§6, §7.1)."""


class ReplayStore(Protocol):
    """Remembers proof ``jti``s for as long as their proofs could be accepted."""

    def first_use(self, key: str, expires_at: float) -> bool:
        """Record ``key`` until ``expires_at`` (epoch seconds); False if it was recorded before."""


class NonceSource(Protocol):
    """Issues and checks server nonces (§8)."""

    def current(self) -> str:
        """The nonce clients should use now."""

    def check(self, nonce: object) -> bool:
        """True when ``nonce`` was issued recently by this source (or a sibling sharing its key)."""


@dataclass(frozen=True)
class Proof:
    """A checked proof: the key's thumbprint and the claims that were verified."""

    jkt: str
    jti: str
    iat: float
    claims: dict = field(compare=False, repr=False)


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    if len(text) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwk_thumbprint(jwk: dict) -> str:
    """RFC 7638 SHA-256 thumbprint of a public JWK, base64url: the ``cnf.jkt`` value (§6.1)."""
    members = THUMBPRINT_MEMBERS[jwk["kty"]]
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"),
                           sort_keys=True, ensure_ascii=False)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def access_token_hash(token: str) -> str:
    """§4.2 ``ath``: base64url of the SHA-256 of the token's ASCII bytes."""
    return b64url(hashlib.sha256(token.encode("ascii")).digest())


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, step by step."""
    output: list[str] = []
    while path:
        if path.startswith("../"):
            path = path[3:]
        elif path.startswith("./"):
            path = path[2:]
        elif path.startswith("/./") or path == "/.":
            path = "/" + path[3:]
        elif path.startswith("/../") or path == "/..":
            path = "/" + path[4:]
            if output:
                output.pop()
        elif path in (".", ".."):
            path = ""
        else:
            end = path.find("/", 1)
            end = len(path) if end == -1 else end
            output.append(path[:end])
            path = path[end:]
    return "".join(output)


def _normalize_percent(match: re.Match) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def normalize_uri(uri: str) -> str:
    """An http(s) URI without query and fragment, after RFC 3986 §6.2.2 syntax-based and §6.2.3
    scheme-based normalisation (what RFC 9449 §4.3 asks before comparing ``htu``).

    Raises ValueError for anything that is not an absolute http(s) URI with a host.
    """
    if not isinstance(uri, str) or len(uri) > MAX_HTU_LENGTH or not uri.isascii() \
            or any(ord(ch) <= 32 or ord(ch) == 127 for ch in uri):
        raise ValueError("not an ASCII URI")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None \
            or parts.password is not None:
        raise ValueError("not an absolute http(s) URI")
    host = _PERCENT.sub(_normalize_percent, parts.hostname).lower()
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal keeps its brackets
    port = parts.port  # ValueError when not a number in range
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _remove_dot_segments(_PERCENT.sub(_normalize_percent, parts.path) or "/")
    return f"{scheme}://{netloc}{path}"


class ProofChecker:
    """Checks DPoP proofs per RFC 9449 §4.3 for one server (token endpoint or resource server).

    ``max_age`` bounds how old a proof's ``iat`` may be, ``leeway`` how far in the future (and
    is added to the age too); ``replay`` records each ``jti`` once; with ``nonces`` every proof
    must carry a current server nonce.
    """

    def __init__(self, *, replay: ReplayStore, algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
                 max_age: float = 60, leeway: float = 30, nonces: NonceSource | None = None,
                 clock: Callable[[], float] = time.time, key_cache_size: int = 1000) -> None:
        self.algorithms = tuple(algorithms)
        if not self.algorithms or not set(self.algorithms) <= SUPPORTED_ALGORITHMS:
            raise ValueError(f"algorithms must be among {sorted(SUPPORTED_ALGORITHMS)}")
        if max_age <= 0 or leeway < 0:
            raise ValueError("max_age must be > 0 and leeway >= 0")
        self.replay = replay
        self.max_age = max_age
        self.leeway = leeway
        self.nonces = nonces
        self._clock = clock
        self._jws = jwt.PyJWS()
        self._jws.register_algorithm("Ed25519", OKPAlgorithm())  # PyJWT knows it as EdDSA
        # canonical JWK + alg -> (key object, thumbprint): a client's key is parsed once
        self._keys: LRUCache[str, tuple[Any, str]] = LRUCache(key_cache_size)

    def verify(self, values: Sequence[str], *, method: str, uri: str,
               access_token: str | None = None, jkt: str | None = None) -> Proof:
        """Every check of §4.3 but the ``jti`` one (``record`` does that, sync or async).

        At a resource server pass the ``access_token`` (checked against ``ath``) and the ``jkt``
        it is bound to. Raises InvalidProof, UseNonce or KeyMismatch.
        """
        # §4.3 items 1-2: exactly one header field holding one well-formed JWT.
        if len(values) != 1:
            raise InvalidProof("exactly one DPoP header is required")
        proof = values[0]
        if isinstance(proof, str) and "," in proof:  # WSGI servers join repeated fields
            raise InvalidProof("exactly one DPoP header is required")
        if not isinstance(proof, str) or len(proof) > MAX_PROOF_BYTES \
                or not _COMPACT_JWS.fullmatch(proof):
            raise InvalidProof("the DPoP header is not a compact JWT")
        header = self._header(proof)
        key, thumbprint = self._key(header)
        claims = self._verified_claims(proof, key, header["alg"])
        now = self._clock()
        self._check_claims(claims, now, method, uri, access_token)
        # §4.3 item 12 / §7.1: the key must be the one the access token is bound to.
        if jkt is not None and not hmac.compare_digest(thumbprint, str(jkt)):
            raise KeyMismatch("the proof key is not the key the token is bound to")
        # §4.3 item 10 / §8: a nonce this server handed out recently.
        if self.nonces is not None and not self.nonces.check(claims.get("nonce")):
            raise UseNonce("a current server nonce is required in the DPoP proof")
        return Proof(thumbprint, claims["jti"], claims["iat"], claims)

    def replay_entry(self, proof: Proof) -> tuple[str, float]:
        """The store key of a proof (a hash of key and ``jti``, §11.1) and until when to keep it
        (while its ``iat`` could still be accepted)."""
        key = hashlib.sha256(f"{proof.jkt}\x00{proof.jti}".encode()).hexdigest()
        return key, proof.iat + self.max_age + 2 * self.leeway

    def record(self, proof: Proof) -> None:
        """§11.1: each proof once, across every worker sharing the store (InvalidProof if seen)."""
        if not self.replay.first_use(*self.replay_entry(proof)):
            raise InvalidProof("the DPoP proof was used before")

    async def arecord(self, proof: Proof) -> None:
        """``record`` for an async store (ASGI)."""
        if not await self.replay.first_use(*self.replay_entry(proof)):
            raise InvalidProof("the DPoP proof was used before")

    def check(self, values: Sequence[str], *, method: str, uri: str,
              access_token: str | None = None, jkt: str | None = None) -> Proof:
        """``verify`` then ``record``: the whole of §4.3 with a blocking store."""
        proof = self.verify(values, method=method, uri=uri, access_token=access_token, jkt=jkt)
        self.record(proof)
        return proof

    def _header(self, proof: str) -> dict:
        try:
            header = loads_strict(_b64url_decode(proof.split(".", 1)[0]))
        except (ValueError, RecursionError):
            raise InvalidProof("the proof header is not JSON") from None
        if not isinstance(header, dict):
            raise InvalidProof("the proof header is not a JSON object")
        # §4.3 item 4 (explicit typing, RFC 8725 §3.11).
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in PROOF_TYPES:
            raise InvalidProof("typ must be dpop+jwt")
        # §4.3 item 5: a supported asymmetric algorithm; none and MACs are never in the list.
        if header.get("alg") not in self.algorithms:
            raise InvalidProof("alg is not an accepted DPoP algorithm")
        # RFC 7515 §4.1.11: we understand no critical extension (b64=false among them).
        if "crit" in header or "b64" in header:
            raise InvalidProof("crit and b64 are not accepted")
        if not isinstance(header.get("jwk"), dict):
            raise InvalidProof("the proof header has no jwk")
        return header

    def _key(self, header: dict) -> tuple[Any, str]:
        """The public key in ``jwk`` (§4.3 items 5-7) and its thumbprint, parsed once per key."""
        jwk, alg = header["jwk"], header["alg"]
        # §4.3 item 7: the jwk MUST NOT contain a private key.
        if PRIVATE_MEMBERS & jwk.keys():
            raise InvalidProof("the jwk contains private key material")
        kty, curves = _KEY_SHAPES[alg]
        if jwk.get("kty") != kty:
            raise InvalidProof("the jwk does not fit the alg")
        members = THUMBPRINT_MEMBERS[kty]
        if not all(isinstance(jwk.get(name), str) and jwk[name] for name in members):
            raise InvalidProof("the jwk lacks a required member")
        if curves is not None and jwk["crv"] not in ((curves,) if isinstance(curves, str) else curves):
            raise InvalidProof("the jwk curve does not fit the alg")
        public = {name: jwk[name] for name in members}
        cache_key = alg + json.dumps(public, sort_keys=True)
        cached = self._keys.get(cache_key)
        if cached is not None:
            return cached
        try:
            if kty == "RSA":
                bits = int.from_bytes(_b64url_decode(public["n"]), "big").bit_length()
                exponent = int.from_bytes(_b64url_decode(public["e"]), "big")
                if not MIN_RSA_BITS <= bits <= MAX_RSA_BITS or not 3 <= exponent <= MAX_RSA_EXPONENT:
                    raise InvalidProof("the RSA key size or exponent is not acceptable")
            key = jwt.PyJWK(public, algorithm="EdDSA" if alg == "Ed25519" else alg).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            if isinstance(exc, InvalidProof):
                raise
            raise InvalidProof("the jwk is not a usable public key") from None
        entry = (key, jwk_thumbprint(public))
        self._keys.put(cache_key, entry)
        return entry

    def _verified_claims(self, proof: str, key: Any, alg: str) -> dict:
        """§4.3 item 6: the signature verifies with the jwk; the payload is a strict JSON object."""
        try:
            payload = self._jws.decode_complete(proof, key=key, algorithms=[alg])["payload"]
            claims = loads_strict(payload)
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError, RecursionError):
            raise InvalidProof("the proof signature or payload is invalid") from None
        if not isinstance(claims, dict):
            raise InvalidProof("the proof payload is not a JSON object")
        return claims

    def _check_claims(self, claims: dict, now: float, method: str, uri: str,
                      access_token: str | None) -> None:
        """§4.3 items 3, 8, 9, 11, 12 (ath) on verified claims."""
        jti, htm, htu, iat = (claims.get(name) for name in ("jti", "htm", "htu", "iat"))
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
            raise InvalidProof("jti must be a string of 1 to 256 characters")
        if isinstance(iat, bool) or not isinstance(iat, (int, float)) or not math.isfinite(iat):
            raise InvalidProof("iat must be a NumericDate")
        # §4.3 item 11 / §11.1: recent (max_age), and not from the future beyond the leeway.
        if iat > now + self.leeway or iat < now - self.max_age - self.leeway:
            raise InvalidProof("the proof iat is outside the accepted window")
        # §4.3 item 8: methods are case-sensitive (RFC 9110 §9.1).
        if not isinstance(htm, str) or htm != method:
            raise InvalidProof("htm does not match the request method")
        # §4.3 item 9, with the normalisation the section recommends; query and fragment ignored.
        try:
            if not isinstance(htu, str) or normalize_uri(htu) != normalize_uri(uri):
                raise InvalidProof("htu does not match the request URI")
        except ValueError:
            raise InvalidProof("htu is not an absolute http(s) URI") from None
        # §4.3 item 12 / §7: ath is the hash of the very token presented with the proof.
        if access_token is not None:
            ath = claims.get("ath")
            if not isinstance(ath, str) or not hmac.compare_digest(
                    ath.encode("ascii", "replace"), access_token_hash(access_token).encode()):
                raise InvalidProof("ath does not match the access token")
