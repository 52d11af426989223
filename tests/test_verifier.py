"""AccessTokenVerifier: the JWT battery and RFC 9068 §4 rules (threat model RS01–RS10, items 1, 2, 4, 18).

Keys are served over real HTTP by the fake issuer from test_jwks_cache.py.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from test_jwks_cache import (  # noqa: F401  (fixtures)
    FakeClock,
    FakeIssuer,
    Route,
    SigningKey,
    b64,
    cache_clock,
    issuer_server,
    jwks_document,
    keys,
    make_cache,
    session,
)

from resource_demo.guard.jwks import JWKSUnavailable
from resource_demo.guard.verifier import AccessTokenVerifier, InvalidToken

ISSUER = "https://as.example.com"
AUDIENCE = "https://api.example.com"
NOW = 1_800_000_000
MISSING = object()


def make_claims(**changes: Any) -> dict[str, Any]:
    """Valid RFC 9068 claims at NOW; a change to MISSING removes the claim."""
    claims = {
        "iss": ISSUER, "sub": "client-1", "client_id": "client-1", "aud": AUDIENCE,
        "exp": NOW + 300, "iat": NOW, "nbf": NOW, "jti": "jti-1", "scope": "sms:message:send",
    }
    for name, value in changes.items():
        if value is MISSING:
            del claims[name]
        else:
            claims[name] = value
    return claims


def to_bytes(part: bytes | dict[str, Any]) -> bytes:
    return part if isinstance(part, bytes) else json.dumps(part).encode()


def header_for(key: SigningKey, **changes: Any) -> dict[str, Any]:
    """The JOSE header our issuer would send for ``key``."""
    return {"alg": key.alg, "typ": "at+jwt", "kid": key.kid, **changes}


def sign_hmac(secret: bytes, kid: str) -> str:
    """An HS256 token keyed with ``secret`` (PyJWT itself refuses to mint these with a PEM)."""
    header = {"alg": "HS256", "typ": "at+jwt", "kid": kid}
    signing_input = f"{b64(to_bytes(header))}.{b64(to_bytes(make_claims()))}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


@pytest.fixture
def wall_clock() -> FakeClock:
    """The verifier's wall clock, at NOW."""
    return FakeClock(NOW)


@pytest.fixture
def make_verifier(make_cache, wall_clock) -> Callable[..., AccessTokenVerifier]:
    """Build a verifier for ISSUER/AUDIENCE on the fake issuer's JWKS."""

    def factory(**options: Any) -> AccessTokenVerifier:
        options.setdefault("audiences", AUDIENCE)
        return AccessTokenVerifier(ISSUER, keys=make_cache(), clock=wall_clock, **options)

    return factory


@pytest.fixture
def verifier(make_verifier) -> AccessTokenVerifier:
    """The default verifier (RS256, ES256, EdDSA; 30 s leeway)."""
    return make_verifier()


@pytest.fixture
def canary() -> Iterator[FakeIssuer]:
    """An attacker's server: it serves the attacker's keys and must never be asked for them."""
    server = FakeIssuer()
    yield server
    server.close()


def attacker_certificate(key: SigningKey) -> str:
    """A self-signed certificate for the attacker's key, base64 DER as in ``x5c``."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "as.example.com")])
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.private.public_key()).serial_number(1)
        .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=36500))
        .sign(key.private, hashes.SHA256())
    )
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


# --------------------------------------------------------------------------- accepted tokens


@pytest.mark.parametrize("name", ["rsa", "ec", "ed"])
def test_valid_token_each_default_algorithm(name, verifier, keys):
    claims = verifier.verify(keys[name].mint(make_claims()))
    assert claims == make_claims()


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "At+Jwt", "application/at+jwt", "Application/AT+JWT"])
def test_RS01_typ_accepted_case_insensitively(typ, verifier, keys):
    assert verifier.verify(keys["rsa"].mint(make_claims(), typ=typ))["jti"] == "jti-1"


# --------------------------------------------------------------------------- RS01 typ


@pytest.mark.parametrize("typ", [
    None, "JWT", "jwt", "application/jwt", "dpop+jwt", "secevent+jwt", "at+jwt ", " at+jwt",
    "at+jwt;charset=utf-8", "xat+jwt", "application/at+jwt+x", "", 1, ["at+jwt"], {"typ": "at+jwt"},
])
def test_RS01_RS10_wrong_typ_refused(typ, verifier, keys):
    with pytest.raises(InvalidToken, match="typ"):
        verifier.verify(keys["rsa"].mint(make_claims(), typ=typ))


# --------------------------------------------------------------------------- RS04 algorithms and keys


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_RS04_alg_none_refused(alg, verifier, keys):
    header = b64(to_bytes(header_for(keys["rsa"], alg=alg)))
    token = f"{header}.{b64(to_bytes(make_claims()))}."
    with pytest.raises(InvalidToken):
        verifier.verify(token)


@pytest.mark.parametrize("secret", [
    pytest.param(lambda key: key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), id="public-pem"),
    pytest.param(lambda key: key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1), id="public-pkcs1"),
    pytest.param(lambda key: json.dumps(key.public_jwk).encode(), id="public-jwk-json"),
    pytest.param(lambda key: key.public_jwk["n"].encode(), id="modulus"),
])
def test_item1_hmac_with_the_public_key_refused(secret, verifier, keys):
    with pytest.raises(InvalidToken, match="alg"):
        verifier.verify(sign_hmac(secret(keys["rsa"]), "rsa-1"))


@pytest.mark.parametrize("algorithms", [("none",), ("HS256",), ("RS256", "HS256"), ("RS256", "none"), (),
                                        ("ES512",)])
def test_RS04_allowlist_is_asymmetric_only(algorithms, make_cache):
    with pytest.raises(ValueError):
        AccessTokenVerifier(ISSUER, AUDIENCE, make_cache(), algorithms=algorithms)


def test_RS04_one_algorithm_per_key(make_verifier, keys):
    verifier = make_verifier(algorithms=("RS256", "RS384", "PS256", "ES256"))
    rsa = keys["rsa"]
    for alg in ("RS384", "PS256"):  # same RSA key, another algorithm the allowlist has
        token = rsa.sign({"alg": alg, "kid": rsa.kid, "typ": "at+jwt"}, make_claims())
        with pytest.raises(InvalidToken, match="does not match the key"):
            verifier.verify(token)
    ec_token = keys["ec"].mint(make_claims(), kid="rsa-1")  # ES256 header, RSA key id
    with pytest.raises(InvalidToken, match="does not match the key"):
        verifier.verify(ec_token)


def test_RS04_algorithm_outside_allowlist_refused_even_with_a_published_key(verifier, make_verifier, keys):
    token = keys["ec384"].mint(make_claims())
    with pytest.raises(InvalidToken, match="alg"):
        verifier.verify(token)
    assert make_verifier(algorithms=("ES384",)).verify(token)["sub"] == "client-1"
    with pytest.raises(InvalidToken, match="alg"):
        make_verifier(algorithms=("RS256",)).verify(keys["ed"].mint(make_claims()))


def test_RS04_forged_kid_signature_refused(verifier, keys):
    forged = keys["attacker"].mint(make_claims(), kid="rsa-1")
    with pytest.raises(InvalidToken, match="Signature"):
        verifier.verify(forged)


def test_RS04_unknown_kid_refused(verifier, keys):
    with pytest.raises(InvalidToken, match="no usable key"):
        verifier.verify(keys["attacker"].mint(make_claims()))
    with pytest.raises(InvalidToken, match="no usable key"):
        verifier.verify(keys["rsa2"].mint(make_claims()))  # real issuer key, not published


@pytest.mark.parametrize("kid", [MISSING, None, "", 7, ["rsa-1"]])
def test_kid_required(kid, verifier, keys):
    header = header_for(keys["rsa"])
    if kid is MISSING:
        del header["kid"]
    else:
        header["kid"] = kid
    with pytest.raises(InvalidToken, match="kid"):
        verifier.verify(keys["rsa"].sign(header, make_claims()))


def test_RS04_tampered_payload_refused(verifier, keys):
    header, _, signature = keys["rsa"].mint(make_claims()).split(".")
    payload = b64(to_bytes(make_claims(scope="message:send account-management:manage")))
    with pytest.raises(InvalidToken, match="Signature"):
        verifier.verify(f"{header}.{payload}.{signature}")


def test_RS04_tampered_signature_refused(verifier, keys):
    token = keys["ec"].mint(make_claims())
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(InvalidToken):
        verifier.verify(flipped)


# --------------------------------------------------------------------------- RS08 header keys ignored


@pytest.mark.parametrize("kid", ["attacker-1", "rsa-1"])
def test_item1_RS08_embedded_jwk_not_trusted(kid, verifier, keys):
    attacker = keys["attacker"]
    token = attacker.mint(make_claims(), kid=kid, jwk=attacker.public_jwk)
    with pytest.raises(InvalidToken):
        verifier.verify(token)


@pytest.mark.parametrize("kid", ["attacker-1", "rsa-1"])
def test_RS08_x5c_not_trusted(kid, verifier, keys):
    attacker = keys["attacker"]
    token = attacker.mint(make_claims(), kid=kid, x5c=[attacker_certificate(attacker)])
    with pytest.raises(InvalidToken):
        verifier.verify(token)


@pytest.mark.parametrize("member", ["jku", "x5u"])
@pytest.mark.parametrize("kid", ["attacker-1", "rsa-1"])
def test_RS08_AD08_jku_x5u_never_fetched(member, kid, verifier, keys, canary):
    canary.set_json("/keys", {"keys": [keys["attacker"].public_jwk]})
    token = keys["attacker"].mint(make_claims(), kid=kid, **{member: canary.url + "/keys"})
    with pytest.raises(InvalidToken):
        verifier.verify(token)
    # A genuine token carrying the same header is accepted: the member is ignored, not obeyed.
    assert verifier.verify(keys["rsa"].mint(make_claims(), **{member: canary.url + "/keys"}))
    assert canary.total_hits == 0


# --------------------------------------------------------------------------- RS09 crit


@pytest.mark.parametrize("extra", [
    {"crit": ["exp"], "exp": NOW + 300},
    {"crit": ["b64"], "b64": True},
    {"crit": []},
    {"crit": "exp"},
    {"crit": None},
])
def test_RS09_crit_refused(extra, verifier, keys):
    with pytest.raises(InvalidToken, match="crit"):
        verifier.verify(keys["rsa"].sign(header_for(keys["rsa"], **extra), make_claims()))


# --------------------------------------------------------------------------- RS02 iss


BAD_ISS = [
    "https://as.example.org", "https://as.example", "as.example.com", "https://as.example.com.evil",
    "https://as.example.com/", "https://as.example.com/tenant", "HTTPS://AS.EXAMPLE.COM",
    "https://AS.example.com", "http://as.example.com", [ISSUER], {"iss": ISSUER}, "", None, 1, MISSING,
]


@pytest.mark.parametrize("iss", BAD_ISS)
def test_RS02_iss_exact_match(iss, verifier, keys):
    with pytest.raises(InvalidToken):
        verifier.verify(keys["rsa"].mint(make_claims(iss=iss)))


def test_item4_pyjwt_issuer_is_not_substring_matched(keys):
    """Pin the library behaviour (CVE-2024-53861): PyJWT's ``issuer`` compares strings exactly."""
    public = keys["rsa"].private.public_key()
    for iss in ("as.example.com", "https://as.example", ISSUER + "/"):
        token = jwt.encode(make_claims(iss=iss), keys["rsa"].private, algorithm="RS256")
        with pytest.raises(jwt.InvalidIssuerError):
            jwt.decode(token, public, algorithms=["RS256"], issuer=ISSUER, audience=AUDIENCE,
                       options={"verify_exp": False, "verify_iat": False, "verify_nbf": False})


# --------------------------------------------------------------------------- RS03 / RS17 aud


BAD_AUD = [
    MISSING, None, "", [], "https://other.example.com", "https://api.example.com.evil",
    "https://api.example", "https://api.example.com/", "HTTPS://API.EXAMPLE.COM", "client-1",
    ["https://other.example.com"], ["https://api.example.com.evil", "client-1"], 42, [AUDIENCE, 42],
    {"aud": AUDIENCE}, [[AUDIENCE]],
]


@pytest.mark.parametrize("aud", BAD_AUD)
def test_RS03_RS17_aud_must_name_this_resource_server(aud, verifier, keys):
    with pytest.raises(InvalidToken):
        verifier.verify(keys["rsa"].mint(make_claims(aud=aud)))


@pytest.mark.parametrize("changes", [{"iss": iss} for iss in BAD_ISS] + [{"aud": aud} for aud in BAD_AUD])
def test_RS02_RS03_own_checks_hold_without_pyjwt(changes, verifier):
    """Our explicit iss/aud checks stand on their own, should a PyJWT release regress (CVE-2024-53861)."""
    with pytest.raises(InvalidToken, match="iss|aud"):
        verifier.validate_claims(make_claims(**changes))
    verifier.validate_claims(make_claims())


@pytest.mark.parametrize("aud", [AUDIENCE, [AUDIENCE], ["https://other.example.com", AUDIENCE],
                                 "https://second.example.com"])
def test_RS03_aud_containing_ours_accepted(aud, make_verifier, keys):
    verifier = make_verifier(audiences=[AUDIENCE, "https://second.example.com"])
    assert verifier.verify(keys["rsa"].mint(make_claims(aud=aud)))["aud"] == aud


def test_pyjwt_audience_list_is_exact_any_of(keys):
    """Pin the library behaviour: a list ``audience`` matches any member exactly, never by substring."""
    public = keys["rsa"].private.public_key()
    options = {"verify_exp": False, "verify_iat": False, "verify_nbf": False}
    good = jwt.encode(make_claims(aud=["x", AUDIENCE]), keys["rsa"].private, algorithm="RS256")
    assert jwt.decode(good, public, algorithms=["RS256"], audience=["y", AUDIENCE], options=options)
    for aud in ("https://api.example.com.evil", "https://api.example", ["https://api.example"]):
        token = jwt.encode(make_claims(aud=aud), keys["rsa"].private, algorithm="RS256")
        with pytest.raises(jwt.InvalidAudienceError):
            jwt.decode(token, public, algorithms=["RS256"], audience=[AUDIENCE], options=options)


# --------------------------------------------------------------------------- RS05 / RS06 time


@pytest.mark.parametrize(("leeway", "changes", "accepted"), [
    (30, {"exp": NOW - 31}, False),
    (30, {"exp": NOW - 30}, False),
    (30, {"exp": NOW - 29}, True),
    (0, {"exp": NOW}, False),
    (0, {"exp": NOW + 1}, True),
    (30, {"exp": NOW + 100.5}, True),
    (30, {"nbf": NOW + 31}, False),
    (30, {"nbf": NOW + 30}, True),
    (0, {"nbf": NOW + 1}, False),
    (0, {"nbf": NOW}, True),
    (30, {"nbf": MISSING}, True),
    (30, {"iat": NOW + 31}, False),
    (30, {"iat": NOW + 29}, True),
    (0, {"iat": NOW + 1}, False),
    (0, {"iat": NOW - 86400}, True),
])
def test_RS05_RS06_time_claims_with_leeway(leeway, changes, accepted, make_verifier, keys):
    verifier = make_verifier(leeway=leeway)
    token = keys["rsa"].mint(make_claims(**changes))
    if accepted:
        assert verifier.verify(token)["jti"] == "jti-1"
    else:
        with pytest.raises(InvalidToken, match="expired|not yet valid|future"):
            verifier.verify(token)


def test_RS05_clock_is_injected(verifier, keys, wall_clock):
    token = keys["rsa"].mint(make_claims())
    assert verifier.verify(token)
    wall_clock.advance(300 + 30)
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)


@pytest.mark.parametrize("name", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", [str(NOW + 300), True, [NOW + 300], {"t": 1}, -1, 10**100, 10**20])
def test_numeric_dates_must_be_sane_numbers(name, value, verifier, keys):
    with pytest.raises(InvalidToken):
        verifier.verify(keys["rsa"].mint(make_claims(**{name: value})))


@pytest.mark.parametrize("literal", [b"1" + b"0" * 5000, b"1e400", b"NaN", b"Infinity", b"-Infinity"])
def test_item18_huge_and_non_finite_numbers_refused(literal, verifier, keys):
    payload = json.dumps(make_claims(exp="__EXP__")).encode().replace(b'"__EXP__"', literal)
    with pytest.raises(InvalidToken):
        verifier.verify(keys["rsa"].sign(header_for(keys["rsa"]), payload))


# --------------------------------------------------------------------------- RS07 required claims


@pytest.mark.parametrize("name", ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"])
@pytest.mark.parametrize("value", [MISSING, None])
def test_RS07_required_claims(name, value, verifier, keys):
    with pytest.raises(InvalidToken):
        verifier.verify(keys["rsa"].mint(make_claims(**{name: value})))


@pytest.mark.parametrize("name", ["sub", "client_id", "jti"])
@pytest.mark.parametrize("value", [123, "", ["client-1"], {"id": "client-1"}, True])
def test_string_claims_must_be_strings(name, value, verifier, keys):
    with pytest.raises(InvalidToken):
        verifier.verify(keys["rsa"].mint(make_claims(**{name: value})))


@pytest.mark.parametrize("scope", [["sms:message:send"], ["sms:message:send", "message:send"], 5, None,
                                   {"sms:message:send": True}])
def test_SC09_scope_must_be_a_string(scope, verifier, keys):
    with pytest.raises(InvalidToken, match="scope"):
        verifier.verify(keys["rsa"].mint(make_claims(scope=scope)))


@pytest.mark.parametrize("scope", [MISSING, "", "sms:message:send message:send"])
def test_scope_string_or_absent_accepted(scope, verifier, keys):
    assert verifier.verify(keys["rsa"].mint(make_claims(scope=scope)))["sub"] == "client-1"


# --------------------------------------------------------------------------- shape and size (item 18)


def test_item18_size_cap_is_exact(verifier, keys):
    base = len(keys["rsa"].mint(make_claims(pad="")))
    fits = keys["rsa"].mint(make_claims(pad="x" * ((8192 - base) * 3 // 4)))
    assert len(fits) <= 8192
    assert verifier.verify(fits)
    too_big = keys["rsa"].mint(make_claims(pad="x" * ((8192 - base) * 3 // 4 + 3)))
    assert len(too_big) > 8192
    with pytest.raises(InvalidToken, match="longer than"):
        verifier.verify(too_big)


def test_item18_huge_token_refused_before_parsing(verifier, issuer_server):
    started = time.monotonic()
    for junk in ("A" * 10_000_000, "e" * 5_000_000 + "." + "A" * 5_000_000 + ".x"):
        with pytest.raises(InvalidToken, match="longer than"):
            verifier.verify(junk)
    assert time.monotonic() - started < 0.5
    assert issuer_server.total_hits == 0  # refused before any key lookup


@pytest.mark.parametrize("part", ["header", "payload", "claim"])
def test_item18_deeply_nested_json_refused(part, verifier, keys):
    nested = b"[" * 2000 + b"]" * 2000
    header, payload = to_bytes(header_for(keys["rsa"])), to_bytes(make_claims(extra="__X__"))
    if part == "header":
        header = header[:-1] + b', "x": ' + nested + b"}"
    elif part == "payload":
        payload = nested
    else:
        payload = payload.replace(b'"__X__"', nested)
    with pytest.raises(InvalidToken):
        verifier.verify(keys["rsa"].sign(header, payload))


@pytest.mark.parametrize("payload", [
    b"[]", b'"claims"', b"42", b"null", b"{", b"", b"\xff\xfe{}", json.dumps(make_claims()).encode("utf-16"),
    b'{"iss": "x"} trailing',
])
def test_payload_must_be_a_json_object(payload, verifier, keys):
    with pytest.raises(InvalidToken):
        verifier.verify(keys["rsa"].sign(header_for(keys["rsa"]), payload))


def test_duplicate_claim_names_refused(verifier, keys):
    payload = json.dumps(make_claims(aud="https://other.example.com"))[:-1] + f', "aud": "{AUDIENCE}"}}'
    with pytest.raises(InvalidToken, match="duplicate"):
        verifier.verify(keys["rsa"].sign(header_for(keys["rsa"]), payload.encode()))


@pytest.mark.parametrize("header", [
    b"[]", b'"at+jwt"', b"null", b"{", b"\xff",
    b'{"alg": "none", "alg": "RS256", "typ": "at+jwt", "kid": "rsa-1"}',
])
def test_header_must_be_a_json_object(header, verifier, keys):
    with pytest.raises(InvalidToken, match="header"):
        verifier.verify(keys["rsa"].sign(header, make_claims()))


@pytest.mark.parametrize("token", [
    "", ".", "..", "a.b", "a.b.c.d.e", "a..c", "ä.b.c", "eyJ=.e30.x", "ey!J.e30.x",
    "eyJhbGciOiJSUzI1NiJ9x.e30.x",
    None, b"e30.e30.", 42,
])
def test_malformed_tokens_refused(token, verifier):
    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_padded_segments_refused(verifier, keys):
    header, payload, signature = keys["rsa"].mint(make_claims()).split(".")
    with pytest.raises(InvalidToken):
        verifier.verify(f"{header}.{payload}.{signature}==" if len(signature) % 4 == 2
                        else f"{header}.{payload}==.{signature}")


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _set_unused_bits(segment: str) -> str | None:
    unused = {2: 0b1111, 3: 0b11}.get(len(segment) % 4)
    if not unused:
        return None
    return segment[:-1] + ALPHABET[ALPHABET.index(segment[-1]) | unused]


@pytest.mark.parametrize("name", ["rsa", "ec", "ed"])
def test_non_canonical_unused_bits_refused(name, verifier, keys):
    """Non-canonical encodings (threat model item 10): a segment whose last character sets bits
    that carry no data decodes to the same bytes; it is refused, not verified."""
    claims = make_claims()
    for pad in range(3):  # find a payload length whose segment has unused bits
        claims["pad"] = "x" * pad
        token = keys[name].mint(claims)
        segments = token.split(".")
        variants = [_set_unused_bits(segment) for segment in segments]
        if any(v is not None and v != s for v, s in zip(variants, segments)):
            break
    assert verifier.verify(token)["jti"] == "jti-1"
    tried = 0
    for index, variant in enumerate(variants):
        if variant is None or variant == segments[index]:
            continue
        forged = ".".join(segments[:index] + [variant] + segments[index + 1:])
        with pytest.raises(InvalidToken, match="canonical"):
            verifier.verify(forged)
        tried += 1
    assert tried


@pytest.mark.parametrize("aud", ["https://elsewhere.example", ["a", "https://x.example"]])
def test_any_audience_mode_accepts_every_well_formed_aud(aud, make_verifier, keys):
    """audiences=None (the authorization server's introspection) leaves aud to the caller."""
    verifier = make_verifier(audiences=None)
    assert verifier.verify(keys["rsa"].mint(make_claims(aud=aud)))["aud"] == aud


@pytest.mark.parametrize("aud", [MISSING, 42, [], [""], "", [1], {"a": 1}])
def test_any_audience_mode_still_requires_a_well_formed_aud(aud, make_verifier, keys):
    verifier = make_verifier(audiences=None)
    with pytest.raises(InvalidToken):
        verifier.verify(keys["rsa"].mint(make_claims(aud=aud)))


# --------------------------------------------------------------------------- JWKS failures


def test_RL3_jwks_unavailable_passes_through(verifier, issuer_server, keys):
    issuer_server.set("/jwks", Route(status=503))
    with pytest.raises(JWKSUnavailable):
        verifier.verify(keys["rsa"].mint(make_claims()))


def test_RS18_cached_keys_keep_verifying_while_issuer_down(verifier, issuer_server, keys, cache_clock):
    token = keys["rsa"].mint(make_claims())
    assert verifier.verify(token)
    issuer_server.set("/jwks", Route(status=500))
    cache_clock.advance(3600)
    for _ in range(100):
        assert verifier.verify(token)
    with pytest.raises(InvalidToken):
        verifier.verify(keys["attacker"].mint(make_claims(), kid="rsa-1"))
    assert issuer_server.hits["/jwks"] == 2


@pytest.mark.parametrize(("issuer", "audiences"), [("", AUDIENCE), (ISSUER, ""), (ISSUER, []), (ISSUER, [""]),
                                                   (ISSUER, [AUDIENCE, 7])])
def test_constructor_validates_configuration(issuer, audiences, make_cache):
    with pytest.raises(ValueError):
        AccessTokenVerifier(issuer, audiences, make_cache())


def test_JW05_verified_token_cache_drops_tokens_of_a_removed_key(verifier, keys, issuer_server,
                                                                 cache_clock):
    """A token verified once is served from the cache, but not after its key left the JWKS."""
    token = keys["rsa"].mint(make_claims())
    assert verifier.verify(token)
    hits = issuer_server.hits["/jwks"]
    assert verifier.verify(token)  # cached: no new fetch, no new signature check
    assert issuer_server.hits["/jwks"] == hits
    issuer_server.set_json("/jwks", {"keys": [keys["ec"].public_jwk]})
    cache_clock.advance(300)
    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_verified_token_cache_never_accepts_a_tampered_copy(verifier, keys):
    token = keys["rsa"].mint(make_claims())
    assert verifier.verify(token)
    head, payload, signature = token.split(".")
    with pytest.raises(InvalidToken):
        verifier.verify(f"{head}.{payload}.{signature[:-4]}AAAA")


@pytest.mark.parametrize("moved, reason", [
    (300 + 30, "token expired"),  # past exp + leeway after it was first accepted
    (-31, "token issued in the future (iat)"),  # a clock set back: iat ahead beyond leeway
])
def test_a_remembered_token_has_its_times_checked_again(moved, reason, verifier, keys, wall_clock):
    """A token verified before skips only the signature: its time claims meet this clock on
    every call, and once refused it is forgotten (the next call refuses it too)."""
    claims = make_claims(nbf=MISSING)
    token = keys["ec"].mint(claims)
    assert verifier.verify(token) == claims
    assert verifier.verify(token) == claims  # from memory
    wall_clock.now = NOW + moved
    for _ in range(2):
        with pytest.raises(InvalidToken, match=re.escape(reason)):
            verifier.verify(token)
    wall_clock.now = NOW
    assert verifier.verify(token) == claims  # verified afresh


def test_a_remembered_token_not_yet_valid_is_refused(verifier, keys, wall_clock):
    """nbf is checked again too: a token first seen inside the leeway, then a clock set back."""
    token = keys["ec"].mint(make_claims(nbf=NOW + 20))
    assert verifier.verify(token)["nbf"] == NOW + 20
    wall_clock.now = NOW - 11
    with pytest.raises(InvalidToken, match=re.escape("token not yet valid (nbf)")):
        verifier.verify(token)
