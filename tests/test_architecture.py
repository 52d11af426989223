"""The import graph of ``authserver`` and ``resource_demo`` (static imports, read with ``ast``).

No import cycles among their modules, and the import direction docs/architecture.md describes:
the guard library imports nothing from the server or the demo; the protocol, the credential
services and storage never import a front-end; only the app factory wires ``authserver.admin``.
The checker is tested on small trees written to ``tmp_path`` so each rule is known to fail.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("authserver", "resource_demo")

# (importing package, packages it must not import, why)
FORBIDDEN = [
    ("resource_demo.guard", ("authserver", "resource_demo.demo"),
     "the guard library imports nobody in the repository"),
    ("authserver.storage", ("authserver.admin",), "storage never imports a front-end"),
    ("authserver.credentials", ("authserver.admin",), "the services never import a front-end"),
    ("authserver.oauth2", ("authserver.admin",), "the protocol never imports a front-end"),
]
# Who may import the front-ends at all: the app factory (wiring) and the front-ends themselves.
ADMIN = "authserver.admin"
ADMIN_IMPORTERS = {"authserver"}


def find_modules(root: Path, packages) -> dict[str, Path]:
    """Every ``.py`` file under the packages by dotted module name (a package by its own name)."""
    modules = {}
    for package in packages:
        for path in (root / package).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules) -> str | None:
    """The module ``name`` lives in (``pkg.mod.func`` -> ``pkg.mod``), or None if outside."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imported_modules(module: str, path: Path, modules) -> set[str]:
    """The modules of the tree that ``module`` imports anywhere in its file (also inside
    functions: a deferred import is still a dependency)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            # ``from pkg import name``: name may be a submodule or an attribute of pkg.
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            target = _resolve(name, modules)
            if target and target != module:
                found.add(target)
    return found


def import_graph(modules) -> dict[str, set[str]]:
    """module -> the modules it imports. A module importing one of its own parent packages is
    no edge: Python has run the parent's ``__init__`` before the child, so that is no cycle
    anyone can trip over (the same rule the team's import-cycle report uses)."""
    graph = {}
    for module, path in modules.items():
        graph[module] = {target for target in imported_modules(module, path, modules)
                         if not module.startswith(target + ".")}
    return graph


def find_cycles(graph) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def forbidden_imports(modules, rules=FORBIDDEN) -> list[str]:
    """``importer -> imported (why)`` for each import a rule forbids."""
    found = []
    for module, path in sorted(modules.items()):
        targets = imported_modules(module, path, modules)
        for package, banned, why in rules:
            if not _within(module, package):
                continue
            found += [f"{module} -> {target} ({why})" for target in sorted(targets)
                      if any(_within(target, b) for b in banned)]
    return found


def admin_importers(modules) -> set[str]:
    """Modules outside ``authserver.admin`` that import it or one of its modules."""
    return {module for module, path in modules.items() if not _within(module, ADMIN)
            and any(_within(t, ADMIN) for t in imported_modules(module, path, modules))}


# -- the repository ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def modules():
    found = find_modules(ROOT, PACKAGES)
    assert {"authserver.oauth2.server", "authserver.admin.api", "resource_demo.guard.verifier",
            "resource_demo.demo.app"} <= set(found)  # the walk really saw the tree
    return found


def test_no_import_cycles(modules):
    assert find_cycles(import_graph(modules)) == []


def test_import_direction(modules):
    assert forbidden_imports(modules) == []


def test_only_the_app_factory_imports_the_admin_front_ends(modules):
    assert admin_importers(modules) <= ADMIN_IMPORTERS


def test_importing_the_guard_loads_neither_server_nor_demo():
    """The static rule, seen at run time: importing every guard module (and so the parent
    packages' ``__init__``) loads no ``authserver`` or ``resource_demo.demo`` module."""
    names = sorted(find_modules(ROOT, ["resource_demo/guard"]))
    code = "import importlib, sys\n" + "".join(
        f"importlib.import_module({name!r})\n" for name in names) + textwrap.dedent("""
        print(" ".join(sorted(m for m in sys.modules if m == "authserver"
                              or m.startswith(("authserver.", "resource_demo.demo")))))
        """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert len(names) > 5 and result.stdout.split() == []


# -- the checker fails where it must ----------------------------------------------------------

def _tree(tmp_path, files: dict[str, str]) -> dict[str, Path]:
    for name, source in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return find_modules(tmp_path, ["pkg"])


@pytest.mark.parametrize("files, cycle", [
    ({"pkg/a.py": "import pkg.b", "pkg/b.py": "from pkg import a"}, ["pkg.a", "pkg.b"]),
    ({"pkg/a.py": "from .b import f", "pkg/b.py": "from .c import g",
      "pkg/c.py": "def g():\n    from pkg.a import h\n"}, ["pkg.a", "pkg.b", "pkg.c"]),
    ({"pkg/__init__.py": "", "pkg/sub/__init__.py": "", "pkg/sub/api.py": "from ..core import x",
      "pkg/core.py": "from pkg.sub import api"}, ["pkg.core", "pkg.sub.api"]),
])
def test_checker_finds_a_cycle(tmp_path, files, cycle):
    assert find_cycles(import_graph(_tree(tmp_path, files))) == [cycle]


def test_checker_child_importing_its_parent_is_no_cycle(tmp_path):
    modules = _tree(tmp_path, {"pkg/__init__.py": "from pkg.core import x",
                               "pkg/core.py": "from pkg import y\nfrom . import z"})
    assert import_graph(modules) == {"pkg": {"pkg.core"}, "pkg.core": set()}
    assert find_cycles(import_graph(modules)) == []


def test_checker_finds_forbidden_imports(tmp_path):
    modules = _tree(tmp_path, {"pkg/__init__.py": "", "pkg/guard/__init__.py": "",
                               "pkg/guard/a.py": "def f():\n    from pkg.server.x import y\n",
                               "pkg/guard/b.py": "from ..demo import app",
                               "pkg/server/__init__.py": "", "pkg/server/x.py": "",
                               "pkg/demo/__init__.py": "", "pkg/demo/app.py": ""})
    rules = [("pkg.guard", ("pkg.server", "pkg.demo"), "guard")]
    assert forbidden_imports(modules, rules) == ["pkg.guard.a -> pkg.server.x (guard)",
                                                 "pkg.guard.b -> pkg.demo (guard)",
                                                 "pkg.guard.b -> pkg.demo.app (guard)"]


def test_checker_finds_admin_importers(tmp_path):
    (tmp_path / "authserver" / "admin").mkdir(parents=True)
    for name, source in {"__init__.py": "from authserver.admin import api",
                         "admin/__init__.py": "", "admin/api.py": "from . import __init__",
                         "credentials.py": "from authserver import admin",
                         "web.py": "import authserver.admin.api as api"}.items():
        (tmp_path / "authserver" / name).write_text(source)
    modules = find_modules(tmp_path, ["authserver"])
    assert admin_importers(modules) == {"authserver", "authserver.credentials", "authserver.web"}
