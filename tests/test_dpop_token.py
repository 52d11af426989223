"""DPoP at the token endpoint (RFC 9449 §4-§6, §8): threat model DP01, DP02, DP04, DP05, DP06.

Every test here runs on SQLite and on PostgreSQL (the ``app`` fixture); the Redis replay store
runs against the machine's Redis under a key prefix of its own.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import jwt
import pytest
from conftest import basic_auth
from credential_actions import introspect, revoke
from dpop_support import (
    GRANT,
    DPoPKey,
    assert_dpop_error,
    b64url,
    hs256,
    request_token,
    token_url,
    unsigned,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oauth_support import table_counts, verify_token

from authserver.oauth2.dpop import DatabaseReplayStore
from resource_demo.guard.dpop import access_token_hash, jwk_thumbprint

PATHS = ("/oauth2/token", "/auth/1/oauth2/token")
DUPLICATE_TYP = b'{"typ":"dpop+jwt","typ":"x","alg":"ES256"}'


@pytest.fixture
def dpop_key():
    return DPoPKey("ES256")


@pytest.fixture
def bound_client(oauth_clients):
    """A client registered with dpop_bound_access_tokens (RFC 9449 §5.2)."""
    return oauth_clients.create(scope="message:send", dpop_bound_access_tokens=True)


@pytest.fixture
def plain_client(oauth_clients):
    return oauth_clients.create(scope="message:send")


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


# --- DP02: bound tokens ------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ["ES256", "RS256", "PS256", "EdDSA", "Ed25519", "ES384"])
@pytest.mark.parametrize("path", PATHS)
def test_DP02_token_bound_to_the_proof_key(app, client, plain_client, alg, path):
    key = DPoPKey(alg)
    response = request_token(client, plain_client, key.proof("POST", token_url(app, path)), path)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["token_type"] == "DPoP"
    assert response.headers["Cache-Control"] == "no-store"
    claims = verify_token(client, app, body["access_token"])
    assert claims["cnf"] == {"jkt": key.jkt}
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"


def test_DP02_no_proof_no_binding(app, client, plain_client):
    body = request_token(client, plain_client).get_json()
    assert body["token_type"] == "Bearer"
    assert "cnf" not in claims_of(body["access_token"])


def test_DP02_thumbprint_vectors():
    """RFC 7638 §3.1's example and RFC 9449 §6.1's ``jkt`` of the key in its Figure 4."""
    rfc7638 = {"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29", "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSo"
        "c_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQ"
        "R0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bF"
        "TWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")}
    assert jwk_thumbprint(rfc7638) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    rfc9449 = {"kty": "EC", "crv": "P-256", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
               "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"}
    assert jwk_thumbprint(rfc9449) == "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_DP02_thumbprint_agrees_with_joserfc(alg):
    from joserfc.jwk import import_key

    key = DPoPKey(alg)
    assert key.jkt == import_key(key.jwk).thumbprint()


def test_DP02_introspection_shows_the_binding(app, client, plain_client, dpop_key):
    body = request_token(client, plain_client, dpop_key.proof("POST", token_url(app))).get_json()
    answer = introspect(client, body["access_token"], basic_auth(*plain_client)).get_json()
    assert answer["active"] is True
    assert answer["token_type"] == "DPoP" and answer["cnf"] == {"jkt": dpop_key.jkt}
    bearer = request_token(client, plain_client).get_json()["access_token"]
    answer = introspect(client, bearer, basic_auth(*plain_client)).get_json()
    assert answer["token_type"] == "Bearer" and "cnf" not in answer


def test_DP02_revocation_needs_no_proof(app, client, plain_client, dpop_key):
    """RFC 7009 works for a bound token as for a Bearer one (client authentication only)."""
    token = request_token(client, plain_client, dpop_key.proof("POST", token_url(app)))
    token = token.get_json()["access_token"]
    assert revoke(client, token, basic_auth(*plain_client)).status_code == 200
    assert introspect(client, token, basic_auth(*plain_client)).get_json() == {"active": False}


def test_DP02_metadata_lists_the_algorithms(app, client):
    document = client.get("/.well-known/oauth-authorization-server").get_json()
    assert document["dpop_signing_alg_values_supported"] == app.config["DPOP_SIGNING_ALGS"]
    assert {"ES256", "RS256", "PS256", "EdDSA"} <= set(document["dpop_signing_alg_values_supported"])
    assert not {"none", "HS256"} & set(document["dpop_signing_alg_values_supported"])


# --- DP04: clients registered with dpop_bound_access_tokens --------------------------------------

def test_DP04_bound_client_without_proof_is_refused(app, client, bound_client):
    before = table_counts(app)
    assert_dpop_error(request_token(client, bound_client))
    assert table_counts(app) == before


def test_DP04_bound_client_with_invalid_proof_is_refused(app, client, bound_client, dpop_key):
    assert_dpop_error(request_token(client, bound_client,
                                    dpop_key.proof("POST", token_url(app), iat=time.time() - 3600)))
    assert_dpop_error(request_token(client, bound_client, "not-a-jwt"))


def test_DP04_bound_client_with_proof_gets_a_bound_token(app, client, bound_client, dpop_key):
    body = request_token(client, bound_client, dpop_key.proof("POST", token_url(app))).get_json()
    assert body["token_type"] == "DPoP"
    assert claims_of(body["access_token"])["cnf"]["jkt"] == dpop_key.jkt


def test_DP04_bound_private_key_jwt_client(app, client, clock, oauth_clients, dpop_key):
    """The binding is independent of the client-authentication method (RFC 9449 §1)."""
    from credential_actions import AssertionSigner

    signer = AssertionSigner()
    client_id, _ = oauth_clients.create(scope="message:send", auth_method="private_key_jwt",
                                        jwks=signer.jwks, dpop_bound_access_tokens=True)
    form = {**GRANT, **signer.form(client_id, app.config["ISSUER"], clock.now)}
    assert_dpop_error(client.post("/oauth2/token", data=form))
    form = {**GRANT, **signer.form(client_id, app.config["ISSUER"], clock.now)}
    response = client.post("/oauth2/token", data=form,
                           headers={"DPoP": dpop_key.proof("POST", token_url(app))})
    assert response.get_json()["token_type"] == "DPoP"


def test_DP04_unbound_client_with_invalid_proof_is_refused(app, client, plain_client, dpop_key):
    """RFC 9449 §5: the DPoP header MUST hold a valid proof, bound client or not."""
    assert_dpop_error(request_token(client, plain_client,
                                    dpop_key.proof("GET", token_url(app))))


# --- DP01: every check of §4.3 ------------------------------------------------------------------

def test_DP01_typ(app, client, plain_client, dpop_key, subtests):
    url = token_url(app)
    for typ in (None, "JWT", "at+jwt", "dpop", "dpop+jwt ", 7):
        with subtests.test(typ=typ):
            headers = {"typ": typ} if typ is not None else {"typ": None}
            proof = dpop_key.proof("POST", url, headers=headers)
            assert_dpop_error(request_token(client, plain_client, proof))
    for typ in ("DPoP+JWT", "application/dpop+jwt"):  # media types are case-insensitive
        with subtests.test(typ=typ):
            proof = dpop_key.proof("POST", url, headers={"typ": typ})
            assert request_token(client, plain_client, proof).status_code == 200


def test_DP01_algorithm_allowlist(app, client, plain_client, subtests):
    """An asymmetric alg that is not configured (ES512 here) is refused like any other."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    private = ec.generate_private_key(ec.SECP521R1())
    jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    proof = jwt.encode({"jti": "x1", "htm": "POST", "htu": token_url(app), "iat": int(time.time())},
                       private, algorithm="ES512", headers={"typ": "dpop+jwt", "jwk": jwk})
    assert_dpop_error(request_token(client, plain_client, proof))


def test_DP01_jwk_must_be_public_and_fit_the_alg(app, client, plain_client, subtests):
    url = token_url(app)
    es, rsa_key = DPoPKey("ES256"), DPoPKey("RS256")
    cases = {
        "private EC key": es.proof("POST", url, headers={"jwk": es.private_jwk()}),
        "private RSA key": rsa_key.proof("POST", url, headers={"jwk": rsa_key.private_jwk()}),
        "no jwk": es.proof("POST", url, headers={"jwk": None}),
        "jwk not an object": es.proof("POST", url, headers={"jwk": "key"}),
        "RSA jwk for ES256": es.proof("POST", url, headers={"jwk": rsa_key.jwk}),
        "wrong curve": es.proof("POST", url, headers={"jwk": {**es.jwk, "crv": "P-384"}}),
        "symmetric jwk": es.proof("POST", url, headers={"jwk": {"kty": "oct", "k": "c2VjcmV0"}}),
        "missing member": es.proof("POST", url, headers={"jwk": {"kty": "EC", "crv": "P-256",
                                                                 "x": es.jwk["x"]}}),
        "kid only": es.proof("POST", url, headers={"jwk": None, "kid": "k1"}),
    }
    for name, proof in cases.items():
        with subtests.test(case=name):
            assert_dpop_error(request_token(client, plain_client, proof))


def test_DP01_signature_by_another_key(app, client, plain_client, dpop_key):
    """A proof carrying key A's jwk but signed with key B (§4.3 item 6)."""
    other = DPoPKey("ES256")
    proof = other.proof("POST", token_url(app), headers={"jwk": dpop_key.jwk})
    assert_dpop_error(request_token(client, plain_client, proof))
    header, payload, signature = dpop_key.proof("POST", token_url(app)).split(".")
    tampered = b64url(json.dumps({"jti": "t", "htm": "POST", "htu": token_url(app),
                                  "iat": int(time.time())}).encode())
    assert_dpop_error(request_token(client, plain_client, f"{header}.{tampered}.{signature}"))


def test_DP01_htm(app, client, plain_client, dpop_key, subtests):
    for method in ("GET", "post", "PUT", "", None):
        with subtests.test(htm=method):
            proof = dpop_key.proof("POST", token_url(app), claims={"htm": method})
            assert_dpop_error(request_token(client, plain_client, proof))


def test_DP01_htu_other_uri(app, client, plain_client, dpop_key, subtests):
    issuer = app.config["ISSUER"]
    for htu in (issuer + "/oauth2/introspect", issuer + "/oauth2/token/",
                issuer.replace("https://", "http://") + "/oauth2/token",
                "https://evil.example/oauth2/token", issuer + ":8443/oauth2/token",
                "https://user@" + issuer[len("https://"):] + "/oauth2/token",
                "/oauth2/token", "urn:x:y", 42, None, issuer + "/oauth2/token" + "/x" * 1100):
        with subtests.test(htu=str(htu)[:80]):
            proof = dpop_key.proof("POST", "x", claims={"htu": htu})
            assert_dpop_error(request_token(client, plain_client, proof))


def test_DP01_htu_is_built_from_the_issuer_not_the_host_header(app, client, plain_client,
                                                                 dpop_key):
    """The endpoint's URI is the one the metadata names, whatever ``Host`` the request says."""
    # A trusted Host other than the issuer's (TRUSTED_HOSTS refuses any other with 400, TE20).
    forged = "https://localhost/oauth2/token"
    assert_dpop_error(request_token(client, plain_client, dpop_key.proof("POST", forged),
                                    base_url="https://localhost"))
    response = request_token(client, plain_client, dpop_key.proof("POST", token_url(app)),
                             base_url="https://localhost")
    assert response.status_code == 200
    untrusted = request_token(client, plain_client, dpop_key.proof("POST", token_url(app)),
                              base_url="https://evil.example")
    assert untrusted.status_code == 400 and "access_token" not in untrusted.get_json()


def test_DP01_htu_normalisation(app, client, plain_client, dpop_key, subtests):
    """§4.3: syntax- and scheme-based normalisation (RFC 3986 §6.2.2, §6.2.3); query and
    fragment are ignored."""
    issuer = app.config["ISSUER"]
    host = issuer[len("https://"):]
    for path in PATHS:
        for htu in (issuer.upper().replace("HTTPS", "https", 1) + path.upper().lower(),
                    "HTTPS://" + host.upper() + path, f"https://{host}:443{path}",
                    issuer + path.replace("token", "%74oken"),
                    issuer + "/oauth2/./x/.." + path[len("/oauth2"):] if path == "/oauth2/token"
                    else issuer + "/auth/1/../1" + path[len("/auth/1"):],
                    issuer + path + "?unused=1", issuer + path + "#fragment"):
            with subtests.test(path=path, htu=htu):
                proof = dpop_key.proof("POST", htu)
                assert request_token(client, plain_client, proof, path).status_code == 200


def test_DP01_htu_of_the_alias_only_at_the_alias(app, client, plain_client, dpop_key):
    proof = dpop_key.proof("POST", token_url(app, "/auth/1/oauth2/token"))
    assert_dpop_error(request_token(client, plain_client, proof, "/oauth2/token"))
    proof = dpop_key.proof("POST", token_url(app, "/oauth2/token"))
    assert_dpop_error(request_token(client, plain_client, proof, "/auth/1/oauth2/token"))


def test_DP01_iat_window(app, client, plain_client, dpop_key, subtests):
    now = time.time()
    max_age, leeway = app.config["DPOP_PROOF_MAX_AGE"], app.config["LEEWAY"]
    for iat in (now - max_age - leeway - 5, now + leeway + 5, now - 86400, now + 86400,
                "1700000000", True, None, 1e300):
        with subtests.test(iat=iat):
            proof = dpop_key.proof("POST", token_url(app), claims={"iat": iat})
            assert_dpop_error(request_token(client, plain_client, proof))
    for iat in (int(now) - max_age, int(now) + leeway - 5, now - 1.5):
        with subtests.test(accepted_iat=iat):
            proof = dpop_key.proof("POST", token_url(app), iat=iat)
            assert request_token(client, plain_client, proof).status_code == 200


def test_DP01_iat_window_follows_the_server_clock(app, client, clock, plain_client, dpop_key):
    clock.advance(600)  # the server's clock is ten minutes ahead of the client's
    assert_dpop_error(request_token(client, plain_client, dpop_key.proof("POST", token_url(app))))
    proof = dpop_key.proof("POST", token_url(app), iat=clock.now.timestamp())
    assert request_token(client, plain_client, proof).status_code == 200


def test_DP01_required_claims(app, client, plain_client, dpop_key, subtests):
    for name in ("jti", "htm", "htu", "iat"):
        with subtests.test(missing=name):
            assert_dpop_error(request_token(client, plain_client,
                                            dpop_key.proof("POST", token_url(app), drop=(name,))))
    for jti in ("", 7, ["a"], "j" * 257):
        with subtests.test(jti=str(jti)[:20]):
            proof = dpop_key.proof("POST", token_url(app), claims={"jti": jti})
            assert_dpop_error(request_token(client, plain_client, proof))


def test_DP01_jti_once(app, client, plain_client, dpop_key):
    proof = dpop_key.proof("POST", token_url(app))
    before = table_counts(app)["seen_dpop_proofs"]
    assert request_token(client, plain_client, proof).status_code == 200
    assert table_counts(app)["seen_dpop_proofs"] == before + 1
    body = assert_dpop_error(request_token(client, plain_client, proof))
    assert "used before" in body["error_description"]
    # The same jti in a new proof of the same key is the same proof as far as replay goes.
    jti = claims_of(proof)["jti"]
    assert_dpop_error(request_token(client, plain_client,
                                    dpop_key.proof("POST", token_url(app), jti=jti)))
    # Another key may use the same jti: the store is keyed by key and jti.
    other = DPoPKey("ES256").proof("POST", token_url(app), jti=jti)
    assert request_token(client, plain_client, other).status_code == 200


def test_DP01_refused_proof_does_not_use_up_its_jti(app, client, plain_client, dpop_key):
    jti = "fresh-jti-0001"
    assert_dpop_error(request_token(client, plain_client,
                                    dpop_key.proof("GET", token_url(app), jti=jti)))
    assert request_token(client, plain_client,
                         dpop_key.proof("POST", token_url(app), jti=jti)).status_code == 200


def test_DP01_refused_client_does_not_use_up_the_proof(app, client, plain_client, dpop_key):
    proof = dpop_key.proof("POST", token_url(app))
    assert request_token(client, (plain_client[0], "wrong"), proof).status_code == 401
    assert request_token(client, plain_client, proof).status_code == 200


def test_DP01_jti_once_across_workers(app, client, plain_client, dpop_key, second_worker):
    proof = dpop_key.proof("POST", token_url(app))
    assert request_token(client, plain_client, proof).status_code == 200
    assert_dpop_error(request_token(second_worker.test_client(), plain_client, proof))


def test_DP01_concurrent_replay_across_workers(app, plain_client, dpop_key, second_worker):
    """The same proof sent to two workers at once gives exactly one token."""
    proof = dpop_key.proof("POST", token_url(app))
    workers = [app, second_worker] * 3
    barrier = threading.Barrier(len(workers))
    statuses: list[int] = []

    def send(worker):
        test_client = worker.test_client()
        barrier.wait(10)
        statuses.append(request_token(test_client, plain_client, proof).status_code)

    threads = [threading.Thread(target=send, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [200] + [400] * (len(workers) - 1)


def test_DP01_expired_jtis_are_pruned(app, client, clock, plain_client, dpop_key):
    assert request_token(client, plain_client,
                         dpop_key.proof("POST", token_url(app))).status_code == 200
    clock.advance(app.config["DPOP_PROOF_MAX_AGE"] + 3 * app.config["LEEWAY"] + 1)
    proof = dpop_key.proof("POST", token_url(app), iat=clock.now.timestamp())
    assert request_token(client, plain_client, proof).status_code == 200
    assert table_counts(app)["seen_dpop_proofs"] == 1


def test_DP01_database_store_directly(app):
    with app.app_context():
        store = DatabaseReplayStore()
        key = uuid.uuid4().hex * 2
        assert store.first_use(key, time.time() + 60) is True
        assert store.first_use(key, time.time() + 60) is False


class TestRedisReplayStore:
    """``DPOP_REPLAY_STORE`` as a redis:// URL: the jti store is Redis (shared by every host)."""

    @pytest.fixture
    def app_config(self):
        return {"DPOP_REPLAY_STORE": "redis://127.0.0.1:6379/0",
                "RATELIMIT_KEY_PREFIX": f"authserver-test-{uuid.uuid4().hex[:8]}"}

    def test_DP01_jti_once_in_redis(self, app, client, plain_client, dpop_key, second_worker):
        second_worker.config["RATELIMIT_KEY_PREFIX"] = app.config["RATELIMIT_KEY_PREFIX"]
        proof = dpop_key.proof("POST", token_url(app))
        before = table_counts(app)["seen_dpop_proofs"]
        assert request_token(client, plain_client, proof).status_code == 200
        assert table_counts(app)["seen_dpop_proofs"] == before  # not in the database
        assert_dpop_error(request_token(client, plain_client, proof))
        assert_dpop_error(request_token(second_worker.test_client(), plain_client, proof))

    def test_redis_follows_the_rate_limit_store_by_default(self, app):
        from authserver.oauth2.dpop import proof_checker
        from resource_demo.guard.replay import RedisReplayStore

        app.config.update(DPOP_REPLAY_STORE=None, RATELIMIT_STORAGE_URI="redis://127.0.0.1:6379")
        with app.app_context():
            assert isinstance(proof_checker().replay, RedisReplayStore)


class TestRedisDown:
    @pytest.fixture
    def app_config(self):
        return {"DPOP_REPLAY_STORE": "redis://127.0.0.1:1/0"}

    def test_unreachable_store_is_503_not_a_token(self, app, client, plain_client, dpop_key):
        response = request_token(client, plain_client, dpop_key.proof("POST", token_url(app)))
        assert response.status_code == 503
        assert response.get_json()["error"] == "temporarily_unavailable"
        assert response.headers["Retry-After"]
        # Clients without a proof are unaffected.
        assert request_token(client, plain_client).status_code == 200


# --- DP05: server nonces --------------------------------------------------------------------------

class TestNonces:
    @pytest.fixture
    def app_config(self):
        return {"DPOP_NONCES": True}

    def test_DP05_use_dpop_nonce_flow(self, app, client, plain_client, dpop_key):
        refused = request_token(client, plain_client, dpop_key.proof("POST", token_url(app)))
        assert_dpop_error(refused, "use_dpop_nonce")
        nonce = refused.headers["DPoP-Nonce"]
        assert nonce and all(0x21 <= ord(ch) <= 0x7E and ch not in '"\\' for ch in nonce)
        granted = request_token(client, plain_client,
                                dpop_key.proof("POST", token_url(app), nonce=nonce))
        assert granted.status_code == 200 and granted.get_json()["token_type"] == "DPoP"
        assert granted.headers["DPoP-Nonce"]  # §8.2: the next nonce rides on the answer

    def test_DP05_wrong_and_stale_nonces(self, app, client, clock, plain_client, dpop_key,
                                         subtests):
        nonce = request_token(client, plain_client,
                              dpop_key.proof("POST", token_url(app))).headers["DPoP-Nonce"]
        for wrong in ("", "x", nonce[:-1] + ("A" if nonce[-1] != "A" else "B"), 12, nonce * 2):
            with subtests.test(nonce=str(wrong)[:40]):
                proof = dpop_key.proof("POST", token_url(app), claims={"nonce": wrong})
                assert_dpop_error(request_token(client, plain_client, proof), "use_dpop_nonce")
        clock.advance(app.config["DPOP_NONCE_LIFETIME"] + 1)
        stale = request_token(client, plain_client, dpop_key.proof(
            "POST", token_url(app), nonce=nonce, iat=clock.now.timestamp()))
        assert_dpop_error(stale, "use_dpop_nonce")
        fresh = stale.headers["DPoP-Nonce"]
        assert fresh != nonce
        proof = dpop_key.proof("POST", token_url(app), nonce=fresh, iat=clock.now.timestamp())
        assert request_token(client, plain_client, proof).status_code == 200

    def test_DP05_nonce_from_another_server_is_refused(self, app, client, plain_client,
                                                       dpop_key):
        from resource_demo.guard.nonces import Nonces

        foreign = Nonces(b"another server's secret").current()
        proof = dpop_key.proof("POST", token_url(app), nonce=foreign)
        assert_dpop_error(request_token(client, plain_client, proof), "use_dpop_nonce")

    def test_DP05_nonces_work_across_workers(self, app, client, plain_client, dpop_key,
                                             second_worker):
        nonce = request_token(client, plain_client,
                              dpop_key.proof("POST", token_url(app))).headers["DPoP-Nonce"]
        proof = dpop_key.proof("POST", token_url(app), nonce=nonce)
        assert request_token(second_worker.test_client(), plain_client, proof).status_code == 200

    def test_DP05_client_without_proof_needs_no_nonce(self, app, client, plain_client):
        response = request_token(client, plain_client)
        assert response.status_code == 200 and response.get_json()["token_type"] == "Bearer"


# --- DP06: hostile proofs are 4xx, never 5xx ----------------------------------------------------

def test_DP06_malformed_and_forged_proofs(app, client, plain_client, dpop_key, subtests):
    url = token_url(app)
    now = int(time.time())
    payload = {"jti": "j1", "htm": "POST", "htu": url, "iat": now}
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": dpop_key.jwk}
    good = dpop_key.proof("POST", url)
    head, body, signature = good.split(".")
    cases = {
        "alg none": unsigned({**header, "alg": "none"}, payload),
        "alg none, trailing dot": unsigned({**header, "alg": "none"}, payload).rstrip("."),
        "HS256 with the jwk as secret": hs256(dpop_key, "POST", url, json.dumps(dpop_key.jwk).encode()),
        "HS256": hs256(dpop_key, "POST", url, b"s" * 32),
        "oversized": dpop_key.proof("POST", url, claims={"pad": "x" * 9000}),
        "empty": "",
        "spaces": "   ",
        "two segments": f"{head}.{body}",
        "four segments": f"{good}.{signature}",
        "padding": f"{head}=.{body}.{signature}",
        "not base64": f"{head}.{body}!.{signature}",
        "header not JSON": f"{b64url(b'{nope')}.{body}.{signature}",
        "header an array": f"{b64url(b'[1,2]')}.{body}.{signature}",
        "header duplicate member": f"{b64url(DUPLICATE_TYP)}.{body}.{signature}",
        "huge number": unsigned({**header, "x": 10 ** 400}, payload, b"x" * 64),
        "deep nesting": f"{b64url(b'[' * 5000 + b']' * 5000)}.{body}.{signature}",
        "non-ASCII": good + "é",
        "payload not an object": dpop_key.proof("POST", url).split(".")[0] + "." + b64url(b"[]")
        + "." + signature,
        "crit": dpop_key.proof("POST", url, headers={"crit": ["exp"], "exp": 1}),
        "b64 false": dpop_key.proof("POST", url, headers={"b64": False}),
        "jku instead of jwk": dpop_key.proof("POST", url, headers={
            "jwk": None, "jku": "https://evil.example/jwks"}),
        "RSA key too small": unsigned({**header, "alg": "RS256", "jwk": {
            "kty": "RSA", "n": b64url(b"\x01" * 64), "e": "AQAB"}}, payload, b"x" * 64),
        "RSA huge exponent": unsigned({**header, "alg": "RS256", "jwk": {
            "kty": "RSA", "n": b64url(b"\xff" * 256), "e": b64url(b"\xff" * 64)}},
            payload, b"x" * 256),
    }
    for name, proof in cases.items():
        with subtests.test(case=name):
            response = request_token(client, plain_client, proof)
            assert 400 <= response.status_code < 500
            assert_dpop_error(response)


def test_DP06_two_dpop_headers(app, client, plain_client, dpop_key):
    """§4.3 item 1: not more than one DPoP header field."""
    headers = [*basic_auth(*plain_client).items(),
               ("DPoP", dpop_key.proof("POST", token_url(app))),
               ("DPoP", dpop_key.proof("POST", token_url(app)))]
    response = client.post("/oauth2/token", data=GRANT, headers=headers)
    body = assert_dpop_error(response)
    assert "one DPoP header" in body["error_description"]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e),
                     max_size=300))
def test_DP06_arbitrary_header_values(client, plain_client, value):
    response = request_token(client, plain_client, value)
    assert response.status_code in (200, 400), response.get_data(as_text=True)
    if value.strip():
        assert response.get_json()["error"] == "invalid_dpop_proof"


def test_DP06_ath_is_ignored_at_the_token_endpoint(app, client, plain_client, dpop_key):
    """ath belongs to resource requests (§7); a proof that has one is still a proof."""
    proof = dpop_key.proof("POST", token_url(app), claims={"ath": access_token_hash("x")})
    assert request_token(client, plain_client, proof).status_code == 200
