"""Fault injection: threat model RL1, RL2, RL4, RL5, RL6 and RL7 against real processes.

The database is a private PostgreSQL cluster the module creates with ``initdb`` on its own
port (tests/pgcluster.py), so tests can stop it, freeze it with SIGSTOP or leave it running
while they kill -9 the server. Servers are real ``authserver serve`` (gunicorn) processes;
the guard is the real ``resource_demo`` app. Everything listens on 127.0.0.1.

The default run takes the short variants; ``pytest -m slow tests/test_faults.py`` runs the
long ones (60 s per load level, more crash rounds). Each test leaves its numbers in
``user_properties["observed"]`` for docs/security.md (tests/report_plugin.py).
"""

from __future__ import annotations

import json
import logging
import random
import statistics
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import jwt
import pytest
import requests
from conftest import BACKENDS, LiveServer, _make_app, basic_auth
from crash_support import CrashRound, check_after_crash
from fault_support import (
    PRE_PING,
    Blackhole,
    Deployment,
    Server,
    bearer,
    load,
    parallel,
    post_form,
    rss_kib,
    send_sms,
    server_settings_env,
    token,
    wait_until,
)
from guard_support import running
from load_support import LoadStack, RotationLoad
from pgcluster import PrivateCluster, postgres_bindir
from serverproc import authserver, free_port

from authserver.credentials import clients as client_service
from authserver.credentials import signing_keys as keys
from authserver.credentials.clients import get_client
from authserver.oauth2.tokens import encode_access_token
from authserver.storage.db import db, upgrade_database
from resource_demo.demo.app import create_app as create_demo_app

pytestmark = pytest.mark.skipif(postgres_bindir() is None,
                                reason="needs the PostgreSQL server programs (initdb, pg_ctl)")

#: Threat model policy: an unknown kid triggers at most one JWKS refetch per 10 s at the guard.
GUARD_REFETCH_COOLDOWN = 10.0
FAULT_ISSUER = "https://auth.faults.test"
#: What an outage answer must never show (threat model RL1: no DSN, no trace).
LEAK_MARKERS = ("Traceback", "File \"", "site-packages", "sqlalchemy", "psycopg", "postgres",
                "127.0.0.1", "OperationalError", "SELECT ", "connection")


def observe(request, **values) -> None:
    """Leave numbers for the report (tests/report_plugin.py reads user_properties)."""
    for name, value in values.items():
        request.node.user_properties.append((name, value))


@pytest.fixture
def long_variant(request) -> None:
    """Skip unless the run selected slow tests (``-m slow``); list it before other fixtures."""
    if "slow" not in (request.config.option.markexpr or ""):
        pytest.skip("long variant: run with -m slow")


@pytest.fixture(scope="module")
def cluster():
    """The module's private PostgreSQL cluster (destroyed afterwards)."""
    private = PrivateCluster(postgres_bindir())
    try:
        private.start()
        yield private
    finally:
        private.destroy()


@pytest.fixture
def deployment(cluster, tmp_path):
    """A fresh database on the cluster with a fixed issuer; servers are killed afterwards."""
    made = Deployment(cluster, tmp_path, FAULT_ISSUER)
    yield made
    made.close()


def issuer_deployment(cluster, tmp_path) -> tuple[Deployment, int]:
    """A deployment whose issuer is the URL of a server still to be started on ``port``
    (a guard discovers the metadata at its issuer)."""
    port = free_port()
    return Deployment(cluster, tmp_path, f"http://127.0.0.1:{port}"), port


# --- RL1: the database goes away ---------------------------------------------------------------

def assert_outage_answer(name: str, response: requests.Response) -> None:
    """503, Retry-After, a generic JSON body, never ``active``, never the DSN or a trace."""
    assert response.status_code == 503, (name, response.status_code, response.text)
    assert int(response.headers["Retry-After"]) > 0, name
    assert response.headers["Content-Type"].startswith("application/json"), name
    assert "active" not in response.json(), name
    assert not any(marker in response.text for marker in LEAK_MARKERS), (name, response.text)


def test_RL1_RV06_database_down_gives_503_and_recovers_without_restart(cluster, tmp_path,
                                                                        request):
    """Token, introspection, revocation, feed and admin API 503 + Retry-After while the
    database is stopped; /readyz 503, /healthz 200; the guard keeps verifying JWTs and answers
    503 for API keys; requests succeed again after ``pg_ctl start`` without a restart. Two idle
    servers measure what a stale pooled connection costs with and without pool_pre_ping."""
    deployment, port = issuer_deployment(cluster, tmp_path)
    try:
        server = deployment.server("a", port=port, workers=2)  # shipped engine settings
        idle = deployment.server("idle")
        idle_pinging = deployment.server("idle-pre-ping", SQLALCHEMY_ENGINE_OPTIONS=PRE_PING)
        client = deployment.client("message:send")
        introspector = deployment.client("tokens:introspect")
        admin = deployment.client("account-management:manage")
        seen_key, unseen_key = (deployment.api_key("sms:message:send") for _ in range(2))
        access_token = token(server.url, *client).json()["access_token"]
        admin_token = token(server.url, *admin, resource=deployment.issuer).json()["access_token"]
        demo = create_demo_app({"GUARD_ISSUER": server.url, "GUARD_CLIENT_ID": introspector[0],
                                "GUARD_CLIENT_SECRET": introspector[1]})
        with running(demo) as demo_url:
            assert send_sms(demo_url, "Bearer", access_token).status_code == 200  # JWKS cached
            assert send_sms(demo_url, "App", seen_key).status_code == 200
            for each in (server, server, idle, idle_pinging):
                assert token(each.url, *client).status_code == 200  # pooled connections

            cluster.stop()
            outage = {
                "token": token(server.url, *client),
                "token (platform path)": requests.post(
                    server.url + "/auth/1/oauth2/token", auth=client, timeout=10,
                    data={"grant_type": "client_credentials"}),
                "introspect JWT": post_form(server.url, "/oauth2/introspect",
                                            {"token": access_token}, introspector),
                "introspect API key": post_form(server.url, "/oauth2/introspect",
                                                {"token": unseen_key}, introspector),
                "revoke": post_form(server.url, "/oauth2/revoke", {"token": access_token},
                                    client),
                "revocation feed": post_form(server.url, "/oauth2/revocations", {"after": "0"},
                                             introspector),
                "admin API": requests.get(server.url + "/settings/2/api-keys",
                                          headers=bearer(admin_token), timeout=10),
                "readyz": requests.get(server.url + "/readyz", timeout=10),
            }
            for name, response in outage.items():
                assert_outage_answer(name, response)
            assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
            guard_jwt = [send_sms(demo_url, "Bearer", access_token).status_code
                         for _ in range(5)]
            assert guard_jwt == [200] * 5
            unseen = send_sms(demo_url, "App", unseen_key)
            assert unseen.status_code == 503 and int(unseen.headers["Retry-After"]) > 0
            # A key answered within the guard's cache TTL may still pass: never a 401.
            assert send_sms(demo_url, "App", seen_key).status_code in (200, 503)

            cluster.start()
            recovery = wait_until(
                lambda: requests.get(server.url + "/readyz", timeout=10).status_code == 200
                and token(server.url, *client).status_code == 200, 10)
            after_idle = [token(idle.url, *client).status_code for _ in range(3)]
            after_pinging = [token(idle_pinging.url, *client).status_code for _ in range(3)]
            key_back = wait_until(lambda: send_sms(demo_url, "App", unseen_key).status_code
                                  == 200, 10)
    finally:
        deployment.close()
    observe(request, input="pg_ctl stop -m fast, then pg_ctl start",
            observed=f"{len(outage)} endpoints 503 + Retry-After; guard: JWT 200 x5, unseen API "
                     f"key 503; recovered {recovery:.1f} s after start; first requests of an "
                     f"idle server {after_idle} (shipped settings), {after_pinging} "
                     f"(pool_pre_ping); guard API key back after {key_back:.1f} s")
    # A stale pooled connection costs at most one 503, then the pool is replaced.
    assert after_idle[-1] == 200 and after_idle.count(503) <= 1 and set(after_idle) <= {200, 503}
    assert after_pinging == [200] * 3


def timed_token_request(url: str, seconds: float) -> tuple[requests.Response | None, float]:
    """A token request with a client timeout of ``seconds``; (answer or None, elapsed)."""
    started = time.monotonic()
    try:
        answer = requests.post(url + "/oauth2/token", auth=("some-client", "some-secret"),
                               data={"grant_type": "client_credentials"}, timeout=seconds)
    except requests.RequestException:
        answer = None
    return answer, time.monotonic() - started


def hung_database_answer(tmp_path, seconds: float, **extra: str):
    """A server whose database is a Blackhole: (token answer or None, elapsed, readyz)."""
    hole = Blackhole()
    url = f"postgresql+psycopg://postgres@127.0.0.1:{hole.port}/hung"
    server = Server(server_settings_env(tmp_path / "instance", url, ISSUER=FAULT_ISSUER,
                                        **extra), log_path=tmp_path / "server.log")
    try:
        server.wait_ready()
        answer, elapsed = timed_token_request(server.url, seconds)
        ready = requests.get(server.url + "/readyz", timeout=seconds)
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
    finally:
        server.kill()
        hole.close()
    return answer, elapsed, ready


@pytest.mark.parametrize("connect_timeout", [None, 2], ids=["default", "2s"])
def test_RL1_hung_database_answered_within_connect_timeout(tmp_path, request, connect_timeout):
    """Database hung (accepts TCP, never answers) and no pooled connection: a 503 within
    ``connect_args.connect_timeout`` (5 s by default on PostgreSQL) and a margin."""
    options = {} if connect_timeout is None else {"SQLALCHEMY_ENGINE_OPTIONS": json.dumps(
        {"connect_args": {"connect_timeout": connect_timeout}})}
    bound = connect_timeout or 5
    answer, elapsed, ready = hung_database_answer(tmp_path, bound + 5, **options)
    observe(request, input=f"TCP blackhole as the database; connect_timeout "
                           f"{'default' if connect_timeout is None else connect_timeout}",
            observed="no answer" if answer is None else
            f"{answer.status_code} after {elapsed:.1f} s; /readyz {ready.status_code}")
    assert answer is not None, f"no answer within {bound + 5} s"
    assert_outage_answer("token", answer)
    assert elapsed < bound + 3, elapsed
    assert_outage_answer("readyz", ready)


def frozen_database_answer(deployment: Deployment, seconds: float, **extra: str):
    """SIGSTOP the postmaster and every backend after the pool is warm; a token request with
    a client timeout of ``seconds``: (answer or None, elapsed)."""
    server = deployment.server("a", **extra)
    client = deployment.client("message:send")
    assert token(server.url, *client).status_code == 200
    deployment.cluster.freeze()
    try:
        started = time.monotonic()
        try:
            answer = token(server.url, *client, timeout=seconds)
        except requests.RequestException:
            answer = None
        elapsed = time.monotonic() - started
    finally:
        deployment.cluster.thaw()
    assert token(server.url, *client).status_code in (200, 503)
    return answer, elapsed


def test_RL1_frozen_database_answered_within_db_request_timeout(deployment, request):
    """The database freezes behind a pooled connection: DB_REQUEST_TIMEOUT (3 s here) bounds
    the request, answered 503 + Retry-After."""
    answer, elapsed = frozen_database_answer(deployment, 10, DB_REQUEST_TIMEOUT="3")
    observe(request, input="SIGSTOP of postmaster and backends, warm pool, "
                           "DB_REQUEST_TIMEOUT 3 s",
            observed="no answer within 10 s" if answer is None
            else f"{answer.status_code} after {elapsed:.1f} s")
    assert answer is not None, "no answer within 10 s"
    assert_outage_answer("token", answer)
    assert elapsed < 3 + 3, elapsed


def test_RL1_frozen_database_with_pool_pre_ping_answered_in_time(deployment, request):
    """The same freeze with pool_pre_ping=True (SQLAlchemy's own ping would run before the
    pool's checkout event, outside the deadline): still a 503 bounded by DB_REQUEST_TIMEOUT
    (one deadline for the ping, one for the fresh connection the pool then tries)."""
    answer, elapsed = frozen_database_answer(deployment, 12, DB_REQUEST_TIMEOUT="3",
                                             SQLALCHEMY_ENGINE_OPTIONS=PRE_PING)
    observe(request, input="SIGSTOP of postmaster and backends, warm pool, pool_pre_ping, "
                           "DB_REQUEST_TIMEOUT 3 s",
            observed="no answer within 12 s" if answer is None
            else f"{answer.status_code} after {elapsed:.1f} s")
    assert answer is not None, "no answer within 12 s"
    assert_outage_answer("token", answer)
    assert elapsed < 2 * 3 + 3, elapsed


# --- RL2: signing-key rotation under load ------------------------------------------------------

def run_rotations(deployment: Deployment, port: int, offsets: list[float], tail: float
                  ) -> tuple[RotationLoad, list[str], list[str]]:
    """Two servers, a guard, load, and one rotation at each offset after the guard's first
    success; returns the load, the kids rotated to and the load's errors."""
    servers = [deployment.server(name, port=server_port, SIGNING_KEY_CACHE_SECONDS="1")
               for name, server_port in (("a", port), ("b", None))]
    client = deployment.client("message:send")
    introspector = deployment.client("tokens:introspect")
    demo = create_demo_app({"GUARD_ISSUER": servers[0].url, "GUARD_CLIENT_ID": introspector[0],
                            "GUARD_CLIENT_SECRET": introspector[1],
                            "GUARD_JWKS_REFETCH_COOLDOWN": GUARD_REFETCH_COOLDOWN})
    rotated = []
    with running(demo) as demo_url:
        work = RotationLoad(servers, demo_url, client)
        with load(4, work.step, seconds=offsets[-1] + tail + 30) as active:
            wait_until(lambda: work.first_success is not None, 15)
            start = work.first_success
            for offset in offsets:
                time.sleep(max(0.0, start + offset - time.monotonic()))
                rotated.append(deployment.rotate())
            time.sleep(max(0.0, start + offsets[-1] + tail - time.monotonic()))
        errors = [repr(error) for error in active.errors]
    return work, rotated, errors


def test_RL2_JW03_back_to_back_rotations_on_two_servers_refuse_no_valid_token(
        cluster, tmp_path, request, caplog):
    """An operator rotates three times, two seconds apart, while four threads mint tokens at
    two server processes and present each new token and an old one to the guard. With
    SIGNING_KEY_PUBLISH_DELAY one second above the guard's refetch cooldown (10 s), no valid
    token is refused, and all four keys sign in turn."""
    caplog.set_level(logging.INFO, logger="resource_demo.guard")
    caplog.set_level(logging.DEBUG, logger="resource_demo.guard.jwks")  # each fetch's kids
    delay = GUARD_REFETCH_COOLDOWN + 1
    port = free_port()
    deployment = Deployment(cluster, tmp_path, f"http://127.0.0.1:{port}",
                            SIGNING_KEY_PUBLISH_DELAY=delay)
    try:
        offsets = [1.0, 3.0, 5.0]
        # The third key signs from about offsets[1] + delay: run two seconds past that.
        work, rotated, errors = run_rotations(deployment, port, offsets,
                                              tail=offsets[1] + delay + 2 - offsets[-1])
    finally:
        deployment.close()
    observe(request, input=f"3 rotations at +{offsets} s under load, 2 server processes, "
                           f"4 threads, publish delay {delay:g} s",
            observed=f"{sum(work.statuses.values())} guarded calls {dict(work.statuses)}; "
                     f"{len(work.refused)} refused; tokens per key in turn "
                     f"{[work.kids[kid] for kid in work.kids]}")
    assert errors == []
    # Times in seconds after the first guarded success, as in work.refused.
    reasons = [f"{record.created - work.first_success_at:+.2f} {record.getMessage()}"
               for record in caplog.records if record.name.startswith("resource_demo.guard")]
    if work.refused:  # the whole story, untruncated: what was refused when, and each fetch
        pytest.fail(f"valid tokens refused (status, kid, s): {work.refused}\n"
                    f"rotated to {rotated}\nguard log:\n" + "\n".join(reasons))
    assert set(rotated) <= set(work.kids), "a rotated-to key never signed a token"
    assert len(work.kids) == 4


# --- RL4: clock skew between the server and the guard ------------------------------------------

class SkewedUTC:
    """The server's CLOCK: real UTC time plus ``offset`` seconds."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=self.offset)


def fresh_app(backend: str, cluster: PrivateCluster, tmp, **config):
    """The app on a new, migrated database with its first signing keys (SQLite file or a
    database on the private cluster)."""
    url = f"sqlite:///{tmp / 'skew.sqlite'}" if backend == "sqlite" \
        else cluster.url(cluster.create_database())
    application = _make_app(url, tmp / "instance", SIGNING_KEY_CACHE_SECONDS=0, **config)
    with application.app_context():
        upgrade_database()
        keys.ensure_signing_keys()
    return application


@pytest.fixture(scope="module", params=BACKENDS)
def skew_server(request, cluster, tmp_path_factory):
    """A live authorization server with a settable clock on a fresh database, one per
    backend (its first key is in force whatever the clock: see
    test_RL4_server_clock_behind_the_first_keys_still_signs)."""
    clock = SkewedUTC()
    application = fresh_app(request.param, cluster, tmp_path_factory.mktemp("skew"), CLOCK=clock)
    server = LiveServer(application)
    application.config.update(ISSUER=server.url, DEFAULT_AUDIENCE=server.url + "/api")
    server.clock, server.backend = clock, request.param
    server.clients = {}
    with application.app_context():
        for ttl in (None, 60):
            record, secret = client_service.create_client(name="skew", scope="message:send",
                                                          actor="test", token_ttl=ttl)
            server.clients[ttl] = (record.client_id, secret)
    server.start()
    yield server
    server.stop()
    server.server.server_close()
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


#: (case, server clock minus guard clock in s, token lifetime or None for 3600 s, accepted).
SKEWS = [
    ("+30s", 30, None, True),           # iat/nbf 30 s ahead: within the 30 s leeway
    ("+45s", 45, None, False),          # beyond it
    ("+5min", 300, None, False),
    ("-30s", -30, None, True),
    ("-5min", -300, None, True),        # an hour-long token merely looks 5 min older
    ("-80s-ttl60", -80, 60, True),      # expired 20 s ago by the guard's clock: in leeway
    ("-100s-ttl60", -100, 60, False),   # expired 40 s ago
    ("-5min-ttl60", -300, 60, False),
]


@pytest.mark.parametrize("case, skew, ttl, accepted", SKEWS, ids=[s[0] for s in SKEWS])
def test_RL4_server_clock_skew_within_leeway_accepted_beyond_refused(skew_server, caplog,
                                                                     request, case, skew, ttl,
                                                                     accepted):
    """The server's CLOCK off the guard's by the skew: tokens within the 30 s leeway
    accepted, beyond it 401 invalid_token with the reason logged. (The guard-side clock,
    GUARD_CLOCK, is moved by tests/test_guard_faults.py::test_RL4_jwt_clock_skew.)"""
    skew_server.clock.offset = skew
    try:
        minted = token(skew_server.url, *skew_server.clients[ttl])
    finally:
        skew_server.clock.offset = 0
    assert minted.status_code == 200, minted.text
    # Revocation is not what this test is about: switched off explicitly (the guard refuses to
    # start without feed credentials otherwise).
    demo = create_demo_app({"GUARD_ISSUER": skew_server.url, "GUARD_REVOCATION_CHECK": False})
    caplog.set_level(logging.INFO, logger="resource_demo.guard")
    with running(demo) as demo_url:
        answer = send_sms(demo_url, "Bearer", minted.json()["access_token"])
    observe(request, backend=skew_server.backend,
            input=f"server clock {skew:+d} s from the guard's, token lifetime {ttl or 3600} s",
            expected="200" if accepted else "401 invalid_token, reason logged")
    if accepted:
        assert answer.status_code == 200, answer.text
        return
    assert answer.status_code == 401, answer.text
    assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]
    reasons = [r.getMessage() for r in caplog.records if "credential refused" in r.getMessage()]
    assert reasons and any(word in reasons[-1] for word in ("iat", "nbf", "expired")), reasons


@pytest.mark.parametrize("behind", [30, 300])
def test_RL4_server_clock_behind_the_first_keys_still_signs(cluster, tmp_path, clock, request,
                                                            behind):
    """`authserver init` on a host with the right time, the server's clock 30 s or 5 min
    behind: tokens are still issued (never a 500)."""
    application = fresh_app("sqlite", cluster, tmp_path, CLOCK=clock)
    clock.now = datetime.now(timezone.utc) - timedelta(seconds=behind)
    with application.app_context():
        record, secret = client_service.create_client(name="skew", scope="message:send",
                                                      actor="test")
        client_id = record.client_id
    answer = application.test_client().post(
        "/oauth2/token", data={"grant_type": "client_credentials"},
        headers=basic_auth(client_id, secret))
    with application.app_context():
        db.engine.dispose()
    observe(request, input=f"server clock {behind} s behind the clock of `authserver init`",
            observed=f"HTTP {answer.status_code}")
    assert answer.status_code == 200, answer.get_data(as_text=True)


# --- RL5: concurrent creation and revocation ---------------------------------------------------

def test_RL5_parallel_creation_gives_distinct_keys_and_clients(deployment, request):
    """100 parallel API-key creations and 100 parallel client registrations through the admin
    API: all 201, 100 distinct ids and secrets each, listed once, every secret works."""
    server = deployment.server("a", workers=4)
    admin = deployment.client("account-management:manage sms:manage")
    introspector = deployment.client("tokens:introspect")
    headers = bearer(token(server.url, *admin, resource=deployment.issuer).json()["access_token"])

    def create(kind_index):
        kind, index = kind_index
        body = {"name": f"parallel-{index}", "scopeGuids": ["sms:message:send"]} \
            if kind == "api-keys" else {"name": f"parallel-{index}", "scopes": ["sms:message:send"]}
        return requests.post(f"{server.url}/settings/2/{kind}", json=body, headers=headers,
                             timeout=60)

    found = {}
    for kind, id_field, secret_field, listed in (
            ("api-keys", "id", "apiKeySecret", "apiKeys"),
            ("oauth-clients", "clientId", "clientSecret", "oauthClients")):
        answers = parallel(create, [(kind, index) for index in range(100)], 100)
        statuses = Counter(answer.status_code for answer in answers)
        assert statuses == {201: 100}, statuses
        ids = {answer.json()[id_field] for answer in answers}
        secrets = {answer.json()[secret_field] for answer in answers}
        assert len(ids) == 100 and len(secrets) == 100
        pages = [requests.get(f"{server.url}/settings/2/{kind}?size=100&page={number}",
                              headers=headers, timeout=30).json() for number in (0, 1)]
        listed_ids = [row[id_field] for page in pages for row in page[listed]]
        assert pages[0]["paging"]["totalCount"] == 100 + (kind == "oauth-clients") * 2
        assert ids <= set(listed_ids) and len(listed_ids) == len(set(listed_ids))
        found[kind] = [answer.json() for answer in answers]

    def key_active(created):
        return post_form(server.url, "/oauth2/introspect", {"token": created["apiKeySecret"]},
                         introspector).json().get("active")

    def client_works(created):
        return token(server.url, created["clientId"], created["clientSecret"]).status_code

    assert parallel(key_active, found["api-keys"], 20) == [True] * 100
    assert parallel(client_works, found["oauth-clients"], 20) == [200] * 100
    rows = deployment.cluster.query(deployment.dbname, "SELECT count(*), count(DISTINCT "
                                    "secret_hash) FROM api_keys")[0]
    assert rows == (100, 100)
    observe(request, input="100 parallel POST /settings/2/api-keys and /oauth-clients, "
                           "4 workers", observed="201 x 200; 100 + 100 distinct ids and "
                                                 "secrets; every key active, every client got "
                                                 "a token")


def test_RL5_parallel_revocation_of_one_token_and_one_key(deployment, request):
    """25 parallel revocations of the same JWT and of the same API key: all 200, exactly one
    revocation row, and no introspection started after the first 200 says active."""
    server = deployment.server("a", workers=4)
    client = deployment.client("message:send")
    manager = deployment.client("account-management:manage sms:manage")  # covers the key (AD04)
    introspector = deployment.client("tokens:introspect")
    access_token = token(server.url, *client).json()["access_token"]
    key = deployment.api_key("sms:message:send")
    lock = threading.Lock()
    first_ack: dict[str, float] = {}
    seen: list[tuple[str, float, bool]] = []

    def revoke(target):
        name, credential, auth = target
        answer = post_form(server.url, "/oauth2/revoke", {"token": credential}, auth)
        with lock:
            if answer.status_code == 200:
                first_ack.setdefault(name, time.monotonic())
        return answer.status_code

    def hammer(worker):
        name, credential = (("jwt", access_token), ("key", key))[worker % 2]
        started = time.monotonic()
        answer = post_form(server.url, "/oauth2/introspect", {"token": credential},
                           introspector)
        with lock:
            seen.append((name, started, answer.json().get("active")))

    with load(4, hammer, seconds=30) as hammering:
        time.sleep(0.3)
        targets = [("jwt", access_token, client)] * 25 + [("key", key, manager)] * 25
        statuses = parallel(revoke, targets, 50)
        time.sleep(0.3)
    assert hammering.errors == []
    assert statuses == [200] * 50
    late_active = [entry for entry in seen if entry[2] and entry[1] > first_ack[entry[0]]]
    assert late_active == []
    for credential in (access_token, key):
        assert post_form(server.url, "/oauth2/introspect", {"token": credential},
                         introspector).json() == {"active": False}
    jti = jwt.decode(access_token, options={"verify_signature": False})["jti"]
    assert deployment.cluster.query(deployment.dbname, "SELECT count(*) FROM revoked_tokens "
                                    "WHERE jti = %s", (jti,)) == [(1,)]
    disabled = deployment.cluster.query(deployment.dbname, "SELECT count(*) FROM audit_events "
                                        "WHERE action = 'disable'")[0][0]
    observe(request, input="25 + 25 parallel POST /oauth2/revoke while introspecting",
            observed=f"200 x 50; one revoked_tokens row; {len(seen)} introspections, none "
                     f"active after the first 200; {disabled} 'disable' audit events for the key")


# --- RL6: kill -9 in the middle of writes ------------------------------------------------------

def crash_rounds(deployment: Deployment, rounds: int, seed: int, request) -> None:
    """``rounds`` crash rounds on one database, ``authserver init`` twice and a restart after
    each; the invariants of check_after_crash, and no acknowledged write lost."""
    admin = deployment.client("account-management:manage sms:manage")
    owner = deployment.client("message:send")
    minter = deployment.client("message:send")
    introspector = deployment.client("tokens:introspect")
    with deployment.app.app_context():
        record = get_client(owner[0])
        revocable = []
        for _ in range(200 * rounds):
            issued = encode_access_token(record, ["message:send"], FAULT_ISSUER + "/api")
            claims = jwt.decode(issued["access_token"], options={"verify_signature": False})
            revocable.append((issued["access_token"], claims["jti"]))
    chooser = random.Random(seed)
    totals: Counter = Counter()
    inits = []
    for number in range(rounds):
        server = deployment.server(f"crash-{number}", SIGNING_KEY_CACHE_SECONDS="1")
        admin_token = token(server.url, *admin, resource=deployment.issuer).json()["access_token"]
        round_ = CrashRound(number, deployment, server, admin_token,
                            revocable[number * 200:(number + 1) * 200], owner, minter)
        rotated = round_.run(chooser.uniform(0.0, 1.5))
        # Migrations and key setup are re-runnable after the crash.
        inits += [authserver(deployment.env("init"), "init", check=False).returncode
                  for _ in range(2)]
        restarted = deployment.server(f"restart-{number}")
        found = check_after_crash(deployment, restarted, round_, rotated, introspector)
        restarted.stop()
        totals.update(found)
        totals.update({f"answered {status}": count for status, count in round_.answers.items()})
    observe(request, data_lost=totals["lost"],
            input=f"{rounds} rounds of kill -9 (worker + master + rotating process) at a random "
                  f"moment (seed {seed}) during key creation, revocation, rotation, minting",
            observed=", ".join(f"{name}: {count}" for name, count in sorted(totals.items())))
    assert inits == [0] * (2 * rounds)
    assert totals["lost"] == 0
    assert not [status for status in totals if status.startswith("answered 5")]


def test_RL6_kill_9_mid_write_loses_no_acknowledged_change(deployment, request):
    """kill -9 during API-key creation (admin API), revocation, signing-key rotation and
    token minting; restart on the same database: every acknowledged change is there, nothing
    half-written is visible, ``authserver init`` runs twice cleanly."""
    crash_rounds(deployment, 1, random.randrange(1 << 30), request)


@pytest.mark.slow
def test_RL6_kill_9_mid_write_many_rounds(long_variant, deployment, request):
    """The long variant: eight crash rounds."""
    crash_rounds(deployment, 8, random.randrange(1 << 30), request)


# --- RL7: load --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def load_stack(cluster, tmp_path_factory):
    """One server (3 workers), the demo (2 workers) and 200 clients for every load level."""
    stack = LoadStack(cluster, tmp_path_factory.mktemp("load"))
    yield stack
    stack.close()


def run_load(stack: LoadStack, clients: int, seconds: float, request) -> None:
    """``clients`` threads, one client each, minting a token and sending an SMS with it for
    ``seconds``; checks answers, sub, jti, worker RSS and database connections."""
    lock = threading.Lock()
    statuses: Counter = Counter()
    latencies: list[float] = []
    crossed: list[str] = []
    jtis: list[str] = []
    peak = [0]

    def step(worker: int) -> None:
        client_id, secret = stack.clients[worker]
        started = time.monotonic()
        minted = token(stack.server.url, client_id, secret, timeout=60)
        elapsed = time.monotonic() - started
        sent = None
        if minted.status_code == 200:
            access_token = minted.json()["access_token"]
            claims = jwt.decode(access_token, options={"verify_signature": False})
            sent = send_sms(stack.demo.url, "Bearer", access_token, timeout=60).status_code
        with lock:
            statuses[("token", minted.status_code)] += 1
            latencies.append(elapsed)
            if sent is not None:
                statuses[("demo", sent)] += 1
                jtis.append(claims["jti"])
                if claims["sub"] != client_id or claims["client_id"] != client_id:
                    crossed.append(f"{client_id} got {claims['sub']}")

    def sample() -> None:
        while not sampling_done.is_set():
            peak[0] = max(peak[0], stack.connections())
            sampling_done.wait(0.2)

    sampling_done = threading.Event()
    sampler = threading.Thread(target=sample)
    sampler.start()
    with load(clients, step, seconds) as running_load:
        time.sleep(seconds)
    sampling_done.set()
    sampler.join()
    rss = {pid: rss_kib(pid) for pid in stack.server.worker_pids()}
    growth = {pid: rss[pid] - stack.baseline.get(pid, rss[pid]) for pid in rss}
    repeated = len(jtis) - len(set(jtis))
    earlier = len(stack.jtis & set(jtis))
    stack.jtis |= set(jtis)
    ordered = sorted(latencies) or [0.0]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    observe(request, input=f"{clients} concurrent clients for {seconds:g} s: token + demo send",
            observed=f"{len(jtis)} tokens ({len(jtis) / seconds:.0f}/s), answers "
                     f"{dict(sorted(statuses.items()))}; token latency p50 "
                     f"{statistics.median(ordered) * 1000:.0f} ms p99 {p99 * 1000:.0f} ms; "
                     f"peak DB connections {peak[0]}; worker RSS growth KiB "
                     f"{sorted(growth.values())}")
    assert running_load.errors == []
    assert not [key for key in statuses if key[1] >= 500], statuses
    assert set(statuses) <= {("token", 200), ("demo", 200)}, statuses
    assert crossed == [] and repeated == 0 and earlier == 0
    assert jtis, "no token was issued"
    # Bounded: sync workers hold one connection each (the pool allows 5 + 10 overflow each).
    assert peak[0] <= 3 * 15, peak[0]
    assert all(value < 100 * 1024 for value in growth.values()), growth


@pytest.mark.parametrize("clients", [10, 50, 200])
def test_RL7_concurrent_clients_get_their_own_tokens(load_stack, request, clients):
    """N clients at once for a few seconds: no 5xx, every token's sub is its requester, all
    jti unique, worker RSS and database connections bounded."""
    run_load(load_stack, clients, 3.0, request)


@pytest.mark.slow
@pytest.mark.parametrize("clients", [10, 50, 200])
def test_RL7_concurrent_clients_for_a_minute(long_variant, load_stack, request, clients):
    """The long variant: 60 s per level."""
    run_load(load_stack, clients, 60.0, request)
