"""The benchmark's own arithmetic and its ceiling app (bench/): a wrong ratio or a ceiling
that does more than nothing would make every figure of docs/benchmarks.md wrong."""

from __future__ import annotations

import inspect

import jwt
import pytest

from bench import ceiling, report
from bench.cases import Case
from bench.loadgen import Request
from bench.run import selected


def _run(round_index: int, cpu: float, loadgen: float, rps: float, db: float = 0.0,
         redis: float = 0.0) -> dict:
    return {"round": round_index, "cpu_us": cpu, "loadgen_cpu_us": loadgen, "db_cpu_us": db,
            "redis_cpu_us": redis, "rps": rps, "p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 2.0,
            "mean_ms": 1.0, "other_cores": 0.0, "non2xx": 0, "errors": 0}


def test_cpu_ratio_is_the_median_of_same_round_ratios_of_all_cpu():
    """Server, database, Redis and load generator all count; rounds pair with rounds."""
    cases = {
        "ceiling": {"label": "", "reference": None, "runs": [
            _run(0, 300, 100, 1000), _run(1, 600, 200, 500), _run(2, 300, 100, 900)]},
        "case": {"label": "", "reference": "ceiling", "runs": [
            _run(0, 1000, 200, 300, db=400, redis=0), _run(1, 3000, 200, 100),
            _run(2, 1200, 200, 300, db=0, redis=200)]},
    }
    result = report.summarise(cases, cores=2)
    # Per round: 400/1600 = 0.25, 800/3200 = 0.25, 400/1600 = 0.25.
    assert result["ratios"]["case"]["cpu_ratio"] == pytest.approx(0.25)
    assert result["ratios"]["case"]["rps_ratio"] == pytest.approx(0.3)
    assert cases["case"]["median"]["cost_us"] == 1600


def test_goal_compares_with_its_own_reference():
    """A production case is held against the SQLite case, not against the ceiling."""
    runs = [_run(0, 1000, 0, 100)]
    cases = {"ceiling": {"reference": None, "runs": [_run(0, 250, 0, 400)]},
             "as.token.es256": {"reference": "ceiling", "runs": runs},
             "prod.token.es256": {"reference": "ceiling", "runs": [_run(0, 1250, 0, 80)]}}
    goals = {g["goal"]: g for g in report.summarise(cases, cores=2)["goals"]}
    assert goals["token es256 CPU ratio >= 0.45"]["value"] == 0.25
    assert goals["token es256 CPU ratio >= 0.45"]["met"] is False
    within = goals["production token.es256: within 15 % of SQLite (CPU)"]
    assert within["value"] == 0.8 and within["met"] is False


def test_selected_cases_bring_their_references_and_limits():
    def case(name, reference=None, limit=None):
        return Case(name, name, None, Request("GET", "/"), lambda s, b: None, reference, limit)

    cases = [case("ceiling"), case("limit.es256", "ceiling"),
             case("as.token.es256", "ceiling", "limit.es256"), case("demo.healthz"),
             case("demo.send.unguarded", "demo.healthz"),
             case("demo.send.jwt", "demo.send.unguarded")]
    assert [c.name for c in selected(cases, "as.token.*")] == [
        "ceiling", "limit.es256", "as.token.es256"]
    assert [c.name for c in selected(cases, "demo.send.jwt")] == [
        "demo.healthz", "demo.send.unguarded", "demo.send.jwt"]


def test_ceiling_does_nothing_and_limits_sign_once():
    app = ceiling.create_app()
    client = app.test_client()
    assert client.post("/ceiling", data={"grant_type": "client_credentials"}).get_json() == {
        "status": "ok"}
    for alg in ceiling.ALGORITHMS:
        token = client.post(f"/limit/{alg}").get_json()["access_token"]
        header = jwt.get_unverified_header(token)
        assert (header["alg"], header["typ"]) == (alg, "at+jwt")


def test_ceiling_is_served_by_the_function_authserver_serve_uses():
    """Same server, worker class and count: both go through authserver.web.serving.run."""
    from authserver.admin import cli

    assert ceiling.run.__module__ == "authserver.web.serving"
    assert "run(" in inspect.getsource(cli.serve_command.callback)


def test_guard_ratio_is_against_the_unguarded_endpoint_sent_the_same_bytes():
    """bench/guard_frameworks.py: a guarded case's ratio uses the unguarded endpoint given the
    same credential header, round by round; the headerless ratio is reported beside it."""
    from bench import guard_frameworks

    def sample(cpu: float, rps: float = 1000.0) -> dict:
        return {"rps": rps, "p50_ms": 1.0, "p99_ms": 2.0, "cpu_us_per_request": cpu, "non2xx": 0}

    samples = {}
    for framework in guard_frameworks.FRAMEWORKS:
        samples.update({
            f"{framework}.unguarded": [sample(200), sample(400)],
            f"{framework}.unguarded+jwt": [sample(300), sample(300)],
            f"{framework}.jwt": [sample(400), sample(600)],
            f"{framework}.unguarded+apikey": [sample(250), sample(500)],
            f"{framework}.apikey": [sample(500), sample(500)],
        })
    rows, lines = guard_frameworks.summary({"samples": samples})
    by_case = {row["case"]: row for row in rows}
    # Same round against same round: 300/400 and 300/600 -> median 0.625.
    assert by_case["flask.jwt"]["cpu_ratio"] == pytest.approx(0.625)
    assert by_case["flask.jwt"]["cpu_ratio_headerless"] == pytest.approx(0.5833, abs=1e-3)
    assert by_case["fastapi.apikey"]["cpu_ratio"] == pytest.approx(0.75)
    assert "ratio" not in by_case["flask.unguarded+jwt"]
    assert [row["case"] for row in rows][:5] == [f"flask.{kind}" for kind in guard_frameworks.ORDER]
    assert len(lines) == 4 and all("NOT met" in line for line in lines)
