"""The guard's cost on each adapter: the same endpoint guarded and unguarded, Flask and FastAPI.

    python bench/guard_frameworks.py [--duration 8] [--repeat 3] [--markdown]

Starts on 127.0.0.1 an authorization server (``authserver init``, SQLite, RS256) with a caller
client, the guard's ``tokens:introspect`` client and an API key; then four servers of
``bench/guard_apps.py``: Flask under gunicorn (two sync workers, as ``resource-demo serve``) and
FastAPI under uvicorn (two workers, each on its own socket), each with and without the guard. Measures per framework
``POST /sms/3/messages`` unguarded, with a Bearer JWT and with an App key (its introspection
answer cached, as in steady state), and the unguarded endpoint sent each of those credentials
too (it ignores them: the same bytes on the wire), in interleaved rounds, and prints req/s,
p50, p99, CPU per request and the ratios guarded / unguarded with the same bytes (goal: CPU per
request of the unguarded endpoint over the guarded one >= 0.85, for a JWT and for a cached
key); the ratio to the unguarded request without the header is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"  # noqa: A001 - lets `python bench/guard_frameworks.py` import bench

from bench import loadgen  # noqa: E402
from bench.cases import SMS_BODY, basic, send  # noqa: E402
from bench.loadgen import Request  # noqa: E402
from bench.servers import (  # noqa: E402
    HOST,
    Instance,
    Server,
    _clean_environment,
    free_port,
    start_authserver,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:guard-frameworks:begin -->", "<!-- bench:guard-frameworks:end -->"
GOAL = 0.85
FRAMEWORKS = ("flask", "fastapi")
#: Each guarded case's baseline: the unguarded app sent the same bytes (the credential's
#: header too, which the unguarded app ignores), so that the ratio is the guard's work alone
#: and not the HTTP server's for reading a longer request.
SAME_BYTES = {"jwt": "unguarded+jwt", "apikey": "unguarded+apikey"}
#: Cases in the order measured within a round: each baseline just before its guarded case.
ORDER = ("unguarded", "unguarded+jwt", "jwt", "unguarded+apikey", "apikey")


def start_app(framework: str, guarded: bool, env: dict, log_dir: Path) -> Server:
    """One bench/guard_apps.py server on a free port."""
    port = free_port()
    label = f"{framework}-{'guarded' if guarded else 'unguarded'}"
    if framework == "flask":
        command = [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"{HOST}:{port}",
                   f"bench.guard_apps:flask_app(guarded={guarded})"]
    else:
        # Two uvicorn workers, each on its own SO_REUSEPORT socket (bench/uvicorn_workers.py):
        # with uvicorn's --workers one worker could take all 16 connections.
        factory = "fastapi_app" if guarded else "fastapi_unguarded"
        command = [sys.executable, "-m", "bench.uvicorn_workers", f"bench.guard_apps:{factory}",
                   "--workers", "2", "--host", HOST, "--port", str(port)]
    env = dict(env, PYTHONPATH=str(ROOT))
    return Server(label, command, env, port, log_dir, "/healthz")


def measure(args) -> dict:
    """Start everything, run the rounds, stop everything; the per-case samples."""
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="bench-guard-") as tmp:
        root = Path(tmp)
        log_dir = root / "logs"
        log_dir.mkdir()
        try:
            instance = Instance(root, "issuer")
            instance.init("RS256")
            caller = instance.create_client("bench caller", "sms:message:send")
            guard_id, guard_secret = instance.create_client("bench guard", "tokens:introspect")
            _, api_key = instance.create_api_key("bench key", "sms:message:send")
            issuer = start_authserver(instance, log_dir)
            servers.append(issuer)
            status, body = send(issuer, Request(
                "POST", "/oauth2/token", {"Authorization": basic(*caller),
                                          "Content-Type": "application/x-www-form-urlencoded"},
                "grant_type=client_credentials"))
            token = json.loads(body)["access_token"]
            env = dict(_clean_environment(), GUARD_ISSUER=issuer.base_url,
                       GUARD_CLIENT_ID=guard_id, GUARD_CLIENT_SECRET=guard_secret)
            apps = {}
            for framework in FRAMEWORKS:
                for guarded in (False, True):
                    apps[framework, guarded] = start_app(framework, guarded, env, log_dir)
                    servers.append(apps[framework, guarded])
            headers = {"Content-Type": "application/json"}
            credentials = {"unguarded": None, "jwt": f"Bearer {token}", "apikey": f"App {api_key}"}
            cases = {}
            for framework in FRAMEWORKS:
                for kind in ORDER:
                    credential = credentials[kind.partition("+")[2] or kind]
                    server = apps[framework, not kind.startswith("unguarded")]
                    request = Request("POST", "/sms/3/messages",
                                      dict(headers, **({"Authorization": credential}
                                                       if credential else {})), SMS_BODY)
                    status, body = send(server, request)
                    if status != 200 or b"messages" not in body:
                        raise SystemExit(f"{framework}.{kind}: HTTP {status} {body[:200]!r}")
                    cases[f"{framework}.{kind}"] = (server, request)
            load = loadgen.choose(args.loadgen, 1, install=False)
            samples = {name: [] for name in cases}
            for round_number in range(args.repeat):
                for name, (server, request) in cases.items():
                    load.run(server.base_url, request, args.warmup, args.connections)
                    cpu = server.cpu_seconds()
                    result = load.run(server.base_url, request, args.duration, args.connections)
                    cpu = server.cpu_seconds() - cpu
                    sample = result.as_dict()
                    sample["cpu_us_per_request"] = cpu / max(result.requests, 1) * 1e6
                    samples[name].append(sample)
                    print(f"round {round_number + 1} {name:18} {result.rps:8.0f} req/s "
                          f"p99 {result.p99_ms:6.1f} ms non-2xx {result.non2xx}", flush=True)
            return {"loadgen": load.name, "samples": samples, "args": vars(args),
                    "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        finally:
            for server in reversed(servers):
                server.stop()


def summary(run: dict) -> tuple[list[dict], list[str]]:
    """Median rows per case and the ratio of each guarded case to its unguarded twin."""
    rows, lines = [], []
    samples = run["samples"]
    for framework in FRAMEWORKS:
        for kind in ORDER:
            name = f"{framework}.{kind}"
            own = samples[name]
            base = samples[f"{framework}.{SAME_BYTES.get(kind, 'unguarded')}"]
            row = {"case": name,
                   "rps": statistics.median(s["rps"] for s in own),
                   "p50_ms": statistics.median(s["p50_ms"] for s in own),
                   "p99_ms": statistics.median(s["p99_ms"] for s in own),
                   "cpu_us": statistics.median(s["cpu_us_per_request"] for s in own),
                   "non2xx": sum(s["non2xx"] for s in own)}
            if kind in SAME_BYTES:
                row["ratio"] = statistics.median(s["rps"] / b["rps"] for s, b in zip(own, base))
                row["cpu_ratio"] = statistics.median(b["cpu_us_per_request"] /
                                                     s["cpu_us_per_request"]
                                                     for s, b in zip(own, base))
                # Judged by CPU, as bench/run.py judges: req/s swings with the machine's
                # other load.
                met = "met" if row["cpu_ratio"] >= GOAL else "NOT met"
                plain = samples[f"{framework}.unguarded"]
                row["cpu_ratio_headerless"] = statistics.median(
                    b["cpu_us_per_request"] / s["cpu_us_per_request"] for s, b in zip(own, plain))
                lines.append(f"{name}: CPU {row['cpu_ratio']:.2f} of {framework}."
                             f"{SAME_BYTES[kind]} (req/s {row['ratio']:.2f}; CPU "
                             f"{row['cpu_ratio_headerless']:.2f} of {framework}.unguarded without "
                             f"the header); goal >= {GOAL}: {met}")
            rows.append(row)
    return rows, lines


def markdown(run: dict, rows: list[dict]) -> str:
    """The results table for docs/benchmarks.md."""
    out = [f"Run of {run['started']}: `python bench/guard_frameworks.py --repeat "
           f"{run['args']['repeat']} --duration {run['args']['duration']:g}` "
           f"({run['loadgen']}, {run['args']['connections']} connections)", "",
           "| case | req/s | p50 ms | p99 ms | non-2xx | CPU µs/req | guarded / unguarded, "
           "same bytes: CPU (req/s) | CPU ratio to `unguarded` (no header) |",
           "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for row in rows:
        ratio = (f"{row['cpu_ratio']:.2f} ({row['ratio']:.2f})" if "ratio" in row else "")
        headerless = (f"{row['cpu_ratio_headerless']:.2f}" if "ratio" in row else "")
        out.append(f"| `{row['case']}` | {row['rps']:,.0f} | {row['p50_ms']:.1f} | "
                   f"{row['p99_ms']:.1f} | {row['non2xx']} | {row['cpu_us']:,.0f} | {ratio} | "
                   f"{headerless} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--markdown", action="store_true",
                        help="rewrite the guard-frameworks table of docs/benchmarks.md")
    args = parser.parse_args(argv)
    run = measure(args)
    rows, lines = summary(run)
    table = markdown(run, rows)
    print("\n" + table + "\n\n" + "\n".join(lines))
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / f"guard-frameworks-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps({**run, "rows": rows}, indent=1))
    if args.markdown:
        text = DOCS.read_text("utf-8")
        start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
        DOCS.write_text(text[:start] + "\n" + table + "\n" + text[end:], "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
