"""The benchmark cases and the servers behind them, set up from scratch for one run.

Main cases (always): the authorization server's ceiling, token endpoint (RS256 and ES256
instances), introspection of a JWT and of an API key; the demo API's ``/healthz``, its
send endpoint without the guard, with a JWT and with an API key.
Scale cases (``--scale``): token and introspection on PostgreSQL with 1,000 API keys and
1,000 clients, and with 1,000,000 API keys and 100,000 clients, interleaved.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import seed
from .loadgen import Request
from .servers import (
    BenchError,
    Instance,
    PostgresDatabase,
    Server,
    start_authserver,
    start_demo,
    start_unguarded_demo,
)

FORM = "application/x-www-form-urlencoded"
CALLER_SCOPE = "sms:message:send"
GUARD_SCOPE = "tokens:introspect"
SMS_BODY = json.dumps({"messages": [{"sender": "InfoSMS",
                                     "destinations": [{"to": "41793026727"}],
                                     "content": {"text": "Benchmark message"}}]})
SMALL = {"api_keys": 1_000, "clients": 1_000}
LARGE = {"api_keys": 1_000_000, "clients": 100_000}

Check = Callable[[int, bytes], "str | None"]


@dataclass
class Case:
    """One measured request shape against one server; ``reference`` names its ratio base."""

    name: str
    label: str
    server: Server
    request: Request
    check: Check
    reference: str | None = None


def basic(client_id: str, secret: str) -> str:
    """RFC 6749 §2.3.1: form-urlencode id and secret, then Basic."""
    pair = f"{urllib.parse.quote(client_id, safe='')}:{urllib.parse.quote(secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def send(server: Server, request: Request) -> tuple[int, bytes]:
    """One request through urllib: (status, body)."""
    http = urllib.request.Request(server.base_url + request.path, method=request.method,
                                  data=request.body.encode() if request.body else None,
                                  headers=request.headers)
    try:
        with urllib.request.urlopen(http, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def jwt_alg(token: str) -> str:
    """The ``alg`` of a JWT's header (unverified: only to confirm which key signed it)."""
    header = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["alg"]


def _json_check(predicate: Callable[[dict], bool], what: str) -> Check:
    def check(status: int, body: bytes) -> str | None:
        if status != 200:
            return f"HTTP {status}: {body[:300]!r}"
        try:
            data = json.loads(body)
        except ValueError:
            return f"not JSON: {body[:300]!r}"
        return None if predicate(data) else f"expected {what}, got {body[:300]!r}"
    return check


def token_check(alg: str) -> Check:
    return _json_check(lambda d: "access_token" in d and jwt_alg(d["access_token"]) == alg,
                       f"an {alg} access token")


ACTIVE = _json_check(lambda d: d.get("active") is True, '{"active": true, ...}')
ANY_JSON = _json_check(lambda d: True, "a JSON document")
SENT = _json_check(lambda d: bool(d.get("messages")), "an SmsResponse")


class AuthorizationServer:
    """An authserver instance with a caller client, an introspecting client and an API key."""

    def __init__(self, root: Path, log_dir: Path, name: str, alg: str,
                 database: PostgresDatabase | None, extra_env: dict):
        self.instance = Instance(root, name, database, extra_env)
        self.instance.init(alg)
        self.alg = alg
        self.caller = self.instance.create_client("bench caller", CALLER_SCOPE)
        self.guard = self.instance.create_client("bench resource server", GUARD_SCOPE)
        self.api_key_id, self.api_key = self.instance.create_api_key("bench key", CALLER_SCOPE)
        self.log_dir = log_dir
        self.server: Server | None = None

    def start(self) -> Server:
        self.server = start_authserver(self.instance, self.log_dir)
        return self.server

    def token_request(self) -> Request:
        return Request("POST", "/oauth2/token",
                       {"Authorization": basic(*self.caller), "Content-Type": FORM},
                       "grant_type=client_credentials")

    def introspect_request(self, token: str) -> Request:
        return Request("POST", "/oauth2/introspect",
                       {"Authorization": basic(*self.guard), "Content-Type": FORM},
                       urllib.parse.urlencode({"token": token}))

    def access_token(self) -> str:
        status, body = send(self.server, self.token_request())
        if status != 200:
            raise BenchError(f"token request failed: HTTP {status} {body[:300]!r}")
        return json.loads(body)["access_token"]

    def ceiling(self) -> tuple[Request, str]:
        """The cheapest unprotected JSON route: /healthz when the server has one."""
        for path in ("/healthz", "/.well-known/oauth-authorization-server"):
            request = Request("GET", path)
            if send(self.server, request)[0] == 200:
                return request, f"GET {path}"
        raise BenchError("the authorization server answers neither /healthz nor its metadata")

    def cases(self, prefix: str, *, introspection: bool = True,
              with_ceiling: bool = True) -> list[Case]:
        """Ceiling, token and (optionally) both introspection cases of this instance."""
        cases = []
        ceiling = f"{prefix}.ceiling"
        if with_ceiling:
            request, label = self.ceiling()
            cases.append(Case(ceiling, f"{label} (ceiling)", self.server, request, ANY_JSON))
        cases.append(Case(f"{prefix}.token.{self.alg.lower()}",
                          f"POST /oauth2/token, client_secret_basic, {self.alg}",
                          self.server, self.token_request(), token_check(self.alg), ceiling))
        if introspection:
            cases.append(Case(f"{prefix}.introspect.jwt", "POST /oauth2/introspect, a JWT",
                              self.server, self.introspect_request(self.access_token()),
                              ACTIVE, ceiling))
            cases.append(Case(f"{prefix}.introspect.apikey",
                              "POST /oauth2/introspect, an API key", self.server,
                              self.introspect_request(self.api_key), ACTIVE, ceiling))
        return cases


class Environment:
    """Every process and database of one run; ``close()`` stops and drops them all."""

    def __init__(self, root: Path, database: str, extra_env: dict):
        self.root = root
        self.log_dir = root / "logs"
        self.log_dir.mkdir()
        self.database = database
        self.extra_env = extra_env
        self.databases: list[PostgresDatabase] = []
        self.servers: list[Server] = []
        self.notes: dict = {}

    def _database(self, label: str) -> PostgresDatabase:
        database = PostgresDatabase(label)
        self.databases.append(database)
        self.notes.setdefault("postgresql", database.version())
        return database

    def _authserver(self, name: str, alg: str, database: PostgresDatabase | None
                    ) -> AuthorizationServer:
        return AuthorizationServer(self.root, self.log_dir, name, alg, database, self.extra_env)

    def _start(self, server: Server) -> Server:
        self.servers.append(server)
        return server

    def main_cases(self) -> list[Case]:
        """Authorization server (RS256 and ES256 instances) and demo API cases."""
        pg = self.database == "postgresql"
        rs = self._authserver("rs256", "RS256", self._database("rs256") if pg else None)
        es = self._authserver("es256", "ES256", self._database("es256") if pg else None)
        self._start(rs.start())
        self._start(es.start())
        demo = self._start(start_demo(rs.server.base_url, *rs.guard, self.log_dir))
        unguarded = self._start(start_unguarded_demo(self.log_dir))
        send_headers = {"Content-Type": "application/json"}

        def sms(credential: str | None) -> Request:
            headers = dict(send_headers, **({"Authorization": credential} if credential else {}))
            return Request("POST", "/sms/3/messages", headers, SMS_BODY)

        cases = rs.cases("as")
        cases.insert(2, es.cases("as", introspection=False, with_ceiling=False)[0])
        cases += [
            Case("demo.healthz", "GET /healthz (demo ceiling)", demo, Request("GET", "/healthz"),
                 ANY_JSON),
            Case("demo.send.unguarded", "POST /sms/3/messages, no guard (baseline)",
                 unguarded, sms(None), SENT, "demo.healthz"),
            Case("demo.send.jwt", "POST /sms/3/messages, Bearer JWT (RS256)", demo,
                 sms(f"Bearer {rs.access_token()}"), SENT, "demo.send.unguarded"),
            Case("demo.send.apikey", "POST /sms/3/messages, App key (cached <= 5 s)", demo,
                 sms(f"App {rs.api_key}"), SENT, "demo.send.unguarded"),
        ]
        return cases

    def scale_cases(self) -> list[Case]:
        """Token and introspection with few and with many rows, pairwise interleaved."""
        groups = []
        for prefix, size in (("pg1k", SMALL), ("pg1m", LARGE)):
            server = self._authserver(prefix, "RS256", self._database(prefix))
            started = seed.seed(server.instance.database.dsn, key_template=server.api_key_id,
                                client_template=server.caller[0], **size)
            self.notes[f"seed_{prefix}"] = dict(size, **started)
            print(f"  {prefix}: {size['api_keys']:,} API keys, {size['clients']:,} clients "
                  f"(seeded in {started['seconds']} s)", flush=True)
            self._start(server.start())
            cases = server.cases(prefix)
            for case in cases:
                case.label += (f"; PostgreSQL, {size['api_keys']:,} keys, "
                               f"{size['clients']:,} clients")
            groups.append(cases)
        small, large = groups
        return [case for pair in zip(small, large) for case in pair]

    def close(self) -> None:
        """Stop every server we started, then drop every database we created."""
        for server in reversed(self.servers):
            try:
                server.stop()
            except OSError as exc:
                print(f"warning: stopping {server.label}: {exc}")
        for database in self.databases:
            try:
                database.drop()
            except Exception as exc:  # noqa: BLE001 - report and keep cleaning up
                print(f"warning: could not drop database {database.name}: {exc}")
