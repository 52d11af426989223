"""Accounts at scale: token issuance and API-key checks with 10,000 accounts of 100 keys each,
against the same rows in one account.

    python bench/accounts_scale.py [--duration 10] [--repeat 3] [--markdown]

Builds two PostgreSQL databases on 127.0.0.1:5432 (dropped at the end), each served by its own
``authserver serve`` (2 workers, RS256):

- ``one``: everything in the platform account, as a single-team deployment has it: 1,000,000
  API keys and 10,000 clients.
- ``many``: the same numbers spread over 10,000 customer accounts: 100 API keys and one client
  each. The measured client and key belong to one of those accounts.

Rows are cloned from CLI-made ones (``bench/seed.py``: real, well-formed secrets, only their
SHA-256 stored) and then given to the accounts round robin. Per round, each case runs on
``one`` and right after on ``many``: the token endpoint (``client_secret_basic``), and
introspection of an API key and of a JWT by the platform's ``tokens:introspect`` client (what
a resource guard asks). Printed: req/s, p50, p99, CPU per request (server, PostgreSQL backends,
load generator) and the ratios many / one, medians over rounds. Goal (issue 13): within 10 %
(CPU ratio and req/s ratio >= 0.9).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"  # noqa: A001 - lets `python bench/accounts_scale.py` import bench

from bench import loadgen, report, seed  # noqa: E402
from bench.cases import ACTIVE, CALLER_SCOPE, GUARD_SCOPE, Case, basic, send  # noqa: E402
from bench.cases import token_check, token_request  # noqa: E402
from bench.loadgen import Request  # noqa: E402
from bench.run import measure, probe  # noqa: E402
from bench.servers import Instance, PostgresDatabase, start_authserver  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:accounts:begin -->", "<!-- bench:accounts:end -->"
ACCOUNTS, KEYS_PER_ACCOUNT = 10_000, 100
GOAL = 0.9
CASES = ("token.rs256", "introspect.apikey", "introspect.jwt")


class Deployment:
    """One database, its instance and server, a measured client and key, and the platform's
    introspecting client."""

    def __init__(self, root: Path, log_dir: Path, name: str, *, spread: bool, accounts: int,
                 keys_per_account: int):
        self.database = PostgresDatabase(f"acc-{name}")
        self.name = name
        self.instance = Instance(root, name, self.database)
        self.instance.init("RS256")
        self.guard = self.instance.create_client("bench resource server", GUARD_SCOPE)
        account = self.instance.create_account("bench customer") if spread else None
        self.caller = self.instance.create_client("bench caller", CALLER_SCOPE, account)
        self.key_id, self.key = self.instance.create_api_key("bench key", CALLER_SCOPE, account)
        started = time.monotonic()
        dsn = self.database.dsn
        seed.add_api_keys(dsn, self.key_id, accounts * keys_per_account)
        seed.add_clients(dsn, self.caller[0], accounts)
        if spread:
            ids = [account] + seed.add_accounts(dsn, accounts - 1)
            seed.spread_over_accounts(dsn, "api_keys", "id", ids, keep=(self.key_id,))
            seed.spread_over_accounts(dsn, "clients", "client_id", ids,
                                      keep=(self.caller[0], self.guard[0]))
        seed.vacuum_analyze(dsn)
        self.seconds = round(time.monotonic() - started, 1)
        self.log_dir = log_dir
        self.server = None

    def start(self):
        self.server = start_authserver(self.instance, self.log_dir)
        return self.server

    def counts(self) -> dict:
        import psycopg

        with psycopg.connect(self.database.dsn) as conn:
            def one(query: str) -> int:
                return conn.execute(query).fetchone()[0]

            return {"accounts": one("SELECT count(*) FROM accounts"),
                    "api_keys": one("SELECT count(*) FROM api_keys"),
                    "clients": one("SELECT count(*) FROM clients"),
                    "max_keys_per_account": one(
                        "SELECT max(n) FROM (SELECT count(*) n FROM api_keys "
                        "GROUP BY account_id) c"),
                    "seconds_to_seed": self.seconds}

    def cases(self, reference: str | None, spread: str) -> list[Case]:
        introspect = {"Authorization": basic(*self.guard),
                      "Content-Type": "application/x-www-form-urlencoded"}
        status, body = send(self.server, token_request(self.caller))
        if status != 200:
            raise SystemExit(f"{self.name}: token request failed: HTTP {status} {body[:200]!r}")
        token = json.loads(body)["access_token"]
        where = "one account" if reference is None else spread

        def ref(case: str) -> str | None:
            return f"{reference}.{case}" if reference else None

        return [
            Case(f"{self.name}.token.rs256", f"POST /oauth2/token, RS256; {where}", self.server,
                 token_request(self.caller), token_check("RS256"), ref("token.rs256")),
            Case(f"{self.name}.introspect.apikey", f"POST /oauth2/introspect, API key; {where}",
                 self.server, Request("POST", "/oauth2/introspect", introspect,
                                      f"token={self.key}"), ACTIVE, ref("introspect.apikey")),
            Case(f"{self.name}.introspect.jwt", f"POST /oauth2/introspect, JWT; {where}",
                 self.server, Request("POST", "/oauth2/introspect", introspect,
                                      f"token={token}"), ACTIVE, ref("introspect.jwt")),
        ]

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.database.drop()


def run(args) -> dict:
    load = loadgen.choose(args.loadgen, 1, install=not args.no_install)
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    info = report.machine()
    deployments: list[Deployment] = []
    with tempfile.TemporaryDirectory(prefix="bench-accounts-") as tmp:
        root = Path(tmp)
        log_dir = root / "logs"
        log_dir.mkdir()
        try:
            for name, spread in (("one", False), ("many", True)):
                print(f"seeding {name} ...", flush=True)
                deployments.append(Deployment(root, log_dir, name, spread=spread,
                                              accounts=args.accounts,
                                              keys_per_account=args.keys_per_account))
            notes = {d.name: d.counts() for d in deployments}
            print(json.dumps(notes), flush=True)
            for deployment in deployments:
                deployment.start()
            spread = f"{args.accounts:,} accounts x {args.keys_per_account} keys"
            one, many = deployments[0].cases(None, spread), deployments[1].cases("one", spread)
            cases = [case for pair in zip(one, many) for case in pair]
            for case in cases:
                probe(case)
            runs: dict[str, list[dict]] = {case.name: [] for case in cases}
            for round_index in range(args.repeat):
                for case in cases:
                    result = measure(load, case, args)
                    result["round"] = round_index
                    runs[case.name].append(result)
                    print(f"  round {round_index + 1}  {case.name:<22} {result['rps']:8,.0f} req/s"
                          f"  p99 {result['p99_ms']:6.1f} ms  cpu {result['cpu_us']:6.0f}"
                          f" + db {result['db_cpu_us']:4.0f} us/req"
                          + (f"  non-2xx {result['non2xx']}" if result["non2xx"] else ""),
                          flush=True)
            info["loadavg_end"] = report.machine()["loadavg_start"]
            summary = report.summarise(
                {case.name: {"label": case.label, "reference": case.reference, "limit": None,
                             "runs": runs[case.name]} for case in cases}, info["nproc"])
        finally:
            for deployment in reversed(deployments):
                deployment.close()
    return {"started": started, "machine": info, "notes": {**notes, "loadgen": load.name},
            "config": {"command": "python bench/accounts_scale.py "
                                  + shlex.join(sys.argv[1:]),
                       "duration": args.duration, "warmup": args.warmup,
                       "repeat": args.repeat, "connections": args.connections},
            **summary}


def verdicts(result: dict) -> list[str]:
    """One line per case: the many / one ratios and whether they are within 10 %."""
    lines = []
    for case in CASES:
        ratio = result["ratios"].get(f"many.{case}", {})
        cpu, rps = ratio.get("cpu_ratio"), ratio.get("rps_ratio")
        met = cpu is not None and rps is not None and cpu >= GOAL and rps >= GOAL
        lines.append(f"{case}: CPU ratio {cpu:.2f}, req/s ratio {rps:.2f} "
                     f"(many / one; goal >= {GOAL}): {'met' if met else 'NOT met'}")
    return lines


def markdown(result: dict) -> str:
    """The accounts section's table for docs/benchmarks.md."""
    c, m = result["config"], result["machine"]
    many = result["notes"]["many"]
    out = [f"Run of {result['started']} UTC: `{c['command']}` ({result['notes']['loadgen']}, "
           f"{c['connections']} connections, {c['repeat']} rounds x {c['duration']:g} s; "
           f"{m['nproc']} cores, load average {m['loadavg_start']:.1f} at the start). "
           f"`many`: {many['accounts']:,} accounts, {many['api_keys']:,} API keys (at most "
           f"{many['max_keys_per_account']} per account), {many['clients']:,} clients; `one`: "
           f"the same rows in the platform account.", "",
           "| case | req/s | p50 ms | p99 ms | non-2xx | CPU µs/req (server + db) "
           "| many / one: CPU | many / one: req/s |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, case in result["cases"].items():
        med = case["median"]
        ratio = result["ratios"].get(name, {})
        out.append(f"| `{name}` | {med['rps']:,.0f} | {med['p50_ms']:.1f} | {med['p99_ms']:.1f}"
                   f" | {med['non2xx'] + med['errors']} | {med['cpu_us']:,.0f} + "
                   f"{med['db_cpu_us']:,.0f} | "
                   + (f"{ratio['cpu_ratio']:.2f} | {ratio['rps_ratio']:.2f} |" if ratio
                      else " | |"))
    return "\n".join(out + ["", *(f"- {line}" for line in verdicts(result))])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--accounts", type=int, default=ACCOUNTS,
                        help="customer accounts in `many` (and clients in both)")
    parser.add_argument("--keys-per-account", type=int, default=KEYS_PER_ACCOUNT)
    parser.add_argument("--no-install", action="store_true",
                        help="never apt-get install wrk")
    parser.add_argument("--markdown", action="store_true",
                        help="rewrite the accounts table of docs/benchmarks.md")
    args = parser.parse_args(argv)
    result = run(args)
    table = markdown(result)
    print("\n" + table)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / f"accounts-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps(result, indent=1, default=str))
    if args.markdown:
        text = DOCS.read_text("utf-8")
        start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
        DOCS.write_text(text[:start] + "\n" + table + "\n" + text[end:], "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
