"""DPoP at resource servers (RFC 9449 §7, §9) through the guard, on Flask and on FastAPI:
threat model DP01 (the proof, with ``ath``, at the resource), DP03 (binding), DP05 (nonces),
DP06 (hostile proofs are 4xx)."""

from __future__ import annotations

import http.client
import json
import logging
import time

import pytest
import requests
from dpop_support import DPoPKey, b64url, hs256, unsigned
from guard_support import (  # noqa: F401  (fixtures)
    UNAUTHORIZED,
    auth_server,
    create_guarded_app,
    credentials,
    framework,
    guard_config,
    running,
)

from resource_demo.guard.dpop import DEFAULT_ALGORITHMS, access_token_hash

ALGS = " ".join(DEFAULT_ALGORITHMS)
SCOPE = "sms:message:send"


def invalid_proof(response) -> str:
    """401, the envelope, and a DPoP challenge naming the error and the accepted algorithms."""
    assert response.status_code == 401, response.text
    assert response.text.strip() == UNAUTHORIZED
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('DPoP realm="api", error="invalid_dpop_proof", ')
    assert challenge.endswith(f'algs="{ALGS}"')
    return challenge


def refused(response, error: str = "invalid_token") -> None:
    assert response.status_code == 401, response.text
    assert response.text.strip() == UNAUTHORIZED
    assert response.headers["WWW-Authenticate"] == f'DPoP realm="api", error="{error}", algs="{ALGS}"'


class Caller:
    """A client with a DPoP key, a token bound to it and the guarded app's URL."""

    def __init__(self, auth_server, credentials, url: str, alg: str = "ES256"):
        self.key = DPoPKey(alg)
        self.url = url
        self.client_id, self.secret = credentials.client(SCOPE)
        self.token = self.bound_token(self.key, auth_server)

    def bound_token(self, key: DPoPKey, auth_server) -> str:
        token_url = auth_server.url + "/oauth2/token"
        answer = requests.post(token_url, data={"grant_type": "client_credentials"}, timeout=10,
                               auth=(self.client_id, self.secret),
                               headers={"DPoP": key.proof("POST", token_url)})
        assert answer.status_code == 200 and answer.json()["token_type"] == "DPoP", answer.text
        return answer.json()["access_token"]

    def call(self, path: str = "/sms", method: str = "GET", proof: str | None = None,
             token: str | None = None, scheme: str = "DPoP", headers: dict | None = None,
             **proof_options) -> requests.Response:
        token = token or self.token
        sent = {"Authorization": f"{scheme} {token}", **(headers or {})}
        if proof is None:
            proof_options.setdefault("access_token", token)
            proof = self.key.proof(method, self.url + path, **proof_options)
        if proof != "":
            sent["DPoP"] = proof
        return requests.request(method, self.url + path, headers=sent, timeout=10)


@pytest.fixture
def guarded(auth_server, credentials, framework):
    """``guarded(**GUARD_settings)``: a running guarded app; returns a Caller for it."""
    contexts = []

    def make(alg: str = "ES256", **settings):
        app = create_guarded_app(guard_config(auth_server, credentials, **settings), framework)
        contexts.append(running(app))
        url = contexts[-1].__enter__()
        caller = Caller(auth_server, credentials, url, alg)
        caller.app = app
        return caller

    yield make
    for context in reversed(contexts):
        context.__exit__(None, None, None)


# --- the happy path and DP03 ---------------------------------------------------------------------

@pytest.mark.parametrize("alg", ["ES256", "RS256", "PS256", "EdDSA", "Ed25519"])
def test_DP01_bound_token_with_a_proof_is_let_in(guarded, alg):
    caller = guarded(alg)
    answer = caller.call()
    assert answer.status_code == 200, answer.text
    assert answer.json()["client_id"] == caller.client_id
    assert "DPoP-Nonce" not in answer.headers  # nonces are off by default
    assert caller.call("/sms", "POST").status_code == 200


def test_DP03_bound_token_sent_as_bearer_is_401(guarded):
    caller = guarded()
    answer = caller.call(scheme="Bearer", proof="")
    assert answer.status_code == 401 and answer.text.strip() == UNAUTHORIZED
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_token"'
    # ... even with a good proof beside it: the scheme says bearer.
    assert caller.call(scheme="Bearer").status_code == 401


def test_DP03_proof_by_another_key_is_401(guarded, auth_server):
    caller = guarded()
    stranger = DPoPKey()
    proof = stranger.proof("GET", caller.url + "/sms", access_token=caller.token)
    refused(caller.call(proof=proof))  # RFC 9449 §7.1 Figure 16: invalid_token
    # A token bound to the stranger's key, presented with our key's proof: refused too.
    other_token = caller.bound_token(stranger, auth_server)
    refused(caller.call(token=other_token))


def test_DP03_unbound_token_with_the_dpop_scheme_is_401(guarded, credentials):
    caller = guarded()
    bearer = credentials.jwt(SCOPE)
    refused(caller.call(token=bearer, access_token=bearer))


def test_DP03_dpop_switched_off(guarded):
    caller = guarded(GUARD_DPOP=False)
    answer = caller.call()
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_token"'
    assert caller.call(scheme="Bearer", proof="").status_code == 401  # still no bearer


def test_DP01_no_credential_is_challenged_for_bearer_and_dpop(guarded):
    """A request without credentials learns both schemes the endpoint takes (RFC 9110 §11.6.1:
    one challenge per scheme; RFC 9449 §7.1: DPoP with its algorithms); with DPoP off, Bearer
    alone."""
    caller = guarded()
    answer = requests.get(caller.url + "/sms", timeout=10)
    assert answer.status_code == 401 and answer.text.strip() == UNAUTHORIZED
    assert answer.raw.headers.getlist("WWW-Authenticate") == [
        'Bearer realm="api"', f'DPoP realm="api", algs="{ALGS}"']
    plain = guarded(GUARD_DPOP=False)
    answer = requests.get(plain.url + "/sms", timeout=10)
    assert answer.raw.headers.getlist("WWW-Authenticate") == ['Bearer realm="api"']


# --- DP01: the proof at the resource ---------------------------------------------------------------

def test_DP01_proof_required_with_the_scheme(guarded):
    caller = guarded()
    invalid_proof(caller.call(proof=""))


def test_DP01_htm_htu_ath(guarded, subtests):
    caller = guarded()
    cases = {
        "other method": caller.key.proof("POST", caller.url + "/sms", access_token=caller.token),
        "other path": caller.key.proof("GET", caller.url + "/send", access_token=caller.token),
        "other host": caller.key.proof("GET", "http://other.example/sms",
                                       access_token=caller.token),
        "https for http": caller.key.proof("GET", caller.url.replace("http:", "https:") + "/sms",
                                           access_token=caller.token),
        "no ath": caller.key.proof("GET", caller.url + "/sms"),
        "ath of another token": caller.key.proof("GET", caller.url + "/sms",
                                                 access_token=caller.token + "x"),
        "ath not a string": caller.key.proof("GET", caller.url + "/sms",
                                             claims={"ath": 1}),
    }
    for name, proof in cases.items():
        with subtests.test(case=name):
            invalid_proof(caller.call(proof=proof))
    with subtests.test(case="query and normalisation do not matter"):
        host = caller.url.split("//", 1)[1]
        proof = caller.key.proof("GET", f"HTTP://{host.upper()}/./sms?x=1",
                                 access_token=caller.token)
        assert caller.call(proof=proof).status_code == 200


def test_DP01_iat_window(guarded, subtests):
    caller = guarded()
    for iat in (time.time() - 600, time.time() + 600):
        with subtests.test(iat=iat):
            invalid_proof(caller.call(iat=iat))


def test_DP01_proof_once(guarded):
    caller = guarded()
    proof = caller.key.proof("GET", caller.url + "/sms", access_token=caller.token)
    assert caller.call(proof=proof).status_code == 200
    assert "used before" in invalid_proof(caller.call(proof=proof))


def test_DP01_proof_once_across_workers_sharing_redis(guarded, caplog):
    """Two guard instances (as two workers behind one URL are) with GUARD_DPOP_REPLAY_STORE: a
    proof used at one is refused at the other. Without it each has a store of its own, which
    the guard says at start."""
    settings = {"GUARD_DPOP_REPLAY_STORE": "redis://127.0.0.1:6379/0"}
    first, second = guarded(**settings), guarded(**settings)
    proof = first.key.proof("GET", first.url + "/sms", access_token=first.token)
    same_url = {"Host": first.url.split("//", 1)[1]}  # both serve one public URL
    assert first.call(proof=proof).status_code == 200
    second.token = first.token
    invalid_proof(second.call(proof=proof, headers=same_url))
    fresh = first.key.proof("GET", first.url + "/sms", access_token=first.token)
    assert second.call(proof=fresh, headers=same_url).status_code == 200
    with caplog.at_level(logging.WARNING, logger="resource_demo.guard"):
        guarded()
    assert any("correct with one worker only" in record.getMessage() for record in caplog.records)


def test_DP01_htu_from_trusted_proxy_headers(guarded):
    """Behind a trusted proxy the URI is the one the proxy received (X-Forwarded-Proto/-Host);
    from anyone else those headers are ignored."""
    public = "https://api.example.com/sms"
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example.com"}
    behind = guarded(GUARD_TRUSTED_PROXIES=["127.0.0.1"])
    proof = behind.key.proof("GET", public, access_token=behind.token)
    assert behind.call(proof=proof, headers=forwarded).status_code == 200
    direct = guarded()
    proof = direct.key.proof("GET", public, access_token=direct.token)
    invalid_proof(direct.call(proof=proof, headers=forwarded))
    assert direct.call(headers=forwarded).status_code == 200  # its own URI still works


def test_DP01_htu_from_the_configured_public_url(guarded):
    """With GUARD_PUBLIC_URL the URI is that URL plus the path, whatever Host or forwarded
    headers say: a proof captured for another resource server sharing the audience (another
    host name reaching this one) is refused."""
    public = "https://api.example.com/v1"
    caller = guarded(GUARD_PUBLIC_URL=public + "/", GUARD_TRUSTED_PROXIES=["127.0.0.1"])
    proof = caller.key.proof("GET", public + "/sms", access_token=caller.token)
    assert caller.call(proof=proof).status_code == 200
    invalid_proof(caller.call())  # a proof for the address it was reached at
    elsewhere = "https://other-api.example.com/sms"
    proof = caller.key.proof("GET", elsewhere, access_token=caller.token)
    invalid_proof(caller.call(proof=proof, headers={
        "Host": "other-api.example.com", "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "other-api.example.com"}))


# --- DP05: resource-server nonces (§9) ---------------------------------------------------------

def test_DP05_resource_server_nonces(guarded, subtests):
    caller = guarded(GUARD_DPOP_NONCES=True, GUARD_DPOP_NONCE_SECRET="rs-nonce-secret-0123456789")
    first = caller.call()
    refused(first, "use_dpop_nonce")
    nonce = first.headers["DPoP-Nonce"]
    answer = caller.call(nonce=nonce)
    assert answer.status_code == 200, answer.text
    assert answer.headers["DPoP-Nonce"]
    for wrong in ("x", nonce[:-2] + "AA", 7):
        with subtests.test(nonce=wrong):
            refused(caller.call(claims={"nonce": wrong}), "use_dpop_nonce")


# --- DP06: hostile proofs -------------------------------------------------------------------------

def test_DP06_hostile_proofs_are_401(guarded, subtests):
    caller = guarded()
    url = caller.url + "/sms"
    key = caller.key
    payload = {"jti": "j", "htm": "GET", "htu": url, "iat": int(time.time()),
               "ath": access_token_hash(caller.token)}
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk}
    good = key.proof("GET", url, access_token=caller.token)
    head, body, signature = good.split(".")
    cases = {
        "alg none": unsigned({**header, "alg": "none"}, payload),
        "HS256": hs256(key, "GET", url, b"k" * 32),
        "HS256 with the jwk": hs256(key, "GET", url, json.dumps(key.jwk).encode()),
        "private key in the jwk": key.proof("GET", url, access_token=caller.token,
                                            headers={"jwk": key.private_jwk()}),
        "typ JWT": key.proof("GET", url, access_token=caller.token, headers={"typ": "JWT"}),
        "oversized": key.proof("GET", url, access_token=caller.token,
                               claims={"pad": "x" * 9000}),
        "garbage": "not a jwt",
        "two segments": f"{head}.{body}",
        "header not JSON": f"{b64url(b'{x')}.{body}.{signature}",
        "deep nesting": f"{b64url(b'[' * 3000 + b']' * 3000)}.{body}.{signature}",
        "tampered payload": f"{head}.{b64url(json.dumps({**payload, 'jti': 'k'}).encode())}"
                            f".{signature}",
    }
    for name, proof in cases.items():
        with subtests.test(case=name):
            answer = caller.call(proof=proof)
            assert 400 <= answer.status_code < 500
            invalid_proof(answer)
    with subtests.test(case="two DPoP headers"):
        host, port = caller.url.split("//", 1)[1].split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.putrequest("GET", "/sms")
        connection.putheader("Authorization", f"DPoP {caller.token}")
        connection.putheader("DPoP", good)
        connection.putheader("DPoP", key.proof("GET", url, access_token=caller.token))
        connection.endheaders()
        answer = connection.getresponse()
        assert answer.status == 401
        assert answer.getheader("WWW-Authenticate").startswith(
            'DPoP realm="api", error="invalid_dpop_proof"')
        connection.close()
