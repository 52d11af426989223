"""RFC 7009 revocation (threat model RV01–RV05, RV07; RV06 is in test_database_down.py)
and the revocation feed resource servers follow."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
import requests
import sqlalchemy as sa
from conftest import basic_auth
from credential_actions import (
    INACTIVE,
    Caller,
    assert_clean_error,
    b64url,
    b64url_decode,
    dump_tables,
    feed,
    introspect,
    make_caller,
    revoke,
    row_count,
)
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from authserver.credentials import api_keys
from authserver.credentials import clients as client_service
from authserver.credentials import signing_keys as keys
from authserver.oauth2 import introspection
from authserver.storage.db import db
from authserver.storage.models import AuditEvent, RevokedToken, SigningKey

#: Order of the P-256 group (SEC 2): (r, s) and (r, n - s) are both valid ECDSA signatures.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.fixture
def rs(oauth_clients):
    """A resource server holding ``tokens:introspect``."""
    return make_caller(oauth_clients, "tokens:introspect", name="resource server")


@pytest.fixture
def alice(oauth_clients):
    return make_caller(oauth_clients, "message:send", name="alice")


@pytest.fixture
def bob(oauth_clients):
    return make_caller(oauth_clients, "message:send", name="bob")


@pytest.fixture
def mint(get_token):
    """``mint(caller)``: a fresh access token for ``caller``."""

    def _mint(caller: Caller, **form) -> str:
        response = get_token(caller.client_id, caller.secret, **form)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()["access_token"]

    return _mint


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def is_active(client, token: str, auth: dict) -> bool:
    answer = introspect(client, token, auth)
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["active"] is True or body == INACTIVE
    return body["active"]


# -- RV01: the client authenticates ----------------------------------------------------------

@pytest.mark.security("RV01")
@pytest.mark.parametrize("auth", [
    pytest.param(lambda c: {}, id="none"),
    pytest.param(lambda c: basic_auth(c.client_id, c.secret + "x"), id="wrong-secret"),
    pytest.param(lambda c: basic_auth("f" * 32, c.secret), id="unknown-client"),
])
def test_revocation_needs_client_authentication(client, rs, alice, mint, auth):
    token = mint(alice)
    response = revoke(client, token, auth(alice))
    assert_clean_error(response, 401, "invalid_client")
    assert is_active(client, token, rs.auth)


def test_missing_token_is_400(client, alice):
    assert_clean_error(revoke(client, None, alice.auth), 400, "invalid_request")
    assert_clean_error(revoke(client, "", alice.auth), 400, "invalid_request")


# -- RV02: only the client's own tokens ------------------------------------------------------

@pytest.mark.security("RV02")
def test_client_cannot_revoke_another_clients_token(app, client, rs, alice, bob, mint):
    token = mint(alice)
    for other in (bob, rs):
        response = revoke(client, token, other.auth)
        assert_clean_error(response, 400, "invalid_grant")
    assert is_active(client, token, alice.auth) and is_active(client, token, rs.auth)
    assert row_count(app, "revoked_tokens") == 0


# -- RV03: invalid tokens get 200 ------------------------------------------------------------

@pytest.mark.security("RV03")
@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 9000, "asak_" + "A" * 38,
                                   "\x00", "eyJhbGciOiJub25lIn0.e30."])
def test_invalid_tokens_get_200(app, client, alice, token):
    response = revoke(client, token, alice.auth)
    assert response.status_code == 200
    assert response.get_json() == {}
    assert response.headers["Cache-Control"] == "no-store"
    assert row_count(app, "revoked_tokens") == 0


FOREIGN_KEYS = {"RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
                "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
                "EdDSA": ed25519.Ed25519PrivateKey.generate}


def test_forged_token_naming_anothers_jti_revokes_nothing(app, client, rs, alice, bob, mint):
    """Bob cannot kill Alice's token by sending an unsigned or self-signed copy of its jti."""
    token = mint(alice)
    forged_claims = {**claims_of(token), "sub": bob.client_id, "client_id": bob.client_id}
    header = jwt.get_unverified_header(token)
    foreign = FOREIGN_KEYS[header["alg"]]()  # same kid and alg as the real token, other key
    forgeries = [
        jwt.encode(forged_claims, foreign, algorithm=header["alg"], headers=header),
        jwt.encode(forged_claims, None, algorithm="none", headers={"typ": "at+jwt"}),
    ]
    for forged in forgeries:
        assert revoke(client, forged, bob.auth).status_code == 200
    assert is_active(client, token, rs.auth)
    assert row_count(app, "revoked_tokens") == 0


@pytest.mark.security("RV03")
def test_unknown_api_key_gets_200(client, alice):
    assert revoke(client, api_keys.generate_api_key(), alice.auth).status_code == 200


@pytest.mark.security("RV03")
def test_revoking_twice_gets_200_and_records_once(app, client, alice, mint):
    token = mint(alice)
    assert revoke(client, token, alice.auth).status_code == 200
    assert revoke(client, token, alice.auth).status_code == 200
    assert row_count(app, "revoked_tokens") == 1


@pytest.mark.security("RV03")
def test_expired_token_gets_200_and_is_not_recorded(app, client, clock, alice, mint):
    token = mint(alice)
    clock.advance(claims_of(token)["exp"] - clock.now.timestamp() + app.config["LEEWAY"] + 1)
    assert revoke(client, token, alice.auth).status_code == 200
    assert row_count(app, "revoked_tokens") == 0


# -- RV04, RV07: effective at once, whatever the hint -----------------------------------------

@pytest.mark.security("RV07")
@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token", "bogus"])
def test_revoked_token_is_inactive_at_once(client, rs, alice, mint, hint):
    token = mint(alice)
    other = mint(alice)
    form = {"token_type_hint": hint} if hint else {}
    assert revoke(client, token, alice.auth, **form).status_code == 200
    assert introspect(client, token, rs.auth).get_json() == INACTIVE
    assert introspect(client, token, alice.auth).get_json() == INACTIVE
    assert is_active(client, other, rs.auth)  # only that token
    listed = feed(client, rs.auth).get_json()["revocations"]
    assert [entry["jti"] for entry in listed] == [claims_of(token)["jti"]]


# -- RV05: keyed by jti -------------------------------------------------------------------------

@pytest.mark.security("RV05")
def test_revocation_is_recorded_by_jti_only(app, client, alice, mint):
    token = mint(alice)
    claims = claims_of(token)
    assert revoke(client, token, alice.auth).status_code == 200
    with app.app_context():
        rows = db.session.scalars(sa.select(RevokedToken)).all()
        assert [(r.jti, r.client_id) for r in rows] == [(claims["jti"], alice.client_id)]
        assert int(rows[0].expires_at.timestamp()) == claims["exp"]
    dump = dump_tables(app)
    signature = token.rsplit(".", 1)[1]
    for needle in (token, signature, hashlib.sha256(token.encode()).hexdigest(),
                   hashlib.sha256(signature.encode()).hexdigest()):
        assert needle not in dump


def _trailing_bit_variant(token: str) -> str:
    """The same signature bytes, base64url-encoded with different unused trailing bits."""
    head, payload, signature = token.split(".")
    unused = {2: 4, 3: 2}[len(signature) % 4]  # bits of the last character that carry nothing
    last = ALPHABET.index(signature[-1])
    variant = signature[:-1] + ALPHABET[last ^ ((1 << unused) - 1)]
    assert b64url_decode(variant) == b64url_decode(signature)
    return f"{head}.{payload}.{variant}"


def _padded_signature(token: str) -> str:
    """The same token with base64 ``=`` padding on its signature segment (PyJWT accepts it;
    padding the header or payload would change the signing input)."""
    head, payload, signature = token.split(".")
    return f"{head}.{payload}.{signature}{'=' * (-len(signature) % 4)}"


def _ecdsa_variant(token: str) -> str:
    """ES256: (r, s) -> (r, n - s), a different signature over the same message."""
    head, payload, signature = token.split(".")
    raw = b64url_decode(signature)
    r, s = raw[:32], int.from_bytes(raw[32:], "big")
    return f"{head}.{payload}.{b64url(r + (P256_ORDER - s).to_bytes(32, 'big'))}"


@pytest.fixture
def es256_signing(app, clock):
    """Make a fresh ES256 key the active signing key for this test only."""
    with app.app_context():
        key = keys.create_signing_key("ES256", state=keys.ACTIVE)
        key.activated_at = clock.now  # in force now, and the most recently activated
        kid = key.kid
        db.session.commit()
    yield kid
    with app.app_context():
        db.session.execute(sa.delete(SigningKey).where(SigningKey.kid == kid))
        db.session.commit()


@pytest.mark.security("RV05")
def test_trailing_bit_variant_is_never_accepted(client, rs, alice, mint):
    """Non-canonical base64url (different unused bits) does not verify at all."""
    token = mint(alice)
    assert is_active(client, token, rs.auth)
    assert not is_active(client, _trailing_bit_variant(token), rs.auth)


@pytest.mark.security("RV05")
def test_padded_variant_is_never_accepted(client, rs, alice, mint):
    """Padding is not canonical base64url (RFC 7515 §2): the server's verifier (the guard's)
    refuses it outright, so a padded copy can neither be used nor outlive a revocation."""
    token = mint(alice)
    variant = _padded_signature(token)
    assert variant != token and is_active(client, token, rs.auth)
    assert not is_active(client, variant, rs.auth)
    assert revoke(client, variant, alice.auth).status_code == 200  # RFC 7009 §2.2: invalid is 200
    assert is_active(client, token, rs.auth)  # ... and revoked nothing


@pytest.mark.security("RV05")
@pytest.mark.parametrize("revoke_variant", [False, True], ids=["revoke-original",
                                                              "revoke-variant"])
def test_malleated_ecdsa_signature_dies_with_the_original(client, rs, alice, mint,
                                                          es256_signing, revoke_variant):
    token = mint(alice)
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    assert jwt.get_unverified_header(token)["kid"] == es256_signing
    variants = [_ecdsa_variant(token)]  # canonical base64url, so it verifies
    for variant in variants:
        assert variant != token and is_active(client, variant, rs.auth)
    for padded in (_padded_signature(variants[0]), _padded_signature(token)):
        assert not is_active(client, padded, rs.auth)
    assert revoke(client, variants[0] if revoke_variant else token, alice.auth).status_code == 200
    for candidate in (token, *variants):
        assert not is_active(client, candidate, rs.auth)


# -- pruning -----------------------------------------------------------------------------------

def test_revocations_are_pruned_after_exp(app, client, clock, alice, mint):
    first = mint(alice)
    assert revoke(client, first, alice.auth).status_code == 200
    clock.advance(claims_of(first)["exp"] - clock.now.timestamp() + app.config["LEEWAY"] + 1)
    second = mint(alice)
    assert revoke(client, second, alice.auth).status_code == 200
    with app.app_context():
        jtis = db.session.scalars(sa.select(RevokedToken.jti)).all()
    assert jtis == [claims_of(second)["jti"]]


# -- API keys ---------------------------------------------------------------------------------

def _new_key(app) -> tuple[str, str]:
    with app.app_context():
        record, secret = api_keys.create_api_key(name="k", scopes="sms:message:send",
                                                 actor="test")
        return record.id, secret


def test_key_manager_client_disables_an_api_key(app, client, oauth_clients, rs):
    manager = make_caller(oauth_clients, "account-management:manage sms:manage", name="manager")
    key_id, secret = _new_key(app)
    assert is_active(client, secret, rs.auth)

    assert revoke(client, secret, manager.auth).status_code == 200
    assert not is_active(client, secret, rs.auth)
    with app.app_context():
        assert api_keys.get_api_key(key_id).enabled is False
        events = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.object_id == key_id)
                                    .order_by(AuditEvent.id)).all()
    assert [(e.actor, e.action) for e in events] == [("test", "create"),
                                                    (f"client:{manager.client_id}", "disable")]
    assert events[1].changes["enabled"] == {"before": True, "after": False}

    # Idempotent: 200 again, nothing more audited.
    assert revoke(client, secret, manager.auth).status_code == 200
    assert row_count(app, "audit_events") == 2 + 2  # two clients created, plus the key events


@pytest.mark.parametrize("scope", ["message:send", "tokens:introspect", "sms:manage"])
def test_other_clients_cannot_revoke_api_keys(app, client, oauth_clients, rs, scope):
    caller = make_caller(oauth_clients, scope)
    key_id, secret = _new_key(app)
    assert_clean_error(revoke(client, secret, caller.auth), 400, "invalid_grant")
    assert is_active(client, secret, rs.auth)
    with app.app_context():
        assert api_keys.get_api_key(key_id).enabled is True


@pytest.mark.parametrize("scope", ["account-management:manage",
                                   "account-management:manage email:manage"])
def test_AD04_revocation_obeys_the_admin_apis_rule_for_changing_a_key(app, client, oauth_clients,
                                                                      rs, scope):
    """Issue 18 finding 5: a key manager that does not hold a key's scopes may not change
    it through the admin API, so not through /oauth2/revoke either."""
    caller = make_caller(oauth_clients, scope)
    key_id, secret = _new_key(app)
    assert_clean_error(revoke(client, secret, caller.auth), 400, "invalid_grant")
    assert is_active(client, secret, rs.auth)
    with app.app_context():
        assert api_keys.get_api_key(key_id).enabled is True
    token = client.post("/oauth2/token", data={"grant_type": "client_credentials",
                                               "resource": app.config["ISSUER"]},
                        headers=caller.auth).json["access_token"]
    refused = client.put(f"/settings/2/api-keys/{key_id}", json={"enabled": False},
                         headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 403


# -- the revocation feed ------------------------------------------------------------------------

def test_feed_needs_authentication_and_the_introspect_scope(client, alice):
    assert_clean_error(feed(client), 401, "invalid_client")
    assert_clean_error(feed(client, basic_auth(alice.client_id, "wrong")), 401,
                       "invalid_client")
    response = feed(client, alice.auth)
    assert response.status_code == 403
    assert "revocations" not in response.get_json()
    assert client.get("/oauth2/revocations", headers=alice.auth).status_code == 405


def test_feed_lists_revoked_jtis_with_exp_and_pages_by_cursor(client, rs, alice, bob, mint):
    empty = feed(client, rs.auth)
    assert empty.status_code == 200 and empty.headers["Cache-Control"] == "no-store"
    assert empty.get_json() == {"version": 2, "revocations": [], "cursor": 0,
                                "has_more": False}

    first = [mint(alice), mint(bob), mint(alice)]
    for token, owner in zip(first, (alice, bob, alice)):
        assert revoke(client, token, owner.auth).status_code == 200
    page = feed(client, rs.auth, after="0").get_json()
    assert page["revocations"] == [{"jti": claims_of(t)["jti"], "exp": claims_of(t)["exp"]}
                                   for t in first]
    assert page["has_more"] is False and isinstance(page["cursor"], int)
    assert feed(client, rs.auth).get_json() == page  # no cursor = from the start

    second = [mint(bob), mint(alice)]
    for token, owner in zip(second, (bob, alice)):
        assert revoke(client, token, owner.auth).status_code == 200
    newer = feed(client, rs.auth, after=str(page["cursor"])).get_json()
    assert [e["jti"] for e in newer["revocations"]] == [claims_of(t)["jti"] for t in second]
    assert newer["cursor"] > page["cursor"]
    done = feed(client, rs.auth, after=str(newer["cursor"])).get_json()
    assert done == {"version": 2, "revocations": [], "cursor": newer["cursor"],
                    "has_more": False}


def test_feed_pages_hold_at_most_the_page_size(client, monkeypatch, rs, alice, mint):
    monkeypatch.setattr(introspection, "FEED_PAGE_SIZE", 2)
    tokens = [mint(alice) for _ in range(5)]
    for token in tokens:
        assert revoke(client, token, alice.auth).status_code == 200
    seen, cursors, cursor = [], [], "0"
    while True:
        page = feed(client, rs.auth, after=cursor).get_json()
        assert len(page["revocations"]) <= 2
        seen += [entry["jti"] for entry in page["revocations"]]
        cursors.append(page["cursor"])
        cursor = str(page["cursor"])
        if not page["has_more"]:
            break
    assert seen == [claims_of(t)["jti"] for t in tokens]
    assert cursors == sorted(set(cursors)) and len(cursors) == 3


def test_feed_omits_revocations_of_tokens_past_exp_and_leeway(app, client, clock, rs, alice,
                                                              mint):
    """A revoked token stays listed while a verifier with our leeway could still accept it."""
    token = mint(alice)
    assert revoke(client, token, alice.auth).status_code == 200
    cursor_before = feed(client, rs.auth).get_json()["cursor"]
    leeway = app.config["LEEWAY"]
    clock.advance(claims_of(token)["exp"] - clock.now.timestamp() + leeway - 1)
    listed = feed(client, rs.auth).get_json()["revocations"]
    assert [entry["jti"] for entry in listed] == [claims_of(token)["jti"]]
    clock.advance(1)  # exp + leeway: no verifier accepts the token any more
    page = feed(client, rs.auth).get_json()
    assert page["revocations"] == [] and page["has_more"] is False
    assert page["cursor"] >= cursor_before  # a fresh reader skips what it never needs


@pytest.mark.parametrize("after", ["abc", "-1", "1.5", "1e3", " 1", "0x10", "9" * 19,
                                   "\u00b2", "\u0661\u0662", "1\x00"])
def test_feed_refuses_a_bad_cursor(client, rs, after):
    assert_clean_error(feed(client, rs.auth, after=after), 400, "invalid_request")


# -- concurrency over real HTTP ----------------------------------------------------------------

def test_concurrent_revocations_each_appear_once_in_order(live_server, monkeypatch):
    """20 clients revoke their tokens at once while a resource server follows the feed."""
    monkeypatch.setattr(introspection, "FEED_PAGE_SIZE", 3)
    base = live_server.url
    with live_server.app.app_context():
        callers = [client_service.create_client(name=f"c{n}", scope="message:send",
                                                actor="test") for n in range(20)]
        callers = [(record.client_id, secret) for record, secret in callers]
        rs_record, rs_secret = client_service.create_client(name="rs", scope="tokens:introspect",
                                                            actor="test")
        rs_auth = (rs_record.client_id, rs_secret)

    with requests.Session() as http:
        tokens = []
        for client_id, secret in callers:
            answer = http.post(f"{base}/oauth2/token", auth=(client_id, secret),
                               data={"grant_type": "client_credentials"}, timeout=30)
            assert answer.status_code == 200, answer.text
            tokens.append(answer.json()["access_token"])
    expected = {claims_of(token)["jti"] for token in tokens}

    follower_seen: list[str] = []
    stop = threading.Event()
    follower_errors: list[str] = []

    def follow() -> None:
        cursor = 0
        with requests.Session() as http:
            while True:
                final = stop.is_set()  # every revocation had its 200 before this poll began
                answer = http.post(f"{base}/oauth2/revocations", auth=rs_auth,
                                   data={"after": str(cursor)}, timeout=30)
                if answer.status_code != 200:
                    follower_errors.append(f"{answer.status_code} {answer.text[:200]}")
                    return
                page = answer.json()
                follower_seen.extend(entry["jti"] for entry in page["revocations"])
                if page["cursor"] < cursor:
                    follower_errors.append("cursor went back")
                cursor = page["cursor"]
                if final and not page["has_more"]:
                    missed = len(expected) - len(set(follower_seen))
                    if missed:
                        follower_errors.append(f"missed {missed}")
                    return

    def revoke_one(index: int) -> int:
        client_id, secret = callers[index]
        with requests.Session() as http:
            return http.post(f"{base}/oauth2/revoke", auth=(client_id, secret),
                             data={"token": tokens[index]}, timeout=60).status_code

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        with ThreadPoolExecutor(max_workers=20) as pool:
            statuses = list(pool.map(revoke_one, range(20)))
    finally:
        stop.set()
        follower.join(60)
    assert statuses == [200] * 20
    assert not follower.is_alive()
    assert follower_errors == []
    assert sorted(follower_seen) == sorted(expected)  # each exactly once, none skipped

    # A fresh reader walking the feed sees every jti once, cursors strictly increasing.
    walked, cursors, cursor = [], [], 0
    with requests.Session() as http:
        while True:
            page = http.post(f"{base}/oauth2/revocations", auth=rs_auth,
                             data={"after": str(cursor)}, timeout=30).json()
            walked += [entry["jti"] for entry in page["revocations"]]
            cursors.append(page["cursor"])
            cursor = page["cursor"]
            if not page["has_more"]:
                break
        for token in tokens:
            answer = http.post(f"{base}/oauth2/introspect", auth=rs_auth,
                               data={"token": token}, timeout=30)
            assert answer.json() == INACTIVE
    assert sorted(walked) == sorted(expected) and len(walked) == 20
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
