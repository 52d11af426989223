"""The per-process credential cache (authserver.storage.cache): clients and API keys served
from memory, and every change (disable, secret rotation, the account) in force at once in the
writing process and within 1 s in every process and host (threat model TE19, AK05)."""

from __future__ import annotations

import json
import os
import signal
import time
from contextlib import contextmanager

import psycopg
import pytest
import requests
import sqlalchemy as sa
from conftest import basic_auth
from credential_actions import introspect, sql_statements
from serverproc import PostgresDatabase, ServerProcess, authserver, server_env

from authserver.credentials import api_keys as api_key_service
from authserver.credentials import clients as client_service
from authserver.storage import cache as row_cache
from authserver.storage.db import db

ISSUER = "https://auth.cache.test"
ENCRYPTION_KEY = "Y2FjaGVjYWNoZWNhY2hlY2FjaGVjYWNoZWNhY2hlY2E="


@contextmanager
def client_lookups(app):
    """Count the SELECTs on the clients table run inside the block."""
    seen: list[str] = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "FROM clients" in statement:
            seen.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)


def wait_for_lease(app, timeout: float = 5.0) -> None:
    """On PostgreSQL, until this process's listener has proven it is connected."""
    hub = app.extensions[row_cache.EXTENSION_KEY]
    deadline = time.monotonic() + timeout
    with app.app_context():
        while hub.trusted_age() == 0.0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hub.trusted_age() > 0


def test_repeated_token_requests_read_the_client_once(app, oauth_clients, get_token):
    client_id, secret = oauth_clients.create(scope="sms:message:send")
    assert get_token(client_id, secret).status_code == 200
    wait_for_lease(app)
    assert get_token(client_id, secret).status_code == 200  # cached from here on
    with client_lookups(app) as lookups:
        for _ in range(5):
            assert get_token(client_id, secret).status_code == 200
    assert lookups == []


@pytest.mark.parametrize("change", ["disable", "rotate"])
def test_TE19_change_in_this_process_is_in_force_at_once(app, oauth_clients, get_token, change):
    client_id, secret = oauth_clients.create(scope="sms:message:send")
    wait_for_lease(app)
    assert get_token(client_id, secret).status_code == 200
    assert get_token(client_id, secret).status_code == 200
    with app.app_context():
        if change == "disable":
            client_service.disable_client(client_id, actor="test")
        else:
            _, new_secret = client_service.rotate_secret(client_id, actor="test")
    assert get_token(client_id, secret).status_code == 401
    if change == "rotate":
        assert get_token(client_id, new_secret).status_code == 200


def test_AC04_disabling_the_account_drops_its_clients_keys_and_tokens_at_once(app, client, oauth_clients,
                                                                 get_token):
    from authserver.accounts import registry

    rs = basic_auth(*oauth_clients.create(scope="tokens:introspect"))
    with app.app_context():
        account_id = registry.create_account(name="Customer", actor="test").id
        _, key = api_key_service.create_api_key(name="k", scopes=["sms:message:send"],
                                                actor="test", account_id=account_id)
    client_id, secret = oauth_clients.create(scope="sms:message:send", account_id=account_id)
    wait_for_lease(app)
    token = get_token(client_id, secret).get_json()["access_token"]
    for _ in range(2):
        assert get_token(client_id, secret).status_code == 200
        assert introspect(client, key, rs).get_json()["active"] is True
        assert introspect(client, token, rs).get_json()["active"] is True
    with app.app_context():
        registry.set_enabled(account_id, False, actor="test")
    assert get_token(client_id, secret).status_code == 401
    assert introspect(client, key, rs).get_json() == {"active": False}
    assert introspect(client, token, rs).get_json() == {"active": False}


def _api_key(app) -> tuple[str, str]:
    with app.app_context():
        record, secret = api_key_service.create_api_key(name="k", scopes=["sms:message:send"],
                                                        actor="test")
        return record.id, secret


def test_repeated_introspection_of_a_key_reads_it_once_and_writes_once(app, client,
                                                                        oauth_clients):
    rs = basic_auth(*oauth_clients.create(scope="tokens:introspect"))
    _, secret = _api_key(app)
    assert introspect(client, secret, rs).get_json()["active"] is True
    wait_for_lease(app)
    assert introspect(client, secret, rs).get_json()["active"] is True
    with sql_statements(app) as statements:
        for _ in range(5):
            assert introspect(client, secret, rs).get_json()["active"] is True
    # No lookup of the key or the client, and last_used_at is not written again.
    assert statements == []


def test_AK05_disabled_key_is_inactive_at_once_in_this_process(app, client, oauth_clients):
    rs = basic_auth(*oauth_clients.create(scope="tokens:introspect"))
    key_id, secret = _api_key(app)
    wait_for_lease(app)
    assert introspect(client, secret, rs).get_json()["active"] is True
    assert introspect(client, secret, rs).get_json()["active"] is True
    with app.app_context():
        api_key_service.disable_api_key(key_id, actor="test")
    assert introspect(client, secret, rs).get_json() == {"active": False}


def test_a_failed_transaction_invalidates_nothing_and_notifies_nobody(app, oauth_clients,
                                                                     get_token):
    client_id, secret = oauth_clients.create(scope="sms:message:send")
    wait_for_lease(app)
    assert get_token(client_id, secret).status_code == 200
    with app.app_context():
        client = client_service.get_client(client_id)
        client.enabled = False
        db.session.flush()
        db.session.rollback()
    assert get_token(client_id, secret).status_code == 200


def test_a_read_that_raced_an_invalidation_is_not_stored():
    cache = row_cache.RowCache()
    generation, read_at = cache.generation, time.monotonic()
    cache.invalidate("c1")  # the change commits while the old row is being read
    cache.put("c1", "old row", generation, read_at)
    assert cache.get("c1", 30) is row_cache._MISSING


def test_entries_are_bounded():
    cache = row_cache.RowCache(max_entries=3)
    for key in "abcd":
        cache.put(key, key.upper(), cache.generation, time.monotonic())
    assert [cache.get(k, 30) for k in "abcd"] == [row_cache._MISSING, "B", "C", "D"]


def test_without_a_listener_an_entry_lives_at_most_one_second(app, backend):
    hub = app.extensions[row_cache.EXTENSION_KEY]
    if backend == "sqlite":
        with app.app_context():
            assert hub.trusted_age() == 1.0
        return
    wait_for_lease(app)
    stopped = hub.listener
    hub.close()
    stopped._thread.join(5)
    with app.app_context():
        assert hub.trusted_age() == 0.0  # lookups go to the database ...
    wait_for_lease(app)  # ... until a new listener has proven its connection
    assert hub.listener is not stopped


def test_lost_listener_connection_stops_the_cache_within_the_lease(app, backend, oauth_clients,
                                                                   get_token):
    """A change no notification announces (the listener's connection is gone) is still seen
    within 1 s: entries are trusted only while the listener proves it is connected."""
    if backend != "postgresql":
        pytest.skip("the listener exists on PostgreSQL")
    client_id, secret = oauth_clients.create(scope="sms:message:send")
    wait_for_lease(app)
    assert get_token(client_id, secret).status_code == 200
    with app.app_context():
        url = db.engine.url
        dsn = f"host={url.host} port={url.port or 5432} user={url.username} dbname={url.database}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        killed = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND application_name = %s",
                              (row_cache.APPLICATION_NAME,)).fetchall()
        assert killed
        # Written behind the service's back: no NOTIFY is sent.
        conn.execute("UPDATE clients SET enabled = false WHERE client_id = %s", (client_id,))
        changed = time.monotonic()
    time.sleep(max(0.0, changed + 1.0 - time.monotonic()))
    assert get_token(client_id, secret).status_code == 401


def test_silent_listener_connection_stops_the_cache_within_the_lease(app, backend,
                                                                    oauth_clients, get_token):
    """A connection that stops answering without closing (a frozen database backend, a
    half-open TCP connection) delivers nothing: the lease runs out and lookups go to the
    database, so a change is still in force within 1 s."""
    if backend != "postgresql":
        pytest.skip("the listener exists on PostgreSQL")
    client_id, secret = oauth_clients.create(scope="sms:message:send")
    wait_for_lease(app)
    assert get_token(client_id, secret).status_code == 200
    with app.app_context():
        url = db.engine.url
        dsn = f"host={url.host} port={url.port or 5432} user={url.username} dbname={url.database}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        pids = [row[0] for row in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = %s", (row_cache.APPLICATION_NAME,))]
        assert pids
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            conn.execute("UPDATE clients SET enabled = false WHERE client_id = %s",
                         (client_id,))
            conn.execute("SELECT pg_notify(%s, %s)", (row_cache.CHANNEL, f"clients:{client_id}"))
            changed = time.monotonic()
            time.sleep(max(0.0, changed + 1.0 - time.monotonic()))
            assert get_token(client_id, secret).status_code == 401
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)


# --- across processes ------------------------------------------------------------------

def fetch_token(url: str, client_id: str, secret: str) -> int:
    return requests.post(url + "/oauth2/token", data={"grant_type": "client_credentials"},
                         headers=basic_auth(client_id, secret), timeout=10).status_code


def settle(servers, client_id, secret, want: int, within: float, after: float) -> None:
    """Every request sent ``within`` seconds after ``after`` or later answers ``want``.

    Each server is asked repeatedly (so both of its workers answer) until half a second
    past the bound.
    """
    deadline = after + within
    while time.monotonic() < deadline + 0.5:
        for server in servers:
            sent = time.monotonic()
            status = fetch_token(server.url, client_id, secret)
            assert status == want or sent < deadline, (
                f"{server.url} answered {status} to a request sent {sent - after:.2f} s "
                "after the change")
        time.sleep(0.01)


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def two_servers(request, tmp_path_factory):
    """Two ``authserver serve`` processes sharing one database, with a one-hour cache backstop
    (on PostgreSQL only the notifications can explain a change seen in time): on PostgreSQL,
    each with its own instance folder; on SQLite, one folder.

    One worker each: a worker's cache and listener are its own (workers of one server share
    nothing but the socket), so two servers are two such processes, and every request sent
    to a server reaches its one cache. With several workers the kernel picks who accepts,
    and no test could tell that every cache had been filled before the change."""
    settings = {"ISSUER": ISSUER, "ENCRYPTION_KEY": ENCRYPTION_KEY, "SECRET_KEY": "cache-test",
                "TOKEN_RATE_LIMIT": "", "AUTH_FAILURE_RATE_LIMIT": "",
                "CREDENTIAL_CACHE_SECONDS": "3600"}
    database = None
    if request.param == "postgresql":
        database = PostgresDatabase()
        settings["SQLALCHEMY_DATABASE_URI"] = database.url
        folders = [tmp_path_factory.mktemp(f"cache-{name}") for name in "ab"]
    else:
        folders = [tmp_path_factory.mktemp("cache-shared")] * 2
    envs = [server_env(folder, **settings) for folder in folders]
    authserver(envs[0], "init")
    logs = tmp_path_factory.mktemp("cache-logs")
    servers = [ServerProcess(env, workers=1, log_path=logs / f"{i}.log")
               for i, env in enumerate(envs)]
    try:
        for server in servers:
            server.wait_ready()
        yield servers, envs
    finally:
        for server in servers:
            server.stop()
        if database is not None:
            database.drop()


#: Long enough for a process's listener, started by its first lookup, to prove its connection
#: (``PING_SECONDS``), so that the requests after it store the row.
WARM_SECONDS = 2 * row_cache.PING_SECONDS + row_cache.LEASE_SECONDS


def _warm(servers, ask, want) -> None:
    """Every server's process has the credential cached (on PostgreSQL, with a listener
    holding its lease): ``ask(url)`` of each server answers ``want`` in every round until
    ``WARM_SECONDS`` have passed since the first, and once more."""
    deadline = time.monotonic() + WARM_SECONDS
    while True:
        for server in servers:
            assert ask(server.url) == want, server.url
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)


def test_TE19_disable_reaches_every_process_within_one_second(two_servers):
    servers, envs = two_servers
    created = json.loads(authserver(envs[0], "clients", "create", "--name", "svc", "--scope",
                                    "sms:message:send", "--json").stdout)
    client_id, secret = created["clientId"], created["clientSecret"]
    _warm(servers, lambda url: fetch_token(url, client_id, secret), 200)
    authserver(envs[1], "clients", "disable", client_id)
    committed = time.monotonic()
    settle(servers, client_id, secret, 401, within=1.0, after=committed)


def test_AK05_key_disable_reaches_every_process_within_one_second(two_servers):
    servers, envs = two_servers
    rs = json.loads(authserver(envs[0], "clients", "create", "--name", "rs", "--scope",
                               "tokens:introspect", "--json").stdout)
    key = json.loads(authserver(envs[0], "api-keys", "create", "--name", "k", "--scope",
                                "sms:message:send", "--json").stdout)
    auth = basic_auth(rs["clientId"], rs["clientSecret"])

    def active(url: str) -> bool:
        return requests.post(url + "/oauth2/introspect", data={"token": key["apiKeySecret"]},
                             headers=auth, timeout=10).json()["active"]

    _warm(servers, active, True)
    authserver(envs[1], "api-keys", "disable", key["id"])
    committed = time.monotonic()
    while time.monotonic() < committed + 1.5:
        for server in servers:
            sent = time.monotonic()
            assert not active(server.url) or sent < committed + 1.0, (
                f"{server.url} still active {sent - committed:.2f} s after the change")


def test_TE19_secret_rotation_reaches_every_process_within_one_second(two_servers):
    servers, envs = two_servers
    created = json.loads(authserver(envs[0], "clients", "create", "--name", "svc", "--scope",
                                    "sms:message:send", "--json").stdout)
    client_id, old = created["clientId"], created["clientSecret"]
    _warm(servers, lambda url: fetch_token(url, client_id, old), 200)
    rotated = json.loads(authserver(envs[1], "clients", "rotate-secret", client_id,
                                    "--json").stdout)
    committed = time.monotonic()
    settle(servers, client_id, old, 401, within=1.0, after=committed)
    for server in servers:
        assert fetch_token(server.url, client_id, rotated["clientSecret"]) == 200
