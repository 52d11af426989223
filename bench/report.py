"""Medians, ratios and goals of a run; the printed table, the JSON file, the docs table.

Each round measures every case once; a case's figures are the medians over rounds, and
a ratio is the median of the per-round ratios (both cases measured minutes apart at most,
so slow drift in the machine's load cancels out).

The ratio to trust is the **CPU ratio**: the CPU a request of the reference costs (server,
its database and Redis, and the load generator) divided by what a request of the case
costs. It is what the same code would give with the machine to itself, and it moves far
less between rounds on a shared machine than req/s does.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

MARK_BEGIN = "<!-- bench:results:begin -->"
MARK_END = "<!-- bench:results:end -->"


@dataclass(frozen=True)
class Goal:
    """``case``'s ``metric`` compared with ``limit``.

    Metrics: ``cpu_ratio`` (reference cost / case cost; ``reference`` defaults to the
    case's own), ``rps_ratio`` (case req/s / reference req/s), ``p99_ms``, ``rps``.
    """

    text: str
    case: str
    metric: str
    op: str  # ">=" or "<="
    limit: float
    reference: str | None = None


TOKEN_GOALS = {"es256": 0.45, "eddsa": 0.5, "rs256": 0.28}
GOALS = [
    *(Goal(f"token {alg} CPU ratio >= {limit}", f"as.token.{alg}", "cpu_ratio", ">=", limit)
      for alg, limit in TOKEN_GOALS.items()),
    *(Goal(f"introspection ({what}) CPU ratio >= 0.45", f"as.introspect.{kind}", "cpu_ratio",
           ">=", 0.45) for what, kind in (("JWT", "jwt"), ("API key", "apikey"))),
    *(Goal(f"production {case}: within 15 % of SQLite (CPU)", f"prod.{case}", "cpu_ratio",
           ">=", 0.85, f"as.{case}")
      for case in ("token.rs256", "token.es256", "token.eddsa", "introspect.jwt",
                   "introspect.apikey")),
    *(Goal(f"{prefix}.{case} p99 <= 15 ms", f"{prefix}.{case}", "p99_ms", "<=", 15)
      for prefix in ("as", "prod")
      for case in ("token.rs256", "token.es256", "token.eddsa", "introspect.jwt",
                   "introspect.apikey")),
    *(Goal(f"guard ({name}), {what}: protected / unprotected CPU >= 0.85",
           f"guard.{framework}.{kind}", "cpu_ratio", ">=", 0.85)
      for framework, name in (("flask", "Flask"), ("fastapi", "FastAPI"))
      for kind, what in (("jwt", "JWT"), ("apikey", "cached API key"))),
    *(g for what, case in (("token", "token.rs256"), ("introspection (JWT)", "introspect.jwt"),
                           ("introspection (API key)", "introspect.apikey"))
      for g in (Goal(f"{what} req/s with 1M keys within 10 % of 1k", f"pg1m.{case}",
                     "rps_ratio", ">=", 0.9, f"pg1k.{case}"),
                Goal(f"{what} CPU with 1M keys within 10 % of 1k", f"pg1m.{case}",
                     "cpu_ratio", ">=", 0.9, f"pg1k.{case}"))),
]


def machine() -> dict:
    """What the figures were measured on."""
    model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        memory = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout
        memory = " ".join(memory.splitlines()[1].split()[1:2]) + " total"
    except (OSError, IndexError):
        memory = "?"
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": model, "memory": memory,
            "python": platform.python_version(), "kernel": platform.release(),
            "loadavg_start": os.getloadavg()[0]}


def store_cpu(run: dict) -> float:
    """Database and Redis CPU per request (µs)."""
    return run.get("db_cpu_us", 0.0) + run.get("redis_cpu_us", 0.0)


def cost(run: dict) -> float:
    """CPU per request (µs) of everything the request needs: server, database, Redis and
    the load generator."""
    return run["cpu_us"] + store_cpu(run) + run.get("loadgen_cpu_us", 0.0)


def cpu_bound_rps(run: dict, cores: int) -> float:
    """Req/s if server, stores and load generator had all ``cores`` to themselves."""
    spent = cost(run)
    return cores * 1e6 / spent if spent else 0.0


def median_result(runs: list[dict], cores: int) -> dict:
    """Per-metric medians over rounds; non-2xx and errors are summed."""
    keys = ("rps", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "cpu_us", "db_cpu_us",
            "redis_cpu_us", "loadgen_cpu_us", "other_cores")
    summary = {key: statistics.median(run.get(key, 0.0) for run in runs) for key in keys}
    summary["cost_us"] = statistics.median(cost(run) for run in runs)
    summary["cpu_bound_rps"] = statistics.median(cpu_bound_rps(run, cores) for run in runs)
    summary["non2xx"] = sum(run["non2xx"] for run in runs)
    summary["errors"] = sum(run["errors"] for run in runs)
    summary["rounds"] = len(runs)
    return summary


def same_round(runs: list[dict], reference: list[dict]) -> list[tuple[dict, dict]]:
    """Pairs of measurements of two cases taken in the same round of the same run."""
    def tag(index: int, run: dict) -> tuple:
        return run.get("source", ""), run.get("round", index)

    by_tag = {tag(i, run): run for i, run in enumerate(reference)}
    return [(run, by_tag[tag(i, run)]) for i, run in enumerate(runs) if tag(i, run) in by_tag]


def paired(cases: dict, name: str, reference: str | None, metric: str) -> float | None:
    """Median over rounds of ``metric`` between ``name`` and ``reference`` (same round)."""
    if not reference or name not in cases or reference not in cases:
        return None
    pairs = same_round(cases[name]["runs"], cases[reference]["runs"])
    if metric == "cpu_ratio":
        values = [cost(b) / cost(a) for a, b in pairs if cost(a)]
    else:  # rps_ratio
        values = [a["rps"] / b["rps"] for a, b in pairs if b["rps"]]
    return statistics.median(values) if values else None


def ratios(cases: dict) -> dict:
    """Each case with a reference: CPU ratio and req/s ratio to it, and (token cases) the
    share of its algorithm's limit reached (CPU ratio to the limit case)."""
    out = {}
    for name, case in cases.items():
        entry = {}
        for metric in ("cpu_ratio", "rps_ratio"):
            value = paired(cases, name, case.get("reference"), metric)
            if value is not None:
                entry[metric] = value
        of_limit = paired(cases, name, case.get("limit"), "cpu_ratio")
        if of_limit is not None:
            entry["of_limit"] = of_limit
        if entry:
            out[name] = entry
    return out


def goal_results(cases: dict, ratio: dict) -> list[dict]:
    """Every goal whose cases were measured: value, limit, met."""
    results = []
    for goal in GOALS:
        if goal.case not in cases:
            continue
        if goal.metric in ("cpu_ratio", "rps_ratio"):
            value = paired(cases, goal.case, goal.reference or cases[goal.case]["reference"],
                           goal.metric)
            if value is None:
                continue
        else:
            value = cases[goal.case]["median"][goal.metric]
        met = value >= goal.limit if goal.op == ">=" else value <= goal.limit
        digits = {"rps": 0, "p99_ms": 1}.get(goal.metric, 2)
        results.append({"goal": goal.text, "case": goal.case, "value": round(value, digits),
                        "limit": goal.limit, "met": met})
    return results


def summarise(cases: dict, cores: int) -> dict:
    """Medians per case, ratios and goals from cases holding their ``runs``."""
    for case in cases.values():
        case["median"] = median_result(case["runs"], cores)
    ratio = ratios(cases)
    return {"cases": cases, "ratios": ratio, "goals": goal_results(cases, ratio)}


def merge(paths: list[Path]) -> dict:
    """Several runs' JSON files as one run: every case's rounds pooled, medians recomputed."""
    reports = [json.loads(path.read_text(encoding="utf-8")) for path in paths]
    cases: dict = {}
    for one in reports:
        for name, case in one["cases"].items():
            pooled = cases.setdefault(name, {"label": case["label"],
                                             "reference": case["reference"],
                                             "limit": case.get("limit"), "runs": []})
            pooled["runs"].extend(dict(run, source=one["started"]) for run in case["runs"])
    first, last = reports[0], reports[-1]
    machine_info = dict(first["machine"], loadavg_end=last["machine"].get("loadavg_end", 0.0))
    config = dict(first["config"], repeat=sum(r["config"]["repeat"] for r in reports),
                  command=" ; ".join(r["config"]["command"] for r in reports),
                  merged=[path.name for path in paths])
    notes = {}
    for one in reports:
        notes.update(one.get("notes", {}))
    return {"started": first["started"], "machine": machine_info, "config": config,
            "notes": notes, **summarise(cases, machine_info["nproc"]), "profiles": {}}


def _row(name: str, cases: dict, ratio: dict) -> list[str]:
    case = cases[name]
    m = case["median"]
    r = ratio.get(name, {})
    bad = m["non2xx"] + m["errors"]
    server = f"{m['cpu_us']:,.0f}"
    stores = [f"{m[key]:,.0f} {what}" for key, what in (("db_cpu_us", "db"),
                                                          ("redis_cpu_us", "redis")) if m[key]]
    if stores:
        server += " + " + " + ".join(stores)
    cpu_ratio = f"{r['cpu_ratio']:.2f}" if "cpu_ratio" in r else ""
    rps_ratio = f"{r['rps_ratio']:.2f}" if "rps_ratio" in r else ""
    of_limit = f"{r['of_limit']:.2f}" if "of_limit" in r else ""
    return [name, f"{m['rps']:,.0f}", f"{m['p50_ms']:.1f}", f"{m['p99_ms']:.1f}",
            f"{bad:,}", server, f"{m['loadgen_cpu_us']:,.0f}", f"{m['cost_us']:,.0f}",
            cpu_ratio, of_limit, rps_ratio, case["reference"] or ""]


HEADER = ["case", "req/s", "p50 ms", "p99 ms", "non-2xx", "server CPU us/req",
          "loadgen us/req", "total us/req", "CPU ratio", "of limit", "req/s ratio", "to"]
LEFT = {0, len(HEADER) - 1}


def table(cases: dict, ratio: dict) -> str:
    """A plain-text table of the medians."""
    rows = [HEADER] + [_row(name, cases, ratio) for name in cases]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(w) if i in LEFT else cell.rjust(w)
                 for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def goals_text(goals: list[dict]) -> str:
    """One line per goal: met or MISS, and the measured value."""
    return "\n".join(f"  [{'met ' if g['met'] else 'MISS'}] {g['goal']}: {g['value']:,}"
                     for g in goals)


def markdown(report: dict) -> str:
    """The generated section of docs/benchmarks.md."""
    m, c = report["machine"], report["config"]
    others = sorted(run.get("other_cores", 0.0) for case in report["cases"].values()
                    for run in case["runs"]) or [0.0]
    versions = "".join(f"; {name} {report['notes'][key]}" for key, name in
                       (("postgresql", "PostgreSQL"), ("redis", "Redis"))
                       if key in report["notes"])
    lines = [
        (f"Runs from {report['started']} UTC, merged ({len(c['merged'])} runs): `{c['command']}`"
         if len(c.get("merged", [])) > 1 else f"Run of {report['started']} UTC: `{c['command']}`"),
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, Python {m['python']}, "
        f"Linux {m['kernel']}; load average {m['loadavg_start']:.2f} at the start, "
        f"{m.get('loadavg_end', 0):.2f} at the end. Other processes kept a median of "
        f"{others[len(others) // 2]:.1f} cores busy during the measured intervals "
        f"(from {others[0]:.1f} to {others[-1]:.1f}).",
        f"Load: {c['loadgen']}, {c['connections']} connections, {c['duration']} s per case "
        f"after {c['warmup']} s warm-up, {c['repeat']} interleaved rounds in all; "
        f"medians over rounds. Configurations: {', '.join(c.get('configurations', []))}"
        f"{versions}.",
        "",
        "| case | what | req/s | p50 ms | p99 ms | non-2xx | server CPU µs/req | "
        "load gen. µs/req | total µs/req | CPU ratio | of limit | req/s ratio | to |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, case in report["cases"].items():
        row = _row(name, report["cases"], report["ratios"])
        row[-1] = f"`{row[-1]}`" if row[-1] else ""
        lines.append(f"| `{name}` | {case['label']} | " + " | ".join(row[1:]) + " |")
    lines += ["", "| goal | value | met |", "| --- | ---: | --- |"]
    for goal in report["goals"]:
        lines.append(f"| {goal['goal']} | {goal['value']:,} | "
                     f"{'yes' if goal['met'] else '**no**'} |")
    return "\n".join(lines)


def update_docs(path: Path, section: str) -> None:
    """Replace the text between the result markers of ``path`` (append them if missing)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{MARK_BEGIN}\n{section}\n{MARK_END}"
    pattern = re.compile(re.escape(MARK_BEGIN) + ".*?" + re.escape(MARK_END), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def save(results_dir: Path, report: dict) -> Path:
    """Write the run's JSON into ``results_dir``; its path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / time.strftime("bench-%Y%m%dT%H%M%SZ.json", time.gmtime())
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path
