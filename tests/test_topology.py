"""Two authserver hosts behind a TLS proxy, configured from the environment (issue 16 item 5):
nginx (Debian's package) with docs/nginx/authserver.conf, a CA made here, each host in a
network namespace of its own (or on a loopback address of its own where namespaces cannot
be made; the test prints which), one PostgreSQL and one Redis on the hosts' network.

A real client gets a token through the proxy over https and verifies it against the JWKS;
introspection and revocation land on the other host. One host is killed during a bounded
load: only requests in flight on it may fail, no admin write is duplicated, none that was
acknowledged is lost. Then the encryption keyring is rolled over host by host as
docs/operations.md says, with tokens served throughout, and /readyz tells the truth.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import threading
import time
import uuid

import jwt
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from pgcluster import PrivateCluster, postgres_bindir
from serverproc import authserver, free_port, server_env
from topology_support import (
    HOST_PORT,
    NAMESPACES,
    Host,
    Network,
    Nginx,
    Redis,
    make_ca_and_certificate,
)

OLD_KEY = base64.urlsafe_b64encode(b"T" * 32).decode()
NEW_KEY = base64.urlsafe_b64encode(b"U" * 32).decode()
LOAD_SECONDS = 3.0
TOKEN_THREADS = 4
WRITE_THREADS = 2

pytestmark = pytest.mark.skipif(
    not (shutil.which("nginx") or shutil.which("/usr/sbin/nginx")) or postgres_bindir() is None
    or not shutil.which("redis-server"),
    reason="needs nginx, PostgreSQL server programs and redis-server (.ci/run installs nginx)")


@pytest.fixture
def topology(tmp_path, request):
    """(network, hosts, proxy URL, CA file, env of host 0, cluster, database name)."""
    network = Network(hosts=2)
    request.node.user_properties.append(("topology", network.variant))
    print(f"\ntopology: {network.variant}"
          + ("" if network.variant == NAMESPACES else f" ({network.reason})"))
    started = []
    try:
        cluster = PrivateCluster(postgres_bindir())
        started.append(cluster.destroy)
        cluster.trust(f"{network.gateway}/24" if network.variant == NAMESPACES else "127.0.0.0/8")
        cluster.start(listen=network.gateway)
        database = cluster.create_database()
        redis = Redis(network.gateway, tmp_path)
        started.append(redis.stop)
        proxy_port = free_port()
        issuer = f"https://127.0.0.1:{proxy_port}"
        ca, cert, key = make_ca_and_certificate(tmp_path, "127.0.0.1")
        hosts = []
        for index in range(2):
            folder = tmp_path / f"host{index}"
            folder.mkdir()
            env = server_env(folder / "instance", ISSUER=issuer,
                             SQLALCHEMY_DATABASE_URI=cluster.url(database),
                             RATELIMIT_STORAGE_URI=redis.url,
                             RATELIMIT_KEY_PREFIX=f"topology-{uuid.uuid4().hex[:6]}",
                             TRUSTED_PROXIES=network.trusted, ENCRYPTION_KEYS=OLD_KEY,
                             SECRET_KEY="topology-test", ACCESS_LOG="true",
                             TOKEN_RATE_LIMIT="1000/second", ADMIN_WRITE_RATE_LIMIT="",
                             SIGNING_KEY_PUBLISH_DELAY="0")
            hosts.append(Host(network, index, env, folder))
        assert authserver(hosts[0].env, "init").returncode == 0
        for host in hosts:
            host.start()
            started.append(host.kill)  # at teardown nothing is in flight worth waiting for
        for host in hosts:
            host.wait_ready()
        (tmp_path / "nginx").mkdir()
        nginx = Nginx(tmp_path / "nginx", f"127.0.0.1:{proxy_port}",
                      [f"{host.address}:{HOST_PORT}" for host in hosts], cert, key)
        started.append(nginx.stop)
        _wait_for(lambda: requests.get(issuer + "/healthz", verify=str(ca), timeout=2))
        yield network, hosts, issuer, str(ca), cluster, database
    finally:
        for stop in reversed(started):
            try:
                stop()
            except Exception:  # noqa: BLE001 - tear down everything else regardless
                pass
        network.destroy()


def _wait_for(probe, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = probe()
            if answer.status_code == 200:
                return answer
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("not answering")
        time.sleep(0.1)


def _landing(hosts, send, want_other_than=None, want=None, tries: int = 6):
    """Send (through the proxy) until the request lands on the wanted host; (answer, host)."""
    for _ in range(tries):
        request_id = uuid.uuid4().hex
        answer = send(request_id)
        host = next((h for h in hosts if h.served(request_id)), None)
        if host is not None and (want is None or host is want) and host is not want_other_than:
            return answer, host
        time.sleep(0.1)
    raise AssertionError("the proxy never sent the request to the wanted host")


def test_two_hosts_behind_a_tls_proxy(topology):
    network, hosts, issuer, ca, cluster, database = topology
    env = hosts[0].env

    admin = json.loads(authserver(env, "clients", "create", "--name", "admin", "--scope",
                                  "account-management:manage message:send tokens:introspect",
                                  "--json").stdout)
    svc = json.loads(authserver(env, "clients", "create", "--name", "svc", "--scope",
                                "message:send", "--json").stdout)

    # A real client over https through the proxy; the token verifies against the JWKS.
    metadata = requests.get(issuer + "/.well-known/oauth-authorization-server", verify=ca,
                            timeout=5).json()
    assert metadata["issuer"] == issuer and metadata["token_endpoint"].startswith("https://")
    session = OAuth2Session(svc["clientId"], svc["clientSecret"], scope="sms:message:send")
    request_id = uuid.uuid4().hex
    token = session.fetch_token(metadata["token_endpoint"], grant_type="client_credentials",
                                headers={"X-Request-ID": request_id}, verify=ca)["access_token"]
    issuing_host = next(h for h in hosts if h.served(request_id))
    jwks = jwt.PyJWKClient(metadata["jwks_uri"],
                           ssl_context=ssl.create_default_context(cafile=ca))
    signing_key = jwks.get_signing_key_from_jwt(token)
    claims = jwt.decode(token, signing_key.key, algorithms=[signing_key.algorithm_name],
                        audience=issuer + "/api", issuer=issuer)
    assert claims["client_id"] == svc["clientId"]

    # Introspection and revocation answered by the other host (shared state).
    admin_auth = (admin["clientId"], admin["clientSecret"])

    def introspect(rid):
        return requests.post(metadata["introspection_endpoint"], auth=admin_auth, verify=ca,
                             data={"token": token}, headers={"X-Request-ID": rid}, timeout=5)

    answer, _ = _landing(hosts, introspect, want_other_than=issuing_host)
    assert answer.json()["active"] is True and answer.json()["client_id"] == svc["clientId"]
    svc_auth = (svc["clientId"], svc["clientSecret"])
    answer, _ = _landing(hosts, lambda rid: requests.post(
        metadata["revocation_endpoint"], auth=svc_auth, verify=ca, data={"token": token},
        headers={"X-Request-ID": rid}, timeout=5), want_other_than=issuing_host)
    assert answer.status_code == 200
    answer, _ = _landing(hosts, introspect, want=issuing_host)
    assert answer.json() == {"active": False}

    # One host dies under a bounded load of token requests and admin writes.
    admin_token = requests.post(metadata["token_endpoint"], auth=admin_auth, verify=ca,
                                data={"grant_type": "client_credentials",
                                      "resource": issuer},  # the admin API's audience (AU01)
                                timeout=5).json()["access_token"]
    outcomes = {"token_ok": 0, "token_failed": 0, "acknowledged": [], "write_failed": []}
    lock = threading.Lock()
    stop_at = time.monotonic() + LOAD_SECONDS

    def token_load():
        with requests.Session() as http:  # REQUESTS_CA_BUNDLE would beat http.verify
            while time.monotonic() < stop_at:
                try:
                    answer = http.post(metadata["token_endpoint"], auth=svc_auth, timeout=10,
                                       verify=ca,
                                       data={"grant_type": "client_credentials"})
                    ok = answer.status_code == 200
                    if not ok:
                        outcomes.setdefault("token_answers", []).append(answer.status_code)
                except requests.RequestException as exc:
                    ok = False
                    outcomes.setdefault("token_errors", []).append(type(exc).__name__)
                with lock:
                    outcomes["token_ok" if ok else "token_failed"] += 1

    def admin_writes(worker):
        with requests.Session() as http:  # REQUESTS_CA_BUNDLE would beat http.verify
            number = 0
            while time.monotonic() < stop_at:
                name = f"w{worker}-{number}"
                number += 1
                try:
                    answer = http.post(issuer + "/settings/2/api-keys", timeout=10, verify=ca,
                                       headers={"Authorization": f"Bearer {admin_token}"},
                                       json={"name": name, "scopeGuids": ["sms:message:send"]})
                    acknowledged = answer.status_code == 201
                except requests.RequestException:
                    acknowledged = False
                with lock:
                    outcomes["acknowledged" if acknowledged else "write_failed"].append(name)

    threads = [threading.Thread(target=token_load) for _ in range(TOKEN_THREADS)]
    threads += [threading.Thread(target=admin_writes, args=(w,)) for w in range(WRITE_THREADS)]
    for thread in threads:
        thread.start()
    time.sleep(LOAD_SECONDS / 3)
    hosts[0].kill()
    for thread in threads:
        thread.join(30)
    print(f"load: {outcomes['token_ok']} tokens, {outcomes['token_failed']} failed; "
          f"{len(outcomes['acknowledged'])} writes acknowledged, "
          f"{len(outcomes['write_failed'])} failed (answers {outcomes.get('token_answers')}, "
          f"errors {outcomes.get('token_errors')})")
    assert outcomes["token_ok"] > 20
    # Only what was in flight on the killed host may fail: at most one request per thread.
    assert outcomes["token_failed"] <= TOKEN_THREADS
    assert len(outcomes["write_failed"]) <= WRITE_THREADS
    stored = [row[0] for row in cluster.query(
        database, "SELECT name FROM api_keys WHERE name LIKE 'w%%'")]
    assert len(stored) == len(set(stored)), "an admin write was duplicated"
    assert set(outcomes["acknowledged"]) <= set(stored), "an acknowledged write was lost"
    assert set(stored) <= set(outcomes["acknowledged"]) | set(outcomes["write_failed"])

    # Keyring rollover, host by host (docs/operations.md), with tokens served throughout.
    failures = []
    rolling = threading.Event()

    def steady_tokens():
        with requests.Session() as http:  # REQUESTS_CA_BUNDLE would beat http.verify
            while not rolling.is_set():
                answer = http.post(metadata["token_endpoint"], auth=svc_auth, timeout=10,
                                   verify=ca,
                                   data={"grant_type": "client_credentials"})
                if answer.status_code != 200:
                    failures.append(answer.status_code)
                time.sleep(0.02)

    steady = threading.Thread(target=steady_tokens)
    steady.start()
    try:
        first, second = hosts
        where = (issuer, ca, hosts)
        # 1: every host gets the new key, first in its ring (host 0 was killed: it starts).
        _rejoin(first.start(ENCRYPTION_KEYS=f"{NEW_KEY},{OLD_KEY}"), *where)
        _restart(second, f"{NEW_KEY},{OLD_KEY}", *where)
        # 2: re-encrypt every signing key under the new key, once.
        rotated = authserver({**env, "AUTHSERVER_ENCRYPTION_KEYS": f"{NEW_KEY},{OLD_KEY}"},
                             "encryption-key", "rotate", "--json")
        assert json.loads(rotated.stdout)["reencrypted"] >= 2
        # 3: the old key leaves every ring.
        _restart(first, NEW_KEY, *where)
        _restart(second, NEW_KEY, *where)
        # A signing-key rotation under the new ring: every host signs with a key it opens.
        assert authserver({**env, "AUTHSERVER_ENCRYPTION_KEYS": NEW_KEY}, "signing-keys",
                          "rotate").returncode == 0
        for host in hosts:
            assert requests.get(host.url + "/readyz", timeout=5).status_code == 200
    finally:
        rolling.set()
        steady.join(30)
    assert failures == [], failures
    late = session.fetch_token(metadata["token_endpoint"], grant_type="client_credentials",
                               verify=ca)["access_token"]
    late_key = jwks.get_signing_key_from_jwt(late)
    jwt.decode(late, late_key.key, algorithms=[late_key.algorithm_name],
               audience=issuer + "/api", issuer=issuer)

    # A host still on the old key alone tells the truth: it refuses to start.
    refused = authserver({**env, "AUTHSERVER_ENCRYPTION_KEYS": OLD_KEY}, "config", "check",
                         check=False)
    assert refused.returncode == 1 and "cannot be decrypted" in refused.stderr


def _restart(host: Host, ring: str, issuer: str, ca: str, hosts: list[Host]) -> None:
    """Graceful stop (in-flight requests finish), start with ``ring``, wait until ready and
    until the proxy sends it requests again (as an operator waits before the next host)."""
    host.stop()
    _rejoin(host.start(ENCRYPTION_KEYS=ring), issuer, ca, hosts)


def _rejoin(host: Host, issuer: str, ca: str, hosts: list[Host]) -> None:
    host.wait_ready()
    _landing(hosts, lambda rid: requests.get(issuer + "/healthz", verify=ca, timeout=5,
                                             headers={"X-Request-ID": rid}), want=host, tries=60)
