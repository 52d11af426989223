"""A DPoP-bound client manages keys through the admin API (RFC 9449 §7 at the admin API): the
proof is checked as at the token endpoint and at a guard (htm, htu = the issuer plus the path,
ath, cnf.jkt, once). Both database backends (the ``app`` fixture)."""

from __future__ import annotations

import pytest
from dpop_support import DPoPKey, request_token, token_url

KEYS = "/settings/2/api-keys"


@pytest.fixture
def bound_admin(app, client, oauth_clients):
    """(key, DPoP-bound admin token) of a client registered for bound tokens."""
    credentials = oauth_clients.create(scope="account-management:manage message:send",
                                       dpop_bound_access_tokens=True)
    key = DPoPKey("ES256")
    answer = request_token(client, credentials, key.proof("POST", token_url(app)),
                           resource=app.config["ISSUER"])
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["token_type"] == "DPoP"
    return key, answer.get_json()["access_token"]


def dpop_call(client, app, key, token, method="GET", path=KEYS, *, proof=None, **kwargs):
    proof = proof or key.proof(method, app.config["ISSUER"] + path, access_token=token)
    return client.open(path, method=method, headers={"Authorization": f"DPoP {token}",
                                                     "DPoP": proof}, **kwargs)


def test_DP03_bound_client_lists_and_creates_keys_with_proofs(app, client, bound_admin):
    key, token = bound_admin
    listed = dpop_call(client, app, key, token)
    assert listed.status_code == 200, listed.get_json()
    created = dpop_call(client, app, key, token, "POST", json={"name": "by-dpop",
                                                               "scopeGuids": ["message:send"]})
    assert created.status_code == 201, created.get_json()


def test_DP03_admin_api_refuses_bad_proofs(app, client, bound_admin):
    key, token = bound_admin
    issuer = app.config["ISSUER"]
    cases = {
        "bound token as Bearer": client.get(KEYS, headers={"Authorization": f"Bearer {token}"}),
        "no proof": client.get(KEYS, headers={"Authorization": f"DPoP {token}"}),
        "proof for another path": dpop_call(
            client, app, key, token, proof=key.proof("GET", issuer + "/settings/2/oauth-clients",
                                                     access_token=token)),
        "proof for the Host, not the issuer": dpop_call(
            client, app, key, token, proof=key.proof("GET", "http://localhost" + KEYS,
                                                     access_token=token)),
        "proof by another key": dpop_call(
            client, app, key, token, proof=DPoPKey("ES256").proof("GET", issuer + KEYS,
                                                                  access_token=token)),
        "proof without ath": dpop_call(client, app, key, token,
                                       proof=key.proof("GET", issuer + KEYS)),
    }
    for case, answer in cases.items():
        assert answer.status_code == 401, (case, answer.get_json())
        challenge = answer.headers["WWW-Authenticate"]
        assert challenge.startswith(("DPoP ", "Bearer ")), (case, challenge)
    # A proof is good once.
    proof = key.proof("GET", issuer + KEYS, access_token=token)
    assert dpop_call(client, app, key, token, proof=proof).status_code == 200
    replayed = dpop_call(client, app, key, token, proof=proof)
    assert replayed.status_code == 401
    assert 'error="invalid_dpop_proof"' in replayed.headers["WWW-Authenticate"]


def test_admin_api_without_credentials_names_both_schemes(client):
    answer = client.get(KEYS)
    assert answer.status_code == 401
    challenges = answer.headers.getlist("WWW-Authenticate")
    assert challenges[0].startswith("Bearer ") and challenges[1].startswith("DPoP ")
