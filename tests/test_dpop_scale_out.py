"""Issue 15 done-when: a client registered with DPoP binding gets and uses tokens only with proofs
of its own key, across two server processes and two guard workers (threat model DP01-DP04).

Two ``authserver serve`` processes on one PostgreSQL database stand behind one public URL (the
issuer, which is the first one's address; the second is configured with the same issuer, as a
second host of one deployment is); the demo API runs under ``resource-demo serve --workers 2``
with its proof store in Redis. Every process is real; they share only the database and Redis.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from dpop_support import DPoPKey
from serverproc import BIN, PostgresDatabase, authserver, free_port, server_env

ENCRYPTION_KEY = base64.urlsafe_b64encode(b"d" * 32).decode()
REPORTS = "/sms/3/reports"


def start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    """A process writing to ``log`` (the file is the child's; our handle is closed at once)."""
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_ready(process: subprocess.Popen, url: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited: {log.read_text()[-2000:]}")
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not become ready: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """Servers A and B (one issuer, one database) and the demo API with two guard workers."""
    database = PostgresDatabase()
    logs = tmp_path_factory.mktemp("dpop-logs")
    ports = [free_port(), free_port(), free_port()]
    issuer = f"http://127.0.0.1:{ports[0]}"
    settings = {"SQLALCHEMY_DATABASE_URI": database.url, "ISSUER": issuer,
                "ENCRYPTION_KEY": ENCRYPTION_KEY, "SECRET_KEY": "dpop-scale-test",
                "SIGNING_KEY_PUBLISH_DELAY": "0"}
    envs = [server_env(tmp_path_factory.mktemp(f"instance-{name}"), **settings)
            for name in "ab"]
    authserver(envs[0], "init")
    rs = json.loads(authserver(envs[0], "clients", "create", "--name", "demo api", "--scope",
                               "tokens:introspect", "--json").stdout)
    processes = []
    try:
        for index, env in enumerate(envs):
            log = logs / f"server-{index}.log"
            processes.append((start(
                [str(BIN / "authserver"), "serve", "--port", str(ports[index]), "--workers", "1"],
                env, log), f"http://127.0.0.1:{ports[index]}", log))
        for process, url, log in processes:
            wait_ready(process, url, log)
        demo_env = dict(envs[0], RESOURCE_DEMO_CLIENT_SECRET=rs["clientSecret"])
        demo_log = logs / "demo.log"
        demo = start(
            [str(BIN / "resource-demo"), "serve", "--port", str(ports[2]), "--workers", "2",
             "--issuer", issuer, "--client-id", rs["clientId"],
             "--dpop-replay-store", "redis://127.0.0.1:6379/0"], demo_env, demo_log)
        processes.append((demo, f"http://127.0.0.1:{ports[2]}", demo_log))
        wait_ready(demo, processes[-1][1], demo_log)
        yield {"a": processes[0][1], "b": processes[1][1], "api": processes[2][1],
               "issuer": issuer, "env": envs[0], "demo_log": demo_log}
    finally:
        for process, _, _ in processes:
            process.terminate()
        for process, _, _ in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        database.drop()


def token(server: str, client: tuple[str, str], proof: str | None) -> requests.Response:
    headers = {"DPoP": proof} if proof else {}
    return requests.post(server + "/oauth2/token", data={"grant_type": "client_credentials"},
                         auth=client, headers=headers, timeout=10)


def call(api: str, access_token: str, proof: str | None, scheme: str = "DPoP"):
    headers = {"Authorization": f"{scheme} {access_token}"}
    if proof:
        headers["DPoP"] = proof
    return requests.get(api + REPORTS, headers=headers, timeout=10)


def test_DP04_DP01_DP03_bound_client_across_two_servers_and_two_guard_workers(deployment):
    created = json.loads(authserver(deployment["env"], "clients", "create", "--name", "bound",
                                    "--scope", "sms:message:send", "--dpop-bound-access-tokens",
                                    "--json").stdout)
    client = (created["clientId"], created["clientSecret"])
    key = DPoPKey("ES256")
    token_url = deployment["issuer"] + "/oauth2/token"  # the one public URL of both servers

    # DP04: no proof, no token, at either server.
    for server in (deployment["a"], deployment["b"]):
        refused = token(server, client, None)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_dpop_proof"

    # DP01: a proof is good once, whichever server sees it (the jti store is the database).
    proof = key.proof("POST", token_url)
    first = token(deployment["a"], client, proof)
    assert first.status_code == 200 and first.json()["token_type"] == "DPoP", first.text
    replayed = token(deployment["b"], client, proof)
    assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_dpop_proof"
    second = token(deployment["b"], client, key.proof("POST", token_url))
    assert second.status_code == 200 and second.json()["token_type"] == "DPoP"

    api = deployment["api"]
    for access_token in (first.json()["access_token"], second.json()["access_token"]):
        # Used with proofs of its own key: in.
        for _ in range(4):  # fresh proofs, so both workers get some
            proof = key.proof("GET", api + REPORTS, access_token=access_token)
            assert call(api, access_token, proof).status_code == 200
        # DP03: as Bearer, or with another key's proof: out.
        assert call(api, access_token, None, scheme="Bearer").status_code == 401
        stranger = DPoPKey("ES256").proof("GET", api + REPORTS, access_token=access_token)
        assert call(api, access_token, stranger).status_code == 401

    # DP01: one proof sent to both guard workers at once is let in exactly once (Redis).
    access_token = first.json()["access_token"]
    proof = key.proof("GET", api + REPORTS, access_token=access_token)
    senders = 8
    barrier = threading.Barrier(senders)
    statuses: list[int] = []

    def send():
        barrier.wait(10)
        statuses.append(call(api, access_token, proof).status_code)

    threads = [threading.Thread(target=send) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [200] + [401] * (senders - 1)
    # The guard started with a shared store, so it gave no one-worker warning.
    assert "correct with one worker only" not in deployment["demo_log"].read_text()


def test_without_a_shared_store_the_guard_says_it_is_one_worker_only(tmp_path, deployment):
    """``resource-demo serve`` without --dpop-replay-store logs the limitation at start."""
    rs = json.loads(authserver(deployment["env"], "clients", "create", "--name", "rs2",
                               "--scope", "tokens:introspect", "--json").stdout)
    port = free_port()
    log = tmp_path / "demo-no-redis.log"
    env = dict(deployment["env"], RESOURCE_DEMO_CLIENT_SECRET=rs["clientSecret"])
    demo = start(
        [str(BIN / "resource-demo"), "serve", "--port", str(port), "--workers", "2",
         "--issuer", deployment["issuer"], "--client-id", rs["clientId"]], env, log)
    try:
        wait_ready(demo, f"http://127.0.0.1:{port}", log)
        assert "correct with one worker only" in log.read_text()
    finally:
        demo.terminate()
        demo.wait(30)

