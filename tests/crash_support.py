"""RL6 crash harness: writers against a server, a process rotating signing keys, kill -9 of
both at a random moment, and the invariants checked after the restart (tests/test_faults.py)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter

import jwt
import requests
from fault_support import (
    Deployment,
    Server,
    bearer,
    parallel,
    post_form,
    token,
    wait_until,
)

ROTATOR = """
from authserver import create_app
from authserver.credentials.signing_keys import rotate_signing_keys

app = create_app()
with app.app_context():
    while True:
        print(rotate_signing_keys().kid, flush=True)
"""


class CrashRound:
    """One round: writers against a single-worker server and a rotating process, kill -9 of
    all of them at a random moment; records what each writer saw acknowledged."""

    def __init__(self, number: int, deployment: Deployment, server: Server, admin_token: str,
                 revocable: list[tuple[str, str]], owner: tuple[str, str],
                 minter: tuple[str, str]):
        self.number = number
        self.deployment = deployment
        self.server = server
        self.admin_token = admin_token
        self.revocable = revocable
        self.owner = owner
        self.minter = minter
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.keys: list[tuple[str, str]] = []  # (id, secret) acknowledged with 201
        self.revoked: list[str] = []  # jti acknowledged with 200
        self.unacknowledged: list[tuple[str, str]] = []  # (token, jti) revoked, no answer
        self.kids: set[str] = set()  # kids of tokens handed out
        self.answers: Counter = Counter()

    def _create(self, worker: int) -> None:
        index = 0
        while not self.stop.is_set():
            index += 1
            try:
                answer = requests.post(self.server.url + "/settings/2/api-keys",
                                       json={"name": f"crash-{self.number}-{worker}-{index}",
                                             "scopeGuids": ["sms:message:send"]},
                                       headers=bearer(self.admin_token), timeout=30)
            except requests.RequestException:
                return
            with self.lock:
                self.answers[answer.status_code] += 1
                if answer.status_code == 201:
                    self.keys.append((answer.json()["id"], answer.json()["apiKeySecret"]))

    def _revoke(self, worker: int) -> None:
        for access_token, jti in self.revocable[worker::3]:
            if self.stop.is_set():
                return
            try:
                answer = post_form(self.server.url, "/oauth2/revoke", {"token": access_token},
                                   self.owner, timeout=30)
            except requests.RequestException:
                with self.lock:
                    self.unacknowledged.append((access_token, jti))
                return
            with self.lock:
                self.answers[answer.status_code] += 1
                if answer.status_code == 200:
                    self.revoked.append(jti)

    def _mint(self, worker: int) -> None:
        while not self.stop.is_set():
            try:
                answer = token(self.server.url, *self.minter, timeout=30)
            except requests.RequestException:
                return
            with self.lock:
                self.answers[answer.status_code] += 1
                if answer.status_code == 200:
                    self.kids.add(jwt.get_unverified_header(answer.json()["access_token"])
                                  ["kid"])

    def run(self, delay: float) -> list[str]:
        """Start the writers; once each has had a write acknowledged, wait ``delay`` seconds
        and kill -9 the server and the rotating process; return the rotations acknowledged."""
        rotator = subprocess.Popen([sys.executable, "-c", ROTATOR],
                                   env=self.deployment.env("rotator",
                                                           SIGNING_KEY_PUBLISH_DELAY="0"),
                                   stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True)
        printed: list[str] = []
        reader = threading.Thread(target=lambda: printed.extend(iter(rotator.stdout.readline,
                                                                     "")))
        reader.start()
        threads = [threading.Thread(target=target, args=(worker,))
                   for target in (self._create, self._revoke, self._mint)
                   for worker in range(3)]
        try:
            wait_until(lambda: bool(printed), 60, rotator)
            for thread in threads:
                thread.start()
            wait_until(lambda: self.keys and self.revoked and self.kids, 30)
            time.sleep(delay)
        finally:
            rotator.kill()
            self.server.kill()
            self.stop.set()
            for thread in threads:
                if thread.is_alive():
                    thread.join(60)
            rotator.wait(30)
            reader.join(30)
            rotator.stdout.close()
        # Only whole lines: a kid cut off by the kill was never acknowledged.
        return [line.strip() for line in printed if line.endswith("\n")]


def check_after_crash(deployment: Deployment, server: Server, round_: CrashRound,
                      rotated: list[str], introspector) -> dict:
    """The invariants after a restart; returns counts (``lost`` must be 0)."""
    query = deployment.cluster.query
    dbname = deployment.dbname
    found = {}

    def active(credential):
        return post_form(server.url, "/oauth2/introspect", {"token": credential},
                         introspector).json().get("active")

    # Every acknowledged key authenticates; every row is whole (its create event committed
    # with it); the rest are keys whose 201 was lost in the crash.
    lost_keys = [key_id for (key_id, secret), ok in
                 zip(round_.keys, parallel(active, [s for _, s in round_.keys], 10)) if not ok]
    rows = query(dbname, "SELECT k.id, k.secret_hash, k.scope, k.valid_from < k.valid_to, "
                 "count(a.id), k.name FROM api_keys k LEFT JOIN audit_events a "
                 "ON a.object_id = k.id AND a.action = 'create' GROUP BY k.id")
    broken = [row for row in rows if not (len(row[1]) == 64 and row[2] == "sms:message:send"
                                          and row[3] and row[4] == 1)]
    assert broken == []
    this_round = [row for row in rows if row[5].startswith(f"crash-{round_.number}-")]
    found["orphan_keys"] = len(this_round) - len(round_.keys)
    # Every acknowledged revocation is durable, and a retry of an unanswered one is safe.
    revoked = {row[0] for row in query(dbname, "SELECT jti FROM revoked_tokens")}
    lost_revocations = [jti for jti in round_.revoked if jti not in revoked]
    retried = [post_form(server.url, "/oauth2/revoke", {"token": access_token},
                         round_.owner).status_code for access_token, _ in round_.unacknowledged]
    assert set(retried) <= {200}
    revoked = {row[0] for row in query(dbname, "SELECT jti FROM revoked_tokens")}
    assert {jti for _, jti in round_.unacknowledged} <= revoked
    # Exactly one active and one next key; every acknowledged rotation is there; every kid a
    # token carried is still published, and a new token verifies against the JWKS.
    states = Counter(row[0] for row in query(dbname, "SELECT state FROM signing_keys"))
    assert states["active"] == 1 and states["next"] == 1, states
    active_kid = query(dbname, "SELECT kid FROM signing_keys WHERE state = 'active'")[0][0]
    known = {row[0] for row in query(dbname, "SELECT kid FROM signing_keys")}
    lost_rotations = [kid for kid in rotated if kid not in known]
    published = requests.get(server.url + "/.well-known/jwks.json", timeout=10).json()["keys"]
    kids = {key["kid"] for key in published}
    assert round_.kids <= kids, round_.kids - kids
    fresh = token(server.url, *round_.minter).json()["access_token"]
    header = jwt.get_unverified_header(fresh)
    assert header["kid"] == active_kid
    jwk = next(key for key in published if key["kid"] == header["kid"])
    jwt.decode(fresh, jwt.PyJWK(jwk).key, algorithms=[header["alg"]],
               options={"verify_aud": False})
    found.update(keys=len(round_.keys), revoked=len(round_.revoked), rotations=len(rotated),
                 lost=len(lost_keys) + len(lost_revocations) + len(lost_rotations),
                 retried=len(retried))
    return found
