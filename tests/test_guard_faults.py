"""The resource guard when things go wrong (threat model RL2, RL3, RL4, RS18 and its policies),
on each adapter (Flask and FastAPI): signing keys rotated while requests flow, the authorization
server stopped or never up, and clocks that disagree. Each test has a ``live_server`` of its
own, since it stops or changes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

import jwt
import pytest
import requests
from guard_support import (  # noqa: F401  (fixtures)
    JWKS,
    SERVICE_UNAVAILABLE,
    UNAUTHORIZED,
    Credentials,
    SkewedClock,
    counted,
    create_guarded_app,
    framework,
    guard_config,
    running,
    soon,
)
from werkzeug.serving import make_server

from authserver.credentials.api_keys import generate_api_key
from authserver.credentials.signing_keys import rotate_signing_keys


@pytest.fixture
def credentials(live_server) -> Credentials:
    """Credentials minted at this test's ``live_server``."""
    counted(live_server)
    return Credentials(live_server)


def call(url: str, credential: str, scheme: str = "Bearer", path: str = "/sms"):
    return requests.get(url + path, headers={"Authorization": f"{scheme} {credential}"},
                        timeout=10)


def assert_unavailable(response) -> None:
    """503 in the envelope with Retry-After (never 401 for a credential that may be good)."""
    assert response.status_code == 503, response.text
    assert response.text == SERVICE_UNAVAILABLE
    assert int(response.headers["Retry-After"]) > 0


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


# -- RL2 signing-key rotation ---------------------------------------------------------------

COOLDOWN = 0.5  # the guard's JWKS refetch cooldown, scaled down from 10 s


class Traffic(threading.Thread):
    """Fresh tokens from several clients, each sent to the guard at once, until stopped."""

    def __init__(self, url: str, credentials: Credentials, clients: list[tuple[str, str]]):
        super().__init__(daemon=True)
        self.url, self.credentials, self.clients = url, credentials, clients
        self.statuses: Counter[int] = Counter()
        self.kids: list[str] = []
        self.refused: list[tuple[int, str]] = []
        self.errors: list[BaseException] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            n = 0
            while not self.stopping.is_set():
                client_id, secret = self.clients[n % len(self.clients)]
                n += 1
                minted = self.credentials.token_response(client_id, secret)
                if minted.status_code == 429:  # the token endpoint's per-client limit
                    continue
                token = minted.json()["access_token"]
                response = call(self.url, token)
                self.statuses[response.status_code] += 1
                self.kids.append(kid_of(token))
                if response.status_code != 200:
                    self.refused.append((response.status_code, kid_of(token)))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.errors.append(exc)


def test_RL2_rotation_while_requests_flow_refuses_no_valid_token(framework, live_server,
                                                                  credentials):
    """Three rotations, each at least one refetch cooldown after the last (publish-before-sign
    as the guard sees it): every fresh token is accepted, and so is one minted before."""
    app = create_guarded_app(framework=framework, config=guard_config(
        live_server, credentials, GUARD_JWKS_REFETCH_COOLDOWN=COOLDOWN))
    clients = [credentials.client("sms:message:send", fresh=True) for _ in range(4)]
    before = credentials.token_response(*clients[0]).json()["access_token"]
    with running(app) as url:
        assert call(url, before).status_code == 200  # warm: the JWKS is cached from here on
        fetches_before = live_server.requests[JWKS]
        traffic = Traffic(url, credentials, clients)
        started = time.monotonic()
        traffic.start()
        try:
            for _ in range(3):
                time.sleep(COOLDOWN * 1.5)
                with live_server.app.app_context():
                    rotate_signing_keys()
            time.sleep(COOLDOWN * 1.5)
        finally:
            traffic.stopping.set()
            traffic.join(10)
        elapsed = time.monotonic() - started
        assert not traffic.errors, traffic.errors
        assert traffic.refused == [] and set(traffic.statuses) == {200}, traffic.statuses
        assert len(set(traffic.kids)) == 4, "tokens signed with the first key and three new ones"
        assert call(url, before).status_code == 200  # minted before the rotations: still valid
        fetches = live_server.requests[JWKS] - fetches_before
        assert 1 <= fetches <= elapsed / COOLDOWN + 1  # one refetch per new kid at most


def test_JW03_back_to_back_rotations_never_sign_with_an_unseen_key(framework, live_server,
                                                                   credentials):
    # The server's publish delay covers the guard's 10 s refetch cooldown (threat model policy).
    live_server.app.config["SIGNING_KEY_PUBLISH_DELAY"] = 15
    app = create_guarded_app(framework=framework, config=guard_config(live_server, credentials))
    client = credentials.client("sms:message:send", fresh=True)
    with running(app) as url:
        assert call(url, credentials.token_response(*client).json()["access_token"]).status_code \
            == 200
        with live_server.app.app_context():
            rotate_signing_keys()
            rotate_signing_keys()
        token = credentials.token_response(*client).json()["access_token"]
        assert call(url, token).status_code == 200


# -- RS18 / RL1 / RL3 the authorization server stopped ---------------------------------------

def test_RS18_RL1_server_stopped_jwts_still_verified_api_keys_503(framework, live_server,
                                                                  credentials):
    app = create_guarded_app(framework=framework, config=guard_config(
        live_server, credentials, GUARD_HTTP_TIMEOUT=1, GUARD_API_KEY_CACHE_SECONDS=1))
    used_token = credentials.jwt("sms:manage")
    unused_token = credentials.jwt("sms:message:send")
    used_key = credentials.api_key("sms:manage")
    unused_key = credentials.api_key("sms:message:send")
    with running(app) as url:
        assert call(url, used_token).status_code == 200
        assert call(url, used_key, "App").status_code == 200
        live_server.stop()  # still listening, never answering: every call times out
        # JWTs: verified locally from the cached JWKS (RS18).
        assert call(url, used_token).status_code == 200
        assert call(url, unused_token).status_code == 200
        assert call(url, "abc.def.ghi").status_code == 401  # bad tokens are still bad
        # API keys: nobody to ask, so 503 (RL1), never 401.
        assert_unavailable(call(url, unused_key, "App"))
        assert_unavailable(call(url, generate_api_key(), "App"))
        time.sleep(1.1)  # past the key cache
        assert_unavailable(call(url, used_key, "App"))
        # A malformed key needs no server: still 401.
        assert call(url, "asak_nope", "App").text == UNAUTHORIZED
        live_server.server.server_close()  # now connections are refused outright
        assert_unavailable(call(url, used_key, "App"))
        assert call(url, used_token).status_code == 200


@pytest.mark.parametrize("kind", ["jwt", "api_key"])
def test_RL3_cold_start_with_the_server_down_is_503_then_recovers(framework, live_server, credentials,
                                                                  kind):
    credential = credentials.credential(kind, "sms:manage")
    scheme = "Bearer" if kind == "jwt" else "App"
    # The server is closed, so the cold-start calls are refused at once whatever the timeout;
    # the timeout only bounds the recovery calls, which a loaded CI machine can take over 1 s
    # to answer (a ReadTimeout there is a correct 503, not the recovery this test checks).
    config = guard_config(live_server, credentials, GUARD_HTTP_TIMEOUT=10)
    port = live_server.server.server_port
    live_server.stop()
    live_server.server.server_close()
    app = create_guarded_app(config, framework)
    with running(app) as url:
        for _ in range(2):  # no metadata, no keys: 503 each time, never 500 or 401
            assert_unavailable(call(url, credential, scheme))
        server = make_server("127.0.0.1", port, live_server.app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            response = call(url, credential, scheme)
            assert response.status_code == 200, response.text
        finally:
            server.shutdown()
            thread.join(5)
            server.server_close()


# -- RL4 clock skew between the guard and the server ------------------------------------------

JWT_SKEWS = [  # guard clock minus server clock (s) for a 60 s token -> status
    (-30, 200),  # iat and nbf 30 s ahead of the guard: within the leeway
    (30, 200),
    (60 + 25, 200),  # expired 25 s ago by the guard's clock: within the leeway
    (-300, 401),  # issued five minutes in the guard's future
    (300, 401),  # expired four minutes ago by the guard's clock
]
KEY_SKEWS = [  # for a key valid from now for 60 s
    (-30, 200),
    (30, 200),
    (60 + 25, 200),
    (-300, 401),
    (300, 401),
]


def test_RL4_jwt_clock_skew(framework, live_server, credentials):
    clock = SkewedClock()
    app = create_guarded_app(framework=framework,
                             config=guard_config(live_server, credentials, GUARD_CLOCK=clock))
    token = credentials.jwt("sms:manage", token_ttl=60)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 60
    with running(app) as url:
        seen = {}
        for offset, _ in JWT_SKEWS:
            clock.offset = offset
            seen[offset] = call(url, token).status_code
    assert seen == dict(JWT_SKEWS)


def test_RL4_api_key_clock_skew(framework, live_server, credentials, caplog):
    caplog.set_level(logging.INFO, logger="resource_demo.guard")
    clock = SkewedClock()
    app = create_guarded_app(framework=framework,
                             config=guard_config(live_server, credentials, GUARD_CLOCK=clock))
    key = credentials.api_key("sms:manage", valid_to=soon(60))
    with running(app) as url:
        seen, bodies = {}, {}
        for offset, _ in KEY_SKEWS:
            clock.offset = offset
            answer = call(url, key, "App")
            seen[offset], bodies[offset] = answer.status_code, answer.text
    reasons = [record.getMessage() for record in caplog.records
               if record.name.startswith("resource_demo.guard")]
    if seen != dict(KEY_SKEWS):  # untruncated: each answer and the guard's log
        pytest.fail(f"statuses {seen}, expected {dict(KEY_SKEWS)}\nbodies {bodies}\n"
                    "guard log:\n" + "\n".join(reasons))
