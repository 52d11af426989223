"""Benchmark the authorization server and the resource guard in one run, on 127.0.0.1 only.

    python bench/run.py [--duration 10] [--repeat 3] [--configs sqlite,production] [--scale]

Starts everything itself (the ceiling app, ``authserver serve`` per algorithm and
configuration, the guard on Flask and FastAPI, fresh instance folders, databases and a
private Redis), measures every case in interleaved rounds with wrk (or a Python load generator), prints
medians and CPU ratios to the ceiling, checks them against the goals of issue 19, writes
bench/results/*.json and, with --markdown, the table of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import os
import resource
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"  # noqa: A001 - lets `python bench/run.py` use relative imports

from bench import loadgen, profiling, report  # noqa: E402
from bench.cases import CONFIGURATIONS, Case, Environment, send  # noqa: E402
from bench.servers import BenchError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark authserver and its resource guard.")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="measured seconds per case and round (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="unmeasured seconds before each measurement (default 2)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument("--repeat", type=int, default=3,
                        help="interleaved rounds over all cases; medians are reported")
    parser.add_argument("--configs", default="sqlite,production",
                        help="configurations of the main cases, comma-separated: sqlite "
                             "(in-process counters) and/or production (a fresh PostgreSQL "
                             "database per server on 127.0.0.1:5432, dropped at the end, and "
                             "a private redis-server for the counters)")
    parser.add_argument("--scale", action="store_true",
                        help="add the PostgreSQL cases with 1k and with 1M API keys "
                             "(100k clients); seeding takes about a minute")
    parser.add_argument("--cases", default="*",
                        help="comma-separated globs of case names to measure (e.g. 'as.*')")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto",
                        help="auto: wrk if installed (installing it with apt-get when root), "
                             "else Python")
    parser.add_argument("--no-install", action="store_true",
                        help="never apt-get install wrk")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--profile", metavar="GLOB", default=None,
                        help="after the rounds, profile matching cases' workers with py-spy")
    parser.add_argument("--markdown", action="store_true",
                        help="rewrite the results section of docs/benchmarks.md")
    parser.add_argument("--authserver-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the authorization servers (repeatable)")
    parser.add_argument("--variant", action="append", default=[],
                        metavar="NAME:SETTING=VALUE[,SETTING=VALUE]",
                        help="also measure the default algorithm's token and introspection "
                             "cases on instances with these AUTHSERVER_* settings (cases "
                             "named <case>+NAME), interleaved with the rest: a lever switched "
                             "on or off, measured in the same rounds (repeatable)")
    parser.add_argument("--merge", nargs="+", metavar="RESULT_JSON",
                        help="measure nothing: pool the rounds of earlier runs' JSON files, "
                             "print (and with --markdown record) their medians")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder (instance folders, server logs)")
    return parser.parse_args(argv)


def probe(case: Case) -> None:
    """One request checked for the right answer: a case measuring errors is no case."""
    status, body = send(case.server, case.probe_request())
    problem = case.check(status, body)
    if problem:
        raise BenchError(f"{case.name}: {problem}\n{case.server.log_tail(15)}")


#: Requests per second assumed for a DPoP case before its first measurement (sizes its proofs).
DEFAULT_PROOF_RPS = 1500


def with_proofs(case: Case, seconds: float):
    """The case's request; for a DPoP case with a file of fresh proofs, enough for ``seconds``
    at half again the last measured rate (a shortfall shows as replays refused, non-2xx)."""
    if case.proofs is None:
        return case.request
    count = int((case.last_rps or DEFAULT_PROOF_RPS) * (seconds + 1) * 1.5) + 200
    return dataclasses.replace(case.request, proofs=case.proofs.refill(count))


def measure(load, case: Case, args) -> dict:
    """Warm up, then measure one interval of ``case``."""
    if args.warmup > 0:
        warm = load.run(case.server.base_url, with_proofs(case, args.warmup), args.warmup,
                        args.connections)
        case.last_rps = max(case.last_rps, warm.rps)
    request = with_proofs(case, args.duration)
    database, redis = case.server.database, case.server.redis
    db_before = database.backend_cpu_seconds() if database else 0.0
    redis_before = redis.cpu_seconds() if redis else 0.0
    server_before, load_before, machine_before = (
        case.server.cpu_seconds(), _children_cpu(), _machine_cpu())
    result = load.run(case.server.base_url, request, args.duration,
                      args.connections).as_dict()
    case.last_rps = max(case.last_rps, result["rps"])
    server = case.server.cpu_seconds() - server_before
    loader = _children_cpu() - load_before
    busy, elapsed = (a - b for a, b in zip(_machine_cpu(), machine_before))
    db = database.backend_cpu_seconds() - db_before if database else 0.0
    kv = redis.cpu_seconds() - redis_before if redis else 0.0
    requests = result["requests"] or 1
    # CPU per request: what a request costs, whatever share of the machine we got.
    result["cpu_us"] = 1e6 * server / requests
    result["db_cpu_us"] = 1e6 * db / requests
    result["redis_cpu_us"] = 1e6 * kv / requests
    result["loadgen_cpu_us"] = 1e6 * loader / requests
    # Cores busy with anything but this server, its stores and the load generator.
    result["other_cores"] = (max(0.0, (busy - server - loader - db - kv) / elapsed)
                             if elapsed else 0.0)
    return result


def _children_cpu() -> float:
    """CPU seconds of our finished child processes (the load generator runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _machine_cpu() -> tuple[float, float]:
    """(busy CPU seconds of all cores, wall seconds) from /proc/stat and the clock."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    busy = sum(fields[:8]) - idle  # guest time is already inside user
    return busy / os.sysconf("SC_CLK_TCK"), time.monotonic()


def profile_case(load, case: Case, args, out_dir: Path) -> Path:
    """One extra interval under py-spy; the summary's path."""
    raw = out_dir / f"profile-{case.name}.txt"
    sampler = profiling.start(case.server.process.pid, raw, args.duration)
    load.run(case.server.base_url, with_proofs(case, args.duration), args.duration,
             args.connections)
    _, stderr = sampler.communicate(timeout=args.duration + 60)
    if not raw.exists():
        raise BenchError(f"py-spy wrote no profile: {stderr.decode(errors='replace')[-500:]}")
    summary = out_dir / f"profile-{case.name}.summary.txt"
    summary.write_text(profiling.summarise(raw, ROOT) + "\n", encoding="utf-8")
    return summary


def parse_variants(values: list[str]) -> dict[str, dict]:
    """``NAME:SETTING=VALUE,...`` -> {NAME: {"AUTHSERVER_SETTING": VALUE}}."""
    variants = {}
    for value in values:
        name, _, settings = value.partition(":")
        pairs = [item.split("=", 1) for item in settings.split(",") if item]
        if not name.isidentifier() or not pairs or any(len(pair) != 2 for pair in pairs):
            raise BenchError(f"--variant {value!r}: expected NAME:SETTING=VALUE[,...]")
        variants[name] = {f"AUTHSERVER_{key.removeprefix('AUTHSERVER_')}": val
                          for key, val in pairs}
    return variants


def selected(cases: list[Case], patterns: str) -> list[Case]:
    """Cases matching the globs, plus the references their ratios need."""
    globs = [p.strip() for p in patterns.split(",") if p.strip()]
    wanted = {c.name for c in cases if any(fnmatch.fnmatch(c.name, g) for g in globs)}
    for _ in range(2):  # references of references (a guard case needs its baseline's)
        wanted |= {ref for c in cases if c.name in wanted for ref in (c.reference, c.limit)
                   if ref}
    return [c for c in cases if c.name in wanted]


def run(args: argparse.Namespace) -> int:
    load = loadgen.choose(args.loadgen, args.wrk_threads, install=not args.no_install)
    if args.profile and not profiling.py_spy():
        raise BenchError("--profile needs py-spy: pip install py-spy")
    extra_env = dict(item.split("=", 1) for item in args.authserver_env)
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    info = report.machine()
    configurations = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = set(configurations) - set(CONFIGURATIONS)
    if unknown or not configurations:
        raise BenchError(f"--configs: choose from {', '.join(CONFIGURATIONS)}")
    tmp = Path(tempfile.mkdtemp(prefix="authserver-bench-"))
    env = Environment(tmp, extra_env)
    try:
        print(f"setting up in {tmp} ({', '.join(configurations)}) ...", flush=True)
        cases = env.main_cases(configurations, parse_variants(args.variant))
        if args.scale:
            print("seeding the scale databases ...", flush=True)
            cases += env.scale_cases()
        cases = selected(cases, args.cases)
        for case in cases:
            probe(case)
        runs: dict[str, list[dict]] = {case.name: [] for case in cases}
        per_round = len(cases) * (args.warmup + args.duration)
        print(f"{len(cases)} cases x {args.repeat} rounds, about "
              f"{per_round * args.repeat / 60:.1f} min, load: {load.name}", flush=True)
        for round_index in range(args.repeat):
            for case in cases:
                result = measure(load, case, args)
                result["round"] = round_index
                runs[case.name].append(result)
                print(f"  round {round_index + 1}  {case.name:<24} {result['rps']:8,.0f} req/s"
                      f"  p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms"
                      f"  cpu {result['cpu_us']:6.0f} us/req"
                      + (f" + db {result['db_cpu_us']:4.0f}" if case.server.database else "")
                      + (f" + redis {result['redis_cpu_us']:3.0f}" if case.server.redis else "")
                      + f" + load {result['loadgen_cpu_us']:4.0f}"
                      + f"  others {result['other_cores']:.1f} cores"
                      + (f"  non-2xx {result['non2xx']} (HTTP {result['bad_status']})"
                         if result["non2xx"] else "")
                      + (f"  errors {result['errors']}" if result["errors"] else ""),
                      flush=True)
        info["loadavg_end"] = os.getloadavg()[0]
        cases_out = report.summarise(
            {case.name: {"label": case.label, "reference": case.reference,
                         "limit": case.limit, "runs": runs[case.name]} for case in cases},
            info["nproc"])
        profiles = {}
        if args.profile:
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            for case in cases:
                if fnmatch.fnmatch(case.name, args.profile):
                    print(f"profiling {case.name} ...", flush=True)
                    profiles[case.name] = str(profile_case(load, case, args, RESULTS_DIR))
        loadgen_name = (f"wrk ({loadgen.wrk_version()}, {args.wrk_threads} thread)"
                        if load.name == "wrk" else "Python load generator (bench/loadgen.py)")
        result = {
            "started": started,
            "machine": info,
            "config": {"command": "python bench/run.py " + shlex.join(sys.argv[1:]),
                       "loadgen": loadgen_name, "connections": args.connections,
                       "duration": args.duration, "warmup": args.warmup,
                       "repeat": args.repeat, "configurations": configurations,
                       "scale": args.scale, "workers_per_server": 2,
                       "variants": parse_variants(args.variant)},
            "notes": env.notes,
            **cases_out,
            "profiles": profiles,
        }
    finally:
        env.close()
        if not args.keep:
            _remove_tree(tmp)
        else:
            print(f"kept {tmp}")
    finish(result, args, save=True)
    return 0


def finish(result: dict, args: argparse.Namespace, save: bool) -> None:
    """Print the table and the goals; save the JSON; update the docs if asked."""
    print()
    print(report.table(result["cases"], result["ratios"]))
    print()
    print("goals:")
    print(report.goals_text(result["goals"]))
    for name, path in result.get("profiles", {}).items():
        print(f"\nprofile of {name}: {path}")
    if save:
        path = report.save(RESULTS_DIR, result)
        print(f"\nresults: {path.relative_to(ROOT)}")
    if args.markdown:
        report.update_docs(DOCS, report.markdown(result))
        print(f"updated {DOCS.relative_to(ROOT)}")


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM ends the run like Ctrl-C: servers stopped, databases dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if args.merge:
            finish(report.merge([Path(name) for name in args.merge]), args, save=False)
            return 0
        return run(args)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
