"""The repository's own documentation stays true and self-contained.

docs/scopes.md's catalogue is generated from scopes.toml and its demo table matches the code;
every requirement id a test cites exists in docs/threat-model.md; no file points at documents
outside the repository (the team's shared folder beside the checkout is not in a clone).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from report_plugin import ID_RE, REQUIREMENT_RE

from resource_demo.demo.api import ENDPOINT_SCOPES

ROOT = Path(__file__).resolve().parents[1]
THREAT_MODEL = ROOT / "docs" / "threat-model.md"
SCOPES_DOC = ROOT / "docs" / "scopes.md"
GENERATED_REPORT = "docs/security.md"
# Built from parts so that this file does not match itself.
OUTSIDE_DOCUMENTS = ("SECURITY", "DESIGN", "SCOPES", "STYLE")
OUTSIDE = re.compile(r"\b(?:" + "|".join(OUTSIDE_DOCUMENTS) + r")\.md|\.\./" + "shared")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".cfg", ".ini", ".html", ".js", ".css", ".json",
                 ".yml", ".yaml", ".sh", ".mako", ""}


def threat_model_ids() -> list[str]:
    return [match.group(1) for line in THREAT_MODEL.read_text("utf-8").splitlines()
            if (match := REQUIREMENT_RE.match(line.strip()))]


def test_threat_model_ids_are_unique():
    ids = threat_model_ids()
    assert len(ids) == len(set(ids)) > 100


def test_every_id_a_test_cites_is_in_the_threat_model():
    """Test names and ``security`` markers name requirements that exist."""
    known = set(threat_model_ids())
    cited = {}
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                for identifier in ID_RE.findall(node.name):
                    cited.setdefault(identifier, f"{path.name}::{node.name}")
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "security":
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        cited.setdefault(arg.value, f"{path.name}:{node.lineno}")
    unknown = {identifier: where for identifier, where in cited.items() if identifier not in known}
    assert cited and not unknown


def test_scope_catalogue_section_is_generated_from_the_shipped_file():
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "scopes_doc.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def _demo_table() -> dict[tuple[str, str], tuple[frozenset[str], bool]]:
    section = SCOPES_DOC.read_text("utf-8").split("## Demo API endpoints", 1)[1].split("\n## ")[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`(GET|POST|PUT|DELETE|PATCH) (\S+)`", cells[0]) if cells else None
        if match:
            scopes = frozenset(re.findall(r"`([a-z0-9:-]+)`", cells[2].split("(not")[0]))
            rows[(match.group(1), match.group(2))] = (scopes, cells[3].strip("*") == "yes")
    return rows


def test_demo_endpoint_table_matches_the_code():
    documented = _demo_table()
    in_code = {(row.method, row.path): (frozenset(row.scopes), row.api_keys)
               for row in ENDPOINT_SCOPES}
    assert documented == in_code


def _repository_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                                check=True, timeout=60).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in listed if name and Path(name).suffix in TEXT_SUFFIXES]


def test_no_reference_leaves_the_repository():
    """Code, tests and docs cite docs/threat-model.md, docs/scopes.md, docs/architecture.md.

    docs/security.md is generated: its texts come from test docstrings and the threat model,
    both checked here, and are refreshed when the report is regenerated.
    """
    found = []
    for path in _repository_files():
        if not path.is_file() or path == ROOT / GENERATED_REPORT:
            continue
        text = path.read_text("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("page", ["architecture.md", "scopes.md", "threat-model.md"])
def test_paths_a_page_names_exist(page):
    """Module paths in the docs follow the tree (a move must update the page)."""
    text = (ROOT / "docs" / page).read_text("utf-8")
    named = set(re.findall(r"`((?:authserver|resource_demo|tests|tools|docs)/[\w./-]*)`", text))
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert named and not missing
