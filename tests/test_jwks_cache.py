"""JWKSCache and discover_jwks_uri against a real local HTTP server (SECURITY.md RL2, RL3, JW01, JW02, AD11).

The helpers at the top (FakeIssuer, SigningKey, FakeClock and their fixtures) are shared with
test_verifier.py.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from werkzeug.serving import WSGIRequestHandler, make_server

from resource_demo.jwks import (
    JWKSCache,
    JWKSUnavailable,
    MetadataError,
    UnknownKey,
    discover_jwks_uri,
)

# --------------------------------------------------------------------------- shared helpers


@dataclass
class Route:
    """What the fake server answers on one path."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the status line (cut short at teardown)
    chunks: Callable[[], Iterator[bytes]] | None = None  # streamed body without Content-Length


class _QuietHandler(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:
        pass


class FakeIssuer:
    """An HTTP server on 127.0.0.1:0 in a thread; tests set each path's answer and count requests."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._server = make_server(
            "127.0.0.1", 0, self._app, threaded=True, request_handler=_QuietHandler
        )
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def set(self, path: str, route: Route) -> None:
        """Answer ``path`` with ``route`` from now on."""
        self.routes[path] = route

    def set_json(self, path: str, document: Any, **headers: str) -> None:
        """Answer ``path`` with a JSON document."""
        self.set(path, Route(body=json.dumps(document).encode(),
                             headers={"Content-Type": "application/json", **headers}))

    @property
    def total_hits(self) -> int:
        """All requests served so far."""
        return sum(self.hits.values())

    def close(self) -> None:
        """Let any stalled response go and stop the server."""
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        path = environ["PATH_INFO"]
        with self._lock:
            self.hits[path] += 1
        route = self.routes.get(path, Route(status=404, body=b"not found"))
        if route.delay:
            self.release.wait(route.delay)
        headers = dict(route.headers)
        if route.chunks is None:
            headers.setdefault("Content-Length", str(len(route.body)))
        start_response(f"{route.status} X", list(headers.items()))
        return route.chunks() if route.chunks else iter([route.body])


@dataclass
class SigningKey:
    """A private key with its kid, algorithm and public JWK."""

    kid: str
    alg: str
    private: Any
    public_jwk: dict[str, Any]

    def mint(self, claims: dict[str, Any], typ: str | None = "at+jwt", **headers: Any) -> str:
        """Sign ``claims`` with this key (``typ=None`` omits the header)."""
        return jwt.encode(claims, self.private, algorithm=self.alg,
                          headers={"kid": self.kid, "typ": typ, **headers})


def public_jwk(private: Any, **members: Any) -> dict[str, Any]:
    """The public JWK of a private key, plus ``members``."""
    public = private.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = jwt.algorithms.OKPAlgorithm.to_jwk(public, as_dict=True)
    return {**jwk, **members}


def private_jwk(private: Any, **members: Any) -> dict[str, Any]:
    """The full private JWK (``d``, ``p``, ``q``…) of a key, plus ``members``."""
    if isinstance(private, rsa.RSAPrivateKey):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private, as_dict=True)
    elif isinstance(private, ec.EllipticCurvePrivateKey):
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(private, as_dict=True)
    else:
        jwk = jwt.algorithms.OKPAlgorithm.to_jwk(private, as_dict=True)
    return {**jwk, **members}


def _signing_key(kid: str, alg: str, private: Any) -> SigningKey:
    return SigningKey(kid, alg, private, public_jwk(private, kid=kid, alg=alg, use="sig"))


class FakeClock:
    """An injectable clock the test moves by hand."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


@pytest.fixture(scope="session")
def keys() -> dict[str, SigningKey]:
    """The issuer's keys (one per algorithm) and an attacker's."""
    return {
        "rsa": _signing_key("rsa-1", "RS256", rsa.generate_private_key(65537, 2048)),
        "rsa2": _signing_key("rsa-2", "RS256", rsa.generate_private_key(65537, 2048)),
        "ec": _signing_key("ec-1", "ES256", ec.generate_private_key(ec.SECP256R1())),
        "ec384": _signing_key("ec384-1", "ES384", ec.generate_private_key(ec.SECP384R1())),
        "ed": _signing_key("ed-1", "EdDSA", ed25519.Ed25519PrivateKey.generate()),
        "attacker": _signing_key("attacker-1", "RS256", rsa.generate_private_key(65537, 2048)),
    }


@pytest.fixture
def jwks_document(keys: dict[str, SigningKey]) -> dict[str, Any]:
    """The issuer's published set: every key but the attacker's and rsa-2 (not yet published)."""
    return {"keys": [keys[n].public_jwk for n in ("rsa", "ec", "ec384", "ed")]}


@pytest.fixture
def issuer_server(jwks_document: dict[str, Any]) -> Iterator[FakeIssuer]:
    """A running fake issuer serving ``jwks_document`` at /jwks."""
    server = FakeIssuer()
    server.set_json("/jwks", jwks_document)
    yield server
    server.close()


@pytest.fixture
def clock() -> FakeClock:
    """The cache's monotonic clock."""
    return FakeClock()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """An HTTP session that ignores proxy settings from the environment."""
    with requests.Session() as s:
        s.trust_env = False
        yield s


@pytest.fixture
def make_cache(
    issuer_server: FakeIssuer, session: requests.Session, clock: FakeClock
) -> Callable[..., JWKSCache]:
    """Build a JWKSCache on the fake issuer's /jwks with the fake clock."""

    def factory(**options: Any) -> JWKSCache:
        return JWKSCache(issuer_server.url + "/jwks", session, clock=clock, **options)

    return factory


# --------------------------------------------------------------------------- key parsing


def test_keys_parsed_once_and_cached_by_kid(make_cache, issuer_server, keys):
    cache = make_cache()
    for _ in range(100):
        for name in ("rsa", "ec", "ec384", "ed"):
            key = cache.get_key(keys[name].kid)
            assert key.algorithm_name == keys[name].alg
    assert cache.kids == {"rsa-1", "ec-1", "ec384-1", "ed-1"}
    assert issuer_server.hits["/jwks"] == 1
    assert cache.get_key("rsa-1") is cache.get_key("rsa-1")


def _rsa(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, bits)


BAD_JWKS = [
    pytest.param(lambda: {"kty": "oct", "kid": "bad", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}, id="oct"),
    pytest.param(lambda: public_jwk(_rsa(1024), kid="bad"), id="rsa-1024"),
    pytest.param(lambda: private_jwk(_rsa(), kid="bad"), id="rsa-private"),
    pytest.param(lambda: private_jwk(ec.generate_private_key(ec.SECP256R1()), kid="bad"), id="ec-private"),
    pytest.param(lambda: private_jwk(ed25519.Ed25519PrivateKey.generate(), kid="bad"), id="okp-private"),
    pytest.param(lambda: {**public_jwk(_rsa(), kid="bad"), "d": "AQAB"}, id="rsa-with-d-only"),
    pytest.param(lambda: public_jwk(ec.generate_private_key(ec.SECP521R1()), kid="bad"), id="ec-p521"),
    pytest.param(lambda: public_jwk(ec.generate_private_key(ec.SECP256K1()), kid="bad"), id="ec-secp256k1"),
    pytest.param(lambda: public_jwk(ed448.Ed448PrivateKey.generate(), kid="bad"), id="okp-ed448"),
    pytest.param(lambda: public_jwk(_rsa(), kid="bad", use="enc"), id="use-enc"),
    pytest.param(lambda: public_jwk(_rsa(), kid="bad", key_ops=["encrypt"]), id="key-ops-encrypt"),
    pytest.param(lambda: public_jwk(_rsa(), kid="bad", alg="HS256"), id="rsa-alg-hs256"),
    pytest.param(lambda: public_jwk(_rsa(), kid="bad", alg="ES256"), id="rsa-alg-es256"),
    pytest.param(lambda: public_jwk(_rsa(), kid="bad", alg="none"), id="rsa-alg-none"),
    pytest.param(lambda: {**public_jwk(_rsa(), kid="bad"), "n": "!!!"}, id="rsa-bad-modulus"),
    pytest.param(lambda: {**public_jwk(_rsa(), kid="bad"), "n": 12345}, id="rsa-modulus-not-string"),
    pytest.param(lambda: {k: v for k, v in public_jwk(_rsa()).items() if k != "kty"} | {"kid": "bad"},
                 id="no-kty"),
    pytest.param(lambda: public_jwk(_rsa(), kid=7), id="kid-not-string"),
    pytest.param(lambda: "not-an-object", id="not-an-object"),
]


@pytest.mark.parametrize("make_bad", BAD_JWKS)
def test_JW01_JW02_unusable_keys_are_skipped(make_bad, make_cache, issuer_server, keys):
    issuer_server.set_json("/jwks", {"keys": [make_bad(), keys["rsa"].public_jwk]})
    cache = make_cache()
    assert cache.get_key("rsa-1").algorithm_name == "RS256"
    assert cache.kids == {"rsa-1"}
    with pytest.raises(UnknownKey):
        cache.get_key("bad")


def test_JW01_private_members_are_logged(make_cache, issuer_server, keys, caplog):
    issuer_server.set_json("/jwks", {"keys": [private_jwk(keys["ec"].private, kid="leak"),
                                              keys["rsa"].public_jwk]})
    with caplog.at_level(logging.WARNING, logger="resource_demo.jwks"):
        make_cache().get_key("rsa-1")
    assert "private members" in caplog.text


def test_key_alg_binds_the_key_to_one_algorithm(make_cache, issuer_server, keys):
    issuer_server.set_json("/jwks", {"keys": [public_jwk(keys["rsa"].private, kid="ps", alg="PS256"),
                                              public_jwk(keys["rsa2"].private, kid="no-alg")]})
    cache = make_cache()
    assert cache.get_key("ps").algorithm_name == "PS256"
    assert cache.get_key("no-alg").algorithm_name == "RS256"


def test_duplicate_kids_are_refused(make_cache, issuer_server, keys):
    issuer_server.set_json("/jwks", {"keys": [
        keys["rsa"].public_jwk, public_jwk(keys["rsa2"].private, kid="rsa-1"), keys["ec"].public_jwk]})
    cache = make_cache()
    assert cache.kids == {"ec-1"}


# --------------------------------------------------------------------------- bad documents (RL3)


def _five_megabytes() -> Iterator[bytes]:
    yield b'{"keys": [], "pad": "'
    for _ in range(80):
        yield b"x" * 65536
    yield b'"}'


def _private_set(keys: dict[str, SigningKey]) -> dict[str, Any]:
    return {"keys": [private_jwk(k.private, kid=k.kid) for k in keys.values()]}


BAD_DOCUMENTS = [
    pytest.param(lambda keys: Route(status=500, body=b"oops"), id="http-500"),
    pytest.param(lambda keys: Route(status=404), id="http-404"),
    pytest.param(lambda keys: Route(status=302, headers={"Location": "/elsewhere"}), id="redirect"),
    pytest.param(lambda keys: Route(body=b"<html><body>Maintenance</body></html>",
                                    headers={"Content-Type": "text/html"}), id="html"),
    pytest.param(lambda keys: Route(body=b"{}"), id="empty-object"),
    pytest.param(lambda keys: Route(body=b'{"keys": []}'), id="empty-keys"),
    pytest.param(lambda keys: Route(body=b"[]"), id="array"),
    pytest.param(lambda keys: Route(body=b'{"keys": {}}'), id="keys-object"),
    pytest.param(lambda keys: Route(body=b'{"keys": NaN}'), id="keys-nan"),
    pytest.param(lambda keys: Route(body=b'{"keys": [{"kty": "oct", "kid": "k", "k": "AAAA"}]}'),
                 id="only-oct"),
    pytest.param(lambda keys: Route(body=json.dumps(_private_set(keys)).encode()), id="only-private"),
    pytest.param(lambda keys: Route(body=b'{"keys": [' + b"[" * 3000 + b"]" * 3000 + b"]}"),
                 id="deeply-nested"),
    pytest.param(lambda keys: Route(body=b'{"keys": [\xff\xfe]}'), id="not-utf8"),
    pytest.param(lambda keys: Route(body=b'{"keys": [{"kty": "RSA"'), id="truncated"),
    pytest.param(lambda keys: Route(body=b"".join(_five_megabytes())), id="5MB-content-length"),
    pytest.param(lambda keys: Route(chunks=_five_megabytes), id="5MB-chunked"),
]


@pytest.mark.parametrize("bad_route", BAD_DOCUMENTS)
def test_RL3_bad_refresh_keeps_last_good_set(bad_route, make_cache, issuer_server, clock, keys, caplog):
    cache = make_cache()
    assert cache.get_key("rsa-1")
    issuer_server.set("/jwks", bad_route(keys))
    clock.advance(301)
    with caplog.at_level(logging.WARNING, logger="resource_demo.jwks"):
        assert cache.get_key("rsa-1").algorithm_name == "RS256"
        assert cache.get_key("ed-1").algorithm_name == "EdDSA"
    assert issuer_server.hits["/jwks"] == 2
    assert issuer_server.hits["/elsewhere"] == 0  # redirects are not followed
    assert "JWKS refresh" in caplog.text and "keeping 4 keys" in caplog.text


@pytest.mark.parametrize("bad_route", BAD_DOCUMENTS)
def test_RL3_bad_document_on_cold_start_is_unavailable(bad_route, make_cache, issuer_server, keys):
    issuer_server.set("/jwks", bad_route(keys))
    with pytest.raises(JWKSUnavailable):
        make_cache().get_key("rsa-1")


def test_RL3_cold_start_down_then_recovery_without_hot_loop(make_cache, issuer_server, clock, jwks_document):
    issuer_server.set("/jwks", Route(status=503))
    cache = make_cache()
    for _ in range(50):
        with pytest.raises(JWKSUnavailable):
            cache.get_key("rsa-1")
    assert issuer_server.hits["/jwks"] == 1  # failures wait out the cooldown too
    assert not cache.refresh()
    issuer_server.set_json("/jwks", jwks_document)
    clock.advance(10)
    assert cache.get_key("rsa-1").algorithm_name == "RS256"
    assert issuer_server.hits["/jwks"] == 2


def test_RL3_stale_keys_served_up_to_max_staleness(make_cache, issuer_server, clock, jwks_document):
    cache = make_cache()
    cache.get_key("rsa-1")
    issuer_server.set("/jwks", Route(status=500))
    clock.advance(24 * 3600 - 1)
    assert cache.get_key("rsa-1")
    clock.advance(1)
    with pytest.raises(JWKSUnavailable):
        cache.get_key("rsa-1")
    issuer_server.set_json("/jwks", jwks_document)
    clock.advance(10)
    assert cache.get_key("rsa-1")


def test_RL3_unknown_kid_while_issuer_down_is_unavailable_not_unknown(make_cache, issuer_server, clock):
    cache = make_cache()
    cache.get_key("rsa-1")
    issuer_server.set("/jwks", Route(status=500))
    clock.advance(11)
    with pytest.raises(JWKSUnavailable):
        cache.get_key("rotated-while-down")
    assert cache.get_key("rsa-1")  # known keys keep working


@pytest.mark.parametrize("route", [
    pytest.param(Route(delay=10.0), id="no-response"),
    pytest.param(Route(chunks=lambda: (b" " for _ in range(100) if not time.sleep(0.1))), id="drip-feed"),
])
def test_RL3_slow_server_hits_the_timeout(route, make_cache, issuer_server):
    issuer_server.set("/jwks", route)
    cache = make_cache(timeout=0.5)
    started = time.monotonic()
    with pytest.raises(JWKSUnavailable):
        cache.get_key("rsa-1")
    assert time.monotonic() - started < 2.0


def test_RL3_issuer_unreachable(session, clock):
    with FakeIssuer() as_ if False else _closed_port() as url:
        cache = JWKSCache(url + "/jwks", session, clock=clock, timeout=0.5)
        with pytest.raises(JWKSUnavailable):
            cache.get_key("rsa-1")
