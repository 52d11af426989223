"""pytest plugin: ``docs/security.md``, the security and reliability report, from a test run.

Enable it with ``AUTHSERVER_SECURITY_REPORT=docs/security.md`` (relative to the project root)
and load it: ``pytest_plugins = ["report_plugin"]`` in tests/conftest.py, or
``PYTHONPATH=tests pytest -p report_plugin``. Without the variable it only registers the
``security`` marker. It works in one process and under pytest-xdist (each worker sends its
tests' cases and answer counts with their reports; the controller writes the file), so
``AUTHSERVER_SECURITY_REPORT=docs/security.md bash .ci/run`` regenerates the report.

A *case* is a test whose name holds a threat-model id (``test_RL1_database_down_gives_503``),
a row of a parametrized table whose id holds one (``[SC01-first]``), or a test marked
``@pytest.mark.security("TE03", expected="400 invalid_request")``. A test may add details
through ``request.node.user_properties``: ``input``, ``expected``, ``observed`` (text),
``backend``, ``cases`` (examples a property tried) and ``data_lost`` (acknowledged writes
missing after a crash, RL6).

5xx answers are counted where tests receive HTTP answers, in the process running the test:
Werkzeug's test client (``Client.open``, which Flask's test client uses) and
``requests.Session.send`` (every ``requests`` call). A 503 with ``Retry-After`` is counted
apart: it is the documented answer to an outage (RL1).
"""

from __future__ import annotations

import os
import platform
import re
import threading
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

ENV_VAR = "AUTHSERVER_SECURITY_REPORT"
THREAT_MODEL = "docs/threat-model.md"  # requirement ids and texts, relative to the root
ID_PREFIXES = "TE|AT|RS|SC|IN|RV|PK|JW|AK|AD|UI|AC|DP|AV|AU|RL"  # the threat model's sections
ID_RE = re.compile(rf"(?<![A-Za-z])(?:{ID_PREFIXES})\d{{1,2}}(?!\d)")
REQUIREMENT_RE = re.compile(rf"^(?:- )?((?:{ID_PREFIXES})\d{{1,2}}) (.+)$")
BACKENDS = ("sqlite", "postgresql")
PROPERTY_KEYS = ("input", "expected", "observed", "backend", "cases", "data_lost")
RANK = ["not run", "passed", "skipped", "xfailed", "xpassed", "failed", "error"]
_KEY = pytest.StashKey["SecurityReport"]()
CASE_PROPERTY = "security-report"  # a teardown report's user property: case and counts


@dataclass
class Case:
    """One test item: what it covers and what happened."""

    nodeid: str
    ids: list[str]
    function: str
    variant: str
    backend: str
    doc: str
    marker_expected: str | None = None
    marker_input: str | None = None
    outcome: str = "not run"
    reason: str = ""
    properties: dict = field(default_factory=dict)
    answers: int = 0
    outage_503: int = 0
    other_5xx: int = 0


class SecurityReport:
    """Collects cases and HTTP answers during the run; writes the Markdown at the end."""

    def __init__(self, config: pytest.Config, path: Path, *, runs_tests: bool, writes: bool):
        self.config = config
        self.path = path
        self.runs_tests = runs_tests  # this process runs tests (serial, or an xdist worker)
        self.writes = writes  # this process receives every report (serial, or the controller)
        self.cases: dict[str, Case] = {}
        self.counts: Counter = Counter()  # answers received since the current test began
        self.lock = threading.Lock()
        self.answers = 0
        self.outage_503 = 0
        self.other_5xx = 0
        self.errors_by_test: Counter = Counter()
        self.outcomes: dict[str, str] = {}  # every test of the run, with or without an ID
        self.reasons: dict[str, str] = {}  # why it was skipped or marked xfail
        self.properties: dict[str, dict] = {}  # what each test left in user_properties
        self._restore: list = []

    # --- HTTP answers -------------------------------------------------------------------

    def saw(self, status: int, retry_after: str | None) -> None:
        """Count one HTTP answer received by a test (any thread); an answer that arrives
        between tests counts for the next one."""
        with self.lock:
            self.counts["answers"] += 1
            if status < 500:
                return
            self.counts["outage" if status == 503 and retry_after else "other"] += 1

    def install(self) -> None:
        """Wrap the two HTTP clients tests use."""
        import requests
        import werkzeug.test

        report = self
        client_open = werkzeug.test.Client.open
        session_send = requests.Session.send

        def open_(self, *args, **kwargs):
            response = client_open(self, *args, **kwargs)
            report.saw(response.status_code, response.headers.get("Retry-After"))
            return response

        def send(self, request, **kwargs):
            response = session_send(self, request, **kwargs)
            report.saw(response.status_code, response.headers.get("Retry-After"))
            return response

        werkzeug.test.Client.open = open_
        requests.Session.send = send
        self._restore = [(werkzeug.test.Client, "open", client_open),
                         (requests.Session, "send", session_send)]

    def uninstall(self) -> None:
        for owner, name, original in self._restore:
            setattr(owner, name, original)

    # --- pytest hooks -------------------------------------------------------------------
    # Where the tests run (one process, or each pytest-xdist worker) every test's case and the
    # answers it received travel in its teardown report's user_properties; where the reports
    # arrive (one process, or the xdist controller) they are gathered and the file written.
    # One path for both: the controller sees exactly what a single process would.

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        if not self.runs_tests:
            yield
            return
        with self.lock:
            self.counts = Counter()
        yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        if not self.runs_tests or call.when != "teardown":
            return
        case = make_case(item)
        with self.lock:
            counts = dict(self.counts)
            self.counts = Counter()
        outcome.get_result().user_properties.append(
            (CASE_PROPERTY, {"case": asdict(case) if case else None, **counts}))

    def pytest_runtest_logreport(self, report):
        if not self.writes:
            return
        outcome = _outcome(report)
        # The worst phase wins: a teardown error after a pass is an error.
        if outcome is not None and RANK.index(outcome[0]) > \
                RANK.index(self.outcomes.get(report.nodeid, "not run")):
            self.outcomes[report.nodeid], self.reasons[report.nodeid] = outcome
        properties = self.properties.setdefault(report.nodeid, {})
        for name, value in report.user_properties:
            if name == CASE_PROPERTY:
                self.gather(report.nodeid, value)
            elif name in PROPERTY_KEYS:
                properties[name] = value

    def gather(self, nodeid: str, sent: dict) -> None:
        """One test's case and answer counts, from the process that ran it."""
        answers, outage, other = (sent.get(key, 0) for key in ("answers", "outage", "other"))
        self.answers += answers
        self.outage_503 += outage
        self.other_5xx += other
        if other:
            self.errors_by_test[nodeid] += other
        if sent.get("case") is not None:
            case = self.cases.setdefault(nodeid, Case(**sent["case"]))
            case.answers, case.outage_503, case.other_5xx = answers, outage, other

    def pytest_sessionfinish(self, session):
        if not self.writes:
            return
        for nodeid, case in self.cases.items():
            case.outcome = self.outcomes.get(nodeid, "not run")
            case.reason = self.reasons.get(nodeid, "")
            case.properties = self.properties.get(nodeid, {})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(render(self, requirements(self.config)), encoding="utf-8")

    def pytest_terminal_summary(self, terminalreporter):
        if self.writes:
            terminalreporter.write_line(f"security report written to {self.path}")


def _outcome(report) -> tuple[str, str] | None:
    """(outcome, reason) of one phase report, or None for a phase that says nothing."""
    if hasattr(report, "wasxfail"):
        if report.skipped:
            return "xfailed", str(report.wasxfail)
        if report.passed:
            return "xpassed", str(report.wasxfail)
    if report.failed:
        return ("failed" if report.when == "call" else "error"), ""
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        return "skipped", str(reason)
    if report.when == "call" and report.passed:
        return "passed", ""
    return None


def make_case(item) -> Case | None:
    """A Case for ``item`` if it names an ID or carries the security marker."""
    function = getattr(item, "originalname", None) or item.name.split("[")[0]
    callspec = getattr(item, "callspec", None)
    # IDs in the function's name, and in a table row's parameter id ("SC01-first").
    ids = list(dict.fromkeys(ID_RE.findall(function)
                             + ID_RE.findall(callspec.id if callspec is not None else "")))
    marker = item.get_closest_marker("security")
    if marker is not None:
        ids = list(dict.fromkeys([*marker.args, *ids]))
    if not ids:
        return None
    params = callspec.params if callspec is not None else {}
    backend = next((value for value in params.values()
                    if isinstance(value, str) and value in BACKENDS), "")
    variant = "-".join(part for part in (callspec.id.split("-") if callspec else [])
                       if part not in BACKENDS)
    test_function = getattr(item, "function", None)
    doc = (test_function.__doc__ or "") if test_function is not None else ""
    return Case(nodeid=item.nodeid, ids=ids, function=function, variant=variant,
                backend=backend, doc=" ".join(doc.split()),
                marker_expected=marker.kwargs.get("expected") if marker else None,
                marker_input=marker.kwargs.get("input") if marker else None)


def requirements(config: pytest.Config) -> dict[str, str]:
    """ID -> requirement text from docs/threat-model.md, in file order."""
    path = config.rootpath / THREAT_MODEL
    if not path.is_file():
        return {}
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = REQUIREMENT_RE.match(line.strip())
        if match and match.group(1) not in found:
            found[match.group(1)] = match.group(2)
    return found


def _cell(text: object, limit: int = 220) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _humane(function: str) -> str:
    """``test_RL1_database_down_gives_503`` -> ``database down gives 503``."""
    words = function.removeprefix("test_").split("_")
    return " ".join(word for word in words if not ID_RE.fullmatch(word))


def _id_key(ids: list[str], order: dict[str, int]):
    first = ids[0]
    prefix, number = re.match(r"([A-Z]+)(\d+)", first).groups()
    return (order.get(first, 10_000), prefix, int(number))


def render(report: SecurityReport, texts: dict[str, str]) -> str:
    """The Markdown document."""
    order = {identifier: index for index, identifier in enumerate(texts)}
    groups: dict[tuple, list[Case]] = defaultdict(list)
    for case in report.cases.values():
        groups[(tuple(case.ids), case.nodeid.split("::")[0], case.function, case.variant)]\
            .append(case)

    def row_order(entry):
        ids, module, function, variant = entry[0]
        numeric = variant.isdigit()
        return (_id_key(list(ids), order), module, function, not numeric,
                int(variant) if numeric else 0, variant)

    rows = []
    for (ids, module, function, variant), cases in sorted(groups.items(), key=row_order):
        first = cases[0]
        props = {k: v for case in cases for k, v in case.properties.items()}
        expected = (first.marker_expected or props.get("expected") or first.doc
                    or texts.get(ids[0], ""))
        fault = first.marker_input or props.get("input") or variant or _humane(function)
        rows.append((", ".join(ids), f"`{module.removeprefix('tests/')}::{function}`", fault,
                     expected, _observed(cases, props)))

    ran = [case for case in report.cases.values() if case.outcome not in ("skipped", "not run")]
    count = defaultdict(int)
    for case in report.cases.values():
        count[case.outcome] += 1
    tried = sum(max(1, int(case.properties.get("cases", 1))) for case in ran)
    examples = sum(int(case.properties.get("cases", 0)) for case in ran)
    lost = [int(case.properties["data_lost"]) for case in ran if "data_lost" in case.properties]
    data_lost = f"{sum(lost)} acknowledged writes (over {len(lost)} crash tests)" if lost \
        else "not measured in this run (the RL6 crash tests did not run)"
    covered = {identifier for case in ran for identifier in case.ids}
    missing = [identifier for identifier in texts if identifier not in covered]
    known_bugs = sorted((case for case in report.cases.values() if case.outcome == "xfailed"),
                        key=lambda case: case.nodeid)

    in_known_bugs = sum(case.other_5xx for case in known_bugs)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Security and reliability report",
        "",
        f"Generated by `tests/report_plugin.py` from the test run of {now} (Python "
        f"{platform.python_version()}). Do not edit by hand; regenerate with",
        "`AUTHSERVER_SECURITY_REPORT=docs/security.md bash .ci/run` (the whole suite; "
        "see the plugin's docstring).",
        "Requirement IDs are those of the threat model ([docs/threat-model.md](threat-model.md)).",
        "",
        "## Totals",
        "",
        "| | |",
        "| --- | --- |",
        f"| cases tried | {tried} ({len(ran)} tests naming an ID, of which Hypothesis "
        f"properties tried {examples} examples) |",
        f"| passed | {count['passed']} |",
        f"| failed (incl. errors, unexpected passes) | "
        f"{count['failed'] + count['error'] + count['xpassed']} |",
        f"| known bugs (strict xfail, listed below) | {count['xfailed']} |",
        f"| skipped | {count['skipped']} |",
        f"| 5xx seen | {report.outage_503 + report.other_5xx} of {report.answers} HTTP answers "
        f"received by the whole run: {report.outage_503} were 503 + Retry-After, the "
        f"documented answer to an injected outage; {report.other_5xx} were 500s or 5xx "
        f"without Retry-After ({in_known_bugs} in known-bug tests), listed by test below "
        f"(a fake upstream answering 500 on purpose counts too) |",
        f"| data lost | {data_lost} |",
        f"| every test of the run (with or without an ID) | "
        f"{', '.join(f'{n} {o}' for o, n in sorted(Counter(report.outcomes.values()).items()))} |",
        "",
    ]
    if known_bugs:
        lines += ["## Known bugs (tests marked `xfail(strict=True)`)", ""]
        by_test: dict[tuple, list[Case]] = defaultdict(list)
        for case in known_bugs:
            by_test[(case.nodeid.split("[")[0], case.reason)].append(case)
        for (test, reason), cases in by_test.items():
            variants = sorted(case.nodeid.partition("[")[2].rstrip("]") for case in cases)
            shown = f" [{'; '.join(variants)}]" if any(variants) else ""
            lines.append(f"- **{', '.join(cases[0].ids)}** `{test}` {_cell(shown, 200)}: "
                         f"{_cell(reason, 1200)}")
        lines.append("")
    if report.errors_by_test:
        lines += ["## Tests that received a 5xx error (500, or 5xx without Retry-After)", ""]
        lines += [f"- `{nodeid}`: {count}" for nodeid, count in
                  sorted(report.errors_by_test.items())]
        lines.append("")
    failed = [case for case in report.cases.values()
              if case.outcome in ("failed", "error", "xpassed")]
    others = sorted(nodeid for nodeid, outcome in report.outcomes.items()
                    if outcome in ("failed", "error", "xpassed") and nodeid not in report.cases)
    if failed or others:
        lines += ["## Failed in this run", ""]
        lines += [f"- **{', '.join(case.ids)}** `{case.nodeid}`: {case.outcome}"
                  for case in sorted(failed, key=lambda case: case.nodeid)]
        lines += [f"- (no ID) `{nodeid}`: {report.outcomes[nodeid]}" for nodeid in others]
        lines.append("")
    lines += ["## Cases", "",
              "Observed: the outcome per database backend; `5xx` counts answers the test "
              "received (503 + Retry-After counted as outage answers).", "",
              "| ID | test | input or fault | expected | observed |",
              "| --- | --- | --- | --- | --- |"]
    limits = (60, 120, 200, 300, 900)
    lines += ["| " + " | ".join(_cell(value, limit) for value, limit in zip(row, limits)) + " |"
              for row in rows]
    lines += ["", "## Requirements without a test in this run", "",
              ", ".join(missing) if missing else "none", ""]
    return "\n".join(lines)


def _observed(cases: list[Case], props: dict) -> str:
    by_outcome: dict[str, list[str]] = defaultdict(list)
    for case in cases:
        by_outcome[case.outcome].append(case.properties.get("backend") or case.backend or "")
    parts = []
    for outcome, backends in by_outcome.items():
        named = ", ".join(sorted(b for b in backends if b))
        parts.append(f"{outcome} ({named})" if named else outcome)
    text = "; ".join(parts)
    if props.get("observed"):
        text += f"; {props['observed']}"
    if "cases" in props:
        text += f"; {sum(int(c.properties.get('cases', 0)) for c in cases)} examples"
    outage = sum(case.outage_503 for case in cases)
    other = sum(case.other_5xx for case in cases)
    if outage or other:
        text += f"; 5xx: {other} errors, {outage} outage 503s"
    return text


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "security(*ids, expected=None, input=None): the threat-model requirement(s) "
        "a test covers, for docs/security.md")
    target = os.environ.get(ENV_VAR)
    if not target:
        return
    path = Path(target)
    if not path.is_absolute():
        path = config.rootpath / path
    worker = hasattr(config, "workerinput")
    controller = not worker and bool(getattr(config.option, "numprocesses", None))
    report = SecurityReport(config, path, runs_tests=not controller, writes=not worker)
    if report.runs_tests:
        report.install()
    config.pluginmanager.register(report, "authserver-security-report")
    config.stash[_KEY] = report


def pytest_unconfigure(config: pytest.Config) -> None:
    report = config.stash.get(_KEY, None)
    if report is not None:
        report.uninstall()

