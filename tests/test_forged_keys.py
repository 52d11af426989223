"""Forged API keys (issue 18 finding 1, threat model AV01).

Anybody can mint well-formed keys (the checksum is public). Before the fix a guard sent every
one of them to the server's introspection endpoint with its own client, whose budget they used
up, and every real key then got 503. Now the guard follows the set of usable keys'
fingerprints and refuses other keys locally, and the server's introspection budget is spent
only by inactive answers.
"""

from __future__ import annotations

import base64
import hashlib
import time

import pytest
from conftest import basic_auth
from guard_support import (  # noqa: F401  (fixtures)
    UNAUTHORIZED,
    auth_server,
    counted,
    create_guarded_app,
    credentials,
    guard_config,
    running,
)

from authserver.credentials import api_keys

INTROSPECT = "/oauth2/introspect"
FINGERPRINTS = "/oauth2/api-key-fingerprints"


@pytest.fixture
def start(auth_server, credentials):
    """``start(**GUARD_settings)``: a guarded app of this test's own (served, so its
    followers run), used through its test client."""
    contexts = []

    def make(**settings):
        app = create_guarded_app(guard_config(auth_server, credentials, **settings))
        contexts.append(running(app))
        contexts[-1].__enter__()
        return app

    yield make
    for context in reversed(contexts):
        context.__exit__(None, None, None)


@pytest.fixture
def tight_introspection_budget(auth_server):
    """The server's per-client introspection limit on, low enough to spend in a test."""
    config = auth_server.app.config
    saved = config["INTROSPECTION_RATE_LIMIT"], config["RATELIMIT_KEY_PREFIX"]
    config["INTROSPECTION_RATE_LIMIT"] = "100/minute"
    config["RATELIMIT_KEY_PREFIX"] = f"forged-{time.monotonic_ns()}"
    yield
    config["INTROSPECTION_RATE_LIMIT"], config["RATELIMIT_KEY_PREFIX"] = saved


def _send(app, key: str, address: str):
    return app.test_client().get("/sms", headers={"Authorization": f"App {key}"},
                                 environ_base={"REMOTE_ADDR": address})


def test_AV01_forged_keys_from_many_addresses_never_make_a_real_key_fail(
        auth_server, credentials, start, tight_introspection_budget):
    real = credentials.api_key("sms:message:send", fresh=True)
    guard = start()
    assert _send(guard, real, "198.51.100.7").status_code == 200
    requests_seen = counted(auth_server)
    before = requests_seen[INTROSPECT]
    statuses = set()
    started = time.monotonic()
    for i in range(400):  # four times the server's introspection budget
        response = _send(guard, api_keys.generate_api_key(), f"203.0.{i // 250}.{i % 250}")
        statuses.add(response.status_code)
    elapsed = time.monotonic() - started
    assert statuses == {401}
    # The forged keys cost the server next to nothing: the process's budget for asking
    # about unknown keys (50 a second, 50 at once) and nothing more.
    assert requests_seen[INTROSPECT] - before <= 50 * elapsed + 50 + 2
    for address in ("198.51.100.7", "203.0.0.1"):
        started = time.perf_counter()
        response = _send(guard, real, address)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert time.perf_counter() - started < 1.0


def test_AV01_a_new_key_works_within_a_second_even_during_a_flood(auth_server, credentials,
                                                                  start):
    guard = start()
    assert _send(guard, api_keys.generate_api_key(), "203.0.113.1").status_code == 401
    new = credentials.api_key("sms:message:send", fresh=True)
    created = time.monotonic()
    while True:
        _send(guard, api_keys.generate_api_key(), "203.0.113.2")  # the flood goes on
        if _send(guard, new, "198.51.100.8").status_code == 200:
            break
        assert time.monotonic() - created < 1.5, "the new key was not accepted in time"
        time.sleep(0.05)


def test_AV01_a_disabled_key_is_refused_and_unknown_keys_get_the_usual_401(
        auth_server, credentials, start):
    key = credentials.api_key("sms:message:send", fresh=True)
    guard = start()
    assert _send(guard, key, "198.51.100.9").status_code == 200
    credentials.disable_key(key)
    time.sleep(5.2)  # the guard's positive answers live at most 5 s
    refused = _send(guard, key, "198.51.100.9")
    assert refused.status_code == 401 and refused.get_data(as_text=True) == UNAUTHORIZED
    forged = _send(guard, api_keys.generate_api_key(), "198.51.100.9")
    assert forged.get_data(as_text=True) == UNAUTHORIZED
    assert forged.headers["WWW-Authenticate"] == refused.headers["WWW-Authenticate"]


# -- the server side ------------------------------------------------------------------------

@pytest.fixture
def app_config():
    return {"INTROSPECTION_RATE_LIMIT": "5/minute", "RATELIMIT_STORAGE_URI": "memory://"}


def _fingerprint(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()[:8]


def _fingerprints(client, auth, version: str = ""):
    return client.post(FINGERPRINTS, data={"version": version}, headers=auth)


def test_AV01_introspection_budget_is_spent_only_by_inactive_answers(app, client,
                                                                     oauth_clients):
    rs = basic_auth(*oauth_clients.create(scope="tokens:introspect"))
    with app.app_context():
        _, real = api_keys.create_api_key(name="real", scopes=["sms:message:send"], actor="t")
    statuses = [client.post(INTROSPECT, data={"token": api_keys.generate_api_key()},
                            headers=rs).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]  # token scanning is still throttled (IN09)
    for _ in range(3):
        answer = client.post(INTROSPECT, data={"token": real}, headers=rs)
        assert answer.status_code == 200 and answer.json["active"] is True


def test_AV01_fingerprint_set_lists_usable_keys_and_follows_changes(app, client, oauth_clients):
    rs = basic_auth(*oauth_clients.create(scope="tokens:introspect"))
    with app.app_context():
        first, first_key = api_keys.create_api_key(name="a", scopes=["sms:message:send"],
                                                   actor="t")
        first_id = first.id
    answer = _fingerprints(client, rs)
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    listed = base64.urlsafe_b64decode(answer.json["fingerprints"])
    assert listed == _fingerprint(first_key)
    version = answer.json["version"]
    assert _fingerprints(client, rs, version).json == {"version": version, "unchanged": True}

    with app.app_context():
        _, second_key = api_keys.create_api_key(name="b", scopes=["sms:message:send"], actor="t")
        api_keys.disable_api_key(first_id, actor="t")
    changed = _fingerprints(client, rs, version).json
    assert changed["version"] != version
    assert base64.urlsafe_b64decode(changed["fingerprints"]) == _fingerprint(second_key)
    metadata = client.get("/.well-known/oauth-authorization-server").json
    assert metadata["api_key_fingerprints_endpoint"].endswith(FINGERPRINTS)


def test_AV01_fingerprint_set_needs_the_introspect_scope(client, oauth_clients):
    assert _fingerprints(client, {}).status_code == 401
    other = basic_auth(*oauth_clients.create(scope="message:send"))
    refused = _fingerprints(client, other)
    assert refused.status_code == 403 and "fingerprints" not in refused.json
    rs = basic_auth(*oauth_clients.create(scope="tokens:introspect"))
    assert _fingerprints(client, rs, "x" * 65).status_code == 400


# -- the guard's budget for keys its set does not know yet ------------------------------------

class _Server:
    """What KeyFingerprints asks the server: the set of the keys in ``keys``."""

    def __init__(self, *keys: str):
        self.keys = list(keys)
        self.calls = 0

    def __call__(self, version: str) -> dict:
        self.calls += 1
        current = str(len(self.keys))
        if version == current:
            return {"version": current, "unchanged": True}
        raw = b"".join(sorted(_fingerprint(key) for key in self.keys))
        return {"version": current, "fingerprints": base64.urlsafe_b64encode(raw).decode()}


def test_AV01_unknown_keys_spend_a_per_caller_budget_that_real_keys_give_back():
    from resource_demo.guard.key_fingerprints import KeyFingerprints

    real = api_keys.generate_api_key()
    server = _Server(real)
    fingerprints = KeyFingerprints(server, miss_cooldown=3600)
    fingerprints.refresh()
    assert fingerprints.check(real, "198.51.100.1") == "listed"
    # Forged keys from one address: its burst of 20, then refused without asking.
    answers = [fingerprints.check(api_keys.generate_api_key(), "203.0.113.9")
               for _ in range(25)]
    assert answers[:20] == ["budget"] * 20 and set(answers[20:]) == {"refused"}
    # Another address still has its own budget.
    assert fingerprints.check(api_keys.generate_api_key(), "198.51.100.1") == "budget"
    # A caller whose unknown keys are real gets each unit back: it never runs dry.
    for _ in range(40):
        new = api_keys.generate_api_key()
        assert fingerprints.check(new, "198.51.100.2") == "budget"
        fingerprints.confirmed(new, "198.51.100.2")
        assert fingerprints.check(new, "198.51.100.2") == "listed"
    assert server.calls == 1


def test_AV01_a_miss_refreshes_the_set_at_most_once_per_cooldown():
    from resource_demo.guard.key_fingerprints import KeyFingerprints

    server = _Server(api_keys.generate_api_key())
    fingerprints = KeyFingerprints(server, miss_cooldown=0.3)
    fingerprints.refresh()
    new = api_keys.generate_api_key()
    server.keys.append(new)
    time.sleep(0.35)
    assert fingerprints.check(new, "198.51.100.3") == "listed"  # one refresh found it
    assert server.calls == 2
    forged = [fingerprints.check(api_keys.generate_api_key(), f"203.0.113.{i}")
              for i in range(50)]
    assert server.calls == 2 and "listed" not in forged
