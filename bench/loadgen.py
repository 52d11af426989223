"""Load generators: wrk (Debian package, preferred) or a small Python one (fallback).

Both keep ``connections`` connections busy for ``duration`` seconds (a closed loop: each
sends its next request when the previous answer arrived, reconnecting when the server
closed the connection, as gunicorn's sync workers do after every answer) and report
requests per second, latency percentiles and how many answers were not 2xx.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_case.lua"


@dataclass(frozen=True)
class Request:
    """What every request of a case looks like; with ``proofs`` (a file of DPoP proofs, one a
    line) each request also sends the next unused line as its ``DPoP`` header."""

    method: str
    path: str
    headers: dict = field(default_factory=dict)
    body: str = ""
    proofs: str = ""


def read_proofs(request: Request) -> list[str]:
    """The request's DPoP proofs, in order (none without a proof file)."""
    if not request.proofs:
        return []
    return Path(request.proofs).read_text(encoding="ascii").split()


@dataclass
class Result:
    """One measured interval of one case."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    non2xx: int
    errors: int
    bad_status: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def wrk_path() -> str | None:
    """The wrk binary, if installed."""
    return shutil.which("wrk")


def install_wrk() -> bool:
    """``apt-get install -y wrk`` (root on Debian only); True when wrk is then available."""
    if wrk_path():
        return True
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    print("wrk is missing: apt-get update && apt-get install -y wrk", flush=True)
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        if subprocess.run(command, stdout=subprocess.DEVNULL, timeout=600).returncode != 0:
            return False
    return wrk_path() is not None


def wrk_version() -> str:
    """wrk's version line (it prints it with the usage text)."""
    done = subprocess.run([wrk_path() or "wrk", "--version"], capture_output=True, text=True)
    return (done.stdout or done.stderr).splitlines()[0].split("[")[0].strip()


class WrkLoad:
    """Runs wrk with ``bench/wrk_case.lua``; ``threads`` wrk threads share the connections."""

    name = "wrk"

    def __init__(self, threads: int = 1):
        self.threads = threads

    def run(self, base_url: str, request: Request, duration: float, connections: int) -> Result:
        with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
            out = Path(tmp) / "result.json"
            env = dict(os.environ, BENCH_METHOD=request.method, BENCH_BODY=request.body,
                       BENCH_OUT=str(out), BENCH_PROOFS=request.proofs,
                       BENCH_HEADERS="\n".join(f"{k}: {v}" for k, v in request.headers.items()))
            command = [wrk_path() or "wrk", "-t", str(min(self.threads, connections)),
                       "-c", str(connections), "-d", f"{max(1, round(duration))}s",
                       "--timeout", "5s", "-s", str(WRK_SCRIPT), base_url + request.path]
            done = subprocess.run(command, env=env, capture_output=True, text=True,
                                  timeout=duration + 60)
            if done.returncode != 0 or not out.exists():
                raise RuntimeError(f"wrk failed: {done.stderr.strip() or done.stdout.strip()}")
            data = json.loads(out.read_text())
        seconds = data["duration_us"] / 1e6
        latency = data["latency_us"]
        errors = data["errors"]
        return Result(requests=data["requests"], seconds=seconds,
                      rps=data["requests"] / seconds if seconds else 0.0,
                      p50_ms=latency["p50"] / 1000, p90_ms=latency["p90"] / 1000,
                      p99_ms=latency["p99"] / 1000, mean_ms=latency["mean"] / 1000,
                      max_ms=latency["max"] / 1000, non2xx=data["non2xx"],
                      errors=errors["connect"] + errors["read"] + errors["write"]
                      + errors["timeout"], bad_status=data["bad_status"])


def _python_process(args) -> dict:
    """One load process: ``threads`` keep-alive connections until ``deadline``; each request
    takes the next of ``proofs`` when there are any."""
    host, port, request, threads, deadline, proofs = args
    latencies: list[list[float]] = [[] for _ in range(threads)]
    bad = [0] * threads
    errors = [0] * threads
    bad_status = [0] * threads
    body = request.body.encode() if request.body else None
    unused = iter(proofs)
    lock = threading.Lock()

    def headers() -> dict:
        if not proofs:
            return request.headers
        with lock:
            proof = next(unused, proofs[-1])  # past the end: a replay, counted as non-2xx
        return {**request.headers, "DPoP": proof}

    def loop(index: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=5)
        while time.monotonic() < deadline:
            sent = headers()
            started = time.perf_counter()
            try:
                connection.request(request.method, request.path, body=body, headers=sent)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                errors[index] += 1
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=5)
                continue
            latencies[index].append(time.perf_counter() - started)
            if not 200 <= response.status < 300:
                bad[index] += 1
                bad_status[index] = response.status
        connection.close()

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return {"latencies": [x for chunk in latencies for x in chunk], "non2xx": sum(bad),
            "errors": sum(errors), "bad_status": max(bad_status)}


class PythonLoad:
    """Fallback generator: ``processes`` processes of threads with http.client connections.

    It competes with the servers for CPU far more than wrk does: its figures are lower
    bounds, and ratios between cases are what to read.
    """

    name = "python"

    def __init__(self, processes: int = 2):
        self.processes = processes

    def run(self, base_url: str, request: Request, duration: float, connections: int) -> Result:
        host, port = base_url.removeprefix("http://").rsplit(":", 1)
        processes = max(1, min(self.processes, connections))
        shares = [connections // processes + (i < connections % processes)
                  for i in range(processes)]
        started = time.monotonic()
        deadline = started + duration
        proofs = read_proofs(request)
        context = multiprocessing.get_context("spawn")
        with context.Pool(processes) as pool:
            parts = pool.map(_python_process,
                             [(host, int(port), request, share, deadline, proofs[i::processes])
                              for i, share in enumerate(shares)])
        seconds = time.monotonic() - started
        latencies = sorted(x for part in parts for x in part["latencies"])
        if not latencies:
            latencies = [0.0]

        def percentile(q: float) -> float:
            return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

        count = sum(len(part["latencies"]) for part in parts)
        return Result(requests=count, seconds=seconds, rps=count / seconds,
                      p50_ms=percentile(0.50), p90_ms=percentile(0.90), p99_ms=percentile(0.99),
                      mean_ms=statistics.fmean(latencies) * 1000, max_ms=latencies[-1] * 1000,
                      non2xx=sum(part["non2xx"] for part in parts),
                      errors=sum(part["errors"] for part in parts),
                      bad_status=max(part["bad_status"] for part in parts))


def choose(kind: str, wrk_threads: int, install: bool):
    """The generator for ``--loadgen`` (auto: wrk, installing it if allowed, else Python)."""
    if kind in ("auto", "wrk"):
        if wrk_path() or (install and install_wrk()):
            return WrkLoad(wrk_threads)
        if kind == "wrk":
            raise SystemExit("wrk is not installed (apt-get install -y wrk) and could not be")
        print("wrk unavailable: falling back to the Python load generator", flush=True)
    return PythonLoad()
