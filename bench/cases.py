"""The benchmark cases and the servers behind them, set up from scratch for one run.

Main cases: the ceiling (a trivial Flask app served as ``authserver serve`` serves) and the
limits (the ceiling plus one signature per algorithm); per configuration (SQLite, and the
production one: PostgreSQL + Redis), the token endpoint of an RS256, an ES256 and an EdDSA
instance and introspection of a JWT and of an API key; the resource guard on Flask and on
FastAPI (``bench/guard_apps.py``): the same endpoint unguarded, with a JWT, with an API key.
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

from bench import seed
from bench.loadgen import Request
from bench.proofs import ProofFile, ProofMaker
from bench.servers import (
    BenchError,
    Instance,
    PostgresDatabase,
    RedisServer,
    Server,
    start_authserver,
    start_ceiling,
)

FORM = "application/x-www-form-urlencoded"
CALLER_SCOPE = "sms:message:send"
GUARD_SCOPE = "tokens:introspect"
SMS_BODY = json.dumps({"messages": [{"sender": "InfoSMS",
                                     "destinations": [{"to": "41793026727"}],
                                     "content": {"text": "Benchmark message"}}]})
SMALL = {"api_keys": 1_000, "clients": 1_000}
LARGE = {"api_keys": 1_000_000, "clients": 100_000}
ALGORITHMS = ("RS256", "ES256", "EdDSA")
#: Configurations of the main cases: case-name prefix and what it runs on.
CONFIGURATIONS = {"sqlite": ("as", "SQLite, in-process counters"),
                  "production": ("prod", "PostgreSQL + Redis")}

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
    limit: str | None = None  # the limit case of its algorithm (token cases)
    #: DPoP cases: fresh proofs for every request (``bench/proofs.py``).
    proofs: ProofFile | None = None
    #: Requests per second last measured (sizes the next proof file).
    last_rps: float = 0.0

    def probe_request(self) -> Request:
        """The request of a single checked probe (with a fresh proof for DPoP cases)."""
        if self.proofs is None:
            return self.request
        return Request(self.request.method, self.request.path,
                       {**self.request.headers, "DPoP": self.proofs.one()}, self.request.body)


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


def default_algorithm() -> str:
    """The signing algorithm ``authserver init`` uses when not told (config SIGNING_ALG)."""
    from authserver import config

    return config.SIGNING_ALG


def token_check(alg: str, token_type: str = "Bearer") -> Check:
    return _json_check(lambda d: "access_token" in d and jwt_alg(d["access_token"]) == alg
                       and d.get("token_type", token_type) == token_type,
                       f"an {alg} {token_type} access token")


ACTIVE = _json_check(lambda d: d.get("active") is True, '{"active": true, ...}')
ANY_JSON = _json_check(lambda d: True, "a JSON document")
SENT = _json_check(lambda d: bool(d.get("messages")), "an SmsResponse")


class AuthorizationServer:
    """An authserver instance with a caller client, an introspecting client and an API key."""

    def __init__(self, root: Path, log_dir: Path, name: str, alg: str,
                 database: PostgresDatabase | None, redis: RedisServer | None,
                 extra_env: dict):
        self.instance = Instance(root, name, database, extra_env, redis=redis)
        self.instance.init(alg)
        self.alg = alg
        self.caller = self.instance.create_client("bench caller", CALLER_SCOPE)
        self.dpop_caller = self.instance.create_client("bench DPoP caller", CALLER_SCOPE,
                                                       "--dpop-bound-access-tokens")
        self.dpop_key = ProofMaker()
        self.guard = self.instance.create_client("bench resource server", GUARD_SCOPE)
        self.api_key_id, self.api_key = self.instance.create_api_key("bench key", CALLER_SCOPE)
        self.log_dir = log_dir
        self.server: Server | None = None

    def start(self) -> Server:
        self.server = start_authserver(self.instance, self.log_dir)
        return self.server

    def token_request(self) -> Request:
        return token_request(self.caller)

    def introspect_request(self, token: str) -> Request:
        return Request("POST", "/oauth2/introspect",
                       {"Authorization": basic(*self.guard), "Content-Type": FORM},
                       urllib.parse.urlencode({"token": token}))

    def access_token(self) -> str:
        status, body = send(self.server, self.token_request())
        if status != 200:
            raise BenchError(f"token request failed: HTTP {status} {body[:300]!r}")
        return json.loads(body)["access_token"]

    def token_case(self, prefix: str, reference: str, suffix: str = "") -> Case:
        return Case(f"{prefix}.token.{self.alg.lower()}",
                    f"POST /oauth2/token, client_secret_basic, {self.alg}{suffix}",
                    self.server, self.token_request(), token_check(self.alg), reference,
                    limit=f"limit.{self.alg.lower()}")

    def dpop_token_case(self, prefix: str, root: Path, suffix: str = "") -> Case:
        """Token requests of a client registered with dpop_bound_access_tokens, each with a
        fresh ES256 proof: ratio to the same server's Bearer token case."""
        url = self.server.base_url + "/oauth2/token"
        return Case(f"{prefix}.token.dpop",
                    f"POST /oauth2/token, {self.alg}, DPoP-bound client, ES256 proof{suffix}",
                    self.server, token_request(self.dpop_caller),
                    token_check(self.alg, "DPoP"), f"{prefix}.token.{self.alg.lower()}",
                    proofs=ProofFile(root / f"proofs-{prefix}.token.dpop", self.dpop_key,
                                     "POST", url))

    def dpop_access_token(self) -> str:
        """A token bound to this instance's DPoP key."""
        request = token_request(self.dpop_caller)
        proof = self.dpop_key.make("POST", self.server.base_url + "/oauth2/token")
        status, body = send(self.server, Request(request.method, request.path,
                                                 {**request.headers, "DPoP": proof},
                                                 request.body))
        if status != 200:
            raise BenchError(f"DPoP token request failed: HTTP {status} {body[:300]!r}")
        return json.loads(body)["access_token"]

    def introspection_cases(self, prefix: str, reference: str, suffix: str = "") -> list[Case]:
        return [Case(f"{prefix}.introspect.jwt", f"POST /oauth2/introspect, a JWT ({self.alg})"
                     + suffix, self.server, self.introspect_request(self.access_token()),
                     ACTIVE, reference),
                Case(f"{prefix}.introspect.apikey", "POST /oauth2/introspect, an API key"
                     + suffix, self.server, self.introspect_request(self.api_key), ACTIVE,
                     reference)]

    def cases(self, prefix: str, *, introspection: bool = True,
              with_ceiling: bool = True) -> list[Case]:
        """Own ceiling (/healthz), token and (optionally) both introspections (scale cases)."""
        cases = []
        ceiling = f"{prefix}.ceiling"
        if with_ceiling:
            cases.append(Case(ceiling, "GET /healthz (this server's cheapest route)",
                              self.server, Request("GET", "/healthz"), ANY_JSON))
        cases.append(self.token_case(prefix, ceiling))
        if introspection:
            cases += self.introspection_cases(prefix, ceiling)
        return cases


def sms_request(credential: str | None) -> Request:
    """The guarded endpoint's request, with ``credential`` as its Authorization header."""
    headers = {"Content-Type": "application/json"}
    if credential:
        headers["Authorization"] = credential
    return Request("POST", "/sms/3/messages", headers, SMS_BODY)


def token_request(caller: tuple[str, str]) -> Request:
    """The token request every token, ceiling and limit case sends."""
    return Request("POST", "/oauth2/token",
                   {"Authorization": basic(*caller), "Content-Type": FORM},
                   "grant_type=client_credentials")


class Environment:
    """Every process and database of one run; ``close()`` stops and drops them all."""

    def __init__(self, root: Path, extra_env: dict):
        self.root = root
        self.log_dir = root / "logs"
        self.log_dir.mkdir()
        self.extra_env = extra_env
        self.databases: list[PostgresDatabase] = []
        self.redis: RedisServer | None = None
        self.servers: list[Server] = []
        self.notes: dict = {}

    def _database(self, label: str) -> PostgresDatabase:
        database = PostgresDatabase(label)
        self.databases.append(database)
        self.notes.setdefault("postgresql", database.version())
        return database

    def _redis(self) -> RedisServer:
        if self.redis is None:
            self.redis = RedisServer(self.log_dir)
            self.notes["redis"] = self.redis.version()
        return self.redis

    def _authserver(self, name: str, alg: str, database: PostgresDatabase | None,
                    redis: RedisServer | None = None) -> AuthorizationServer:
        return AuthorizationServer(self.root, self.log_dir, name, alg, database, redis,
                                   self.extra_env)

    def _start(self, server: Server) -> Server:
        self.servers.append(server)
        return server

    def ceiling_cases(self) -> list[Case]:
        """The trivial app (ceiling) and the ceiling plus one signature per algorithm."""
        server = self._start(start_ceiling(self.log_dir))
        shape = token_request(("bench-client", "bench-secret"))
        cases = [Case("ceiling", "trivial Flask endpoint, served as `authserver serve` serves",
                      server, Request(shape.method, "/ceiling", shape.headers, shape.body),
                      ANY_JSON)]
        for alg in ALGORITHMS:
            cases.append(Case(f"limit.{alg.lower()}", f"ceiling + one {alg} signature",
                              server, Request(shape.method, f"/limit/{alg}", shape.headers,
                                              shape.body), token_check(alg), "ceiling"))
        return cases

    def configuration_cases(self, configuration: str) -> tuple[list[Case], AuthorizationServer]:
        """Token (each algorithm) and introspection cases of one configuration; the
        instance with the default algorithm (the guard's issuer)."""
        prefix, what = CONFIGURATIONS[configuration]
        production = configuration == "production"
        redis = self._redis() if production else None
        default = default_algorithm()
        suffix = f"; {what}" if production else ""
        servers = {}
        for alg in ALGORITHMS:
            name = f"{prefix}-{alg.lower()}"
            servers[alg] = self._authserver(name, alg, self._database(name) if production
                                            else None, redis)
            self._start(servers[alg].start())
        cases = []
        if not production:
            cases.append(Case(f"{prefix}.healthz", "GET /healthz of `authserver serve`",
                              servers[default].server, Request("GET", "/healthz"), ANY_JSON,
                              "ceiling"))
        cases += [servers[alg].token_case(prefix, "ceiling", suffix) for alg in ALGORITHMS]
        cases.append(servers[default].dpop_token_case(prefix, self.root, suffix))
        cases += servers[default].introspection_cases(prefix, "ceiling", suffix)
        return cases, servers[default]

    def variant_cases(self, configuration: str, variant: str, env: dict) -> list[Case]:
        """The default algorithm's token and introspection cases of ``configuration`` on an
        instance with ``env`` added (a lever switched on or off), named ``<case>+<variant>``."""
        prefix, what = CONFIGURATIONS[configuration]
        production = configuration == "production"
        name = f"{prefix}-{variant}"
        settings = ", ".join(f"{key.removeprefix('AUTHSERVER_')}={value}"
                             for key, value in env.items())
        server = AuthorizationServer(self.root, self.log_dir, name, default_algorithm(),
                                     self._database(name) if production else None,
                                     self._redis() if production else None,
                                     dict(self.extra_env, **env))
        self._start(server.start())
        suffix = (f"; {what}" if production else "") + f"; {settings}"
        cases = [server.token_case(prefix, "ceiling", suffix),
                 *server.introspection_cases(prefix, "ceiling", suffix)]
        for case in cases:
            case.name += f"+{variant}"
        return cases

    def main_cases(self, configurations: list[str],
                   variants: dict[str, dict] | None = None) -> list[Case]:
        """Ceiling and limits, each configuration's cases (and its variants), the guard's."""
        cases = self.ceiling_cases()
        instances = []
        for configuration in configurations:
            more, instance = self.configuration_cases(configuration)
            cases += more
            for variant, env in (variants or {}).items():
                cases += self.variant_cases(configuration, variant, env)
            instances.append(instance)
        cases += self.guard_cases(instances[0])
        return cases

    def guard_cases(self, issuer: AuthorizationServer) -> list[Case]:
        """The guard's cost on each adapter: ``bench/guard_apps.py``'s send endpoint on Flask
        (gunicorn) and FastAPI (uvicorn), unguarded and with a JWT or a cached API key, each
        guarded case after the unguarded endpoint sent the same request (its reference)."""
        from bench.guard_frameworks import FRAMEWORKS, start_app
        from bench.servers import _clean_environment

        env = dict(_clean_environment(), GUARD_ISSUER=issuer.server.base_url,
                   GUARD_CLIENT_ID=issuer.guard[0], GUARD_CLIENT_SECRET=issuer.guard[1])
        credentials = {"jwt": f"Bearer {issuer.access_token()}", "apikey": f"App {issuer.api_key}"}
        labels = {"flask": "Flask, gunicorn", "fastapi": "FastAPI, uvicorn"}
        cases = []
        for framework in FRAMEWORKS:
            unguarded = self._start(start_app(framework, False, env, self.log_dir))
            guarded = self._start(start_app(framework, True, env, self.log_dir))
            base = f"guard.{framework}.unguarded"
            cases.append(Case(base, f"POST /sms/3/messages, no guard ({labels[framework]})",
                              unguarded, sms_request(None), SENT))
            for kind, what in (("jwt", f"Bearer JWT ({issuer.alg})"),
                               ("apikey", "App key (cached)")):
                # The baseline gets the same bytes (the header, ignored): the ratio is then the
                # guard's work, not the HTTP server's for reading a longer request.
                same_bytes = f"{base}+{kind}"
                cases.append(Case(same_bytes, f"POST /sms/3/messages, no guard, sent the {what} "
                                  f"header ({labels[framework]})", unguarded,
                                  sms_request(credentials[kind]), SENT))
                cases.append(Case(f"guard.{framework}.{kind}",
                                  f"POST /sms/3/messages, {what} ({labels[framework]})",
                                  guarded, sms_request(credentials[kind]), SENT, same_bytes))
            if framework == "flask":
                bound = issuer.dpop_access_token()
                cases.append(Case(
                    "guard.flask.dpop",
                    f"POST /sms/3/messages, DPoP-bound JWT ({issuer.alg}) + ES256 proof "
                    f"({labels[framework]})", guarded, sms_request(f"DPoP {bound}"), SENT,
                    "guard.flask.jwt",
                    proofs=ProofFile(self.root / "proofs-guard.flask.dpop", issuer.dpop_key,
                                     "POST", guarded.base_url + "/sms/3/messages",
                                     access_token=bound)))
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
        if self.redis is not None:
            self.redis.stop()
        for database in self.databases:
            try:
                database.drop()
            except Exception as exc:  # noqa: BLE001 - report and keep cleaning up
                print(f"warning: could not drop database {database.name}: {exc}")
