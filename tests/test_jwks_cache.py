"""JWKSCache and discover_jwks_uri against a real local HTTP server (threat model RL2, RL3, JW01, JW02, AD11).

The helpers at the top (FakeIssuer, SigningKey, FakeClock and their fixtures) are shared with
test_verifier.py.
"""

from __future__ import annotations

import base64
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
import httpx
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from werkzeug.serving import WSGIRequestHandler, make_server

from resource_demo.guard.jwks import (
    JWKSCache,
    JWKSUnavailable,
    MetadataError,
    UnknownKey,
    discover_jwks_uri,
    discover_metadata,
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
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)
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

    def mint(self, claims: dict[str, Any], typ: Any = "at+jwt", **headers: Any) -> str:
        """Sign ``claims`` under our issuer's usual header (``typ=None`` omits ``typ``)."""
        header = {"alg": self.alg, "kid": self.kid, **({} if typ is None else {"typ": typ}), **headers}
        return self.sign(header, claims)

    def sign(self, header: bytes | dict[str, Any], payload: bytes | dict[str, Any]) -> str:
        """A compact JWS over any header and payload (JSON unless bytes) with this key's algorithm."""
        segments = [b64(part if isinstance(part, bytes) else json.dumps(part).encode())
                    for part in (header, payload)]
        algorithm = jwt.get_algorithm_by_name(self.alg)
        signature = algorithm.sign(".".join(segments).encode(), algorithm.prepare_key(self.private))
        return ".".join([*segments, b64(signature)])


def b64(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


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
def cache_clock() -> FakeClock:
    """The cache's monotonic clock."""
    return FakeClock()


@pytest.fixture
def session() -> Iterator[httpx.Client]:
    """An HTTP client that ignores proxy settings from the environment."""
    with httpx.Client(trust_env=False) as s:
        yield s


@pytest.fixture
def make_cache(
    issuer_server: FakeIssuer, session: httpx.Client, cache_clock: FakeClock
) -> Callable[..., JWKSCache]:
    """Build a JWKSCache on the fake issuer's /jwks with the fake clock."""

    def factory(**options: Any) -> JWKSCache:
        return JWKSCache(issuer_server.url + "/jwks", session, clock=cache_clock, **options)

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


@pytest.mark.security("JW01", "JW02", "AD11")
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
    with caplog.at_level(logging.WARNING, logger="resource_demo.guard.jwks"):
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
    assert cache.refresh()
    assert cache.kids == {"ec-1"}


# --------------------------------------------------------------------------- bad documents (RL3)


def padded_set(keys: dict[str, SigningKey], pad_chunks: int) -> Callable[[], Iterator[bytes]]:
    """A good JWK Set streamed with ``pad_chunks`` × 64 KiB of padding: only the size cap refuses it."""

    def chunks() -> Iterator[bytes]:
        yield json.dumps({"keys": [k.public_jwk for k in keys.values()]})[:-1].encode() + b', "pad": "'
        for _ in range(pad_chunks):
            yield b"x" * 65536
        yield b'"}'

    return chunks


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
    pytest.param(lambda keys: Route(body=b"".join(padded_set(keys, 80)())), id="5MB-content-length"),
    pytest.param(lambda keys: Route(chunks=padded_set(keys, 80)), id="5MB-chunked"),
]


@pytest.mark.parametrize("bad_route", BAD_DOCUMENTS)
def test_RL3_bad_refresh_keeps_last_good_set(bad_route, make_cache, issuer_server, cache_clock, keys, caplog):
    cache = make_cache()
    assert cache.get_key("rsa-1")
    issuer_server.set("/jwks", bad_route(keys))
    cache_clock.advance(301)
    with caplog.at_level(logging.WARNING, logger="resource_demo.guard.jwks"):
        assert cache.get_key("rsa-1").algorithm_name == "RS256"
        assert cache.get_key("ed-1").algorithm_name == "EdDSA"
    assert issuer_server.hits["/jwks"] == 2
    assert issuer_server.hits["/elsewhere"] == 0  # redirects are not followed
    assert "JWKS refresh" in caplog.text and "keeping 4 keys" in caplog.text


@pytest.mark.security("RL3", "AD11")
@pytest.mark.parametrize("bad_route", BAD_DOCUMENTS)
def test_RL3_bad_document_on_cold_start_is_unavailable(bad_route, make_cache, issuer_server, keys):
    issuer_server.set("/jwks", bad_route(keys))
    with pytest.raises(JWKSUnavailable):
        make_cache().get_key("rsa-1")


@pytest.mark.security("AD11")
def test_size_cap_is_a_limit_not_a_guess(make_cache, issuer_server, keys):
    issuer_server.set("/jwks", Route(chunks=padded_set(keys, 15)))  # just under 1 MiB
    assert make_cache().get_key("rsa-1")
    issuer_server.set("/jwks", Route(chunks=padded_set(keys, 17)))  # just over
    with pytest.raises(JWKSUnavailable):
        make_cache().get_key("rsa-1")


def test_RL3_cold_start_down_then_recovery_without_hot_loop(make_cache, issuer_server, cache_clock,
                                                            jwks_document):
    issuer_server.set("/jwks", Route(status=503))
    cache = make_cache()
    for _ in range(50):
        with pytest.raises(JWKSUnavailable):
            cache.get_key("rsa-1")
    assert issuer_server.hits["/jwks"] == 1  # failures wait out the cooldown too
    assert not cache.refresh()
    issuer_server.set_json("/jwks", jwks_document)
    cache_clock.advance(10)
    assert cache.get_key("rsa-1").algorithm_name == "RS256"
    assert issuer_server.hits["/jwks"] == 2


def test_RL3_stale_keys_served_up_to_max_staleness(make_cache, issuer_server, cache_clock, jwks_document):
    cache = make_cache()
    cache.get_key("rsa-1")
    issuer_server.set("/jwks", Route(status=500))
    cache_clock.advance(24 * 3600 - 1)
    assert cache.get_key("rsa-1")
    cache_clock.advance(1)
    with pytest.raises(JWKSUnavailable):
        cache.get_key("rsa-1")
    issuer_server.set_json("/jwks", jwks_document)
    cache_clock.advance(10)
    assert cache.get_key("rsa-1")


def test_RL3_unknown_kid_while_issuer_down_is_unavailable_not_unknown(make_cache, issuer_server, cache_clock):
    cache = make_cache()
    cache.get_key("rsa-1")
    issuer_server.set("/jwks", Route(status=500))
    cache_clock.advance(11)
    with pytest.raises(JWKSUnavailable):
        cache.get_key("rotated-while-down")
    assert cache.get_key("rsa-1")  # known keys keep working


def _drip_feed() -> Iterator[bytes]:
    for _ in range(100):
        yield b" "
        time.sleep(0.1)


@pytest.mark.parametrize("route", [
    pytest.param(Route(delay=10.0), id="no-response"),
    pytest.param(Route(chunks=_drip_feed), id="drip-feed"),
])
def test_RL3_slow_server_hits_the_timeout(route, make_cache, issuer_server):
    issuer_server.set("/jwks", route)
    cache = make_cache(timeout=0.5)
    started = time.monotonic()
    with pytest.raises(JWKSUnavailable):
        cache.get_key("rsa-1")
    assert time.monotonic() - started < 2.0


def test_RL3_connection_refused(session, cache_clock):
    server = FakeIssuer()
    server.close()
    cache = JWKSCache(server.url + "/jwks", session, clock=cache_clock, timeout=0.5)
    with pytest.raises(JWKSUnavailable):
        cache.get_key("rsa-1")


# --------------------------------------------------------------------------- refetch policy (RL2, RL3)


def test_RL3_unknown_kid_storm_fetches_at_most_once_per_cooldown(make_cache, issuer_server, cache_clock):
    cache = make_cache()
    cache.get_key("rsa-1")
    for round_ in range(3):
        for i in range(1000):
            with pytest.raises(UnknownKey):
                cache.get_key(f"forged-{round_}-{i}")
        assert issuer_server.hits["/jwks"] == 1 + round_
        cache_clock.advance(10)


def test_RL3_unknown_kid_storm_across_threads(make_cache, issuer_server, cache_clock):
    cache = make_cache()
    cache.get_key("rsa-1")
    cache_clock.advance(10)

    def attempt(i: int) -> str:
        try:
            cache.get_key(f"forged-{i}")
        except UnknownKey:
            return "unknown"
        return "found"

    with ThreadPoolExecutor(max_workers=32) as pool:
        outcomes = Counter(pool.map(attempt, range(1000)))
    assert outcomes == {"unknown": 1000}
    assert issuer_server.hits["/jwks"] == 2
    assert cache.get_key("rsa-1")  # valid lookups unaffected


def test_cold_start_herd_makes_one_request(make_cache, issuer_server, jwks_document):
    issuer_server.set("/jwks", Route(body=json.dumps(jwks_document).encode(), delay=0.3))
    cache = make_cache()
    with ThreadPoolExecutor(max_workers=50) as pool:
        algs = set(pool.map(lambda _: cache.get_key("ec-1").algorithm_name, range(50)))
    assert algs == {"ES256"}
    assert issuer_server.hits["/jwks"] == 1


def test_RL2_rotated_key_found_after_cooldown(make_cache, issuer_server, cache_clock, jwks_document, keys):
    cache = make_cache()
    cache.get_key("rsa-1")
    issuer_server.set_json("/jwks", {"keys": [*jwks_document["keys"], keys["rsa2"].public_jwk]})
    with pytest.raises(UnknownKey):
        cache.get_key("rsa-2")  # within the cooldown of the last fetch
    cache_clock.advance(10)
    assert cache.get_key("rsa-2").algorithm_name == "RS256"
    assert issuer_server.hits["/jwks"] == 2


def test_JW05_removed_key_refused_after_one_refresh(make_cache, issuer_server, cache_clock, keys):
    cache = make_cache()
    cache.get_key("rsa-1")
    issuer_server.set_json("/jwks", {"keys": [keys["ec"].public_jwk]})
    cache_clock.advance(299)
    assert cache.get_key("rsa-1")
    cache_clock.advance(1)
    with pytest.raises(UnknownKey):
        cache.get_key("rsa-1")
    assert issuer_server.hits["/jwks"] == 2


@pytest.mark.parametrize(("cache_control", "max_age"), [
    (None, 300),
    ("max-age=60", 60),
    ("public, max-age=120, must-revalidate", 120),
    ('max-age="90"', 90),
    ("max-age=5", 30),
    ("max-age=99999999", 3600),
    ("no-store", 30),
    ("no-cache, max-age=600", 30),
    ("max-age=abc", 300),
    ("s-maxage=60", 300),
])
def test_refresh_after_max_age(cache_control, max_age, make_cache, issuer_server, cache_clock, jwks_document):
    headers = {"Cache-Control": cache_control} if cache_control else {}
    issuer_server.set_json("/jwks", jwks_document, **headers)
    cache = make_cache()
    cache.get_key("rsa-1")
    cache_clock.advance(max_age - 1)
    cache.get_key("rsa-1")
    assert issuer_server.hits["/jwks"] == 1
    cache_clock.advance(1)
    cache.get_key("rsa-1")
    assert issuer_server.hits["/jwks"] == 2


def test_refresh_reports_usable_keys(make_cache, issuer_server):
    cache = make_cache()
    assert cache.refresh()
    assert cache.refresh()  # within the cooldown: no second request, keys still usable
    assert issuer_server.hits["/jwks"] == 1


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/jwks", "/jwks", "gopher://x/",
                                 "http:///jwks"])
def test_only_http_urls_are_fetched(url):
    with pytest.raises(ValueError):
        JWKSCache(url)


# --------------------------------------------------------------------------- RFC 8414 discovery


def test_discover_jwks_uri(issuer_server, session):
    issuer_server.set_json("/.well-known/oauth-authorization-server",
                           {"issuer": issuer_server.url, "jwks_uri": issuer_server.url + "/jwks"})
    assert discover_jwks_uri(issuer_server.url, session, timeout=1) == issuer_server.url + "/jwks"


def test_discover_metadata_returns_the_whole_document(issuer_server, session):
    document = {"issuer": issuer_server.url, "jwks_uri": issuer_server.url + "/jwks",
                "introspection_endpoint": issuer_server.url + "/oauth2/introspect"}
    issuer_server.set_json("/.well-known/oauth-authorization-server", document)
    assert discover_metadata(issuer_server.url, session) == document


def test_discover_inserts_well_known_before_the_issuer_path(issuer_server, session):
    issuer = issuer_server.url + "/tenant"
    issuer_server.set_json("/.well-known/oauth-authorization-server/tenant",
                           {"issuer": issuer, "jwks_uri": issuer + "/jwks"})
    assert discover_jwks_uri(issuer, session) == issuer + "/jwks"


@pytest.mark.security("AD11")
@pytest.mark.parametrize("metadata", [
    pytest.param(lambda url: {"issuer": url + "/", "jwks_uri": url + "/jwks"}, id="issuer-trailing-slash"),
    pytest.param(lambda url: {"issuer": url.upper(), "jwks_uri": url + "/jwks"}, id="issuer-case"),
    pytest.param(lambda url: {"issuer": "https://evil.example", "jwks_uri": url + "/jwks"},
                 id="issuer-other"),
    pytest.param(lambda url: {"issuer": [url], "jwks_uri": url + "/jwks"}, id="issuer-array"),
    pytest.param(lambda url: {"jwks_uri": url + "/jwks"}, id="issuer-missing"),
    pytest.param(lambda url: {"issuer": url}, id="jwks-uri-missing"),
    pytest.param(lambda url: {"issuer": url, "jwks_uri": ["x"]}, id="jwks-uri-array"),
    pytest.param(lambda url: {"issuer": url, "jwks_uri": "file:///etc/passwd"}, id="jwks-uri-file"),
    pytest.param(lambda url: {"issuer": url, "jwks_uri": "/jwks"}, id="jwks-uri-relative"),
    pytest.param(lambda url: [url], id="not-an-object"),
])
def test_discover_refuses_wrong_metadata(metadata, issuer_server, session):
    issuer_server.set_json("/.well-known/oauth-authorization-server", metadata(issuer_server.url))
    with pytest.raises(MetadataError):
        discover_jwks_uri(issuer_server.url, session)


@pytest.mark.security("AD11")
def test_discover_refuses_html(issuer_server, session):
    issuer_server.set("/.well-known/oauth-authorization-server", Route(body=b"<html></html>"))
    with pytest.raises(MetadataError):
        discover_jwks_uri(issuer_server.url, session)


@pytest.mark.security("AD11")
@pytest.mark.parametrize("route", [
    pytest.param(lambda keys: Route(status=500), id="http-500"),
    pytest.param(lambda keys: Route(status=404), id="http-404"),
    pytest.param(lambda keys: Route(chunks=padded_set(keys, 80)), id="5MB"),
])
def test_discover_unreachable_metadata_is_unavailable(route, issuer_server, session, keys):
    issuer_server.set("/.well-known/oauth-authorization-server", route(keys))
    with pytest.raises(JWKSUnavailable):
        discover_jwks_uri(issuer_server.url, session)
