"""Rate limits with several worker processes and in-process counters (issue 18 finding 12,
threat model AV05).

Before the fix each of ``authserver serve``'s workers counted alone with the default
``memory://`` store, so two workers granted about twice the configured limit. Now each
enforces 1/N of it; with Redis (tests/test_scale_out.py) the counters are shared.
"""

from __future__ import annotations

import json

import pytest
import requests
from conftest import basic_auth
from serverproc import ServerProcess, authserver, server_env

LIMIT = 10


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    """``authserver serve --workers 2`` on SQLite with in-process counters."""
    env = server_env(tmp_path_factory.mktemp("instance"), TOKEN_RATE_LIMIT=f"{LIMIT}/minute",
                     RATELIMIT_STORAGE_URI="memory://")
    authserver(env, "init")
    created = json.loads(authserver(env, "clients", "create", "--name", "svc", "--scope",
                                    "message:send", "--json").stdout)
    process = ServerProcess(env, workers=2,
                            log_path=tmp_path_factory.mktemp("logs") / "serve.log")
    try:
        process.wait_ready()
        yield process, (created["clientId"], created["clientSecret"])
    finally:
        process.stop()


def test_AV05_two_workers_with_in_process_counters_never_grant_more_than_the_limit(
        two_workers):
    process, credentials = two_workers
    statuses = []
    for _ in range(4 * LIMIT):
        # A new connection each time, so the kernel spreads them over both workers.
        answer = requests.post(process.url + "/oauth2/token",
                               data={"grant_type": "client_credentials"},
                               headers={**basic_auth(*credentials), "Connection": "close"},
                               timeout=10)
        statuses.append(answer.status_code)
    assert set(statuses) <= {200, 429}
    assert 0 < statuses.count(200) <= LIMIT, statuses


@pytest.mark.parametrize("app_config", [{"TOKEN_RATE_LIMIT": "4/second",
                                         "RATELIMIT_STORAGE_URI": "memory://",
                                         "RATELIMIT_WORKERS": 2}])
def test_AV05_each_worker_enforces_its_share(client, oauth_clients, get_token):
    client_id, secret = oauth_clients.create()
    statuses = [get_token(client_id, secret).status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]


@pytest.mark.parametrize("app_config", [{"TOKEN_RATE_LIMIT": "4/second",
                                         "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/3",
                                         "RATELIMIT_KEY_PREFIX": "harden-av05",
                                         "RATELIMIT_WORKERS": 2}])
def test_AV05_shared_counters_are_not_divided(client, oauth_clients, get_token):
    client_id, secret = oauth_clients.create()
    statuses = [get_token(client_id, secret).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
